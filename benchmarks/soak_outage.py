"""The Kubernetes API outage: what users and operators see while the API server is away.

``hatchway serve`` runs on the Kubernetes backend (default timing settings, as deployed)
against the emulated API server of tests/k8s (kmock, real HTTP, list + watch) with the test
node (tests/k8s/kubelet.py) running each pod's workspace as a real local process. Users with a
Running workspace keep using it (an HTTP GET every 50 ms and a WebSocket echo every second
each) while the API server is **stopped**: its listening socket closed, so every connection
is refused (not hung), for ``--outage-seconds``. Meanwhile the scenario records what a launch,
``/status``, ``/_ready`` and ``/_status`` answer. The API server then comes back on the same
port with the same objects, and the figures are the time until the watches have re-listed,
until a new launch is accepted, and until that new workspace is served through the gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.procs import Children, free_port, wait_port
from benchmarks.soak_gateway import HATCHWAY, deployed_only, gateway_env
from benchmarks.soak_k8s import HATCHERY, NAMESPACE, ApiServer, k8s_settings, write_kubeconfig
from benchmarks.soak_traffic import Tally
from proxy.sessions.devissuer import DevIssuer
from tests.k8s.kubelet import Kubelet

API = "/lw-workspace/"
PROXY = "/lw-workspace/proxy/"
@dataclass
class Answer:
    """One call's outcome, as a row of the table shows it."""

    status: int
    seconds: float
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.status}{' ' + self.detail if self.detail else ''} in {self.seconds:.2f} s"


@dataclass
class Outage:
    users: int
    seconds: float
    refused: bool = False
    before: Tally = field(default_factory=Tally)
    during: Tally = field(default_factory=Tally)
    after: Tally = field(default_factory=Tally)
    launch: Answer | None = None
    status: Answer | None = None
    ready: Answer | None = None
    ready_late: Answer | None = None
    health: Answer | None = None
    relisted_s: float = float("nan")
    launch_after: Answer | None = None
    served_s: float = float("nan")
    relist_attempts: int = 0
    notes: list[str] = field(default_factory=list)


class Users:
    """The gateway as its users see it: one dev session per user."""

    def __init__(self, http: aiohttp.ClientSession, base: str, issuer: DevIssuer) -> None:
        self.http, self.base, self.issuer = http, base, issuer
        self._tokens: dict[str, str] = {}

    def auth(self, user: str) -> dict[str, str]:
        if user not in self._tokens:
            self._tokens[user] = self.issuer.mint(user, ttl_seconds=6 * 3600)
        return {"Authorization": f"Bearer {self._tokens[user]}"}

    async def call(self, method: str, path: str, user: str | None = None
                   ) -> tuple[Answer, Any]:
        began = time.monotonic()
        async with self.http.request(method, self.base + path,
                                     headers=self.auth(user) if user else {}) as resp:
            text = await resp.text()
            answer = Answer(resp.status, time.monotonic() - began)
            if resp.headers.get("Retry-After"):
                answer.detail = f"(Retry-After: {resp.headers['Retry-After']})"
        try:
            body: Any = json.loads(text)
        except ValueError:
            body = text
        return answer, body

    async def launch(self, user: str, option: str) -> tuple[Answer, Any]:
        return await self.call("POST", f"{API}launch?id={option}", user)

    async def workspace_status(self, user: str) -> str:
        return str((await self.call("GET", API + "status", user))[1].get("status"))

    async def served(self, user: str) -> bool:
        async with self.http.get(self.base + PROXY + "api/status",
                                 headers=self.auth(user)) as resp:
            await resp.read()
            return resp.status == 200


async def _until(check: Any, within: float, interval: float = 0.1) -> float:
    """Seconds until ``await check()`` is truthy; raises after ``within``."""
    began = time.monotonic()
    while True:
        try:
            if await check():
                return time.monotonic() - began
        except (aiohttp.ClientError, ValueError, AttributeError):
            pass
        if time.monotonic() - began > within:
            raise RuntimeError(f"not within {within:.0f} s: {check}")
        await asyncio.sleep(interval)


