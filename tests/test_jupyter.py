"""A real Jupyter workspace through the gateway: launched with the API's default "Jupyter
Notebook (local)" option, a kernel started over its REST API and ``1+1`` executed over the
kernel's WebSocket channel, all through ``/lw-workspace/proxy/`` as a browser would."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest

from .conftest import PROXY, GatewayUnderTest
from .helpers import auth, launch, status_becomes

pytest.importorskip("jupyter_server", reason="the Jupyter option needs jupyter_server")
pytest.importorskip("ipykernel", reason="executing code needs ipykernel")
pytestmark = pytest.mark.jupyter
JUPYTER = "Jupyter Notebook (local)"


def execute_request(code: str, session: str) -> dict[str, Any]:
    """A Jupyter messaging protocol v5 ``execute_request`` on the shell channel."""
    return {
        "header": {"msg_id": uuid.uuid4().hex, "session": session, "username": "alice",
                   "msg_type": "execute_request", "version": "5.3",
                   "date": datetime.now(UTC).isoformat()},
        "parent_header": {}, "metadata": {}, "buffers": [], "channel": "shell",
        "content": {"code": code, "silent": False, "store_history": False,
                    "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
    }


async def execute_result(ws: aiohttp.ClientWebSocketResponse, msg_id: str) -> dict[str, Any]:
    """The ``execute_result`` on iopub answering ``msg_id`` (other messages are skipped)."""
    while True:
        msg = await ws.receive_json(timeout=30)
        if (msg.get("channel") == "iopub" and msg["header"]["msg_type"] == "execute_result"
                and msg["parent_header"].get("msg_id") == msg_id):
            return dict(msg["content"])
        if msg["header"]["msg_type"] == "error":
            raise AssertionError(f"the kernel raised: {msg['content']}")


@pytest.fixture
async def jupyter(gw: GatewayUnderTest,
                  client: aiohttp.ClientSession) -> AsyncIterator[GatewayUnderTest]:
    await launch(client, gw, JUPYTER)
    yield gw
    async with client.post(gw.url("/lw-workspace/terminate"), headers=auth(gw)) as resp:
        assert resp.status == 200


@pytest.mark.timeout(120)
async def test_a_kernel_runs_one_plus_one_through_the_proxy(
        jupyter: GatewayUnderTest, client: aiohttp.ClientSession) -> None:
    gw = jupyter
    await status_becomes(client, gw, "Running", within=60)
    async with client.post(gw.url(PROXY + "api/kernels"), headers=auth(gw),
                           json={"name": "python3"}) as resp:
        assert resp.status == 201, await resp.text()
        kernel_id = (await resp.json())["id"]
    browser_like = {**auth(gw), "Origin": gw.base}
    async with client.ws_connect(gw.url(f"{PROXY}api/kernels/{kernel_id}/channels"),
                                 headers=browser_like) as ws:
        request = execute_request("1+1", session=uuid.uuid4().hex)
        await ws.send_json(request)
        result = await asyncio.wait_for(execute_result(ws, request["header"]["msg_id"]), 60)
    assert result["data"]["text/plain"] == "2"
    async with client.get(gw.url(PROXY + "api/status"), headers=auth(gw)) as resp:
        assert (await resp.json())["kernels"] == 1


@pytest.mark.timeout(120)
async def test_open_lands_in_jupyterlab(jupyter: GatewayUnderTest,
                                        client: aiohttp.ClientSession) -> None:
    """The launch page's Open goes to the proxy root; Jupyter sends it on to JupyterLab."""
    pytest.importorskip("jupyterlab", reason="the `jupyter` extra installs JupyterLab")
    gw = jupyter
    await status_becomes(client, gw, "Running", within=60)
    async with client.get(gw.url(PROXY), headers={**auth(gw), "Accept": "text/html"}) as resp:
        assert resp.status == 200
        assert resp.url.path == PROXY + "lab"
        assert "JupyterLab" in await resp.text()
