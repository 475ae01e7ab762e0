"""Mapping annotations: Hatchery's own bytes in the v1 flavor, and in both flavors a resource
Emissary's CRD schema accepts once unfolded as Emissary unfolds annotations."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from launcher.ambassador import mapping_annotation, unfold
from launcher.hatchery_types import Container
from launcher.options import WorkspaceOption

from .conftest import FIXTURES

DEPLOY = Path(__file__).parents[2] / "deploy" / "envoy"

# Hatchery's template (hatchery/pods.go, `ambassadorYaml`), verbatim, filled by fmt.Sprintf.
HATCHERY_TEMPLATE = """---
apiVersion: ambassador/v1
kind:  Mapping
name:  %s
prefix: /
headers:
  remote_user: %s
service: %s.%s.svc.cluster.local:80
bypass_auth: true
timeout_ms: 300000
use_websocket: true
rewrite: %s
tls: %s
"""

JUPYTER = WorkspaceOption(id="j", container=Container(
    name="(Generic) Jupyter Lab Notebook with R Kernel", target_port=8888,
    path_rewrite="/lw-workspace/proxy/", use_tls="false", ready_probe="/lw-workspace/proxy/"))
BARE = WorkspaceOption(id="b", container=Container(name="bare", target_port=8080))
TLS = WorkspaceOption(id="t", container=Container(name="tls", use_tls="true", path_rewrite="/"))
OPTIONS = {"jupyter": JUPYTER, "bare": BARE, "tls": TLS}
USERS = ["alice", "a@b.c", "true", "123", "a: b", "x #y", "[list]", "o'brien", "名前", " pad"]
FLAVORS = ["v1", "v3alpha1"]

# ambassador/v1 unfolds to getambassador.io/v1, which Emissary serves with its v2 schema.
SCHEMA_FILES = {"getambassador.io/v1": "v2", "getambassador.io/v2": "v2",
                "getambassador.io/v3alpha1": "v3alpha1"}


@functools.cache
def schema(kind: str, api_version: str) -> dict[str, Any]:
    name = f"emissary-{kind.lower()}-{SCHEMA_FILES[api_version]}.schema.json"
    return json.loads((FIXTURES / name).read_text())  # type: ignore[no-any-return]


@functools.cache
def validator(kind: str, api_version: str) -> Any:
    doc = schema(kind, api_version)
    cls = jsonschema.validators.validator_for(doc)
    cls.check_schema(doc)
    return cls(doc)


def check_resource(resource: dict[str, Any]) -> None:
    """Valid by the schema, and no spec field the schema doesn't know (it allows any)."""
    doc = schema(resource["kind"], resource["apiVersion"])
    validator(resource["kind"], resource["apiVersion"]).validate(resource)
    known = set(doc["properties"]["spec"]["properties"])
    assert set(resource["spec"]) <= known, set(resource["spec"]) - known


def test_v1_equals_hatcherys_template_for_the_example_user() -> None:
    expected = HATCHERY_TEMPLATE % ("a-40b-2ec-mapping", "a@b.c", "h-a-40b-2ec-s",
                                    "jupyter-pods", "/lw-workspace/proxy/", "false")
    assert mapping_annotation("a@b.c", JUPYTER, "jupyter-pods") == expected


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("option", list(OPTIONS))
@pytest.mark.parametrize("user", USERS)
def test_every_mapping_validates_against_emissarys_schema(flavor: str, option: str,
                                                         user: str) -> None:
    [resource] = unfold(mapping_annotation(user, OPTIONS[option], "jupyter-pods", flavor))
    assert resource["kind"] == "Mapping"
    check_resource(resource)


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("user", USERS)
def test_user_name_stays_one_string_and_adds_no_field(flavor: str, user: str) -> None:
    [plain] = unfold(mapping_annotation("alice", JUPYTER, "ns", flavor))
    [resource] = unfold(mapping_annotation(user, JUPYTER, "ns", flavor))
    assert resource["spec"]["headers"] == {"remote_user": user}
    assert set(resource["spec"]) == set(plain["spec"])


def test_v3alpha1_is_authorized_upgrades_websockets_and_never_times_a_stream_out() -> None:
    [resource] = unfold(mapping_annotation("alice", JUPYTER, "ns", "v3alpha1"))
    spec = resource["spec"]
    assert spec.get("bypass_auth", False) is False  # hatchway's AuthService decides
    assert spec["allow_upgrade"] == ["websocket"]
    assert spec["timeout_ms"] == 0
    assert spec["idle_timeout_ms"] > 5 * 60 * 1000  # beyond Envoy's 5-minute default
    assert (spec["hostname"], spec["prefix"], spec["rewrite"]) == ("*", "/", "/lw-workspace/proxy/")
    assert spec["service"] == "h-alice-s.ns.svc.cluster.local:80"


def test_empty_path_rewrite_is_written_as_slash() -> None:
    for flavor in FLAVORS:
        [resource] = unfold(mapping_annotation("alice", BARE, "ns", flavor))
        assert resource["spec"]["rewrite"] == "/"


def test_use_tls_originates_tls_in_both_flavors() -> None:
    [v1] = unfold(mapping_annotation("alice", TLS, "ns", "v1"))
    [v3] = unfold(mapping_annotation("alice", TLS, "ns", "v3alpha1"))
    assert v1["spec"]["tls"] is True
    assert v3["spec"]["service"].startswith("https://")


def test_unknown_flavor_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="v2"):
        mapping_annotation("alice", JUPYTER, "ns", "v2")


def test_unfold_puts_name_and_namespace_in_metadata() -> None:
    [resource] = unfold("---\napiVersion: ambassador/v1\nkind: Mapping\nname: m\n"
                        "namespace: ns\nprefix: /\nservice: s\n---\n")
    assert resource == {"apiVersion": "getambassador.io/v1", "kind": "Mapping",
                        "metadata": {"name": "m", "namespace": "ns"},
                        "spec": {"prefix": "/", "service": "s"}}


def test_operator_ambassador_example_validates() -> None:
    docs = [d for d in yaml.safe_load_all((DEPLOY / "ambassador-authservice.yaml").read_text())
            if d]
    for doc in docs:
        check_resource(doc)
    [auth] = [d for d in docs if d["kind"] == "AuthService"]
    assert auth["spec"]["path_prefix"] == "/lw-workspace/_ext_authz"
    assert {"remote_user", "cookie"} <= set(auth["spec"]["allowed_authorization_headers"])
    assert "accept" in auth["spec"]["allowed_request_headers"]  # browser → login redirect
