"""The fast upstream answers what every scenario asks of it, under any path prefix."""

from __future__ import annotations

import base64
import http.client
import os
import socket

from benchmarks.wsframes import OP_BINARY, FrameReader, accept_key, encode_frame


def _request(port: int, method: str, path: str, **kw: object) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, **kw)  # type: ignore[arg-type]
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_small_get_is_answered_under_any_prefix(upstream_port: int) -> None:
    for path in ("/small", "/lw-workspace/proxy/small", "/user/alice/small?x=1"):
        assert _request(upstream_port, "GET", path) == (200, b"Hello, world!")


def test_download_is_exactly_the_size_in_its_name(upstream_port: int) -> None:
    status, body = _request(upstream_port, "GET", "/bytes-3000001")
    assert (status, len(body)) == (200, 3000001)


def test_chunked_upload_bytes_are_counted(upstream_port: int) -> None:
    chunks = iter([b"a" * 1000, b"b" * 24])
    status, body = _request(upstream_port, "POST", "/upload", body=chunks,
                            encode_chunked=True)
    assert (status, body) == (200, b"received 1024")


def test_unknown_endpoint_is_404(upstream_port: int) -> None:
    assert _request(upstream_port, "GET", "/nothing")[0] == 404


def test_websocket_frames_come_back_unmasked_in_order(upstream_port: int) -> None:
    key = base64.b64encode(os.urandom(16)).decode()
    with socket.create_connection(("127.0.0.1", upstream_port), timeout=10) as sock:
        sock.sendall(f"GET /p/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                     f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                     f"Sec-WebSocket-Version: 13\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, _, rest = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101")
        assert f"Sec-WebSocket-Accept: {accept_key(key)}".encode() in head
        messages = [os.urandom(16), os.urandom(65536)]
        sock.sendall(b"".join(encode_frame(OP_BINARY, m, os.urandom(4)) for m in messages))
        reader = FrameReader()
        frames = reader.feed(rest)
        while len(frames) < 2:
            frames += reader.feed(sock.recv(65536))
        assert [payload for _, payload in frames] == messages
