"""Workspace options: Hatchery's ``hatchery.json`` read unchanged, checked field by field, and
the option ids Hatchery gives them so existing portal links keep working."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .authz_rules import OPEN, Authz, parse_authz
from .errors import ConfigError
from .gojson import (
    CONTAINER,
    HATCHERY_CONFIG,
    GoDecodeError,
    Struct,
    go_view,
    marshal,
    option_id,
)
from .idle import option_idle_limit_ms

# hatchway's own container field, read beside Hatchery's (not part of the option id).
HATCHWAY_CONTAINER_FIELDS = frozenset({"idle-time-limit"})


def _known(t: Struct) -> set[str]:
    return {f.key.lower() for f in t.fields}


@dataclass(frozen=True)
class WorkspaceOption:
    """One launchable workspace: a container entry of hatchery.json."""

    id: str
    raw: Mapping[str, Any] = field(repr=False)
    authz: Authz = field(default=OPEN, repr=False)

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
    def gpu(self) -> bool:
        return self.raw.get("gpu") is True

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
            "gpu": self.gpu,
            "idle-time-limit": self.idle_time_limit,
        }


@dataclass
class HatcheryConfig:
    """The parts of hatchery.json hatchway uses, plus the raw document for backends."""

    options: list[WorkspaceOption]
    raw: dict[str, Any]
    source: str
    unused_fields: list[str] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)
    """Hatchery features this config uses that hatchway does not provide (yet): the start-up
    warning names each, so an operator sees what a user of theirs would miss."""

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

    @property
    def skip_node_selector(self) -> bool:
        """No ``role: jupyter`` node selector and toleration (clusters without such nodes)."""
        return self.raw.get("skip-node-selector") is True

    @property
    def use_internal_services_url(self) -> bool:
        """Talk to Fence at ``http://fence-service/`` even when GEN3_ENDPOINT is set."""
        return self.raw.get("use-internal-services-url") is True

    @property
    def pay_models_dynamodb_table(self) -> str:
        return str(self.raw.get("pay-models-dynamodb-table") or "")

    @property
    def license_user_maps_table(self) -> str:
        return str(self.raw.get("license-user-maps-dynamodb-table") or "")

    @property
    def more_configs(self) -> list[dict[str, str]]:
        """``more-configs`` entries as ``{type, path, name}`` (Go matches Path/Name by case)."""
        out = []
        for info in self.raw.get("more-configs") or []:
            low = {str(k).lower(): v for k, v in (info or {}).items()}
            out.append({k: str(low.get(k) or "") for k in ("type", "path", "name")})
        return out


def _unused(doc: Mapping[str, Any]) -> list[str]:
    """Keys Hatchery's json.Unmarshal drops (it matches field names ignoring case)."""
    top, cont = _known(HATCHERY_CONFIG), _known(CONTAINER) | HATCHWAY_CONTAINER_FIELDS
    unused = [k for k in doc if k.lower() not in top]
    for i, entry in enumerate(doc.get("containers") or []):
        unused += [f"containers[{i}].{k}" for k in entry if k.lower() not in cont]
    return unused


def _unsupported(doc: Mapping[str, Any], options: list[WorkspaceOption],
                 more: list[dict[str, str]]) -> list[str]:
    """What a Hatchery user of this config would get that hatchway does not give."""
    out: list[str] = []
    for app in more:
        if app["type"] == "dockstore-compose:1.0.0":
            out.append(f"more-configs app {app['name']!r} ({app['path']}): dockstore-compose "
                       "apps are not offered")
        else:
            out.append(f"more-configs entry of type {app['type']!r} (Hatchery ignores it too)")
    for opt in options:
        if (opt.raw.get("nextflow") or {}).get("enabled") is True:
            out.append(f"{opt.name!r}: Nextflow on AWS Batch is not set up; it launches as a "
                       "plain workspace")
        if (opt.raw.get("license") or {}).get("enabled") is True:
            out.append(f"{opt.name!r}: Gen3-supplied licenses are not handed out; it launches "
                       "without one")
        out.extend(opt.authz.problems)
    if doc.get("nextflow-global"):
        out.append("nextflow-global: no Nextflow AWS set-up")
    if (doc.get("prisma") or {}).get("enable") is True:
        out.append("prisma: Prisma Cloud agents are not deployed")
    models = [doc.get("default-pay-model") or {}, *(doc.get("pay-models") or [])]
    if any(isinstance(m, Mapping) and m.get("ecs") is True for m in models):
        out.append("pay models with ecs: true: ECS workspaces (in other AWS accounts) are "
                   "not launched")
    return out


def _check_license(source: str, doc: Mapping[str, Any]) -> None:
    """Hatchery's LoadConfig rules: a license table needs its index, a licensed container
    needs the table and every license field."""
    table = doc.get("license-user-maps-dynamodb-table") or ""
    if table and not doc.get("license-user-maps-global-secondary-index"):
        raise ConfigError(source, "license-user-maps-global-secondary-index",
                          "a name when license-user-maps-dynamodb-table is set", None)
    for i, entry in enumerate(doc.get("containers") or []):
        lic = entry.get("license") or {}
        if lic.get("enabled") is not True:
            continue
        if not table:
            raise ConfigError(source, "license-user-maps-dynamodb-table",
                              f"a table name, as containers[{i}] has a license", None)
        for key in ("license-type", "max-license-ids", "g3auto-name", "g3auto-key",
                    "file-path", "workspace-flavor"):
            if not lic.get(key):
                raise ConfigError(source, f"containers[{i}].license.{key}", "a value", None)


def parse_hatchery_config(doc: Any, source: str) -> HatcheryConfig:
    """Check a hatchery.json document as Hatchery's LoadConfig does and build its options.
    Raises ConfigError naming the field at fault; unknown fields and unsupported features are
    collected for one start-up warning."""
    if not isinstance(doc, dict):
        raise ConfigError(source, "(top level)", "a JSON object", type(doc).__name__)
    try:
        marshal(HATCHERY_CONFIG, doc)  # every type as Go's json.Unmarshal checks it
    except GoDecodeError as exc:
        raise ConfigError(source, exc.path, exc.expected, exc.got) from None
    unused = _unused(doc)
    doc = go_view(HATCHERY_CONFIG, doc)
    doc["containers"] = [go_view(CONTAINER, e) for e in doc.get("containers") or []]
    _check_license(source, doc)
    options: list[WorkspaceOption] = []
    seen: set[str] = set()
    for i, entry in enumerate(doc.get("containers") or []):
        where = f"containers[{i}]"
        if not entry.get("name"):
            raise ConfigError(source, f"{where}.name", "a non-empty string", entry.get("name"))
        itl = entry.get("idle-time-limit")
        if itl is not None and (not isinstance(itl, int) or isinstance(itl, bool)):
            raise ConfigError(source, f"{where}.idle-time-limit", "an integer", itl)
        authz = parse_authz(entry.get("authz"), source=source, where=f"{where}.authz",
                            name=str(entry["name"]))
        oid = option_id(entry)
        if oid in seen:
            continue  # Hatchery's map by id keeps one of identical entries
        seen.add(oid)
        options.append(WorkspaceOption(id=oid, raw=entry, authz=authz))
    config = HatcheryConfig(options=options, raw=doc, source=source, unused_fields=unused)
    for i, app in enumerate(config.more_configs):
        if app["type"] == "dockstore-compose:1.0.0" and not app["name"]:
            raise ConfigError(source, f"more-configs[{i}].name", "a name for the app", "")
    config.unsupported = _unsupported(doc, options, config.more_configs)
    return config


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
