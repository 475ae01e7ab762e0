"""Errors mapped once (proxy.api.failures): whatever handler lets them through, an unreachable
backend or authorization service is a 503 with Retry-After, and any other backend failure a
JSON 500 that says what failed, never aiohttp's bare 500 page."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from launcher.errors import BackendError, BackendUnavailable
from proxy.admission.authz import AuthzUnavailable
from proxy.api.failures import map_failures


def failing_app(exc: Exception) -> web.Application:
    async def handler(request: web.Request) -> web.StreamResponse:
        raise exc

    app = web.Application(middlewares=[map_failures])
    app.router.add_get("/x", handler)
    return app


async def test_backend_unavailable_is_503_with_retry_after(aiohttp_client: Any) -> None:
    client = await aiohttp_client(failing_app(BackendUnavailable("API server down")))
    resp = await client.get("/x")
    assert (resp.status, resp.headers["Retry-After"]) == (503, "5")
    assert await resp.json() == {"error": "workspace backend unavailable: API server down"}


async def test_authorization_unavailable_is_503_with_retry_after(aiohttp_client: Any) -> None:
    client = await aiohttp_client(failing_app(AuthzUnavailable("Arborist timed out")))
    resp = await client.get("/x")
    assert (resp.status, resp.headers["Retry-After"]) == (503, "5")
    assert "Arborist timed out" in (await resp.json())["error"]


async def test_other_backend_errors_are_a_json_500_naming_the_failure(
        aiohttp_client: Any) -> None:
    client = await aiohttp_client(failing_app(BackendError("reading alice's workspace failed")))
    resp = await client.get("/x")
    assert resp.status == 500 and resp.content_type == "application/json"
    assert await resp.json() == {
        "error": "workspace backend error: reading alice's workspace failed"}
