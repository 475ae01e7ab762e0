"""Message heads for the fast path: parsed by llhttp (httptools) in its strict mode, rewritten
as bytes by the rules of ``relay.headers`` (its ``REQUEST_RULES`` table, applied to the raw
header list).

Parsing only ever sees one head at a time (the caller cuts it at the blank line), so body
framing stays with the relay and the byte offsets of every message are known exactly: that is
what lets a connection be handed to aiohttp, or a request be replayed, at any request boundary.
A head llhttp rejects (CL + TE, duplicate Content-Length, obs-fold, bare LF, ...) is not the
fast path's business: the caller hands the connection to aiohttp, which answers 400.
"""

from __future__ import annotations

import httptools

from .. import headers as rules

HEAD_END = b"\r\n\r\n"
MAX_HEAD = 65536  # aiohttp's max_field_size for this app; longer heads go to aiohttp
MEMO_MAX = 8192  # longer heads are read afresh each time, not kept between requests

_FRAMING = frozenset(n.encode() for n in rules.FRAMING)  # named in Connection: refused
_UNDERSCORED = frozenset(n.encode() for n in rules.UNDERSCORED)  # dropped in every -/_ spelling

# ``rules.REQUEST_RULES`` by lower-cased name as bytes, for the request rewrite. Sec-WebSocket-*
# stay: the workspace answers the browser's own handshake (the splice relays its 101).
# (plain ints in the per-header loop; Rule.DROP has no branch there: the header is not written)
_KEEP, _XFF, _COOKIE, _AUTH, _HOST = (int(r) for r in (rules.Rule.KEEP, rules.Rule.XFF,
                                                      rules.Rule.COOKIE, rules.Rule.AUTH,
                                                      rules.Rule.HOST))
_REQUEST_ACTION: dict[bytes, int] = {
    n.encode(): int(rule) for n, rule in rules.REQUEST_RULES.items()
    if rule != rules.Rule.HANDSHAKE}
_RESPONSE_DROP = frozenset(n.encode() for n in rules.HOP_BY_HOP)
_OWS = (32, 9)  # SP, HTAB as ints (a byte of bytes)


# Request headers the fast path looks at, by lower-cased name.
(_H_HOST, _H_COOKIE, _H_AUTH, _H_LENGTH, _H_TE, _H_CONNECTION, _H_UPGRADE, _H_ORIGIN,
 _H_REMOTE_USER) = range(1, 10)
_SPECIAL = {b"host": _H_HOST, b"cookie": _H_COOKIE, b"authorization": _H_AUTH,
            b"content-length": _H_LENGTH, b"transfer-encoding": _H_TE,
            b"connection": _H_CONNECTION, b"upgrade": _H_UPGRADE, b"origin": _H_ORIGIN,
            b"remote_user": _H_REMOTE_USER}


def header_lines(head: bytes, eol: int) -> list[tuple[bytes, bytes, bytes]]:
    """The header lines after the head's first line (whose CRLF is at ``eol``) as (name,
    lower-cased name, value), in one pass. Only for a head llhttp accepted in strict mode:
    every line ends in CRLF, a name is a token followed directly by ":", a value has no CR,
    LF or NUL, so finding LF and ":" cuts each line exactly as llhttp did (values keep
    trailing whitespace and lose leading whitespace, as llhttp's callbacks give them). Each
    name and value is one slice of ``head``: a long Cookie is copied once."""
    end = len(head) - 2  # the blank line's CRLF
    pos = eol + 2
    find = head.find
    lines: list[tuple[bytes, bytes, bytes]] = []
    append = lines.append
    while pos < end:
        nl = find(b"\n", pos) - 1  # the line's CR
        colon = find(b":", pos, nl)
        name = head[pos:colon]
        pos = nl + 2
        colon += 1
        if head[colon] == 32 and head[colon + 1] not in _OWS:  # ": value", the usual
            value = head[colon + 1:nl]
        else:
            value = head[colon:nl].lstrip(b" \t")
        append((name, name.lower(), value))
    return lines


