"""The HTTP relay: one request streamed to a workspace and its answer streamed back.

Bodies are never buffered whole: both directions move chunk by chunk with aiohttp's flow
control, so a 1 GiB upload or download holds only a few socket buffers. There is no total
timeout on a stream (long downloads and SSE must not be cut), only a connect timeout.

aiohttp's client reads answers leniently; an answer the fast path would refuse (a malformed
head as strict llhttp reads it, a framing header named in Connection, a Transfer-Encoding other
than chunked, a 101 to a plain request) is refused here too, with 502, so neither path relays
what the other refuses. One gap remains: line ends aiohttp's client tolerates (bare LF) leave
no trace in what it hands back, so only the fast path refuses those.
"""

from __future__ import annotations

import aiohttp
import httptools
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from ...responses import RelayedResponse
from ..headers import downstream_response_headers, names_framing

CONNECT_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=None, sock_connect=10,
                                        sock_read=None)
_NO_BODY_STATUS = frozenset({204, 304})
# aiohttp's client adds these when absent; a transparent proxy must not invent them.
_NO_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")


class UpstreamFailed(Exception):
    """The workspace refused or reset the connection before answering (answered with 502)."""


class UpstreamBroken(Exception):
    """The workspace answered with something the gateway does not relay (answered with 502)."""


class _HeadEnd:
    """llhttp callback target: only whether the head was read to its end."""

    __slots__ = ("complete",)

    def __init__(self) -> None:
        self.complete = False

    def on_headers_complete(self) -> None:
        self.complete = True


def refusal(upstream: aiohttp.ClientResponse) -> str | None:
    """Why the fast path would not relay this answer (None: it would). The head is rebuilt
    from the raw header lines as aiohttp's lenient parser split them, and read by llhttp in
    strict mode, as the fast path reads every head."""
    if upstream.status < 200:
        return f"an unasked-for {upstream.status} answer"
    if names_framing(upstream.headers):
        return "its Connection header names a framing header"
    if any(v.strip().lower() != "chunked" for v in upstream.headers.getall("Transfer-Encoding",
                                                                           ())):
        return "a Transfer-Encoding other than chunked"
    head = [b"HTTP/1.1 %d -\r\n" % upstream.status]
    for name, value in upstream.raw_headers:
        head += (name, b": ", value, b"\r\n")
    head.append(b"\r\n")
    seen = _HeadEnd()
    try:
        httptools.HttpResponseParser(seen).feed_data(b"".join(head))
    except httptools.HttpParserUpgrade:
        pass
    except httptools.HttpParserError:
        return "a malformed head"
    return None if seen.complete else "a malformed head"


async def relay_http(
    request: web.Request,
    client: aiohttp.ClientSession,
    url: URL,
    headers: CIMultiDict[str],
) -> web.StreamResponse:
    """Send ``request`` to ``url`` and stream the answer back. Raises UpstreamFailed when
    nothing was answered, UpstreamBroken for an answer not to relay (``refusal``); a failure
    mid-stream just ends the response."""
    data = request.content if request.body_exists else None
    try:
        upstream = await client.request(
            request.method, url, headers=headers, data=data, allow_redirects=False,
            timeout=CONNECT_TIMEOUT, skip_auto_headers=_NO_AUTO_HEADERS,
        )
    except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, OSError) as exc:
        raise UpstreamFailed(str(exc) or type(exc).__name__) from None
    why = refusal(upstream)
    if why is not None:
        upstream.close()  # never reused: its framing is in doubt
        raise UpstreamBroken(why)
    try:
        response = RelayedResponse(status=upstream.status, reason=upstream.reason,
                                   headers=downstream_response_headers(upstream.headers))
        no_body = request.method == "HEAD" or upstream.status in _NO_BODY_STATUS
        if upstream.content_length is not None:
            response.content_length = upstream.content_length
        elif not no_body and request.version >= (1, 1):
            response.enable_chunked_encoding()
        await response.prepare(request)
        if not no_body:
            async for chunk in upstream.content.iter_any():
                await response.write(chunk)
        await response.write_eof()
        return response
    except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError):
        # The workspace went away mid-stream: the browser sees a truncated body.
        if request.transport is not None:
            request.transport.close()
        return response
    finally:
        upstream.release()
