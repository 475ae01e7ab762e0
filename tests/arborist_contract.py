"""A small Arborist on 127.0.0.1 answering ``GET /auth/proxy`` as Arborist does, read from its
source (github.com/uc-cdis/arborist 708d910, arborist/server.go ``handleAuthProxy``,
arborist/auth.go ``authRequestFromGET``, arborist/token.go ``decodeToken``; the token checks of
github.com/uc-cdis/go-authutils 22cfd18, authutils/validate.go):

* no ``Authorization`` header → 401 ``auth request missing auth header``;
* the token is the header minus ``Bearer `` or ``bearer ``; its signature is checked against
  the JWKS (kid lookup), then only ``exp`` (not past) and ``scope`` (must hold ``openid``): no
  ``aud``, ``iss`` or ``pur`` check; any failure → 401;
* ``context`` is required; ``context.user`` is optional (a client token), but when present
  ``name`` is required; ``azp`` is the client id;
* a missing ``resource``, ``service`` or ``method`` argument → 400;
* from here on every answer carries ``REMOTE_USER: <username>`` (Go's ``Header.Set``
  canonicalises it to ``Remote_user``), the 403s too;
* no username and no client id → 403; otherwise the user's policies decide (then the client's,
  when the token has one): 200 with an empty body, or 403
  ``Unauthorized: user does not have access to this resource``.

Errors are Arborist's JSON ``{"error": {"message", "code"}}``. Policies are a table of grants
(user → resource path, service, method; ``*`` matches any service or method), and a grant on a
path covers the paths under it, as Arborist's ltree ``<@`` does; users match case-insensitively
(``LOWER(usr.name)``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import jwt
from aiohttp import web


@dataclass(frozen=True)
class Grant:
    resource: str
    service: str = "jupyterhub"
    method: str = "access"


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class ArboristContract:
    jwks_url: str
    grants: dict[str, list[Grant]] = field(default_factory=dict)  # lower-case user or client
    url: str = ""
    asked: list[dict[str, str]] = field(default_factory=list)  # what each call carried

    def grant(self, user: str, *grants: Grant) -> None:
        self.grants.setdefault(user.lower(), []).extend(grants)

    def app(self) -> web.Application:
        # Go's net/http reads heads up to 1 MiB (http.DefaultMaxHeaderBytes)
        app = web.Application(handler_args={"max_field_size": 1 << 20, "max_line_size": 1 << 20})
        app.router.add_get("/auth/proxy", self._auth_proxy)
        return app

    async def _jwks(self) -> dict[str, Any]:
        async with aiohttp.ClientSession() as http, http.get(self.jwks_url) as resp:
            return dict(await resp.json())

    async def _decode(self, token: str) -> dict[str, Any]:
        """arborist decodeToken: signature by kid, then exp and the ``openid`` scope."""
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            jwk = next(k for k in (await self._jwks())["keys"] if k.get("kid") == kid)
            key = jwt.PyJWK.from_dict(jwk)
            claims: dict[str, Any] = jwt.decode(
                token, key.key, algorithms=[key.algorithm_name or "RS256"],
                options={"verify_exp": False, "verify_aud": False, "verify_iss": False,
                         "verify_nbf": False, "verify_iat": False})
        except (jwt.PyJWTError, StopIteration) as exc:
            raise _Refused(401, f"error decoding token: {exc}") from None
        exp = claims.get("exp")
        if not isinstance(exp, int | float):
            raise _Refused(401, "error decoding token: missing or invalid `exp`")
        if exp < time.time():
            raise _Refused(401, "error decoding token: token expired")
        scope = claims.get("scope")
        if not isinstance(scope, list) or "openid" not in scope:
            raise _Refused(401, "error decoding token: missing scope openid")
        return claims

    async def _identity(self, request: web.Request) -> tuple[str, str]:
        """(username, client id) of the request's token, as authRequestFromGET reads it."""
        header = request.headers.get("Authorization", "")
        if not header:
            raise _Refused(401, "auth request missing auth header")
        token = header.removeprefix("Bearer ").removeprefix("bearer ")
        claims = await self._decode(token)
        context = claims.get("context")
        if not isinstance(context, dict):
            raise _Refused(401, "failed to decode token: missing required field `context`")
        username = ""
        if "user" in context:
            user = context["user"]
            if not isinstance(user, dict) or not isinstance(user.get("name"), str):
                raise _Refused(401, "failed to decode token: missing required field `name`")
            username = user["name"]
        client_id = claims.get("azp", "")
        if not isinstance(client_id, str):
            raise _Refused(401, "failed to decode token: field `azp` has wrong type")
        return username, client_id

    def _allowed(self, who: str, resource: str, service: str, method: str) -> bool:
        def covers(granted: str) -> bool:
            return resource == granted or resource.startswith(granted.rstrip("/") + "/")
        return any(covers(g.resource) and g.service in (service, "*") and g.method in (method, "*")
                   for g in self.grants.get(who.lower(), ()))

    async def _auth_proxy(self, request: web.Request) -> web.Response:
        self.asked.append({"authorization": request.headers.get("Authorization", ""),
                           "query": request.query_string})
        headers: dict[str, str] = {}
        try:
            username, client_id = await self._identity(request)
            resource, service, method = (request.query.get(k, "")
                                         for k in ("resource", "service", "method"))
            if not (resource and service and method):
                raise _Refused(400, "auth proxy request missing an argument")
            headers["Remote_user"] = username
            if not username and not client_id:
                raise _Refused(403, "unauthorized: did not provide a username and/or client "
                                    "ID in request")
            allowed = ((not username or self._allowed(username, resource, service, method))
                       and (not client_id
                            or self._allowed(f"client:{client_id}", resource, service, method)))
            if not allowed:
                raise _Refused(403, "Unauthorized: user does not have access to this resource")
        except _Refused as exc:
            body = {"error": {"message": exc.message, "code": exc.status}}
            return web.Response(status=exc.status, text=json.dumps(body), headers=headers,
                                content_type="application/json")
        return web.Response(status=200, headers=headers)