class Rewritten:
    """The header lines upstream_request_head last wrote for one header block, and the
    arguments it wrote them for (the request line is written per request)."""

    __slots__ = ("key", "lines")

    def __init__(self) -> None:
        self.key: tuple[bytes, bytes, bytes, bytes, bytes | None, str, bool, bytes] | None = None
        self.lines = b""


class RequestHead:
    """One request head: its request line as llhttp read it, its headers as one pass over the
    head block read them (``RequestReader``). Where a header may repeat, the first one counts
    (as aiohttp's ``headers.get`` reads it); a second Cookie or Authorization header
    (``credentials_repeated``) is aiohttp's to judge. Never changed once read: a connection
    that sends the same head again gets the same object back."""

    __slots__ = ("target", "headers", "method", "keep_alive", "upgrade", "content_length",
                 "chunked", "host", "cookie", "authorization", "upgrade_to", "origin",
                 "connection", "named", "remote_user", "credentials_repeated", "memo", "placed")

    def __init__(self) -> None:
        self.target = b""
        self.headers: list[tuple[bytes, bytes, bytes]] = []  # (name, lower name, value)
        self.chunked = self.upgrade = False
        self.keep_alive = True
        self.method = b""
        self.content_length = -1
        self.host: bytes | None = None
        self.cookie: bytes | None = None
        self.authorization: bytes | None = None
        self.upgrade_to: bytes | None = None
        self.origin: bytes | None = None
        self.connection: list[bytes] | None = None
        # the names listed in Connection (connection_tokens), read once by RequestReader for
        # its checks and again by the rewrite
        self.named: frozenset[bytes] | None = None
        # REMOTE_USER present: identity may come from a trusted peer, which only aiohttp
        # decides (proxy.sessions.trusted), so such a request is always handed off
        self.remote_user = False
        self.credentials_repeated = False
        # upstream_request_head's last answer for this header block, shared by every
        # RequestHead read from the same block
        self.memo = Rewritten()
        # the gate's last plan for this very head: (user, plan); see Gate.plan
        self.placed: tuple[str, object] | None = None

    def read_headers(self, head: bytes, eol: int) -> None:
        """The fields the fast path looks at, from the header lines (``header_lines``)."""
        self.headers = headers = header_lines(head, eol)
        for _, low, value in headers:
            kind = _SPECIAL.get(low)
            if kind is None:
                continue
            if kind == _H_COOKIE:
                if self.cookie is None:
                    self.cookie = value
                else:
                    self.credentials_repeated = True
            elif kind == _H_HOST:
                if self.host is None:
                    self.host = value
            elif kind == _H_AUTH:
                if self.authorization is None:
                    self.authorization = value
                else:
                    self.credentials_repeated = True
            elif kind == _H_LENGTH:
                self.content_length = int(value)  # llhttp has checked: digits, one header
            elif kind == _H_TE:
                self.chunked = value.strip().lower() == b"chunked"
                if not self.chunked:
                    self.content_length = -2  # a coding the fast path does not relay
            elif kind == _H_CONNECTION:
                if self.connection is None:
                    self.connection = [value]
                else:
                    self.connection.append(value)
            elif kind == _H_UPGRADE:
                self.upgrade_to = value
            elif kind == _H_REMOTE_USER:
                self.remote_user = True
            elif self.origin is None:
                self.origin = value

    def with_line(self, method: bytes, target: bytes, upgrade: bool) -> RequestHead:
        """The same header block under another request line."""
        req = RequestHead.__new__(RequestHead)
        req.method = method
        req.target = target
        req.upgrade = upgrade
        req.headers = self.headers
        req.keep_alive = self.keep_alive
        req.content_length = self.content_length
        req.chunked = self.chunked
        req.host = self.host
        req.cookie = self.cookie
        req.authorization = self.authorization
        req.upgrade_to = self.upgrade_to
        req.origin = self.origin
        req.connection = self.connection
        req.named = self.named
        req.remote_user = self.remote_user
        req.credentials_repeated = self.credentials_repeated
        req.memo = self.memo
        req.placed = None
        return req


