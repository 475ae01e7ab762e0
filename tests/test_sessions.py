"""The session check: Fence-style access tokens against a real JWKS server on 127.0.0.1,
and the dev issuer's tokens through the very same validator."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
import stat
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from multidict import CIMultiDict

from launcher.clock import REAL, Clock, ManualClock
from launcher.errors import ConfigError
from proxy.sessions.devissuer import KEY_FILE, DevIssuer, jwk_thumbprint
from proxy.sessions.jwks import KeyStore, http_jwks_fetcher
from proxy.sessions.tokens import Identity, SessionError, SessionValidator

from .helpers import JWKSServer, public_jwk

ISSUER = "https://commons.example.org/user"
USER = "alice@example.org"


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


ValidatorFactory = Callable[..., SessionValidator]


@pytest.fixture
def make_validator(jwks_server: JWKSServer, http: aiohttp.ClientSession) -> ValidatorFactory:
    def make(url: str | None = None, *, cache_seconds: float = 3600,
             refetch_min_seconds: float = 30, clock: Clock = REAL,
             **kwargs: Any) -> SessionValidator:
        fetch = http_jwks_fetcher(url or jwks_server.url, lambda: http, timeout=2.0)
        keys = KeyStore(fetch, cache_seconds=cache_seconds,
                        refetch_min_seconds=refetch_min_seconds, clock=clock)
        return SessionValidator(keys, issuer=ISSUER, clock=clock, **kwargs)

    return make


def claims(**changes: Any) -> dict[str, Any]:
    """Fence's access-token claims; a change to None removes that claim."""
    now = int(time.time())
    base: dict[str, Any] = {
        "pur": "access", "iss": ISSUER, "aud": ["gen3", "openid", "user"], "sub": "42",
        "iat": now, "exp": now + 1200, "jti": uuid.uuid4().hex, "scope": ["openid", "user"],
        "azp": "portal", "context": {"user": {"name": USER}},
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def sign(payload: dict[str, Any], key: Any, kid: str | None = "rsa-1",
         alg: str = "RS256") -> str:
    headers = {"kid": kid} if kid is not None else {}
    return jwt.encode(payload, key, algorithm=alg, headers=headers)


def b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def unsigned(header: dict[str, Any], payload: dict[str, Any], secret: bytes | None) -> str:
    """A token built by hand, as an attacker would: HMAC with ``secret``, or no signature."""
    signing_input = b64(json.dumps(header).encode()) + b"." + b64(json.dumps(payload).encode())
    sig = hmac.new(secret, signing_input, hashlib.sha256).digest() if secret else b""
    return (signing_input + b"." + b64(sig)).decode()


def tampered(token: str) -> str:
    head, body, sig = token.split(".")
    middle = len(sig) // 2
    flipped = "A" if sig[middle] != "A" else "B"
    return f"{head}.{body}.{sig[:middle]}{flipped}{sig[middle + 1:]}"


def public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


async def test_valid_rs256_token_names_its_user(make_validator: ValidatorFactory,
                                                rsa_key: Any) -> None:
    payload = claims()
    token = sign(payload, rsa_key)
    identity = await make_validator().validate(token)
    assert identity == Identity(user=USER, token=token, expires_at=float(payload["exp"]))


async def test_valid_es256_token_is_accepted(make_validator: ValidatorFactory,
                                             ec_key: Any) -> None:
    token = sign(claims(), ec_key, kid="ec-1", alg="ES256")
    assert (await make_validator().validate(token)).user == USER


BAD_TOKENS: dict[str, tuple[Callable[[Any, Any], str], str]] = {
    "expired": (lambda r, e: sign(claims(iat=int(time.time()) - 3600,
                                         exp=int(time.time()) - 120), r),
                "session expired"),
    "wrong-issuer": (lambda r, e: sign(claims(iss="https://evil.example.org/user"), r),
                     "token issuer not accepted"),
    "wrong-audience": (lambda r, e: sign(claims(aud=["openid", "user"]), r),
                       "token audience not accepted"),
    "alg-none": (lambda r, e: unsigned({"alg": "none", "kid": "rsa-1"}, claims(), None),
                 "token algorithm 'none' not allowed"),
    "hs256-keyed-with-public-key": (
        lambda r, e: unsigned({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}, claims(),
                              public_pem(r)),
        "token algorithm 'HS256' not allowed"),
    "unknown-kid": (lambda r, e: sign(claims(), r, kid="nobody-knows-me"),
                    "token signed by an unknown key"),
    "missing-kid": (lambda r, e: sign(claims(), r, kid=None), "token names no signing key"),
    "tampered-signature": (lambda r, e: tampered(sign(claims(), r)), "token signature invalid"),
    "refresh-token": (lambda r, e: sign(claims(pur="refresh"), r), "not an access token"),
    "no-user-name": (lambda r, e: sign(claims(context={"user": {}}), r), "token names no user"),
    "no-exp": (lambda r, e: sign(claims(exp=None), r), "token lacks the exp claim"),
    "ec-signed-for-rsa-kid": (lambda r, e: sign(claims(), e, kid="rsa-1", alg="ES256"),
                              "token algorithm does not match its key"),
    "not-a-jwt": (lambda r, e: "hello.world", "malformed token"),
}


@pytest.mark.parametrize("case", list(BAD_TOKENS))
async def test_bad_token_is_refused_with_401_and_its_reason(
        case: str, make_validator: ValidatorFactory, rsa_key: Any, ec_key: Any) -> None:
    build, reason = BAD_TOKENS[case]
    with pytest.raises(SessionError) as err:
        await make_validator().validate(build(rsa_key, ec_key))
    assert (err.value.status, err.value.message) == (401, reason)


def test_each_refusal_reason_is_distinct() -> None:
    reasons = [reason for _, reason in BAD_TOKENS.values()]
    assert len(set(reasons)) == len(reasons)


async def test_key_store_keeps_only_asymmetric_keys(jwks_server: JWKSServer,
                                                    http: aiohttp.ClientSession) -> None:
    keys = KeyStore(http_jwks_fetcher(jwks_server.url, lambda: http))
    rsa_jwk, ec_jwk = await keys.key_for("rsa-1"), await keys.key_for("ec-1")
    assert rsa_jwk is not None and rsa_jwk.key_type == "RSA"
    assert ec_jwk is not None and ec_jwk.key_type == "EC"
    assert await keys.key_for("hmac-1") is None


async def test_validated_token_is_cached_without_another_fetch(
        make_validator: ValidatorFactory, jwks_server: JWKSServer, rsa_key: Any) -> None:
    validator = make_validator()
    token = sign(claims(), rsa_key)
    assert validator.cached(token) is None
    identity = await validator.validate(token)
    assert validator.cached(token) is identity
    assert await validator.validate(token) is identity
    assert jwks_server.requests == 1


async def test_cache_forgets_a_token_once_it_expires(make_validator: ValidatorFactory,
                                                     rsa_key: Any, clock: ManualClock) -> None:
    validator = make_validator(leeway_seconds=0, clock=clock)
    exp = int(clock.time()) + 2
    token = sign(claims(exp=exp), rsa_key)
    await validator.validate(token)
    assert validator.cached(token) is not None
    clock.advance(exp - clock.time() + 0.05)
    assert validator.cached(token) is None
    with pytest.raises(SessionError, match="session expired"):
        await validator.validate(token)


async def test_cache_is_bounded(make_validator: ValidatorFactory, rsa_key: Any) -> None:
    validator = make_validator(cache_size=2)
    tokens = [sign(claims(), rsa_key) for _ in range(3)]
    for token in tokens:
        await validator.validate(token)
    assert validator.cached(tokens[0]) is None
    assert validator.cached(tokens[2]) is not None


async def test_concurrent_first_checks_share_one_jwks_fetch(
        make_validator: ValidatorFactory, jwks_server: JWKSServer, rsa_key: Any) -> None:
    validator = make_validator()
    tokens = [sign(claims(), rsa_key) for _ in range(10)]
    identities = await asyncio.gather(*(validator.validate(t) for t in tokens))
    assert {i.user for i in identities} == {USER}
    assert jwks_server.requests == 1


async def test_unknown_kid_flood_fetches_at_most_once_per_window(
        make_validator: ValidatorFactory, jwks_server: JWKSServer, rsa_key: Any,
        clock: ManualClock) -> None:
    validator = make_validator(refetch_min_seconds=0.5, clock=clock)
    await validator.validate(sign(claims(), rsa_key))
    assert jwks_server.requests == 1

    async def flood() -> None:
        bogus = [sign(claims(), rsa_key, kid=f"bogus-{i}") for i in range(20)]
        results = await asyncio.gather(*(validator.validate(t) for t in bogus),
                                       return_exceptions=True)
        assert all(isinstance(r, SessionError) and r.status == 401 for r in results)

    await flood()  # inside the window opened by the first fetch
    assert jwks_server.requests == 1
    clock.advance(0.55)
    await flood()  # window over: one shared refetch for the whole burst
    assert jwks_server.requests == 2
    await flood()
    assert jwks_server.requests == 2


async def test_rotated_in_key_is_picked_up(make_validator: ValidatorFactory,
                                           jwks_server: JWKSServer, rsa_key: Any,
                                           rsa_key_2: Any) -> None:
    validator = make_validator(refetch_min_seconds=0)
    await validator.validate(sign(claims(), rsa_key))
    jwks_server.doc["keys"].append(public_jwk(rsa_key_2, "rsa-2"))
    identity = await validator.validate(sign(claims(), rsa_key_2, kid="rsa-2"))
    assert identity.user == USER
    assert jwks_server.requests == 2


async def test_withdrawn_key_stops_validating_when_the_key_cache_expires(
        make_validator: ValidatorFactory, jwks_server: JWKSServer, rsa_key: Any,
        rsa_key_2: Any, clock: ManualClock) -> None:
    validator = make_validator(cache_seconds=0.3, refetch_min_seconds=0, clock=clock)
    await validator.validate(sign(claims(), rsa_key))
    jwks_server.doc = {"keys": [public_jwk(rsa_key_2, "rsa-2")]}
    clock.advance(0.35)
    with pytest.raises(SessionError, match="unknown key"):
        await validator.validate(sign(claims(), rsa_key))


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/user/.well-known/jwks"


async def test_key_server_down_gives_503(make_validator: ValidatorFactory,
                                         rsa_key: Any) -> None:
    with pytest.raises(SessionError) as err:
        await make_validator(closed_port_url()).validate(sign(claims(), rsa_key))
    assert err.value.status == 503


async def test_key_server_error_gives_503_and_is_not_hammered(
        make_validator: ValidatorFactory, jwks_server: JWKSServer, rsa_key: Any) -> None:
    jwks_server.status = 500
    validator = make_validator()
    for _ in range(3):
        with pytest.raises(SessionError) as err:
            await validator.validate(sign(claims(), rsa_key))
        assert err.value.status == 503
    assert jwks_server.requests == 1


def test_token_from_reads_the_bearer_header_in_any_case(
        make_validator: ValidatorFactory) -> None:
    validator = make_validator()
    headers = CIMultiDict({"authorization": "bEaReR  header-token "})
    assert validator.token_from(headers) == "header-token"


def test_token_from_refuses_a_bearer_header_and_a_different_cookie(
        make_validator: ValidatorFactory) -> None:
    validator = make_validator()
    headers = CIMultiDict({"authorization": "Bearer header-token",
                           "Cookie": "access_token=cookie-token"})
    with pytest.raises(SessionError) as refused:
        validator.token_from(headers)
    assert refused.value.status == 400


def test_token_from_takes_the_same_token_as_bearer_and_cookie(
        make_validator: ValidatorFactory) -> None:
    validator = make_validator()
    headers = CIMultiDict({"authorization": "Bearer t", "Cookie": "x=1; access_token= t"})
    assert validator.token_from(headers) == "t"


def test_token_from_reads_the_session_cookie(make_validator: ValidatorFactory) -> None:
    validator = make_validator()
    assert validator.token_from(CIMultiDict({"Cookie": "access_token=cookie-token"})) == (
        "cookie-token")
    other = make_validator(cookie_name="fence")
    assert other.token_from(CIMultiDict({"Cookie": "fence=t; access_token=x"})) == "t"


def test_token_from_ignores_other_auth_schemes(make_validator: ValidatorFactory) -> None:
    validator = make_validator()
    headers = CIMultiDict({"Authorization": "Basic YWxpY2U6cHc="})
    assert validator.token_from(headers) is None
    headers.add("Cookie", "access_token=c")
    assert validator.token_from(headers) == "c"
    assert validator.token_from(CIMultiDict({"Authorization": "Bearer "})) is None


# --- the dev issuer -----------------------------------------------------------------------


def dev_validator(dev: DevIssuer) -> SessionValidator:
    return SessionValidator(KeyStore(dev.fetch_jwks), issuer=dev.issuer)


async def test_dev_token_validates_through_the_same_validator(tmp_path: Any) -> None:
    dev = DevIssuer(tmp_path / "state")
    identity = await dev_validator(dev).validate(dev.mint(USER))
    assert identity.user == USER


def test_dev_token_is_fence_shaped(tmp_path: Any) -> None:
    dev = DevIssuer(tmp_path, issuer="http://localhost:9000/user")
    token = dev.mint("bob", ttl_seconds=60)
    header = jwt.get_unverified_header(token)
    body = jwt.decode(token, options={"verify_signature": False})
    assert header["alg"] == "RS256" and header["kid"] == dev.kid
    assert body["pur"] == "access" and body["iss"] == "http://localhost:9000/user"
    assert "gen3" in body["aud"] and body["scope"] == ["openid", "user"]
    assert body["context"] == {"user": {"name": "bob"}} and body["exp"] - body["iat"] == 60
    assert {"sub", "jti", "azp"} <= body.keys()


async def test_dev_key_persists_across_instances(tmp_path: Any) -> None:
    minted_by_server = DevIssuer(tmp_path).mint(USER)
    cli = DevIssuer(tmp_path)
    assert (await dev_validator(cli).validate(minted_by_server)).user == USER


def test_dev_key_file_is_private(tmp_path: Any) -> None:
    DevIssuer(tmp_path / "new" / "dir")
    mode = (tmp_path / "new" / "dir" / KEY_FILE).stat().st_mode
    assert stat.S_IMODE(mode) == 0o600


def test_dev_kid_is_the_rfc7638_thumbprint(tmp_path: Any) -> None:
    rfc7638_example = {  # RFC 7638 section 3.1
        "kty": "RSA", "e": "AQAB", "alg": "RS256", "kid": "2011-04-29",
        "n": (
            "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1"
            "L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4"
            "QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbO"
            "pbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csF"
            "Cur-kEgU8awapJzKnqDKgw"
        ),
    }
    assert jwk_thumbprint(rfc7638_example) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    published = DevIssuer(tmp_path).jwks()["keys"][0]
    assert published["kid"] == jwk_thumbprint(published)


def test_corrupt_dev_key_file_is_a_config_error(tmp_path: Any) -> None:
    (tmp_path / KEY_FILE).write_text("not a key")
    with pytest.raises(ConfigError, match=KEY_FILE):
        DevIssuer(tmp_path)


def test_dev_issuer_refuses_an_empty_user(tmp_path: Any) -> None:
    with pytest.raises(ValueError, match="user"):
        DevIssuer(tmp_path).mint("")
