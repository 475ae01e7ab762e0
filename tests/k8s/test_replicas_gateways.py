"""Two whole gateway replicas on the real API server with the test kubelet: each a real
hatchway app started the way ``hatchway serve`` starts it (``proxy.serve.server.start``) on its own
port, or a ``hatchway serve`` process where a replica must die without a word. Sessions are a
loopback Fence's (tests/fence_contract.py), so every launch mints a real API key. The
replicas in this process share one ManualClock: idleness and the Lease's expiry are judged by
it, so a test moves time instead of waiting for it, while the rounds that talk to the API
server run in real time and short: the Lease (30 s of that clock) is renewed every 0.25 s;
activity is published every 0.25 s; the leader looks for idle workspaces every 0.3 s; the
default idle limit is 3 s."""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from launcher.clock import ManualClock
from launcher.culling import IdleCuller
from launcher.kubernetes import KubernetesBackend
from launcher.kubernetes.leader import LeaderElector
from launcher.names import claim_name
from proxy.gateway import GATEWAY, Gateway
from proxy.serve.app import CULLER, build_app
from proxy.serve.running import Running
from proxy.serve.server import start
from proxy.settings import load_settings
from tests.fence_contract import FenceContract
from tests.helpers import clean_env, env_of, free_port

from .cluster import Cluster
from .conftest import PROXY, demo_entry, eventually, hatchery_doc
from .kubelet import DEFAULT_IMAGES, Kubelet

API = "/lw-workspace/"
USER = "alice@example.org"
LEASE_S, RENEW_S, ACTIVITY_S, CULL_S, IDLE_S = 30.0, 0.25, 0.25, 0.3, 3
LEASE = "hatchway-culler"


def settings_doc(kubeconfig: str, fence: FenceContract, identity: str) -> dict[str, Any]:
    return {
        "backend": "kubernetes", "cull_interval_seconds": CULL_S,
        "sessions": {"mode": "jwks", "jwks_url": fence.jwks_url},
        "kubernetes": {
            "kubeconfig": kubeconfig, "route_to": "endpoints", "identity": identity,
            "api_keys": True, "fence_url": fence.url + "/user/",
            "lease_seconds": LEASE_S, "lease_renew_seconds": RENEW_S,
            "activity_seconds": ACTIVITY_S, "default_idle_seconds": IDLE_S,
            "request_timeout": 2, "connect_timeout": 0.5, "retries": 1, "retry_backoff": 0.05,
        },
    }


@dataclass
class Replica:
    """One whole gateway, reached only over its socket."""

    name: str
    running: Running
    gateway: Gateway

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.running.port}"

    @property
    def backend(self) -> KubernetesBackend:
        backend = self.gateway.backend
        assert isinstance(backend, KubernetesBackend)
        return backend

    @property
    def leads(self) -> bool:
        return self.backend.is_leader

    @property
    def elector(self) -> LeaderElector:
        assert self.backend.elector is not None
        return self.backend.elector

    @property
    def culler(self) -> IdleCuller:
        return self.running.runner.app[CULLER]


StartReplica = Callable[[str], Awaitable[Replica]]


JUPYTER_IMAGE = "quay.io/cdis/heal-notebooks:test"  # a real jupyter_server, run by the kubelet
JUPYTER = demo_entry("Jupyter Notebook", image=JUPYTER_IMAGE, args=[
    f"--ServerApp.base_url={PROXY}", "--ServerApp.shutdown_no_activity_timeout=3600"])


@pytest.fixture
async def hatchery_file(cluster: Cluster, tmp_path: Path) -> Path:
    path = tmp_path / "hatchery.json"
    doc = hatchery_doc(cluster.namespace)
    path.write_text(json.dumps({**doc, "containers": [*doc["containers"], JUPYTER]}))
    return path


