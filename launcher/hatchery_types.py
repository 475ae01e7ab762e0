"""hatchery.json's parts as typed, frozen values: the structs of Hatchery's config.go, one
dataclass each, field for field (Go's names in snake case, Go's types: ``string`` → str,
``bool`` → bool, any int → int, ``float32`` → float rounded to single precision, ``[]string``
→ tuple, ``map[string]string`` → dict), zero values where the JSON says nothing.

``decode`` fills one from a document that ``launcher.gojson`` has already checked against the
same struct (so a wrong type never gets here: it was a ConfigError naming the field), reading
keys as Go's ``json.Unmarshal`` does (exact spelling first, else ignoring case). Which Go field
a Python field holds is its ``go("json-key")`` metadata; ``tests/test_options.py`` checks that
every field of every struct in ``launcher.gojson`` has one.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .authz_rules import OPEN, Authz
from .gojson import (
    F32,
    F64,
    K8S_CONTAINER,
    Int,
    Map,
    Slice,
    Struct,
    float32,
    marshal,
    struct_fields,
)

_JSON = "json"


def go(key: str, default: Any = "", *, factory: Any = None) -> Any:
    """A field holding Go's field with JSON name ``key``."""
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={_JSON: key})
    return dataclasses.field(default=default, metadata={_JSON: key})


def go_key(cls: type, name: str) -> str:
    """The JSON name of field ``name`` of ``cls`` (for messages naming a field)."""
    return str(next(f for f in dataclasses.fields(cls) if f.name == name).metadata[_JSON])


@dataclass(frozen=True)
class NextflowConfig:
    enabled: bool = go("enabled", False)
    job_image_whitelist: tuple[str, ...] = go("job-image-whitelist", ())
    s3_bucket_whitelist: tuple[str, ...] = go("s3-bucket-whitelist", ())
    compute_environment_type: str = go("compute-environment-type")
    instance_ami: str = go("instance-ami")
    instance_ami_builder_arn: str = go("instance-ami-builder-arn")
    instance_type: str = go("instance-type")
    instance_min_vcpus: int = go("instance-min-vcpus", 0)
    instance_max_vcpus: int = go("instance-max-vcpus", 0)


@dataclass(frozen=True)
class LicenseInfo:
    enabled: bool = go("enabled", False)
    license_type: str = go("license-type")
    max_license_ids: int = go("max-license-ids", 0)
    g3auto_name: str = go("g3auto-name")
    g3auto_key: str = go("g3auto-key")
    file_path: str = go("file-path")
    workspace_flavor: str = go("workspace-flavor")


@dataclass(frozen=True)
class Container:
    """One ``containers`` entry: a workspace option as the operator configured it."""

    name: str = go("name")
    gpu: bool = go("gpu", False)
    cpu_limit: str = go("cpu-limit")
    memory_limit: str = go("memory-limit")
    image: str = go("image")
    pull_policy: str = go("pull_policy")
    env: Mapping[str, str] = go("env", factory=dict)
    target_port: int = go("target-port", 0)
    args: tuple[str, ...] = go("args", ())
    command: tuple[str, ...] = go("command", ())
    path_rewrite: str = go("path-rewrite")
    use_tls: str = go("use-tls")
    ready_probe: str = go("ready-probe")
    lifecycle_pre_stop: tuple[str, ...] = go("lifecycle-pre-stop", ())
    lifecycle_post_start: tuple[str, ...] = go("lifecycle-post-start", ())
    user_uid: int = go("user-uid", 0)
    group_uid: int = go("group-uid", 0)
    fs_gid: int = go("fs-gid", 0)
    user_volume_location: str = go("user-volume-location")
    gen3_volume_location: str = go("gen3-volume-location")
    use_shared_memory: str = go("use-shared-memory")
    friends: tuple[Mapping[str, Any], ...] = go("friends", ())
    """Kubernetes Containers as k8s.io/api encodes them (unknown keys dropped, quantities
    canonical): what Hatchery puts in the pod."""
    nextflow_config: NextflowConfig = go("nextflow", factory=NextflowConfig)
    license: LicenseInfo = go("license", factory=LicenseInfo)
    authz: Authz = OPEN  # Go's AuthzConfig, read by launcher.authz_rules
    idle_time_limit: int | None = None
    """hatchway's own ``idle-time-limit`` (ms), for local workspaces; not Hatchery's."""
    max_age_seconds: int | None = None
    """hatchway's own ``max-age-seconds``: the option's maximum age (0: none), replacing the
    global ``max_age_seconds``; not Hatchery's (launcher.lifetime)."""
    written: tuple[str, ...] = ()
    """The keys the entry wrote (Go's spelling for Go's fields), for warnings."""


@dataclass(frozen=True)
class SidecarContainer:
    cpu_limit: str = go("cpu-limit")
    memory_limit: str = go("memory-limit")
    image: str = go("image")
    env: Mapping[str, str] = go("env", factory=dict)
    args: tuple[str, ...] = go("args", ())
    command: tuple[str, ...] = go("command", ())
    lifecycle_pre_stop: tuple[str, ...] = go("lifecycle-pre-stop", ())


@dataclass(frozen=True)
class AppConfigInfo:
    app_type: str = go("type")
    path: str = go("Path")
    name: str = go("Name")


@dataclass(frozen=True)
class PrismaConfig:
    console_address: str = go("console-address")
    console_version: str = go("console-version")
    enable: bool = go("enable", False)


@dataclass(frozen=True)
class NextflowGlobalConfig:
    s3_objects_expiration_days: int = go("s3-objects-expiration-days", 0)
    sample_config_public_image: str = go("sample-config-public-image")
    imagebuilder_reader_role_arn: str = go("imagebuilder-reader-role-arn")


@dataclass(frozen=True)
class Pricing:
    cpu: float = go("cpu", 0.0)
    memory: float = go("memory", 0.0)


# Go's struct name → its dataclass (k8s.io/api's Container, also named "Container", is kept
# as the JSON Kubernetes takes: see Container.friends).
CLASSES: dict[str, type] = {cls.__name__: cls for cls in (
    NextflowConfig, LicenseInfo, Container, SidecarContainer, AppConfigInfo, PrismaConfig,
    NextflowGlobalConfig, Pricing)}


def _value(t: Any, v: Any) -> Any:
    """Go's value of type ``t`` for JSON value ``v`` (already checked), in Python's types."""
    if t is K8S_CONTAINER:
        return json.loads(marshal(K8S_CONTAINER, v))
    if isinstance(t, Struct):
        return decode(CLASSES[t.name], t, v)
    if isinstance(t, Slice):
        return tuple(_value(t.elem, x) for x in v or ())
    if isinstance(t, Map):
        return {str(k): _value(t.elem, x) for k, x in (v or {}).items()}
    if isinstance(t, Int):
        return int(v or 0)
    if t == F32:
        return float32(v or 0)
    if t == F64:
        return float(v or 0)
    if t == "bool":
        return v is True
    if t == "string":
        return v or ""
    raise TypeError(t)


def decode(cls: type, t: Struct, doc: Any, **given: Any) -> Any:
    """A ``cls`` holding ``doc`` as Go decodes it into struct ``t``; fields without a Go
    field (and those in ``given``) are taken from ``given`` or left at their default."""
    got = {f.key: (f.type, v) for f, v in struct_fields(t, doc or {})}
    values = dict(given)
    for f in dataclasses.fields(cls):
        key = f.metadata.get(_JSON)
        if key is not None and f.name not in values and key in got:
            go_type, v = got[key]
            values[f.name] = _value(go_type, v)
    return cls(**values)
