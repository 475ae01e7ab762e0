"""The one object every handler reaches through ``app[GATEWAY]``: settings, route table,
backend, session validator, authorizer, activity tracker and the workspace options; in Envoy
mode the config writer and activity poller, in builtin mode the fast path's counters. The
optional parts are declared here as small Protocols (what handlers ask of them), so this module
imports none of the modules that import it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from aiohttp import web

from launcher.clock import REAL, Clock

from .sessions.trusted import TrustedPeers

if TYPE_CHECKING:
    import aiohttp

    from launcher.activity import ActivityTracker
    from launcher.backend import Backend
    from launcher.options import HatcheryConfig
    from launcher.paymodels import PayModels
    from launcher.routes import RouteTable

    from .sessions.tokens import Identity, SessionValidator
    from .settings import Settings


class Authorizer(Protocol):
    """Who may use workspaces and launch what (``proxy.admission.authz``: everyone, a list,
    Arborist)."""

    async def may_use_workspaces(self, identity: Identity) -> bool:
        """The gateway-level gate, checked before any workspace request."""
        ...

    async def may_launch(self, identity: Identity, resource_paths: list[str]) -> bool:
        """May ``identity`` launch an option guarded by ``resource_paths``? ``[]`` is unguarded."""
        ...


class EnvoyRoutes(Protocol):
    """Envoy mode's config writer (``proxy.envoy.config.EnvoyConfigWriter``)."""

    last_error: str  # "" while Envoy's files are current

    @property
    def problem(self) -> str:
        """Why Envoy does not serve hatchway's latest files ("" when it does)."""

    def applied(self, user: str) -> bool: ...

    def route_problem(self, user: str) -> str:
        """Why Envoy does not route this user's workspace ("" when it does, or soon will)."""

    async def wait_applied(self, user: str, timeout_s: float = 3.0) -> bool: ...


class Poller(Protocol):
    """Envoy mode's activity poller (``proxy.envoy.activity.EnvoyActivityPoller``)."""

    def start(self) -> None: ...

    async def stop(self) -> None: ...


class OptionsReload(Protocol):
    """hatchery.json followed for changes (``launcher.hatchery_reload.HatcheryReloader``)."""

    def health(self) -> dict[str, object]:
        """Where the options come from and why the file on disk is not in use, if it is not."""


class RelayCounts(Protocol):
    """The fast path's counters (``proxy.relay.fast.listener.FastPath``): requests it relayed
    itself, and connections it handed to aiohttp."""

    relayed: int
    handed_off: int


@dataclass
class Gateway:
    settings: Settings
    hatchery: HatcheryConfig
    routes: RouteTable
    backend: Backend
    sessions: SessionValidator
    authz: Authorizer
    activity: ActivityTracker
    http: aiohttp.ClientSession | None = None  # for JWKS/Arborist, made on startup
    envoy: EnvoyRoutes | None = None  # Envoy mode: the config writer
    envoy_activity: Poller | None = None  # Envoy mode, jwt authorization: Envoy's counters
    fast_path: RelayCounts | None = None  # builtin mode with the fast path on
    paymodels: PayModels | None = None  # the commons' pay models (None: none configured)
    trusted: TrustedPeers = field(default_factory=TrustedPeers)  # whose REMOTE_USER counts
    hatchery_reload: OptionsReload | None = None  # hatchery.json read again when it changes
    clock: Clock = REAL  # what ages are judged by (the admin view)


GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway", Gateway)
