"""What an open tab sees after its workspace was terminated or culled.

JupyterLab left open polls ``api/contents`` and friends many times a second; a bare 404 "no
workspace" gives neither the person nor the front-end anything to act on. For users whose
workspace this gateway stopped (Terminate, or the idle culler) it answers 410 Gone with
``Retry-After``: a page saying what happened and where to relaunch for a browser navigating,
JSON for the tab's XHRs. Remembered per process for ``KEEP_SECONDS``; a relaunch forgets it.
"""

from __future__ import annotations

import html
import json
import time
from importlib.resources import files

from aiohttp import web

from ..responses import wants_html

KEEP_SECONDS = 24 * 3600.0
MAX_USERS = 100_000
RETRY_AFTER = "60"
_REASONS = {"user": "it was terminated", "idle": "it was idle past its time limit",
            "max_age": "it reached its maximum age", "admin": "an operator stopped it",
            "over_limit": "its pay model is above its limit"}
_TEMPLATE = files("proxy").joinpath("static/stopped.html").read_text(encoding="utf-8")


class StoppedWorkspaces:
    def __init__(self) -> None:
        self._stopped: dict[str, tuple[str, float]] = {}

    def remember(self, user: str, reason: str) -> None:
        self._stopped.pop(user, None)
        self._stopped[user] = (reason, time.time())
        if len(self._stopped) > MAX_USERS:  # oldest first (dicts keep insertion order)
            del self._stopped[next(iter(self._stopped))]

    def forget(self, user: str) -> None:
        self._stopped.pop(user, None)

    def why(self, user: str) -> tuple[str, float] | None:
        found = self._stopped.get(user)
        if found is not None and time.time() - found[1] > KEEP_SECONDS:
            del self._stopped[user]
            return None
        return found


STOPPED: web.AppKey[StoppedWorkspaces] = web.AppKey("stopped", StoppedWorkspaces)


def answer(request: web.Request, user: str, launch_url: str) -> web.Response | None:
    """410 for a workspace this gateway stopped; None for one it never knew.
    ``launch_url`` is the launch page (``<prefix>/``), the favicon beside it."""
    registry = request.app.get(STOPPED)
    found = registry.why(user) if registry is not None else None
    if found is None:
        return None
    reason, when = found
    said = _REASONS.get(reason, "it was stopped")
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(when))
    headers = {"Retry-After": RETRY_AFTER, "Cache-Control": "no-store"}
    if wants_html(request):
        page = (_TEMPLATE.replace("{{reason}}", html.escape(said))
                .replace("{{when}}", html.escape(stamp))
                .replace("{{launch}}", html.escape(launch_url, quote=True))
                .replace("{{favicon}}", html.escape(launch_url + "favicon.ico", quote=True)))
        return web.Response(status=410, text=page, content_type="text/html", headers=headers)
    body = {"error": f"workspace stopped: {said}", "reason": reason, "stopped_at": stamp,
            "launch": launch_url}
    return web.Response(status=410, text=json.dumps(body), content_type="application/json",
                        headers=headers)
