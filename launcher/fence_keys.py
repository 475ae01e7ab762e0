"""Per-workspace Fence API keys, minted and revoked as Hatchery does (helpers.go).

At launch Hatchery asks Fence for an API key with the user's own access token
(``POST <fence>/credentials/api/``, body ``{"scope": ["data", "user"]}`` → ``{api_key,
key_id}``) and gives it to the workspace and its sidecar as ``API_KEY``/``API_KEY_ID``: the
sidecar writes it to ``/.gen3/credentials.json``, where the Gen3 SDK in the notebook finds it.
At terminate it revokes the key (``DELETE <fence>/credentials/api/<key_id>``, 204), again with
the user's token: that endpoint requires the ``credentials`` scope, which a token made from the
API key itself never carries (fence storage_creds/api.py 106 and 117).

A cull has no user token. It revokes the key with the key itself, the way Fence lets any user
revoke their own API keys (fence/blueprints/oauth2.py ``revoke_token``, 370-404): the key
(``API_KEY`` in the pod's spec) buys a short access token of the same ``sub``
(``POST <fence>/credentials/api/access_token``), which then asks
``POST <fence>/oauth2/revoke`` (form ``token=<api key>``) to deny-list the key. Fence releases
before that code (2026) answer the user path with an error; the key then stays valid until its
own expiry (30 days by default), and the cull says so once, with the key id.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from launcher.errors import BackendError

log = logging.getLogger("hatchway.fence_keys")
INTERNAL_FENCE = "http://fence-service/"
SCOPE = {"scope": ["data", "user"]}


def fence_url(*, configured: str, environ: Mapping[str, str], use_internal: bool) -> str:
    """Hatchery's ``getFenceURL``: ``http://fence-service/``, or
    ``https://$GEN3_ENDPOINT/user/`` when GEN3_ENDPOINT is set (even empty, as Go's
    ``LookupEnv``) and ``use-internal-services-url`` is not; ``configured`` wins over both."""
    if configured:
        return configured if configured.endswith("/") else configured + "/"
    if "GEN3_ENDPOINT" in environ and not use_internal:
        return f"https://{environ['GEN3_ENDPOINT']}/user/"
    return INTERNAL_FENCE


class KeyMintError(BackendError):
    """Fence gave no API key: the launch fails (Hatchery answers 500 with this text)."""


@dataclass(frozen=True)
class ApiKey:
    api_key: str
    key_id: str


class FenceKeys:
    """Mints and revokes one user's API keys at ``base_url`` (ends with ``/``)."""

    def __init__(self, base_url: str, http: Callable[[], aiohttp.ClientSession],
                 *, timeout_seconds: float = 10.0) -> None:
        self.base_url = base_url
        self._http = http
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)

    async def mint(self, token: str | None) -> ApiKey:
        if not token:
            raise KeyMintError("cannot create the workspace's Fence API key: the request "
                               "carries no access token")
        url = self.base_url + "credentials/api/"
        try:
            async with self._http().post(url, json=SCOPE, timeout=self._timeout,
                                         headers={"Authorization": f"Bearer {token}"}) as resp:
                status, text = resp.status, await resp.text()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise KeyMintError(f"cannot create the workspace's Fence API key: {url} cannot be "
                               f"reached ({exc or type(exc).__name__})") from None
        if status != 200:
            raise KeyMintError("Error occurred when creating API key with error code "
                               f"{status}")  # Hatchery's words
        try:
            body: Any = json.loads(text)
            return ApiKey(str(body["api_key"]), str(body["key_id"]))
        except (ValueError, KeyError, TypeError):
            raise KeyMintError("Unable to decode API key response from Fence") from None

    async def revoke(self, token: str | None, key_id: str) -> bool:
        """True when Fence revoked the key (204); failures are logged, never raised: a
        terminate goes on whether or not the key could be revoked, as in Hatchery."""
        if not token:
            log.warning("API key %s not revoked: no user access token (it stays valid until "
                        "Fence's expiry)", key_id)
            return False
        url = self.base_url + "credentials/api/" + key_id
        try:
            async with self._http().delete(url, timeout=self._timeout,
                                           headers={"Authorization": f"Bearer {token}"}) as resp:
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("API key %s not revoked: %s cannot be reached (%s)", key_id, url, exc)
            return False
        if status != 204:
            log.warning("API key %s not revoked: Fence answered %d", key_id, status)
            return False
        log.info("API key %s revoked", key_id)
        return True

    async def revoke_with_key(self, api_key: str, key_id: str) -> bool:
        """Revoke ``api_key`` with a token it buys itself (no user token: a cull); True when
        Fence revoked it. Never raises; a failure is one INFO line naming the key id."""
        def left(why: str) -> bool:
            log.info("API key %s of the culled workspace not revoked (%s): it stays valid "
                     "until Fence's expiry", key_id, why)
            return False

        if not api_key:
            return left("the pod carries no API_KEY")
        try:
            async with self._http().post(self.base_url + "credentials/api/access_token",
                                         params={"expires_in": "300"}, json={"api_key": api_key},
                                         timeout=self._timeout) as resp:
                if resp.status != 200:
                    return left(f"Fence answered {resp.status} for an access token")
                token = str((await resp.json(content_type=None))["access_token"])
            async with self._http().post(self.base_url + "oauth2/revoke",
                                         data={"token": api_key}, timeout=self._timeout,
                                         headers={"Authorization": f"Bearer {token}"}) as resp:
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, ValueError, KeyError, TypeError) as exc:
            return left(f"{type(exc).__name__}: {exc}")
        if status not in (200, 204):
            return left(f"Fence answered {status} to oauth2/revoke")
        log.info("API key %s of the culled workspace revoked", key_id)
        return True


def _workspace_env(pod: Mapping[str, Any] | None, name: str) -> str:
    for container in ((pod or {}).get("spec") or {}).get("containers") or []:
        if container.get("name") == "hatchery-container":
            for var in container.get("env") or []:
                if var.get("name") == name:
                    return str(var.get("value") or "")
            return ""
    return ""


def key_id_of(pod: Mapping[str, Any] | None) -> str:
    """``API_KEY_ID`` of the workspace container (``hatchery-container``), as Hatchery's
    ``deleteK8sPod`` reads it: also finds keys a Go Hatchery minted."""
    return _workspace_env(pod, "API_KEY_ID")


def api_key_of(pod: Mapping[str, Any] | None) -> str:
    """``API_KEY`` of the workspace container: what a cull revokes the key with."""
    return _workspace_env(pod, "API_KEY")