async def _traffic(users: Users, user: str, phase: dict[str, Tally], stop: asyncio.Event
                   ) -> None:
    """One user's HTTP GETs and WebSocket echoes, counted in the phase they started in."""
    ws = await users.http.ws_connect(users.base + PROXY + "echo", headers=users.auth(user))
    last_ws = 0.0
    try:
        while not stop.is_set():
            tally = phase["now"]
            try:
                async with users.http.get(users.base + PROXY + "api/status",
                                          headers=users.auth(user)) as resp:
                    await resp.read()
                    if resp.status == 200:
                        tally.requests += 1
                    else:
                        tally.fail(f"HTTP {resp.status}")
                if time.monotonic() - last_ws >= 1.0:
                    last_ws = time.monotonic()
                    await ws.send_str("ping")
                    if (await ws.receive(timeout=10)).type is aiohttp.WSMsgType.TEXT:
                        tally.ws_messages += 1
                    else:
                        tally.fail("WebSocket closed")
                        ws = await users.http.ws_connect(users.base + PROXY + "echo",
                                                         headers=users.auth(user))
            except (aiohttp.ClientError, TimeoutError) as exc:
                tally.fail(exc)
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.05)
    finally:
        await ws.close()


async def _watch_health(users: Users) -> dict[str, Any]:
    _, body = await users.call("GET", API + "_status")
    return dict(body.get("backend_health") or {})


async def run_outage(children: Children, tmp: Path, issuer: DevIssuer,
                     args: argparse.Namespace) -> Outage:
    result = Outage(users=args.outage_users, seconds=args.outage_seconds)
    async with ApiServer() as api, Kubelet(api.url, NAMESPACE):
        kubeconfig = write_kubeconfig(tmp / "kubeconfig", api.url)
        (tmp / "hatchery.json").write_text(json.dumps(HATCHERY))
        settings = k8s_settings(tmp, kubeconfig, tmp / "hatchery.json")
        port = free_port()
        gateway = children.spawn(
            [*HATCHWAY, "serve", "-c", str(settings), "--port", str(port),
             "--state-dir", str(tmp / "state"), "--log-level", "WARNING"],
            log=tmp / "hatchway-k8s.log", role="proxy", env=gateway_env(deployed_only(tmp)))
        await asyncio.to_thread(wait_port, port, 60, gateway)
        await _scenario(api, Users(aiohttp.ClientSession(
            cookie_jar=aiohttp.DummyCookieJar()), f"http://127.0.0.1:{port}", issuer),
            result)
        children.stop(gateway)
    return result