@pytest.fixture
async def jupyter_node(cluster: Cluster, tmp_path: Path) -> AsyncIterator[Kubelet]:
    """The test kubelet with an image whose entrypoint is jupyter_server, no token."""
    pytest.importorskip("jupyter_server")
    (tmp_path / "home").mkdir()
    async with cluster.kubelet(images={**DEFAULT_IMAGES, JUPYTER_IMAGE: [
            sys.executable, "-m", "jupyter_server", "--ServerApp.port={port}",
            "--ServerApp.ip={host}", "--IdentityProvider.token=", "--ServerApp.password=",
            "--ServerApp.disable_check_xsrf=True", "--no-browser", "--allow-root",
            f"--ServerApp.root_dir={tmp_path / 'home'}"]}) as node:
        yield node


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


def past_the_wall_clock(clock: ManualClock, seconds: float) -> None:
    """Move the replicas' clock ``seconds`` past the wall clock, which a workspace's own
    stamps (its start, Jupyter's ``last_activity``) are in."""
    clock.advance(max(0.0, time.time() - clock.time()) + seconds)


@pytest.fixture
async def replica(kubeconfig: str, fence: FenceContract, hatchery_file: Path,
                  tmp_path: Path, clock: ManualClock) -> AsyncIterator[StartReplica]:
    started: list[Running] = []

    async def start_one(name: str) -> Replica:
        settings = load_settings([str(hatchery_file)], environ={}, overrides={
            "state_dir": str(tmp_path / f"state-{name}"),
            **settings_doc(kubeconfig, fence, name)})
        app = build_app(settings, clock=clock)
        running = await start(app, "127.0.0.1", 0)
        started.append(running)
        return Replica(name, running, app[GATEWAY])

    yield start_one
    for running in started:
        await running.close()


def auth(fence: FenceContract) -> dict[str, str]:
    return {"Authorization": f"Bearer {fence.user_token(USER)}"}


async def launch(client: aiohttp.ClientSession, r: Replica, fence: FenceContract,
                 name: str = "Demo workspace") -> tuple[int, str]:
    async with client.get(r.base + API + "options", headers=auth(fence)) as resp:
        option = next(o["id"] for o in await resp.json() if o["name"] == name)
    async with client.post(f"{r.base}{API}launch?id={option}", headers=auth(fence)) as resp:
        return resp.status, await resp.text()


async def status(client: aiohttp.ClientSession, r: Replica, fence: FenceContract
                 ) -> dict[str, Any]:
    async with client.get(r.base + API + "status", headers=auth(fence)) as resp:
        assert resp.status == 200, await resp.text()
        return dict(await resp.json())


async def use(client: aiohttp.ClientSession, r: Replica, fence: FenceContract) -> None:
    """One request to the workspace through ``r``'s proxy (the traffic a browser makes)."""
    async with client.get(r.base + PROXY + "api/status", headers=auth(fence)) as resp:
        assert resp.status == 200, await resp.text()


async def running_through(client: aiohttp.ClientSession, fence: FenceContract,
                          *replicas: Replica) -> None:
    async def reachable() -> bool:
        for r in replicas:
            if (await status(client, r, fence))["status"] != "Running":
                return False
            route = r.gateway.routes.get(USER)
            if route is None or not route.ready:
                return False
        return True
    await eventually(reachable, within=15, interval=0.1)


async def lease_holder(cluster: Cluster) -> str:
    lease = await cluster.get("leases", LEASE)
    return str(((lease or {}).get("spec") or {}).get("holderIdentity") or "")


async def holder_is(cluster: Cluster, identity: str) -> bool:
    return await lease_holder(cluster) == identity


# -- one culler, fed by every replica's traffic -----------------------------------------------

