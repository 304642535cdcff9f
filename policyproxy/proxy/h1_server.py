"""A lean HTTP/1.1 server for client connections (inside tunnels: ``H1Server``; the plain listener:
``H1Listener``): one asyncio Protocol per connection, llhttp parsing.

Why not aiohttp's server: its request/response machinery (``RequestHandler``, ``StreamResponse``,
``StreamWriter``, a ``BaseRequest`` per request) was about a sixth of the proxy's CPU per intercepted
request. Here ``httptools`` (llhttp) parses straight into an ``H1Exchange``, the ``exchange.Exchange``
that ``pipeline.forward`` answers through, and an answer is one ``transport.write`` of head and body.

Rules kept from ``http_server.TimedHandler`` (the shell tests pin them): the whole head is timed (408,
the first one from the listener's deadline) and counted against ``HeadGate`` while it is incomplete;
idle keep-alive connections close after ``keepalive_timeout``; a request line or field over 16 KiB,
or a head over ``max_head_bytes``, is answered 431; a head llhttp refuses (CL with TE, duplicate or
invalid Content-Length, obs-fold, bare LF, a bad chunk size), a transfer coding other than chunked
(in one field or several), no Host or two (HTTP/1.1) get 400 with the reason, and the connection
closes after any such answer. Pipelined requests are parsed ahead (reading then pauses; beyond
``MAX_AHEAD`` a 429) and served one at a time, in order. A client that disconnects
cancels its request's ``forward`` (as aiohttp's ``handler_cancellation``), which ends the upstream
request; ``forward``'s ``finally`` still reports its one event. One that only shuts its side once its
requests are written (a half-close, outside TLS) still gets their answers.

A WebSocket upgrade is handed, head re-serialised plus what followed it, to aiohttp's server
(``http_server.TimedServer``): the relay needs aiohttp's ``WebSocketResponse``.
"""

from __future__ import annotations

import asyncio
import collections
import email.utils
import http
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Protocol

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

from policyproxy import responses
from policyproxy.proxy.context import HeadGate
from policyproxy.proxy.exchange import Headers

log = logging.getLogger("policyproxy")

MAX_LINE = 16 * 1024        # a request line or one header field (as aiohttp's max_line_size/max_field_size)
HIGH_WATER = 256 * 1024     # request body bytes buffered unread before the client is no longer read
MAX_AHEAD = 128             # requests parsed ahead of their answers (pipelined): beyond, a 429 and a close
LINGER_BYTES = 1024 * 1024  # body bytes of an answered request read and dropped to keep the connection
LINGER_SECONDS = 5.0        # ... and for how long, before it is closed instead
_CLOSE_GRACE = 0.5          # seconds a stop waits for a closed connection's TLS close_notify exchange
_EMPTY_LINE = (b"\r", b"\n")
_NO_BODY_STATUS = (204, 304)


class ClientGone(ConnectionResetError):
    """The client closed its connection while its request was read or answered."""


