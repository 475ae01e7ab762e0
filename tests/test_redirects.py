"""Redirects never leave the gateway's origin: the dev login page's ``redirect`` and the
no-session redirect to the login page. Requests are written byte for byte on a raw socket."""

from __future__ import annotations

import asyncio
import html
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import pytest

from .conftest import PROXY, GatewayUnderTest

HOME = "/lw-workspace/"
LOGIN = "/lw-workspace/login"
OFF_SITE = ["/\t/evil.com", "/\n/evil.com", "/\r\n/evil.com", "/\\evil.com", "/\\/evil.com",
            "//evil.com", "/ /evil.com", "/\x00/evil.com", "https://evil.com/",
            "/\u3000/evil.com", "evil.com"]


async def _raw(port: int, head: str, body: bytes = b"") -> tuple[int, dict[str, str], bytes]:
    """Send ``head`` as written (lines joined with CRLF) and return status, headers, body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head.replace("\n", "\r\n").encode() + b"\r\n" + body)
        data = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head_bytes, _, rest = data.partition(b"\r\n\r\n")
    lines = head_bytes.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split(" ", 2)[1]), headers, rest


async def _sign_in(gw: GatewayUnderTest, redirect: str) -> tuple[int, dict[str, str]]:
    form = urlencode({"user": "alice", "redirect": redirect}).encode()
    status, headers, _ = await _raw(gw.server.port, (
        f"POST {LOGIN} HTTP/1.1\nHost: 127.0.0.1\nConnection: close\n"
        f"Content-Type: application/x-www-form-urlencoded\nContent-Length: {len(form)}\n"), form)
    return status, headers


@pytest.mark.parametrize("target", OFF_SITE, ids=repr)
async def test_sign_in_never_redirects_off_site(gw: GatewayUnderTest, target: str) -> None:
    status, headers = await _sign_in(gw, target)
    assert status == 303
    assert headers["location"] == HOME


async def test_sign_in_returns_to_a_same_origin_path(gw: GatewayUnderTest) -> None:
    status, headers = await _sign_in(gw, PROXY + "lab/tree?path=a%2Fb")
    assert status == 303
    location = urlsplit(headers["location"])
    assert (location.scheme, location.netloc, location.path) == ("", "", PROXY + "lab/tree")
    assert parse_qs(location.query) == {"path": ["a/b"]}


@pytest.mark.parametrize("target", OFF_SITE, ids=repr)
async def test_login_page_form_never_carries_an_off_site_target(gw: GatewayUnderTest,
                                                               target: str) -> None:
    status, _, body = await _raw(gw.server.port, (
        f"GET {LOGIN}?redirect={quote(target, safe='')} HTTP/1.1\nHost: 127.0.0.1\n"
        "Connection: close\n"))
    assert status == 200
    assert f'name="redirect" value="{html.escape(HOME)}"'.encode() in body


async def _no_session_redirect(gw: GatewayUnderTest) -> tuple[str, str]:
    """Where a browser with no session is sent: (login page, the redirect it carries)."""
    status, headers, _ = await _raw(gw.server.port, (
        f"GET {PROXY}lab HTTP/1.1\nHost: evil.example\nAccept: text/html\nConnection: close\n"))
    assert status == 302
    login, _, query = headers["location"].partition("?")
    return login, parse_qs(query)["redirect"][0]


async def test_no_session_redirect_never_uses_the_client_host(start_gateway: Any) -> None:
    gw = await start_gateway(sessions={"login_url": "https://login.example.org/login"})
    assert await _no_session_redirect(gw) == ("https://login.example.org/login", PROXY + "lab")


async def test_no_session_redirect_uses_the_public_url(start_gateway: Any) -> None:
    gw = await start_gateway(sessions={"login_url": "https://login.example.org/login"},
                             public_url="https://commons.example.org")
    assert await _no_session_redirect(gw) == ("https://login.example.org/login",
                                              "https://commons.example.org" + PROXY + "lab")
