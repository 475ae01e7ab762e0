"""The workspace options the embedded default offers when no hatchery.json is given: the
demo workspace always, and a local Jupyter when ``jupyter_server`` is installed.

They are written as a hatchery.json document and parsed like one, so their ids, ``/options``
answers and idle limits come out of the same code as an operator's file.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

from .options import HatcheryConfig, parse_hatchery_config

SOURCE = "built-in defaults"
PROXY_PATH = "/lw-workspace/proxy/"


def demo_container() -> dict[str, Any]:
    return {
        "name": "Demo workspace (built-in)",
        "cpu-limit": "0.5",
        "memory-limit": "512Mi",
        "command": [sys.executable, "-m", "launcher.demo"],
        "args": ["--port", "{port}", "--base-url", "{base_url}"],
        "path-rewrite": PROXY_PATH,
        "ready-probe": PROXY_PATH + "api/status",
    }


def jupyter_container() -> dict[str, Any]:
    """Jupyter without a password or XSRF: the gateway already checked the session, and
    sends the workspace's secret (``JUPYTER_TOKEN``) on every request it relays. It listens on
    loopback only, yet sees the gateway's Host header (the proxy keeps the browser's), so its
    DNS-rebinding guard is lifted with ``allow_remote_access``; its Origin check stays on and
    passes because Origin and Host agree."""
    return {
        "name": "Jupyter Notebook (local)",
        "cpu-limit": "1.0",
        "memory-limit": "2Gi",
        "command": [sys.executable, "-m", "jupyter_server"],
        "args": [
            "--ServerApp.port={port}",
            "--ServerApp.ip=127.0.0.1",
            "--ServerApp.allow_remote_access=True",
            "--ServerApp.base_url={base_url}",
            # the token comes from JUPYTER_TOKEN: the gateway's per-workspace secret, which
            # the relay sends on every request (launcher.local), never in argv
            "--ServerApp.password=",
            "--ServerApp.disable_check_xsrf=True",
            "--no-browser",
            "--allow-root",
            "--ServerApp.shutdown_no_activity_timeout=3600",
            # Open lands in JupyterLab, not on "A Jupyter Server is running." (jupyterlab is
            # in the `jupyter` extra; without it the server's own page stays the default)
            *(["--ServerApp.default_url=/lab"]
              if importlib.util.find_spec("jupyterlab") is not None else []),
        ],
        "path-rewrite": PROXY_PATH,
        "ready-probe": PROXY_PATH + "api/status",
    }


def default_hatchery_config() -> HatcheryConfig:
    containers = [demo_container()]
    if importlib.util.find_spec("jupyter_server") is not None:
        containers.append(jupyter_container())
    return parse_hatchery_config({"containers": containers}, SOURCE)
