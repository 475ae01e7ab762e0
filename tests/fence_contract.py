"""A small Fence on 127.0.0.1 speaking the contract hatchway, its gateway sessions and the Gen3
SDK rely on, as Fence serves it under ``/user`` (source: uc-cdis/fence,
fence/blueprints/storage_creds/api.py, fence/resources/storage/cdis_jwt.py,
fence/blueprints/oauth2.py ``revoke_token``, fence/jwt/blacklist.py):

* ``GET /user/.well-known/jwks``: the RS256 key every token here is signed with (a gateway in
  ``jwks`` session mode checks this Fence's user tokens as it checks a real one's);
* ``POST /user/credentials/api/`` with a user access token carrying the ``credentials`` scope
  and ``{"scope": [...]}`` → ``{"key_id", "api_key"}``; the key's scopes are the requested
  ones, ``fence`` and ``openid``, and the token's, never ``credentials`` (api.py 94-106);
* ``DELETE /user/credentials/api/<key_id>`` with such a token, the key the token's user's →
  204, else 404; a token without ``credentials`` → 403 (api.py 117-141);
* ``POST /user/credentials/{api,cdis}/access_token`` with ``{"api_key"}`` → ``{"access_token"}``
  whose scopes are the key's (cdis_jwt.py 60-62); a revoked key → 401;
* ``POST /user/oauth2/revoke``, form-encoded ``token=<api key>`` with ``Authorization: Bearer``
  of a token of the same ``sub`` → 200 and the key is revoked (oauth2.py 370-404: anyone may
  revoke their own API keys, refresh tokens and task tokens; another's needs Arborist's
  ``/services/fence/admin`` ``delete``, which nobody here has → 403). Both tokens must carry
  ``openid`` (validate_jwt's default scope). Client (Basic auth) revocation is not served.
  ``clients_only_revoke`` plays a Fence from before that path (fence 92f06793, #1356): there
  ``/oauth2/revoke`` is authlib's RFC 7009 endpoint alone, and a caller without client
  credentials gets ``invalid_client``.
"""

from __future__ import annotations

import functools
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.helpers import public_jwk

KID = "fence-contract-key"