class _Refused(Exception):
    """Raised from a parser callback: the request is answered ``status`` and the connection closed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _HandOver(Exception):
    """Raised from the head callback of a WebSocket upgrade llhttp does not see as one."""


def _text(value: bytes) -> str:
    return value.decode("utf-8", "surrogateescape")


_dated: dict[int, str] = {}   # the current second's IMF-fixdate, formatted once a second


def _date() -> str:
    now = int(time.time())
    text = _dated.get(now)
    if text is None:
        _dated.clear()
        text = _dated[now] = email.utils.formatdate(now, usegmt=True)
    return text


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


Handler = Callable[["H1Exchange"], Awaitable[None]]


class Taker(Protocol):
    """What a connection is handed to with what was read of it (``H1Listener``, aiohttp's ``TimedServer``)."""

    def take(self, transport: asyncio.Transport, first: bytes = b"", deadline: float | None = None) -> None: ...


class H1Exchange:
    """One request on an HTTP/1.1 connection: the ``exchange.Exchange`` ``forward`` reads and answers."""

    __slots__ = ("_body", "_buffered", "_close", "_continued", "_done", "_empty", "_error", "_has_body", "_waiter",
                 "chunked", "discarded", "finished", "handover", "headers", "keep_alive", "method", "server",
                 "started", "target", "version")

    http2 = False

    def __init__(self, server: H1Server, method: str, target: str, version: str, headers: CIMultiDictProxy[str],
                 keep_alive: bool, has_body: bool) -> None:
        self.server = server
        self.method = method
        self.target = target
        self.version = version
        self.headers: Mapping[str, str] = headers
        self.keep_alive = keep_alive
        self.handover = False
        self.started = False      # the answer's head went out
        self.finished = False     # the answer is complete
        self.chunked = False
        self.discarded = 0        # body bytes dropped after the answer (``linger``)
        self._empty = False       # the answer has no body (HEAD, 204, 304, 1xx)
        self._close = False       # the connection closes after this answer
        self._continued = False   # a 100 (Continue) went out
        self._has_body = has_body
        self._body: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._done = not has_body   # the request's body ended (or there is none)
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None

    # -- the request ------------------------------------------------------------------------------

    @property
    def body_exists(self) -> bool:
        return self._has_body

    @property
    def body_complete(self) -> bool:
        return self._done

    @property
    def upgrade(self) -> bool:
        return False   # WebSocket upgrades are handed to aiohttp's server before a handler sees them

    def _feed(self, data: bytes) -> None:
        if self.finished:   # answered already: the rest is read only to keep the connection
            self.discarded += len(data)
            return
        self._body.append(data)
        self._buffered += len(data)
        self._wake()

    def _end(self) -> None:
        self._done = True
        self._wake()

    def _fail(self, error: BaseException) -> None:
        if not self._done:
            self._error = error
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    async def body(self) -> AsyncIterator[bytes]:
        body = self._body
        while True:
            if body:
                chunk = body.popleft() if len(body) == 1 else b"".join(body)
                body.clear()
                self._buffered = 0
                self.server.consumed()
                yield chunk
            elif self._done:
                return
            elif self._error is not None:
                raise ClientGone("the client closed the connection before its request's body ended")
            else:
                self._waiter = self.server.loop.create_future()
                await self._waiter

    def upstream_body(self) -> Any:
        return self.body()

    async def expect_continue(self) -> None:
        if not self.started and not self._done and self.version == "1.1":
            self.server.send(responses.CONTINUE)
            self._continued = True

    # -- the answer -------------------------------------------------------------------------------

    def _head(self, status: int, reason: str, headers: Headers, length: int | None) -> list[str]:
        if self.started:
            raise RuntimeError("the answer was started already")
        server = self.server
        self._empty = self.method == "HEAD" or status in _NO_BODY_STATUS or status < 200
        lines = [f"HTTP/1.1 {status} {reason or _phrase(status)}\r\n"]
        lines += [f"{name}: {value}\r\n" for name, value in headers]
        if status in _NO_BODY_STATUS or status < 200:
            length = None   # never a length nor a body (RFC 9110 8.6, RFC 9112 6.1)
        elif length is not None:
            lines.append(f"Content-Length: {length}\r\n")
        elif not self._empty:
            if self.version == "1.1":
                self.chunked = True
                lines.append("Transfer-Encoding: chunked\r\n")
            else:   # HTTP/1.0: the body ends with the connection
                self._close = True
        if not self._done and not self._continued and self.headers.get("Expect", "").lower() == "100-continue":
            # answered without a 100: the client may never send the body, or send it after all; either
            # way its next request would be read as (part of) this body
            self._close = True
        if self._close or not self.keep_alive or server.draining:
            self._close = True
            lines.append("Connection: close\r\n")
        elif self.version == "1.0":
            lines.append("Connection: keep-alive\r\n")
        lines.append("\r\n")
        return lines

    def _encode(self, lines: list[str]) -> bytes:
        text = "".join(lines)
        if text.count("\n") != len(lines) or text.count("\r") != len(lines):   # response splitting
            raise ValueError("a header name or value holds a line break")
        self.started = True
        return text.encode("utf-8", "surrogateescape")

    async def answer(self, rendered: responses.Answer) -> None:
        # The proxy's own answer carries a Date (RFC 9110 6.6.1); relayed answers keep the upstream's fields.
        await self.reply(rendered.status, "", (*rendered.headers, ("Date", _date())), rendered.body)

    async def reply(self, status: int, reason: str, headers: Headers, body: bytes,
                    trailers: Headers = ()) -> None:
        # Head and body in one write (one TLS record, one send). HTTP/1.1 trailers are not relayed.
        head = self._encode(self._head(status, reason, headers, len(body)))
        self.server.send(head if self._empty or not body else head + body)
        self._finish()
        await self.server.writable()

    async def start(self, status: int, reason: str, headers: Headers, length: int | None) -> None:
        self.server.send(self._encode(self._head(status, reason, headers, length)))
        await self.server.writable()

    async def write(self, data: bytes) -> None:
        if self._empty or not data:
            return
        server = self.server
        if server.transport is None or server.transport.is_closing():
            raise ClientGone("the client closed the connection")
        if self.chunked:
            server.transport.writelines((b"%x\r\n" % len(data), data, b"\r\n"))
        else:
            server.transport.write(data)
        await server.writable()

    async def end(self, trailers: Headers = ()) -> None:
        if self.chunked:
            self.server.send(b"0\r\n\r\n")   # HTTP/1.1 trailers are not relayed (as before)
        self._finish()
        await self.server.writable()

    def _finish(self) -> None:
        self.finished = True
        if self._body:   # what the handler never read is not kept
            self._body.clear()
            self._buffered = 0
            self.server.consumed()

    def alive(self) -> bool:
        transport = self.server.transport
        return transport is not None and not transport.is_closing()

    def abort(self) -> None:
        """Close the connection: a truncated body is never presented as complete."""
        self.finished = True
        self._close = True
        self.server.close()


class H1Server(asyncio.Protocol):
    """One client connection speaking HTTP/1.1; a ``context.Drainable`` in ``Registry.servers``."""

    def __init__(self, handler: Handler, gate: HeadGate, head_timeout: float, keepalive_timeout: float,
                 max_head: int, websocket: Callable[[], Taker] | None = None) -> None:
        self.handler = handler
        self.gate = gate
        self.head_timeout = head_timeout
        self.keepalive_timeout = keepalive_timeout
        self.max_head = max_head
        self.websocket = websocket   # makes the aiohttp server an upgrade is handed to
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.queue: collections.deque[H1Exchange] = collections.deque()
        self.current: H1Exchange | None = None
        self.task: asyncio.Task[None] | None = None
        self.closed = False
        self.draining = False
        self.deadline: float | None = None   # set by a listener that already read part of the head
        self.done: asyncio.Future[None] = self.loop.create_future()
        # the head being parsed
        self._parsing: H1Exchange | None = None
        self._in_head = False
        self._url: list[bytes] = []
        self._url_size = 0
        self._fields_size = 0
        self._items: list[tuple[str, str]] = []
        self._head_size = 0
        # the connection
        self._timer: asyncio.TimerHandle | None = None   # the head timer (counted in ``gate``)
        self._idle: asyncio.TimerHandle | None = None
        self._idle_since: float | None = None   # when the connection went idle (None: busy)
        self._refusal: bytes | None = None   # an error answer owed once the requests before it are answered
        self._stopped = False                # the parser stopped: nothing more is read
        self._rest = bytearray()             # what followed an upgrade's head
        self._reading_paused = False
        self._writable: asyncio.Future[None] | None = None
        self._eof = False                    # the client half-closed: nothing more to read

    # -- asyncio.Protocol ---------------------------------------------------------------------------

    def take(self, transport: asyncio.Transport, first: bytes = b"", deadline: float | None = None) -> None:
        """Serve ``transport`` (reading paused) from here on; ``first`` is what was already read of it."""
        self.deadline = deadline
        transport.set_protocol(self)
        self.connection_made(transport)
        if first:
            self.data_received(first)   # timed from ``deadline`` if the head is not complete yet
        if not self.closed and not self._reading_paused:
            transport.resume_reading()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]   # uvloop's is not an asyncio.Transport subclass
        self._arm_idle()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        if self._stopped:
            self._rest += data
            return
        self._disarm_idle()
        continued = self._in_head   # this read continues a head (else one may begin in it)
        if self._timer is None and not continued and data[:1] in _EMPTY_LINE:
            self._arm()   # empty lines before a request line are skipped: dripped forever, they are timed
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            # llhttp stops after an upgrade's (or a CONNECT's) head: what follows is not HTTP/1.1.
            self._stop(data[upgrade.args[0]:])
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _HandOver):
                self._stop(b"")   # the client must wait for the 101 before it sends frames
            elif isinstance(cause, _Refused):
                self._refuse(cause.status, cause.message)
            else:   # a bug in a callback: said once, the client gets a 400, never a traceback
                log.error("parsing a request from a client failed", exc_info=cause)
                self._refuse(400, "malformed request")
        except httptools.HttpParserError as exc:
            self._refuse(400, f"malformed request: {exc}")
        if self.closed:
            return
        if self._in_head and not self._stopped:
            # A head that began in this read is counted from what llhttp reported of it (its start is
            # not known: a body or other requests may precede it); every later read counts whole.
            self._head_size += len(data) if continued else self._url_size + self._fields_size
            if self._head_size > self.max_head:
                self._refuse(431, "request head too large")
            elif self._timer is None:
                self._arm()   # this read left a head incomplete
        self._next()   # requests parsed from this read are served only now: a refusal in it drops the broken one

    def eof_received(self) -> bool | None:
        """The client shut its side: the requests it sent in full are still answered (``curl`` and
        ``nc -N`` half-close after a request), then the connection closes. One it had not finished
        sending is incomplete: the transport closes, a request in flight is cancelled (``connection_lost``).
        A TLS transport always closes (TLS has no half-close)."""
        if self._parsing is not None or self._in_head or self._stopped or (self.current is None and not self.queue) \
                or self.transport is None or self.transport.get_extra_info("sslcontext") is not None:
            return None
        self._eof = True
        last = self.queue[-1] if self.queue else self.current
        assert last is not None
        last.keep_alive = False   # the last answer says Connection: close
        return True

    def connection_lost(self, exc: BaseException | None) -> None:
        self.closed = True
        self.transport = None
        self._disarm()
        self._stop_idle()
        gone = ClientGone("the client closed the connection")
        for exchange in (self.current, self._parsing, *self.queue):
            if exchange is not None:
                exchange._fail(gone)
        self.queue.clear()
        if self.task is not None and not self.task.done():
            self.task.cancel()   # the upstream request ends with it
        if self._writable is not None:
            if not self._writable.done():
                self._writable.set_exception(gone)
                self._writable.exception()
            self._writable = None
        if not self.done.done():
            self.done.set_result(None)

    def pause_writing(self) -> None:
        if self._writable is None:
            self._writable = self.loop.create_future()

    def resume_writing(self) -> None:
        if self._writable is not None:
            if not self._writable.done():
                self._writable.set_result(None)
            self._writable = None

    async def writable(self) -> None:
        """Returns once the transport's write buffer is below its high-water mark (backpressure)."""
        if self._writable is not None:
            await self._writable
        elif self.transport is None:
            raise ClientGone("the client closed the connection")

    # -- llhttp callbacks ---------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if len(self.queue) >= MAX_AHEAD:
            # llhttp parses a whole read at once: 256 KiB of tiny pipelined requests were ~4,900 exchanges
            raise _Refused(429, f"more than {MAX_AHEAD} requests pipelined ahead of their answers")
        self._in_head = True
        self._url.clear()
        self._url_size = 0
        self._fields_size = 0
        self._items = []

    def on_url(self, url: bytes) -> None:
        self._url.append(url)
        self._url_size += len(url)
        if self._url_size > MAX_LINE:
            raise _Refused(431, "request line too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        size = len(name) + len(value)
        if size > MAX_LINE:
            raise _Refused(431, "request header field too large")
        self._fields_size += size + 4
        if self._fields_size + self._url_size > self.max_head:
            raise _Refused(431, "request head too large")
        # llhttp drops the whitespace before a value, not after it (RFC 9112 section 5: neither is part of it)
        self._items.append((_text(name), _text(value.rstrip(b" \t"))))

    def on_headers_complete(self) -> None:
        parser = self.parser
        self._in_head = False
        self._head_size = 0
        self._disarm()
        version = parser.get_http_version()
        if version not in ("1.1", "1.0"):
            raise _Refused(400, f"HTTP/{version} is not supported (HTTP/1.1 or HTTP/1.0)")
        items = self._items
        length: str | None = None
        codings: list[str] = []
        hosts = 0
        websocket = False
        for name, value in items:
            lower = name.lower()
            if lower == "content-length":
                length = value
            elif lower == "transfer-encoding":
                codings.append(value)
            elif lower == "host":
                hosts += 1
            elif lower == "upgrade":
                websocket = value.strip().lower() == "websocket"
        if hosts > 1:   # RFC 9112 section 3.2 (aiohttp's parser refused it too)
            raise _Refused(400, "a request must not carry more than one Host header")
        if not hosts and version == "1.1":   # the same section; aiohttp's parser refused it, logging a traceback
            raise _Refused(400, "an HTTP/1.1 request must carry a Host header")
        coding = ", ".join(codings) if codings else None
        if coding is not None and coding.strip().lower() != "chunked":
            # llhttp takes "gzip, chunked", or gzip and chunked in two fields; a coding the proxy would
            # relay undecoded is refused
            raise _Refused(400, f"transfer coding {coding!r} is not supported (chunked only)")
        has_body = coding is not None or (length is not None and int(length) > 0)   # digits: llhttp checked
        method = parser.get_method().decode("ascii", "replace")
        target = _text(b"".join(self._url))
        headers = CIMultiDictProxy(CIMultiDict(items))
        # Transfer-Encoding in HTTP/1.0 is faulty framing: the connection closes after it (RFC 9112 section 6.1)
        keep_alive = parser.should_keep_alive() and not (codings and version == "1.0")
        exchange = H1Exchange(self, method, target, version, headers, keep_alive, has_body)
        self._parsing = exchange
        if websocket and self.websocket is not None:
            exchange.handover = True
            self.queue.append(exchange)
            if not parser.should_upgrade():
                raise _HandOver
            return
        if parser.should_upgrade() or method == "CONNECT":
            # llhttp reads no body and stops after this head: served, then the connection closes
            if has_body:
                raise _Refused(400, "a request asking for a protocol upgrade cannot carry a body")
            exchange.keep_alive = False
        self.queue.append(exchange)

    def on_body(self, data: bytes) -> None:
        exchange = self._parsing
        if exchange is not None:
            exchange._feed(data)
            if exchange.discarded > LINGER_BYTES:
                self.close()   # too much left of an answered request's body to read it away
            elif exchange._buffered > HIGH_WATER:
                self._pause_reading()

    def on_message_complete(self) -> None:
        exchange = self._parsing
        self._parsing = None
        if exchange is not None:
            exchange._end()

    # -- serving ------------------------------------------------------------------------------------

    def _next(self) -> None:
        """Serve the next parsed request unless one is being served; reading pauses while any wait."""
        if self.closed:
            return
        if self.current is not None:
            if self.queue:   # pipelined: parsed ahead, served in order
                self._pause_reading()
            return
        if self._parsing is not None and self._parsing.finished:   # reading an answered request's body away
            self._resume_reading()
            return
        if not self.queue:
            if self._refusal is not None:
                self._send_refusal()
                return
            if self._eof:
                self.close()
                return
            self._resume_reading()
            if not self._in_head and self._parsing is None and not self._stopped:
                self._arm_idle()
            return
        exchange = self.queue.popleft()
        self._disarm_idle()
        if exchange.handover:
            self._hand_over(exchange)
            return
        self.current = exchange
        self.task = self.loop.create_task(self._serve(exchange))
        if not self.queue and exchange._buffered <= HIGH_WATER:
            # nothing parsed ahead any more: read on, its body may still be coming (``consumed`` only
            # resumes once a buffered part was read, and nothing of it may be buffered yet)
            self._resume_reading()

    async def _serve(self, exchange: H1Exchange) -> None:
        try:
            await self.handler(exchange)
        except (ConnectionError, asyncio.CancelledError):
            pass
        except Exception:   # a bug, not the client: said once, answered 500 if nothing went out yet
            log.exception("request %s from a client connection failed", exchange.method)
            if not exchange.started and self.transport is not None and not self.transport.is_closing():
                self.transport.write(responses.to_bytes(responses.text_answer(500, "internal error")))
            exchange._close = True
        finally:
            self._done_with(exchange)

    def _done_with(self, exchange: H1Exchange) -> None:
        self.current = None
        self.task = None
        if self.closed:
            return
        if not exchange.finished:   # cancelled, or failed before its answer ended
            if self._refusal is not None and not exchange.started:
                self._send_refusal()
            else:
                self.close()
            return
        if exchange._close or not exchange.keep_alive or self.draining:
            self.close()
            return
        if not exchange.body_complete:
            # Answered before its body ended (a 403 for an upload): the rest is read and dropped, then
            # the next request is served; a body that does not end in time (or is large) closes it.
            self.loop.call_later(LINGER_SECONDS, self._linger_expired, exchange)
        self._next()

    def _linger_expired(self, exchange: H1Exchange) -> None:
        if self._parsing is exchange and not self.closed:
            self.close()

    def consumed(self) -> None:
        """The handler read the buffered body: read on."""
        if self.current is not None and not self.queue and self._refusal is None:
            self._resume_reading()

    def send(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            raise ClientGone("the client closed the connection")
        self.transport.write(data)

    def _refuse(self, status: int, message: str) -> None:
        """An error answer, after the answers owed to the requests before it; then the connection closes.
        A request whose body broke is never served (or, in flight, cancelled: its upstream request ends)."""
        self._stopped = True
        self._in_head = False
        self._disarm()
        self._stop_idle()
        self._pause_reading()
        self._refusal = responses.to_bytes(responses.text_answer(status, message))
        broken, self._parsing = self._parsing, None
        if broken is not None:
            broken._fail(ClientGone("the request's body is malformed"))
            if broken in self.queue:
                self.queue.remove(broken)
            elif broken is self.current and self.task is not None and not broken.started:
                self.task.cancel()

    def _send_refusal(self) -> None:
        if self._refusal is not None and self.transport is not None and not self.transport.is_closing():
            self.transport.write(self._refusal)
        self._refusal = None
        self.close()

    def _stop(self, rest: bytes) -> None:
        self._stopped = True
        self._rest += rest
        self._pause_reading()

    def _hand_over(self, exchange: H1Exchange) -> None:
        """A WebSocket upgrade: aiohttp's server reads it again, from its re-serialised head on."""
        assert self.websocket is not None
        transport = self.transport
        if transport is None:
            return
        lines = [f"{exchange.method} {exchange.target} HTTP/{exchange.version}\r\n",
                 *[f"{k}: {v}\r\n" for k, v in exchange.headers.items()], "\r\n"]
        head = "".join(lines).encode("utf-8", "surrogateescape")
        self.closed = True   # no longer this server's: a stop drains it through aiohttp's
        self._disarm()
        self._stop_idle()
        if not self.done.done():
            self.done.set_result(None)
        server = self.websocket()
        transport.pause_reading()
        server.take(transport, head + bytes(self._rest))
        self.transport = None

    # -- flow and timers ----------------------------------------------------------------------------

    def _pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None:
            self._reading_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._reading_paused and not self._stopped and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()

    def _arm(self) -> None:
        if self.transport is None or not self.gate.enter():
            self.close()   # too many connections still sending a head
            return
        deadline, self.deadline = self.deadline, None
        self._timer = self.loop.call_at(deadline or self.loop.time() + self.head_timeout, self._expire)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self.gate.leave()

    def _expire(self) -> None:
        self._timer = None
        self.gate.leave()
        self._refuse(408, "request head not received in time")
        self._next()

    def _arm_idle(self) -> None:
        """The connection is idle from now: one timer per connection, moved on lazily (not one per request)."""
        if self.closed:
            return
        self._idle_since = self.loop.time()
        if self._idle is None:
            self._idle = self.loop.call_at(self._idle_since + self.keepalive_timeout, self._idle_expired)

    def _disarm_idle(self) -> None:
        self._idle_since = None

    def _stop_idle(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None

    def _idle_expired(self) -> None:
        self._idle = None
        if self.closed or self._idle_since is None:
            return   # busy: armed again when it is idle
        due = self._idle_since + self.keepalive_timeout
        if self.loop.time() < due:
            self._idle = self.loop.call_at(due, self._idle_expired)
        elif self.current is None and not self.queue and not self._in_head:
            self.close()

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()
        self._disarm()
        self._stop_idle()

    # -- what a stop sees (``Registry.servers``) ----------------------------------------------------

    @property
    def connections(self) -> list[H1Server]:
        return [] if self.closed else [self]

    def pre_shutdown(self) -> None:
        """Idle keep-alive connections close now; a busy one after its answer."""
        self.draining = True
        if self.current is None and not self.queue:
            self.close()

    async def shutdown(self, timeout: float | None = None) -> None:
        self.pre_shutdown()
        if self.current is None:
            timeout = min(timeout, _CLOSE_GRACE) if timeout is not None else _CLOSE_GRACE
        try:
            await asyncio.wait_for(asyncio.shield(self.done), timeout)
        except asyncio.TimeoutError:
            if self.transport is not None:
                self.transport.abort()


class H1Listener:
    """The plain listener's side: each connection ``HttpEntry`` hands over becomes an ``H1Server``;
    a ``context.Drainable`` over all of them (a stop drains them, ``/metrics`` counts them)."""

    def __init__(self, handler: Handler, gate: HeadGate, head_timeout: float, keepalive_timeout: float,
                 max_head: int, websocket: Callable[[], Taker] | None = None) -> None:
        self.handler = handler
        self.gate = gate
        self.head_timeout = head_timeout
        self.keepalive_timeout = keepalive_timeout
        self.max_head = max_head
        self.websocket = websocket
        self.servers: set[H1Server] = set()

    def take(self, transport: asyncio.Transport, first: bytes = b"", deadline: float | None = None) -> None:
        """Serve ``transport`` (reading paused); its first head is timed from ``deadline``."""
        server = H1Server(self.handler, self.gate, self.head_timeout, self.keepalive_timeout, self.max_head,
                          self.websocket)
        self.servers.add(server)
        server.done.add_done_callback(lambda _: self.servers.discard(server))
        server.take(transport, first, deadline)

    @property
    def connections(self) -> list[H1Server]:
        return [server for server in list(self.servers) if not server.closed]   # list(): read from the metrics thread

    def pre_shutdown(self) -> None:
        for server in list(self.servers):
            server.pre_shutdown()

    async def shutdown(self, timeout: float | None = None) -> None:
        await asyncio.gather(*(server.shutdown(timeout) for server in list(self.servers)))
