"""The real Gen3 SDK (``gen3`` from PyPI) gets an access token with the key a workspace
receives: read from the workspace pod's environment on the real API server, written to
``credentials.json`` as the sidecar's script writes it (ecs-ws-sidecar ``sidecar.sh``:
``{"api_key": "$API_KEY"}`` into ``/.gen3/credentials.json``), and exchanged by the SDK's own
code at ``<iss>/user/credentials/cdis/access_token`` on the loopback Fence.

The SDK runs in its own virtualenv (``make test`` builds ``.venv/gen3-sdk``), as it would in a
workspace image: its dependency pins cannot share one resolver with the test suite's."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from launcher.options import HatcheryConfig
from tests.fence_contract import FenceContract
from tests.helpers import env_of

from .cluster import Cluster
from .conftest import BackendFactory
from .kubelet import Kubelet

USER = "alice@example.org"
SDK_PYTHON = Path(sys.prefix) / "gen3-sdk" / "bin" / "python"
# What a notebook does with the sidecar's credentials.json: the SDK's own token exchange.
SDK_GET_TOKEN = "import sys; from gen3.auth import Gen3Auth; " \
    "print(Gen3Auth(refresh_file=sys.argv[1]).get_access_token())"

pytestmark = pytest.mark.skipif(not SDK_PYTHON.exists(),
                                reason=f"the Gen3 SDK's virtualenv {SDK_PYTHON} is missing: "
                                       "run `make test` (it builds it)")


def sdk_access_token(credentials: Path, home: Path) -> subprocess.CompletedProcess[str]:
    """The real SDK, in its own interpreter, asked for an access token (HOME: its token cache)."""
    return subprocess.run([str(SDK_PYTHON), "-c", SDK_GET_TOKEN, str(credentials)],
                          capture_output=True, text=True, timeout=60,
                          env={"HOME": str(home), "PATH": "/usr/bin:/bin"})


async def test_the_gen3_sdk_gets_a_token_with_the_workspaces_key(
        cluster: Cluster, kubelet: Kubelet, make_backend: BackendFactory,
        hatchery: HatcheryConfig, fence: FenceContract, tmp_path: Path,
        ) -> None:
    backend = await make_backend(api_keys=True, fence_url=fence.url + "/user/")
    await backend.launch(USER, hatchery.options[0], fence.user_token(USER))
    (pod,) = await cluster.items("pods")
    gen3_dir = tmp_path / ".gen3"  # the shared emptyDir "gen3", mounted at /.gen3
    gen3_dir.mkdir()
    credentials = gen3_dir / "credentials.json"
    credentials.write_text(json.dumps({"api_key": env_of(pod, "fuse-container")["API_KEY"]}))

    done = await asyncio.to_thread(sdk_access_token, credentials, tmp_path)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() in fence.access_tokens
    assert env_of(pod, "hatchery-container")["API_KEY"] == env_of(pod, "fuse-container")["API_KEY"]


async def test_a_revoked_key_gets_no_token_from_the_sdk(
        cluster: Cluster, make_backend: BackendFactory, hatchery: HatcheryConfig,
        fence: FenceContract, tmp_path: Path) -> None:
    backend = await make_backend(api_keys=True, fence_url=fence.url + "/user/")
    token = fence.user_token(USER)
    await backend.launch(USER, hatchery.options[0], token)
    (pod,) = await cluster.items("pods")
    key = env_of(pod, "hatchery-container")["API_KEY"]
    await backend.terminate(USER, token)
    credentials = tmp_path / "credentials.json"
    credentials.write_text(json.dumps({"api_key": key}))
    done = await asyncio.to_thread(sdk_access_token, credentials, tmp_path)
    assert done.returncode != 0
    assert "Failed to get an access token" in done.stderr
