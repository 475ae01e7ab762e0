"""A small node: scheduler, kubelet and EndpointSlice controller in one, for the real API
server (tests/cluster/) and the emulator alike.

It watches the namespace's pods and Services through the API server's HTTP API (the same API
the backend uses) and does what a one-node cluster would:

* **registers** its Node (real API server: ``register``), with the node's labels;
* **schedules** a pod when the node's labels satisfy its nodeSelector — on the real API server
  through the ``pods/binding`` subresource, as kube-scheduler does, so ``spec.nodeName`` is
  set and deletes become graceful — else marks it ``Unschedulable`` with a
  ``FailedScheduling`` event;
* **pulls** each container image from a local registry (``images``: image → entrypoint argv,
  or None for an image with nothing to run here, like the FUSE sidecar); an unknown image gets
  ``ErrImagePull`` then ``ImagePullBackOff``, with the kubelet's events;
* **runs** the workspace container as a real local process and **probes** its HTTP readiness
  probe, writing phase, conditions, container states and events back; a process that exits
  makes the pod ``Failed`` (``restartPolicy: Never``);
* **stops** a pod marked for deletion (SIGTERM, SIGKILL after the grace period) and then
  removes it (``gracePeriodSeconds=0``), as the kubelet finishes a graceful delete;
* keeps one **EndpointSlice** per Service and matching pod.

Everything it writes goes through the API server's validation (pod status through the
``status`` subresource); as the cluster admin on the real one, since it plays the scheduler and
the EndpointSlice controller too, which a kubelet's own node credentials may not.

Networking, honestly: every pod here shares the node's one ``address`` (127.0.0.1 for the
emulator; on the real API server, which refuses loopback in pod IPs and EndpointSlices,
tests/cluster/podnetwork.py's address in the session's own network namespace), so two
workspaces cannot both listen on their target port 8888. The node therefore gives each pod's
containers a free port on that address (the image entrypoint's ``{host}`` and ``{port}``) — a
port mapping, as a container runtime's would be — and writes that port where a cluster's
EndpointSlice controller writes the container port. Routes that go
to endpoints (``route_to: endpoints``) therefore reach the real process; routes to a Service's
cluster DNS name cannot resolve here, so tests check those by value.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import itertools
import json
import logging
import os
import signal
import ssl
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from launcher.processes import free_port

log = logging.getLogger("tests.kubelet")
REPO = Path(__file__).resolve().parents[2]
NODE = "hatchway-test-node"
DEMO_IMAGE = "hatchway/demo:test"
SIDECAR_IMAGE = "quay.io/cdis/gen3fuse-sidecar:test"
DEFAULT_IMAGES: dict[str, list[str] | None] = {
    DEMO_IMAGE: [sys.executable, "-m", "launcher.demo", "--host", "{host}", "--port", "{port}"],
    SIDECAR_IMAGE: None,
}
MERGE = {"Content-Type": "application/merge-patch+json"}


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class _Pod:
    obj: dict[str, Any]
    status: dict[str, Any] = field(default_factory=dict)
    process: asyncio.subprocess.Process | None = None
    port: int = 0  # host port the workspace listens on
    ready: bool = False
    task: asyncio.Task[None] | None = None
    stopping: bool = False

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])


class Kubelet:
    def __init__(self, api_url: str, namespace: str, *,
                 images: Mapping[str, list[str] | None] | None = None,
                 node_labels: Mapping[str, str] | None = None,
                 pull_seconds: float = 0.05, max_grace_seconds: float = 3.0,
                 ssl_context: ssl.SSLContext | None = None, register: bool = False,
                 node: str = NODE, address: str = "127.0.0.1") -> None:
        self.api_url, self.namespace = api_url.rstrip("/"), namespace
        self.address = address  # every pod's IP, the node's too
        self.ssl, self.register, self.node = ssl_context, register, node
        self.images = dict(DEFAULT_IMAGES if images is None else images)
        self.node_labels = dict({"role": "jupyter"} if node_labels is None else node_labels)
        self.pull_seconds, self.max_grace_seconds = pull_seconds, max_grace_seconds
        self.pods: dict[str, _Pod] = {}
        self.services: dict[str, dict[str, Any]] = {}
        self._slices: dict[str, dict[str, Any]] = {}
        self._http: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._events = itertools.count(1)
        self._slice_lock = asyncio.Lock()

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        self._http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=2),
            connector=aiohttp.TCPConnector(ssl=self.ssl if self.ssl is not None else False))
        if self.register:
            await self._register()
        self._tasks = [asyncio.create_task(self._watch("pods", self._on_pod)),
                       asyncio.create_task(self._watch("services", self._on_service))]

    async def __aenter__(self) -> Kubelet:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for pod in list(self.pods.values()):
            if pod.task is not None:
                pod.task.cancel()
            await self._kill(pod, grace=0.5)
        await asyncio.gather(*self._tasks, *(p.task for p in self.pods.values() if p.task),
                             return_exceptions=True)
        if self._http is not None:
            if self.register:
                await self._send("DELETE", f"{self.api_url}/api/v1/nodes/{self.node}")
            await self._http.close()

    async def _register(self) -> None:
        """The Node object a kubelet registers, Ready, labelled as this node is."""
        status = await self._send("POST", f"{self.api_url}/api/v1/nodes", {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": self.node, "labels": {
                "kubernetes.io/hostname": self.node, **self.node_labels}},
            "status": {"conditions": [{"type": "Ready", "status": "True", "reason":
                                       "KubeletReady", "lastHeartbeatTime": _now(),
                                       "lastTransitionTime": _now()}],
                       "addresses": [{"type": "InternalIP", "address": self.address}]}})
        assert status in (201, 409), f"registering node {self.node}: HTTP {status}"

    async def _bind(self, pod: _Pod) -> bool:
        """kube-scheduler's write: the pod's ``binding`` subresource sets spec.nodeName."""
        status = await self._send("POST", self._url("pods", pod.name, "binding"), {
            "apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": pod.name, "namespace": self.namespace},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node}})
        return 200 <= status < 300

    def port_of(self, pod_name: str) -> int:
        return self.pods[pod_name].port

    # -- API plumbing (best effort: a node outlives an API server outage) ---------------

    def _url(self, plural: str, name: str = "", sub: str = "") -> str:
        group = "apis/discovery.k8s.io/v1" if plural == "endpointslices" else "api/v1"
        url = f"{self.api_url}/{group}/namespaces/{self.namespace}/{plural}"
        return url + (f"/{name}" if name else "") + (f"/{sub}" if sub else "")

    async def _send(self, method: str, url: str, body: Any = None,
                    headers: Mapping[str, str] | None = None) -> int:
        assert self._http is not None
        try:
            async with self._http.request(method, url, data=None if body is None else
                                          json.dumps(body), headers=headers or {
                                              "Content-Type": "application/json"},
                                          timeout=aiohttp.ClientTimeout(total=5)) as resp:
                answer = await resp.read()
                if resp.status >= 300 and resp.status != 409:  # the API server said no
                    log.warning("kubelet: %s %s → %s: %s", method, url, resp.status,
                                answer[:500].decode(errors="replace"))
                return resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.info("kubelet: %s %s failed: %s", method, url, exc)
            return 0

    async def _watch(self, plural: str, handler: Any) -> None:
        assert self._http is not None
        version = ""
        while True:
            try:
                if not version:
                    async with self._http.get(self._url(plural)) as resp:
                        body = await resp.json()
                    version = body["metadata"]["resourceVersion"]
                    for item in body["items"]:
                        await handler("ADDED", item)
                params = {"watch": "true", "resourceVersion": version}
                async with self._http.get(self._url(plural), params=params) as resp:
                    async for line in resp.content:
                        if not line.strip():
                            continue
                        event = json.loads(line)
                        if event["type"] == "ERROR":
                            version = ""
                            break
                        version = event["object"]["metadata"]["resourceVersion"]
                        await handler(event["type"], event["object"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # API server away: keep the pods, retry
                log.info("kubelet: %s watch failed: %s", plural, exc)
                version = ""
                await asyncio.sleep(0.1)

    async def _event(self, pod: _Pod, reason: str, message: str, kind: str = "Normal",
                     container: str = "") -> None:
        meta = pod.obj["metadata"]
        involved = {"kind": "Pod", "name": meta["name"], "namespace": self.namespace,
                    "uid": meta.get("uid", "")}
        if container:
            involved["fieldPath"] = f"spec.containers{{{container}}}"
        now = _now()
        await self._send("POST", self._url("events"), {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{next(self._events):x}",
                         "namespace": self.namespace},
            "involvedObject": involved, "reason": reason, "message": message, "type": kind,
            "source": {"component": "kubelet", "host": self.node}, "count": 1,
            "firstTimestamp": now, "lastTimestamp": now,
        })

    async def _write_status(self, pod: _Pod) -> None:
        await self._send("PATCH", self._url("pods", pod.name, "status"),
                         {"status": pod.status}, MERGE)
        await self._reconcile_slices()

    # -- pods ------------------------------------------------------------------------------

    async def _on_pod(self, kind: str, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        known = self.pods.get(name)
        if kind == "DELETED":
            if known is not None:
                self.pods.pop(name)
                if known.task is not None:
                    known.task.cancel()
                await self._kill(known, grace=0.5)
                await self._reconcile_slices()
            return
        if known is not None and known.obj["metadata"].get("uid") != obj["metadata"].get("uid"):
            known = None  # a new pod under an old name
        if known is None:
            if obj["metadata"].get("deletionTimestamp"):
                return
            known = self.pods[name] = _Pod(obj)
            known.task = asyncio.create_task(self._run(known))
            return
        known.obj = obj
        if obj["metadata"].get("deletionTimestamp") and not known.stopping:
            known.stopping = True
            asyncio.create_task(self._terminate(known))

    def _containers(self, pod: _Pod) -> list[dict[str, Any]]:
        return list(pod.obj["spec"].get("containers") or [])

    def _container_status(self, pod: _Pod, name: str, state: dict[str, Any],
                          ready: bool = False) -> None:
        statuses = pod.status.setdefault("containerStatuses", [])
        entry = {"name": name, "state": state, "ready": ready, "restartCount": 0,
                 "image": next(c["image"] for c in self._containers(pod) if c["name"] == name)}
        for i, old in enumerate(statuses):
            if old["name"] == name:
                statuses[i] = entry
                return
        statuses.append(entry)

    def _conditions(self, pod: _Pod, scheduled: bool, started: bool, ready: bool) -> None:
        now = _now()
        flag = {True: "True", False: "False"}
        pod.status["conditions"] = [
            {"type": "PodScheduled", "status": flag[scheduled], "lastTransitionTime": now},
            {"type": "Initialized", "status": flag[started], "lastTransitionTime": now},
            {"type": "ContainersReady", "status": flag[ready], "lastTransitionTime": now},
            {"type": "Ready", "status": flag[ready], "lastTransitionTime": now},
        ]

    async def _run(self, pod: _Pod) -> None:
        spec = pod.obj["spec"]
        wanted = spec.get("nodeSelector") or {}
        if any(self.node_labels.get(k) != v for k, v in wanted.items()):
            pod.status = {"phase": "Pending", "conditions": [{
                "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                "message": "0/1 nodes are available: 1 node(s) didn't match Pod's node "
                           "affinity/selector."}]}
            await self._event(pod, "FailedScheduling", pod.status["conditions"][0]["message"],
                              "Warning")
            await self._write_status(pod)
            return
        if self.register and not await self._bind(pod):
            return  # deleted meanwhile, or bound elsewhere: not this node's pod
        await self._event(pod, "Scheduled",
                          f"Successfully assigned {self.namespace}/{pod.name} to {self.node}")
        pod.status = {"phase": "Pending", "hostIP": self.address, "podIP": self.address,
                      "podIPs": [{"ip": self.address}], "startTime": _now()}
        self._conditions(pod, scheduled=True, started=False, ready=False)
        for c in self._containers(pod):
            self._container_status(pod, c["name"], {"waiting": {"reason": "ContainerCreating"}})
        await self._write_status(pod)
        for c in self._containers(pod):
            if not await self._pull(pod, c):
                return
        pod.port = free_port(self.address)
        for c in self._containers(pod):
            await self._event(pod, "Created", f"Created container {c['name']}",
                              container=c["name"])
            await self._start(pod, c)
            await self._event(pod, "Started", f"Started container {c['name']}",
                              container=c["name"])
            self._container_status(pod, c["name"], {"running": {"startedAt": _now()}},
                                   ready="readinessProbe" not in c)
        pod.status["phase"] = "Running"
        self._conditions(pod, scheduled=True, started=True, ready=False)
        await self._write_status(pod)
        await self._probe_until_ready(pod)

    async def _pull(self, pod: _Pod, c: dict[str, Any]) -> bool:
        image = c["image"]
        await self._event(pod, "Pulling", f'Pulling image "{image}"', container=c["name"])
        await asyncio.sleep(self.pull_seconds)
        if image in self.images:
            await self._event(pod, "Pulled", f'Successfully pulled image "{image}"',
                              container=c["name"])
            return True
        why = (f'failed to pull and unpack image "{image}": failed to resolve reference '
               f'"{image}": not found')
        await self._event(pod, "Failed", f'Failed to pull image "{image}": {why}', "Warning",
                          c["name"])
        self._container_status(pod, c["name"], {"waiting": {"reason": "ErrImagePull",
                                                            "message": why}})
        await self._write_status(pod)
        await asyncio.sleep(self.pull_seconds)
        await self._event(pod, "BackOff", f'Back-off pulling image "{image}"', "Normal",
                          c["name"])
        self._container_status(pod, c["name"], {"waiting": {
            "reason": "ImagePullBackOff", "message": f'Back-off pulling image "{image}"'}})
        await self._write_status(pod)
        return False

    async def _start(self, pod: _Pod, c: dict[str, Any]) -> None:
        entry = self.images.get(c["image"])
        if entry is None and not c.get("command"):
            return  # nothing to run here (the FUSE sidecar)
        argv = list(c.get("command") or [a.format(host=self.address, port=pod.port)
                                         for a in entry or []])
        argv += [str(a) for a in c.get("args") or []]
        env = {**os.environ, "PYTHONPATH": str(REPO),
               **{e["name"]: e.get("value", "") for e in c.get("env") or []}}
        pod.process = await asyncio.create_subprocess_exec(
            *argv, cwd=str(REPO), env=env, start_new_session=True,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)

    async def _probe_until_ready(self, pod: _Pod) -> None:
        probe = next(((c["name"], c["readinessProbe"]["httpGet"]) for c in self._containers(pod)
                      if "readinessProbe" in c), None)
        assert self._http is not None
        while pod.process is not None and pod.process.returncode is None:
            if probe is None:
                break
            try:
                url = f"http://{self.address}:{pod.port}{probe[1].get('path', '/')}"
                async with self._http.get(url, timeout=aiohttp.ClientTimeout(total=1)) as resp:
                    if 200 <= resp.status < 400:
                        break
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.05)
        if pod.process is not None and pod.process.returncode is None:
            pod.ready = True
            for c in self._containers(pod):
                self._container_status(pod, c["name"], {"running": {"startedAt": _now()}},
                                       ready=True)
            self._conditions(pod, scheduled=True, started=True, ready=True)
            await self._write_status(pod)
            code = await pod.process.wait()
        else:
            code = pod.process.returncode if pod.process else 1
        if pod.stopping:
            return
        pod.ready = False
        pod.status["phase"] = "Failed"
        for c in self._containers(pod):
            self._container_status(pod, c["name"], {"terminated": {
                "exitCode": code, "reason": "Error" if code else "Completed",
                "finishedAt": _now()}})
        self._conditions(pod, scheduled=True, started=True, ready=False)
        await self._write_status(pod)

    async def _kill(self, pod: _Pod, grace: float) -> None:
        proc = pod.process
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()

    async def _terminate(self, pod: _Pod) -> None:
        """A graceful delete: stop the containers, then remove the pod for good."""
        pod.ready = False
        await self._reconcile_slices()
        grace = float(pod.obj["metadata"].get("deletionGracePeriodSeconds") or 30)
        for c in self._containers(pod):
            await self._event(pod, "Killing", f"Stopping container {c['name']}",
                              container=c["name"])
        if pod.task is not None:
            pod.task.cancel()
        await self._kill(pod, min(grace, self.max_grace_seconds))
        await self._send("DELETE", self._url("pods", pod.name) + "?gracePeriodSeconds=0")

    # -- Services → EndpointSlices -------------------------------------------------------

    async def _on_service(self, kind: str, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        if kind == "DELETED":
            self.services.pop(name, None)
        else:
            self.services[name] = obj
        await self._reconcile_slices()

    def _desired_slices(self) -> dict[str, dict[str, Any]]:
        desired = {}
        for svc_name, svc in self.services.items():
            selector = (svc.get("spec") or {}).get("selector") or {}
            if not selector:
                continue
            for pod in self.pods.values():
                labels = pod.obj["metadata"].get("labels") or {}
                if not pod.port or any(labels.get(k) != v for k, v in selector.items()):
                    continue
                slice_name = f"{svc_name}-{pod.obj['metadata'].get('uid', 'x')[:5]}"
                desired[slice_name] = {
                    "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"name": slice_name, "namespace": self.namespace, "labels": {
                        "kubernetes.io/service-name": svc_name,
                        "endpointslice.kubernetes.io/managed-by": "test-kubelet"}},
                    "addressType": "IPv4",
                    "endpoints": [{"addresses": [self.address],
                                   "conditions": {"ready": pod.ready and not pod.stopping},
                                   "targetRef": {"kind": "Pod", "name": pod.name,
                                                 "namespace": self.namespace}}],
                    "ports": [{"name": p.get("name", ""), "protocol": "TCP", "port": pod.port}
                              for p in svc["spec"].get("ports") or []],
                }
        return desired

    async def _reconcile_slices(self) -> None:
        async with self._slice_lock:
            desired = self._desired_slices()
            for name in list(self._slices):
                if name not in desired:
                    await self._send("DELETE", self._url("endpointslices", name))
                    self._slices.pop(name)
            for name, obj in desired.items():
                if self._slices.get(name) == obj:
                    continue
                if name in self._slices:
                    status = await self._send("PATCH", self._url("endpointslices", name), obj,
                                              MERGE)
                else:
                    status = await self._send("POST", self._url("endpointslices"), obj)
                if status and status < 300:
                    self._slices[name] = obj
