"""Envoy mode's fast lane: Envoy checks the Fence session itself, hatchway is asked only where
it must be.

With ``envoy.authorization: jwt`` (the default) the listener runs, in order:

1. the identity strip (``envoy_config``, an early header mutation, before the route is first
   looked up): no client-sent user header, nor copy of a verified-claim header, survives;
2. ``jwt_authn``: the access token (``Authorization: Bearer`` or the session cookie) is checked
   against the issuer's JWKS (fetched by Envoy, cached), its issuer, audience and expiry (with
   hatchway's leeway; ``exp`` required). Only a token that passes sets the verified-claim
   headers (``pur``, ``context.user.name``), whose client-sent copies were removed before
   routing; the route is then picked again. A missing or bad token sets nothing and the
   request goes on to routes that ask hatchway. One request is verified as at most one token
   (``jwt_authn_filter``'s rules): a request that may carry two goes unverified to hatchway,
   whose ``session_token`` refuses two different ones (400), as in builtin mode;
3. ``ext_authz`` (hatchway's check), enabled per route: on WebSocket upgrades (the Origin rule,
   once per socket), on every route matched by a header rather than verified claims (so a
   request Envoy could not admit gets hatchway's own precise 401 / login redirect / 403 / 503),
   and on every user route when gateway-level authorization needs hatchway (Arborist;
   users an allowlist leaves out);
4. ``credential_strip`` (Lua): a request naming two different tokens is refused (400) where
   Envoy's matchers cannot see it (a second Cookie header), and the session cookie and a
   bearer token never reach the workspace (Envoy's ``forward: false`` cannot remove a cookie
   JWT, and would hide the token from the check on the routes that ask hatchway). Off where
   the session cookie is the request's only cookie and credential, in one Cookie line
   (``lone_session_cookie``): those routes drop the Cookie header instead;
5. the router. A user's fast route matches only when the verified ``pur`` is ``access`` and
   the verified ``context.user.name`` equals the route's user.

Activity for idle culling comes from Envoy's per-user cluster counters (``proxy.envoy.activity``),
not from a per-request call.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from .. import responses
from ..sessions.tokens import TWO_SESSIONS
from . import matcher, syntax

VERIFIED_USER = "x-hatchway-verified-user"  # jwt_authn's copy of context.user.name
VERIFIED_PURPOSE = "x-hatchway-verified-purpose"  # and of pur
JWT_FILTER = "envoy.filters.http.jwt_authn"
LUA_FILTER = "envoy.filters.http.lua"
EXT_AUTHZ_FILTER = "envoy.filters.http.ext_authz"
JWKS_CLUSTER = "session_jwks"
HEADER_PROVIDER = "session_bearer"  # the same issuer and keys, read from one place each
COOKIE_PROVIDER = "session_cookie"

_T = "type.googleapis.com/envoy."
_JWT_AUTHN = _T + "extensions.filters.http.jwt_authn.v3.JwtAuthentication"
_LUA = _T + "extensions.filters.http.lua.v3.Lua"
_LUA_PER_ROUTE = _T + "extensions.filters.http.lua.v3.LuaPerRoute"
_EXT_AUTHZ_PER_ROUTE = _T + "extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute"
_EARLY_MUTATION = _T + "extensions.http.early_header_mutation.header_mutation.v3.HeaderMutation"

AUTHZ_OFF = {EXT_AUTHZ_FILTER: {"@type": _EXT_AUTHZ_PER_ROUTE, "disabled": True}}
COOKIE_DROP_FILTER = "hatchway.drop_cookie"  # Envoy's header_mutation, off by default
_HEADER_MUTATION = _T + "extensions.filters.http.header_mutation.v3.HeaderMutation"
_HEADER_MUTATION_PER_ROUTE = _HEADER_MUTATION + "PerRoute"
_DROP_COOKIE = {"request_mutations": [{"remove": "cookie"}]}
# Turned on by the first route of a request whose only cookie and credential is the session
# cookie (``lone_session_cookie``): it drops the Cookie header after hatchway's check.
COOKIE_DROP_ON = {COOKIE_DROP_FILTER: {"@type": _HEADER_MUTATION_PER_ROUTE,
                                       "mutations": _DROP_COOKIE}}
STRIP_CODE = "credential_strip"
# The Lua filter is off unless the route a request first matched turns it on (Envoy builds a
# request's filters once, for that route): only requests that may need the strip pay for it.
LUA_ON = {LUA_FILTER: {"@type": _LUA_PER_ROUTE, "name": STRIP_CODE}}


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


def _regex(name: str, pattern: str, *, invert: bool = False) -> dict[str, Any]:
    """A header matcher: ``pattern`` matches the whole value. Envoy's matchers test each
    value of a repeated header on its own (a rule matches if any value does; inverted, if
    none does), except Authorization, which Envoy joins into one value with ","."""
    matcher: dict[str, Any] = {"name": name, "string_match": {"safe_regex": {"regex": pattern}}}
    if invert:
        matcher["invert_match"] = True
    return matcher


def _lacks(name: str, text: str) -> dict[str, Any]:
    """No value of header ``name`` contains ``text`` (a substring search: a fraction of a
    regex's cost over a 1 KB token)."""
    return {"name": name, "string_match": {"contains": text}, "invert_match": True}


_PRESENT = {"present_match": True}
_ABSENT = {"present_match": False}
_SINGLE_BEARER = "[Bb][Ee][Aa][Rr][Ee][Rr] +[^ ,]+"  # one Authorization header, one token


def _one_token_rules(check: JwtCheck, header_provider: str, cookie_provider: str
                     ) -> list[dict[str, Any]]:
    """Which token jwt_authn verifies, first rule that matches wins: one request is verified as
    at most one token. jwt_authn alone verifies every token it finds (both the Bearer header
    and the cookie, ``Bearer `` anywhere in the header) and each verified token writes its own
    claim headers, so two tokens' claims made one user (issue 21: a token with ``pur`` and
    no name plus one naming bob without ``pur`` reached bob's workspace).

    A request that may carry more than one token, or one spelt in a way ``session_token``
    reads differently from Envoy (a quoted cookie, a token after another scheme), gets no
    requirement: nothing is verified, so only the routes that ask hatchway match, and
    hatchway's ``session_token`` decides (400 for two different tokens, as builtin mode). The
    patterns over-approximate (``x=access_token=`` counts too): a false alarm costs one
    hatchway check, never a wrong user.

    Regular expressions over a 1 KB token cost Envoy more than a tenth of a request
    (measured), so the usual shapes are decided by substring tests first: a browser's lone
    session cookie (no Authorization; no Cookie line holds a second cookie or a quote) and
    a lone Bearer token each meet at most one pattern."""
    name = re.escape(check.cookie_name)
    session_cookie = f".*{name}\\s*=.*"
    prefix = check.proxy_prefix

    def verify(provider: str) -> dict[str, Any]:
        # The provider first, so verified tokens are cached (Envoy skips its cache under
        # allow_missing_or_failed alone); then anything passes on unverified.
        return {"requires_any": {"requirements": [
            {"provider_name": provider}, {"allow_missing_or_failed": {}}]}}

    return [
        # no Authorization, and every Cookie line one cookie, unquoted: one token at most
        # (two lines each holding a session cookie are the credential strip's to refuse)
        {"match": {"prefix": prefix, "headers": [
            {"name": "authorization", **_ABSENT}, _lacks("cookie", ";"), _lacks("cookie", '"')]},
         "requires": verify(cookie_provider)},
        # a Bearer header (any Authorization header) and the session cookie
        {"match": {"prefix": prefix, "headers": [
            {"name": "authorization", **_PRESENT}, _regex("cookie", session_cookie)]}},
        {"match": {"prefix": prefix, "headers": [_regex("authorization", _SINGLE_BEARER)]},
         "requires": verify(header_provider)},
        # two Authorization headers (Envoy joins them with ","), another scheme, two tokens
        {"match": {"prefix": prefix, "headers": [{"name": "authorization", **_PRESENT}]}},
        # two session cookies in one Cookie line (in two lines: credential_strip); a quoted
        # value (Envoy would unquote it, session_token does not)
        {"match": {"prefix": prefix, "headers": [
            _regex("cookie", f'.*{name}\\s*=(\\s*".*|.*{name}\\s*=.*)')]}},
        {"match": {"prefix": prefix}, "requires": verify(cookie_provider)},
    ]


def jwt_authn_filter(check: JwtCheck) -> dict[str, Any]:
    """Verify the session token; on success set the user and purpose headers from its claims.
    Two providers that differ only in where they look (the header, the cookie), so that
    ``_one_token_rules`` can let each request use at most one."""
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
    # Setting a location also turns off jwt_authn's defaults (Bearer, access_token parameter).
    by_header = {**provider, "from_headers": [{"name": "Authorization",
                                               "value_prefix": "Bearer "}]}
    by_cookie = {**provider, "from_cookies": [check.cookie_name]}
    return {"name": JWT_FILTER, "typed_config": {
        "@type": _JWT_AUTHN,
        "providers": {HEADER_PROVIDER: by_header, COOKIE_PROVIDER: by_cookie},
        "rules": _one_token_rules(check, HEADER_PROVIDER, COOKIE_PROVIDER),
    }}


_LUA_SOURCE = """\
-- Builtin mode's two rules for the session credential (proxy.sessions.tokens.session_token,
-- proxy.relay.headers.strip_session_cookie), before the request goes upstream:
-- one request, one session: a request naming two different tokens (Bearer headers, %(cookie)s
-- cookies, in any Cookie header) is refused with builtin mode's 400 (Envoy's own header
-- matchers see only the first Cookie header);
-- the credential stays at the gateway: the bearer token and the %(cookie)s cookie go.
local NAME = "%(cookie)s"
local JSON = [===[%(json)s]===]
local PAGE = [===[%(page)s]===]

-- (".-" then "%%s*$" would retry the end at every character of a 1 KB token: a third of
-- Envoy's time per request, measured; ".*%%S" backtracks only over trailing blanks)
local function trim(s)
  return string.match(s, "^%%s*(.*%%S)") or ""
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
  -- The usual request first: no Authorization, one Cookie header, and in it the session
  -- cookie alone (nothing to compare it with) or no session cookie at all.
  if headers:getNumValues("authorization") == 0 then
    local count = headers:getNumValues("cookie")
    if count == 0 then return end
    if count == 1 then
      local cookie = headers:get("cookie")
      if string.find(cookie, NAME, 1, true) == nil then return end
      if string.find(cookie, ";", 1, true) == nil then
        local eq = string.find(cookie, "=", 1, true)
        if trim(eq and string.sub(cookie, 1, eq - 1) or cookie) == NAME then
          headers:remove("cookie")
        end
        return
      end
    end
  end
  local found, bearer = nil, false
  for i = 0, headers:getNumValues("authorization") - 1 do
    local auth = trim(headers:getAtIndex("authorization", i))
    local space = string.find(auth, " ", 1, true)
    if space ~= nil and string.lower(string.sub(auth, 1, space - 1)) == "bearer" then
      bearer = true
      local token = trim(string.sub(auth, space + 1))
      if token ~= "" then
        if found == nil then found = token
        elseif token ~= found then return refuse(handle) end
      end
    end
  end
  local kept, dropped = {}, false
  for i = 0, headers:getNumValues("cookie") - 1 do
    for part in string.gmatch(headers:getAtIndex("cookie", i), "[^;]+") do
      local crumb = trim(part)
      local eq = string.find(crumb, "=", 1, true)
      if trim(eq and string.sub(crumb, 1, eq - 1) or crumb) == NAME then
        dropped = true
        local token = eq and trim(string.sub(crumb, eq + 1)) or ""
        if token ~= "" then
          if found == nil then found = token
          elseif token ~= found then return refuse(handle) end
        end
      elseif crumb ~= "" then kept[#kept + 1] = crumb end
    end
  end
  if bearer then headers:remove("authorization") end
  if dropped then
    headers:remove("cookie")
    if #kept > 0 then headers:add("cookie", table.concat(kept, "; ")) end
  end
end
"""


def _long_string(text: str) -> str:
    """``text`` as the inside of a Lua ``[===[ ... ]===]`` string."""
    if "]===]" in text:
        raise ValueError("text would end a Lua long string early")
    return text


def credential_strip_filter(cookie_name: str) -> dict[str, Any]:
    """The session rules Envoy's own filters cannot state (see ``_LUA_SOURCE``), with builtin
    mode's 400 answers (``responses.error``'s bytes). Off by default: routes turn it on
    (``LUA_ON``)."""
    if not cookie_name or any(c in cookie_name for c in '"\\\n%;= '):
        raise ValueError(f"cookie name not usable in Envoy's config: {cookie_name!r}")
    return {"name": LUA_FILTER, "disabled": True, "typed_config": {
        "@type": _LUA, "source_codes": {STRIP_CODE: {"inline_string": _LUA_SOURCE % {
            "cookie": cookie_name,
            "json": _long_string(responses.error_json(TWO_SESSIONS)),
            "page": _long_string(responses.error_page(400, TWO_SESSIONS))}}}}}


def http_filters(check: JwtCheck, ext_authz: dict[str, Any], router: dict[str, Any]
                 ) -> list[dict[str, Any]]:
    """The listener's filter chain in jwt mode (order matters: see the module docstring)."""
    return [jwt_authn_filter(check), ext_authz,
            credential_strip_filter(check.cookie_name), cookie_drop_filter(), router]


def cookie_drop_filter() -> dict[str, Any]:
    """Drops the Cookie header, where a request's first route turns it on
    (``with_cookie_drop``); after hatchway's check, which still needs the cookie."""
    return {"name": COOKIE_DROP_FILTER, "disabled": True,
            "typed_config": {"@type": _HEADER_MUTATION, "mutations": _DROP_COOKIE}}


def early_header_mutations() -> list[dict[str, Any]]:
    """Before the route is picked (the connection manager picks it before any filter runs, and
    a route that skips hatchway's check must never be picked on a client's say-so): drop the
    client's copies of the verified-claim headers, in both spellings."""
    names = [n for h in (VERIFIED_USER, VERIFIED_PURPOSE) for n in (h, h.replace("-", "_"))]
    return [{"name": "hatchway.strip_verified", "typed_config": {
        "@type": _EARLY_MUTATION, "mutations": [{"remove": n} for n in names]}}]


def lone_session_cookie(cookie_name: str) -> dict[str, Any]:
    """The predicate (``proxy.envoy.matcher``) for a request whose one Cookie line is the
    session cookie and nothing else (no other cookie, no second line, no quote), and that has
    no Authorization header: one token at most, and nothing of the credential to keep. Its
    verified routes (``lone_cookie_routes``) take the credential out by dropping the Cookie
    header, without the Lua filter."""
    return matcher.all_of(matcher.is_only("cookie", cookie_name + "=", ';"'),
                          matcher.absent("authorization"))


def with_cookie_drop(routes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``routes`` as the first route of a ``lone_session_cookie`` request: the Cookie header
    drop turned on, the Lua filter not."""
    return [{**r, "name": r["name"] + "_lone",
             "typed_per_filter_config": {**r.get("typed_per_filter_config", {}),
                                         **COOKIE_DROP_ON}} for r in routes]


def with_strip(routes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``routes`` with the credential strip (the Lua filter) turned on."""
    return [{**r, "typed_per_filter_config": {**r.get("typed_per_filter_config", {}), **LUA_ON}}
            for r in routes]


def _exact(name: str, value: str) -> dict[str, Any]:
    return {"name": name, "string_match": {"exact": value}}


def verified_routes(entry: dict[str, Any], user: str, *, user_header: str, ask_hatchway: bool
                    ) -> list[dict[str, Any]]:
    """One user's routes for a token Envoy verified, first match wins (``entry`` is ext_authz
    mode's route, matched by the user header, which only hatchway's answer sets; it stays
    the user's route for a session Envoy could not verify, e.g. during a key rotation):

    - ``_ws``: a verified access token naming ``user`` (``pur`` = ``access``,
      ``context.user.name`` = ``user``, compared as Envoy verified them) asking to upgrade:
      hatchway's check runs (the Origin rule; once per socket);
    - ``_jwt``: the same token, any other request: no check unless ``ask_hatchway``
      (gateway-level authorization Envoy cannot decide).

    The route table reaches this list only for a request whose verified claims are exactly
    these (``proxy.envoy.matcher``); the routes match the claims again all the same.
    """
    claims = [_exact(VERIFIED_PURPOSE, "access"), _exact(VERIFIED_USER, user)]
    others = [h for h in entry["match"]["headers"] if h["name"] != user_header]  # Accept
    verified = {**entry["match"], "headers": claims + others}
    fast = {**entry, "name": entry["name"] + "_jwt", "match": verified,
            "request_headers_to_remove": [VERIFIED_USER, VERIFIED_PURPOSE]}
    if "route" in entry:  # the workspace sees who it serves, as Hatchery's Mapping tells it
        fast["request_headers_to_add"] = [
            *entry.get("request_headers_to_add", ()),  # the workspace's secret, if any
            syntax.header(user_header, user)]
    if not ask_hatchway:
        fast["typed_per_filter_config"] = AUTHZ_OFF
    if "route" not in entry:  # a direct answer (workspace still starting): nothing to upgrade
        return [fast]
    upgrade = {**entry, "name": entry["name"] + "_ws",
               "request_headers_to_remove": [VERIFIED_USER, VERIFIED_PURPOSE],
               "match": {**verified, "headers": [*claims, *others, {
                   "name": "upgrade",
                   "string_match": {"exact": "websocket", "ignore_case": True}}]}}
    return [upgrade, fast]
