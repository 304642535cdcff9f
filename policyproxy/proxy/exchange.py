"""``Exchange``: the client's side of one request, whatever the client speaks.

``pipeline.forward`` reads the request (method, headers, body) and answers through this seam, so an
HTTP/1.1 request (``h1_server.H1Exchange``; aiohttp's ``BaseRequest`` for a WebSocket upgrade) and an
HTTP/2 stream (``h2_server``) take the same walk:
decide -> inspect -> send -> restore, one event. An answer is either whole (``reply``) or a head, a
streamed body and an end with optional trailers (``start``, ``write``, ``end``); ``abort`` ends the
client's view of it abruptly so a truncated upstream body is never presented as complete.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, Protocol

from aiohttp import web

from policyproxy import responses
from policyproxy.proxy.http_server import web_response
from policyproxy.proxy.websocket import is_upgrade

Headers = Sequence[tuple[str, str]]


class Exchange(Protocol):
    method: str
    headers: Mapping[str, str]   # case-insensitive lookups; ``items()`` gives every field in order
    http2: bool                  # the client speaks HTTP/2 (the upstream may be asked for it too)

    @property
    def body_exists(self) -> bool: ...

    @property
    def upgrade(self) -> bool:
        """A WebSocket upgrade (HTTP/1.1 only)."""
        ...

    def body(self) -> AsyncIterator[bytes]:
        """The request body as it arrives (flow-controlled: read as it is consumed)."""
        ...

    def upstream_body(self) -> Any:
        """The request body in the form the upstream client takes (streamed, not buffered)."""
        ...

    async def expect_continue(self) -> None:
        """Tell a client waiting on ``Expect: 100-continue`` to send its body."""
        ...

    async def answer(self, rendered: responses.Answer) -> None:
        """One of the proxy's own answers (``responses``)."""
        ...

    async def reply(self, status: int, reason: str, headers: Headers, body: bytes,
                    trailers: Headers = ()) -> None:
        """An upstream's whole answer in one go."""
        ...

    async def start(self, status: int, reason: str, headers: Headers, length: int | None) -> None: ...

    async def write(self, data: bytes) -> None: ...

    async def end(self, trailers: Headers = ()) -> None: ...

    def alive(self) -> bool:
        """The client can still be written to."""
        ...

    def abort(self) -> None:
        """End the answer abruptly: the client sees a truncation, never a complete body."""
        ...


class AiohttpExchange:
    """An HTTP/1.1 request served by aiohttp (a WebSocket upgrade ``h1_server`` handed over); the handler
    returns ``response`` when ``forward`` is done."""

    __slots__ = ("headers", "method", "request", "response")

    http2 = False

    def __init__(self, request: web.BaseRequest) -> None:
        self.request = request
        self.method = request.method
        self.headers: Mapping[str, str] = request.headers
        self.response: web.StreamResponse | None = None

    @property
    def body_exists(self) -> bool:
        return self.request.body_exists

    @property
    def upgrade(self) -> bool:
        return is_upgrade(self.request)

    async def body(self) -> AsyncIterator[bytes]:
        async for chunk in self.request.content.iter_any():
            yield chunk

    def upstream_body(self) -> Any:
        return self.request.content

    async def expect_continue(self) -> None:
        await self.request.writer.write(responses.CONTINUE)

    async def answer(self, rendered: responses.Answer) -> None:
        self.response = web_response(rendered)   # aiohttp prepares it once the handler returns

    async def reply(self, status: int, reason: str, headers: Headers, body: bytes,
                    trailers: Headers = ()) -> None:
        # Head and body in one write (one TLS record, one send) instead of two; Content-Length is the body's.
        response = self.response = web.Response(status=status, reason=reason, headers=list(headers), body=body)
        await response.prepare(self.request)
        await response.write_eof()

    async def start(self, status: int, reason: str, headers: Headers, length: int | None) -> None:
        response = self.response = web.StreamResponse(status=status, reason=reason, headers=list(headers))
        if length is not None:
            response.content_length = length
        await response.prepare(self.request)

    async def write(self, data: bytes) -> None:
        assert self.response is not None
        await self.response.write(data)

    async def end(self, trailers: Headers = ()) -> None:
        assert self.response is not None
        await self.response.write_eof()   # HTTP/1.1 trailers are not relayed (aiohttp cannot write them)

    def alive(self) -> bool:
        transport = self.request.transport
        return transport is not None and not transport.is_closing()

    def abort(self) -> None:
        if self.request.transport is not None:
            self.request.transport.close()
