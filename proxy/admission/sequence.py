"""The one admission sequence: may this request reach a workspace, and which one?

Every path that can reach a workspace asks the same four questions, in this order, here: the
fast path (``relay.fast``), the aiohttp relay (``relay.fallback.handler``) and Envoy's check
(``envoy.ext_authz``).

1. **session**: who is calling. The token by ``sessions.tokens.session_token`` (Bearer first,
   else the session cookie; two different tokens are refused), proven by the SessionValidator,
   which answers a token seen before from memory. (A trusted peer's ``REMOTE_USER`` is the
   other way in: ``session.authenticate`` asks it first, and the fast path hands such requests
   to aiohttp.)
2. **authorization**: may this user use workspaces at all (``authz``).
3. **route**: the request target normalised once (``paths``), inside the proxy prefix, and the
   user's own route, ready: the session's user picks the workspace, never a path or a header.
4. **Origin**: a WebSocket upgrade only from the gateway's own origin, or an allowed one.

The sequence decides and never answers: each caller acts on its verdict. The fast path relays
an admitted request and hands every other one to aiohttp; aiohttp and Envoy's check answer with
``answers.refusal`` (steps 1-2: ``session.authenticate``), so a refusal reads the same on every
path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from enum import IntEnum
from urllib.parse import urlsplit

from aiohttp import web

from launcher.routes import Route, RouteTable

from ..gateway import Authorizer, Gateway
from ..sessions.tokens import Identity, SessionValidator, session_token
from ..settings import Settings
from .authz import AllowAll, Allowlist
from .paths import PathError, normalize_path


class Verdict(IntEnum):
    """Steps 3 and 4 decided (steps 1 and 2 refuse by SessionError, AuthzUnavailable, False)."""

    ADMIT = 0
    BAD_PATH = 1  # the target does not normalise (400)
    OUTSIDE = 2  # the path leaves the proxy prefix (400)
    BARE_PREFIX = 3  # the proxy prefix without its slash (302 to it)
    NO_WORKSPACE = 4  # no route (404; 410 when this gateway stopped the workspace)
    LAUNCHING = 5  # a route that is not ready yet (503)
    CROSS_ORIGIN = 6  # a WebSocket upgrade from another site (403)


# Module names for the verdicts: a module global costs ~20 ns, ``Verdict.ADMIT`` (the enum's
# class attribute lookup) ~300 ns on CPython 3.11, and the fast path asks for every request.
ADMIT, BAD_PATH, OUTSIDE, BARE_PREFIX = (Verdict.ADMIT, Verdict.BAD_PATH, Verdict.OUTSIDE,
                                         Verdict.BARE_PREFIX)
NO_WORKSPACE, LAUNCHING, CROSS_ORIGIN = (Verdict.NO_WORKSPACE, Verdict.LAUNCHING,
                                         Verdict.CROSS_ORIGIN)

# (verdict, the user's route, the target the workspace sees: Route.rewrite + rest + query).
# BAD_PATH carries the reason instead of a target, BARE_PREFIX the query. A plain tuple: one
# is made for every request.
Placement = tuple[Verdict, Route | None, str]


class Admission:
    """One gateway's admission: the sequence's steps over its settings, sessions, authorizer
    and route table, with what they need worked out once."""

    __slots__ = ("sessions", "known", "authz", "routes", "cookie_name", "prefix",
                 "_allowed_origins", "_own_origin", "_allow_all", "_allowlist")

    def __init__(self, settings: Settings, sessions: SessionValidator, authz: Authorizer,
                 routes: RouteTable) -> None:
        self.sessions = sessions
        # known(token): the Identity of a token proven before and still valid, from memory
        # (the validator's own method, bound here: no extra call per request)
        self.known: Callable[[str], Identity | None] = sessions.cached
        self.authz = authz
        self.routes = routes
        self.cookie_name = settings.sessions.cookie_name
        self.prefix = settings.proxy_prefix
        self._allowed_origins = frozenset(settings.allowed_origins)
        own = urlsplit(settings.public_url) if settings.public_url else None
        self._own_origin = f"{own.scheme}://{own.netloc}" if own is not None else None
        # these two authorizers answer without I/O
        self._allow_all = type(authz) is AllowAll
        self._allowlist = authz.users if type(authz) is Allowlist else None

    @classmethod
    def of(cls, gateway: Gateway) -> Admission:
        return cls(gateway.settings, gateway.sessions, gateway.authz, gateway.routes)

    # -- 1. session ------------------------------------------------------------------------
    def token(self, authorizations: Iterable[str], cookie_headers: Iterable[str]) -> str | None:
        """The request's session token (SessionError 400 when it names two)."""
        return session_token(authorizations, cookie_headers, self.cookie_name)

    async def identify(self, token: str) -> Identity:
        """The Identity ``token`` proves, or SessionError saying why not."""
        return await self.sessions.validate(token)  # (from memory when it can)

    # -- 2. authorization ------------------------------------------------------------------
    def allowed_now(self, identity: Identity) -> bool | None:
        """May this user use workspaces, when the authorizer answers without I/O; else None."""
        if self._allow_all:
            return True
        if self._allowlist is not None:
            return identity.user in self._allowlist
        return None

    async def allowed(self, identity: Identity) -> bool:
        """May this user use workspaces (AuthzUnavailable when the authorizer can't say)."""
        now = self.allowed_now(identity)
        return now if now is not None else await self.authz.may_use_workspaces(identity)

    # -- 3. route, then 4. Origin ----------------------------------------------------------
    def place(self, user: str, raw_target: str, websocket: bool = False,
              origin: str | None = None, host: str = "", *, launching_ok: bool = False
              ) -> Placement:
        """Where ``user``'s request for ``raw_target`` goes. ``launching_ok``: a route not
        ready yet is admitted (Envoy's own route answers the 503 for it). (Positional
        arguments: the fast path asks for every request, and keywords cost it ~300 ns.)"""
        q = raw_target.find("?")  # the query keeps its "?"
        path, query = (raw_target, "") if q < 0 else (raw_target[:q], raw_target[q:])
        prefix = self.prefix
        # normalize_path leaves a path that starts with "/" and has no %, dot segment, //, \
        # or NUL as it is: the usual request under the prefix skips it
        if (not path.startswith(prefix) or "%" in path or "/." in path or "//" in path
                or "\\" in path or "\x00" in path):
            try:
                path = normalize_path(path)
            except PathError as exc:
                return BAD_PATH, None, str(exc)
            if not path.startswith(prefix):
                if path + "/" == prefix:
                    return BARE_PREFIX, None, query
                return OUTSIDE, None, ""
        route = self.routes.get(user)
        if route is None:
            return NO_WORKSPACE, None, ""
        if not (route.ready or launching_ok):
            return LAUNCHING, route, ""
        if websocket and not self.origin_allowed(origin, host):
            return CROSS_ORIGIN, route, ""
        return ADMIT, route, f"{route.rewrite}{path[len(prefix):]}{query}"

    def origin_allowed(self, origin: str | None, host: str) -> bool:
        """Cookie-authenticated WebSockets are open to cross-site hijacking unless the Origin
        is the gateway's own (``public_url``, else the request's Host) or explicitly allowed.
        Clients that send no Origin are not browsers."""
        if origin is None or origin in self._allowed_origins:
            return True
        if self._own_origin is not None:
            return origin == self._own_origin
        parsed = urlsplit(origin)
        return bool(host) and parsed.netloc == host and parsed.scheme in ("http", "https")


ADMISSION: web.AppKey[Admission] = web.AppKey("admission", Admission)
