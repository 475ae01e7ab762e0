"""The one object every handler reaches through ``app[GATEWAY]``: settings, route table,
backend, session validator, authorizer, activity tracker and the workspace options."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    import aiohttp

    from launcher.backend import Backend
    from launcher.options import HatcheryConfig
    from launcher.paymodels import PayModels

    from .activity import ActivityTracker
    from .authz import Authorizer
    from .routes import RouteTable
    from .sessions import SessionValidator
    from .settings import Settings
    from .trusted import Network


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
    extras: dict[str, Any] = field(default_factory=dict)  # health reporters etc.
    paymodels: PayModels | None = None  # the commons' pay models (None: none configured)
    trusted_nets: tuple[Network, ...] = ()  # peers whose REMOTE_USER is believed


GATEWAY: web.AppKey[Gateway] = web.AppKey("gateway", Gateway)
