"""Workspace options: Hatchery's ``hatchery.json`` read unchanged, checked field by field, and
the option ids Hatchery gives them so existing portal links keep working."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import ConfigError
from .gojson import option_id
from .idle import option_idle_limit_ms

# Fields of a container entry and the JSON type each must have. Everything DESIGN.md lists is
# accepted; unknown keys are kept (Hatchery ignores them too) but reported once.
_STR, _INT, _LIST = "a string", "an integer", "a list of strings"
_DICT, _BOOL = "an object", "a boolean"
CONTAINER_FIELDS: dict[str, str] = {
    "name": _STR, "cpu-limit": _STR, "memory-limit": _STR, "image": _STR, "pull_policy": _STR,
    "env": _DICT, "target-port": _INT, "args": _LIST, "command": _LIST, "path-rewrite": _STR,
    "use-tls": _STR, "ready-probe": _STR, "lifecycle-pre-stop": _LIST,
    "lifecycle-post-start": _LIST, "user-uid": _INT, "group-uid": _INT, "fs-gid": _INT,
    "user-volume-location": _STR, "gen3-volume-location": _STR, "use-shared-memory": _STR,
    "friends": "a list of Kubernetes container objects", "authz": _DICT, "gpu": _DICT,
    "nextflow": _DICT, "license": _DICT, "idle-time-limit": _INT,
}
SIDECAR_FIELDS: dict[str, str] = {
    "cpu-limit": _STR, "memory-limit": _STR, "image": _STR, "env": _DICT, "args": _LIST,
    "command": _LIST, "lifecycle-pre-stop": _LIST,
}
TOP_FIELDS: dict[str, str] = {
    "user-namespace": _STR, "sub-dir": _STR, "containers": "a list of container objects",
    "sidecar": _DICT, "user-volume-size": _STR, "skip-node-selector": _BOOL,
    "default-pay-model": _DICT, "pay-models": "a list of objects", "license": _DICT,
    "more-configs": "a list of objects", "pay-models-dynamodb-table": _STR,
    "license-user-maps-dynamodb-table": _STR, "license-user-maps-global-secondary-index": _STR,
    "prisma": _DICT, "nextflow-global": _DICT, "gen3-user-license-dynamodb-table": _STR,
}


@dataclass(frozen=True)
class WorkspaceOption:
    """One launchable workspace: a container entry of hatchery.json."""

    id: str
    raw: Mapping[str, Any] = field(repr=False)

    @property
    def name(self) -> str:
        return str(self.raw.get("name", ""))

    @property
    def command(self) -> list[str]:
        return list(self.raw.get("command") or [])

    @property
    def args(self) -> list[str]:
        return list(self.raw.get("args") or [])

    @property
    def env(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in (self.raw.get("env") or {}).items()}

    @property
    def path_rewrite(self) -> str:
        return str(self.raw.get("path-rewrite") or "")

    @property
    def ready_probe(self) -> str:
        return str(self.raw.get("ready-probe") or "")

    @property
    def target_port(self) -> int:
        return int(self.raw.get("target-port") or 0)

    @property
    def memory_limit(self) -> str:
        return str(self.raw.get("memory-limit") or "")

    @property
    def resource_paths(self) -> list[str]:
        """Arborist resources guarding this option (``authz.rules.resource_paths``)."""
        rules = (self.raw.get("authz") or {}).get("rules") or {}
        return list(rules.get("resource_paths") or [])

    @property
    def idle_time_limit(self) -> int:
        """Milliseconds, as Hatchery reports it: ``shutdown_no_activity_timeout`` × 1000, or -1."""
        if "idle-time-limit" in self.raw:  # hatchway's own key (local workspaces)
            return int(self.raw["idle-time-limit"])
        return option_idle_limit_ms(self.args)

    def summary(self) -> dict[str, Any]:
        """The object ``/options`` answers with, shaped as Hatchery's."""
        return {
            "name": self.name,
            "cpu-limit": self.raw.get("cpu-limit", ""),
            "memory-limit": self.raw.get("memory-limit", ""),
            "id": self.id,
            "gpu": self.raw.get("gpu") or None,
            "idle-time-limit": self.idle_time_limit,
        }


