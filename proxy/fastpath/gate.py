"""The fast path's admission: what ``workspace_proxy.proxy_handler`` checks, in the same order
(session → authorization → path → route → Origin), answered from memory.

The gate only ever says "relay this, here" or "not mine": it produces no error answers. Every
request it declines goes to aiohttp, whose handler makes the 401/302/403/404/503/400 answer,
so the two paths cannot drift apart in what they refuse or how.
"""

from __future__ import annotations

from ..authz import AllowAll, Allowlist
from ..gateway import Gateway
from ..paths import PathError, normalize_path
from ..routes import Route
from ..sessions import Identity
from ..workspace_proxy import origin_allowed
from .head import RequestHead

_UNSAFE_IN_HEADER = frozenset("\r\n\x00")


# Where and how to relay one admitted request: the route, the request target the workspace
# sees (Route.rewrite + rest + query), REMOTE_USER, and whether it is a WebSocket handshake.
# (A plain tuple: it is made for every request.)
Plan = tuple[Route, bytes, bytes, bool]


class Gate:
    """Per request: may the fast path relay it, and where to."""

    def __init__(self, gateway: Gateway) -> None:
        settings = gateway.settings
        self.settings = settings
        self.sessions = gateway.sessions
        self.routes = gateway.routes
        self.authz = gateway.authz
        self.prefix = settings.proxy_prefix
        self.prefix_bytes = self.prefix.encode()
        self.forwarded_prefix = (self.prefix.rstrip("/") or "/").encode()
        self.cookie_name = settings.sessions.cookie_name
        self._cookie_key = f"{self.cookie_name}=".encode()
        # Decided here once: these two authorizers answer without I/O.
        self._allow_all = type(self.authz) is AllowAll
        self._allowlist = self.authz.users if type(self.authz) is Allowlist else None
        self._user_bytes: dict[str, bytes | None] = {}

    def token(self, req: RequestHead) -> str | None:
        """The session token, as ``SessionValidator.token_from`` finds it: a Bearer header
        first, else the session cookie. (Where a strange spelling makes this differ from
        aiohttp's reading, the token fails validation and aiohttp decides; any token the fast
        path does accept has been validated, so no spelling gains anything.)"""
        auth = req.authorization
        if auth:
            scheme, _, value = auth.strip().partition(b" ")
            value = value.strip()
            if value and scheme.lower() == b"bearer":
                return value.decode("latin-1")
        cookie = req.cookie
        if cookie and self._cookie_key in cookie:
            key = self._cookie_key
            for part in cookie.split(b";"):
                part = part.strip()
                if part.startswith(key):
                    return part[len(key):].decode("latin-1") or None
        return None

    def allowed_now(self, identity: Identity) -> bool | None:
        """The gateway-level authorization when it needs no I/O; None: ask the authorizer."""
        if self._allow_all:
            return True
        if self._allowlist is not None:
            return identity.user in self._allowlist
        return None

    def plan(self, req: RequestHead, identity: Identity) -> Plan | None:
        """Path, route and Origin checks; None when aiohttp should answer instead."""
        try:
            raw = req.target.decode("ascii")
        except UnicodeDecodeError:
            return None
        q = raw.find("?")
        path, query = (raw, "") if q < 0 else (raw[:q], raw[q:])
        prefix = self.prefix
        # normalize_path leaves a path without %, dot segments, //, \ or NUL as it is
        if "%" in path or "/." in path or "//" in path or "\\" in path or "\x00" in path:
            try:
                path = normalize_path(path)
            except PathError:
                return None
        if not path.startswith(prefix):
            return None
        user = self._user(identity.user)
        route = self.routes.get(identity.user)
        if user is None or route is None or not route.ready or route.tls:
            return None
        websocket = req.upgrade_to is not None
        if websocket:
            if not (req.upgrade and req.method == b"GET" and req.upgrade_to is not None
                    and req.upgrade_to.strip().lower() == b"websocket"
                    and req.content_length <= 0 and not req.chunked):
                return None
            origin = req.origin.decode("utf-8", "surrogateescape") if req.origin else None
            host = req.host.decode("utf-8", "surrogateescape") if req.host else ""
            if not origin_allowed(self.settings, origin, host):
                return None
        elif req.upgrade:
            return None
        target = f"{route.rewrite}{path[len(prefix):]}{query}".encode()
        return route, target, user, websocket

    def _user(self, user: str) -> bytes | None:
        """REMOTE_USER as bytes; None for a name no header may carry (aiohttp decides)."""
        known = self._user_bytes.get(user, b"")
        if known != b"":
            return known
        value = None if _UNSAFE_IN_HEADER & set(user) or not user else user.encode()
        if len(self._user_bytes) > 100_000:
            self._user_bytes.clear()
        self._user_bytes[user] = value
        return value