async def test_traffic_only_through_b_keeps_the_workspace_while_a_leads_and_a_culls_it_once_idle(
        cluster: Cluster, kubelet: Kubelet, replica: StartReplica, fence: FenceContract,
        client: aiohttp.ClientSession, clock: ManualClock) -> None:
    a = await replica("a")
    await eventually(lambda: a.leads)
    b = await replica("b")
    assert await launch(client, b, fence) == (200, "Success")
    await running_through(client, fence, a, b)
    past_the_wall_clock(clock, 0)  # the workspace's start is behind us

    for _ in range(int((IDLE_S + 2) / 0.25)):  # well past the limit: 20 of A's sweeps
        await use(client, b, fence)
        await eventually(lambda: a.backend.last_activity_ms(USER) ==
                         b.gateway.activity.last_ms(USER))  # B's activity reached A
        clock.advance(0.25)
        assert a.leads and not b.leads
        assert await a.culler.sweep() == [], "culled while in use through B"
        assert await cluster.live_pods()
    assert a.gateway.activity.last_ms(USER) < b.gateway.activity.last_ms(USER)  # A saw none

    clock.advance(IDLE_S - 1.5)  # B's clock is coarse (1 s ticks): never sooner than that
    assert a.leads
    assert await a.culler.sweep() == []
    clock.advance(2.0)  # idle past the limit by any account: A's own sweeps cull it
    await eventually(lambda: cluster.none_live(), within=IDLE_S + 4, interval=0.05)
    assert await cluster.names("persistentvolumeclaims") == [claim_name(USER)]  # it stays
    (key,) = fence.minted  # revoked right after the delete, with the key's own token
    await eventually(lambda: fence.revoked == {key["key_id"]}, within=2)
    assert fence.revocations == ["oauth2"]


# -- the Lease --------------------------------------------------------------------------------

async def test_a_leader_that_shuts_down_hands_over_to_b_within_the_lease_time(
        cluster: Cluster, replica: StartReplica) -> None:
    a = await replica("a")
    await eventually(lambda: a.leads)
    b = await replica("b")
    await eventually(lambda: b.elector.holder == "a")  # B has read A's Lease
    assert not b.leads
    await a.running.close()  # an orderly shutdown (rolling update): the Lease is released
    await eventually(lambda: b.leads, within=2)  # the clock stands still: only the release
    assert await lease_holder(cluster) == "b"


def serve(tmp_path: Path, settings: dict[str, Any], hatchery_file: Path, port: int
          ) -> subprocess.Popen[bytes]:
    """``hatchway serve`` as an operator runs it, in its own process."""
    path = tmp_path / "replica-a.json"
    path.write_text(json.dumps(settings))
    return subprocess.Popen(
        [sys.executable, "-m", "proxy", "serve", "-c", str(path), "-c", str(hatchery_file),
         "--port", str(port), "--state-dir", str(tmp_path / "state-a"),
         "--log-level", "WARNING"],
        env={**clean_env(), "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
        stdout=subprocess.DEVNULL, stderr=(tmp_path / "replica-a.log").open("wb"),
        start_new_session=True)


def alive(process: subprocess.Popen[bytes], tmp_path: Path) -> None:
    """Fail with the process's own words if it exited (a wait would only time out)."""
    if process.poll() is not None:
        log = (tmp_path / "replica-a.log").read_text(errors="replace")[-2000:]
        raise AssertionError(f"hatchway serve exited {process.returncode}:\n{log}")


async def test_a_killed_leader_is_replaced_by_b_once_its_lease_expires(
        cluster: Cluster, kubeconfig: str, fence: FenceContract, hatchery_file: Path,
        replica: StartReplica, tmp_path: Path, clock: ManualClock) -> None:
    process = serve(tmp_path, settings_doc(kubeconfig, fence, "a"), hatchery_file, free_port())
    try:
        await eventually(lambda: holder_is(cluster, "a"), within=15, interval=0.05)
        b = await replica("b")
        await eventually(lambda: b.elector.holder == "a")  # B has read A's Lease
        assert not b.leads and await lease_holder(cluster) == "a"
        os.killpg(process.pid, signal.SIGKILL)  # no release: only expiry frees the Lease
        await asyncio.to_thread(process.wait, 5)
        assert not await b.elector.try_acquire_or_renew()  # B reads A's last renewal
        clock.advance(LEASE_S - 2 * RENEW_S)
        assert not await b.elector.try_acquire_or_renew()  # B waits for the expiry
        clock.advance(2 * RENEW_S)  # A never let go: expiry hands over on B's next round
        await eventually(lambda: b.leads, within=4 * RENEW_S + 1)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)
    assert await lease_holder(cluster) == "b"


