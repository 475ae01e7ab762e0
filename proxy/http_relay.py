"""The HTTP relay: one request streamed to a workspace and its answer streamed back.

Bodies are never buffered whole: both directions move chunk by chunk with aiohttp's flow
control, so a 1 GiB upload or download holds only a few socket buffers. There is no total
timeout on a stream (long downloads and SSE must not be cut), only a connect timeout.
"""

from __future__ import annotations

import aiohttp
from aiohttp import web
from multidict import CIMultiDict
from yarl import URL

from .headers import downstream_response_headers

CONNECT_TIMEOUT = aiohttp.ClientTimeout(total=None, connect=None, sock_connect=10,
                                        sock_read=None)
_NO_BODY_STATUS = frozenset({204, 304})
# aiohttp's client adds these when absent; a transparent proxy must not invent them.
_NO_AUTO_HEADERS = ("User-Agent", "Accept", "Accept-Encoding", "Content-Type")


class UpstreamFailed(Exception):
    """The workspace refused or reset the connection before answering (answered with 502)."""


async def relay_http(
    request: web.Request,
    client: aiohttp.ClientSession,
    url: URL,
    headers: CIMultiDict[str],
) -> web.StreamResponse:
    """Send ``request`` to ``url`` and stream the answer back. Raises UpstreamFailed when
    nothing was answered; a failure mid-stream just ends the response."""
    data = request.content if request.body_exists else None
    try:
        upstream = await client.request(
            request.method, url, headers=headers, data=data, allow_redirects=False,
            timeout=CONNECT_TIMEOUT, skip_auto_headers=_NO_AUTO_HEADERS,
        )
    except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, OSError) as exc:
        raise UpstreamFailed(str(exc) or type(exc).__name__) from None
    try:
        response = web.StreamResponse(status=upstream.status, reason=upstream.reason,
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
