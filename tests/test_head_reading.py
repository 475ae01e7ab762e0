"""How the fast path reads message heads (proxy/relay/fast/head.py, ``RequestReader`` and
``ResponseReader``): llhttp in strict mode judges every head that differs from the one before,
the header lines are read in one pass instead of a callback per header, and what a connection
repeats is not read again. No socket: the readers are given heads as the connections cut
them."""

from __future__ import annotations

import httptools
import pytest

from proxy.relay.fast.head import (
    MEMO_MAX,
    RequestReader,
    ResponseReader,
    browser_response_head,
    parse_request_head,
    parse_response_head,
    upstream_request_head,
)

TOKEN = "eyJ" + "a" * 40


def head(target: str = "/p", *lines: str, method: str = "GET") -> bytes:
    return (f"{method} {target} HTTP/1.1\r\n" + "".join(f"{line}\r\n" for line in lines)
            + "\r\n").encode()


class Callbacks:
    """llhttp's own reading, a callback per header, to compare the one-pass reading with."""

    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))


HEADS = [
    head("/p", "Host: gw", f"Cookie: access_token={TOKEN}", "remote_user: bench"),
    head("/p", "Host:gw", "X-Empty:", "X-Blank: ", "X-Tabs:\t\t v \t", "X-Trailing: v  "),
    head("/p", "X-Colon: a:b: c", "X-Latin: \xe9t\xe9", "Accept: */*", "Accept: text/html"),
    head("/p?q=1", "Host: gw", "Content-Length: 5", "Connection: keep-alive, X-Hop"),
    head("/p"),
]


@pytest.mark.parametrize("raw", HEADS, ids=range(len(HEADS)))
def test_one_pass_reads_the_headers_llhttp_reads(raw: bytes) -> None:
    """Names and values as llhttp's per-header callbacks give them (leading whitespace of a
    value dropped, trailing kept), in order, repeats included."""
    by_llhttp = Callbacks()
    httptools.HttpRequestParser(by_llhttp).feed_data(raw)
    req = parse_request_head(raw)
    assert req is not None
    assert [(name, value) for name, _, value in req.headers] == by_llhttp.headers


def test_a_repeated_head_gives_the_same_reading() -> None:
    reader = RequestReader()
    raw = head("/p", "Host: gw", f"Cookie: access_token={TOKEN}")
    first = reader.read(raw)
    assert first is not None
    assert reader.read(bytes(raw)) is first


def test_a_long_head_is_not_kept_between_requests() -> None:
    """An idle connection holds at most MEMO_MAX of its last head: a longer one is read
    afresh each time, and nothing of it stays."""
    reader = RequestReader()
    raw = head("/p", "Host: gw", "X-Big: " + "b" * MEMO_MAX)
    first = reader.read(raw)
    assert first is not None and first.headers[1][2] == b"b" * MEMO_MAX
    second = reader.read(raw)
    assert second is not None and second is not first
    assert reader.read(head("/q", "Host: gw", "X-Big: " + "b" * MEMO_MAX)) is not None


def test_the_same_headers_under_another_request_line_take_the_new_line() -> None:
    reader = RequestReader()
    lines = ("Host: gw", f"Cookie: access_token={TOKEN}")
    first = reader.read(head("/p", *lines))
    second = reader.read(head("/q?x=1", *lines, method="DELETE"))
    assert first is not None and second is not None
    assert (second.method, second.target) == (b"DELETE", b"/q?x=1")
    assert (first.method, first.target) == (b"GET", b"/p")
    assert second.cookie == first.cookie and second.host == b"gw"


def test_a_head_after_one_with_a_body_is_read_by_a_fresh_parser() -> None:
    """The parser is only kept while each message ends with its head: after a head with a
    body (which the relay, not llhttp, carries), the next head starts a message of its own."""
    reader = RequestReader()
    assert reader.read(head("/upload", "Host: gw", "Content-Length: 5", method="POST"))
    req = reader.read(head("/next", "Host: gw"))
    assert req is not None and req.target == b"/next" and req.content_length == -1


def test_a_head_after_an_upgrade_is_read_by_a_fresh_parser() -> None:
    reader = RequestReader()
    assert reader.read(head("/ws", "Host: gw", "Connection: Upgrade", "Upgrade: websocket"))
    req = reader.read(head("/next", "Host: gw"))
    assert req is not None and not req.upgrade and req.target == b"/next"


