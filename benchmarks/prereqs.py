"""The load generator the harness needs: without it the run stops (nothing could be measured).
Peers install their own parts (``Peer.prepare``); a peer whose set-up fails is skipped with
the reason."""

from __future__ import annotations

import shutil


class MissingTool(RuntimeError):
    pass


def require_load_generator() -> None:
    if not shutil.which("wrk"):
        raise MissingTool("wrk not found: apt-get install wrk (the HTTP load generator)")
    for module in ("uvloop", "httptools"):
        try:
            __import__(module)
        except ImportError:
            raise MissingTool(f"python module {module} missing: pip install {module}") from None
