"""Header rewriting between the browser and a workspace: one table of request-header rules
(``REQUEST_RULES``) that both relays follow, the aiohttp one here and the fast path's bytes.

Hop-by-hop headers (RFC 9110 §7.6.1, plus any named in ``Connection``) never cross the proxy;
every spelling of an identity header a client could send is dropped and ``REMOTE_USER`` is set
by hatchway alone; the session credential is not passed on to the workspace.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum

from multidict import CIMultiDict, CIMultiDictProxy

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization",
    "te", "trailer", "trailers", "transfer-encoding", "upgrade", "http2-settings",
})
WEBSOCKET_HANDSHAKE = frozenset({
    "sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions",
    "sec-websocket-protocol", "sec-websocket-accept",
})
# Compared after lower-casing and turning "_" into "-", so REMOTE_USER, Remote-User and
# remote_user are one name here (servers such as WSGI/CGI ones merge them the same way).
IDENTITY = frozenset({
    "remote-user", "x-remote-user", "x-forwarded-user", "x-forwarded-email",
    "x-forwarded-preferred-username", "x-forwarded-groups", "x-auth-request-user",
    "x-auth-request-email", "x-auth-request-preferred-username", "x-auth-request-groups",
    "x-user", "x-user-id", "x-webauth-user", "x-authenticated-user", "x-auth-user",
    "x-remote-group", "remote-group", "x-gen3-user",
})
# Headers that frame or address a message. Named in ``Connection`` they would be dropped by one
# hop while another still frames the message by them (request smuggling: the body becomes a
# second request with headers of the client's choosing), so such a message is refused whole.
FRAMING = frozenset({"content-length", "transfer-encoding", "host"})
# Compared like IDENTITY: X_Forwarded_For and X-Real_IP are these too.
FORWARDED = frozenset({
    "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-forwarded-prefix",
    "x-forwarded-port", "forwarded", "x-real-ip",
})


class Rule(IntEnum):
    """What the request rewrite does with a header, by its lower-cased name."""

    KEEP = 0
    DROP = 1  # hop-by-hop, identity, forwarding: never from the client
    XFF = 2  # X-Forwarded-For: earlier hops kept, this client appended
    COOKIE = 3  # the session cookie taken out, the workspace's own kept
    AUTH = 4  # the session credential out (any credential where the route has its own)
    HOST = 5  # kept, and copied to X-Forwarded-Host
    HANDSHAKE = 6  # Sec-WebSocket-*: kept, except where the relay makes its own handshake


# The one table both request rewrites follow: ``upstream_request_headers`` (aiohttp) and the
# fast path's byte-level writer (``fast.head.upstream_request_head``). A name not here is kept,
# unless it spells an IDENTITY or FORWARDED name with "_" (``request_rule``).
REQUEST_RULES: dict[str, Rule] = {
    **{n: Rule.DROP for n in HOP_BY_HOP | IDENTITY | FORWARDED},
    **{n: Rule.HANDSHAKE for n in WEBSOCKET_HANDSHAKE},
    "x-forwarded-for": Rule.XFF, "cookie": Rule.COOKIE, "authorization": Rule.AUTH,
    "host": Rule.HOST,
}
UNDERSCORED = IDENTITY | FORWARDED  # dropped in every -/_ spelling


def request_rule(low: str) -> Rule:
    """The rule for a lower-cased header name."""
    rule = REQUEST_RULES.get(low, Rule.KEEP)
    if rule == Rule.KEEP and "_" in low and low.replace("_", "-") in UNDERSCORED:
        return Rule.DROP
    return rule


def connection_named(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> frozenset[str]:
    """Header names listed in ``Connection`` (they are hop-by-hop for this message only)."""
    names: set[str] = set()
    for value in headers.getall("Connection", ()):
        names.update(t.strip().lower() for t in value.split(",") if t.strip())
    return frozenset(names)


def names_framing(headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> bool:
    """Whether ``Connection`` names a FRAMING header (the message is refused)."""
    return not FRAMING.isdisjoint(connection_named(headers))


def strip_session_cookie(cookie_header: str, cookie_name: str) -> str:
    """Remove the session cookie from a ``Cookie`` header, keeping the workspace's own."""
    if cookie_name not in cookie_header:
        return cookie_header
    kept = [c for c in cookie_header.split(";")
            if c.strip().split("=", 1)[0].strip() != cookie_name]
    return ";".join(kept).strip()


def upstream_request_headers(
    incoming: CIMultiDictProxy[str],
    *,
    user: str,
    client_ip: str,
    scheme: str,
    prefix: str,
    session_token: str,
    cookie_name: str,
    websocket: bool = False,
    route_auth: str = "",
) -> CIMultiDict[str]:
    """Headers to send the workspace: incoming minus hop-by-hop, identity and forwarding
    headers, plus hatchway's own ``REMOTE_USER`` and ``X-Forwarded-*``."""
    drop = connection_named(incoming)
    out: CIMultiDict[str] = CIMultiDict()
    prior_xff = ""
    host = ""
    for name, value in incoming.items():
        low = name.lower()
        if low in drop:
            continue
        rule = request_rule(low)
        if rule == Rule.KEEP:
            pass
        elif rule == Rule.DROP:
            continue
        elif rule == Rule.XFF:
            prior_xff = value if not prior_xff else f"{prior_xff}, {value}"
            continue
        elif rule == Rule.HANDSHAKE:
            if websocket:
                continue  # aiohttp's client makes the workspace handshake its own
        elif rule == Rule.COOKIE:
            value = strip_session_cookie(value, cookie_name)
            if not value:
                continue
        elif rule == Rule.AUTH:
            if route_auth or value.partition(" ")[2].strip() == session_token:
                continue  # the session credential, or any where the route has its own
        else:  # Rule.HOST
            host = value
        out.add(name, value)
    out["X-Forwarded-For"] = f"{prior_xff}, {client_ip}" if prior_xff else client_ip
    out["X-Forwarded-Proto"] = scheme
    if host:
        out["X-Forwarded-Host"] = host
    out["X-Forwarded-Prefix"] = prefix.rstrip("/") or "/"
    out["REMOTE_USER"] = user
    if route_auth:  # the workspace's secret (Route.auth)
        out["Authorization"] = route_auth
    return out


def downstream_response_headers(
    incoming: CIMultiDictProxy[str], extra_drop: Iterable[str] = ()
) -> CIMultiDict[str]:
    """Workspace response headers for the browser, minus hop-by-hop ones."""
    drop = connection_named(incoming) | {n.lower() for n in extra_drop}
    out: CIMultiDict[str] = CIMultiDict()
    for name, value in incoming.items():
        low = name.lower()
        if low in HOP_BY_HOP or low in drop or low == "content-length":
            continue
        out.add(name, value)
    return out
