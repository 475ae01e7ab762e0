"""The issuer's public signing keys (a JWKS), by key id, for the session check.

Keys are cached for ``cache_seconds``; a token naming an unknown key id triggers a refetch, since
that is how an issuer's key rotation shows up. Key ids come from the token, i.e. from anyone, so
refetches are rate-limited (at most one per ``refetch_min_seconds``) and concurrent ones share a
single request: a flood of made-up key ids must not become a flood against the key server.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import jwt
from cachetools import TTLCache

from launcher.clock import REAL, Clock

log = logging.getLogger(__name__)

JWKSFetcher = Callable[[], Awaitable[dict[str, Any]]]
"""Returns a JWKS document ``{"keys": [...]}``; raises KeyStoreUnavailable when it can't."""

ALGORITHM_KEY_TYPES: dict[str, str] = {
    "RS256": "RSA", "RS384": "RSA", "RS512": "RSA", "PS256": "RSA", "ES256": "EC", "ES384": "EC",
}
"""The only signature algorithms sessions accept, and the key type each needs. All asymmetric:
no ``none``, no HS* (an HMAC check keyed with a public key is the classic JWT forgery)."""

_MAX_KEYS = 256


class KeyStoreUnavailable(Exception):
    """The keys can't be fetched (key server down, or not a JWKS): sessions can't be checked."""


def http_jwks_fetcher(url: str, session_getter: Callable[[], aiohttp.ClientSession],
                      timeout: float = 5.0) -> JWKSFetcher:
    """A fetcher that GETs ``url`` (e.g. Fence's ``/user/.well-known/jwks``). The session is
    looked up per call so the app can create its ClientSession after this is built."""
    client_timeout = aiohttp.ClientTimeout(total=timeout)

    async def fetch() -> dict[str, Any]:
        try:
            async with session_getter().get(url, timeout=client_timeout,
                                            headers={"Accept": "application/json"}) as resp:
                if resp.status != 200:
                    raise KeyStoreUnavailable(f"{url} answered HTTP {resp.status}")
                doc = await resp.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise KeyStoreUnavailable(f"{url}: {exc or type(exc).__name__}") from exc
        if not isinstance(doc, dict):
            raise KeyStoreUnavailable(f"{url} did not answer a JWKS document")
        return doc

    return fetch


def _usable_keys(doc: Any) -> dict[str, jwt.PyJWK]:
    """The RSA and EC signing keys of a JWKS, by kid; anything else is skipped, not fatal,
    because an issuer may publish keys for other uses next to its token keys."""
    entries = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise KeyStoreUnavailable("the JWKS document has no 'keys' list")
    keys: dict[str, jwt.PyJWK] = {}
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("kty") not in ("RSA", "EC"):
            continue
        kid, alg = entry.get("kid"), entry.get("alg")
        if (not isinstance(kid, str) or not kid or entry.get("use", "sig") != "sig"
                or "d" in entry or (alg is not None and alg not in ALGORITHM_KEY_TYPES)):
            continue
        try:
            keys[kid] = jwt.PyJWK(entry)
        except jwt.PyJWTError as exc:
            log.warning("ignoring JWKS key %r: %s", kid, exc)
    return keys


class KeyStore:
    """Verification keys by kid, fetched on demand through a JWKSFetcher."""

    def __init__(self, fetch: JWKSFetcher, cache_seconds: float = 3600,
                 refetch_min_seconds: float = 30, *, clock: Clock = REAL) -> None:
        self._fetch = fetch
        self._refetch_min = refetch_min_seconds
        self._monotonic = clock.monotonic
        self._keys: TTLCache[str, jwt.PyJWK] = TTLCache(_MAX_KEYS, cache_seconds,
                                                       timer=clock.monotonic)
        self._last_attempt = -math.inf
        self._failure: str | None = None  # why the last fetch failed; None after a success
        self._refresh: asyncio.Task[None] | None = None

    async def key_for(self, kid: str) -> jwt.PyJWK | None:
        """The key for ``kid``; None if the issuer doesn't publish it. Raises
        KeyStoreUnavailable when the keys are needed but can't be fetched."""
        key = self._keys.get(kid)
        if key is not None:
            return key
        if self._refresh is None:
            now = self._monotonic()
            if now - self._last_attempt < self._refetch_min:
                if self._failure is not None:
                    raise KeyStoreUnavailable(self._failure)
                return None
            self._last_attempt = now
            self._refresh = asyncio.ensure_future(self._reload())
        # shield: one waiter giving up (its client left) must not cancel the others' fetch
        await asyncio.shield(self._refresh)
        key = self._keys.get(kid)
        if key is None and self._failure is not None:
            raise KeyStoreUnavailable(self._failure)
        return key

    async def _reload(self) -> None:
        try:
            keys = _usable_keys(await self._fetch())
        except KeyStoreUnavailable as exc:
            self._failure = str(exc)
            log.warning("cannot fetch session keys: %s", exc)
        except Exception as exc:  # a pluggable fetcher failing any way means the same: no keys
            self._failure = f"{type(exc).__name__}: {exc}"
            log.exception("cannot fetch session keys")
        else:
            self._keys.clear()
            self._keys.update(keys)
            self._failure = None
            log.info("session keys loaded: %s", ", ".join(keys) or "(none usable)")
        finally:
            self._refresh = None

    # -- readiness (proxy.serve.health) ---------------------------------------------------------
    def loaded(self) -> bool:
        """At least one usable key is held: sessions can be checked without a fetch."""
        return len(self._keys) > 0

    @property
    def failure(self) -> str | None:
        return self._failure

    def preload_soon(self) -> None:
        """Start a fetch (at start-up, and from the readiness probe while none is held),
        within the same rate limit as unknown key ids."""
        now = self._monotonic()
        if self._refresh is None and now - self._last_attempt >= self._refetch_min:
            self._last_attempt = now
            self._refresh = asyncio.ensure_future(self._reload())