class _Ends:
    """llhttp's callback target: the request line and the ends of the head and the message
    only, so llhttp calls back into Python three times per head, never once per header."""

    __slots__ = ("target", "head_done", "message_done")

    def __init__(self) -> None:
        self.target = b""
        self.head_done = self.message_done = False

    def on_url(self, url: bytes) -> None:
        self.target += url

    def on_headers_complete(self) -> None:
        self.head_done = True

    def on_message_complete(self) -> None:
        self.message_done = True


class RequestReader:
    """Reads the request heads of one browser connection. llhttp (strict) decides whether a
    head is valid and how its message is framed, on every head that differs from the one
    before; the header lines are then read in one pass (``RequestHead.read_headers``), not by
    a callback per header. What a connection sends again is not read again: the same head
    bytes give the same RequestHead, the same header block under another request line
    shares what was read from it. One llhttp parser serves the connection while each message
    ends with its head (no body, no upgrade, not the last). Only heads up to ``MEMO_MAX``
    are kept between requests: an idle connection holds no more than that."""

    __slots__ = ("_parser", "_ends", "_line", "_block", "_req")

    def __init__(self) -> None:
        self._parser: httptools.HttpRequestParser | None = None
        self._ends = _Ends()
        # the last head kept (its request line and its header block), and what it gave
        self._line = self._block = b""
        self._req: RequestHead | None = None

    def read(self, head: bytes) -> RequestHead | None:
        """The head (ending in CRLFCRLF) as llhttp reads it, or None when it is not an
        HTTP/1.1 request the fast path relays (malformed, HTTP/1.0, an unrelayable
        Transfer-Encoding, a framing header named in Connection, a repeated credential
        header): aiohttp answers."""
        block = self._block
        if (block and head.endswith(block) and head.startswith(self._line)
                and len(head) == len(self._line) + len(block)):
            return self._req  # the same bytes: the same verdict, the same framing
        ends = self._ends
        parser = self._parser
        if parser is None:
            parser = self._parser = httptools.HttpRequestParser(ends)
        ends.target = b""
        ends.head_done = ends.message_done = False
        try:
            parser.feed_data(head)
        except httptools.HttpParserUpgrade:
            self._parser = None  # the head ends there and the rest is another protocol's
        except httptools.HttpParserError:
            self._parser = None
            return None
        if not ends.message_done:
            self._parser = None  # a body follows, or an upgrade: the next head gets a new one
        eol = head.find(b"\r\n")  # llhttp accepted the request line: it ends in the version
        if not ends.head_done or head[eol - 9:eol] != b" HTTP/1.1":
            return None
        method = parser.get_method()
        upgrade = parser.should_upgrade()
        last = self._req
        if last is not None and len(head) - eol == len(block) and head.endswith(block):
            req = last.with_line(method, ends.target, upgrade)
        else:
            req = RequestHead()
            req.read_headers(head, eol)
            if req.content_length == -2 or req.credentials_repeated:
                return None
            if req.connection is not None:
                req.named = named = connection_tokens(req.connection)
                if not _FRAMING.isdisjoint(named):
                    return None
                # (llhttp's should_keep_alive() forgets Connection: close once a message is
                # complete)
                req.keep_alive = b"close" not in named
            req.method = method
            req.target = ends.target
            req.upgrade = upgrade
            if len(head) <= MEMO_MAX:
                block = head[eol:]
            else:
                block = b""
                last = None
        if not req.keep_alive:
            self._parser = None  # llhttp refuses any message after Connection: close
        if block:
            self._line = head[:eol]
            self._block = block
            self._req = req
        elif last is None:
            self._line = self._block = b""
            self._req = None
        return req


def connection_tokens(values: list[bytes]) -> frozenset[bytes]:
    """The lower-cased names listed in Connection headers."""
    return frozenset(t.strip().lower() for v in values for t in v.split(b","))


def head_never_ends(partial: bytes) -> bool:
    """A head without its CRLFCRLF yet that the fast path will never relay: longer than
    MAX_HEAD, or a line ended by a bare LF (llhttp's strict mode refuses those, and its blank
    line may never be CRLFCRLF, so waiting for one could hang the connection)."""
    return len(partial) > MAX_HEAD or b"\n\n" in partial or b"\n\r\n" in partial


