"""The JWT matrix end to end: the gateway in production (JWKS) mode against a real JWKS server;
every bad token is refused with 401 and none reaches a workspace."""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .conftest import PROXY

ISSUER = "https://commons.test/user"
KID = "fence-key-1"
_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_PUBLIC_PEM = _KEY.public_key().public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)


def _claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"pur": "access", "iss": ISSUER, "aud": ["gen3", "fence"], "sub": "17",
              "iat": now, "exp": now + 1200, "jti": str(uuid.uuid4()),
              "scope": ["openid", "user"], "azp": "portal",
              "context": {"user": {"name": "alice"}}}
    claims.update(over)
    return claims


def _sign(claims: dict[str, Any], key: Any = _KEY, kid: str = KID, alg: str = "RS256") -> str:
    return jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(claims: dict[str, Any]) -> str:
    header = _b64(json.dumps({"alg": "none", "typ": "JWT", "kid": KID}).encode())
    return f"{header}.{_b64(json.dumps(claims).encode())}."


def _hs256_with_public_key(claims: dict[str, Any]) -> str:
    import hashlib
    import hmac
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": KID}).encode())
    payload = _b64(json.dumps(claims).encode())
    sig = hmac.new(_PUBLIC_PEM, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(sig)}"


def _tampered() -> str:
    header, payload, sig = _sign(_claims()).split(".")
    evil = _b64(json.dumps(_claims(context={"user": {"name": "bob"}})).encode())
    return f"{header}.{evil}.{sig}"


BAD_TOKENS = {
    "expired": lambda: _sign(_claims(iat=int(time.time()) - 4000, exp=int(time.time()) - 3000)),
    "wrong_iss": lambda: _sign(_claims(iss="https://evil.test/user")),
    "wrong_aud": lambda: _sign(_claims(aud=["someone-else"])),
    "alg_none": lambda: _unsigned(_claims()),
    "hs256_with_public_key": lambda: _hs256_with_public_key(_claims()),
    "unknown_kid": lambda: _sign(_claims(), key=_OTHER_KEY, kid="not-published"),
    "tampered_signature": _tampered,
    "pur_refresh": lambda: _sign(_claims(pur="refresh")),
    "signed_by_other_key": lambda: _sign(_claims(), key=_OTHER_KEY),
}


@pytest.fixture
async def fence_gateway(aiohttp_server: Any, start_gateway: Any,
                        recording_upstream: Any) -> tuple[Any, list[web.Request]]:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(_KEY.public_key()))
    jwk.update(kid=KID, alg="RS256", use="sig")

    async def jwks(request: web.Request) -> web.Response:
        return web.json_response({"keys": [jwk]})

    app = web.Application()
    app.router.add_get("/user/.well-known/jwks", jwks)
    fence = await aiohttp_server(app, host="127.0.0.1")
    gw = await start_gateway(sessions={"mode": "jwks", "issuer": ISSUER,
                                       "jwks_url": f"{fence.make_url('/user/.well-known/jwks')}",
                                       "jwks_refetch_min_seconds": 60.0})
    upstream, seen = await recording_upstream()
    gw.publish("alice", upstream)
    gw.publish("bob", upstream)
    return gw, seen


async def test_valid_fence_token_reaches_workspace(fence_gateway: Any,
                                                   client: aiohttp.ClientSession) -> None:
    gw, seen = fence_gateway
    async with client.get(gw.url(PROXY + "x"),
                          headers={"Authorization": f"Bearer {_sign(_claims())}"}) as resp:
        assert resp.status == 200
    assert len(seen) == 1 and seen[0].headers["REMOTE_USER"] == "alice"


@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
async def test_bad_token_is_401_and_reaches_nothing(fence_gateway: Any,
                                                    client: aiohttp.ClientSession,
                                                    case: str) -> None:
    gw, seen = fence_gateway
    token = BAD_TOKENS[case]()
    for headers in ({"Authorization": f"Bearer {token}"}, {"Cookie": f"access_token={token}"}):
        async with client.get(gw.url(PROXY + "x"), headers=headers) as resp:
            assert resp.status == 401, case
            body = await resp.json()
        assert body["error"] and token not in body["error"]
    assert seen == []


@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
async def test_bad_token_cannot_use_the_api(fence_gateway: Any, client: aiohttp.ClientSession,
                                            case: str) -> None:
    gw, _ = fence_gateway
    async with client.post(gw.url("/lw-workspace/launch?id=x"),
                           headers={"Authorization": f"Bearer {BAD_TOKENS[case]()}"}) as resp:
        assert resp.status == 401
