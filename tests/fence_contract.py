"""A small Fence on 127.0.0.1 speaking the API-key contract hatchway and the Gen3 SDK use,
as fence/blueprints/storage_creds/api.py serves it under ``/user``:

* ``POST /user/credentials/api/`` with a user access token carrying the ``credentials`` scope
  and ``{"scope": [...]}`` → ``{"key_id", "api_key"}`` (the key a JWT whose ``iss`` is this
  Fence, which is how the SDK finds its endpoint);
* ``DELETE /user/credentials/api/<key_id>`` with such a token, the key the token's user's →
  204, else 404 (a token without ``credentials`` → 403);
* ``POST /user/credentials/{api,cdis}/access_token`` with ``{"api_key"}`` → ``{"access_token"}``
  whose scopes are the key's (never ``credentials``); a revoked key → 401.
Tokens are HS256 JWTs: the contract is about the calls, not the signatures."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
from aiohttp import web

SECRET = "contract-fence-secret-of-32-bytes-or-more"


@dataclass
class FenceContract:
    url: str = ""
    minted: list[dict[str, Any]] = field(default_factory=list)  # {key_id, user, scope}
    revoked: set[str] = field(default_factory=set)
    access_tokens: list[str] = field(default_factory=list)  # issued from API keys
    fail_mint_with: int = 0  # answer the mint with this status instead
    next_keys: list[tuple[str, str]] = field(default_factory=list)  # (key_id, api_key) to mint
    _runner: web.AppRunner | None = None

    def user_token(self, user: str) -> str:
        """A user's session token, as Fence issues one at login."""
        return self._jwt({"sub": user, "pur": "access",
                          "scope": ["openid", "user", "data", "credentials"],
                          "context": {"user": {"name": user}}})

    def _jwt(self, claims: dict[str, Any], ttl: int = 1200) -> str:
        now = int(time.time())
        return jwt.encode({"iss": self.url + "/user", "aud": ["gen3"], "iat": now,
                           "exp": now + ttl, "jti": str(uuid.uuid4()), **claims},
                          SECRET, algorithm="HS256")

    def _claims(self, request: web.Request) -> dict[str, Any] | None:
        auth = request.headers.get("Authorization", "")
        if not auth.lower().startswith("bearer "):
            return None
        try:
            return dict(jwt.decode(auth[7:], SECRET, algorithms=["HS256"], audience="gen3"))
        except jwt.PyJWTError:
            return None

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
        return web.Response(status=204)

    async def _access_token(self, request: web.Request) -> web.Response:
        body = await request.json()
        try:
            key = jwt.decode(str(body.get("api_key")), SECRET, algorithms=["HS256"],
                             audience="gen3")
        except jwt.PyJWTError:
            return web.json_response({"error": "invalid api_key"}, status=401)
        if key.get("pur") != "api_key" or key["jti"] in self.revoked:
            return web.json_response({"error": "revoked"}, status=401)
        token = self._jwt({"sub": key["sub"], "pur": "access", "scope": key["scope"],
                           "context": {"user": {"name": key["sub"]}}})
        self.access_tokens.append(token)
        return web.json_response({"access_token": token})

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/user/credentials/api/", self._mint)
        app.router.add_delete("/user/credentials/api/{key_id}", self._revoke)
        app.router.add_post("/user/credentials/{kind:api|cdis}/access_token", self._access_token)
        app.router.add_post("/user/credentials/{kind:api|cdis}/access_token/", self._access_token)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
