"""The real Gen3 SDK (``gen3`` from PyPI) gets an access token with the key a workspace
receives: read from the workspace pod's environment on the emulated cluster, written to
``credentials.json`` as the sidecar's script writes it (ecs-ws-sidecar ``sidecar.sh``:
``{"api_key": "$API_KEY"}`` into ``/.gen3/credentials.json``), and exchanged by the SDK's own
code at ``<iss>/user/credentials/cdis/access_token`` on the loopback Fence."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from gen3.auth import Gen3Auth

from launcher.options import HatcheryConfig
from tests.fence_contract import FenceContract

from .conftest import NAMESPACE, ApiServer, BackendFactory, eventually
from .kubelet import Kubelet
from .test_fence_keys import env_of

USER = "alice@example.org"


@pytest.fixture
async def fence() -> AsyncIterator[FenceContract]:
    server = FenceContract()
    await server.start()
    yield server
    await server.stop()


async def test_the_gen3_sdk_gets_a_token_with_the_workspaces_key(
        api: ApiServer, kubelet: Kubelet, make_backend: BackendFactory,
        hatchery: HatcheryConfig, fence: FenceContract, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # the SDK caches tokens under ~/.cache/gen3
    backend = await make_backend(api_keys=True, fence_url=fence.url + "/user/")
    await backend.launch(USER, hatchery.options[0], fence.user_token(USER))
    await eventually(lambda: api.emulator.items("pods", NAMESPACE))
    pod = api.emulator.items("pods", NAMESPACE)[0]
    gen3_dir = tmp_path / ".gen3"  # the shared emptyDir "gen3", mounted at /.gen3
    gen3_dir.mkdir()
    credentials = gen3_dir / "credentials.json"
    credentials.write_text(json.dumps({"api_key": env_of(pod, "fuse-container")["API_KEY"]}))

    token = await asyncio.to_thread(lambda: Gen3Auth(refresh_file=str(credentials))
                                    .get_access_token())

    assert token in fence.access_tokens
    assert env_of(pod, "hatchery-container")["API_KEY"] == env_of(pod, "fuse-container")["API_KEY"]


async def test_a_revoked_key_gets_no_token_from_the_sdk(
        api: ApiServer, make_backend: BackendFactory, hatchery: HatcheryConfig,
        fence: FenceContract, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    backend = await make_backend(api_keys=True, fence_url=fence.url + "/user/")
    token = fence.user_token(USER)
    await backend.launch(USER, hatchery.options[0], token)
    key = env_of(api.emulator.items("pods", NAMESPACE)[0], "hatchery-container")["API_KEY"]
    await backend.terminate(USER, token)
    credentials = tmp_path / "credentials.json"
    credentials.write_text(json.dumps({"api_key": key}))
    with pytest.raises(Exception, match="Failed to get an access token"):
        await asyncio.to_thread(lambda: Gen3Auth(refresh_file=str(credentials))
                                .get_access_token())
