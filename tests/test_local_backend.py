"""The local backend runs real processes: launch, readiness, exit, terminate and cleanup of
whole process groups, and the built-in default options."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from launcher.backend import LAUNCHING, NOT_FOUND, RUNNING, STOPPED, TERMINATING, WorkspaceStatus
from launcher.defaults import default_hatchery_config
from launcher.errors import BackendError, WorkspaceExists
from launcher.local import LocalBackend
from launcher.options import WorkspaceOption, parse_hatchery_config
from launcher.processes import parse_memory
from launcher.routes import RouteTable
from launcher.settings import LocalSettings

from .helpers import NEVER_READY, eventually

PREFIX = "/lw-workspace/proxy/"
EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
PY = sys.executable
DEMO = [PY, "-m", "launcher.demo", "--port", "{port}", "--base-url", "{base_url}"]


def option(**entry: Any) -> WorkspaceOption:
    entry.setdefault("name", "test workspace")
    return parse_hatchery_config({"containers": [entry]}, "test").options[0]


def demo_option() -> WorkspaceOption:
    return next(o for o in default_hatchery_config().options if "Demo" in o.name)


def alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie nobody reaps (PID 1 here does not reap)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def host_pid(recorded: int, home: Path) -> int:
    """A pid a workspace wrote down, as seen from here: a sandboxed workspace has a pid
    namespace of its own, so its pids are found by their innermost number (NSpid) among the
    processes of its uid (the owner of its HOME)."""
    uid = str(home.stat().st_uid)
    for entry in Path("/proc").iterdir():
        try:
            status = dict(line.split(":", 1) for line in
                          (entry / "status").read_text().splitlines() if ":" in line)
        except (OSError, NotADirectoryError):
            continue
        if status.get("NSpid", "").split()[-1:] == [str(recorded)] \
                and status.get("Uid", "").split()[:1] == [uid]:
            return int(entry.name)
    raise AssertionError(f"no process of uid {uid} is pid {recorded} in its namespace")


async def until(check: Callable[[], Any], within: float = 15.0) -> Any:
    """``check``'s first truthy result (it may be a coroutine function)."""
    found: list[Any] = [None]

    async def holds() -> bool:
        result = check()
        found[0] = await result if asyncio.iscoroutine(result) else result
        return bool(found[0])
    await eventually(holds, within, interval=0.02)
    return found[0]


async def status_is(backend: LocalBackend, user: str, wanted: str,
                    within: float = 15.0) -> WorkspaceStatus:
    async def check() -> WorkspaceStatus | None:
        st = await backend.status(user)
        return st if st.status == wanted else None
    result: WorkspaceStatus = await until(check, within)
    return result


@pytest.fixture
def routes() -> RouteTable:
    return RouteTable()


@pytest.fixture
def settings() -> LocalSettings:
    return LocalSettings(stop_grace_seconds=1.0, ready_timeout_seconds=30.0,
                         probe_interval_seconds=0.05)


@pytest.fixture
async def backend(routes: RouteTable, settings: LocalSettings,
                  tmp_path: Path) -> AsyncIterator[LocalBackend]:
    b = LocalBackend(routes, settings, proxy_prefix=PREFIX, state_dir=str(tmp_path))
    await b.start()
    yield b
    await b.close()


# -- lifecycle ---------------------------------------------------------------------------

async def test_demo_workspace_goes_launching_running_then_not_found(
        backend: LocalBackend, routes: RouteTable) -> None:
    await backend.launch("alice@x.org", demo_option(), token="secret")
    assert (await backend.status("alice@x.org")).status == LAUNCHING
    route = routes.get("alice@x.org")
    assert route is not None and not route.ready and route.rewrite == PREFIX
    await status_is(backend, "alice@x.org", RUNNING)
    route = routes.get("alice@x.org")
    assert route is not None and route.ready and route.source == "local"
    async with aiohttp.ClientSession() as http:
        url = f"http://{route.host}:{route.port}{route.rewrite}headers"
        async with http.get(url, headers={"Authorization": route.auth}) as resp:  # as relayed
            assert resp.status == 200
    assert await backend.terminate("alice@x.org") is True
    assert (await backend.status("alice@x.org")).status == NOT_FOUND
    assert routes.get("alice@x.org") is None