@functools.cache
def _signing_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class FenceContract:
    url: str = ""
    minted: list[dict[str, Any]] = field(default_factory=list)  # {key_id, user, scope}
    revoked: set[str] = field(default_factory=set)
    access_tokens: list[str] = field(default_factory=list)  # issued from API keys
    revocations: list[str] = field(default_factory=list)  # how each key went: "delete"/"oauth2"
    fail_mint_with: int = 0  # answer the mint with this status instead
    clients_only_revoke: bool = False  # a Fence before users could revoke their own tokens
    next_keys: list[tuple[str, str]] = field(default_factory=list)  # (key_id, api_key) to mint
    _runner: web.AppRunner | None = None

    @property
    def jwks_url(self) -> str:
        return self.url + "/user/.well-known/jwks"

    def user_token(self, user: str) -> str:
        """A user's session token, as Fence issues one at login."""
        return self._jwt({"sub": user, "pur": "access",
                          "scope": ["openid", "user", "data", "credentials"],
                          "context": {"user": {"name": user}}})

    def _jwt(self, claims: dict[str, Any], ttl: int = 1200) -> str:
        now = int(time.time())
        return jwt.encode({"iss": self.url + "/user", "aud": ["gen3"], "iat": now,
                           "exp": now + ttl, "jti": str(uuid.uuid4()), **claims},
                          _signing_key(), algorithm="RS256", headers={"kid": KID})

    def _decode(self, token: str, *, verify_exp: bool = True) -> dict[str, Any] | None:
        try:
            return dict(jwt.decode(token, _signing_key().public_key(), algorithms=["RS256"],
                                   audience="gen3", options={"verify_exp": verify_exp}))
        except jwt.PyJWTError:
            return None

    def _claims(self, request: web.Request) -> dict[str, Any] | None:
        auth = request.headers.get("Authorization", "")
        if not auth.lower().startswith("bearer "):
            return None
        return self._decode(auth[7:])

    async def _jwks(self, request: web.Request) -> web.Response:
        return web.json_response({"keys": [public_jwk(_signing_key(), KID)]})

    async def _mint(self, request: web.Request) -> web.Response:
        claims = self._claims(request)
        if claims is None or "credentials" not in claims.get("scope", []):
            return web.json_response({"error": "no credentials scope"}, status=401)
        if self.fail_mint_with:
            return web.json_response({"error": "refused"}, status=self.fail_mint_with)
        scope = [s for s in {*(await request.json()).get("scope", []), "fence", "openid",
                             *claims["scope"]} if s != "credentials"]
        key_id = str(uuid.uuid4())
        api_key = self._jwt({"sub": claims["sub"], "pur": "api_key", "jti": key_id,
                             "scope": sorted(scope)}, ttl=30 * 86400)
        if self.next_keys:  # a fixed key, for tests comparing whole objects
            key_id, api_key = self.next_keys.pop(0)
        self.minted.append({"key_id": key_id, "user": claims["sub"],
                            "scope": (await request.json()).get("scope")})
        return web.json_response({"key_id": key_id, "api_key": api_key})

    async def _revoke(self, request: web.Request) -> web.Response:
        claims = self._claims(request)
        if claims is None or "credentials" not in claims.get("scope", []):
            return web.json_response({"error": "no credentials scope"}, status=403)
        key_id = request.match_info["key_id"]
        if not any(k["key_id"] == key_id and k["user"] == claims["sub"] for k in self.minted):
            return web.json_response({"error": "not found"}, status=404)
        self.revoked.add(key_id)
        self.revocations.append("delete")
        return web.Response(status=204)

    async def _access_token(self, request: web.Request) -> web.Response:
        body = await request.json()
        key = self._decode(str(body.get("api_key")))
        if key is None or key.get("pur") != "api_key" or key["jti"] in self.revoked:
            return web.json_response({"error": "invalid or revoked api_key"}, status=401)
        token = self._jwt({"sub": key["sub"], "pur": "access", "scope": key["scope"],
                           "context": {"user": {"name": key["sub"]}}})
        self.access_tokens.append(token)
        return web.json_response({"access_token": token})

    async def _oauth2_revoke(self, request: web.Request) -> web.Response:
        if self.clients_only_revoke:
            return web.json_response({"error": "invalid_client"}, status=401)
        if request.headers.get("Content-Type") != "application/x-www-form-urlencoded":
            return web.json_response({"error": "expects a form with a 'token' field"},
                                     status=400)
        form = await request.post()
        target = self._decode(str(form.get("token") or ""), verify_exp=False)
        revoker = self._claims(request)
        if target is None or revoker is None or "openid" not in target.get("scope", []) \
                or "openid" not in revoker.get("scope", []) \
                or (target.get("pur") == "api_key" and target["jti"] in self.revoked):
            return web.json_response({"error": "invalid token"}, status=401)
        if revoker["sub"] != target["sub"]:
            return web.json_response({"error": "not an admin"}, status=403)
        if target.get("pur") not in ("api_key", "refresh"):
            return web.json_response({"error": "can only blacklist task access tokens, "
                                               "refresh tokens and API keys"}, status=400)
        self.revoked.add(str(target["jti"]))
        self.revocations.append("oauth2")
        return web.Response(status=200)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/user/.well-known/jwks", self._jwks)
        app.router.add_post("/user/credentials/api/", self._mint)
        app.router.add_delete("/user/credentials/api/{key_id}", self._revoke)
        app.router.add_post("/user/credentials/{kind:api|cdis}/access_token", self._access_token)
        app.router.add_post("/user/credentials/{kind:api|cdis}/access_token/", self._access_token)
        app.router.add_post("/user/oauth2/revoke", self._oauth2_revoke)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
