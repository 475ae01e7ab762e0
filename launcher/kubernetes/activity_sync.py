"""Users' last activity, shared by every gateway replica through an annotation on the user's
Service.

Each replica sees only the traffic it relays. Every ``interval`` seconds it publishes, for each
user whose local activity is later than the published one, that time (epoch ms) as
``hatchway.gen3.org/last-activity`` on the Service: one merge patch per user per interval at
most, conditioned on the Service's resourceVersion, so a concurrent write by another replica
makes this one retry from the newer value instead of overwriting it (the later time wins).
Every replica already watches the Services (the routes come from them), so reading the merged
value costs no API call; a replica that restarts reads it back from its first list, losing at
most the last interval's activity. ``stop`` publishes once more, so an orderly restart loses
nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

from launcher.errors import BackendError
from launcher.periodic import Periodic

from .client import KubeClient
from .specs import GEN3_USER_ANNOTATION, USER_ANNOTATION
from .watching import Reflector

log = logging.getLogger("hatchway.activity")
ACTIVITY_ANNOTATION = "hatchway.gen3.org/last-activity"


def published_ms(service: Mapping[str, Any] | None) -> int:
    raw = (((service or {}).get("metadata") or {}).get("annotations") or {}).get(
        ACTIVITY_ANNOTATION, "")
    try:
        return max(0, int(raw))
    except (TypeError, ValueError):
        return 0  # someone else's garbage is no activity


def _user_of(service: Mapping[str, Any]) -> str:
    annotations = (service.get("metadata") or {}).get("annotations") or {}
    return str(annotations.get(USER_ANNOTATION) or annotations.get(GEN3_USER_ANNOTATION) or "")


class ActivitySync:
    def __init__(self, client: KubeClient, services: Reflector,
                 local_ms: Callable[[str], int], *, interval_seconds: float) -> None:
        self._client, self._services, self._local = client, services, local_ms
        self._loop = Periodic("publishing activity", self.publish, interval_seconds, log=log)
        self._by_user: dict[str, str] = {}  # user → Service name, rebuilt each round

    def _service_of(self, user: str) -> Mapping[str, Any] | None:
        name = self._by_user.get(user)
        svc = self._services.cache.get(name) if name else None
        if svc is None or _user_of(svc) != user:
            self._index()
            name = self._by_user.get(user)
            svc = self._services.cache.get(name) if name else None
        return svc

    def _index(self) -> None:
        self._by_user = {_user_of(svc): name for name, svc in list(self._services.cache.items())}

    def last_ms(self, user: str) -> int:
        """The later of this replica's activity and the one every replica published."""
        return max(self._local(user), published_ms(self._service_of(user)))

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        """Stop, publishing once more so an orderly restart loses no activity."""
        await self._loop.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.publish(), timeout=5)

    async def publish(self) -> int:
        """Patch each Service whose user was active here later than it says; returns how
        many were patched."""
        self._index()
        patched = 0
        for name, svc in list(self._services.cache.items()):
            user = _user_of(svc)
            local = self._local(user) if user else 0
            if local <= published_ms(svc):
                continue
            version = str((svc.get("metadata") or {}).get("resourceVersion") or "")
            body: dict[str, Any] = {"metadata": {"annotations": {ACTIVITY_ANNOTATION: str(local)}}}
            if version:
                body["metadata"]["resourceVersion"] = version
            try:
                await self._client.patch("services", name, body)
                patched += 1
            except BackendError as exc:  # 409: another replica wrote first; retry next round
                log.debug("activity of %s not published yet: %s", user, exc)
        return patched
