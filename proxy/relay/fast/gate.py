"""The fast path's admission: what ``workspace_proxy.proxy_handler`` checks, in the same order
(session → authorization → path → route → Origin), answered from memory.

The gate only ever says "relay this, here" or "not mine": it produces no error answers. Every
request it declines goes to aiohttp, whose handler makes the 401/302/403/404/503/400 answer,
so the two paths cannot drift apart in what they refuse or how.
"""

from __future__ import annotations

from launcher.routes import Route

from ...admission.authz import AllowAll, Allowlist
from ...admission.paths import PathError, normalize_path
from ...gateway import Gateway
from ...sessions.tokens import Identity, SessionError, session_token
from ...sessions.trusted import address_trusted
from ..fallback.handler import origin_allowed
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
        # Decided here once: these two authorizers answer without I/O.
        self._allow_all = type(self.authz) is AllowAll
        self._allowlist = self.authz.users if type(self.authz) is Allowlist else None
        self._user_bytes: dict[str, bytes | None] = {}
        self._trusted_nets = gateway.trusted_nets

    def trusts(self, client: str) -> bool:
        """Whether this peer's ``REMOTE_USER`` is believed (``proxy.trusted``): its requests
        carrying one are aiohttp's, and it has no per-address connection cap (it speaks for
        many users). From anyone else the header is no identity, only a header the rewrite
        drops, so the fast path serves them (the benchmark peers all send one). Asked once
        per connection (``Front.trusted``)."""
        return address_trusted(client, self._trusted_nets)

    def token(self, req: RequestHead) -> str | None:
        """The session token by ``proxy.sessions.session_token``, the rule every path shares
        (the head carries at most one Cookie and one Authorization header: parse_request_head
        leaves repeats to aiohttp). None when there is none, or two: aiohttp answers."""
        auth = req.authorization
        cookie = req.cookie
        try:
            return session_token((auth.decode("latin-1"),) if auth else (),
                                 (cookie.decode("latin-1"),) if cookie else (), self.cookie_name)
        except SessionError:
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
        upgrade_to = req.upgrade_to
        websocket = upgrade_to is not None
        if upgrade_to is not None:
            if not (req.upgrade and req.method == b"GET"
                    and upgrade_to.strip().lower() == b"websocket"
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