@pytest.mark.parametrize("bad", [
    head("/p", "Host: gw", "Content-Length: 5", "Content-Length: 5"),
    head("/p", "Host: gw", "Content-Length: 5", "Transfer-Encoding: chunked"),
    head("/p", "Host: gw", "X-Folded: a", " b"),
    head("/p", "Host: gw", "Content-Length: 0", "Connection: Content-Length"),
    head("/p", "Host: gw", "Cookie: a=1", "Cookie: b=2"),
    b"GET /p HTTP/1.1\r\nHost: gw\nX: y\r\n\r\n",
    b"GET /p HTTP/1.0\r\nHost: gw\r\n\r\n",
], ids=["duplicate_length", "length_and_chunked", "obs_fold", "framing_in_connection",
        "two_cookies", "bare_lf", "http10"])
def test_a_refused_head_is_refused_after_an_accepted_one(bad: bytes) -> None:
    """A connection's earlier heads lend nothing to a later one that differs: llhttp and the
    checks judge it again, even when only one header line changed."""
    reader = RequestReader()
    assert reader.read(head("/p", "Host: gw")) is not None
    assert reader.read(bad) is None


def test_connection_close_is_read_again_on_a_reused_parser() -> None:
    reader = RequestReader()
    assert reader.read(head("/p", "Host: gw"))
    req = reader.read(head("/p", "Host: gw", "Connection: close"))
    assert req is not None and not req.keep_alive


def test_the_rewritten_head_follows_its_arguments() -> None:
    """upstream_request_head's answer is kept per header block, but never for other
    arguments: another user, route secret or target gets a head of its own."""
    req = parse_request_head(head("/p", "Host: gw", f"Cookie: access_token={TOKEN}"))
    assert req is not None

    def out(target: bytes, user: bytes, route_auth: bytes = b"") -> bytes:
        return upstream_request_head(
            req, target, user=user, client_ip=b"127.0.0.1", prefix=b"/lw-workspace/proxy",
            session_token=TOKEN.encode(), cookie_out=None, cookie_name="access_token",
            websocket=False, route_auth=route_auth)

    alice = out(b"/p", b"alice")
    assert out(b"/p", b"alice") == alice
    assert b"REMOTE_USER: bob\r\n" in out(b"/p", b"bob")
    assert out(b"/q", b"alice").startswith(b"GET /q HTTP/1.1\r\n")
    assert b"Authorization: secret\r\n" in out(b"/p", b"alice", b"secret")
    assert b"Authorization" not in out(b"/p", b"alice")


RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Tabs:\t v \r\nKeep-Alive: 5\r\n"
            b"Content-Length: 13\r\n\r\n")


def test_one_pass_reads_the_response_headers_llhttp_reads() -> None:
    by_llhttp = Callbacks()
    httptools.HttpResponseParser(by_llhttp).feed_data(RESPONSE)
    resp = parse_response_head(RESPONSE)
    assert resp is not None and resp.status == 200 and resp.content_length == 13
    assert [(name, value) for name, _, value in resp.headers] == by_llhttp.headers


def test_a_repeated_response_head_gives_the_same_reading() -> None:
    reader = ResponseReader()
    first = reader.read(RESPONSE)
    assert first is not None and reader.read(bytes(RESPONSE)) is first


@pytest.mark.parametrize("bad", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: Content-Length\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
], ids=["duplicate_length", "framing_in_connection", "unrelayable_coding"])
def test_a_refused_response_head_is_refused_after_an_accepted_one(bad: bytes) -> None:
    reader = ResponseReader()
    assert reader.read(RESPONSE) is not None
    assert reader.read(bad) is None


def test_the_browsers_head_is_written_for_its_framing_and_connection() -> None:
    """Kept per response head, one per (chunked, close): each keeps its own framing."""
    resp = parse_response_head(RESPONSE)
    assert resp is not None
    plain = browser_response_head(RESPONSE, resp, chunked=False, close=False)
    closing = browser_response_head(RESPONSE, resp, chunked=False, close=True)
    chunked = browser_response_head(RESPONSE, resp, chunked=True, close=False)
    assert plain == (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Tabs: v \r\n"
                     b"Content-Length: 13\r\n\r\n")
    assert closing == plain[:-2] + b"Connection: close\r\n\r\n"
    assert chunked == plain[:-2] + b"Transfer-Encoding: chunked\r\n\r\n"
    assert browser_response_head(RESPONSE, resp, chunked=False, close=False) == plain
