"""A sandboxed local workspace shares nothing with the host it does not need: every test is an
attack run from inside a real workspace process the local backend launched (as root, in
bubblewrap, as `hatchway serve` would), written down by the workspace for the test to read.

Files a workspace must not see are planted where an operator or another user keeps them; the
hostile workloads (a fork bomb, a memory hog) are bounded in count and time themselves and run
against small limits, so that on a gateway without limits they stop at their own bound."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from launcher.backend import STOPPED
from launcher.defaults import demo_container
from launcher.local import LocalBackend
from launcher.names import escape
from launcher.options import WorkspaceOption, parse_hatchery_config
from launcher.routes import RouteTable
from launcher.settings import LocalSettings
from proxy.sessions.devissuer import DevIssuer

from .conftest import PROXY, GatewayUnderTest
from .helpers import API, auth, eventually, launch, status_becomes

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the sandbox needs root"),
    pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed "
                       "(make test installs it)"),
]
PY = sys.executable
MARK = "planted-by-the-sandbox-test"

# What a curious or hostile terminal would try, written down for the test to read.
_LOOK = r"""
import grp, json, os, pathlib, pwd, sys
seen = {}
for path in sys.argv[1:]:
    try:
        seen[path] = pathlib.Path(path).read_text()
    except OSError as exc:
        seen[path] = type(exc).__name__
    try:
        seen[path + "/.."] = sorted(os.listdir(os.path.dirname(path)))
    except OSError as exc:
        seen[path + "/.."] = type(exc).__name__
procs = {}
for entry in os.listdir("/proc"):
    if entry.isdigit():
        try:
            procs[entry] = pathlib.Path(f"/proc/{entry}/cmdline").read_bytes().decode(
                errors="replace").replace("\0", " ")
        except OSError:
            pass
try:
    me = pwd.getpwuid(os.getuid())
    seen["passwd"] = [me.pw_name, me.pw_dir, me.pw_shell, grp.getgrgid(os.getgid()).gr_name]
except KeyError:
    seen["passwd"] = "KeyError"
seen["procs"] = procs
pathlib.Path("seen.json").write_text(json.dumps(seen))
"""


def option(**entry: Any) -> WorkspaceOption:
    entry.setdefault("name", "probe")
    return parse_hatchery_config({"containers": [entry]}, "test").options[0]


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[LocalBackend]:
    DevIssuer(tmp_path)  # the gateway's key, where `hatchway serve` keeps it
    b = LocalBackend(RouteTable(), LocalSettings(stop_grace_seconds=1.0),
                     proxy_prefix=PROXY, state_dir=str(tmp_path))
    await b.start()
    yield b
    await b.close()


async def run_to_end(backend: LocalBackend, user: str, opt: WorkspaceOption) -> None:
    await backend.launch(user, opt, None)

    async def stopped() -> bool:
        return (await backend.status(user)).status == STOPPED
    await eventually(stopped, within=20, interval=0.02)


async def look(backend: LocalBackend, user: str, *paths: str) -> dict[str, Any]:
    await run_to_end(backend, user, option(command=[PY, "-c", _LOOK, *paths]))
    seen: dict[str, Any] = json.loads((backend.workdir(user) / "seen.json").read_text())
    return seen


@contextlib.contextmanager
def planted(place: str) -> Iterator[Path]:
    """A world-readable file in a world-readable directory of its own under ``place``."""
    directory = Path(place) / f"hatchway-sandbox-test-{secrets.token_hex(4)}"
    directory.mkdir(mode=0o755)
    try:
        directory.chmod(0o755)
        secret = directory / "hatchway.yaml"
        secret.write_text(f"{MARK}\n")
        secret.chmod(0o644)
        yield secret
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def remove(*paths: str) -> None:
    for path in paths:
        Path(path).unlink(missing_ok=True)


def own_cmdline() -> str:
    """The gateway's command line (this test process's), as /proc shows it."""
    return Path("/proc/self/cmdline").read_bytes().decode().replace("\0", " ")


# -- what a workspace sees -------------------------------------------------------------------

@pytest.mark.parametrize("place", ["/etc", "/home", "/tmp", "/dev/shm"],
                         ids=["gateway-config-in-etc", "another-users-home", "host-tmp",
                              "host-dev-shm"])
async def test_world_readable_host_files_are_invisible(backend: LocalBackend,
                                                       place: str) -> None:
    with planted(place) as secret:
        seen = await look(backend, "alice", str(secret))
    assert seen[str(secret)] == "FileNotFoundError"
    assert seen[str(secret) + "/.."] == "FileNotFoundError"
    assert MARK not in json.dumps(seen)


async def test_two_workspaces_share_no_tmp_or_dev_shm(backend: LocalBackend) -> None:
    left = f"left-by-bob-{secrets.token_hex(4)}"
    try:
        await run_to_end(backend, "bob", option(command=[
            "sh", "-c", f"echo hi > /tmp/{left} && echo hi > /dev/shm/{left}"]))
        seen = await look(backend, "alice", f"/tmp/{left}", f"/dev/shm/{left}")
    finally:  # where the host's /tmp and /dev/shm are shared, clean up after bob
        remove(f"/tmp/{left}", f"/dev/shm/{left}")
    assert seen[f"/tmp/{left}"] == seen[f"/dev/shm/{left}"] == "FileNotFoundError"
    assert left not in seen[f"/tmp/{left}/.."] + seen[f"/dev/shm/{left}/.."]  # listings


async def test_a_workspace_sees_only_its_own_processes(backend: LocalBackend) -> None:
    seen = await look(backend, "alice")
    assert own_cmdline() not in seen["procs"].values()
    # the sandbox's pid 1 (bubblewrap, waiting for its child) and the probe itself
    assert len(seen["procs"]) <= 2, seen["procs"]
    assert any(_LOOK.strip()[:20] in cmd for cmd in seen["procs"].values())


async def test_the_workspace_uid_has_a_name_home_and_shell(backend: LocalBackend) -> None:
    seen = await look(backend, "a.b@example.org")
    name = escape("a.b@example.org")
    assert seen["passwd"] == [name, str(backend.workdir("a.b@example.org")), "/bin/bash", name]


# -- limits, with the gateway serving --------------------------------------------------------

# A bounded fork bomb: up to 200 children, each blocked on a pipe until the parent goes (at
# most 30 s). It writes down how many forks succeeded and holds them until the workspace is
# stopped (SIGTERM), or for 30 s (SIGALRM).
_BOMB = r"""
import json, os, pathlib, select, signal
r, w = os.pipe()
forked, error = 0, ""
for _ in range(200):
    try:
        pid = os.fork()
    except OSError as exc:
        error = type(exc).__name__
        break
    if pid == 0:
        os.close(w)
        select.select([r], [], [], 30)
        os._exit(0)
    forked += 1