@dataclass
class HatcheryConfig:
    """The parts of hatchery.json hatchway uses, plus the raw document for backends."""

    options: list[WorkspaceOption]
    raw: dict[str, Any]
    source: str
    unused_fields: list[str] = field(default_factory=list)

    def option(self, option_id: str) -> WorkspaceOption | None:
        for opt in self.options:
            if opt.id == option_id:
                return opt
        return None

    @property
    def sub_dir(self) -> str:
        return str(self.raw.get("sub-dir") or "")

    @property
    def user_namespace(self) -> str:
        return str(self.raw.get("user-namespace") or "")


def _check(source: str, path: str, value: Any, expected: str) -> None:
    ok = {
        _STR: lambda v: isinstance(v, str),
        _INT: lambda v: isinstance(v, int) and not isinstance(v, bool),
        _BOOL: lambda v: isinstance(v, bool),
        _DICT: lambda v: isinstance(v, dict),
        _LIST: lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
    }.get(expected, lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v))
    if value is not None and not ok(value):
        raise ConfigError(source, path, expected, value)


def parse_hatchery_config(doc: Any, source: str) -> HatcheryConfig:
    """Check a hatchery.json document and build its options. Raises ConfigError naming the
    field at fault; unknown fields are collected in ``unused_fields`` for one warning."""
    if not isinstance(doc, dict):
        raise ConfigError(source, "(top level)", "a JSON object", type(doc).__name__)
    unused: list[str] = []
    for key, value in doc.items():
        if key in TOP_FIELDS:
            _check(source, key, value, TOP_FIELDS[key])
        else:
            unused.append(key)
    for key, value in (doc.get("sidecar") or {}).items():
        if key in SIDECAR_FIELDS:
            _check(source, f"sidecar.{key}", value, SIDECAR_FIELDS[key])
    options: list[WorkspaceOption] = []
    seen: set[str] = set()
    for i, entry in enumerate(doc.get("containers") or []):
        where = f"containers[{i}]"
        for key, value in entry.items():
            if key in CONTAINER_FIELDS:
                _check(source, f"{where}.{key}", value, CONTAINER_FIELDS[key])
            else:
                unused.append(f"{where}.{key}")
        if not entry.get("name"):
            raise ConfigError(source, f"{where}.name", "a non-empty string", entry.get("name"))
        for key in ("env",):
            for k, v in (entry.get(key) or {}).items():
                if not isinstance(v, str):
                    raise ConfigError(source, f"{where}.{key}.{k}", "a string", v)
        _check_authz(source, f"{where}.authz", entry.get("authz"))
        oid = option_id(entry)
        if oid in seen:
            raise ConfigError(source, where, "a container entry unlike every other",
                              "a duplicate")
        seen.add(oid)
        options.append(WorkspaceOption(id=oid, raw=entry))
    return HatcheryConfig(options=options, raw=doc, source=source, unused_fields=unused)


def _check_authz(source: str, where: str, authz: Any) -> None:
    """Hatchery's rule: version 0.1 and exactly one of and/or/resource_paths/pay_models."""
    if not authz:
        return
    if authz.get("version") != 0.1:
        raise ConfigError(source, f"{where}.version", "0.1", authz.get("version"))
    rules = authz.get("rules")
    if not isinstance(rules, dict):
        raise ConfigError(source, f"{where}.rules", "an object", rules)
    present = [k for k in ("and", "or", "resource_paths", "pay_models") if rules.get(k)]
    if len(present) != 1:
        raise ConfigError(
            source, f"{where}.rules",
            "exactly one of 'and', 'or', 'resource_paths', 'pay_models'", sorted(rules),
        )


def load_hatchery_file(path: str) -> HatcheryConfig:
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except OSError as exc:
        raise ConfigError(path, "(file)", "a readable file", exc.strerror) from None
    except json.JSONDecodeError as exc:
        raise ConfigError(path, f"(line {exc.lineno}, column {exc.colno})",
                          "valid JSON", exc.msg) from None
    return parse_hatchery_config(doc, path)
