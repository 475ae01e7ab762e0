"""Local workspaces are kept apart: each user's runs as its own uid with a private HOME, and a
real process inside one cannot read the gateway's signing key, its state, or another user's
HOME. A user whose name escapes to another's workspace name is refused, never handed theirs.

These run as root (this machine and CI do): that is where hatchway isolates by uid."""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from launcher.backend import NOT_FOUND, STOPPED
from launcher.errors import NameTaken
from launcher.local import LocalBackend
from launcher.names import escape
from launcher.options import WorkspaceOption, parse_hatchery_config
from launcher.routes import RouteTable
from launcher.settings import LocalSettings
from proxy.sessions.devissuer import KEY_FILE, DevIssuer

from .helpers import eventually

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="uid isolation needs root")
PREFIX = "/lw-workspace/proxy/"
VICTIM, ATTACKER = "a.b@example.org", "a\u02eb\u040example.org"

# What an attacker's terminal would try, written down for the test to read.
_PROBE = """
import json, os, pathlib, sys
state, victim = sys.argv[1], sys.argv[2]
tries = {}
for name, path in [("key", f"{state}/dev-signing-key.pem"), ("victim_secret", f"{victim}/secret"),
                   ("owners", f"{state}/owners.json")]:
    try:
        tries[name] = pathlib.Path(path).read_text()
    except OSError as exc:
        tries[name] = type(exc).__name__
for name, path in [("victim_home", victim), ("state", state), ("logs", f"{state}/logs")]:
    try:
        tries[name] = sorted(os.listdir(path))
    except OSError as exc:
        tries[name] = type(exc).__name__
tries.update(uid=os.getuid(), gid=os.getgid(), groups=os.getgroups(),
             env={k: v for k, v in os.environ.items() if k.startswith(("HOME", "JUPYTER"))})
pathlib.Path("probe.json").write_text(json.dumps(tries))
"""


def option(**entry: Any) -> WorkspaceOption:
    entry.setdefault("name", "probe")
    return parse_hatchery_config({"containers": [entry]}, "test").options[0]


@pytest.fixture
def routes() -> RouteTable:
    return RouteTable()


@pytest.fixture
async def backend(tmp_path: Path, routes: RouteTable) -> AsyncIterator[LocalBackend]:
    DevIssuer(tmp_path)  # the gateway's key, where `hatchway serve` keeps it
    b = LocalBackend(routes, LocalSettings(stop_grace_seconds=1.0), proxy_prefix=PREFIX,
                     state_dir=str(tmp_path))
    await b.start()
    yield b
    await b.close()


async def run_to_end(backend: LocalBackend, user: str, opt: WorkspaceOption) -> None:
    await backend.launch(user, opt, None)

    async def stopped() -> bool:
        return (await backend.status(user)).status == STOPPED
    await eventually(stopped, within=10)


async def probe_from(backend: LocalBackend, user: str, victim: str,
                     tmp_path: Path) -> dict[str, Any]:
    await run_to_end(backend, user, option(
        command=[sys.executable, "-c", _PROBE, str(tmp_path), str(backend.workdir(victim))]))
    doc: dict[str, Any] = json.loads((backend.workdir(user) / "probe.json").read_text())
    return doc


async def test_a_workspace_cannot_read_the_signing_key_the_state_or_another_users_home(
        backend: LocalBackend, tmp_path: Path) -> None:
    await run_to_end(backend, "bob", option(command=["sh", "-c", "echo bobs-data > secret"]))
    assert (backend.workdir("bob") / "secret").read_text() == "bobs-data\n"
    seen = await probe_from(backend, "alice", "bob", tmp_path)
    key = (tmp_path / KEY_FILE).read_text()
    assert seen["key"] in ("PermissionError", "FileNotFoundError") and key not in json.dumps(seen)
    assert seen["victim_secret"] in ("PermissionError", "FileNotFoundError")
    assert seen["victim_home"] in ("PermissionError", "FileNotFoundError")
    assert seen["owners"] in ("PermissionError", "FileNotFoundError")
    assert seen["logs"] in ("PermissionError", "FileNotFoundError")
    assert KEY_FILE not in json.dumps(seen["state"])


async def test_each_user_runs_as_their_own_uid_with_a_private_home(
        backend: LocalBackend, tmp_path: Path) -> None:
    alice = await probe_from(backend, "alice", "bob", tmp_path)
    bob = await probe_from(backend, "bob", "alice", tmp_path)
    assert alice["uid"] != bob["uid"] and 0 not in (alice["uid"], bob["uid"])
    assert alice["gid"] == alice["uid"] and alice["groups"] in ([], [alice["gid"]])
    home = backend.workdir("alice")
    info = home.stat()
    assert info.st_uid == alice["uid"] and stat.S_IMODE(info.st_mode) == 0o700
    assert alice["env"]["HOME"] == str(home)
    # JupyterLab keeps its layout and settings under these: one set per user.
    for var in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR"):
        assert alice["env"][var].startswith(str(home) + "/")
        assert bob["env"][var].startswith(str(backend.workdir("bob")) + "/")


