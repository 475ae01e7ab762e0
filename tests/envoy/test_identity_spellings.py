"""Through a real Envoy, no spelling of an identity header a client sends reaches a workspace:
every mix of ``-`` and ``_`` in every identity header's name, in any case. The requests are
written byte for byte on a raw socket, as an attacker would."""

from __future__ import annotations

import asyncio
import itertools
import json
from typing import Any

import pytest

from proxy.relay.headers import IDENTITY

from .conftest import PROXY, EnvoyStack


def spellings(name: str) -> list[str]:
    """``name`` with each separator written as ``-`` or ``_`` (all 2**n ways), in lower case
    and one upper-case variant."""
    parts = name.split("-")
    out = []
    for seps in itertools.product("-_", repeat=len(parts) - 1):
        out.append(parts[0] + "".join(s + p for s, p in zip(seps, parts[1:], strict=True)))
    return out + [out[-1].upper()]


def _dechunk(body: bytes) -> bytes:
    out = b""
    while True:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            return out
        out, body = out + body[:size], body[size + 2:]


async def _raw_get(port: int, extra_headers: list[str]) -> tuple[int, dict[str, Any]]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [f"GET {PROXY}headers HTTP/1.1", "Host: 127.0.0.1",
             "Authorization: Bearer alice-token", "Connection: close", *extra_headers, "", ""]
    writer.write("\r\n".join(lines).encode())
    try:
        data = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" in head.lower():
        body = _dechunk(body)
    return int(head.split(b" ", 2)[1]), json.loads(body) if body else {}


@pytest.mark.parametrize("canon", sorted(IDENTITY))
async def test_no_spelling_of_an_identity_header_reaches_the_workspace(
        envoy_stack: EnvoyStack, canon: str) -> None:
    await envoy_stack.workspace("alice")
    await envoy_stack.until(PROXY + "headers", 200)
    sent = spellings(canon)
    status, body = await _raw_get(envoy_stack.port, [f"{name}: bob" for name in sent])
    assert status == 200
    assert body["path"] == "/alice/headers"  # still routed to the session's own workspace
    leaked = [(k, v) for k, v in body["header_list"] if v == "bob"]
    assert leaked == [], f"sent {len(sent)} spellings of {canon}"
    assert body["headers"]["remote_user"] == "alice"


@pytest.mark.parametrize("header", ["x-remote_user", "x_forwarded-user", "Remote_User",
                                    "X_REMOTE-USER"])
async def test_mixed_spelling_cannot_claim_another_user(envoy_stack: EnvoyStack,
                                                        header: str) -> None:
    await envoy_stack.workspace("alice")
    await envoy_stack.workspace("bob")
    await envoy_stack.until(PROXY + "headers", 200, "bob-token")
    status, body = await _raw_get(envoy_stack.port, [f"{header}: bob"])
    assert status == 200
    assert body["path"] == "/alice/headers"
    assert [k for k, v in body["header_list"] if v == "bob"] == []
