"""Workspace options: Hatchery's ``hatchery.json`` read unchanged, checked field by field as
Go's ``json.Unmarshal`` checks it, read once into typed values (launcher.hatchery_types), and
the option ids Hatchery gives them so existing portal links keep working (computed from the
entry as Go decoded it, by launcher.gojson, which tests/go proves against Go itself)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .authz_rules import Authz, parse_authz
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
from .hatchery_types import (
    AppConfigInfo,
    Container,
    LicenseInfo,
    NextflowGlobalConfig,
    Pricing,
    PrismaConfig,
    SidecarContainer,
    decode,
    go,
    go_key,
)
from .idle import option_idle_limit_ms
from .paymodels import PayModel

# hatchway's own container field, read beside Hatchery's (not part of the option id).
HATCHWAY_CONTAINER_FIELDS = frozenset({"idle-time-limit", "max-age-seconds"})


def _known(t: Struct) -> set[str]:
    return {f.key.lower() for f in t.fields}


@dataclass(frozen=True)
class WorkspaceOption:
    """One launchable workspace: a container entry of hatchery.json and Hatchery's id for it
    (computed once, from the entry as Go decoded it)."""

    id: str
    container: Container = field(repr=False)

    @property
    def name(self) -> str:
        return self.container.name

    @property
    def authz(self) -> Authz:
        return self.container.authz

    @property
    def command(self) -> list[str]:
        return list(self.container.command)

    @property
    def args(self) -> list[str]:
        return list(self.container.args)

    @property
    def env(self) -> dict[str, str]:
        return dict(self.container.env)

    @property
    def path_rewrite(self) -> str:
        return self.container.path_rewrite

    @property
    def ready_probe(self) -> str:
        return self.container.ready_probe

    @property
    def target_port(self) -> int:
        return self.container.target_port

    @property
    def memory_limit(self) -> str:
        return self.container.memory_limit

    @property
    def gpu(self) -> bool:
        return self.container.gpu

    @property
    def idle_time_limit(self) -> int:
        """Milliseconds, as Hatchery reports it: ``shutdown_no_activity_timeout`` × 1000, or -1."""
        if self.container.idle_time_limit is not None:  # hatchway's own key (local workspaces)
            return self.container.idle_time_limit
        return option_idle_limit_ms(self.container.args)

    @property
    def unsupported(self) -> str:
        """What Hatchery sets up for this option that hatchway cannot ('' when nothing). Such
        an option stays listed (its id, and the portal's links to it, unchanged) but its launch
        is refused: a workspace without its Nextflow keys or its license would only half work."""
        c = self.container
        if c.nextflow_config.enabled:
            return "Nextflow's AWS Batch resources and keys (nextflow.enabled)"
        if c.license.enabled:
            return f"a Gen3-supplied {c.license.license_type} license (license.enabled)"
        return ""

    @property
    def max_age_seconds(self) -> int | None:
        """hatchway's own ``max-age-seconds`` (0: none), None when the option has none."""
        return self.container.max_age_seconds

    def summary(self) -> dict[str, Any]:
        """The object ``/options`` answers with, shaped as Hatchery's."""
        return {
            "name": self.name,
            "cpu-limit": self.container.cpu_limit,
            "memory-limit": self.container.memory_limit,
            "id": self.id,
            "gpu": self.gpu,
            "idle-time-limit": self.idle_time_limit,
        }


@dataclass(frozen=True)
class HatcheryConfig:
    """hatchery.json: Hatchery's ``HatcheryConfig`` struct field for field (its containers as
    WorkspaceOptions, with their ids), where it came from, and what the start-up warning says."""

    options: tuple[WorkspaceOption, ...] = ()
    source: str = ""
    user_namespace: str = go("user-namespace")
    default_pay_model: PayModel = PayModel()
    skip_node_selector: bool = go("skip-node-selector", False)
    """No ``role: jupyter`` node selector and toleration (clusters without such nodes)."""
    use_internal_services_url: bool = go("use-internal-services-url", False)
    """Talk to Fence at ``http://fence-service/`` even when GEN3_ENDPOINT is set (Go's field
    is ``UseInteralServicesURL``, sic)."""
    pay_models: tuple[PayModel, ...] = ()
    pay_models_dynamodb_table: str = go("pay-models-dynamodb-table")
    pay_models_dynamodb_arn: str = go("pay-models-dynamodb-arn")
    license_user_maps_table: str = go("license-user-maps-dynamodb-table")
    license_user_maps_gsi: str = go("license-user-maps-global-secondary-index")
    license: LicenseInfo = go("license", factory=LicenseInfo)
    sub_dir: str = go("sub-dir")
    user_volume_size: str = go("user-volume-size")
    sidecar: SidecarContainer = go("sidecar", factory=SidecarContainer)
    more_configs: tuple[AppConfigInfo, ...] = go("more-configs", ())
    prisma_config: PrismaConfig = go("prisma", factory=PrismaConfig)
    nextflow_global_config: NextflowGlobalConfig = go("nextflow-global",
                                                      factory=NextflowGlobalConfig)
    pricing: Pricing = go("pricing", factory=Pricing)
    written: tuple[str, ...] = ()
    """The top-level keys the document wrote (Go's spelling for Go's fields)."""
    unused_fields: list[str] = field(default_factory=list)
    """Keys Hatchery's json.Unmarshal drops, for the start-up warning."""
    unsupported: list[str] = field(default_factory=list)
    """Hatchery features this config uses that hatchway does not provide (yet): the start-up
    warning names each, so an operator sees what a user of theirs would miss."""

    def option(self, option_id: str) -> WorkspaceOption | None:
        for opt in self.options:
            if opt.id == option_id:
                return opt
        return None


def _unused(doc: Mapping[str, Any]) -> list[str]:
    """Keys Hatchery's json.Unmarshal drops (it matches field names ignoring case)."""
    top, cont = _known(HATCHERY_CONFIG), _known(CONTAINER) | HATCHWAY_CONTAINER_FIELDS
    unused = [k for k in doc if k.lower() not in top]
    for i, entry in enumerate(doc.get("containers") or []):
        unused += [f"containers[{i}].{k}" for k in entry if k.lower() not in cont]
    return unused


def _unsupported(config: HatcheryConfig, index: Mapping[str, int]) -> list[str]:
    """What a Hatchery user of this config would get that hatchway does not give, each note
    naming the field that asks for it and what a user then sees (``index``: an option's
    position in ``containers``)."""
    out: list[str] = []
    for i, app in enumerate(config.more_configs):
        if app.app_type == "dockstore-compose:1.0.0":
            out.append(f"more-configs[{i}] {app.name!r} ({app.path}): dockstore-compose apps "
                       "are not offered (absent from /options; a launch of its id is 400 "
                       "Invalid 'id' parameter)")
        else:
            out.append(f"more-configs[{i}].type {app.app_type!r}: ignored (Hatchery ignores "
                       "it too)")
    for opt in config.options:
        where = f"containers[{index[opt.id]}]"
        if opt.container.nextflow_config.enabled:
            out.append(f"{where}.nextflow.enabled ({opt.name!r}): Nextflow's AWS Batch "
                       "resources are not created; its launch is refused (500)")
        elif opt.container.license.enabled:
            out.append(f"{where}.license.enabled ({opt.name!r}): Gen3-supplied "
                       f"{opt.container.license.license_type} licenses are not handed out; "
                       "its launch is refused (500)")
        out.extend(opt.authz.problems)
    if config.nextflow_global_config != NextflowGlobalConfig():
        out.append("nextflow-global: unused (no Nextflow set-up)")
    if config.prisma_config.enable:
        out.append("prisma.enable: Prisma Cloud agents (Hatchery adds them to ECS workspaces) "
                   "are not deployed")
    models = [("default-pay-model", config.default_pay_model)] + [
        (f"pay-models[{i}]", m) for i, m in enumerate(config.pay_models)]
    for where, model in models:
        if model.is_zero:
            continue
        account = f"AWS account {model.aws_account_id or '(none given)'}"
        if model.ecs:
            out.append(f"{where}.ecs ({model.name!r}): ECS workspaces in {account} are not "
                       "launched; a user on it gets 500 at launch")
        elif not model.local:
            out.append(f"{where}.local is not true ({model.name!r}): Hatchery launches its "
                       f"workspaces in {account}'s EKS cluster, hatchway does not; a user on "
                       "it gets 500 at launch")
    return out


_LICENSE_FIELDS = ("license_type", "max_license_ids", "g3auto_name", "g3auto_key",
                   "file_path", "workspace_flavor")


def _check_license(config: HatcheryConfig) -> None:
    """Hatchery's LoadConfig rules: a license table needs its index, a licensed container
    needs the table and every license field."""
    source, table = config.source, config.license_user_maps_table
    if table and not config.license_user_maps_gsi:
        raise ConfigError(source, "license-user-maps-global-secondary-index",
                          "a name when license-user-maps-dynamodb-table is set", None)
    for i, opt in enumerate(config.options):
        lic = opt.container.license
        if not lic.enabled:
            continue
        if not table:
            raise ConfigError(source, "license-user-maps-dynamodb-table",
                              f"a table name, as containers[{i}] has a license", None)
        for name in _LICENSE_FIELDS:
            if not getattr(lic, name):
                raise ConfigError(source, f"containers[{i}].license.{go_key(LicenseInfo, name)}",
                                  "a value", None)


def _container(entry: Mapping[str, Any], source: str, where: str) -> Container:
    """One checked container entry (Go's view of it) as a Container."""
    if not entry.get("name"):
        raise ConfigError(source, f"{where}.name", "a non-empty string", entry.get("name"))
    itl = entry.get("idle-time-limit")
    if itl is not None and (not isinstance(itl, int) or isinstance(itl, bool)):
        raise ConfigError(source, f"{where}.idle-time-limit", "an integer", itl)
    age = entry.get("max-age-seconds")
    if age is not None and (not isinstance(age, int) or isinstance(age, bool) or age < 0):
        raise ConfigError(source, f"{where}.max-age-seconds",
                          "a whole number of seconds, 0 or more", age)
    authz = parse_authz(entry.get("authz"), source=source, where=f"{where}.authz",
                        name=str(entry["name"]))
    container: Container = decode(Container, CONTAINER, entry, authz=authz,
                                  idle_time_limit=itl, max_age_seconds=age,
                                  written=tuple(entry))
    return container


def _pay_models(doc: Mapping[str, Any], source: str) -> tuple[PayModel, tuple[PayModel, ...]]:
    configured = doc.get("pay-models") or []
    if not isinstance(configured, list):
        raise ConfigError(source, "pay-models", "a list of objects", configured)
    return (PayModel.from_config(doc.get("default-pay-model") or {}, source,
                                 "default-pay-model"),
            tuple(PayModel.from_config(p, source, f"pay-models[{i}]")
                  for i, p in enumerate(configured)))


def parse_hatchery_config(doc: Any, source: str) -> HatcheryConfig:
    """Check a hatchery.json document as Hatchery's LoadConfig does and read it into typed
    values, once. Raises ConfigError naming the field at fault; unknown fields and
    unsupported features are collected for one start-up warning."""
    if not isinstance(doc, dict):
        raise ConfigError(source, "(top level)", "a JSON object", type(doc).__name__)
    try:
        marshal(HATCHERY_CONFIG, doc)  # every type as Go's json.Unmarshal checks it
    except GoDecodeError as exc:
        raise ConfigError(source, exc.path, exc.expected, exc.got) from None
    unused = _unused(doc)
    doc = go_view(HATCHERY_CONFIG, doc)
    options: list[WorkspaceOption] = []
    index: dict[str, int] = {}  # option id -> its entry's position, for messages
    for i, raw in enumerate(doc.get("containers") or []):
        entry = go_view(CONTAINER, raw)
        container = _container(entry, source, f"containers[{i}]")
        oid = option_id(entry)  # Go's json.Marshal of the entry it decoded
        if oid in index:
            continue  # Hatchery's map by id keeps one of identical entries
        index[oid] = i
        options.append(WorkspaceOption(id=oid, container=container))
    default, configured = _pay_models(doc, source)
    config: HatcheryConfig = decode(
        HatcheryConfig, HATCHERY_CONFIG, doc, options=tuple(options), source=source,
        default_pay_model=default, pay_models=configured, written=tuple(doc),
        unused_fields=unused)
    _check_license(config)
    for i, app in enumerate(config.more_configs):
        if app.app_type == "dockstore-compose:1.0.0" and not app.name:
            raise ConfigError(source, f"more-configs[{i}].name", "a name for the app", "")
    return dataclasses.replace(config, unsupported=_unsupported(config, index))


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
