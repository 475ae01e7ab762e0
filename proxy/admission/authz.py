"""Authorization: may this user use workspaces at all, and may they launch this option?

Two questions, as in Gen3: revproxy asks Arborist about ``/workspace`` before any request reaches
Hatchery, and Hatchery evaluates each option's ``authz`` rules (launcher/authz_rules.py), whose
``resource_paths`` leaves ask Arborist and whose ``pay_models`` leaves read the user's pay model.
The Arborist answer comes from a pluggable Authorizer: everyone (dev), a fixed list of users, or
Arborist. When the authorizer can't decide, the caller answers 503: authorization fails closed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

import aiohttp
from cachetools import TTLCache

from launcher.clock import REAL, Clock
from launcher.errors import ConfigError
from launcher.options import WorkspaceOption

from ..gateway import Authorizer
from ..sessions.tokens import Identity

if TYPE_CHECKING:
    from ..settings import AdminSettings, AuthzSettings


class AuthzUnavailable(Exception):
    """The authorizer can't decide right now (Arborist down or talking nonsense)."""


class AllowAll:
    """Every signed-in user may do everything: the embedded default's single-user laptop."""

    async def may_use_workspaces(self, identity: Identity) -> bool:
        return True

    async def may_launch(self, identity: Identity, resource_paths: list[str]) -> bool:
        return True


class Allowlist:
    """Only the listed users get workspaces, for a small deployment without Arborist. It has no
    resource model, so listed users may launch every option."""

    def __init__(self, users: Iterable[str]) -> None:
        self.users = frozenset(users)

    async def may_use_workspaces(self, identity: Identity) -> bool:
        return identity.user in self.users

    async def may_launch(self, identity: Identity, resource_paths: list[str]) -> bool:
        return identity.user in self.users


class Arborist:
    """Gen3's policy engine, asked with the user's own token. Decisions are cached for
    ``cache_seconds`` because the gateway gate is asked on every new page load; failures are
    not cached, so Arborist coming back is noticed on the next request."""

    def __init__(self, base_url: str, session_getter: Callable[[], aiohttp.ClientSession], *,
                 resource: str = "/workspace", service: str = "jupyterhub",
                 cache_seconds: float = 10.0, timeout_seconds: float = 5.0,
                 clock: Clock = REAL) -> None:
        self.base_url = base_url.rstrip("/")
        self.resource = resource
        self.service = service
        self._session = session_getter
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._decisions: TTLCache[tuple[str, Any], bool] = TTLCache(10_000, cache_seconds,
                                                                  timer=clock.monotonic)

    async def may_use_workspaces(self, identity: Identity) -> bool:
        return await self.may(identity, self.resource, "access")

    async def may(self, identity: Identity, resource: str, method: str) -> bool:
        """Arborist's ``/auth/proxy`` question for ``service``: may ``identity`` do
        ``method`` on ``resource``?"""
        key = (identity.token, ("proxy", resource, method))
        decision = self._decisions.get(key)
        if decision is None:
            params = {"resource": resource, "service": self.service, "method": method}
            decision = await self._ask("GET", "/auth/proxy", identity.token, params=params)
            self._decisions[key] = decision
        return decision

    async def may_launch(self, identity: Identity, resource_paths: list[str]) -> bool:
        if not resource_paths:
            return True
        key = (identity.token, tuple(resource_paths))
        decision = self._decisions.get(key)
        if decision is None:
            body = {
                "user": {"token": identity.token},
                "requests": [{"resource": path,
                              "action": {"service": self.service, "method": "launch"}}
                             for path in resource_paths],
            }
            decision = await self._ask("POST", "/auth/request", identity.token, json=body)
            self._decisions[key] = decision
        return decision

    async def _ask(self, method: str, path: str, token: str, **kwargs: Any) -> bool:
        """200 answers (with ``{"auth": bool}`` where a body is expected), 401/403 deny,
        anything else is AuthzUnavailable."""
        url = self.base_url + path
        try:
            async with self._session().request(
                method, url, headers={"Authorization": f"Bearer {token}"},
                timeout=self._timeout, **kwargs,
            ) as resp:
                if resp.status in (401, 403):
                    return False
                if resp.status != 200:
                    raise AuthzUnavailable(f"Arborist {path} answered HTTP {resp.status}")
                if method == "GET":
                    return True
                answer = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise AuthzUnavailable(f"Arborist {path}: {exc or type(exc).__name__}") from exc
        auth = answer.get("auth") if isinstance(answer, dict) else None
        if not isinstance(auth, bool):
            raise AuthzUnavailable(f"Arborist {path} answered without a boolean 'auth'")
        return auth


PayModelLookup = Callable[[Identity], Awaitable[str | None]]
"""The name of a user's current pay model (``workspace_type``), None when they have none."""


async def may_launch_option(authz: Authorizer, identity: Identity, option: WorkspaceOption,
                            pay_model: PayModelLookup | None = None) -> bool:
    """May ``identity`` see and launch ``option``? Its whole ``authz`` block decides: and/or,
    resource paths through ``authz``, pay models through ``pay_model`` (without one, a
    ``pay_models`` rule is false). Raises AuthzUnavailable when Arborist can't answer."""

    async def may_access(paths: list[str]) -> bool:
        return await authz.may_launch(identity, paths)

    async def current() -> str | None:
        assert pay_model is not None
        return await pay_model(identity)

    return await option.authz.allows(may_access, current if pay_model is not None else None)


async def may_administer(authz: Authorizer, admin: AdminSettings, identity: Identity) -> bool:
    """May ``identity`` see every workspace and stop any? Arborist decides by ``admin.resource``
    and ``admin.method`` (a token is needed: without one Arborist answers no); without Arborist,
    ``admin.users`` does. Raises AuthzUnavailable when Arborist can't answer."""
    if isinstance(authz, Arborist):
        return bool(identity.token) and await authz.may(identity, admin.resource, admin.method)
    return identity.user in admin.users


def build_authorizer(settings: AuthzSettings,
                     session_getter: Callable[[], aiohttp.ClientSession], *,
                     clock: Clock = REAL) -> Authorizer:
    """The authorizer ``authz.mode`` names."""
    if settings.mode == "all":
        return AllowAll()
    if settings.mode == "allowlist":
        return Allowlist(settings.users)
    if settings.mode == "arborist":
        return Arborist(settings.arborist_url, session_getter, resource=settings.resource,
                        service=settings.service, cache_seconds=settings.cache_seconds,
                        timeout_seconds=settings.timeout_seconds, clock=clock)
    raise ConfigError("settings", "authz.mode", "all, allowlist or arborist", settings.mode)
