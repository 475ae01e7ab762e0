"""Fence API keys per workspace, as Hatchery mints and revokes them (helpers.go, pods.go),
against a Fence contract server on loopback and the real API server."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import pytest

from launcher.errors import BackendError
from launcher.fence_keys import INTERNAL_FENCE, FenceKeys, fence_url
from launcher.names import pod_name
from launcher.options import HatcheryConfig
from tests.fence_contract import FenceContract
from tests.helpers import env_of

from .cluster import Cluster
from .conftest import BackendFactory, api_write

USER = "alice@example.org"


async def keyed_backend(make_backend: BackendFactory, fence: FenceContract) -> Any:
    return await make_backend(api_keys=True, fence_url=fence.url + "/user/")


def test_fence_url_follows_hatcherys_rule() -> None:
    assert fence_url(configured="", environ={}, use_internal=False) == INTERNAL_FENCE
    assert fence_url(configured="", environ={"GEN3_ENDPOINT": "c.org"},
                     use_internal=False) == "https://c.org/user/"
    assert fence_url(configured="", environ={"GEN3_ENDPOINT": "c.org"},
                     use_internal=True) == INTERNAL_FENCE
    assert fence_url(configured="http://f/user", environ={}, use_internal=False) == \
        "http://f/user/"


async def test_launch_mints_a_key_for_the_workspace_and_the_sidecar(
        cluster: Cluster, make_backend: BackendFactory, hatchery: HatcheryConfig,
        fence: FenceContract) -> None:
    backend = await keyed_backend(make_backend, fence)
    await backend.launch(USER, hatchery.options[0], fence.user_token(USER))
    (minted,) = fence.minted
    assert minted["user"] == USER and minted["scope"] == ["data", "user"]
    (pod,) = await cluster.items("pods")
    for container in ("hatchery-container", "fuse-container"):
        env = env_of(pod, container)
        assert env["API_KEY_ID"] == minted["key_id"] and env["API_KEY"]
        assert list(env)[-1] == "GEN3_ENDPOINT" or "GEN3_ENDPOINT" not in env


async def test_terminate_revokes_the_pods_key_with_the_users_token(
        cluster: Cluster, make_backend: BackendFactory, hatchery: HatcheryConfig,
        fence: FenceContract) -> None:
    backend = await keyed_backend(make_backend, fence)
    token = fence.user_token(USER)
    await backend.launch(USER, hatchery.options[0], token)
    assert await backend.terminate(USER, token) is True
    assert fence.revoked == {fence.minted[0]["key_id"]}


async def test_terminate_revokes_a_key_a_go_hatchery_minted(
        cluster: Cluster, make_backend: BackendFactory, fence: FenceContract) -> None:
    backend = await keyed_backend(make_backend, fence)
    fence.minted.append({"key_id": "go-hatchery-key", "user": USER, "scope": ["data", "user"]})
    await api_write(cluster, "POST", "pods", {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": pod_name(USER), "annotations": {"gen3username": USER}},
        "spec": {"containers": [{"name": "hatchery-container", "image": "x",
                                 "env": [{"name": "API_KEY_ID", "value": "go-hatchery-key"}]}]}})
    assert await backend.terminate(USER, fence.user_token(USER)) is True
    assert fence.revoked == {"go-hatchery-key"}


async def test_a_cull_revokes_the_key_with_a_token_the_key_itself_obtains(
        cluster: Cluster, make_backend: BackendFactory, hatchery: HatcheryConfig,
        fence: FenceContract) -> None:
    backend = await keyed_backend(make_backend, fence)
    await backend.launch(USER, hatchery.options[0], fence.user_token(USER))
    assert await backend.terminate(USER) is True  # no user token: a cull
    assert fence.revoked == {fence.minted[0]["key_id"]}
    assert fence.revocations == ["oauth2"]


async def test_a_cull_revokes_a_key_a_go_hatchery_minted(
        cluster: Cluster, make_backend: BackendFactory, fence: FenceContract) -> None:
    backend = await keyed_backend(make_backend, fence)
    async with aiohttp.ClientSession() as http:  # a Go Hatchery's mint
        key = await FenceKeys(fence.url + "/user/", lambda: http).mint(fence.user_token(USER))
    await api_write(cluster, "POST", "pods", {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": pod_name(USER), "annotations": {"gen3username": USER}},
        "spec": {"containers": [{"name": "hatchery-container", "image": "x", "env": [
            {"name": "API_KEY", "value": key.api_key},
            {"name": "API_KEY_ID", "value": key.key_id}]}]}})
    assert await backend.terminate(USER) is True
    assert fence.revoked == {key.key_id}


async def test_a_cull_on_a_fence_without_user_revocation_logs_the_key_once_and_terminates(
        cluster: Cluster, make_backend: BackendFactory, hatchery: HatcheryConfig,
        fence: FenceContract, caplog: pytest.LogCaptureFixture) -> None:
    backend = await keyed_backend(make_backend, fence)
    fence.clients_only_revoke = True
    await backend.launch(USER, hatchery.options[0], fence.user_token(USER))
    key_id = fence.minted[0]["key_id"]
    with caplog.at_level(logging.INFO, logger="hatchway.fence_keys"):
        assert await backend.terminate(USER) is True
    assert fence.revoked == set()
    lines = [r for r in caplog.records if key_id in r.getMessage()]
    assert [r.levelno for r in lines] == [logging.INFO]
    assert "401" in lines[0].getMessage() and "not revoked" in lines[0].getMessage()
    assert await cluster.live_pods() == []


async def test_a_refused_mint_fails_the_launch_with_hatcherys_message_and_creates_nothing(
        cluster: Cluster, make_backend: BackendFactory, hatchery: HatcheryConfig,
        fence: FenceContract) -> None:
    backend = await keyed_backend(make_backend, fence)
    fence.fail_mint_with = 403
    with pytest.raises(BackendError, match="creating API key with error code 403"):
        await backend.launch(USER, hatchery.options[0], fence.user_token(USER))
    assert await cluster.items("pods") == []


async def test_a_launch_without_a_token_fails_when_keys_are_minted(
        cluster: Cluster, make_backend: BackendFactory, hatchery: HatcheryConfig,
        fence: FenceContract) -> None:
    backend = await keyed_backend(make_backend, fence)
    with pytest.raises(BackendError, match="no access token"):
        await backend.launch(USER, hatchery.options[0], None)


async def test_a_key_whose_launch_failed_is_revoked_at_once(
        cluster: Cluster, make_backend: BackendFactory, hatchery: HatcheryConfig,
        fence: FenceContract) -> None:
    backend = await keyed_backend(make_backend, fence)
    token = fence.user_token(USER)
    await backend.launch(USER, hatchery.options[0], token)
    with pytest.raises(BackendError):  # a second launch: WorkspaceExists
        await backend.launch(USER, hatchery.options[0], token)
    assert fence.revoked == {fence.minted[1]["key_id"]}
