"""The session check: who is this request from, according to its Fence access token?

Every proxied request passes here, so a token seen before is answered from memory
(``cached``, a dict lookup) and only a new token pays for the signature check. Rejections carry
a short reason the user may see; none of them echoes the token.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice
from typing import Any

import jwt
from multidict import CIMultiDict, CIMultiDictProxy

from launcher.clock import REAL, Clock

from .jwks import ALGORITHM_KEY_TYPES, KeyStore, KeyStoreUnavailable

_MAX_TOKEN_BYTES = 16 * 1024  # Fence tokens are ~1 KB; a huge one is junk, not worth decoding


@dataclass(frozen=True, slots=True)
class Identity:
    """A checked session: the user it names, the token itself (forwarded to Arborist), and
    when it stops being valid (epoch seconds, the token's ``exp``)."""

    user: str
    token: str
    expires_at: float


class SessionError(Exception):
    """No valid session: ``status`` 401 for any bad or absent token, 400 for a request naming
    two, 503 when the issuer's keys can't be fetched (the token may be fine; we can't tell).
    ``message`` is safe to show."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


TWO_SESSIONS = ("the request carries two different session tokens (Authorization: Bearer "
                "and the session cookie, or two of either): sign out and in again")


def session_token(authorizations: Iterable[str], cookie_headers: Iterable[str],
                  cookie_name: str) -> str | None:
    """The one reading of a request's session credential, shared by the fast path, the aiohttp
    handlers, hatchway's Envoy check and (as Lua) Envoy's own jwt lane: the token of
    ``Authorization: Bearer <t>`` (scripts) or of the ``cookie_name`` cookie (browsers), else
    None.

    A request naming two different tokens, in any two places (two Bearer headers, two session
    cookies, or a Bearer header and a cookie), is refused (SessionError 400): were one reader
    to prefer the header and another the cookie, or verify both, one request would be two
    users. Repeats of the same token, and empty values, are harmless."""
    found: str | None = None
    for auth in authorizations:
        scheme, _, value = auth.strip().partition(" ")
        if scheme.lower() == "bearer" and (value := value.strip()):
            if found is None:
                found = value
            elif value != found:
                raise SessionError(TWO_SESSIONS, 400)
    for header in cookie_headers:
        if cookie_name in header:
            for part in header.split(";"):
                name, _, value = part.partition("=")
                if name.strip() == cookie_name and (value := value.strip()):
                    if found is None:
                        found = value
                    elif value != found:
                        raise SessionError(TWO_SESSIONS, 400)
    return found


_CLAIM_ERRORS: tuple[tuple[type[jwt.PyJWTError], str], ...] = (
    # most specific first: several of these subclass DecodeError / InvalidTokenError
    (jwt.InvalidSignatureError, "token signature invalid"),
    (jwt.ExpiredSignatureError, "session expired"),
    (jwt.ImmatureSignatureError, "token not yet valid"),
    (jwt.InvalidIssuerError, "token issuer not accepted"),
    (jwt.InvalidAudienceError, "token audience not accepted"),
    (jwt.InvalidAlgorithmError, "token algorithm does not match its key"),
    (jwt.InvalidKeyError, "token algorithm does not match its key"),
)


def _reason(exc: jwt.PyJWTError) -> str:
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"token lacks the {exc.claim} claim"
    for cls, message in _CLAIM_ERRORS:
        if isinstance(exc, cls):
            return message
    return "malformed token"


def _user_of(claims: dict[str, Any]) -> str | None:
    context = claims.get("context")
    user = context.get("user") if isinstance(context, dict) else None
    name = user.get("name") if isinstance(user, dict) else None
    return name if isinstance(name, str) and name else None


def acceptable_user_name(user: str) -> bool:
    """A name hatchway can carry and log as is: nothing a header would trim (leading or
    trailing whitespace: ``alice `` would be a second user to hatchway yet ``alice`` to the
    workspace) and no control, format or line-separator character (CR/LF would forge log
    lines and headers). Checked once, here, before a token is admitted or cached, so every
    path (fast path, aiohttp, ext_authz) sees only acceptable names."""
    return user.isprintable() and user == user.strip()


class SessionValidator:
    """Checks Fence-style access tokens against one issuer's keys and remembers the good ones
    until they expire (at most ``cache_size`` of them)."""

    def __init__(self, keys: KeyStore, *, issuer: str, audience: str = "gen3",
                 leeway_seconds: int = 30, cookie_name: str = "access_token",
                 cache_size: int = 100_000, clock: Clock = REAL) -> None:
        if not issuer:
            raise ValueError("SessionValidator needs the expected token issuer (iss)")
        self._keys = keys
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway_seconds
        self.cookie_name = cookie_name
        self._cache_size = max(1, cache_size)
        self._cache: dict[str, Identity] = {}
        self._now = clock.time  # expiry is judged by it (and by PyJWT, on the real clock)

    def token_from(self, headers: CIMultiDictProxy[str] | CIMultiDict[str]) -> str | None:
        """The request's session token by ``session_token``'s rule (SessionError 400 when it
        names two)."""
        return session_token(headers.getall("Authorization", ()), headers.getall("Cookie", ()),
                             self.cookie_name)

    def cached(self, token: str) -> Identity | None:
        """The Identity of a token validated before and still valid, else None. The per-request
        fast path: a plain dict (cachetools' LRU bookkeeping costs ten times the lookup)."""
        identity = self._cache.get(token)
        if identity is None:
            return None
        if identity.expires_at + self.leeway > self._now():
            return identity
        self._cache.pop(token, None)
        return None

    async def validate(self, token: str) -> Identity:
        """The Identity this token proves, or SessionError saying why not."""
        identity = self.cached(token)
        if identity is not None:
            return identity
        if not token or len(token) > _MAX_TOKEN_BYTES:
            raise SessionError("malformed token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise SessionError("malformed token") from None
        alg = header.get("alg")
        if alg not in ALGORITHM_KEY_TYPES:  # decided before any key is looked up
            shown = f" '{alg}'" if isinstance(alg, str) and alg.isalnum() and len(alg) <= 10 else ""
            raise SessionError(f"token algorithm{shown} not allowed")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise SessionError("token names no signing key")
        try:
            key = await self._keys.key_for(kid)
        except KeyStoreUnavailable:
            raise SessionError("session keys unavailable, try again shortly", 503) from None
        if key is None:
            raise SessionError("token signed by an unknown key")
        if key.key_type != ALGORITHM_KEY_TYPES[alg]:
            raise SessionError("token algorithm does not match its key")
        try:
            claims = jwt.decode(
                token, key.key, algorithms=[alg], audience=self.audience, issuer=self.issuer,
                leeway=self.leeway, options={"require": ["exp", "iat", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise SessionError(_reason(exc)) from None
        if claims.get("pur") != "access":
            raise SessionError("not an access token")
        user = _user_of(claims)
        if user is None:
            raise SessionError("token names no user")
        if not acceptable_user_name(user):
            raise SessionError("token's user name has leading or trailing spaces or control "
                               "characters; sign in with a plain user name")
        identity = Identity(user=user, token=token, expires_at=float(claims["exp"]))
        if identity.expires_at + self.leeway <= self._now():
            raise SessionError(_reason(jwt.ExpiredSignatureError()))
        self._remember(identity)
        return identity

    def _remember(self, identity: Identity) -> None:
        if len(self._cache) >= self._cache_size:
            now = self._now() - self.leeway
            for token in [t for t, i in self._cache.items() if i.expires_at <= now]:
                del self._cache[token]
            # still full of live sessions: drop the oldest tenth, so sweeps stay rare
            excess = len(self._cache) - int(self._cache_size * 0.9)
            for token in list(islice(self._cache, max(0, excess))):
                del self._cache[token]
        self._cache[identity.token] = identity