async def test_workspace_ports_lie_below_the_ephemeral_range_and_differ(
        backend: LocalBackend, routes: RouteTable) -> None:
    # A port bind(0) picks is also handed to outgoing connections, which may take it before
    # the workspace binds; below the range only listeners compete.
    ephemeral_start = int(EPHEMERAL_RANGE.read_text().split()[0])  # noqa: ASYNC240 (procfs)
    users = [f"p{i}" for i in range(5)]
    for user in users:
        await backend.launch(user, demo_option(), None)
    ports = [r.port for r in (routes.get(u) for u in users) if r is not None]
    assert len(set(ports)) == len(users)
    assert all(p < ephemeral_start for p in ports), ports
    for user in users:
        await backend.terminate(user)


async def test_launching_status_reports_conditions_and_no_idle_limit_yet(
        backend: LocalBackend) -> None:
    await backend.launch("bob", option(command=NEVER_READY["command"], ready_probe="/",
                                       args=["--ServerApp.shutdown_no_activity_timeout=60"]),
                         None)
    st = await backend.status("bob")
    assert st.status == LAUNCHING and st.workspace_type == "Local"
    assert st.conditions == [{"type": "Ready", "status": "False"}]
    assert st.container_states == [{"name": "test workspace", "ready": False,
                                    "state": {"waiting": {"reason": "ContainerCreating"}}}]
    assert st.idle_time_limit == 0  # Hatchery reports the limit only once Running


async def test_terminate_ends_the_whole_process_group(backend: LocalBackend) -> None:
    script = ("sleep 300 & echo $! > grandchild.pid; "
              f"{PY} -m launcher.demo --port {{port}} --base-url {{base_url}}; wait")
    await backend.launch("carol", option(command=["sh", "-c", script],
                                         **{"ready-probe": PREFIX + "api/status",
                                            "path-rewrite": PREFIX}), None)
    await status_is(backend, "carol", RUNNING)
    home = backend.workdir("carol")
    grandchild = host_pid(int((home / "grandchild.pid").read_text()), home)
    assert alive(grandchild)
    await backend.terminate("carol")
    assert not alive(grandchild)


async def test_terminate_answers_false_when_there_is_no_workspace(backend: LocalBackend) -> None:
    assert await backend.terminate("nobody") is False


async def test_status_is_terminating_while_the_group_stops(backend: LocalBackend) -> None:
    await backend.launch("dave", option(command=[PY, "-c", _IGNORE_TERM]), None)
    await until(lambda: (backend.workdir("dave") / "pid").exists())
    stopping = asyncio.create_task(backend.terminate("dave"))
    assert (await status_is(backend, "dave", TERMINATING, 1.0)).status == TERMINATING
    await stopping


_IGNORE_TERM = ("import os, signal, time, pathlib; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
                " pathlib.Path('pid').write_text(str(os.getpid())); time.sleep(300)")


async def test_workspace_ignoring_sigterm_is_killed_after_the_grace_period(
        routes: RouteTable, tmp_path: Path) -> None:
    settings = LocalSettings(stop_grace_seconds=0.5, probe_interval_seconds=0.05)
    backend = LocalBackend(routes, settings, proxy_prefix=PREFIX, state_dir=str(tmp_path))
    await backend.launch("erin", option(command=[PY, "-c", _IGNORE_TERM]), None)
    pidfile = backend.workdir("erin") / "pid"
    # the file exists a moment before its content is written
    await until(lambda: pidfile.exists() and pidfile.read_text().strip())
    pid = host_pid(int(pidfile.read_text()), backend.workdir("erin"))
    loop = asyncio.get_running_loop()
    started = loop.time()
    await backend.terminate("erin")
    assert loop.time() - started >= 0.5
    assert not alive(pid)
    await backend.close()


async def test_close_terminates_every_workspace(routes: RouteTable, settings: LocalSettings,
                                                 tmp_path: Path) -> None:
    backend = LocalBackend(routes, settings, proxy_prefix=PREFIX, state_dir=str(tmp_path))
    script = "echo $$ > pid; exec sleep 300"
    for user in ("u1", "u2"):
        await backend.launch(user, option(command=["sh", "-c", script]), None)
    pidfiles = [backend.workdir(u) / "pid" for u in ("u1", "u2")]
    await until(lambda: all(p.exists() and p.read_text().strip() for p in pidfiles))
    pids = [host_pid(int(p.read_text()), p.parent) for p in pidfiles]
    await backend.close()
    assert not any(alive(pid) for pid in pids)
    assert len(routes) == 0


