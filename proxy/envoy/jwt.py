"""Envoy mode's fast lane: Envoy checks the Fence session itself, hatchway is asked only where
it must be.

With ``envoy.authorization: jwt`` (the default) the listener runs, in order:

1. the identity strip (``envoy_config``): no client-sent user header survives;
2. ``jwt_authn``: the access token (``Authorization: Bearer`` or the session cookie) is checked
   against the issuer's JWKS (fetched by Envoy, cached), its issuer, audience and expiry (with
   hatchway's leeway; ``exp`` required). Only a token that passes sets the verified-claim
   headers (``pur``, ``context.user.name``), whose client-sent copies were removed before
   routing; the route is then picked again. A missing or bad token sets nothing and the
   request goes on to routes that ask hatchway;
3. ``ext_authz`` (hatchway's check), enabled per route: on WebSocket upgrades (the Origin rule,
   once per socket), on every route matched by a header rather than verified claims (so a
   request Envoy could not admit gets hatchway's own precise 401 / login redirect / 403 / 503),
   and on every user route when gateway-level authorization needs hatchway (Arborist;
   users an allowlist leaves out);
4. ``credential_strip`` (Lua): the session cookie and a bearer token never reach the workspace
   (Envoy's ``forward: false`` cannot remove a cookie JWT, and would hide the token from the
   check on the routes that ask hatchway);
5. the router. A user's fast route matches only when the verified ``pur`` is ``access`` and
   the verified ``context.user.name`` equals the route's user.

Activity for idle culling comes from Envoy's per-user cluster counters (``proxy.envoy.activity``),
not from a per-request call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

VERIFIED_USER = "x-hatchway-verified-user"  # jwt_authn's copy of context.user.name
VERIFIED_PURPOSE = "x-hatchway-verified-purpose"  # and of pur
JWT_FILTER = "envoy.filters.http.jwt_authn"
LUA_FILTER = "envoy.filters.http.lua"
EXT_AUTHZ_FILTER = "envoy.filters.http.ext_authz"
JWKS_CLUSTER = "session_jwks"
PROVIDER = "session"

_T = "type.googleapis.com/envoy."
_JWT_AUTHN = _T + "extensions.filters.http.jwt_authn.v3.JwtAuthentication"
_LUA = _T + "extensions.filters.http.lua.v3.Lua"
_LUA_PER_ROUTE = _T + "extensions.filters.http.lua.v3.LuaPerRoute"
_EXT_AUTHZ_PER_ROUTE = _T + "extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute"
_EARLY_MUTATION = _T + "extensions.http.early_header_mutation.header_mutation.v3.HeaderMutation"

AUTHZ_OFF = {EXT_AUTHZ_FILTER: {"@type": _EXT_AUTHZ_PER_ROUTE, "disabled": True}}
LUA_OFF = {LUA_FILTER: {"@type": _LUA_PER_ROUTE, "disabled": True}}


@dataclass(frozen=True)
class JwtCheck:
    """What Envoy needs to check a session the way ``proxy.sessions.tokens`` does."""

    issuer: str
    jwks_url: str
    audience: str = "gen3"
    cookie_name: str = "access_token"
    leeway_s: int = 30
    jwks_cache_s: float = 3600
    proxy_prefix: str = "/lw-workspace/proxy/"
    user_header: str = "remote_user"


@dataclass(frozen=True)
class JwksEndpoint:
    host: str
    port: int
    tls: bool
    url: str


def jwks_endpoint(url: str) -> JwksEndpoint:
    """Where Envoy fetches the keys (its own cluster: Fence, or hatchway in dev mode)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) JWKS URL: {url!r}")
    tls = parts.scheme == "https"
    return JwksEndpoint(parts.hostname, parts.port or (443 if tls else 80), tls, url)


def jwt_authn_filter(check: JwtCheck) -> dict[str, Any]:
    """Verify the session token; on success set the user and purpose headers from its claims."""
    provider: dict[str, Any] = {
        "issuer": check.issuer,
        "audiences": [check.audience],
        "require_expiration": True,
        "clock_skew_seconds": check.leeway_s,
        "remote_jwks": {
            "http_uri": {"uri": check.jwks_url, "cluster": JWKS_CLUSTER, "timeout": "5s"},
            "cache_duration": f"{check.jwks_cache_s:g}s",
            # Fetched when the listener starts, not on the first request; until it arrives,
            # tokens fail here and hatchway's check (the catch-all route) answers instead.
            "async_fetch": {},
            "retry_policy": {"num_retries": 3},
        },
        "from_headers": [{"name": "Authorization", "value_prefix": "Bearer "}],
        "from_cookies": [check.cookie_name],
        # Kept in place for hatchway's check on the routes that ask it; the Lua filter takes
        # the credential out before the workspace (Envoy cannot remove a cookie JWT itself).
        "forward": True,
        # Routes match these two headers; the client's copies are gone before routing
        # (early_header_mutations). Claims in metadata would be exact too, but building them
        # per request costs Envoy a third of its throughput (measured).
        "claim_to_headers": [{"header_name": VERIFIED_USER, "claim_name": "context.user.name"},
                             {"header_name": VERIFIED_PURPOSE, "claim_name": "pur"}],
        "clear_route_cache": True,
        # A token seen before skips the signature check (as hatchway's own session cache).
        "jwt_cache_config": {"jwt_cache_size": 10_000},
    }
    return {"name": JWT_FILTER, "typed_config": {
        "@type": _JWT_AUTHN,
        "providers": {PROVIDER: provider},
        "rules": [{"match": {"prefix": check.proxy_prefix},
                   # The provider first, so verified tokens are cached (Envoy skips its cache
                   # under allow_missing_or_failed alone); then anything passes on unverified.
                   "requires": {"requires_any": {"requirements": [
                       {"provider_name": PROVIDER}, {"allow_missing_or_failed": {}}]}}}],
    }}


