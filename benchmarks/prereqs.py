"""Set-up the harness does itself: find the load generator, install configurable-http-proxy with
npm into benchmarks/.node/ when it is missing. A peer whose set-up fails is skipped with the
reason; a missing load generator stops the run (nothing could be measured)."""

from __future__ import annotations

import shutil
import subprocess

from benchmarks.peers import CHP_BIN, CHP_PACKAGE, NODE_DIR


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


def ensure_chp(timeout: float = 300.0) -> str | None:
    """Install configurable-http-proxy locally if needed; None on success, else why not."""
    if CHP_BIN.exists():
        return None
    if not shutil.which("npm") or not shutil.which("node"):
        return "node/npm not installed (apt-get install nodejs npm)"
    NODE_DIR.mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--prefix", str(NODE_DIR), CHP_PACKAGE],
            capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return f"npm install {CHP_PACKAGE} timed out after {timeout:.0f} s"
    if done.returncode != 0 or not CHP_BIN.exists():
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return f"npm install {CHP_PACKAGE} failed: {last[0][:200]}"
    return None