# -- failures ----------------------------------------------------------------------------

async def test_crashing_workspace_shows_stopped_with_its_exit_status(
        backend: LocalBackend, routes: RouteTable) -> None:
    await backend.launch("frank", option(command=[PY, "-c", "import sys; sys.exit(3)"],
                                         **{"ready-probe": "/api/status"}), None)
    st = await status_is(backend, "frank", STOPPED)
    assert st.detail == "workspace exited with status 3"
    assert st.container_states[0]["state"]["terminated"]["exitCode"] == 3
    assert routes.get("frank") is None


async def test_workspace_killed_by_a_signal_says_which(backend: LocalBackend) -> None:
    await backend.launch("gina", option(command=[PY, "-c", "import os; os.kill(os.getpid(), 9)"]),
                         None)
    st = await status_is(backend, "gina", STOPPED)
    assert st.detail == "workspace killed by signal SIGKILL"


async def test_second_launch_raises_workspace_exists(backend: LocalBackend) -> None:
    await backend.launch("hank", option(command=NEVER_READY["command"]), None)
    with pytest.raises(WorkspaceExists):
        await backend.launch("hank", option(command=NEVER_READY["command"]), None)


async def test_stopped_workspace_can_be_launched_again(backend: LocalBackend) -> None:
    await backend.launch("ivy", option(command=[PY, "-c", "pass"]), None)
    await status_is(backend, "ivy", STOPPED)
    await backend.launch("ivy", demo_option(), None)
    await status_is(backend, "ivy", RUNNING)


async def test_missing_executable_is_a_backend_error(backend: LocalBackend,
                                                     routes: RouteTable) -> None:
    missing = f"/nonexistent/{uuid.uuid4().hex}"
    with pytest.raises(BackendError, match="was not found"):
        await backend.launch("jack", option(command=[missing]), None)
    assert (await backend.status("jack")).status == NOT_FOUND
    assert routes.get("jack") is None


async def test_bad_memory_limit_is_a_backend_error(backend: LocalBackend) -> None:
    with pytest.raises(BackendError, match="'lots' is not a quantity"):
        await backend.launch("kim", option(command=["true"], **{"memory-limit": "lots"}), None)


async def test_workspace_not_ready_in_time_is_stopped(routes: RouteTable, tmp_path: Path) -> None:
    settings = LocalSettings(stop_grace_seconds=0.5, ready_timeout_seconds=0.4,
                             probe_interval_seconds=0.05)
    backend = LocalBackend(routes, settings, proxy_prefix=PREFIX, state_dir=str(tmp_path))
    await backend.launch("lee", option(command=NEVER_READY["command"], **{"ready-probe": "/x"}),
                         None)
    st = await status_is(backend, "lee", STOPPED, 5.0)
    assert "not ready within 0.4s" in st.detail
    assert routes.get("lee") is None
    await backend.close()


# -- what the workspace process gets -----------------------------------------------------

_DUMP_ENV = ("import json, os, pathlib, resource, time;"
             "pathlib.Path('env.json').write_text(json.dumps({'env': dict(os.environ),"
             " 'argv': __import__('sys').argv,"
             " 'data_limit': resource.getrlimit(resource.RLIMIT_DATA)[0]})); time.sleep(60)")


async def dumped(backend: LocalBackend, user: str) -> dict[str, Any]:
    path = backend.workdir(user) / "env.json"
    await until(lambda: path.exists() and path.read_text())
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


