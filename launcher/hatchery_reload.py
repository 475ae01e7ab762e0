"""hatchery.json read again while hatchway runs, when the file changes (an operator edits the
ConfigMap, or a local file): new launches and ``/options`` see the new list, running workspaces
keep running (a workspace holds the option it was launched from, not its id), and a broken file
keeps the list that works and says why, once per change, in the log and ``/_status``.

A ConfigMap mounted as a directory is updated by the kubelet's atomic writer: the files live in
a ``..<timestamp>`` directory, ``..data`` is a symlink to it, ``hatchery.json`` a symlink to
``..data/hatchery.json``, and an update renames a new ``..data`` over the old one. Opening the
path follows the links, so each poll (on the injected clock) reads what a fresh start would
read: a digest of those bytes tells a change, whether an in-place edit (mtime and size can stay
equal within the file system's timestamp granularity), an editor's rename or a ConfigMap swap.
A few KiB every few seconds costs nothing. (A ``subPath`` mount, as Hatchery's own chart uses,
is never updated by the kubelet: reloading needs the directory mount deploy/ uses.)

Some fields are read once at start-up (the user namespace, the Fence URL choice, pay models):
a change to them is reported as needing a restart, while the options still reload.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import Any

from .clock import REAL, Clock, Timer
from .errors import ConfigError
from .options import HatcheryConfig, load_hatchery_file

log = logging.getLogger("hatchway.options")

RESTART_FIELDS = ("user_namespace", "use_internal_services_url", "default_pay_model",
                  "pay_models", "pay_models_dynamodb_table", "pay_models_dynamodb_arn")
"""Fields the gateway reads once when it starts (go_key spelling in messages)."""
_GO_NAMES = {"user_namespace": "user-namespace",
             "use_internal_services_url": "use-internal-services-url",
             "default_pay_model": "default-pay-model", "pay_models": "pay-models",
             "pay_models_dynamodb_table": "pay-models-dynamodb-table",
             "pay_models_dynamodb_arn": "pay-models-dynamodb-arn"}

def file_signature(path: str) -> str:
    """A digest of what ``path`` holds now (symlinks followed), or why it cannot be read."""
    try:
        with open(path, "rb") as fh:
            return hashlib.sha256(fh.read()).hexdigest()
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"unreadable: {exc.strerror}"


class HatcheryReloader:
    """Polls ``initial.source`` every ``interval_seconds`` of ``clock`` and calls ``apply``
    with each new, valid config."""

    def __init__(self, initial: HatcheryConfig, apply: Callable[[HatcheryConfig], None], *,
                 interval_seconds: float = 10.0, clock: Clock = REAL) -> None:
        self.path = initial.source
        self.current = initial
        self._started = initial
        self._apply = apply
        self._interval = interval_seconds
        self._clock = clock
        self._timer: Timer | None = None
        self._signature = file_signature(self.path)
        self.problem = ""  # why the file on disk is not the config in use ("" when it is)
        self.restart_needed: list[str] = []  # changed fields that take effect on restart
        self.reloads = 0
        self.loaded_at = clock.time()

    # -- the loop, on the injected clock ----------------------------------------------------

    def start(self) -> None:
        if self._timer is None and self._interval > 0:
            self._timer = self._clock.call_later(self._interval, self._tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self) -> None:
        try:
            self.check()
        except Exception:  # never end the loop; a bug here is logged, the old list kept
            log.exception("checking %s for changes failed", self.path)
        self._timer = self._clock.call_later(self._interval, self._tick)

    # -- one look at the file -----------------------------------------------------------------

    def check(self) -> bool:
        """Look at the file once; True when a new config was applied."""
        signature = file_signature(self.path)
        if signature == self._signature:
            return False
        self._signature = signature
        if signature == "missing":
            return self._refuse(f"{self.path}: the file is gone")
        try:
            new = load_hatchery_file(self.path)
        except ConfigError as exc:
            return self._refuse(str(exc))
        if self.problem:
            log.info("%s is valid again", self.path)
            self.problem = ""
        if new == self.current:
            return False
        old, self.current = self.current, new
        self.reloads += 1
        self.loaded_at = self._clock.time()
        self._apply(new)
        self._say_changes(old, new)
        return True

    def _refuse(self, why: str) -> bool:
        self.problem = f"{why}; still serving the {len(self.current.options)} option(s) " \
                       f"loaded before"
        log.warning("hatchery.json not reloaded: %s", self.problem)
        return False

    def _say_changes(self, old: HatcheryConfig, new: HatcheryConfig) -> None:
        before = {o.id: o.name for o in old.options}
        after = {o.id: o.name for o in new.options}
        added = [after[i] for i in after if i not in before]
        removed = [before[i] for i in before if i not in after]
        log.info("%s reloaded: %d option(s); new or changed: %s; gone: %s (running workspaces "
                 "keep theirs)", self.path, len(new.options), ", ".join(map(repr, added)) or
                 "none", ", ".join(map(repr, removed)) or "none")
        if new.unsupported and new.unsupported != old.unsupported:  # as at start-up
            log.warning("%s: not supported by hatchway (yet): %s", self.path,
                        "; ".join(new.unsupported))
        restart = [_GO_NAMES[f] for f in RESTART_FIELDS
                   if getattr(new, f) != getattr(self._started, f)]
        if restart and restart != self.restart_needed:
            log.warning("%s: %s changed; read at start-up only, so in effect after a restart",
                        self.path, ", ".join(restart))
        self.restart_needed = restart

    def health(self) -> dict[str, Any]:
        """For ``/_status``: where the options come from, and whether the file is in use."""
        body: dict[str, Any] = {"source": self.path, "options": len(self.current.options),
                                "reloads": self.reloads, "loaded_at": int(self.loaded_at)}
        if self.problem:
            body["problem"] = self.problem
        if self.restart_needed:
            body["restart_needed"] = self.restart_needed
        return body