pathlib.Path("held.json").write_text(json.dumps({"count": forked, "error": error}))
signal.alarm(30)
signal.pause()
"""

# A bounded memory hog: up to 256 MiB written into /dev/shm (memory, not disk) in 1 MiB
# pieces, held until the workspace is stopped, or for 30 s (the fixture removes the file).
_HOG = r"""
import json, os, pathlib, signal
piece, count, error = b"x" * 2**20, 0, ""
fd = os.open("/dev/shm/hatchway-hog-" + os.environ["HOG_TAG"], os.O_WRONLY | os.O_CREAT, 0o600)
try:
    for _ in range(256):
        if os.write(fd, piece) < len(piece):
            error = "short write"
            break
        count += 1
except OSError as exc:
    error = os.strerror(exc.errno)
pathlib.Path("held.json").write_text(json.dumps({"count": count, "error": error}))
signal.alarm(30)
signal.pause()
"""


@pytest.fixture
async def limited(start_gateway: Callable[..., Any],
                  tmp_path: Path) -> AsyncIterator[GatewayUnderTest]:
    """A gateway with small limits, offering the demo and the two hostile workloads."""
    tag = secrets.token_hex(4)
    path = tmp_path / "hatchery.json"
    path.write_text(json.dumps({"containers": [
        demo_container(),
        {"name": "Fork bomb", "command": [PY, "-c", _BOMB]},
        {"name": "Memory hog", "command": [PY, "-c", _HOG], "env": {"HOG_TAG": tag}},
    ]}))
    gw: GatewayUnderTest = await start_gateway(
        hatchery_config=str(path),
        local={"stop_grace_seconds": 1.0, "pids_limit": 40, "shm_size": "16Mi"})
    yield gw
    remove(f"/dev/shm/hatchway-hog-{tag}")  # where /dev/shm is shared


async def held(gw: GatewayUnderTest, user: str) -> dict[str, Any]:
    """What the hostile workload got, once it is holding it."""
    path = gw.gateway.backend.workdir(user) / "held.json"  # type: ignore[attr-defined]
    await eventually(lambda: path.exists() and bool(path.read_text()), within=30, interval=0.02)
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


async def others_keep_serving(gw: GatewayUnderTest, client: aiohttp.ClientSession) -> None:
    """While the attack holds: bob launches his workspace and reaches it, and the gateway
    answers its health check."""
    await launch(client, gw, "Demo", user="bob")
    await status_becomes(client, gw, "Running", user="bob", within=60)
    async with client.get(gw.url(PROXY + "headers"), headers=auth(gw, "bob")) as resp:
        assert resp.status == 200
        assert (await resp.json())["headers"]["REMOTE_USER"] == "bob"
    async with client.get(gw.url(API + "_status")) as resp:
        assert resp.status == 200


async def test_a_fork_bomb_stops_at_the_pids_limit_while_others_keep_serving(
        limited: GatewayUnderTest, client: aiohttp.ClientSession) -> None:
    await launch(client, limited, "Fork bomb")
    got = await held(limited, "alice")
    await others_keep_serving(limited, client)
    assert got["count"] < 40 and got["error"] == "BlockingIOError", got


async def test_a_memory_hog_stops_at_the_shm_limit_while_others_keep_serving(
        limited: GatewayUnderTest, client: aiohttp.ClientSession) -> None:
    await launch(client, limited, "Memory hog")
    got = await held(limited, "alice")
    await others_keep_serving(limited, client)
    assert got["count"] <= 16 and got["error"] == os.strerror(28), got  # ENOSPC


async def test_status_says_which_limits_are_in_force(
        limited: GatewayUnderTest, client: aiohttp.ClientSession) -> None:
    async with client.get(limited.url(API + "_status")) as resp:
        health = (await resp.json())["backend_health"]
    assert health["isolation"] == "sandbox"
    limits = health["limits"]
    assert "pids.max 40" in limits or "RLIMIT_NPROC 40 " in limits, limits
    assert "/dev/shm 16Mi" in limits
