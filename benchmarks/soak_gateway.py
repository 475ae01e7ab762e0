"""How the soak starts ``hatchway serve``: this venv's console script, bytecode cached."""

from __future__ import annotations

import os
import sys
from pathlib import Path

HATCHWAY = [str(Path(sys.executable).with_name("hatchway"))]


def gateway_env(*paths: str | Path) -> dict[str, str]:
    """The gateway runs as deployed: its bytecode cached (an image built by pip has it),
    whatever this shell says about writing .pyc files. ``paths`` go first on PYTHONPATH:
    another checkout's ``proxy`` and ``launcher`` (a baseline), or ``deployed_only``."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    if any(paths):
        env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) for p in paths if p)
    return env


def deployed_only(tmp: Path) -> Path:
    """A PYTHONPATH entry hiding what this test venv has and the image (``.[kubernetes]``)
    lacks: kubernetes-validate, which ``kubernetes_asyncio.dynamic`` imports when present
    (and with it jsonschema's rfc3987 grammar: ~6 s of start-up here, none in the image)."""
    shim = tmp / "deployed-only"
    shim.mkdir(exist_ok=True)
    (shim / "kubernetes_validate.py").write_text(
        'raise ImportError("kubernetes-validate is not in the deployed image")\n')
    return shim
