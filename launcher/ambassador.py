"""Ambassador/Emissary ``Mapping`` annotations for each user's Service.

Two flavors, chosen by the operator (``envoy.mapping_flavor``):

``v1``
    Hatchery's own template, byte for byte wherever Hatchery's output is valid, so an existing
    Ambassador (and Gen3's workspace-proxy, which reads the same annotation) keeps working. It
    has ``bypass_auth: true``: it trusts the ``remote_user`` header, which is safe only behind
    Gen3's revproxy, which sets that header itself after its own check.
``v3alpha1``
    A current Emissary Mapping for Ambassador at the edge with hatchway's ext_authz as its
    ``AuthService``: the same header routing, but authorization is not bypassed,
    ``allow_upgrade: [websocket]`` replaces ``use_websocket``, there is no total timeout on a
    stream and an idle timeout long enough that a quiet notebook is not cut after Envoy's
    5-minute default.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from . import yamlload
from .names import escape, service_name
from .options import WorkspaceOption

ANNOTATION = "getambassador.io/config"
FLAVORS = ("v1", "v3alpha1")
NOTEBOOK_IDLE_TIMEOUT_MS = 3_600_000

# Hatchery's template (pods.go), with Go's %s replaced by named fields.
_V1_TEMPLATE = """---
apiVersion: ambassador/v1
kind:  Mapping
name:  {name}
prefix: /
headers:
  remote_user: {user}
service: {service}.{namespace}.svc.cluster.local:80
bypass_auth: true
timeout_ms: 300000
use_websocket: true
rewrite: {rewrite}
tls: {tls}
"""

_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0", ""})


def mapping_name(user: str) -> str:
    return f"{escape(user)}-mapping"


def _plain_or_quoted(value: str, *, allow_bool: bool = False) -> str:
    """``value`` as Hatchery writes it (a bare YAML scalar) when YAML reads that back as the
    same string (or, for ``tls``, as a boolean); otherwise double-quoted, so a user named
    ``true``, ``123`` or ``a: b`` stays a string and cannot inject keys."""
    if "\n" not in value and value == value.strip():
        try:
            parsed = yamlload.safe_load(value)
        except yaml.YAMLError:
            parsed = None
        if parsed == value or (allow_bool and isinstance(parsed, bool)):
            return value
    return json.dumps(value)  # a JSON string is a YAML double-quoted scalar


def _use_tls(option: WorkspaceOption) -> str:
    return option.container.use_tls.strip()


def _rewrite(option: WorkspaceOption) -> str:
    # Hatchery writes an empty path-rewrite as `rewrite: ` (YAML null, which the Mapping schema
    # rejects); "/" is what Ambassador does with no rewrite, and what the route table means.
    return option.path_rewrite or "/"


def _v1(user: str, option: WorkspaceOption, namespace: str) -> str:
    return _V1_TEMPLATE.format(
        name=mapping_name(user),
        user=_plain_or_quoted(user),
        service=service_name(user),
        namespace=namespace,
        rewrite=_plain_or_quoted(_rewrite(option)),
        # Hatchery writes use-tls verbatim ("true"/"false"); empty would be null: say false.
        tls=_plain_or_quoted(_use_tls(option) or "false", allow_bool=True),
    )


def _v3alpha1(user: str, option: WorkspaceOption, namespace: str, idle_timeout_ms: int) -> str:
    service = f"{service_name(user)}.{namespace}.svc.cluster.local:80"
    tls = _use_tls(option)
    doc: dict[str, Any] = {
        "apiVersion": "getambassador.io/v3alpha1",
        "kind": "Mapping",
        "name": mapping_name(user),
        "hostname": "*",
        "prefix": "/",
        "headers": {"remote_user": user},
        # v3alpha1 originates TLS by the service's scheme; a `tls` string names a TLSContext.
        "service": f"https://{service}" if tls.lower() in _TRUE else service,
        "rewrite": _rewrite(option),
        "allow_upgrade": ["websocket"],
        "timeout_ms": 0,  # no total timeout: long downloads and event streams
        "idle_timeout_ms": idle_timeout_ms,
    }
    if tls.lower() not in _TRUE | _FALSE:
        doc["tls"] = tls
    return yaml.safe_dump(doc, sort_keys=False, explicit_start=True, allow_unicode=True)


def mapping_annotation(user: str, option: WorkspaceOption, namespace: str, flavor: str = "v1",
                       *, idle_timeout_ms: int = NOTEBOOK_IDLE_TIMEOUT_MS) -> str:
    """The ``getambassador.io/config`` annotation for ``user``'s Service in ``namespace``."""
    if flavor == "v1":
        return _v1(user, option, namespace)
    if flavor == "v3alpha1":
        return _v3alpha1(user, option, namespace, idle_timeout_ms)
    raise ValueError(f"unknown Mapping flavor {flavor!r}: expected one of {', '.join(FLAVORS)}")


def unfold(annotation_yaml: str) -> list[dict[str, Any]]:
    """The resources an annotation declares, unfolded as Emissary does: ``ambassador/vN``
    becomes ``getambassador.io/vN``, ``name``/``namespace`` go to ``metadata``, every other
    key to ``spec``. Raises ValueError for a document that is not a mapping."""
    resources: list[dict[str, Any]] = []
    for doc in yamlload.safe_load_all(annotation_yaml):
        if doc is None:
            continue
        if not isinstance(doc, dict):
            raise ValueError(f"an annotation document must be a mapping, not {doc!r}")
        api_version = str(doc.get("apiVersion", ""))
        if api_version.startswith("ambassador/"):
            api_version = "getambassador.io/" + api_version.removeprefix("ambassador/")
        metadata = {k: doc[k] for k in ("name", "namespace") if k in doc}
        spec = {k: v for k, v in doc.items()
                if k not in ("apiVersion", "kind", "name", "namespace")}
        resources.append({"apiVersion": api_version, "kind": doc.get("kind"),
                          "metadata": metadata, "spec": spec})
    return resources
