"""Hatchery's PodTracker (costTracker.go) on hatchway's pod watch: each workspace pod's
runtime priced and added to its user's pay-model ``total-usage``, and a Trial pay model made
for a user who has none, with the same amounts and rows as Hatchery (launcher.costs).

Which pods: every pod in the user namespace that carries both of Hatchery's annotations,
``gen3username`` (hatchway's own pods: its ``hatchway.gen3.org/user``, the name its API reads
pay models by) and ``bmh_workspace_id`` (the pay model's id), as Hatchery tracks them, so
pods a Go Hatchery launched before the switch are charged too.

When: the pay model is ensured when a pod is first seen; the charge is made when the pod is
gone for good, *deletion − creation* priced, Hatchery's moment and amount.

Only once, and nothing lost:

* Only the Lease leader (the culler's, launcher/kubernetes/leader.py) writes, so replicas
  never both charge one pod; a replica that gains the Lease sweeps every pod, as Hatchery's
  restart does.
* hatchway launches its pods with a finalizer (``hatchway.gen3.org/cost-tracking``) while
  tracking is on: the API server keeps a deleted pod (containers stopped, marked with its
  final ``deletionTimestamp``, grace period 0) until the leader has charged it and removed the
  finalizer. A pod deleted while no gateway runs (a restart, a rollout, an outage) is charged
  when one is back; Hatchery loses it (its memory and its watch start over). Pods another
  launcher made (a Go Hatchery before the switch) are left as they are, never held: they are
  charged from their DELETED event, as Hatchery charges them, and one deleted while no
  leader watches goes uncharged, as with Hatchery.
* The charge records the pod's uid in the row and is refused when that pod was the row's
  last charge (launcher.costs.ledger), so one lost answer, a crash between the charge and the
  finalizer's removal, or a leader change never adds a pod twice. (A user's next pod cannot
  exist before the previous one is gone, so "last" is enough.)
* While the table cannot be written, the finalizer stays (the pod shows ``Terminating``, its
  user cannot relaunch) for at most ``paymodels.charge_hold_seconds``; then the pod is let go
  and the lost charge is logged as an ERROR naming user, pay model and amount.
* With tracking off (no ``pay-models-dynamodb-table``), pods left with the finalizer by an
  earlier run are let go uncharged, so turning tracking off never strands a pod.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime
import logging
import time
from collections.abc import Callable
from typing import Any

from launcher.costs.ledger import UsageLedger
from launcher.costs.pricing import PodCost, Pricing, parse_time, pod_cost, runtime_ns
from launcher.errors import BackendError
from launcher.paymodels import PayModelError

from ..tasks import cancel_and_wait
from .client import Conflict, KubeClient, NotFound
from .specs import GEN3_USER_ANNOTATION, USER_ANNOTATION, WORKSPACE_ID_ANNOTATION
from .watching import Reflector

log = logging.getLogger("hatchway.costs")
FINALIZER = "hatchway.gen3.org/cost-tracking"
_REMEMBERED = 4096  # uids of pods this replica charged (their DELETED events are not charges)


def billed_user(pod: dict[str, Any]) -> tuple[str, str]:
    """(user, pay-model id) a pod is charged to; empty when it is not tracked."""
    notes = (pod.get("metadata") or {}).get("annotations") or {}
    user = str(notes.get(USER_ANNOTATION) or notes.get(GEN3_USER_ANNOTATION) or "")
    return user, str(notes.get(WORKSPACE_ID_ANNOTATION) or "")


def is_final(pod: dict[str, Any]) -> bool:
    """Gone but for finalizers: the state Hatchery's DELETED event carries (containers
    stopped and the deletion confirmed, so the grace period is 0)."""
    meta = pod.get("metadata") or {}
    return bool(meta.get("deletionTimestamp")) and meta.get("deletionGracePeriodSeconds") == 0


def holds(pod: dict[str, Any]) -> bool:
    return FINALIZER in ((pod.get("metadata") or {}).get("finalizers") or [])


def lifetime_cost(pod: dict[str, Any], pricing: Pricing,
                  now: Callable[[], datetime.datetime]) -> PodCost:
    """``handlePodDeleted``'s price: from ``creationTimestamp`` (an hour before the end when
    missing) to ``deletionTimestamp`` (now when missing)."""
    meta = pod.get("metadata") or {}
    ended = parse_time(meta["deletionTimestamp"]) if meta.get("deletionTimestamp") else now()
    created = (parse_time(meta["creationTimestamp"]) if meta.get("creationTimestamp")
               else ended - datetime.timedelta(hours=1))
    return pod_cost(pod, runtime_ns(created, ended), pricing)


def _utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class PodCostTracker:
    """Charges deleted workspace pods to their pay models; ``ledger`` None: only lets go of
    pods an earlier run held."""

    def __init__(self, client: KubeClient, pods: Reflector, *, ledger: UsageLedger | None,
                 pricing: Pricing, is_leader: Callable[[], bool], hold_seconds: float,
                 interval_seconds: float = 5.0,
                 clock: Callable[[], float] = time.monotonic,
                 now: Callable[[], datetime.datetime] = _utc_now) -> None:
        self.client, self.pods, self.ledger, self.pricing = client, pods, ledger, pricing
        self._is_leader, self._hold, self._interval = is_leader, hold_seconds, interval_seconds
        self._clock, self._now = clock, now
        self._departed: collections.deque[dict[str, Any]] = collections.deque()
        self._ensured: set[str] = set()  # uids whose pay model this leadership term ensured
        self._charged: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._failing: dict[str, float] = {}  # uid → when its charge first failed
        self._leading = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.charges = self.lost = 0
        self.last_error = ""
        pods.subscribe(lambda _name: self._wake.set())
        pods.subscribe_deleted(self._departing)

    @property
    def tracking(self) -> bool:
        return self.ledger is not None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="pod-cost-tracker")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    def health(self) -> dict[str, Any]:
        body: dict[str, Any] = {"tracking": self.tracking, "leader": self._leading,
                                "charged": self.charges, "waiting": len(self._failing),
                                "lost": self.lost}
        if self.last_error:
            body["last_error"] = self.last_error
        return body

    def _departing(self, pod: dict[str, Any]) -> None:
        """A DELETED event: charged here unless this replica charged it already (it then
        held our finalizer) or does not lead (the leader sees the same event)."""
        uid = str((pod.get("metadata") or {}).get("uid") or "")
        if self.tracking and self._is_leader() and uid not in self._charged:
            self._departed.append(pod)
            self._wake.set()

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                calm = await self._pass()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug must not end cost tracking
                log.exception("cost tracking pass failed")
                self.last_error, calm = repr(exc), False
            if not calm:  # the table or the API server is failing: retry at a steady pace
                await asyncio.sleep(self._interval)
                continue
            # asyncio.timeout, not wait_for: Python 3.11's wait_for can swallow a cancel that
            # comes as the wait ends (seen here: stop() then waited forever)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._interval):
                    await self._wake.wait()

    async def _pass(self) -> bool:
        """One sweep, as the leader; False when something failed and waits for a retry."""
        if not self._is_leader():
            if self._leading:
                log.info("cost tracking: no longer the leader")
            self._leading = False
            self._ensured.clear()
            self._departed.clear()
            return True
        if not self._leading:
            log.info("cost tracking: leading, %s", "charging pods to pay models"
                     if self.tracking else "letting go of pods an earlier run held")
            self._leading = True
        if not self.pods.synced.is_set():
            return True
        calm = True
        while self._departed and self._is_leader():
            pod = self._departed[0]
            if not await self._charge(pod):
                return False  # in order: a later charge must not pass an earlier one
            self._departed.popleft()
        pods = list(self.pods.cache.values())
        for pod in pods:
            if not self._is_leader():
                break
            calm = await self._reconcile(pod) and calm
        known = {str((p.get("metadata") or {}).get("uid") or "")
                 for p in [*pods, *self._departed]}
        self._ensured &= known  # what is gone needs no memory (the charged set is bounded)
        for uid in set(self._failing) - known:
            del self._failing[uid]
        return calm

    async def _reconcile(self, pod: dict[str, Any]) -> bool:
        meta = pod.get("metadata") or {}
        uid = str(meta.get("uid") or "")
        user, pay_model_id = billed_user(pod)
        tracked = self.tracking and bool(user and pay_model_id)
        if is_final(pod):
            if not holds(pod):
                return True  # its DELETED event follows at once
            if tracked and uid not in self._charged and not await self._charge(pod):
                return False
            return await self._let_go(pod)
        if tracked and uid not in self._ensured:
            return await self._ensure(pod)
        return True

    async def _ensure(self, pod: dict[str, Any]) -> bool:
        assert self.ledger is not None
        user, pay_model_id = billed_user(pod)
        try:
            await self.ledger.ensure_pay_model(user, pay_model_id)
        except PayModelError as exc:
            self._failed(f"pay model of {user} not ensured: {exc}")
            return False
        self._ensured.add(str(pod["metadata"].get("uid") or ""))
        return True

    async def _charge(self, pod: dict[str, Any]) -> bool:
        """Price the pod and add it to its pay model; True when done (or given up on)."""
        assert self.ledger is not None
        meta = pod.get("metadata") or {}
        uid, name = str(meta.get("uid") or ""), str(meta.get("name") or "")
        user, pay_model_id = billed_user(pod)
        if not (user and pay_model_id):
            return True  # Hatchery skips the update without both (costTracker.go 365)
        try:
            cost = lifetime_cost(pod, self.pricing, self._now)
        except (KeyError, ValueError) as exc:  # a timestamp or quantity the API never sends
            log.error("pod %s cannot be priced, not charged: %s", name, exc)
            return True
        try:
            if uid not in self._ensured:
                await self.ledger.ensure_pay_model(user, pay_model_id)
                self._ensured.add(uid)
            added = await self.ledger.charge(user, pay_model_id, cost.increment, uid)
            await self.ledger.enforce_hard_limit(user, pay_model_id)
        except PayModelError as exc:
            first = self._failing.setdefault(uid, self._clock())
            if self._clock() - first < self._hold:
                self._failed(f"charge of pod {name} waits: {exc}")
                return False
            self.lost += 1
            self._failing.pop(uid, None)
            log.error("charge of %s for pod %s to %s's pay model %s is lost after %.0f s: %s",
                      cost.increment, name, user, pay_model_id, self._hold, exc)
            return True
        self._failing.pop(uid, None)
        self._charged[uid] = None
        while len(self._charged) > _REMEMBERED:
            self._charged.popitem(last=False)
        if added:
            self.charges += 1
            log.info("charged %s for pod %s (%s to %s) to %s's pay model %s",
                     cost.increment, name, meta.get("creationTimestamp"),
                     meta.get("deletionTimestamp") or "now", user, pay_model_id)
        return True

    async def _let_go(self, pod: dict[str, Any]) -> bool:
        """Remove our finalizer, as a compare-and-swap on the pod's resourceVersion (a 409
        means the pod changed: its next event brings it back here); the API server then
        deletes the pod."""
        meta = pod["metadata"]
        others = [f for f in meta.get("finalizers") or [] if f != FINALIZER]
        body = {"metadata": {"finalizers": others,
                             "resourceVersion": meta.get("resourceVersion")}}
        try:
            await self.client.patch("pods", meta["name"], body)
        except (Conflict, NotFound):
            return True
        except BackendError as exc:
            self._failed(f"finalizer of pod {meta['name']} not removed: {exc}")
            return False
        return True

    def _failed(self, message: str) -> None:
        if message != self.last_error:
            log.warning("cost tracking: %s", message)
        self.last_error = message


async def held_pods(client: KubeClient) -> bool:
    """Whether any pod still carries our finalizer (tracking off: someone must let go)."""
    body = await client.list("pods")
    return any(holds(pod) for pod in body.get("items") or [])
