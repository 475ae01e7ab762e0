"""The embedded default's own session issuer: Fence-shaped access tokens signed with a local key.

A laptop has no Fence, but the gateway should still check sessions the one way it does in
production. So dev mode mints tokens shaped like Fence's and publishes the public key as a JWKS,
and the same SessionValidator checks them. The key lives in the state dir, so the server and the
CLI (``hatchway token alice``) share it, and tokens survive a restart.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import secrets
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from launcher.errors import ConfigError

log = logging.getLogger("hatchway.sessions")
KEY_FILE = "dev-signing-key.pem"
CLIENT_ID = "hatchway-dev"
DEFAULT_SCOPES = ("openid", "user")


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 thumbprint of an RSA JWK: a kid that is a pure function of the key."""
    members = {name: jwk[name] for name in ("e", "kty", "n")}
    canonical = json.dumps(members, sort_keys=True, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()


def _create_key_file(path: Path) -> bytes:
    """Write a new key with mode 0600. It is linked into place, so a server and a CLI starting
    at once agree: whoever links first wins and the other reads that key."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        os.link(tmp, path)
    except FileExistsError:
        return path.read_bytes()
    finally:
        tmp.unlink(missing_ok=True)
    return pem


def _keep_private(path: Path) -> None:
    """A key others may read lets them sign in as anyone: 0600, and its dir closed to others
    for reading (search stays, so workspaces can reach homes kept beside it)."""
    if not path.exists():
        return
    if path.stat().st_mode & 0o077:
        log.warning("%s was readable by others: made it 0600; replace the key if others "
                    "could reach it", path)
        path.chmod(0o600)
    mode = path.parent.stat().st_mode
    if mode & 0o066:
        path.parent.chmod(mode & ~0o066 & 0o7777)


def _load_or_create_key(path: Path) -> rsa.RSAPrivateKey:
    try:
        _keep_private(path)
        pem = path.read_bytes() if path.exists() else _create_key_file(path)
    except OSError as exc:
        raise ConfigError(str(path), "(file)", "a readable, or creatable, dev signing key",
                          exc.strerror) from None
    try:
        # No RSA consistency check (~100 ms of start-up): the key only signs, and whoever
        # can write this 0600 file can sign sessions anyway.
        key = serialization.load_pem_private_key(pem, password=None,
                                                 unsafe_skip_rsa_key_validation=True)
    except (ValueError, TypeError):
        key = None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(str(path), "(file)", "an unencrypted RSA private key in PEM",
                          "something else (delete the file to get a new key)")
    return key


class DevIssuer:
    """Mints dev sessions and serves the JWKS that verifies them."""

    def __init__(self, state_dir: str | Path, issuer: str = "http://127.0.0.1:8080/user") -> None:
        self.issuer = issuer
        self._key = _load_or_create_key(Path(state_dir) / KEY_FILE)
        numbers = self._key.public_key().public_numbers()
        public = {"kty": "RSA", "n": _b64uint(numbers.n), "e": _b64uint(numbers.e)}
        self.kid = jwk_thumbprint(public)
        self._jwk = {**public, "kid": self.kid, "alg": "RS256", "use": "sig"}

    def jwks(self) -> dict[str, Any]:
        """The public JWKS document (a fresh copy: callers may serialise or mutate it)."""
        return {"keys": [dict(self._jwk)]}

    async def fetch_jwks(self) -> dict[str, Any]:
        """A JWKSFetcher for dev mode: the keys are right here, no HTTP round trip."""
        return self.jwks()

    def mint(self, user: str, ttl_seconds: int = 1200, scopes: list[str] | None = None) -> str:
        """An RS256 access token with Fence's claims, for ``user``; 20 minutes like Fence's."""
        if not isinstance(user, str) or not user:
            raise ValueError("a dev session needs a non-empty user name")
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        now = int(time.time())
        claims = {
            "pur": "access",
            "iss": self.issuer,
            "aud": ["gen3", CLIENT_ID],
            "sub": user,
            "iat": now,
            "exp": now + ttl_seconds,
            "jti": uuid.uuid4().hex,
            "scope": list(DEFAULT_SCOPES if scopes is None else scopes),
            "azp": CLIENT_ID,
            "context": {"user": {"name": user}},
        }
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid})


def _b64uint(value: int) -> str:
    raw = value.to_bytes((value.bit_length() + 7) // 8 or 1, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
