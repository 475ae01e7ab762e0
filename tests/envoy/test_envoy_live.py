"""A real Envoy follows hatchway's route table live: launches become reachable and terminations
unreachable without a restart; HTTP and WebSocket reach only the session's own workspace."""

from __future__ import annotations

import aiohttp
import pytest
from yarl import URL

from proxy import responses

from .conftest import PROXY, EnvoyStack

ALICE = {"Authorization": "Bearer alice-token"}


async def test_workspace_published_after_start_is_reached_without_restart(
        envoy_stack: EnvoyStack) -> None:
    envoy = envoy_stack.envoy.proc
    assert await envoy_stack.status(PROXY + "headers") == 404  # empty table: no workspace yet
    await envoy_stack.workspace("alice")
    await envoy_stack.until(PROXY + "headers", 200)
    assert envoy is envoy_stack.envoy.proc and envoy is not None
    assert envoy.returncode is None  # the same Envoy process, never restarted


async def test_path_is_rewritten_to_the_workspace_prefix(envoy_stack: EnvoyStack) -> None:
    await envoy_stack.workspace("alice")
    await envoy_stack.until(PROXY + "headers", 200)
    async with envoy_stack.http.get(envoy_stack.url(PROXY + "headers?x=1"),
                                    headers=ALICE) as resp:
        body = await resp.json()
    assert body["path"] == "/alice/headers?x=1"
    assert body["headers"]["remote_user"] == "alice"


async def test_removed_workspace_answers_404_json(envoy_stack: EnvoyStack) -> None:
    await envoy_stack.workspace("alice")
    await envoy_stack.until(PROXY + "headers", 200)
    envoy_stack.routes.remove("alice")
    await envoy_stack.until(PROXY + "headers", 404)
    async with envoy_stack.http.get(envoy_stack.url(PROXY + "headers"), headers=ALICE) as resp:
        assert resp.content_type == "application/json"
        assert "launch one" in (await resp.json())["error"]


async def test_envoys_own_no_workspace_answer_is_builtin_modes_page_for_a_browser(
        envoy_stack: EnvoyStack) -> None:
    """What Envoy answers itself (hatchway's check admitted a route Envoy has not loaded yet):
    the same page builtin mode shows, chosen by Accept."""
    async with envoy_stack.http.get(envoy_stack.url(PROXY + "lab"),
                                    headers={**ALICE, "Accept": "text/html,*/*;q=0.8"}) as resp:
        assert (resp.status, resp.headers["Content-Type"]) == (404, "text/html; charset=utf-8")
        page = await resp.text()
    assert page == responses.error_page(404, responses.NO_WORKSPACE,
                                        ("/lw-workspace/", responses.LAUNCH_LINK))


async def test_request_body_streams_to_the_workspace(envoy_stack: EnvoyStack) -> None:
    await envoy_stack.workspace("alice")
    await envoy_stack.until(PROXY + "headers", 200)
    body = b"x" * (3 * 1024 * 1024)
    async with envoy_stack.http.post(envoy_stack.url(PROXY + "upload"), data=body,
                                     headers=ALICE) as resp:
        assert resp.status == 200
        assert (await resp.json())["bytes"] == len(body)


async def test_launching_workspace_answers_503(envoy_stack: EnvoyStack) -> None:
    await envoy_stack.workspace("alice", ready=False)
    await envoy_stack.until(PROXY + "headers", 503)


async def test_websocket_echoes_and_close_code_survives(envoy_stack: EnvoyStack) -> None:
    await envoy_stack.workspace("alice")
    await envoy_stack.until(PROXY + "headers", 200)
    async with envoy_stack.http.ws_connect(envoy_stack.url(PROXY + "echo"),
                                           headers=ALICE) as ws:
        await ws.send_str("hello")
        assert (await ws.receive(timeout=5)).data == "hello"
        await ws.send_str("close:4001:bye")
        msg = await ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.CLOSE
        assert (msg.data, msg.extra) == (4001, "bye")


@pytest.mark.parametrize("header", ["remote_user", "REMOTE_USER", "Remote-User",
                                    "X-Forwarded-User"])
async def test_client_sent_identity_header_cannot_reach_another_workspace(
        envoy_stack: EnvoyStack, header: str) -> None:
    await envoy_stack.workspace("alice")
    await envoy_stack.workspace("bob")
    await envoy_stack.until(PROXY + "headers", 200, "bob-token")
    async with envoy_stack.http.get(envoy_stack.url(PROXY + "headers"),
                                    headers={**ALICE, header: "bob"}) as resp:
        assert resp.status == 200
        body = await resp.json()
    assert body["path"] == "/alice/headers"  # alice's own workspace
    seen = {k.lower(): v for k, v in body["headers"].items()}
    assert seen["remote_user"] == "alice"
    assert "remote-user" not in seen and "x-forwarded-user" not in seen


@pytest.mark.parametrize("trick", ["../bob/headers", "..%2Fbob%2Fheaders",
                                   "%2e%2e/%2e%2e/bob/headers", "//bob/headers"])
async def test_path_tricks_never_reach_another_workspace(envoy_stack: EnvoyStack,
                                                         trick: str) -> None:
    await envoy_stack.workspace("alice")
    await envoy_stack.workspace("bob")
    await envoy_stack.until(PROXY + "headers", 200, "bob-token")
    async with envoy_stack.http.get(URL(envoy_stack.url(PROXY + trick), encoded=True),
                                    headers=ALICE) as resp:
        if resp.status == 200:
            assert (await resp.json())["path"].startswith("/alice/")
        else:
            assert resp.status in (400, 404)


async def test_no_session_is_refused_before_any_workspace(envoy_stack: EnvoyStack) -> None:
    await envoy_stack.workspace("alice")
    await envoy_stack.until(PROXY + "headers", 200)
    async with envoy_stack.http.get(envoy_stack.url(PROXY + "headers"),
                                    headers={"remote_user": "alice"}) as resp:
        assert resp.status == 401
        assert (await resp.json())["error"].startswith("no session")
    async with envoy_stack.http.get(envoy_stack.url(PROXY + "headers"),
                                    headers={"Authorization": "Bearer forged"}) as resp:
        assert resp.status == 401


async def test_check_receives_session_cookie_and_original_path(envoy_stack: EnvoyStack) -> None:
    async with envoy_stack.http.get(envoy_stack.url(PROXY + "a/b?c=d"),
                                    headers={"Cookie": "access_token=alice-token; other=1",
                                             "Accept": "text/html"}) as resp:
        assert resp.status == 404  # checked, admitted, and no workspace yet
    check = envoy_stack.authz.checks[-1]
    assert check["path"] == "/lw-workspace/_ext_authz" + PROXY + "a/b?c=d"
    assert "access_token=alice-token" in check["headers"]["cookie"]
    assert check["headers"]["accept"] == "text/html"


async def test_proxy_root_without_slash_redirects_to_it(envoy_stack: EnvoyStack) -> None:
    async with envoy_stack.http.get(envoy_stack.url(PROXY.rstrip("/")),
                                    allow_redirects=False) as resp:
        assert resp.status == 301
        assert resp.headers["Location"].endswith(PROXY)


async def test_other_paths_go_to_hatchway_without_a_check(envoy_stack: EnvoyStack) -> None:
    checks = len(envoy_stack.authz.checks)
    async with envoy_stack.http.get(envoy_stack.url("/lw-workspace/options")) as resp:
        assert resp.status == 200
    assert envoy_stack.authz.api_calls == 1
    assert len(envoy_stack.authz.checks) == checks
