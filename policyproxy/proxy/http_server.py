"""aiohttp's HTTP server, with the whole request head timed: now only for WebSocket upgrades, which
``h1_server`` hands over (the relay needs aiohttp's ``WebSocketResponse``); every other request is
served by ``h1_server``.

aiohttp's parser times nothing between a request's first byte and its last header line, so a client
dripping one header line a second would keep its connection forever. Each connection here arms a
timer when a read leaves a head incomplete (from the listener's deadline for the first one) and
disarms it when the head is parsed (the handler is called): at the deadline it is answered 408 and
closed.
Connections still sending a head count against ``HeadGate``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from policyproxy import responses
from policyproxy.proxy.context import HeadGate

Handler = Callable[[web.BaseRequest], Awaitable[web.StreamResponse]]
_EMPTY_LINE = (b"\r", b"\n")


def web_response(answer: responses.Answer) -> web.Response:
    return web.Response(status=answer.status, body=answer.body, headers=dict(answer.headers))


def http_options(keepalive_timeout: float) -> dict[str, Any]:
    return {"auto_decompress": False, "keepalive_timeout": keepalive_timeout, "max_line_size": 16 * 1024,
            "max_field_size": 16 * 1024, "access_log": None, "handler_cancellation": True}


class TimedHandler(web.RequestHandler):
    """aiohttp's connection protocol, plus the head timer."""

    __slots__ = ("awaiting_head", "deadline", "gate", "head_timeout", "timer")

    def __init__(self, manager: TimedServer, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self.gate = manager.gate
        self.head_timeout = manager.head_timeout
        self.awaiting_head = True
        self.timer: asyncio.TimerHandle | None = None
        self.deadline: float | None = None   # set by a listener that already read part of the head

    def data_received(self, data: bytes) -> None:
        # A head that arrives whole in one read (the usual case) is never timed: no timer per request.
        # Empty lines before a request line are skipped by the parser, so a read starting with one is
        # timed as well (else "\r\n\r\n" dripped forever would hold the connection).
        if self.awaiting_head and self.timer is None and (data[:1] in _EMPTY_LINE or b"\r\n\r\n" not in data):
            self.arm()
        super().data_received(data)

    def arm(self) -> None:
        if self.transport is None or not self.gate.enter():
            if self.transport is not None:
                self.transport.close()
            return
        loop = asyncio.get_running_loop()
        self.timer = loop.call_at(self.deadline or loop.time() + self.head_timeout, self._expire)
        self.deadline = None

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
            self.gate.leave()

    def head_parsed(self) -> None:
        self.awaiting_head = False
        self.disarm()

    def request_done(self) -> None:
        self.awaiting_head = True

    def _expire(self) -> None:
        self.timer = None
        self.gate.leave()
        if self.transport is not None:
            self.transport.write(responses.to_bytes(responses.head_timeout()))
            self.transport.close()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.disarm()
        super().connection_lost(exc)


class TimedServer(web.Server):
    """A ``web.Server`` whose connections are ``TimedHandler``s and whose handler marks heads parsed."""

    def __init__(self, handler: Handler, gate: HeadGate, head_timeout: float, keepalive_timeout: float) -> None:
        options = http_options(keepalive_timeout)
        super().__init__(self._timed, **options)
        # What web.Server hands each RequestHandler (all but its own handler_cancellation).
        self.handler_options = {k: v for k, v in options.items() if k != "handler_cancellation"}
        self.inner = handler
        self.gate = gate
        self.head_timeout = head_timeout

    async def _timed(self, request: web.BaseRequest) -> web.StreamResponse:
        protocol = request.protocol
        if isinstance(protocol, TimedHandler):
            protocol.head_parsed()
        try:
            return await self.inner(request)
        finally:
            if isinstance(protocol, TimedHandler):
                protocol.request_done()

    def __call__(self) -> TimedHandler:
        return TimedHandler(self, loop=asyncio.get_running_loop(), **self.handler_options)

    def take(self, transport: asyncio.Transport, first: bytes = b"", deadline: float | None = None) -> None:
        """Serve ``transport`` (reading paused) from here on; ``first`` is what was already read of it."""
        handler = self()
        handler.deadline = deadline
        transport.set_protocol(handler)
        handler.connection_made(transport)
        if first:
            handler.data_received(first)   # timed from ``deadline`` if the head is not complete yet
        transport.resume_reading()
