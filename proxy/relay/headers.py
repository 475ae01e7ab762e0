"""Header rewriting between the browser and a workspace.

Hop-by-hop headers (RFC 9110 §7.6.1, plus any named in ``Connection``) never cross the proxy;
every spelling of an identity header a client could send is dropped and ``REMOTE_USER`` is set
by hatchway alone; the session credential is not passed on to the workspace.
"""

from __future__ import annotations

from collections.abc import Iterable

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


def _canon(name: str) -> str:
    return name.lower().replace("_", "-")


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
        if low in HOP_BY_HOP or low in drop:
            continue
        canon = _canon(name)
        if canon in IDENTITY:
            continue
        if canon in FORWARDED:
            if low == "x-forwarded-for":
                prior_xff = value if not prior_xff else f"{prior_xff}, {value}"
            continue
        if websocket and low in WEBSOCKET_HANDSHAKE:
            continue
        if low == "cookie":
            value = strip_session_cookie(value, cookie_name)
            if not value:
                continue
        elif low == "authorization" and (
                route_auth or value.partition(" ")[2].strip() == session_token):
            continue  # the session credential, or any credential where the route has its own
        elif low == "host":
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
