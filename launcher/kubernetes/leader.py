"""One leader among the gateway replicas, through a ``coordination.k8s.io/v1`` Lease, as
client-go's leaderelection does it.

Every replica tries every ``renew_seconds``: it creates the Lease when there is none, renews it
when it holds it, and takes it over when the holder has released it (empty holder) or has not
changed it for ``lease_seconds``. Expiry is judged by when *this* replica last saw the Lease
change, never by comparing the holder's clock with ours (clock skew cannot make two leaders).
Every write is a compare-and-swap on ``resourceVersion``: of two replicas taking over at once
the API server lets one through and answers the other 409. A leader that cannot renew for
``lease_seconds`` stops calling itself leader before anyone else may take over. ``stop``
releases the Lease (empty holder), so a rolling update hands over at once.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import socket
from typing import Any

from launcher.clock import REAL, Clock
from launcher.errors import BackendError
from launcher.periodic import Periodic

from .client import KubeClient

log = logging.getLogger("hatchway.leader")


def default_identity() -> str:
    """The pod's name (its hostname) and the process id: unique per replica and process."""
    return f"{socket.gethostname()}-{os.getpid()}"


def _micro_time(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(self, client: KubeClient, *, name: str, identity: str, lease_seconds: float,
                 renew_seconds: float, clock: Clock = REAL) -> None:
        self._client, self.name, self.identity = client, name, identity
        self._clock = clock  # expiry is judged by it; the rounds are paced by the loop
        self._lease_seconds = lease_seconds
        self._renewed_at = -float("inf")  # monotonic time of our last successful write
        self._seen: tuple[str, str] | None = None  # (holder, renewTime) last observed
        self._seen_at = 0.0
        self._loop = Periodic(f"lease {name}", self._round, renew_seconds, log=log,
                              at_once=True)

    @property
    def is_leader(self) -> bool:
        return self._clock.monotonic() - self._renewed_at < self._lease_seconds

    @property
    def holder(self) -> str:
        """Who held the Lease when this replica last read it ("" before the first read or
        once released): what a follower waits out."""
        return self._seen[0] if self._seen else ""

    def start(self) -> None:
        self._loop.start()

    async def stop(self) -> None:
        """Stop trying, and release the Lease when we hold it."""
        await self._loop.stop()
        if self.is_leader:
            with contextlib.suppress(BackendError):
                lease = await self._client.get("leases", self.name)
                spec = (lease or {}).get("spec") or {}
                if lease is not None and spec.get("holderIdentity") == self.identity:
                    lease["spec"] = {**spec, "holderIdentity": "", "leaseDurationSeconds": 1}
                    await self._client.update("leases", self.name, lease)
                    log.info("%s released the lease %s", self.identity, self.name)
        self._renewed_at = -float("inf")

    async def _round(self) -> None:
        was = self.is_leader
        try:
            await self.try_acquire_or_renew()
        except BackendError as exc:  # a 409 or an unreachable API: try again next round
            log.debug("lease %s: %s", self.name, exc)
        if self.is_leader != was:
            log.info("%s %s the lease %s", self.identity,
                     "holds" if self.is_leader else "lost", self.name)

    async def try_acquire_or_renew(self) -> bool:
        """One round; True when this replica holds the Lease afterwards."""
        now = _micro_time(self._clock.time())
        lease = await self._client.get("leases", self.name)
        if lease is None:
            await self._client.create("leases", self._lease(now, now, 0))
            self._renewed_at = self._clock.monotonic()
            return True
        spec: dict[str, Any] = lease.get("spec") or {}
        holder = str(spec.get("holderIdentity") or "")
        record = (holder, str(spec.get("renewTime") or ""))
        if record != self._seen:
            self._seen, self._seen_at = record, self._clock.monotonic()
        if holder == self.identity:
            body = {**lease, "spec": {**spec, "renewTime": now,
                                      "leaseDurationSeconds": self._duration()}}
        elif not holder or self._clock.monotonic() - self._seen_at >= self._lease_seconds:
            transitions = int(spec.get("leaseTransitions") or 0) + 1
            body = {**lease, "spec": self._lease(now, now, transitions)["spec"]}
        else:
            self._renewed_at = -float("inf")
            return False
        await self._client.update("leases", self.name, body)  # 409 when another won
        self._renewed_at = self._clock.monotonic()
        return True

    def _duration(self) -> int:
        return max(1, round(self._lease_seconds))

    def _lease(self, acquired: str, renewed: str, transitions: int) -> dict[str, Any]:
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name},
                "spec": {"holderIdentity": self.identity,
                         "leaseDurationSeconds": self._duration(),
                         "acquireTime": acquired, "renewTime": renewed,
                         "leaseTransitions": transitions}}