async def _scenario(api: ApiServer, users: Users, result: Outage) -> None:
    async with users.http:
        await _until(lambda: _ok(users.call("GET", API + "_ready")), 30)
        _, options = await users.call("GET", API + "options", "soak-admin")
        option = options[0]["id"]
        names = [f"outage{i:02d}" for i in range(result.users)]
        print(f"  launching {len(names)} workspaces", flush=True)
        for name in names:
            answer, body = await users.launch(name, option)
            if answer.status != 200:
                raise RuntimeError(f"launch for {name}: {answer} {body}")
        for name in names:
            await _until(lambda n=name: users.served(n), 60)  # type: ignore[misc]
        phase = {"now": result.before}
        stop = asyncio.Event()
        load = [asyncio.ensure_future(_traffic(users, n, phase, stop)) for n in names]
        await asyncio.sleep(5)

        relists = (await _watch_health(users)).get("relists", 0)
        print(f"  stopping the API server for {result.seconds:g} s", flush=True)
        phase["now"] = result.during
        await api.stop()
        outage_began = time.monotonic()
        result.refused = api.refuses()
        await _until(lambda: _watch_is(users, "down"), 60)
        result.notes.append(f"watch reported down {time.monotonic() - outage_began:.1f} s "
                            "into the outage")
        result.launch, body = await users.launch("outage-new", option)
        if result.launch.status != 503:
            result.notes.append(f"launch during the outage answered: {body}")
        result.status, body = await users.call("GET", API + "status", names[0])
        result.status.detail = f"status {body.get('status')!r}"
        result.ready, body = await users.call("GET", API + "_ready")
        result.ready.detail = "ready" if body.get("ready") else f"failing {body.get('failing')}"
        result.health, body = await users.call("GET", API + "_status")
        result.health.detail = (f"{body.get('status')}, watch "
                                f"{body.get('backend_health', {}).get('watch')}")
        await asyncio.sleep(max(0.0, result.seconds - (time.monotonic() - outage_began)))
        result.ready_late, body = await users.call("GET", API + "_ready")
        result.ready_late.detail = "ready" if body.get("ready") else \
            f"failing {body.get('failing')}"

        print("  restarting the API server", flush=True)
        phase["now"] = result.after
        await api.start()
        back = time.monotonic()

        async def relisted() -> bool:  # both watches listed again (reads no API)
            health = await _watch_health(users)
            return bool(health.get("watch") == "ok" and health.get("relists", 0) >= relists + 2)

        # No user calls the API first: the re-list is what the watches do on their own (the
        # culler's Lease renewal, every lease_renew_seconds, ends their backoff). A user's
        # launch or status read would end it at once (tests/k8s/test_api_outage.py).
        result.relisted_s = await _until(relisted, 120)
        answer, body = await users.launch("outage-new", option)
        if answer.status != 200:
            raise RuntimeError(f"launch after the outage: {answer} {body}")
        result.launch_after = answer
        result.served_s = time.monotonic() - back + await _until(
            lambda: users.served("outage-new"), 120)
        health = await _watch_health(users)
        result.relist_attempts = sum(w.get("errors", 0) for w in
                                     (health.get("watches") or {}).values())
        await asyncio.sleep(5)
        stop.set()
        await asyncio.gather(*load, return_exceptions=True)


async def _ok(call: Any) -> bool:
    answer, _ = await call
    return bool(answer.status == 200)


async def _watch_is(users: Users, state: str) -> bool:
    return bool((await _watch_health(users)).get("watch") == state)


def outage_rows(o: Outage) -> list[str]:
    pct = 100.0 * o.during.requests / max(1, o.during.requests + o.during.failures)
    return [
        f"| API outage: length, API port refusing connections | {o.seconds:g} s, "
        f"{'refused' if o.refused else 'NOT refused'} |",
        f"| API outage: users with a Running workspace, each GET every 50 ms + WS echo/s | "
        f"{o.users} |",
        f"| API outage: requests served during the outage / failed | {o.during.requests} / "
        f"{o.during.failures} {o.during.why()} ({pct:.2f} % served) |",
        f"| API outage: WebSocket echoes during the outage | {o.during.ws_messages} |",
        f"| API outage: requests before / after it (failed) | {o.before.requests} "
        f"({o.before.failures}) / {o.after.requests} ({o.after.failures}) |",
        f"| API outage: POST /launch answers | {o.launch} |",
        f"| API outage: GET /status (a Running user) answers | {o.status} |",
        f"| API outage: GET /_ready answers (at once / at the end) | {o.ready} / "
        f"{o.ready_late} |",
        f"| API outage: GET /_status answers | {o.health} |",
        f"| API back: both watches re-listed after (s; no user call, so the Lease renewal "
        f"ends their backoff) | {o.relisted_s:.2f} |",
        f"| API back: a new launch then answers | {o.launch_after} |",
        f"| API back: that new workspace served through the gateway after (s; includes its "
        f"start) | {o.served_s:.2f} |",
        f"| API outage: failed list/watch attempts in all (both watches) | "
        f"{o.relist_attempts} |",
        *(f"| API outage: note | {n} |" for n in o.notes),
    ]