_LUA_SOURCE = """\
-- The session credential stays at the gateway, as in builtin mode: drop the bearer token and
-- the %(cookie)s cookie (from every Cookie header) before the request goes upstream.
local NAME = "%(cookie)s"
function envoy_on_request(handle)
  local headers = handle:headers()
  local auth = headers:get("authorization")
  if auth ~= nil and string.lower(string.sub(auth, 1, 7)) == "bearer " then
    headers:remove("authorization")
  end
  local n = headers:getNumValues("cookie")
  if n == 0 then return end
  local kept, dropped = {}, false
  for i = 0, n - 1 do
    local value = headers:getAtIndex("cookie", i)
    for part in string.gmatch(value, "[^;]+") do
      local crumb = string.match(part, "^%%s*(.-)%%s*$")
      local name = string.match(crumb, "^([^=]*)")
      if name == NAME then dropped = true
      elseif crumb ~= "" then kept[#kept + 1] = crumb end
    end
  end
  if not dropped then return end
  headers:remove("cookie")
  if #kept > 0 then headers:add("cookie", table.concat(kept, "; ")) end
end
"""


def credential_strip_filter(cookie_name: str) -> dict[str, Any]:
    if not cookie_name or any(c in cookie_name for c in '"\\\n%;= '):
        raise ValueError(f"cookie name not usable in Envoy's config: {cookie_name!r}")
    return {"name": LUA_FILTER, "typed_config": {
        "@type": _LUA, "default_source_code": {
            "inline_string": _LUA_SOURCE % {"cookie": cookie_name}}}}


def http_filters(check: JwtCheck, strip: dict[str, Any], ext_authz: dict[str, Any],
                 router: dict[str, Any]) -> list[dict[str, Any]]:
    """The listener's filter chain in jwt mode (order matters: see the module docstring)."""
    return [strip, jwt_authn_filter(check), ext_authz,
            credential_strip_filter(check.cookie_name), router]


def early_header_mutations() -> list[dict[str, Any]]:
    """Before the route is picked (the connection manager picks it before any filter runs, and
    a route that skips hatchway's check must never be picked on a client's say-so): drop the
    client's copies of the verified-claim headers, in both spellings."""
    names = [n for h in (VERIFIED_USER, VERIFIED_PURPOSE) for n in (h, h.replace("-", "_"))]
    return [{"name": "hatchway.strip_verified", "typed_config": {
        "@type": _EARLY_MUTATION, "mutations": [{"remove": n} for n in names]}}]


def _exact(name: str, value: str) -> dict[str, Any]:
    return {"name": name, "string_match": {"exact": value}}


def user_routes(entry: dict[str, Any], user: str, *, user_header: str, ask_hatchway: bool
                ) -> list[dict[str, Any]]:
    """One user's routes in jwt mode, first match wins:

    - ``_ws``: a verified access token naming ``user`` (``pur`` = ``access``,
      ``context.user.name`` = ``user``, compared as Envoy verified them) asking to upgrade:
      hatchway's check runs (the Origin rule; once per socket);
    - ``_jwt``: the same token, any other request: no check unless ``ask_hatchway``
      (gateway-level authorization Envoy cannot decide);
    - ``entry`` itself, ext_authz mode's route: the user header, which only hatchway's answer
      sets here, so the check always runs on it (a session Envoy could not verify yet, e.g.
      during a key rotation, is still admitted).
    """
    claims = [_exact(VERIFIED_PURPOSE, "access"), _exact(VERIFIED_USER, user)]
    others = [h for h in entry["match"]["headers"] if h["name"] != user_header]  # Accept
    verified = {**entry["match"], "headers": claims + others}
    fast = {**entry, "name": entry["name"] + "_jwt", "match": verified,
            "request_headers_to_remove": [VERIFIED_USER, VERIFIED_PURPOSE]}
    if "route" in entry:  # the workspace sees who it serves, as Hatchery's Mapping tells it
        fast["request_headers_to_add"] = [
            *entry.get("request_headers_to_add", ()),  # the workspace's secret, if any
            {"header": {"key": user_header, "value": user},
             "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}]
    if not ask_hatchway:
        fast["typed_per_filter_config"] = AUTHZ_OFF
    if "route" not in entry:  # a direct answer (workspace still starting): nothing to upgrade
        return [fast, entry]
    upgrade = {**entry, "name": entry["name"] + "_ws",
               "request_headers_to_remove": [VERIFIED_USER, VERIFIED_PURPOSE],
               "match": {**verified, "headers": [*claims, *others, {
                   "name": "upgrade",
                   "string_match": {"exact": "websocket", "ignore_case": True}}]}}
    return [upgrade, fast, entry]
