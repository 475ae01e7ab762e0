"""Workspaces as Kubernetes pods, Hatchery's way, with routes fed by watches.

launch: the user's PVC (when the option mounts one; created if missing, kept forever), the
pod, then the Service. The pod's create is the arbiter: two replicas launching one user at
once both try, the API server accepts one and answers the other 409, which becomes
WorkspaceExists as Hatchery answers a second launch. A leftover Service (pod gone, Service not)
is replaced, as Hatchery does; if the Service cannot be made, the pod is removed again (a pod
without a Service is unreachable yet would block every relaunch). terminate deletes pod and
Service with Hatchery's 20 s grace, never the PVC.

Routes: a Service reflector and an EndpointSlice reflector feed the Router; nothing about a
route lives only in this process, so every replica and every restart sees the same table.

Costs: with a pay-model table, a pod reflector feeds Hatchery's cost tracking
(cost_tracking.py), which the Lease leader runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any

import aiohttp

from launcher.backend import RUNNING, WorkspaceRecord, WorkspaceStatus
from launcher.clock import REAL, Clock
from launcher.costs.ledger import UsageLedger
from launcher.errors import BackendError, BackendUnavailable, NameTaken, WorkspaceExists
from launcher.fence_keys import ApiKey, FenceKeys, api_key_of, fence_url, key_id_of
from launcher.lifetime import enforced_idle_ms, max_age_ms
from launcher.names import claim_name, pod_name, service_name
from launcher.options import HatcheryConfig, WorkspaceOption

from ..tasks import cancel_and_wait
from . import specs
from .activity_sync import ActivitySync
from .client import ApiError, Conflict, Gone, KubeClient
from .config import DEFAULT_NAMESPACE, KubeSettings
from .cost_tracking import FINALIZER, PodCostTracker, held_pods
from .leader import LeaderElector, default_identity
from .progress import ProgressTracker, message
from .routing import Router
from .status import workspace_status
from .watching import DOWN, OK, STALE, Reflector
from .workspace_env import launch_env, workspace_id

if TYPE_CHECKING:
    from launcher.paymodels import PayModels
    from launcher.routes import RouteTable

log = logging.getLogger("hatchway.kubernetes")
_STATE_RANK = {OK: 0, "starting": 1, STALE: 2, DOWN: 3}


def mapping_annotation(user: str, option: WorkspaceOption, namespace: str,
                       flavor: str) -> str:
    """The one call site of the Ambassador Mapping generator (launcher/ambassador.py)."""
    from launcher.ambassador import mapping_annotation as generate

    return generate(user, option, namespace, flavor)


class KubernetesBackend:
    name = "kubernetes"
    isolation = "pods"  # one pod per user: the cluster keeps them apart

    def __init__(self, routes: RouteTable, cfg: KubeSettings, hatchery: HatcheryConfig, *,
                 clock: Clock = REAL, max_age_seconds: int = 0) -> None:
        """``cfg.mapping_flavor`` empty means Hatchery's v1 (the gateway fills in Envoy
        mode's choice before it gets here); ``clock`` judges the culler's Lease and the
        watches' ages; ``max_age_seconds`` is the global maximum age (launcher.lifetime),
        0: none."""
        self.routes, self.hatchery, self.cfg = routes, hatchery, cfg
        self._clock = clock
        self.mapping_flavor = cfg.mapping_flavor or "v1"
        self.namespace = self.cfg.namespace or hatchery.user_namespace or DEFAULT_NAMESPACE
        self._client: KubeClient | None = None
        self.services: Reflector | None = None
        self.slices: Reflector | None = None
        self.router: Router | None = None
        # -- issue 11: Fence API keys, shared activity, one culler -------------------------
        commons = self.cfg.commons_endpoint  # GEN3_ENDPOINT, through the settings tree
        self.gen3_endpoint = self.cfg.gen3_endpoint or commons or ""
        self.fence = FenceKeys(fence_url(configured=self.cfg.fence_url,
                                         environ={} if commons is None else
                                         {"GEN3_ENDPOINT": commons},
                                         use_internal=hatchery.use_internal_services_url),
                               self._fence_http, timeout_seconds=self.cfg.request_timeout_seconds)
        self._http: aiohttp.ClientSession | None = None
        self._local_activity: Callable[[str], int] | None = None
        self.activity: ActivitySync | None = None
        self.elector: LeaderElector | None = None
        self.default_idle_ms = self.cfg.default_idle_seconds * 1000
        self.max_age_seconds = max_age_seconds  # the global maximum age, 0: none
        # -- issue 20: Hatchery's PodTracker (cost_tracking.py) ----------------------------
        self._paymodels: PayModels | None = None
        self._charge_hold_seconds = 0.0
        self.pods: Reflector | None = None
        self.costs: PodCostTracker | None = None
        self._costs_start: asyncio.Task[None] | None = None

    def _fence_http(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        return self._http

    def attach_activity(self, local_ms: Callable[[str], int]) -> None:
        """This replica's activity tracker, to publish for the others (before ``start``)."""
        self._local_activity = local_ms

    def last_activity_ms(self, user: str) -> int:
        """The later of this replica's and every replica's published activity."""
        if self.activity is not None:
            return self.activity.last_ms(user)
        return self._local_activity(user) if self._local_activity else 0

    def attach_costs(self, paymodels: PayModels, *, hold_seconds: float) -> None:
        """The commons' pay models, to charge workspace pods to (before ``start``); tracking
        runs when they live in a table, as Hatchery's does."""
        self._paymodels, self._charge_hold_seconds = paymodels, hold_seconds

    @property
    def tracks_costs(self) -> bool:
        return self._paymodels is not None and bool(self._paymodels.table)

    @property
    def is_leader(self) -> bool:
        """Whether this replica culls: it holds the Lease."""
        return self.elector is not None and self.elector.is_leader

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Connect and start the watches; wait (up to one request timeout) for the first
        list so routes are there when traffic arrives. An unreachable API server does not
        stop start-up: the watches keep trying and routes appear when it answers."""
        self._client = await KubeClient.connect(self.cfg, self.namespace)
        svc_selector = "" if self.cfg.dropin_ambassador else specs.selector()
        self.services = Reflector(self._client, "services", self.cfg,
                                  label_selector=svc_selector, clock=self._clock.monotonic)
        self.slices = Reflector(self._client, "endpointslices", self.cfg,
                                clock=self._clock.monotonic)
        self.router = Router(self.routes, self.services, self.slices, namespace=self.namespace,
                             route_to=self.cfg.route_to, cluster_domain=self.cfg.cluster_domain,
                             dropin=self.cfg.dropin_ambassador)
        self.services.start()
        self.slices.start()
        if self._local_activity is not None:
            self.activity = ActivitySync(self._client, self.services, self._local_activity,
                                         interval_seconds=self.cfg.activity_seconds)
            self.activity.start()
        self.elector = LeaderElector(self._client, name=self.cfg.lease_name,
                                     identity=self.cfg.identity or default_identity(),
                                     lease_seconds=self.cfg.lease_seconds,
                                     renew_seconds=self.cfg.lease_renew_seconds,
                                     clock=self._clock)
        self.elector.start()
        if self.tracks_costs:
            self._start_costs(tracking=True)
        else:
            self._costs_start = asyncio.create_task(self._release_held_pods())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.cfg.request_timeout_seconds):
                await asyncio.gather(self.services.synced.wait(), self.slices.synced.wait())

    def _start_costs(self, *, tracking: bool) -> None:
        assert self._client is not None
        self.pods = Reflector(self._client, "pods", self.cfg, clock=self._clock.monotonic)
        ledger = None
        if tracking:
            assert self._paymodels is not None
            ledger = UsageLedger(self._paymodels)
        self.costs = PodCostTracker(
            self._client, self.pods, ledger=ledger,
            pricing=self.hatchery.pricing,
            is_leader=lambda: self.is_leader, hold_seconds=self._charge_hold_seconds,
            interval_seconds=self.cfg.lease_renew_seconds, clock=self._clock.monotonic)
        self.pods.start()
        self.costs.start()

    async def _release_held_pods(self) -> None:
        """Tracking off: pods an earlier run held for their charge must still go."""
        delay = self.cfg.retry_backoff_seconds
        while True:
            try:
                if await held_pods(self.client):
                    log.info("pods hold the cost-tracking finalizer: letting go of them")
                    self._start_costs(tracking=False)
                return
            except BackendError as exc:
                log.debug("listing pods for held ones: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.cfg.backoff_max_seconds)

    async def close(self) -> None:
        """Stop watching. Pods keep running: they are the cluster's, not this process's."""
        await cancel_and_wait(self._costs_start)
        if self.costs is not None:
            await self.costs.stop()
        for part in (self.activity, self.elector):  # publish the last activity, release
            if part is not None:
                await part.stop()
        if self._http is not None:
            await self._http.close()
            self._http = None
        for reflector in (self.services, self.slices, self.pods):
            if reflector is not None:
                await reflector.stop()
        if self._client is not None:
            await self._client.close()
            self._client = None

    @property
    def client(self) -> KubeClient:
        if self._client is None:
            raise BackendUnavailable("the Kubernetes backend is not started")
        return self._client

    # -- Hatchery's verbs --------------------------------------------------------------

    async def _own_pod(self, user: str) -> dict[str, Any] | None:
        """``user``'s pod, or None; a pod under the same name recording another user is
        not theirs (Hatchery's names collide for users whose names escape alike)."""
        pod = await self.client.get("pods", pod_name(user))
        return pod if specs.owned_by(pod, user) else None

    async def launch(self, user: str, option: WorkspaceOption, token: str | None, *,
                     pay_model_id: str | None = None) -> None:
        key = await self.fence.mint(token) if self.cfg.api_keys else None  # KeyMintError: 500
        try:
            await self._launch(user, option, key, pay_model_id)
        except BaseException:
            if key is not None:  # no workspace holds it: revoke it now, while we have the token
                await self.fence.revoke(token, key.key_id)
            raise

    async def _launch(self, user: str, option: WorkspaceOption, key: ApiKey | None,
                      pay_model_id: str | None) -> None:
        pod = specs.pod_spec(user, option, self.hatchery, self.namespace, self.gen3_endpoint,
                             extra_env=launch_env(option, key),
                             workspace_id=workspace_id(pay_model_id))
        if self.tracks_costs:  # the API server keeps it, once deleted, until it is charged
            pod["metadata"]["finalizers"] = [FINALIZER]
        try:
            if specs.needs_claim(option):
                claim = await self.client.get("persistentvolumeclaims", claim_name(user))
                if claim is None:
                    size = (self.hatchery.user_volume_size or self.cfg.user_volume_size
                            or specs.DEFAULT_VOLUME_SIZE)
                    with contextlib.suppress(Conflict):  # another replica made it just now
                        await self.client.create("persistentvolumeclaims",
                                                 specs.claim_spec(user, pod, size))
                elif not specs.owned_by(claim, user):
                    raise NameTaken(pod_name(user))  # never mount another user's volume
            try:
                await self.client.create("pods", pod)
            except Conflict:
                if await self._own_pod(user) is None:
                    raise NameTaken(pod_name(user)) from None
                raise WorkspaceExists(f"a workspace for {user} already exists") from None
            service = specs.service_spec(
                user, option, self.namespace,
                mapping_annotation(user, option, self.namespace, self.mapping_flavor))
            try:
                try:
                    await self.client.create("services", service)
                except Conflict:  # left over from an earlier workspace: Hatchery replaces it
                    await self.client.delete("services", service_name(user))
                    await self.client.create("services", service)
            except BackendError:  # no route without a Service: undo, so a retry can work
                with contextlib.suppress(BackendError):
                    await self.client.delete("pods", pod_name(user), 0)
                raise
        except ApiError as exc:
            raise BackendError(f"launching {user}'s workspace failed: {exc}") from None

    async def status(self, user: str) -> WorkspaceStatus:
        try:
            pod = await self._own_pod(user)
        except ApiError as exc:
            raise BackendError(f"reading {user}'s workspace failed: {exc}") from None
        status = workspace_status(pod, self.cfg.fail_unschedulable)
        if status.status == RUNNING:  # the limits in force (launcher.lifetime)
            status.idle_time_limit = enforced_idle_ms(status.idle_time_limit,
                                                      self.default_idle_ms)
            option = self._option_of(pod)
            status.max_age_ms = max_age_ms(option.max_age_seconds if option else None,
                                           self.max_age_seconds)
        return status

    def _option_of(self, pod: Mapping[str, Any] | None) -> WorkspaceOption | None:
        """The option the pod was launched from (its annotation), if this config has it."""
        wanted = ((pod or {}).get("metadata") or {}).get("annotations", {}).get(
            specs.OPTION_ANNOTATION)
        return next((o for o in self.hatchery.options if o.id == wanted), None)

    async def terminate(self, user: str, token: str | None = None) -> bool:
        """Delete the pod and Service, then revoke the pod's API key (``API_KEY_ID``, also a Go
        Hatchery's) with ``token``; without one (a cull) the key is logged as left to expire."""
        # Another user's pod or Service under the same name is left alone (and is reported
        # as nothing to terminate).
        known = self.services.cache.get(service_name(user)) if self.services else None
        try:
            found = await self.client.get("pods", pod_name(user))
            if found is not None and not specs.owned_by(found, user):
                return False
            pod = found is not None and await self.client.delete(
                "pods", pod_name(user), self.cfg.grace_seconds)
            svc = specs.owned_by(known, user) and await self.client.delete(
                "services", service_name(user), self.cfg.grace_seconds)
        except ApiError as exc:
            raise BackendError(f"terminating {user}'s workspace failed: {exc}") from None
        key_id = key_id_of(found)
        if pod and key_id:
            if token:
                await self.fence.revoke(token, key_id)
            else:  # a cull: the key revokes itself (launcher/fence_keys.py)
                await self.fence.revoke_with_key(api_key_of(found), key_id)
        return bool(pod or svc)

    # -- what Hatchery lacks -----------------------------------------------------------

    async def workspaces(self) -> list[WorkspaceRecord]:
        """Every hatchway pod in the namespace, read from the API (so every replica lists
        the same): the user, option and pay model it records, its creation time."""
        try:
            pods = await self.client.list("pods", label_selector=specs.selector())
        except ApiError as exc:
            raise BackendError(f"listing workspaces failed: {exc}") from None
        return [dataclasses.replace(record, status=workspace_status(
                    pod, self.cfg.fail_unschedulable).status)
                for pod in pods.get("items") or []
                if (record := specs.record(pod, self.hatchery)) is not None]

    def use_hatchery(self, config: HatcheryConfig) -> None:
        """Later launches build pods from ``config`` (sidecar, node selector, volume size);
        the namespace and the Fence URL stay as started; pods gone from then on are priced
        at its ``pricing``."""
        self.hatchery = config
        if self.costs is not None:
            self.costs.pricing = config.pricing

    def health(self) -> dict[str, Any]:
        watched = (self.services, self.slices, self.pods)
        parts = {r.kind: r.health() for r in watched if r is not None}
        worst = max((p["state"] for p in parts.values()), key=_STATE_RANK.__getitem__,
                    default="starting")
        return {
            "watch": worst,
            # An unreachable API server is reported but is not "unhealthy": routes keep
            # serving, and restarting replicas would not bring the API server back.
            "healthy": all(r.alive for r in watched if r is not None),
            "namespace": self.namespace,
            "route_to": self.cfg.route_to,
            "last_event_age_s": min((p["last_event_age_s"] for p in parts.values()),
                                    default=None),
            "relists": sum(p["relists"] for p in parts.values()),
            "watches": parts,
            **({"costs": self.costs.health()} if self.costs is not None else {}),
        }

    def routes_pending(self) -> list[str]:
        """The watches that have not listed once yet."""
        return [r.kind for r in (self.services, self.slices)
                if r is not None and not r.synced.is_set()]

    def isolation_summary(self) -> None:
        return None

    async def progress(self, user: str) -> AsyncIterator[dict[str, Any]]:
        """The launch of ``user``'s workspace as JupyterHub-shaped messages, from the pod and
        its Events, until it is ready or has failed."""
        name = pod_name(user)
        tracker = ProgressTracker(fail_unschedulable=self.cfg.fail_unschedulable)
        try:
            pod = await self._own_pod(user)
            events = await self.client.list("events",
                                            field_selector=f"involvedObject.name={name}")
        except BackendError as exc:
            yield message(0, f"cannot follow the launch: {exc}", failed=True)
            return
        for msg in tracker.update(pod, events.get("items") or []):
            yield msg
        if tracker.done:
            return
        queue: asyncio.Queue[tuple[str, dict[str, Any]] | BaseException] = asyncio.Queue()
        versions = {"pods": str((pod or {}).get("metadata", {}).get("resourceVersion") or ""),
                    "events": str(events.get("metadata", {}).get("resourceVersion") or "")}
        selectors = {"pods": f"metadata.name={name}", "events": f"involvedObject.name={name}"}
        feeds = [asyncio.create_task(self._follow(kind, versions[kind], selectors[kind], queue))
                 for kind in ("pods", "events")]
        try:
            while not tracker.done:
                item = await queue.get()
                if isinstance(item, BaseException):
                    yield message(tracker.progress, f"lost track of the launch: {item}",
                                  failed=True)
                    return
                kind, event = item
                if kind == "pods":
                    pod = None if event["type"] == "DELETED" else event["object"]
                    msgs = tracker.update(pod)
                else:
                    msgs = tracker.update(pod, [event["object"]])
                for msg in msgs:
                    yield msg
        finally:
            for feed in feeds:
                feed.cancel()
            await asyncio.gather(*feeds, return_exceptions=True)

    async def _follow(self, kind: str, version: str, field_selector: str,
                      queue: asyncio.Queue[tuple[str, dict[str, Any]] | BaseException]) -> None:
        """One watch for ``progress``, resumed when it ends; errors end the stream."""
        try:
            while True:
                try:
                    async for event in self.client.watch(
                            kind, version, field_selector=field_selector,
                            timeout_seconds=self.cfg.watch_seconds):
                        meta = event.get("object", {}).get("metadata") or {}
                        version = str(meta.get("resourceVersion") or version)
                        if event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                            await queue.put((kind, event))
                except Gone:
                    version = ""  # replays the current state, which the tracker dedups
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await queue.put(exc)