def _feed(parser: httptools.HttpResponseParser, head: bytes) -> bool:
    """Run llhttp over a whole head; False when it is malformed (an upgrade is not an error:
    the head ends there and the rest is another protocol's)."""
    try:
        parser.feed_data(head)
    except httptools.HttpParserUpgrade:
        pass
    except httptools.HttpParserError:
        return False
    return True


def parse_request_head(head: bytes) -> RequestHead | None:
    """One head on its own (``RequestReader.read`` on a fresh reader)."""
    return RequestReader().read(head)


def session_cookie_out(cookie: bytes, cookie_name: str) -> bytes | None:
    """The Cookie header value to forward: ``proxy.relay.headers.strip_session_cookie`` on the
    value as aiohttp decodes it; None when nothing is left."""
    if cookie_name.encode() not in cookie:
        return cookie
    kept = rules.strip_session_cookie(cookie.decode("utf-8", "surrogateescape"), cookie_name)
    return kept.encode("utf-8", "surrogateescape") if kept else None


def upstream_request_head(req: RequestHead, target: bytes, *, user: bytes, client_ip: bytes,
                          prefix: bytes, session_token: bytes, cookie_out: bytes | None,
                          cookie_name: str, websocket: bool, route_auth: bytes = b"") -> bytes:
    """The head to send the workspace, by ``proxy.relay.headers.upstream_request_headers``' rules:
    hop-by-hop, Connection-named, identity and forwarding headers out, the session credential
    out, hatchway's X-Forwarded-* and REMOTE_USER in. ``cookie_out`` is the first Cookie
    header already stripped (``session_cookie_out``). A WebSocket handshake keeps its
    Sec-WebSocket-* headers: the workspace answers the browser's own handshake.

    The header lines depend on the header block and these arguments only: written once for
    the block (``req.memo``), again only when an argument differs (another user, route
    secret, credential)."""
    key = (user, client_ip, prefix, session_token, cookie_out, cookie_name, websocket,
           route_auth)
    memo = req.memo
    if memo.key != key:
        memo.lines = _header_lines(req, user=user, client_ip=client_ip, prefix=prefix,
                                   session_token=session_token, cookie_out=cookie_out,
                                   cookie_name=cookie_name, websocket=websocket,
                                   route_auth=route_auth)
        memo.key = key
    return b"%s %s HTTP/1.1\r\n%s" % (req.method, target, memo.lines)


def _header_lines(req: RequestHead, *, user: bytes, client_ip: bytes, prefix: bytes,
                  session_token: bytes, cookie_out: bytes | None, cookie_name: str,
                  websocket: bool, route_auth: bytes) -> bytes:
    """upstream_request_head after its request line, blank line included."""
    drop = req.named
    out: list[bytes] = []
    prior_xff = b""
    first_cookie = req.cookie
    for name, low, value in req.headers:
        action = _REQUEST_ACTION.get(low, _KEEP)
        if action == _KEEP:
            if b"_" in low and low.replace(b"_", b"-") in _UNDERSCORED:
                continue
            if drop is None or low not in drop:
                out += (name, b": ", value, b"\r\n")
            continue
        if drop is not None and low in drop:
            continue
        if action == _HOST:
            out += (name, b": ", value, b"\r\n")
        elif action == _COOKIE:
            kept = cookie_out if value is first_cookie else session_cookie_out(value,
                                                                               cookie_name)
            if kept:
                out += (name, b": ", kept, b"\r\n")
        elif action == _AUTH:
            if not route_auth and value.partition(b" ")[2].strip() != session_token:
                out += (name, b": ", value, b"\r\n")
        elif action == _XFF:
            prior_xff = value if not prior_xff else prior_xff + b", " + value
    out += (b"X-Forwarded-For: ", prior_xff + b", " + client_ip if prior_xff else client_ip,
            b"\r\nX-Forwarded-Proto: http\r\n")
    if req.host:
        out += (b"X-Forwarded-Host: ", req.host, b"\r\n")
    out += (b"X-Forwarded-Prefix: ", prefix, b"\r\nREMOTE_USER: ", user, b"\r\n")
    if route_auth:  # the workspace's secret (Route.auth), never the client's credential
        out += (b"Authorization: ", route_auth, b"\r\n")
    if req.chunked:
        out.append(b"Transfer-Encoding: chunked\r\n")
    if websocket:
        out.append(b"Connection: Upgrade\r\nUpgrade: websocket\r\n")
    out.append(b"\r\n")
    return b"".join(out)


