"""What a sandboxed local workspace sees of the host: bubblewrap builds its file system from
nothing, rather than from ``/`` with holes in it, in pid, ipc and uts namespaces of its own.

The root is an empty tmpfs. Read-only binds: ``/usr`` (with ``/bin``, ``/lib``… as the host has
them: symlinks into ``/usr`` where ``/usr`` is merged), the pieces of ``/etc`` a Python or
Jupyter process reads (the dynamic linker's cache, TLS certificates, name resolution, time zone,
alternatives, shell start-up files), the Python runtime the workspace runs (the gateway's
prefix and base prefix, the command, the gateway's own ``launcher`` package for the demo) and
the operator's ``local.sandbox_binds``. Read-write: the user's HOME alone. Private: a tmpfs
``/tmp`` and ``/dev/shm`` of bounded size, a minimal ``/dev``, and the ``/proc`` of the
sandbox's own pid namespace, where no other process (the gateway's command line included) is
even listed. Generated: ``/etc/passwd`` and ``/etc/group`` naming the workspace uid (the escaped
user name, its HOME, a shell) and ``/etc/hosts`` with the sandbox's host name, the pod's name
``hatchery-<name>``. The network is the host's: the gateway reaches workspaces over loopback.

Invisible, then: the state dir beyond this HOME (keys, owners, logs, other users' HOMEs), the
gateway's config files, other users' homes, ``/root``, ``/home``, ``/opt``, ``/srv``, ``/var``,
``/run`` and the host's ``/tmp``. When the sandbox's pid 1 ends, the kernel kills every process
left in its namespace, so nothing a workspace starts outlives it.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .owners import Owner

# /etc entries bound when the host has them (bubblewrap's --ro-bind-try skips the rest).
ETC = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "ssl", "ca-certificates",
       "ca-certificates.conf", "pki", "crypto-policies", "resolv.conf", "host.conf",
       "nsswitch.conf", "gai.conf", "localtime", "timezone", "alternatives", "protocols",
       "services", "mime.types", "magic", "bash.bashrc", "profile", "profile.d", "inputrc",
       "terminfo", "fonts", "locale.alias", "locale.conf", "os-release", "debian_version",
       "shells", "jupyter", "vim", "nanorc")
TOP = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")  # symlinks into /usr, or directories
IDENTITY = ("passwd", "group", "hosts")
HOSTNAME_MAX = 63  # the kubelet truncates a pod's host name the same way


@functools.cache
def tmpfs_size_supported() -> bool:
    """bubblewrap before 0.7 has no ``--size``: its tmpfs are then bounded by half the RAM."""
    try:
        out = subprocess.run(["bwrap", "--help"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return "--size" in out.stdout


def hostname(owner: Owner) -> str:
    return f"hatchery-{owner.name}"[:HOSTNAME_MAX].rstrip("-.")


def login_shell() -> str:
    return "/bin/bash" if os.path.exists("/bin/bash") else "/bin/sh"


def write_identity(directory: Path, owner: Owner, home: Path) -> dict[str, Path]:
    """``passwd``, ``group`` and ``hosts`` for the sandbox, written (0644, root's) into
    ``directory``, which the caller keeps inside the private state dir."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    name, uid = owner.name, owner.uid
    try:
        hosts = Path("/etc/hosts").read_text()
    except OSError:
        hosts = "127.0.0.1\tlocalhost\n::1\tlocalhost\n"
    texts = {
        "passwd": (f"root:x:0:0:root:/root:/usr/sbin/nologin\n"
                   f"nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
                   f"{name}:x:{uid}:{uid}:{name}:{home}:{login_shell()}\n"),
        "group": f"root:x:0:\nnogroup:x:65534:\n{name}:x:{uid}:\n",
        "hosts": hosts.rstrip("\n") + f"\n127.0.1.1\t{hostname(owner)}\n",
    }
    paths = {}
    for file, text in texts.items():
        path = directory / file
        path.write_text(text)
        path.chmod(0o644)
        paths[file] = path
    return paths


def runtime_paths(command: str, search_path: str | None) -> set[Path]:
    """What the workspace's Python needs to run: the gateway's prefix and base prefix (a
    virtualenv and the interpreter it was made from), the interpreter and the command itself,
    and the gateway's ``launcher`` package (an editable install lives outside the prefix)."""
    paths = {Path(sys.prefix), Path(sys.base_prefix), Path(os.path.realpath(sys.executable)),
             Path(__file__).resolve().parent}
    found = shutil.which(command, path=search_path)
    if found is not None:
        paths.add(Path(os.path.realpath(found)))
    return paths


class _Mounts:
    """bubblewrap's mount operations, issued parents first, with the directories on the way
    made 0755 (bubblewrap would make them 0700, which the workspace uid could not pass)."""

    def __init__(self) -> None:
        self._ops: list[tuple[Path, list[str]]] = []
        self._binds: list[Path] = []

    def covered(self, path: Path) -> bool:
        return any(b == path or b in path.parents for b in self._binds)

    def add(self, dest: Path, *args: str) -> None:
        self._ops.append((dest, list(args)))

    def ro_bind(self, path: Path, *, try_: bool = False) -> None:
        if not self.covered(path):
            self._binds.append(path)
            self.add(path, "--ro-bind-try" if try_ else "--ro-bind", str(path), str(path))

    def argv(self) -> list[str]:
        out: list[str] = []
        made = {Path("/")}
        for dest, args in sorted(self._ops, key=lambda op: len(op[0].parts)):
            for parent in reversed(dest.parents):
                if parent not in made:
                    out += ["--perms", "0755", "--dir", str(parent)]
                    made.add(parent)
            out += args
            made.add(dest)
        return out


def sandbox_argv(inner: list[str], *, home: Path, owner: Owner, identity: dict[str, Path],
                 runtime: set[Path], extra: list[str], tmp_size: int | None,
                 shm_size: int | None) -> list[str]:
    """``inner`` (the uid switch and the command) run in the sandbox described above."""
    mounts = _Mounts()
    mounts.ro_bind(Path("/usr"))
    for name in TOP:
        top = Path("/") / name
        if top.is_symlink():
            mounts.add(top, "--symlink", os.readlink(top), str(top))
        elif top.is_dir():
            mounts.ro_bind(top)
    mounts.add(Path("/etc"), "--perms", "0755", "--dir", "/etc")
    for name in ETC:
        mounts.ro_bind(Path("/etc") / name, try_=True)
    for name, path in identity.items():
        mounts.add(Path("/etc") / name, "--ro-bind", str(path), f"/etc/{name}")
    mounts.add(Path("/proc"), "--proc", "/proc")
    mounts.add(Path("/dev"), "--dev", "/dev")
    for dest, size in ((Path("/tmp"), tmp_size), (Path("/dev/shm"), shm_size)):
        sized = ["--size", str(size)] if size and tmpfs_size_supported() else []
        mounts.add(dest, "--perms", "1777", *sized, "--tmpfs", str(dest))
    for path in sorted({*runtime, *map(Path, extra)}, key=lambda p: len(p.parts)):
        mounts.ro_bind(path)
    mounts.add(home, "--bind", str(home), str(home))
    return ["bwrap", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--hostname", hostname(owner), "--die-with-parent", *mounts.argv(),
            "--chdir", str(home), "--", *inner]