async def test_workspace_gets_port_base_url_and_user_but_never_the_token(
        backend: LocalBackend, routes: RouteTable, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HATCHWAY_SIGNING_SECRET", "do-not-leak")
    opt = option(command=[PY, "-c", _DUMP_ENV], args=["{port}", "{base_url}", "{user}"],
                 env={"GREETING": "hi {user}"}, **{"path-rewrite": "/ws/"})
    await backend.launch("mo@x", opt, token="the-users-token")
    doc = await dumped(backend, "mo@x")
    route = routes.get("mo@x")
    assert route is not None
    assert doc["argv"][1:] == [str(route.port), "/ws/", "mo@x"]
    env = doc["env"]
    assert env["HATCHWAY_PORT"] == str(route.port) and env["HATCHWAY_BASE_URL"] == "/ws/"
    assert env["REMOTE_USER"] == "mo@x" and env["GREETING"] == "hi mo@x"
    assert "HATCHWAY_SIGNING_SECRET" not in env
    assert "the-users-token" not in json.dumps(doc)


async def test_memory_limit_caps_the_workspace_data_size(backend: LocalBackend) -> None:
    await backend.launch("ned", option(command=[PY, "-c", _DUMP_ENV],
                                       **{"memory-limit": "768Mi"}), None)
    doc = await dumped(backend, "ned")
    assert doc["data_limit"] == 768 * 2**20


async def test_workspace_runs_in_its_own_directory_and_logs_to_a_file(
        backend: LocalBackend, tmp_path: Path) -> None:
    await backend.launch("o.p", option(command=["sh", "-c", "pwd; echo oops >&2"]), None)
    await status_is(backend, "o.p", STOPPED)
    workdir = tmp_path / "workspaces" / "o-2ep"
    assert backend.workdir("o.p") == workdir and workdir.is_dir()
    logged = (tmp_path / "logs" / "o-2ep.log").read_text()
    assert f"{workdir}\n" in logged and "oops\n" in logged


@pytest.mark.parametrize("quantity, size", [("512Mi", 512 * 2**20), ("2Gi", 2 * 2**30),
                                            ("1G", 10**9), ("500M", 500 * 10**6),
                                            ("1048576", 2**20), ("1.5Gi", 3 * 2**29)])
def test_memory_quantities_parse_as_kubernetes_does(quantity: str, size: int) -> None:
    assert parse_memory(quantity) == size


# -- the built-in default options --------------------------------------------------------

def test_defaults_offer_the_demo_and_a_local_jupyter() -> None:
    config = default_hatchery_config()
    assert config.source == "built-in defaults"
    demo, jupyter = config.options
    assert "Demo" in demo.name and demo.command == [PY, "-m", "launcher.demo"]
    assert demo.summary()["memory-limit"] == "512Mi" and demo.idle_time_limit == -1
    assert jupyter.name == "Jupyter Notebook (local)" and jupyter.idle_time_limit == 3_600_000


@pytest.mark.jupyter
async def test_default_jupyter_runs_code_over_a_websocket_from_the_gateway_origin(
        backend: LocalBackend, routes: RouteTable) -> None:
    jupyter = next(o for o in default_hatchery_config().options if "Jupyter" in o.name)
    await backend.launch("pat", jupyter, None)
    await status_is(backend, "pat", RUNNING, 60.0)
    route = routes.get("pat")
    assert route is not None
    base = f"http://{route.host}:{route.port}{route.rewrite}"
    # the proxy keeps the browser's Host, and sends the workspace's secret
    gateway = {"Host": "gateway.example:8080", "Authorization": route.auth}
    async with aiohttp.ClientSession() as http:
        async with http.post(base + "api/kernels", json={}, headers=gateway) as resp:
            assert resp.status == 201, await resp.text()
            kernel = (await resp.json())["id"]
        channels = f"{base}api/kernels/{kernel}/channels"
        # (A cross-site Origin is the gateway's to refuse, on both relay paths and in Envoy
        # mode: tests/test_websocket_relay.py. Jupyter exempts token-authenticated requests,
        # and every request the gateway relays carries the workspace's token.)
        async with http.ws_connect(
                channels, headers={**gateway, "Origin": "http://gateway.example:8080"}) as ws:
            msg_id = uuid.uuid4().hex
            await ws.send_json({
                "header": {"msg_id": msg_id, "msg_type": "execute_request", "username": "pat",
                           "session": uuid.uuid4().hex, "version": "5.3"},
                "parent_header": {}, "metadata": {}, "channel": "shell",
                "content": {"code": "1+1", "silent": False},
            })
            while True:
                reply = await ws.receive_json(timeout=30)
                if (reply["msg_type"] == "execute_result"
                        and reply["parent_header"].get("msg_id") == msg_id):
                    assert reply["content"]["data"]["text/plain"] == "2"
                    break