async def test_the_users_uid_stays_the_same_across_launches(
        backend: LocalBackend, tmp_path: Path) -> None:
    first = await probe_from(backend, "carol", "bob", tmp_path)
    second = await probe_from(backend, "carol", "bob", tmp_path)
    assert first["uid"] == second["uid"]


def test_the_state_dir_and_the_key_are_the_gateways_alone(
        backend: LocalBackend, tmp_path: Path) -> None:
    assert (tmp_path / KEY_FILE).stat().st_uid == 0
    assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600
    assert stat.S_IMODE(tmp_path.stat().st_mode) & 0o066 == 0
    assert stat.S_IMODE((tmp_path / "logs").stat().st_mode) == 0o700


def test_a_key_left_readable_by_others_is_made_private(tmp_path: Path) -> None:
    DevIssuer(tmp_path)
    (tmp_path / KEY_FILE).chmod(0o644)
    tmp_path.chmod(0o755)
    DevIssuer(tmp_path)
    assert stat.S_IMODE((tmp_path / KEY_FILE).stat().st_mode) == 0o600
    assert stat.S_IMODE(tmp_path.stat().st_mode) & 0o066 == 0


# -- one name, one user ---------------------------------------------------------------------

def test_the_two_names_really_escape_alike() -> None:
    assert VICTIM != ATTACKER and escape(VICTIM) == escape(ATTACKER) == "a-2eb-40example-2eorg"


async def test_a_colliding_user_is_refused_and_never_gets_the_other_users_home(
        backend: LocalBackend) -> None:
    await run_to_end(backend, VICTIM, option(command=["sh", "-c", "echo mine > secret"]))
    with pytest.raises(NameTaken):
        await backend.launch(ATTACKER, option(command=["sh", "-c", "cat secret"]), None)
    assert (await backend.status(ATTACKER)).status == NOT_FOUND
    assert await backend.terminate(ATTACKER) is False
    assert (await backend.status(VICTIM)).status == STOPPED


async def test_the_name_stays_its_first_users_after_a_restart(tmp_path: Path) -> None:
    settings = LocalSettings(stop_grace_seconds=1.0)
    first = LocalBackend(RouteTable(), settings, proxy_prefix=PREFIX, state_dir=str(tmp_path))
    await run_to_end(first, VICTIM, option(command=["true"]))
    await first.close()
    again = LocalBackend(RouteTable(), settings, proxy_prefix=PREFIX, state_dir=str(tmp_path))
    with pytest.raises(NameTaken):
        await again.launch(ATTACKER, option(command=["true"]), None)
    await again.close()


async def test_the_api_answers_a_colliding_launch_409_and_its_status_not_found(
        gw: Any, client: Any) -> None:
    def auth(user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {gw.token(user)}"}

    async with client.get(gw.url("/lw-workspace/options"), headers=auth(VICTIM)) as resp:
        oid = next(o["id"] for o in await resp.json() if "Demo" in o["name"])
    launch = gw.url(f"/lw-workspace/launch?id={oid}")
    async with client.post(launch, headers=auth(VICTIM)) as resp:
        assert resp.status == 200
    async with client.post(launch, headers=auth(ATTACKER)) as resp:
        assert resp.status == 409
        assert "belongs to another user" in (await resp.json())["error"]
    async with client.get(gw.url("/lw-workspace/status"), headers=auth(ATTACKER)) as resp:
        assert (await resp.json())["status"] == NOT_FOUND
    async with client.post(gw.url("/lw-workspace/terminate"), headers=auth(ATTACKER)) as resp:
        assert resp.status == 500  # Hatchery's answer when the user has no workspace
        assert "not found" in await resp.text()
    async with client.get(gw.url("/lw-workspace/status"), headers=auth(VICTIM)) as resp:
        assert (await resp.json())["status"] != NOT_FOUND


# What an attacker's terminal would try against another workspace on the shared loopback.
_KNOCK = """
import json, pathlib, sys, urllib.error, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=5) as resp:
        seen = [resp.status, resp.read().decode(errors="replace")]
except urllib.error.HTTPError as exc:
    seen = [exc.code, exc.read().decode(errors="replace")]
except OSError as exc:
    seen = [0, type(exc).__name__]
pathlib.Path("knock.json").write_text(json.dumps(seen))
"""


async def test_another_users_process_cannot_use_a_workspace_port(
        backend: LocalBackend, routes: RouteTable) -> None:
    demo = option(name="demo", command=[sys.executable, "-m", "launcher.demo"],
                  args=["--port", "{port}", "--base-url", "{base_url}"],
                  **{"path-rewrite": PREFIX, "ready-probe": PREFIX + "api/status"})
    await backend.launch("bob", demo, None)
    await eventually(lambda: (r := routes.get("bob")) is not None and r.ready, within=10)
    route = routes.get("bob")
    assert route is not None
    url = f"http://127.0.0.1:{route.port}{PREFIX}api/status"

    await run_to_end(backend, "alice", option(command=[sys.executable, "-c", _KNOCK, url]))
    status, body = json.loads((backend.workdir("alice") / "knock.json").read_text())

    assert status == 403, body  # the port answers, but only to the gateway
    assert route.auth.startswith("token ") and route.auth[6:] not in body
