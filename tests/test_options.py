"""hatchery.json is read unchanged: Hatchery's option ids, idle-time-limit, and field errors."""

from __future__ import annotations

import hashlib
import json

import pytest

from launcher.errors import ConfigError
from launcher.gojson import marshal_container, option_id
from launcher.names import claim_name, escape, pod_name, service_name
from launcher.options import parse_hatchery_config

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
    assert text.startswith('{"name":"x","cpu-limit":"","memory-limit":"","image":"",'
                           '"pull_policy":"","env":{"a":"\\u003c\\u0026\\u003e","b":"2"},'
                           '"target-port":0,"args":null,"command":null,')
    assert text.endswith('"authz":{"version":0,"rules":{"and":null,"or":null,'
                         '"resource_paths":null,"pay_models":null}}}')


def test_option_id_is_md5_of_go_marshal() -> None:
    expected = hashlib.md5(marshal_container(JUPYTER).encode()).hexdigest()
    assert option_id(JUPYTER) == expected


def test_option_id_ignores_key_order_and_spacing_of_the_file() -> None:
    shuffled = json.loads(json.dumps(dict(reversed(list(JUPYTER.items())))))
    assert option_id(shuffled) == option_id(JUPYTER)


def test_authz_version_marshals_as_go_float32() -> None:
    entry = {"name": "x", "authz": {"version": 0.1, "rules": {"resource_paths": ["/a"]}}}
    assert '"authz":{"version":0.1,"rules":{"and":null,"or":null,"resource_paths":["/a"],' \
           '"pay_models":null}}' in marshal_container(entry)


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


@pytest.mark.parametrize(("doc", "field"), [
    ({"containers": [{"name": "x", "target-port": "8888"}]}, "containers[0].target-port"),
    ({"containers": [{"cpu-limit": "1"}]}, "containers[0].name"),
    ({"containers": [{"name": "x", "args": "--x"}]}, "containers[0].args"),
    ({"containers": [{"name": "x", "env": {"A": 1}}]}, "containers[0].env.A"),
    ({"containers": [{"name": "x", "authz": {"version": 0.2, "rules": {}}}]},
     "containers[0].authz.version"),
    ({"containers": [{"name": "x", "authz": {"version": 0.1, "rules": {
        "or": [{}], "resource_paths": ["/a"]}}}]}, "containers[0].authz.rules"),
    ({"containers": [], "sidecar": {"cpu-limit": 1}}, "sidecar.cpu-limit"),
    ({"containers": [], "user-volume-size": 10}, "user-volume-size"),
])
def test_bad_field_is_named(doc: dict, field: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_hatchery_config(doc, "hatchery.json")
    assert err.value.field == field
    assert str(err.value).startswith(f"hatchery.json: field '{field}': expected ")


def test_unknown_fields_are_kept_and_reported() -> None:
    cfg = parse_hatchery_config({"containers": [{"name": "x", "shiny": 1}], "extra": 2}, "h.json")
    assert cfg.unused_fields == ["extra", "containers[0].shiny"]


@pytest.mark.parametrize(("user", "escaped"), [
    ("a@b.c", "a-40b-2ec"), ("alice", "alice"), ("Bob", "-42ob"), ("x_y", "x-5fy"),
    ("é", "-e9"),
])
def test_user_names_are_escaped_as_hatchery_does(user: str, escaped: str) -> None:
    assert escape(user) == escaped


def test_object_names_follow_hatchery() -> None:
    assert (pod_name("a@b.c"), service_name("a@b.c"), claim_name("a@b.c")) == (
        "hatchery-a-40b-2ec", "h-a-40b-2ec-s", "claim-a-40b-2ec")
