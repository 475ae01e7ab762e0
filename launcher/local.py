"""The local backend: each user's workspace is a process group on this machine.

It is what the embedded default runs on a laptop, through the same API and route table as
Kubernetes: ``launch`` publishes a not-ready route at once, a probe flips it to ready, and the
route goes the moment the process exits. The backend owns its children: terminate and close
end whole process groups (SIGTERM, then SIGKILL after the grace period), so nothing outlives it.

Users are kept apart as ``launcher.isolation`` says (a uid each when hatchway is root, else one
user only unless ``single_trust_domain``), and each escaped name belongs to one real user
(``launcher.owners``): a colliding user is refused, never handed another's home.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import secrets
import shutil
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from . import isolation, sandbox
from .backend import (
    LAUNCHING,
    NOT_FOUND,
    RUNNING,
    STOPPED,
    TERMINATING,
    WorkspaceRecord,
    WorkspaceStatus,
)
from .clock import REAL, Clock
from .errors import BackendError, ConfigError, NotIsolated, WorkspaceExists
from .lifetime import max_age_ms
from .limits import Cgroups, Limits, describe_rlimits, parse_cpu, rlimit_argv
from .names import escape
from .options import HatcheryConfig, WorkspaceOption
from .owners import Owner, Owners
from .processes import end_group, free_port, group_gone, parse_memory
from .routes import Route, RouteTable
from .settings import LocalSettings

if sys.platform != "win32":
    import resource


# What the local backend reads of hatchery.json; everything else is for pods and is ignored.
LOCAL_FIELDS = frozenset({"name", "cpu-limit", "memory-limit", "env", "args", "command",
                          "path-rewrite", "ready-probe", "authz", "idle-time-limit",
                          "max-age-seconds"})
LOCAL_TOP_FIELDS = frozenset({"containers", "sub-dir"})


def ignored_fields(config: HatcheryConfig) -> list[str]:
    """Fields of a hatchery.json that mean nothing to local workspaces (one warning lists them)."""
    ignored = [k for k in config.written if k not in LOCAL_TOP_FIELDS]
    for i, opt in enumerate(config.options):
        ignored += [f"containers[{i}].{k}" for k in opt.container.written
                    if k not in LOCAL_FIELDS]
    return ignored

log = logging.getLogger("hatchway.local")
HOST = "127.0.0.1"


@dataclass(eq=False)
class _Workspace:
    user: str
    option: WorkspaceOption
    process: asyncio.subprocess.Process
    route: Route
    probe_url: str
    started: float  # the event loop's time (the ready deadline)
    started_ms: int  # epoch ms by the backend's clock (the maximum age, the operator's view)
    ready: bool = False
    stopping: bool = False  # SIGTERM sent (terminate, ready timeout, or leftovers after exit)
    terminating: bool = False  # terminate() asked: forgotten once the group is gone
    detail: str = ""
    prober: asyncio.Task[None] | None = None
    watcher: asyncio.Task[None] | None = None
    stop_task: asyncio.Task[None] | None = None
    sandboxed: bool = False
    cgroup: Path | None = None  # its own cgroup v2 directory, removed once it has ended

    @property
    def exited(self) -> bool:
        return self.process.returncode is not None

    @property
    def returncode(self) -> int:
        """asyncio's convention (negative: killed by that signal), also for a sandboxed
        workspace, whose bubblewrap parent reports a signal death as 128 + the signal."""
        code = self.process.returncode or 0
        return 128 - code if self.sandboxed and 128 < code < 128 + 65 else code


def describe_exit(returncode: int) -> str:
    """asyncio reports death by signal as a negative return code."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = str(-returncode)
        return f"workspace killed by signal {name}"
    return f"workspace exited with status {returncode}"


