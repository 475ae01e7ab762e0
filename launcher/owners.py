"""Who owns each Hatchery name on this machine, and the uid their local workspaces run as.

Hatchery's escaping (``launcher.names``) is not one-to-one: ``a.b@example.org`` and a name
holding ``\\u02eb\\u040`` both become ``a-2eb-40example-2eorg``. The names are kept (a home made
under one must still be found), so the real user is recorded beside each name here, and a
second user whose name escapes the same way is refused instead of being handed the first one's
home. The record lives in the gateway's state dir (mode 0600), survives restarts, and also
fixes each user's uid so their files stay theirs across launches.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import NameTaken
from .names import escape

FILE = "owners.json"


@dataclass(frozen=True)
class Owner:
    user: str  # the real user name, as the session said it
    name: str  # Hatchery's escaped name: the home directory and log file
    uid: int  # the uid (and gid) the user's workspaces run as when isolated


class Owners:
    """The persistent name → user (and uid) record. One process writes it (the local backend
    runs with one worker), so a read-modify-write under the event loop is enough."""

    def __init__(self, state_dir: Path, first_uid: int) -> None:
        self._path = state_dir / FILE
        self._first_uid = first_uid
        self._names: dict[str, dict[str, Any]] | None = None

    def _load(self) -> dict[str, dict[str, Any]]:
        if self._names is None:
            try:
                doc = json.loads(self._path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                doc = {}
            except (OSError, ValueError) as exc:
                raise OSError(f"{self._path}: unreadable owner record ({exc})") from None
            self._names = dict(doc.get("names") or {})
        return self._names

    def users(self) -> list[str]:
        return [str(entry["user"]) for entry in self._load().values()]

    def claim(self, user: str) -> Owner:
        """``user``'s record, made on first use. Raises NameTaken when another user holds the
        same escaped name."""
        name = escape(user)
        names = self._load()
        entry = names.get(name)
        if entry is not None:
            if entry["user"] != user:
                raise NameTaken(name)
            return Owner(user, name, int(entry["uid"]))
        uid = max((int(e["uid"]) for e in names.values()), default=self._first_uid - 1) + 1
        names[name] = {"user": user, "uid": uid}
        self._save(names)
        return Owner(user, name, uid)

    def _save(self, names: dict[str, dict[str, Any]]) -> None:
        """Written to a private temporary file and renamed over, so a crash leaves the old
        record or the new one, never half of either."""
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_name(f".{FILE}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump({"names": names}, fh, indent=1, sort_keys=True)
            os.replace(tmp, self._path)
        finally:
            tmp.unlink(missing_ok=True)