async def test_two_workers_of_one_replica_hold_the_lease_as_one_and_both_route_a_launch(
        cluster: Cluster, kubelet: Kubelet, kubeconfig: str, fence: FenceContract,
        hatchery_file: Path, client: aiohttp.ClientSession, tmp_path: Path) -> None:
    """``--workers 2``: each worker is a candidate of its own (``a-w0``, ``a-w1``), so one
    culls; a workspace launched through either is routed by both (each has its own watch)."""
    port, metrics_port = free_port(), free_port()
    process = serve(tmp_path, {**settings_doc(kubeconfig, fence, "a"), "workers": 2,
                               "metrics_port": metrics_port}, hatchery_file, port)
    base = f"http://127.0.0.1:{port}"
    try:
        async def held() -> bool:  # three processes start: give a loaded machine time
            alive(process, tmp_path)
            return bool(await lease_holder(cluster))
        await eventually(held, within=60, interval=0.05)
        holder = await lease_holder(cluster)
        assert holder in ("a-w0", "a-w1")
        renewals: set[str] = set()

        async def renewed_four_times() -> bool:  # the other worker's rounds, as many
            lease = await cluster.get("leases", LEASE)
            spec = (lease or {}).get("spec") or {}
            assert spec.get("holderIdentity") == holder  # the other worker never took it
            renewals.add(str(spec.get("renewTime")))
            return len(renewals) > 4
        await eventually(renewed_four_times, within=10 * 4 * RENEW_S, interval=0.05)
        async with client.get(base + API + "options", headers=auth(fence)) as resp:
            option = next(o["id"] for o in await resp.json() if o["name"] == "Demo workspace")
        async with client.post(f"{base}{API}launch?id={option}", headers=auth(fence)) as resp:
            assert resp.status == 200, await resp.text()
        fresh = aiohttp.TCPConnector(force_close=True)  # a connection each: both workers
        async with aiohttp.ClientSession(connector=fresh) as spread:
            async def routed_by_every_worker() -> bool:
                for _ in range(10):
                    async with spread.get(base + PROXY + "api/status",
                                          headers=auth(fence)) as resp:
                        if resp.status != 200:
                            return False
                return True
            await eventually(routed_by_every_worker, within=20, interval=0.2)
            async with spread.get(f"http://127.0.0.1:{metrics_port}/metrics") as resp:
                scraped = await resp.text()
        assert "hatchway_workers 2.0" in scraped
        assert 'hatchway_routes 1.0' in scraped  # the largest of the two, not their sum
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(5)


# -- lastActivityTime, the same from every replica --------------------------------------------

async def launched_through_a_used_through_b(replica: StartReplica, client: aiohttp.ClientSession,
                                            fence: FenceContract, clock: ManualClock
                                            ) -> tuple[Replica, Replica]:
    """Replicas A and B; alice's workspace launched through A, Running on both, then used
    through B only, once B's coarse clock has moved past the launch A recorded."""
    a = await replica("a")
    b = await replica("b")
    assert await launch(client, a, fence) == (200, "Success")
    await running_through(client, fence, a, b)
    past_the_wall_clock(clock, 1.1)  # past the workspace's start, which it also reports
    await use(client, b, fence)
    return a, b


async def test_both_replicas_answer_the_same_last_activity_time(
        cluster: Cluster, kubelet: Kubelet, replica: StartReplica, fence: FenceContract,
        client: aiohttp.ClientSession, clock: ManualClock) -> None:
    a, b = await launched_through_a_used_through_b(replica, client, fence, clock)
    stamp = b.gateway.activity.last_ms(USER)
    assert stamp > a.gateway.activity.last_ms(USER)

    async def same() -> bool:
        seen = [(await status(client, r, fence))["lastActivityTime"] for r in (a, b)]
        return seen == [stamp, stamp]
    await eventually(same, within=3 * ACTIVITY_S + 1, interval=0.05)


async def test_a_restarted_replica_answers_the_last_activity_time_it_answered_before(
        cluster: Cluster, kubelet: Kubelet, replica: StartReplica, fence: FenceContract,
        client: aiohttp.ClientSession, clock: ManualClock) -> None:
    a, b = await launched_through_a_used_through_b(replica, client, fence, clock)
    before = (await status(client, b, fence))["lastActivityTime"]
    assert before == b.gateway.activity.last_ms(USER)  # B's own, maybe not published yet
    await b.running.close()  # B restarts: its process memory is gone
    restarted = await replica("b2")
    await running_through(client, fence, restarted)
    assert restarted.gateway.activity.last_ms(USER) == 0  # nothing of B's in its memory
    assert (await status(client, restarted, fence))["lastActivityTime"] == before
    assert (await status(client, a, fence))["lastActivityTime"] == before


