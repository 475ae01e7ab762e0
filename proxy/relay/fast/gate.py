"""The fast path's admission: the one sequence (``admission.sequence``: session → authorization
→ route → Origin) asked from memory, plus what only this relay cannot carry.

The gate only ever says "relay this, here" or "not mine": it produces no error answers. Every
request it declines goes to aiohttp, which asks the same sequence and makes the 401/302/403/404/
503/400 answer, so the two paths cannot drift apart in what they refuse or how.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from launcher.routes import Route

from ...admission.sequence import ADMIT, Admission
from ...gateway import Gateway
from ...sessions.tokens import Identity, SessionError
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
        self.admission = admission = Admission.of(gateway)
        self.prefix_bytes = admission.prefix.encode()
        self.forwarded_prefix = (admission.prefix.rstrip("/") or "/").encode()
        self.cookie_name = settings.sessions.cookie_name
        self.allowed_now = admission.allowed_now  # step 2 when it needs no I/O; None: ask
        self._user_bytes: dict[str, bytes | None] = {}
        self.trusted = gateway.trusted
        self.routes = admission.routes

    def trusts(self, transport: asyncio.BaseTransport, peer: Any) -> bool:
        """Whether this peer's ``REMOTE_USER`` is believed (``sessions.trusted``): its requests
        carrying one are aiohttp's, and it has no per-address connection cap (it speaks for
        many users). From anyone else the header is no identity, only a header the rewrite
        drops, so the fast path serves them (the benchmark peers all send one). Asked once
        per connection, on accept (``Front.trusted``)."""
        return self.trusted.trusts(transport, peer)

    def token(self, req: RequestHead) -> str | None:
        """Step 1's token (the head carries at most one Cookie and one Authorization header:
        parse_request_head leaves repeats to aiohttp). None when there is none, or two:
        aiohttp answers."""
        auth = req.authorization
        cookie = req.cookie
        try:
            return self.admission.token((auth.decode("latin-1"),) if auth else (),
                                        (cookie.decode("latin-1"),) if cookie else ())
        except SessionError:
            return None

    def plan(self, req: RequestHead, identity: Identity) -> Plan | None:
        """Steps 3 and 4, and what this relay does not carry (a target that is not ASCII, an
        upgrade other than a body-less WebSocket GET, a TLS route, a user name no header may
        carry); None when aiohttp should answer instead.

        A connection that sends the same head again gets the same RequestHead: its plan for
        the same user stands while the user's route is the same (frozen) Route object, since
        steps 3 and 4 depend on nothing else (the target, Origin and Host are the head's, the
        prefix and allowed origins the settings'). A route replaced, removed or not ready is
        another object (or none), and the sequence is asked again."""
        placed = req.placed
        if placed is not None and placed[0] == identity.user:
            kept = cast(Plan, placed[1])
            if self.routes.get(identity.user) is kept[0]:
                return kept
        plan = self._plan(req, identity)
        if plan is not None:
            req.placed = (identity.user, plan)
        return plan

    def _plan(self, req: RequestHead, identity: Identity) -> Plan | None:
        try:
            raw = req.target.decode("ascii")
        except UnicodeDecodeError:
            return None
        upgrade_to = req.upgrade_to
        origin: str | None = None
        host = ""
        if upgrade_to is not None:
            if not (req.upgrade and req.method == b"GET"
                    and upgrade_to.strip().lower() == b"websocket"
                    and req.content_length <= 0 and not req.chunked):
                return None
            origin = req.origin.decode("utf-8", "surrogateescape") if req.origin else None
            host = req.host.decode("utf-8", "surrogateescape") if req.host else ""
        elif req.upgrade:
            return None
        websocket = upgrade_to is not None
        verdict, route, target = self.admission.place(identity.user, raw, websocket, origin,
                                                      host)
        if verdict is not ADMIT or route is None or route.tls:
            return None
        user = self._user(identity.user)
        if user is None:
            return None
        return route, target.encode(), user, websocket

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