class ResponseHead:
    """One response head as llhttp judged it and ``header_lines`` read it. Never changed once
    read (a connection that gets the same head again gets the same object back)."""

    __slots__ = ("headers", "status", "keep_alive", "content_length", "chunked",
                 "connection", "named", "out")

    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes, bytes]] = []
        self.chunked = False
        self.keep_alive = True
        self.status = 0
        self.content_length = -1
        self.connection: list[bytes] | None = None
        self.named: frozenset[bytes] | None = None  # as RequestHead.named
        # browser_response_head's answers, by chunked * 2 + close
        self.out: list[bytes | None] = [None, None, None, None]

    def read_headers(self, head: bytes, eol: int) -> None:
        self.headers = headers = header_lines(head, eol)
        for _, low, value in headers:
            kind = _SPECIAL.get(low)
            if kind == _H_LENGTH:
                self.content_length = int(value)
            elif kind == _H_TE:
                self.chunked = value.strip().lower() == b"chunked"
                if not self.chunked:
                    self.content_length = -2
            elif kind == _H_CONNECTION:
                if self.connection is None:
                    self.connection = [value]
                else:
                    self.connection.append(value)


class _HeadEnd:
    """llhttp's callback target for a response: only the end of the head."""

    __slots__ = ("done",)

    def __init__(self) -> None:
        self.done = False

    def on_headers_complete(self) -> None:
        self.done = True


class ResponseReader:
    """Reads the response heads of one workspace connection: llhttp (strict) judges each head
    that differs from the one before, ``header_lines`` reads it; the same head again (up to
    ``MEMO_MAX``) is not read again."""

    __slots__ = ("_head", "_resp")

    def __init__(self) -> None:
        self._head = b""
        self._resp: ResponseHead | None = None

    def read(self, head: bytes) -> ResponseHead | None:
        """The workspace's response head, or None when it is malformed or names a framing
        header in Connection (relayed, the browser would read it framed differently)."""
        if head == self._head:
            return self._resp
        end = _HeadEnd()
        parser = httptools.HttpResponseParser(end)
        if not _feed(parser, head) or not end.done:
            return None
        resp = ResponseHead()
        resp.read_headers(head, head.find(b"\r\n"))
        if resp.content_length == -2:
            return None
        named = resp.named = (connection_tokens(resp.connection) if resp.connection is not None
                              else None)
        if named is not None and not _FRAMING.isdisjoint(named):
            return None
        resp.status = parser.get_status_code()
        resp.keep_alive = head.startswith(b"HTTP/1.1 ") and (named is None
                                                            or b"close" not in named)
        if len(head) <= MEMO_MAX:
            self._head = head
            self._resp = resp
        return resp


def parse_response_head(head: bytes) -> ResponseHead | None:
    """One response head on its own (``ResponseReader.read`` on a fresh reader)."""
    return ResponseReader().read(head)


def browser_response_head(head: bytes, resp: ResponseHead, *, chunked: bool,
                          close: bool) -> bytes:
    """The head for the browser: the workspace's status, its headers minus hop-by-hop and
    Connection-named ones, this hop's own framing and Connection. ``resp`` is ``head`` as
    read: written once per framing and Connection (``resp.out``)."""
    at = 2 * chunked + close
    done = resp.out[at]
    if done is not None:
        return done
    drop = resp.named
    out = [b"HTTP/1.1", head[8:head.find(b"\r\n") + 2]]  # " 200 OK\r\n"
    for name, low, value in resp.headers:
        if low in _RESPONSE_DROP or (drop is not None and low in drop):
            continue
        out += (name, b": ", value, b"\r\n")
    if chunked:
        out.append(b"Transfer-Encoding: chunked\r\n")
    if close:
        out.append(b"Connection: close\r\n")
    out.append(b"\r\n")
    resp.out[at] = done = b"".join(out)
    return done
