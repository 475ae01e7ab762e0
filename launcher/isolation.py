"""Keeping local workspaces apart from the gateway and from each other.

When hatchway runs as root, each user's workspace runs as that user's own unprivileged uid
(and a private gid, no supplementary groups, umask 077), as JupyterHub's LocalProcessSpawner
does with system users, but with no account on the host: the uids come from a range no
``useradd`` or subuid default hands out (the sandbox's own ``/etc/passwd`` names them). Each
user's HOME (``<state_dir>/workspaces/<name>``) is theirs, mode 0700, and the signing key
(0600), logs (0700) and owner record (0600) are root's. Two ways, best first:

* ``sandbox`` (root and Debian's ``bubblewrap`` installed): the workspace runs in a file
  system built from nothing but what it needs, in pid, ipc and uts namespaces of its own
  (``launcher.sandbox``); ``setpriv`` then drops to the uid (no new privileges). The state dir
  stays 0700.
* ``uid`` (root, no bubblewrap): the uid switch alone, by ``setpriv`` (util-linux) in front of
  the command: ``subprocess``'s ``user=``/``group=`` are not in uvloop, which ``serve`` runs,
  and a ``preexec_fn`` is unsafe in a threaded process. The state dir must be traversable
  (0711) and every parent of it o+x.

Either way the workspace's resource limits (``launcher.limits``) are set before it runs.
Not root, there is no second uid to give: every workspace can read every other's files and
the gateway's key. Then only one user is served, unless the operator declares a single trust
domain (``local.single_trust_domain: true``).
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Mapping
from pathlib import Path

from .errors import ConfigError
from .owners import Owner

STATE_MODE_ISOLATED = 0o711  # workspaces must traverse it to their homes; nothing is listable
STATE_MODE_SHARED = 0o700
HOME_MODE = 0o700
# Inherited variables that would point every user at the same Jupyter/IPython/XDG state.
_SHARED_STATE_VARS = ("JUPYTER_", "IPYTHON", "XDG_", "HATCHWAY_")
_SHARED_STATE_NAMES = frozenset({"PYTHONUSERBASE", "MAIL", "OLDPWD", "PWD"})


SANDBOX, UID, SHARED = "sandbox", "uid", "shared"


def choose_mode() -> str:
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("setpriv"):
        return SHARED
    return SANDBOX if shutil.which("bwrap") else UID


def uid_argv(argv: list[str], *, owner: Owner, rlimits: list[str]) -> list[str]:
    """``argv`` run as the owner's uid and gid, no other groups, no way back up, umask 077,
    and its rlimits (``launcher.limits.rlimit_argv``) set before it runs (set from outside,
    they would race the wrapper's fork of the workspace)."""
    return ["setpriv", f"--reuid={owner.uid}", f"--regid={owner.uid}", "--clear-groups",
            "--no-new-privs", "--", *rlimits, "/bin/sh", "-c", 'umask 077 && exec "$0" "$@"',
            *argv]


def _blocked_ancestor(path: Path) -> Path | None:
    """The first directory on the way to ``path`` that other users may not pass; None also
    where the way stops existing (nothing to judge yet)."""
    for parent in reversed(path.parents):
        try:
            if not parent.stat().st_mode & stat.S_IXOTH:
                return parent
        except OSError:
            return None
    return None


def check_reachable(path: Path) -> None:
    """Every existing ancestor of ``path`` must let other users through (o+x), or an isolated
    workspace cannot reach its HOME; a ConfigError names the first one that does not."""
    blocked = _blocked_ancestor(path.absolute())
    if blocked is not None:
        raise ConfigError(
            "settings", "state_dir",
            f"a directory whose parents other users may traverse (o+x), because each "
            f"user's workspace runs as its own uid with its HOME under it; {blocked} is "
            f"mode {stat.S_IMODE(blocked.stat().st_mode):04o}", str(path))


def secure_state_dir(state_dir: Path, log_dir: Path, mode: str) -> None:
    """Create the state and log dirs owned by the gateway with the modes above."""
    dir_mode = STATE_MODE_ISOLATED if mode == UID else STATE_MODE_SHARED
    state_dir.mkdir(parents=True, exist_ok=True)
    state_dir.chmod(dir_mode)
    (state_dir / "workspaces").mkdir(exist_ok=True)
    (state_dir / "workspaces").chmod(dir_mode)
    log_dir.mkdir(parents=True, exist_ok=True)
    log_dir.chmod(0o700)


def prepare_home(home: Path, owner: Owner, mode: str) -> None:
    """Make ``home`` the owner's private directory. A home left by an earlier version (owned
    by the gateway) or under another uid is handed over whole, without following symlinks."""
    home.mkdir(mode=HOME_MODE, exist_ok=True)
    home.chmod(HOME_MODE)
    if mode == SHARED:
        return
    if home.lstat().st_uid != owner.uid:
        for _, dirs, files, dir_fd in os.fwalk(home, follow_symlinks=False):
            for entry in dirs + files:
                os.chown(entry, owner.uid, owner.uid, dir_fd=dir_fd, follow_symlinks=False)
    os.chown(home, owner.uid, owner.uid, follow_symlinks=False)


def workspace_env(inherited: Mapping[str, str], home: Path, owner: Owner) -> dict[str, str]:
    """The gateway's environment minus what would make users share state, plus a HOME and
    Jupyter dirs of the workspace's own (JupyterLab keeps its layout under them)."""
    env = {k: v for k, v in inherited.items()
           if not k.startswith(_SHARED_STATE_VARS) and k not in _SHARED_STATE_NAMES}
    env.update({
        "HOME": str(home),
        "USER": owner.name,
        "LOGNAME": owner.name,
        "JUPYTER_CONFIG_DIR": str(home / ".jupyter"),
        "JUPYTER_DATA_DIR": str(home / ".local" / "share" / "jupyter"),
        "JUPYTER_RUNTIME_DIR": str(home / ".local" / "share" / "jupyter" / "runtime"),
        "IPYTHONDIR": str(home / ".ipython"),
    })
    return env