# -- one launch, one workspace ----------------------------------------------------------------

async def test_a_launch_sent_to_both_replicas_at_once_creates_one_workspace_and_leaks_no_key(
        cluster: Cluster, replica: StartReplica, fence: FenceContract,
        client: aiohttp.ClientSession) -> None:
    a = await replica("a")
    b = await replica("b")
    answers = await asyncio.gather(launch(client, a, fence), launch(client, b, fence))
    assert sorted(code for code, _ in answers) == [200, 500]
    assert any("already exists" in text for code, text in answers if code == 500)
    pods = await cluster.items("pods")
    assert len(pods) == 1
    assert len(await cluster.items("services")) == 1
    assert len(await cluster.items("persistentvolumeclaims")) == 1
    in_pod = env_of(pods[0], "hatchery-container")["API_KEY_ID"]
    assert len(fence.minted) == 2  # both replicas minted before the API server arbitrated
    assert fence.revoked == {k["key_id"] for k in fence.minted} - {in_pod}


# -- lastActivityTime, the later of every replica's and Jupyter's own -------------------------

async def jupyter_last_activity_ms(node: Kubelet, cluster: Cluster) -> int:
    """What the workspace's Jupyter says, asked directly on its port (not through a gateway)."""
    (pod,) = await cluster.live_pods()
    url = f"http://{node.address}:{node.port_of(pod['metadata']['name'])}{PROXY}api/status"
    async with aiohttp.ClientSession() as direct, direct.get(url) as resp:
        stamp = (await resp.json())["last_activity"]
    return int(datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000)


async def work_in_jupyter(node: Kubelet, cluster: Cluster) -> None:
    """API activity Jupyter records and no gateway sees (as a kernel's own output would be)."""
    (pod,) = await cluster.live_pods()
    url = f"http://{node.address}:{node.port_of(pod['metadata']['name'])}{PROXY}api/contents"
    async with aiohttp.ClientSession() as direct, direct.get(url) as resp:
        assert resp.status == 200


async def test_last_activity_time_is_jupyters_when_jupyter_saw_activity_later(
        cluster: Cluster, jupyter_node: Kubelet, replica: StartReplica, fence: FenceContract,
        client: aiohttp.ClientSession) -> None:
    a = await replica("a")
    assert await launch(client, a, fence, "Jupyter Notebook") == (200, "Success")
    await running_through(client, fence, a)
    await work_in_jupyter(jupyter_node, cluster)  # on the wall clock: the gateway's stands still
    jupyters = await jupyter_last_activity_ms(jupyter_node, cluster)
    ours = a.backend.last_activity_ms(USER)
    assert 0 < ours < jupyters
    answer = await status(client, a, fence)
    # The limit in force: the option's 3600 s, capped by the global default as the reaper does.
    assert answer["idleTimeLimit"] == IDLE_S * 1000
    assert answer["lastActivityTime"] == jupyters


async def test_last_activity_time_is_the_gateways_when_it_saw_activity_later(
        cluster: Cluster, jupyter_node: Kubelet, replica: StartReplica, fence: FenceContract,
        client: aiohttp.ClientSession, clock: ManualClock) -> None:
    a = await replica("a")
    assert await launch(client, a, fence, "Jupyter Notebook") == (200, "Success")
    await running_through(client, fence, a)
    await work_in_jupyter(jupyter_node, cluster)
    past_the_wall_clock(clock, 1.1)  # past Jupyter's stamp by more than the gateway's 1 s ticks
    await use(client, a, fence)  # Jupyter's api/status: traffic Jupyter does not count
    ours = a.backend.last_activity_ms(USER)
    assert ours > await jupyter_last_activity_ms(jupyter_node, cluster)
    assert (await status(client, a, fence))["lastActivityTime"] == ours
