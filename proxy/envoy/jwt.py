"""Envoy mode's fast lane: Envoy checks the Fence session itself, hatchway is asked only where
it must be.

With ``envoy.authorization: jwt`` (the default) the listener runs, in order:

1. the identity strip (``envoy_config``): no client-sent user header survives;
2. ``session_pick`` (Lua): the session token by ``proxy.sessions.session_token``'s rule (the
   ``Authorization: Bearer`` token or the session cookie; two different ones are refused with
   builtin mode's 400) is copied into one private header, the only place ``jwt_authn`` looks.
   One request is thus verified as one token: ``jwt_authn`` alone verifies every token it
   finds (and finds ``Bearer `` anywhere in the header), and each verified token writes its
   own claim headers, so two tokens' claims could make one user neither token names;
3. ``jwt_authn``: that token is checked against the issuer's JWKS (fetched by Envoy, cached),
   its issuer, audience and expiry (with hatchway's leeway; ``exp`` required). Only a token
   that passes sets the verified-claim headers (``pur``, ``context.user.name``), whose
   client-sent copies were removed before routing; the route is then picked again. A missing
   or bad token sets nothing and the request goes on to routes that ask hatchway;
4. ``ext_authz`` (hatchway's check), enabled per route: on WebSocket upgrades (the Origin rule,
   once per socket), on every route matched by a header rather than verified claims (so a
   request Envoy could not admit gets hatchway's own precise 401 / login redirect / 403 / 503),
   and on every user route when gateway-level authorization needs hatchway (Arborist;
   users an allowlist leaves out);
5. ``credential_strip`` (Lua): the session cookie, a bearer token and the private copy never
   reach the workspace (hatchway's check, on the routes that ask it, reads the originals);
6. the router. A user's fast route matches only when the verified ``pur`` is ``access`` and
   the verified ``context.user.name`` equals the route's user.

Activity for idle culling comes from Envoy's per-user cluster counters (``proxy.envoy.activity``),
not from a per-request call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .. import responses
from ..sessions import TWO_SESSIONS

VERIFIED_USER = "x-hatchway-verified-user"  # jwt_authn's copy of context.user.name
VERIFIED_PURPOSE = "x-hatchway-verified-purpose"  # and of pur
SESSION_TOKEN = "x-hatchway-session"  # the one token jwt_authn verifies, as session_pick chose it
JWT_FILTER = "envoy.filters.http.jwt_authn"
LUA_FILTER = "envoy.filters.http.lua"
PICK_FILTER = "hatchway.session_pick"
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
LUA_OFF = {name: {"@type": _LUA_PER_ROUTE, "disabled": True} for name in (PICK_FILTER, LUA_FILTER)}


@dataclass(frozen=True)
class JwtCheck:
    """What Envoy needs to check a session the way ``proxy.sessions`` does."""

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
        # Only session_pick's copy: never the Authorization header or the cookie themselves
        # (two tokens there would both be verified). Setting a location also turns off
        # jwt_authn's default ones (Bearer header, access_token query parameter).
        "from_headers": [{"name": SESSION_TOKEN}],
        # The copy goes once verified; the originals stay for hatchway's check on the routes
        # that ask it, and credential_strip takes them (and a copy that failed) out.
        "forward": False,
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


_PICK_SOURCE = """\
-- One request, one session (proxy.sessions.session_token's rule): the Bearer token or the
-- %(cookie)s cookie; two different ones are refused (400). jwt_authn verifies only the
-- token copied into %(header)s here, so no request is verified as two tokens.
local NAME = "%(cookie)s"
local COPY = "%(header)s"
local JSON = [===[%(json)s]===]
local PAGE = [===[%(page)s]===]

local function trim(s)
  return string.match(s, "^%%s*(.-)%%s*$")
end

local function refuse(handle)
  local accept = handle:headers():get("accept") or ""
  local first = string.match(accept, "^[^,]*")
  local page = string.find(accept, "text/html", 1, true) ~= nil
    and string.find(first, "application/json", 1, true) == nil
  handle:respond({[":status"] = "400", ["x-content-type-options"] = "nosniff",
                  ["content-type"] = page and "text/html; charset=utf-8"
                                          or "application/json; charset=utf-8"},
                 page and PAGE or JSON)
end

function envoy_on_request(handle)
  local headers = handle:headers()
  headers:remove(COPY)
  local found = nil
  for i = 0, headers:getNumValues("authorization") - 1 do
    local auth = trim(headers:getAtIndex("authorization", i))
    local space = string.find(auth, " ", 1, true)
    if space ~= nil and string.lower(string.sub(auth, 1, space - 1)) == "bearer" then
      local token = trim(string.sub(auth, space + 1))
      if token ~= "" then
        if found == nil then found = token
        elseif token ~= found then return refuse(handle) end
      end
    end
  end
  for i = 0, headers:getNumValues("cookie") - 1 do
    local value = headers:getAtIndex("cookie", i)
    if string.find(value, NAME, 1, true) ~= nil then
      for part in string.gmatch(value, "[^;]+") do
        local eq = string.find(part, "=", 1, true)
        if eq ~= nil and trim(string.sub(part, 1, eq - 1)) == NAME then
          local token = trim(string.sub(part, eq + 1))
          if token ~= "" then
            if found == nil then found = token
            elseif token ~= found then return refuse(handle) end
          end
        end
      end
    end
  end
  if found ~= nil then headers:add(COPY, found) end
end
"""

_STRIP_SOURCE = """\
-- The session credential stays at the gateway, as in builtin mode: drop the bearer token,
-- session_pick's copy and the %(cookie)s cookie (from every Cookie header) before the request
-- goes upstream.
local NAME = "%(cookie)s"
function envoy_on_request(handle)
  local headers = handle:headers()
  headers:remove("%(header)s")
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


def _lua(name: str, source: str) -> dict[str, Any]:
    return {"name": name, "typed_config": {"@type": _LUA, "default_source_code": {
        "inline_string": source}}}


def _usable_cookie_name(cookie_name: str) -> str:
    if not cookie_name or any(c in cookie_name for c in '"\\\n%;= []'):
        raise ValueError(f"cookie name not usable in Envoy's config: {cookie_name!r}")
    return cookie_name


def _long_string(text: str) -> str:
    """``text`` as the inside of a Lua ``[===[ ... ]===]`` string."""
    if "]===]" in text:
        raise ValueError("text would end the Lua string early")
    return text


def session_pick_filter(cookie_name: str) -> dict[str, Any]:
    """``session_token``'s rule before ``jwt_authn`` (see the module docstring), with builtin
    mode's 400 answers (``responses.error``'s bytes) for a request naming two tokens."""
    return _lua(PICK_FILTER, _PICK_SOURCE % {
        "cookie": _usable_cookie_name(cookie_name), "header": SESSION_TOKEN,
        "json": _long_string(responses.error_json(TWO_SESSIONS)),
        "page": _long_string(responses.error_page(400, TWO_SESSIONS))})


def credential_strip_filter(cookie_name: str) -> dict[str, Any]:
    return _lua(LUA_FILTER, _STRIP_SOURCE % {"cookie": _usable_cookie_name(cookie_name),
                                             "header": SESSION_TOKEN})


def http_filters(check: JwtCheck, strip: dict[str, Any], ext_authz: dict[str, Any],
                 router: dict[str, Any]) -> list[dict[str, Any]]:
    """The listener's filter chain in jwt mode (order matters: see the module docstring)."""
    return [strip, session_pick_filter(check.cookie_name), jwt_authn_filter(check), ext_authz,
            credential_strip_filter(check.cookie_name), router]


def early_header_mutations() -> list[dict[str, Any]]:
    """Before the route is picked (the connection manager picks it before any filter runs, and
    a route that skips hatchway's check must never be picked on a client's say-so): drop the
    client's copies of the verified-claim headers and of session_pick's token copy, in both
    spellings."""
    names = [n for h in (VERIFIED_USER, VERIFIED_PURPOSE, SESSION_TOKEN)
             for n in (h, h.replace("-", "_"))]
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
