"""Envoy's HTTP external-authorization check (also Ambassador's ``AuthService``, same protocol).

In Envoy mode a real Envoy relays the workspace traffic and asks hatchway first: it sends the
request's method, Host, cookie and Authorization to ``<prefix>/_ext_authz`` followed by the
original path. The answer is the built-in proxy's admission sequence (``admission.sequence``):
200 with the user header Envoy adds upstream (and routes by), or the 401 / login redirect / 403 /
503 the client should get, which Envoy passes through unchanged (status, headers and body; a 5xx
excepted, which Envoy replaces with an empty 503). A signed-in user with no workspace is answered
here too, with builtin mode's own page or JSON (410 "workspace stopped", 404 "no workspace"):
only hatchway knows which workspaces it stopped.

As in the built-in proxy, the session credential does not travel on to the workspace: the
answer hands Envoy the request's ``Cookie`` without the session cookie, and names the headers to
drop in ``x-envoy-auth-headers-to-remove``.
"""

from __future__ import annotations

from aiohttp import web
from yarl import URL

from .. import responses
from ..admission.answers import refusal
from ..admission.sequence import ADMISSION, ADMIT, OUTSIDE
from ..admission.session import authenticate
from ..gateway import GATEWAY
from ..relay.headers import strip_session_cookie
from ..sessions.tokens import Identity

REMOVE_HEADER = "x-envoy-auth-headers-to-remove"


def original_target(request: web.Request, mount: str) -> str:
    """The client's request target: what follows the check's mount point (Envoy appends the
    original path, query included, to ``path_prefix``), kept in its raw spelling."""
    raw = request.raw_path
    rest = raw[len(mount):] if raw.startswith(mount) else request.match_info.get("tail", "")
    return "/" + rest.lstrip("/")  # never "//host/...": that would leave the site


async def ext_authz_check(request: web.Request) -> web.StreamResponse:
    """Answer one check. Mounted (all methods) at ``<prefix>/_ext_authz{tail:.*}``."""
    gateway = request.app[GATEWAY]
    settings = gateway.settings
    mount = f"{settings.prefix.rstrip('/')}/_ext_authz"
    # Judge the client's request, not this check: a browser's login redirect must bring it
    # back to the workspace URL it asked for, on the scheme it used.
    scheme = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    client_view = request.clone(rel_url=URL(original_target(request, mount), encoded=True),
                                scheme=scheme if scheme in ("http", "https") else request.scheme)
    identity = await authenticate(client_view, gateway)  # admission steps 1 and 2
    if isinstance(identity, web.StreamResponse):
        return identity
    user = identity.user
    # A header can't carry it (and it is not a real name); edge whitespace would be trimmed in
    # transit, and "alice " routed as "alice".
    if not user.isprintable() or user != user.strip():
        return responses.error(client_view, 403, "this user name cannot be carried in a header")
    # Steps 3 and 4, as in the built-in proxy. A launching workspace is admitted: its Envoy
    # route answers the 503, as Envoy turns a 5xx from here into an empty 503. A path outside
    # the proxy prefix reaches no workspace: Envoy's own routes answer it. A page on another
    # site must not open a WebSocket that rides on the user's cookie (Envoy forwards Upgrade,
    # Origin and the client's Host).
    headers = client_view.headers
    verdict, _, detail = request.app[ADMISSION].place(
        user, client_view.raw_path, launching_ok=True,
        websocket=headers.get("Upgrade", "").lower() == "websocket",
        origin=headers.get("Origin"), host=headers.get("Host", ""))
    if verdict is not ADMIT and verdict is not OUTSIDE:
        # builtin mode's answers: 404 or 410 with its page or JSON, 403, 400
        return refusal(client_view, verdict, detail, user=user, prefix=settings.prefix,
                       proxy_prefix=settings.proxy_prefix)
    gateway.activity.touch(user)
    answer = {settings.envoy.user_header: user, **_credential_edits(request, identity,
                                                settings.sessions.cookie_name)}
    return web.Response(status=200, headers=answer)


def _credential_edits(request: web.Request, identity: Identity, cookie_name: str
                      ) -> dict[str, str]:
    """Headers that make Envoy forward the request without the session credential."""
    edits: dict[str, str] = {}
    remove: list[str] = []
    auth = request.headers.get("Authorization", "")
    if auth and auth.partition(" ")[2].strip() == identity.token:
        remove.append("authorization")
    cookies = request.headers.getall("Cookie", ())
    cookie = "; ".join(cookies)
    kept = "; ".join(k for c in cookies if (k := strip_session_cookie(c, cookie_name)))
    if kept != cookie:
        if kept:
            edits["Cookie"] = kept
        else:
            remove.append("cookie")
    if remove:
        edits[REMOVE_HEADER] = ",".join(remove)
    return edits
