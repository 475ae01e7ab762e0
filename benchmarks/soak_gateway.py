"""How the soak starts ``hatchway serve``: this venv's console script, bytecode cached."""

from __future__ import annotations

import os
import sys
from pathlib import Path

HATCHWAY = [str(Path(sys.executable).with_name("hatchway"))]


def gateway_env(code: str = "") -> dict[str, str]:
    """The gateway runs as deployed: its bytecode cached (an image built by pip has it),
    whatever this shell says about writing .pyc files. ``code``: a directory holding another
    checkout's ``proxy`` and ``launcher`` to run instead of this one's (a baseline)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    if code:
        env["PYTHONPATH"] = os.path.abspath(code)
    return env
