"""Hatchery's option id: the MD5 of Go's ``json.Marshal`` of its ``Container`` struct.

Go marshals a struct field by field in declaration order, zero values included, so the id
depends on every field Hatchery knows, not on the JSON text the operator wrote. This module
re-creates that byte string. ``friends`` (Kubernetes containers) follow the Kubernetes field
order for their top-level keys with ``omitempty``; their nested objects keep the given order.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

# (json key, Go kind). Kinds: s string, i int, b bool, f32 float32, ls []string,
# ms map[string]string, or a nested struct spec (a tuple of the same pairs).
_AUTHZ_RULE: tuple[tuple[str, Any], ...] = (
    ("and", "lrule"), ("or", "lrule"), ("resource_paths", "ls"), ("pay_models", "ls"),
)
_AUTHZ = (("version", "f32"), ("rules", _AUTHZ_RULE))
_NEXTFLOW = (
    ("enabled", "b"), ("job-image-whitelist", "ls"), ("s3-bucket-whitelist", "ls"),
    ("compute-environment-type", "s"), ("instance-ami", "s"), ("instance-ami-builder-arn", "s"),
    ("instance-type", "s"), ("instance-min-vcpus", "i"), ("instance-max-vcpus", "i"),
)
_LICENSE = (
    ("enabled", "b"), ("license-type", "s"), ("max-license-ids", "i"), ("g3auto-name", "s"),
    ("g3auto-key", "s"), ("file-path", "s"), ("workspace-flavor", "s"),
)
CONTAINER = (
    ("name", "s"), ("cpu-limit", "s"), ("memory-limit", "s"), ("image", "s"),
    ("pull_policy", "s"), ("env", "ms"), ("target-port", "i"), ("args", "ls"),
    ("command", "ls"), ("path-rewrite", "s"), ("use-tls", "s"), ("ready-probe", "s"),
    ("lifecycle-pre-stop", "ls"), ("lifecycle-post-start", "ls"), ("user-uid", "i"),
    ("group-uid", "i"), ("fs-gid", "i"), ("user-volume-location", "s"),
    ("gen3-volume-location", "s"), ("use-shared-memory", "s"), ("friends", "friends"),
    ("nextflow", _NEXTFLOW), ("license", _LICENSE), ("authz", _AUTHZ),
)
# k8s.io/api/core/v1.Container field order; all omitempty except name and resources.
_K8S_CONTAINER_ORDER = (
    "name", "image", "command", "args", "workingDir", "ports", "envFrom", "env", "resources",
    "resizePolicy", "restartPolicy", "volumeMounts", "volumeDevices", "livenessProbe",
    "readinessProbe", "startupProbe", "lifecycle", "terminationMessagePath",
    "terminationMessagePolicy", "imagePullPolicy", "securityContext", "stdin", "stdinOnce", "tty",
)


def go_string(s: str) -> str:
    """A JSON string as Go's encoder writes it (HTML-safe: <, > and & escaped)."""
    out = json.dumps(s, ensure_ascii=False)
    return (out.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _go_float32(x: float) -> str:
    """The shortest decimal that reads back as the same float32 (strconv 'f', -1, 32)."""
    f32 = struct.unpack("f", struct.pack("f", x))[0]
    if f32 == 0 or not math.isfinite(f32):
        return "0"
    text = repr(f32)
    for prec in range(1, 10):
        text = f"{f32:.{prec}g}"
        if struct.unpack("f", struct.pack("f", float(text)))[0] == f32:
            break
    return format(Decimal(text), "f")


def _value(kind: Any, v: Any) -> str:
    if isinstance(kind, tuple):
        return _struct(kind, v if isinstance(v, Mapping) else {})
    if kind == "s":
        return go_string(v if isinstance(v, str) else "")
    if kind == "i":
        return str(int(v or 0))
    if kind == "b":
        return "true" if v else "false"
    if kind == "f32":
        return _go_float32(float(v or 0))
    if kind == "ls":
        return "null" if v is None else "[" + ",".join(go_string(x) for x in v) + "]"
    if kind == "ms":
        if v is None:
            return "null"
        return "{" + ",".join(f"{go_string(k)}:{go_string(v[k])}" for k in sorted(v)) + "}"
    if kind == "lrule":
        return "null" if v is None else "[" + ",".join(_struct(_AUTHZ_RULE, r) for r in v) + "]"
    if kind == "friends":
        return "null" if v is None else "[" + ",".join(_friend(f) for f in v) + "]"
    raise ValueError(kind)


def _struct(spec: tuple[tuple[str, Any], ...], obj: Mapping[str, Any]) -> str:
    return "{" + ",".join(f"{go_string(k)}:{_value(kind, obj.get(k))}" for k, kind in spec) + "}"


def _plain(v: Any) -> str:
    if isinstance(v, str):
        return go_string(v)
    if isinstance(v, Mapping):
        return "{" + ",".join(f"{go_string(k)}:{_plain(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ",".join(_plain(x) for x in v) + "]"
    return json.dumps(v)


def _friend(c: Mapping[str, Any]) -> str:
    parts = []
    for key in _K8S_CONTAINER_ORDER:
        v = c.get(key)
        if key == "name":
            parts.append(f'"name":{go_string(v or "")}')
        elif key == "resources":
            parts.append(f'"resources":{_plain(v or {})}')
        elif v not in (None, "", [], {}, False, 0):
            parts.append(f"{go_string(key)}:{_plain(v)}")
    return "{" + ",".join(parts) + "}"


def marshal_container(entry: Mapping[str, Any]) -> str:
    """Go's ``json.Marshal(container)`` for one hatchery.json container entry."""
    return _struct(CONTAINER, entry)


def option_id(entry: Mapping[str, Any]) -> str:
    return hashlib.md5(marshal_container(entry).encode("utf-8")).hexdigest()
