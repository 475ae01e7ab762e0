"""hatchery.json is read unchanged: Hatchery's option ids, idle-time-limit, and field errors."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest

from launcher.errors import ConfigError
from launcher.gojson import (
    HATCHERY_CONFIG,
    K8S_CONTAINER,
    Slice,
    Struct,
    canonical_quantity,
    go_float32,
    marshal_container,
    option_id,
)
from launcher.hatchery_types import CLASSES, LicenseInfo, NextflowConfig
from launcher.names import claim_name, escape, pod_name, service_name
from launcher.options import HatcheryConfig, parse_hatchery_config

JUPYTER = {
    "target-port": 8888,
    "cpu-limit": "1.0",
    "memory-limit": "2048Mi",
    "name": "(Tutorials) Example Analysis Jupyter Lab Notebooks",
    "image": "quay.io/cdis/heal-notebooks:combined_tutorials__latest",
    "env": {"FRAME_ANCESTORS": "https://example.org"},
    "args": ["--NotebookApp.base_url=/lw-workspace/proxy/",
             "--NotebookApp.default_url=/lab",
             "--NotebookApp.password=''", "--NotebookApp.token=''",
             "--NotebookApp.shutdown_no_activity_timeout=5400",
             "--NotebookApp.quit_button=False"],
    "command": ["start-notebook.sh"],
    "path-rewrite": "/lw-workspace/proxy/",
    "use-tls": "false",
    "ready-probe": "/lw-workspace/proxy/",
    "lifecycle-post-start": ["/bin/sh", "-c",
                             "export IAM=`whoami`; rm -rf /home/$IAM/pd/dockerHome"],
    "user-uid": 1000, "fs-gid": 100, "user-volume-location": "/home/jovyan/pd",
    "gen3-volume-location": "/home/jovyan/.gen3",
}


def test_marshal_follows_go_field_order_and_zero_values() -> None:
    text = marshal_container({"name": "x", "env": {"b": "2", "a": "<&>"}})
    assert text.startswith('{"name":"x","gpu":false,"cpu-limit":"","memory-limit":"",'
                           '"image":"","pull_policy":"",'
                           '"env":{"a":"\\u003c\\u0026\\u003e","b":"2"},'
                           '"target-port":0,"args":null,"command":null,')
    assert text.endswith('"authz":{"version":0,"AuthzVersion_0_1":{"and":null,"or":null,'
                         '"resource_paths":null,"pay_models":null}}}')


def test_option_id_is_md5_of_go_marshal() -> None:
    expected = hashlib.md5(marshal_container(JUPYTER).encode()).hexdigest()
    assert option_id(JUPYTER) == expected


def test_option_id_ignores_key_order_and_spacing_of_the_file() -> None:
    shuffled = json.loads(json.dumps(dict(reversed(list(JUPYTER.items())))))
    assert option_id(shuffled) == option_id(JUPYTER)


def test_option_id_matches_keys_ignoring_case_as_go_does() -> None:
    assert option_id({"Name": "x", "IMAGE": "i"}) == option_id({"name": "x", "image": "i"})


def test_authz_marshals_flat_block_under_go_field_name() -> None:
    entry = {"name": "x", "authz": {"version": 0.1, "resource_paths": ["/a"]}}
    assert ('"authz":{"version":0.1,"AuthzVersion_0_1":{"and":null,"or":null,'
            '"resource_paths":["/a"],"pay_models":null}}') in marshal_container(entry)


def test_authz_rules_of_an_unknown_version_marshal_as_null() -> None:
    entry = {"name": "x", "authz": {"version": 0.2, "resource_paths": ["/a"]}}
    assert ('"authz":{"version":0.2,"AuthzVersion_0_1":{"and":null,"or":null,'
            '"resource_paths":null,"pay_models":null}}') in marshal_container(entry)


def test_friends_marshal_in_kubernetes_field_order_with_omitempty() -> None:
    friend = {"image": "busybox", "name": "f", "tty": False, "args": [],
              "volumeMounts": [{"mountPath": "/d", "name": "v", "readOnly": False}]}
    assert '"friends":[{"name":"f","image":"busybox","resources":{},' \
           '"volumeMounts":[{"name":"v","mountPath":"/d"}]}]' in \
        marshal_container({"name": "x", "friends": [friend]})


# k8s.io/apimachinery v0.32.1 pkg/api/resource/quantity_test.go: TestQuantityParseEmit, and
# TestQuantityString's canonical strings and their alternates (Go's own cases, as facts).
_QUANTITIES = [
    ("1Ki", "1Ki"), ("1Mi", "1Mi"), ("1Gi", "1Gi"), ("1024Mi", "1Gi"), ("1000M", "1G"),
    (".001Ki", "1024m"), (".000001Ki", "1024u"), (".000000001Ki", "1024n"),
    (".000000000001Ki", "2n"), ("-1024Mi", "-1Gi"), ("-.001Ki", "-1024m"),
    ("307200Ki", "300Mi"), ("6Ki", "6Ki"), ("1025024Mi", "1001Gi"), ("1024Gi", "1Ti"),
    ("5000m", "5"), ("0.5", "500m"), ("0.001T", "1G"), ("1000u", "1m"), ("80m", "80m"),
    ("1.08", "1080m"), ("1080000000n", "1080m"), ("300M", "300M"), ("1234567M", "1234567M"),
    ("1234567m", "1234567m"), ("3k", "3k"), ("1025", "1025"), ("0", "0"), ("00", "0"),
    (".001e12", "1e9"), ("0.001e0", "1e-3"), ("1000e-12", "1e-9"), ("80e-3", "80e-3"),
    ("300e6", "300e6"), ("1e12", "1e12"), ("3e3", "3e3"), ("1n", "1n"), ("1080n", "1080n"),
    ("1080u", "1080u"),
]


@pytest.mark.parametrize(("given", "canonical"), _QUANTITIES)
def test_quantities_are_canonicalised_as_kubernetes_does(given: str, canonical: str) -> None:
    assert canonical_quantity(given, "q") == canonical


def test_authz_version_marshals_as_go_float32() -> None:
    assert go_float32(0.1) == "0.1" and go_float32(0.10000000001) == "0.1"
    assert go_float32(1e-7) == "1e-7" and go_float32(250.5) == "250.5"


def test_idle_time_limit_from_shutdown_timeout() -> None:
    cfg = parse_hatchery_config({"containers": [JUPYTER]}, "hatchery.json")
    assert cfg.options[0].idle_time_limit == 5400 * 1000
    assert cfg.options[0].summary()["idle-time-limit"] == 5400000


def test_idle_time_limit_absent_is_minus_one() -> None:
    cfg = parse_hatchery_config({"containers": [{"name": "x"}]}, "h.json")
    assert cfg.options[0].idle_time_limit == -1


def test_options_summary_has_hatchery_keys() -> None:
    cfg = parse_hatchery_config({"containers": [JUPYTER]}, "h.json")
    assert set(cfg.options[0].summary()) == {"name", "cpu-limit", "memory-limit", "id", "gpu",
                                             "idle-time-limit"}


@pytest.mark.parametrize(("gpu", "shown"), [(None, False), (False, False), (True, True)])
def test_options_summary_gpu_is_a_bool(gpu: bool | None, shown: bool) -> None:
    entry = {"name": "x"} if gpu is None else {"name": "x", "gpu": gpu}
    assert parse_hatchery_config({"containers": [entry]}, "h.json").options[0].summary()[
        "gpu"] is shown


@pytest.mark.parametrize(("doc", "field"), [
    ({"containers": [{"name": "x", "target-port": "8888"}]}, "containers[0].target-port"),
    ({"containers": [{"cpu-limit": "1"}]}, "containers[0].name"),
    ({"containers": [{"name": "x", "args": "--x"}]}, "containers[0].args"),
    ({"containers": [{"name": "x", "env": {"A": 1}}]}, "containers[0].env.A"),
    ({"containers": [{"name": "x", "authz": {"resource_paths": ["/a"]}}]},
     "containers[0].authz.version"),
    ({"containers": [{"name": "x", "authz": {"version": "0.1"}}]},
     "containers[0].authz.version"),
    ({"containers": [{"name": "x", "authz": {"version": 0.1}}]}, "containers[0].authz"),
    ({"containers": [{"name": "x", "authz": {"version": 0.1, "resource_paths": []}}]},
     "containers[0].authz"),
    ({"containers": [{"name": "x", "authz": {"version": 0.1, "or": [{"pay_models": ["a"]}],
                                             "pay_models": ["a"]}}]}, "containers[0].authz"),
    ({"containers": [{"name": "x", "authz": {"version": 0.1, "or": [
        {"and": [{"pay_models": ["a"]}]}]}}]}, "containers[0].authz"),
    ({"containers": [{"name": "x", "authz": {"version": 0.1, "resource_paths": "/a"}}]},
     "containers[0].authz.resource_paths"),
    ({"containers": [{"name": "x", "gpu": {"count": 1}}]}, "containers[0].gpu"),
    ({"containers": [{"name": "x", "friends": [{"name": "f", "resources": {
        "limits": {"cpu": "lots"}}}]}]}, "containers[0].friends[0].resources.limits.cpu"),
    ({"containers": [{"name": "x", "license": {"enabled": True}}]},
     "license-user-maps-dynamodb-table"),
    ({"containers": [], "license-user-maps-dynamodb-table": "t"},
     "license-user-maps-global-secondary-index"),
    ({"containers": [], "more-configs": [{"type": "dockstore-compose:1.0.0", "path": "/a"}]},
     "more-configs[0].name"),
    ({"containers": [], "sidecar": {"cpu-limit": 1}}, "sidecar.cpu-limit"),
    ({"containers": [], "user-volume-size": 10}, "user-volume-size"),
])
def test_bad_field_is_named(doc: dict, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_hatchery_config(doc, "hatchery.json")
    assert err.value.field == field
    assert str(err.value).startswith(f"hatchery.json: field '{field}': expected ")


def test_unknown_authz_version_loads_but_is_never_offered() -> None:
    cfg = parse_hatchery_config({"containers": [{"name": "x", "authz": {
        "version": 0.2, "resource_paths": ["/a"]}}]}, "h.json")
    assert cfg.options[0].authz.offered is False
    assert any("authz version 0.2" in u for u in cfg.unsupported)


def test_explicit_authz_version_zero_is_not_open_to_everyone() -> None:
    cfg = parse_hatchery_config({"containers": [{"name": "x", "authz": {"version": 0}}]}, "h")
    assert cfg.options[0].authz.offered is False


def test_unsupported_features_are_named() -> None:
    cfg = parse_hatchery_config({
        "containers": [{"name": "N", "nextflow": {"enabled": True}}],
        "more-configs": [{"type": "dockstore-compose:1.0.0", "path": "/c/app.yaml",
                          "name": "App"}],
        "default-pay-model": {"workspace_type": "Direct Pay", "ecs": True},
    }, "h.json")
    text = "\n".join(cfg.unsupported)
    assert "'App' (/c/app.yaml)" in text and "ECS" in text
    assert "containers[0].nextflow.enabled ('N'): Nextflow" in text


def test_top_level_settings_are_read() -> None:
    cfg = parse_hatchery_config({"containers": [], "skip-node-selector": True,
                                 "use-internal-services-url": True,
                                 "pay-models-dynamodb-table": "pm",
                                 "license-user-maps-dynamodb-table": "lt",
                                 "license-user-maps-global-secondary-index": "gsi"}, "h")
    assert cfg.skip_node_selector and cfg.use_internal_services_url
    assert (cfg.pay_models_dynamodb_table, cfg.license_user_maps_table) == ("pm", "lt")


def _go_structs(t: Struct) -> dict[str, Struct]:
    """Every struct hatchery.json reaches, by Go name (k8s.io/api's Container aside)."""
    found = {t.name: t}
    for f in t.fields:
        inner = f.type.elem if isinstance(f.type, Slice) else f.type
        if isinstance(inner, Struct) and inner is not K8S_CONTAINER:
            found.update(_go_structs(inner))
    return found


def _json_keys(cls: type) -> list[str]:
    return [f.metadata["json"] for f in dataclasses.fields(cls) if "json" in f.metadata]


def test_every_go_field_of_hatchery_json_has_a_typed_field_in_go_order() -> None:
    structs = _go_structs(HATCHERY_CONFIG)
    assert set(structs) - {"PayModel"} == set(CLASSES) | {"HatcheryConfig"}
    for name, cls in CLASSES.items():
        keys = [f.key for f in structs[name].fields if f.key != "authz"]  # Container.authz
        assert _json_keys(cls) == keys, name
    read_elsewhere = {"containers", "default-pay-model", "pay-models"}  # options, PayModel
    assert _json_keys(HatcheryConfig) == [f.key for f in HATCHERY_CONFIG.fields
                                          if f.key not in read_elsewhere]


def test_options_are_read_once_into_go_typed_values() -> None:
    cfg = parse_hatchery_config({"Sub-Dir": "/x", "containers": [{
        **JUPYTER, "gpu": True, "license": {"enabled": False, "max-license-ids": 3},
        "friends": [{"name": "f", "image": "i", "resources": {"limits": {"cpu": "1.0"}},
                     "bogus": 1}]}]}, "h.json")
    c = cfg.options[0].container
    assert cfg.sub_dir == "/x" and c.gpu is True and c.cpu_limit == "1.0"
    assert (c.target_port, c.user_uid, c.group_uid, c.fs_gid) == (8888, 1000, 0, 100)
    assert c.command == ("start-notebook.sh",) and c.env == JUPYTER["env"]
    assert c.license == LicenseInfo(max_license_ids=3) and c.nextflow_config == NextflowConfig()
    assert c.friends == ({"name": "f", "image": "i", "resources": {"limits": {"cpu": "1"}}},)
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.name = "other"  # type: ignore[misc]


def test_unknown_fields_are_kept_and_reported() -> None:
    cfg = parse_hatchery_config({"containers": [{"name": "x", "shiny": 1}], "extra": 2}, "h.json")
    assert cfg.unused_fields == ["extra", "containers[0].shiny"]


@pytest.mark.parametrize(("user", "escaped"), [
    ("a@b.c", "a-40b-2ec"), ("alice", "alice"), ("Bob", "-42ob"), ("x_y", "x-5fy"),
    ("é", "-e9"), ("o'brien", "o-26-2339-3bbrien"), ("a&b", "a-26amp-3bb"),
    ("<x>", "-26lt-3bx-26gt-3b"), ('"q"', "-26-2334-3bq-26-2334-3b"), ("tab\tx", "tab- 9x"),
])
def test_user_names_are_escaped_as_hatchery_does(user: str, escaped: str) -> None:
    assert escape(user) == escaped


def test_object_names_follow_hatchery() -> None:
    assert (pod_name("a@b.c"), service_name("a@b.c"), claim_name("a@b.c")) == (
        "hatchery-a-40b-2ec", "h-a-40b-2ec-s", "claim-a-40b-2ec")