def _fill(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text


class LocalBackend:
    """Starts workspaces as local processes, one per user, and reports them as Hatchery would
    report pods."""

    name = "local"

    def __init__(self, routes: RouteTable, settings: LocalSettings, *, proxy_prefix: str,
                 state_dir: str, workspace_type: str = "Local", max_age_seconds: int = 0,
                 clock: Clock = REAL) -> None:
        self._routes = routes
        self._max_age_seconds, self._clock = max_age_seconds, clock
        self._settings = settings
        self._proxy_prefix = proxy_prefix
        self._state_dir = Path(state_dir).absolute()  # HOME and the sandbox binds are absolute
        self._log_dir = Path(settings.log_dir) if settings.log_dir else self._state_dir / "logs"
        self._workspace_type = workspace_type
        self.isolation = isolation.choose_mode()
        if self.isolation == isolation.UID:
            isolation.check_reachable(self._state_dir / "workspaces")
        try:
            isolation.secure_state_dir(self._state_dir, self._log_dir, self.isolation)
        except OSError as exc:
            raise ConfigError("settings", "state_dir", "a directory hatchway can create and "
                              "own", f"{exc.filename}: {exc.strerror}") from None
        self._owners = Owners(self._state_dir, settings.first_uid)
        isolated = self.isolation != isolation.SHARED
        self._cgroups = Cgroups(settings.cgroup if isolated else "none")
        self._prlimit = isolated and shutil.which("prlimit") is not None
        self._limits = self._describe_limits()
        self._workspaces: dict[str, _Workspace] = {}
        self._spawning: set[str] = set()
        self._http: aiohttp.ClientSession | None = None

    def log_path(self, user: str) -> Path:
        """Where ``user``'s workspace writes stdout and stderr (appended across launches)."""
        return self._log_dir / f"{escape(user)}.log"

    def workdir(self, user: str) -> Path:
        return self._state_dir / "workspaces" / escape(user)

    def routes_pending(self) -> list[str]:
        """Routes are published as workspaces start: nothing to wait for."""
        return []

    def health(self) -> dict[str, Any]:
        """For ``/_status``: how workspaces are kept apart and which limits are in force."""
        return {"isolation": self.isolation, "limits": self._limits}

    def _describe_limits(self) -> str:
        s = self._settings
        if self.isolation == isolation.SHARED:
            return "RLIMIT_DATA from memory-limit per process; nothing else (not root)"
        sizes = ""
        if self.isolation == isolation.SANDBOX:
            bounded = sandbox.tmpfs_size_supported()
            sizes = (f"; private /tmp {s.tmp_size or 'half the RAM'} and /dev/shm "
                     f"{s.shm_size or 'half the RAM'}" if bounded else
                     "; private /tmp and /dev/shm unbounded (bubblewrap before 0.7)")
        if self._cgroups.parent is not None:
            return self._cgroups.describe(s.pids_limit, s.max_file_size) + sizes
        if not self._prlimit:
            return "none: no cgroup v2 (" + self._cgroups.reason + ") and no prlimit" + sizes
        rlimits = describe_rlimits(s.pids_limit, s.max_file_size)
        return (f"rlimits: {rlimits}; no CPU limit (no cgroup v2: {self._cgroups.reason})"
                + sizes)

    def _file_size(self) -> int | None:
        size = self._settings.max_file_size
        return parse_memory(size) if size else None

    def progress(self, user: str) -> None:
        """No event stream: the API polls ``status``."""
        return None

    def isolation_summary(self) -> str:
        """One sentence for start-up: how users are kept apart here."""
        if self.isolation != isolation.SHARED:
            how = "in a bubblewrap sandbox" if self.isolation == isolation.SANDBOX else "plain"
            return (f"local workspaces run as one uid per user (from {self._settings.first_uid},"
                    f" {how}), each with a private HOME; limits: {self._limits}")
        if self._settings.single_trust_domain:
            return ("local workspaces all run as this process's user and can read each "
                    "other's files and the signing key (local.single_trust_domain: true)")
        return ("local workspaces cannot be isolated (not running as root): only the first "
                "user is served; set local.single_trust_domain: true to share")

    async def start(self) -> None:
        """Nothing to recover: local workspaces never outlive the backend."""

    async def close(self) -> None:
        users = list(self._workspaces)
        await asyncio.gather(*(self.terminate(u) for u in users), return_exceptions=True)
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def launch(self, user: str, option: WorkspaceOption, token: str | None, *,
                     pay_model_id: str | None = None) -> None:  # no pay model here: unused
        # ``token`` is the user's credential: it is deliberately never given to the workspace.
        current = self._workspaces.get(user)
        if user in self._spawning or (current is not None and not current.exited):
            raise WorkspaceExists(f"a workspace for {user!r} already exists")
        owner = self._claim(user)
        self._spawning.add(user)
        try:
            if current is not None:  # an exited workspace is replaced by the new one
                await asyncio.shield(self._begin_stop(current))
                self._workspaces.pop(user, None)
            ws = await self._spawn(owner, option)
        finally:
            self._spawning.discard(user)
        self._workspaces[user] = ws
        self._routes.set(user, ws.route)
        ws.watcher = asyncio.create_task(self._watch(ws), name=f"watch {user}")
        ws.prober = asyncio.create_task(self._probe(ws), name=f"probe {user}")
        log.info("launched %r for %s: pid %d, port %d", option.name, user, ws.process.pid,
                 ws.route.port)

    async def workspaces(self) -> list[WorkspaceRecord]:
        """Every workspace this process holds, with the option it was launched from."""
        return [WorkspaceRecord(user=ws.user, status=(await self.status(ws.user)).status,
                                option_id=ws.option.id, option_name=ws.option.name,
                                started_at=ws.started_ms / 1000)
                for ws in list(self._workspaces.values())]

    def use_hatchery(self, config: HatcheryConfig) -> None:
        """Nothing to keep: each launch is handed its option."""

    async def status(self, user: str) -> WorkspaceStatus:
        ws = self._workspaces.get(user)
        status = WorkspaceStatus(workspace_type=self._workspace_type)
        if ws is None:
            status.status = NOT_FOUND
            return status
        # The exit may be seen here before the watcher has written its sentence down.
        status.detail = ws.detail or (
            describe_exit(ws.returncode) if ws.exited else "")
        if ws.terminating or (ws.stopping and not ws.exited):
            status.status = TERMINATING
        elif ws.exited:
            status.status = STOPPED
            # Reported Stopped means not routed, even before the watcher has run: the
            # proxy must not answer "launching" for a workspace the user is told has ended.
            self._unpublish(ws)
            code = ws.returncode
            terminated: dict[str, Any] = {"exitCode": code} if code >= 0 else {"signal": -code}
            terminated["reason"] = "Completed" if code == 0 else "Error"
            status.container_states = [
                {"name": ws.option.name, "state": {"terminated": terminated}, "ready": False}]
        elif ws.ready:
            status.status = RUNNING
            # Hatchery: only when Running, and 0 (not /options' -1) when no arg sets one
            status.idle_time_limit = max(0, ws.option.idle_time_limit)
            status.started_ms = ws.started_ms
            status.max_age_ms = max_age_ms(ws.option.max_age_seconds, self._max_age_seconds)
        else:
            status.status = LAUNCHING
            status.conditions = [{"type": "Ready", "status": "False"}]
            status.container_states = [{
                "name": ws.option.name,
                "state": {"waiting": {"reason": "ContainerCreating"}},
                "ready": False,
            }]
        return status

    async def terminate(self, user: str, token: str | None = None) -> bool:
        ws = self._workspaces.get(user)
        if ws is None:
            return False
        ws.terminating = True
        await asyncio.shield(self._begin_stop(ws))
        if self._workspaces.get(user) is ws:
            del self._workspaces[user]
        log.info("terminated workspace of %s", user)
        return True

    # -- internals ------------------------------------------------------------------------

    def _claim(self, user: str) -> Owner:
        """The user's record; NameTaken for a colliding name, NotIsolated for a second user
        where users cannot be kept apart."""
        try:
            if self.isolation == isolation.SHARED and not self._settings.single_trust_domain:
                others = [u for u in self._owners.users() if u != user]
                if others:
                    raise NotIsolated(
                        "this gateway cannot keep users' local workspaces apart (it does not "
                        "run as root) and already serves another user; the operator may set "
                        "local.single_trust_domain: true to let users share")
            return self._owners.claim(user)
        except OSError as exc:
            raise BackendError(f"cannot record the workspace owner: {exc}") from None

    async def _spawn(self, owner: Owner, option: WorkspaceOption) -> _Workspace:
        user = owner.user
        # Not a port another workspace was given (it may still be starting, not yet bound).
        port = free_port(HOST, frozenset(w.route.port for w in self._workspaces.values()))
        rewrite = option.path_rewrite or "/"
        values = {"port": str(port), "base_url": rewrite, "user": user}
        # Only the gateway may use this port: workspaces share the loopback network, so the
        # relay sends this secret (Route.auth) and the workspace refuses requests without it.
        # Given in the environment, never in argv (/proc/<pid>/cmdline is world-readable).
        secret = secrets.token_urlsafe(32)
        argv = [_fill(a, values) for a in option.command + option.args]
        if not argv:
            raise BackendError(f"workspace option {option.name!r} has no command to run")
        limit = self._memory_limit(option)
        cwd = self.workdir(user)
        env = isolation.workspace_env(os.environ, cwd, owner)
        env.update({k: _fill(v, values) for k, v in option.env.items()})
        env.update({
            "HATCHWAY_PORT": str(port),
            "HATCHWAY_BASE_URL": rewrite,
            "HATCHWAY_PROXY_PREFIX": self._proxy_prefix,
            "HATCHWAY_USER": user,
            "REMOTE_USER": user,
            "HATCHWAY_WORKSPACE_TOKEN": secret,
            "JUPYTER_TOKEN": secret,  # jupyter_server's IdentityProvider reads it
        })
        env.setdefault("PYTHONUNBUFFERED", "1")
        shown = argv
        limits: Limits | None = None
        if self.isolation != isolation.SHARED:
            self._check_command(argv[0], env, option)  # else the wrapper would only exit
            limits = Limits(memory=limit, cpu_millis=self._cpu_limit(option),
                            pids=self._settings.pids_limit, file_size=self._file_size())
            in_cgroup = self._cgroups.parent is not None
            rlimits = rlimit_argv(limits, cgroup=in_cgroup) if self._prlimit else []
            argv = self._wrap(argv, owner, cwd, env, rlimits)
        try:
            isolation.prepare_home(cwd, owner, self.isolation)
            logfile = self.log_path(user).open("ab")
        except OSError as exc:
            raise BackendError(f"cannot prepare the workspace directory for {user!r}: "
                               f"{exc.filename}: {exc.strerror}") from None
        group: Path | None = None
        with logfile:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            logfile.write(f"--- {stamp} launching {option.name!r}: {shown}\n".encode())
            logfile.flush()
            if limits is not None and self._cgroups.parent is not None:
                group = self._cgroups.create(owner.name, limits)
                argv = Cgroups.enter_argv(group, argv)
            try:
                process = await asyncio.create_subprocess_exec(
                    *argv, cwd=cwd, env=env, stdin=asyncio.subprocess.DEVNULL,
                    stdout=logfile, stderr=asyncio.subprocess.STDOUT, start_new_session=True)
            except FileNotFoundError:
                await self._drop_cgroup(group)
                raise BackendError(f"cannot start workspace {option.name!r}: "
                                   f"command {shown[0]!r} was not found") from None
            except PermissionError:
                await self._drop_cgroup(group)
                raise BackendError(f"cannot start workspace {option.name!r}: "
                                   f"command {shown[0]!r} is not executable") from None
            except OSError as exc:
                await self._drop_cgroup(group)
                raise BackendError(f"cannot start workspace {option.name!r}: "
                                   f"{shown[0]!r}: {exc.strerror}") from None
        if limit is not None and self.isolation == isolation.SHARED:
            self._apply_memory_limit(process.pid, limit)
        probe = option.ready_probe
        probe_url = f"http://{HOST}:{port}/{probe.lstrip('/')}" if probe else ""
        route = Route(host=HOST, port=port, rewrite=rewrite, ready=False, source="local",
                      auth=f"token {secret}")
        return _Workspace(user=user, option=option, process=process, route=route,
                          probe_url=probe_url, started=asyncio.get_running_loop().time(),
                          started_ms=int(self._clock.time() * 1000),
                          sandboxed=self.isolation == isolation.SANDBOX, cgroup=group)

    def _wrap(self, argv: list[str], owner: Owner, home: Path, env: dict[str, str],
              rlimits: list[str]) -> list[str]:
        """``argv`` as the owner's uid with its rlimits, in the sandbox when there is one
        (whose generated passwd entry, /tmp and shell the environment then names)."""
        inner = isolation.uid_argv(argv, owner=owner, rlimits=rlimits)
        if self.isolation != isolation.SANDBOX:
            return inner
        s = self._settings
        try:
            identity = sandbox.write_identity(self._state_dir / "sandbox" / owner.name, owner,
                                              home)
        except OSError as exc:
            raise BackendError(f"cannot prepare the sandbox of {owner.user!r}: "
                               f"{exc.filename}: {exc.strerror}") from None
        env.update({"TMPDIR": "/tmp", "SHELL": sandbox.login_shell()})
        return sandbox.sandbox_argv(
            inner, home=home, owner=owner, identity=identity,
            runtime=sandbox.runtime_paths(argv[0], env.get("PATH")), extra=s.sandbox_binds,
            tmp_size=parse_memory(s.tmp_size) if s.tmp_size else None,
            shm_size=parse_memory(s.shm_size) if s.shm_size else None)

    @staticmethod
    async def _drop_cgroup(group: Path | None) -> None:
        if group is not None:
            await Cgroups.remove(group)

    @staticmethod
    def _check_command(command: str, env: dict[str, str], option: WorkspaceOption) -> None:
        """The errors ``exec`` would raise, for a command the sandbox will exec."""
        found = shutil.which(command, path=env.get("PATH"))
        if found is None and not os.path.exists(command):
            raise BackendError(f"cannot start workspace {option.name!r}: "
                               f"command {command!r} was not found")
        if found is None:
            raise BackendError(f"cannot start workspace {option.name!r}: "
                               f"command {command!r} is not executable")

    @staticmethod
    def _memory_limit(option: WorkspaceOption) -> int | None:
        if not option.memory_limit:
            return None
        try:
            return parse_memory(option.memory_limit)
        except ValueError as exc:
            raise BackendError(f"workspace option {option.name!r}: {exc}") from None

    @staticmethod
    def _cpu_limit(option: WorkspaceOption) -> int | None:
        cpu = option.container.cpu_limit
        if not cpu:
            return None
        try:
            return parse_cpu(cpu)
        except ValueError as exc:
            raise BackendError(f"workspace option {option.name!r}: {exc}") from None

    @staticmethod
    def _apply_memory_limit(pid: int, limit: int) -> None:
        """RLIMIT_DATA set from outside with prlimit (Linux) just after exec, rather than in a
        ``preexec_fn``, which is unsafe in a process with threads. Skipped elsewhere."""
        prlimit = getattr(resource, "prlimit", None) if sys.platform != "win32" else None
        if prlimit is None:
            return
        with contextlib.suppress(OSError, ValueError):
            prlimit(pid, resource.RLIMIT_DATA, (limit, limit))

    def _publish_ready(self, ws: _Workspace) -> None:
        ws.ready = True
        ws.route = dataclasses.replace(ws.route, ready=True)
        if self._workspaces.get(ws.user) is ws:
            self._routes.set(ws.user, ws.route)

    def _unpublish(self, ws: _Workspace) -> None:
        current = self._routes.get(ws.user)
        if current is not None and current.source == "local" and current.port == ws.route.port:
            self._routes.remove(ws.user)

    def _begin_stop(self, ws: _Workspace) -> asyncio.Task[None]:
        """Start ending ``ws``'s process group once; every caller shares the same task."""
        if ws.stop_task is None:
            ws.stopping = True
            self._unpublish(ws)
            if ws.prober is not None and ws.prober is not asyncio.current_task():
                ws.prober.cancel()
            ws.stop_task = asyncio.create_task(self._end(ws), name=f"stop {ws.user}")
        return ws.stop_task

    async def _end(self, ws: _Workspace) -> None:
        spare = ws.process.pid if ws.sandboxed else None
        if await end_group(ws.process.pid, self._settings.stop_grace_seconds, spare=spare):
            log.warning("workspace of %s ignored SIGTERM for %gs: killed", ws.user,
                        self._settings.stop_grace_seconds)
        await ws.process.wait()
        await group_gone(ws.process.pid, 2.0)
        await self._drop_cgroup(ws.cgroup)

    async def _watch(self, ws: _Workspace) -> None:
        await ws.process.wait()
        returncode = ws.returncode
        self._unpublish(ws)
        if not ws.detail:
            ws.detail = describe_exit(returncode)
        if not ws.stopping:
            log.warning("workspace of %s stopped: %s", ws.user, ws.detail)
        self._begin_stop(ws)  # ends what the workspace left behind in its group

    async def _probe(self, ws: _Workspace) -> None:
        loop = asyncio.get_running_loop()
        deadline = ws.started + self._settings.ready_timeout_seconds
        while not ws.exited and not ws.stopping:
            if await self._answers(ws):
                if not ws.exited and not ws.stopping:
                    self._publish_ready(ws)
                return
            if loop.time() >= deadline:
                what = f"GET {ws.probe_url}" if ws.probe_url else f"port {ws.route.port}"
                ws.detail = (f"workspace was not ready within "
                             f"{self._settings.ready_timeout_seconds:g}s (no answer to {what}); "
                             "stopped it")
                log.warning("workspace of %s: %s", ws.user, ws.detail)
                self._begin_stop(ws)
                return
            await asyncio.sleep(self._settings.probe_interval_seconds)

    async def _answers(self, ws: _Workspace) -> bool:
        """Ready as a Kubernetes HTTP probe sees it (any status below 500), or, with no
        ready-probe, as a TCP probe: the port accepts connections."""
        try:
            async with asyncio.timeout(2.0):
                if not ws.probe_url:
                    _, writer = await asyncio.open_connection(HOST, ws.route.port)
                    writer.close()
                    await writer.wait_closed()
                    return True
                if self._http is None:
                    self._http = aiohttp.ClientSession()
                async with self._http.get(ws.probe_url, allow_redirects=False,
                                          headers={"Authorization": ws.route.auth}) as resp:
                    return resp.status < 500
        except (aiohttp.ClientError, OSError, TimeoutError):
            return False
