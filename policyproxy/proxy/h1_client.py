"""A lean HTTP/1.1 client for ``Upstream.send``: one asyncio Protocol per connection, llhttp parsing.

Why not aiohttp's ``ClientSession``: its request/response machinery was about a third of the proxy's
on-CPU time per intercepted request. Here a request is one ``transport.write`` of a head joined once
(plus the body when it is in memory), the answer is parsed by ``httptools`` (llhttp, the parser
Node.js and uvicorn use) straight into an ``H1Response``, and connections are kept alive in a
``Pool`` keyed by (scheme, host, port, the addresses the policy checked), so a connection is never
reused for another name or for an address the resolver no longer gives.

Rules kept from aiohttp's client (the shell tests pin them): upstream TLS verified with the given
context and SNI = the URL's host; connect timeout over all addresses; a read timeout that measures
silence from the upstream once the request is sent; a connection reused only when its answer was
read to its end and the upstream keeps it alive. New here: trailers of a chunked answer are kept, and
an idempotent request without a streamed body is retried once on a fresh connection when a reused
one turns out dead before answering a byte (the upstream closed it while it idled).
"""

from __future__ import annotations

import asyncio
import collections
import re
import socket
import ssl
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httptools
from multidict import CIMultiDict, CIMultiDictProxy

from policyproxy.errors import UpstreamBroken, UpstreamError, UpstreamTimeout, UpstreamTLSError, UpstreamUnreachable
from policyproxy.grammar.hosts import IPAddress

Key = tuple[str, str, int, tuple[IPAddress, ...]]   # scheme, host, port, addresses

IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_FRAMING = frozenset({"content-length", "transfer-encoding"})
# Answer bytes buffered unread before the upstream is no longer read (until all are taken). One read's
# worth: on uvloop, 1 MiB let the loop batch four reads before the relay ran, and the relay then wrote
# 1.2 MB at a time (past the L2 cache): 256 KiB took 5-8 % less CPU per 100 MB (bench --big-only).
HIGH_WATER = 256 * 1024
MAX_HEAD = 256 * 1024     # an answer head (interim ones included) larger than this is refused
READ_BUFFER = 256 * 1024   # what one read of an upstream connection may take (uvloop's SSL layer reads this much)
# RFC 9112 section 4: reason-phrase = *( HTAB / SP / VCHAR / obs-text ). llhttp lets other control bytes
# through, and aiohttp's server refuses to write them (a 500 with a traceback instead of a 502).
_REASON = re.compile(r"[\t\x20-\x7e\x80-\xff]*")


class _DeadOnReuse(Exception):
    """A reused connection closed before the answer's first byte: the request may be sent again."""


class _NoBody(Exception):
    """Raised from the parser's head callback of a HEAD answer: llhttp cannot be told to skip a body."""


class _OutOfStep(Exception):
    """Raised from the parser when bytes follow a complete answer: never parsed into it."""


class _Malformed(Exception):
    """Raised from the parser for a head llhttp accepts but no client may be given: the answer is refused."""


class H1Response:
    """``upstream.UpstreamResponse`` for one exchange; also the llhttp callback target."""

    __slots__ = ("_body", "_body_bytes", "_buffered", "_conn", "_done", "_error", "_head", "_headers", "_interim",
                 "_items", "_keep_alive", "_no_body", "_trailers", "_waiter", "reason", "status")

    def __init__(self, conn: H1Connection, no_body: bool) -> None:
        self._conn = conn
        self._no_body = no_body
        self._head: asyncio.Future[None] = conn.loop.create_future()
        self._items: list[tuple[str, str]] = []
        self._trailers: list[tuple[str, str]] | None = None
        self._headers: CIMultiDictProxy[str] | None = None
        self._body: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._body_bytes = 0   # all the body received, read or not
        self._done = False
        self._interim = False
        self._keep_alive = False
        self._error: UpstreamError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self.status = 0
        self.reason = ""

    # -- llhttp callbacks -------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._done:   # a second answer in the same read: nobody asked for it (smuggled or out of step)
            raise _OutOfStep

    def on_status(self, reason: bytes) -> None:
        self.reason += reason.decode("latin-1")

    def on_header(self, name: bytes, value: bytes) -> None:
        pair = (name.decode("latin-1"), value.decode("latin-1"))
        if self._trailers is not None:
            self._trailers.append(pair)
        else:
            self._items.append(pair)

    def on_headers_complete(self) -> None:
        status = self._conn.parser.get_status_code()
        if 100 <= status < 200 and status != 101:   # 100, 103: an interim answer, the final one follows
            self._interim = True
            self._items = []
            self.reason = ""
            return
        if status < 100:   # llhttp takes any three digits: "000" is no status a client can be given
            raise _Malformed(f"status {status:03d}")
        if status == 101:   # never asked for: WebSockets go through ``Upstream.ws_connect``, Upgrade is dropped
            raise _Malformed("101 Switching Protocols to a request that asked for no upgrade")
        if not _REASON.fullmatch(self.reason):
            raise _Malformed("control character in the reason phrase")
        codings = [c.strip().lower() for k, v in self._items if k.lower() == "transfer-encoding" for c in v.split(",")]
        if any(c != "chunked" for c in codings):
            # The proxy sends no TE: a coding it never offered (gzip, ...) would be relayed still coded,
            # neither inspected nor restored.
            raise _Malformed(f"transfer coding {', '.join(codings)!r} was never offered")
        self.status = status
        self._trailers = []
        if not self._head.done():
            self._head.set_result(None)
        if self._no_body:
            raise _NoBody

    def on_body(self, data: bytes) -> None:
        self._body.append(data)
        self._buffered += len(data)
        self._body_bytes += len(data)
        if self._buffered > HIGH_WATER:
            self._conn.pause_reading()
        self._wake()

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        self._done = True
        self._keep_alive = self._conn.parser.should_keep_alive()   # llhttp forgets it once the message ended
        self._wake()

    # -- from the connection ----------------------------------------------------------------------

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)

    def fail(self, error: UpstreamError) -> None:
        """The connection broke: before the head the error is the send's, after it the body's."""
        if self._done or self._error is not None:
            return
        self._error = error
        if not self._head.done():
            self._head.set_exception(error)
            self._head.exception()   # retrieved here: ``send`` may be past awaiting it
        self._wake()

    def finish(self) -> None:
        """The body ended without llhttp's word: HEAD, 101, or an until-close body at the connection's end."""
        if self._error is not None:
            return
        self._done = True
        self._wake()

    def until_close(self) -> bool:
        """A body delimited by the connection's end (no Content-Length, not chunked)."""
        if self._no_body or self.status in (204, 304) or self.status < 200:
            return False
        codings = [v for k, v in self._items if k.lower() == "transfer-encoding"]
        if codings:   # RFC 9112 section 6.3: chunked not last -> the body ends with the connection
            return codings[-1].rsplit(",", 1)[-1].strip().lower() != "chunked"
        return all(k.lower() != "content-length" for k, _ in self._items)

    # -- the UpstreamResponse side ----------------------------------------------------------------

    @property
    def headers(self) -> Mapping[str, str]:
        if self._headers is None:
            self._headers = CIMultiDictProxy(CIMultiDict(self._items))
        return self._headers

    def header_items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def body_complete(self) -> bool:
        return self._done and self._error is None

    async def read(self) -> bytes:
        parts = [chunk async for chunk in self.chunks()]
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def chunks(self) -> AsyncIterator[bytes]:
        body = self._body
        while True:
            if body:
                chunk = body.popleft() if len(body) == 1 else b"".join(body)
                body.clear()
                self._buffered = 0
                self._conn.resume_reading()
                yield chunk
            elif self._done:
                return
            elif self._error is not None:
                raise UpstreamBroken(self._error.message)
            else:
                self._waiter = self._conn.loop.create_future()
                await self._waiter

    def trailers(self) -> list[tuple[str, str]]:
        return list(self._trailers or ()) if self._done else []

    def release(self) -> None:
        self._conn.release(self)


class H1Connection(asyncio.BufferedProtocol):
    """One upstream connection: at most one exchange at a time, no pipelining.

    A ``BufferedProtocol``: the transport (TLS included: asyncio's and uvloop's SSL protocols decrypt
    into the buffer given) reads into the pool's buffer, and llhttp parses it there. With
    ``data_received`` the SSL layer allocates a bytes object per TLS read (uvloop: 256 KiB each, then
    shrunk) and joins them: a 100 MB answer through interception took 3-6 % more of the proxy's CPU
    (uvloop 192 against 181 ms, asyncio 183 against 177; bench/proxy_bench.py --big-only).
    """

    def __init__(self, pool: Pool, key: Key, loop: asyncio.AbstractEventLoop) -> None:
        self.pool = pool
        self.key = key
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.parser: Any = None
        self.response: H1Response | None = None
        self.closed = False
        self.idle_since = 0.0
        self.exchanges = 0   # answers fully read on this connection
        self._received = False   # a byte of the current answer arrived
        self._head_bytes = 0     # read since the last body byte: the head, then chunk framing and trailers
        self._reading_paused = False
        self._write_paused = False
        self._drain: asyncio.Future[None] | None = None
        self._sender: asyncio.Task[None] | None = None
        self._sending = False
        self._timer: asyncio.TimerHandle | None = None
        self._last = 0.0
        self._reusable = True

    # -- asyncio.Protocol -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]   # uvloop's is not an asyncio.Transport subclass
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.pool.read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self.pool.read_buffer[:nbytes])

    def data_received(self, data: bytes | memoryview) -> None:
        response = self.response
        if response is None or response._done:   # bytes nobody asked for: the stream is out of step
            self._reusable = False
            self.abort()
            return
        self._received = True
        self._last = self.loop.time()
        body_before = response._body_bytes
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:   # not reached (a 101 is refused from its head): defensive
            self._reusable = False
            response.finish()
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _NoBody):
                self._reusable = False   # where llhttp stopped in ``data`` is not known: not reused
                response.finish()
            elif isinstance(exc.__context__, _Malformed):
                self._broken(response, f"unreadable answer: {exc.__context__}")
            elif isinstance(exc.__context__, _OutOfStep):
                self._reusable = False   # the answer is whole; what followed it is dropped with the connection
                self.abort()
            else:
                self._broken(response, f"unreadable answer: {exc}")
        except httptools.HttpParserError as exc:
            self._broken(response, f"unreadable answer: {exc}")
        if not response._done and response._error is None:
            # llhttp bounds neither a head nor the trailers of a chunked body, and httptools keeps every
            # trailer field: bytes that bring no body (head, chunk framing, trailers) are bounded.
            self._head_bytes = self._head_bytes + len(data) if response._body_bytes == body_before else 0
            if self._head_bytes > MAX_HEAD:
                self._broken(response, f"answer head over {MAX_HEAD // 1024} KiB" if not response._head.done()
                             else f"chunk framing or trailers over {MAX_HEAD // 1024} KiB")

    def _broken(self, response: H1Response, why: str) -> None:
        self._reusable = False
        host, port = self.key[1], self.key[2]
        if response._head.done():
            response.fail(UpstreamBroken(f"the answer's body broke off: {why}"))
        else:
            response.fail(UpstreamUnreachable(f"upstream {host}:{port} sent an {why}"))
        self.abort()

    def eof_received(self) -> bool:
        return False   # close the transport; ``connection_lost`` decides what the end means

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._stop_timer()
        if self._drain is not None and not self._drain.done():
            self._drain.set_exception(ConnectionResetError("upstream connection lost"))
            self._drain.exception()
        response = self.response
        if response is None or response._done or response._error is not None:
            return
        host, port = self.key[1], self.key[2]
        if response._head.done():
            if response.until_close():
                response.finish()
            else:
                why = type(exc).__name__ if exc is not None else "the upstream closed the connection"
                response.fail(UpstreamBroken(f"the answer's body broke off: {why}"))
        elif not self._received and self.exchanges:
            response.fail(_dead(host, port))
        else:
            why = f"{exc.strerror or type(exc).__name__}" if isinstance(exc, OSError) else "closed the connection"
            response.fail(UpstreamUnreachable(f"upstream {host}:{port} failed before answering: {why}"))

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        self._last = self.loop.time()   # the upstream took some of the request's body: not silent
        if self._drain is not None and not self._drain.done():
            self._drain.set_result(None)
        self._drain = None

    # -- flow control and timers ------------------------------------------------------------------

    def pause_reading(self) -> None:
        if not self._reading_paused and self.transport is not None and not self.closed:
            self._reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._reading_paused and self.transport is not None and not self.closed:
            self._reading_paused = False
            self._last = self.loop.time()
            self.transport.resume_reading()

    def _arm(self) -> None:
        """Silence is measured from now. One timer per connection, moved on lazily: a pending one (left
        from an earlier exchange) fires at its old time and ``_check`` reschedules it from ``_last``."""
        self._last = self.loop.time()
        if self._timer is None:
            self._timer = self.loop.call_at(self._last + self.pool.read_timeout, self._check)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check(self) -> None:
        """Silence is measured from the end of the request's body and never while this side paused; an
        upstream that stops taking the request's body (writing paused) is silent too."""
        self._timer = None
        response = self.response
        if response is None or response._done or self.closed:
            return
        now = self.loop.time()
        if (self._sending and not self._write_paused) or self._reading_paused:
            self._last = now
        due = self._last + self.pool.read_timeout
        if now < due:
            self._timer = self.loop.call_at(due, self._check)
            return
        host, port = self.key[1], self.key[2]
        self._reusable = False
        if response._head.done():
            response.fail(UpstreamBroken(f"the answer's body broke off: {host}:{port} was silent for "
                                         f"{self.pool.read_timeout:g} s"))
        else:
            response.fail(UpstreamTimeout(f"{host}:{port} did not answer in time"))
        self.abort()

    # -- one exchange -----------------------------------------------------------------------------

    async def exchange(self, method: str, head: bytes, chunked: bool, body: Any) -> H1Response:
        """Send one request (``body``: None, bytes, or a stream with ``readany``) and wait for the head."""
        assert self.transport is not None
        response = H1Response(self, method == "HEAD")
        self.response = response
        self.parser = httptools.HttpResponseParser(response)
        self._received = False
        self._head_bytes = 0
        self._reusable = True
        if body is None or isinstance(body, (bytes, bytearray, memoryview)):
            self.transport.write(head + body if body else head)
        else:
            self.transport.write(head)
            self._sending = True
            self._sender = self.loop.create_task(self._send_stream(response, body, chunked))
        self._arm()
        try:
            await response._head
        except BaseException:
            self._reusable = False
            self.abort()
            raise
        return response

    async def _send_stream(self, response: H1Response, stream: Any, chunked: bool) -> None:
        transport = self.transport
        assert transport is not None
        try:
            async for chunk in _chunks(stream):
                if not chunk:
                    continue
                if self.closed:
                    return
                if chunked:
                    transport.writelines((b"%x\r\n" % len(chunk), chunk, b"\r\n"))
                else:
                    transport.write(chunk)
                if self._write_paused:
                    self._drain = self.loop.create_future()
                    await self._drain
            if chunked and not self.closed:
                transport.write(b"0\r\n\r\n")
        except (ConnectionError, OSError):
            return   # the upstream went away: ``connection_lost`` tells the response
        except Exception as exc:   # the client's body broke off (aiohttp's payload errors)
            self._reusable = False
            response.fail(UpstreamUnreachable(f"the request's body broke off: {type(exc).__name__}"))
            self.abort()
        finally:
            self._sending = False
            self._last = self.loop.time()

    def release(self, response: H1Response) -> None:
        if self.response is not response:
            return
        sender, self._sender = self._sender, None
        if sender is not None and not sender.done():
            sender.cancel()
            self._reusable = False
        if response._done and response._error is None and self._reusable and not self.closed \
                and response._keep_alive:
            self.exchanges += 1
            self.response = None
            self.parser = None
            self.resume_reading()
            self.pool.put(self)
        else:
            self.response = None
            self.abort()

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


def _dead(host: str, port: int) -> UpstreamUnreachable:
    error = UpstreamUnreachable(f"upstream {host}:{port} closed a kept-alive connection")
    error.__cause__ = _DeadOnReuse()
    return error


async def _chunks(stream: Any) -> AsyncIterator[bytes]:
    """A request body as it arrives: aiohttp's ``StreamReader`` (``readany``) or any async iterable of
    bytes (an HTTP/2 stream's body)."""
    if hasattr(stream, "readany"):
        while chunk := await stream.readany():
            yield chunk
        return
    async for chunk in stream:
        yield chunk


def request_head(method: str, target: str, headers: list[tuple[str, str]], body: Any) -> tuple[bytes, bool]:
    """The request head, joined once, and whether the body goes chunked; the body's framing
    (Content-Length or chunked) is set here.
    Raises ``ValueError`` for a CR or LF inside a name or value (request splitting)."""
    chunked = False
    if body is None:
        framing = [] if method not in _BODY_METHODS or any(k.lower() == "content-length" for k, _ in headers) \
            else ["Content-Length: 0\r\n"]
    elif isinstance(body, (bytes, bytearray, memoryview)):
        headers = [(k, v) for k, v in headers if k.lower() not in _FRAMING]
        framing = [f"Content-Length: {len(body)}\r\n"]
    else:
        has_length = any(k.lower() == "content-length" for k, _ in headers)
        headers = [(k, v) for k, v in headers if k.lower() != "transfer-encoding"]
        chunked = not has_length
        framing = [] if has_length else ["Transfer-Encoding: chunked\r\n"]
    lines = [f"{method} {target} HTTP/1.1\r\n", *[f"{k}: {v}\r\n" for k, v in headers], *framing, "\r\n"]
    text = "".join(lines)
    if text.count("\n") != len(lines) or text.count("\r") != len(lines):
        raise ValueError("a header name or value holds a line break")
    return text.encode("utf-8", "surrogateescape"), chunked


class Pool:
    """Idle keep-alive connections per ``Key``, newest first; bounded and closed after ``idle_timeout``."""

    def __init__(self, tls: ssl.SSLContext, connect_timeout: float, read_timeout: float,
                 idle_timeout: float = 60.0, per_key: int = 64, total: int = 1024) -> None:
        self.tls = tls
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.idle_timeout = idle_timeout
        self.per_key = per_key
        self.total = total
        self.idle: dict[Key, list[H1Connection]] = {}
        self.count = 0
        # One read buffer for all the pool's connections (one loop): the loop calls ``get_buffer`` and
        # ``buffer_updated`` back to back, and ``buffer_updated`` consumes it before it returns (llhttp's
        # callbacks copy what they keep), so an idle pooled connection holds no buffer of its own.
        self.read_buffer = memoryview(bytearray(READ_BUFFER))
        self._sweeper: asyncio.TimerHandle | None = None

    async def send(self, method: str, scheme: str, host: str, port: int, addresses: tuple[IPAddress, ...],
                   target: str, headers: list[tuple[str, str]], body: Any) -> H1Response:
        """The answer's head; an idempotent request without a streamed body is sent again once when a
        reused connection was found dead."""
        try:
            head, chunked = request_head(method, target, headers, body)
        except ValueError as exc:
            raise UpstreamUnreachable(f"request to {host} not sent: {exc}") from None
        key = (scheme, host, port, addresses)
        replayable = method in IDEMPOTENT and (body is None or isinstance(body, (bytes, bytearray, memoryview)))
        retry = False
        while True:
            # The retry opens a connection: the other idle ones likely died the same way (an upstream restart,
            # a NAT or firewall that dropped them all while they idled), and it is the only retry.
            conn = None if retry else self._take(key)
            reused = conn is not None
            if conn is None:
                conn = await self._open(key)
            try:
                return await conn.exchange(method, head, chunked, body)
            except UpstreamUnreachable as exc:
                if reused and replayable and isinstance(exc.__cause__, _DeadOnReuse):
                    replayable = False   # once
                    retry = True
                    continue
                if isinstance(exc.__cause__, _DeadOnReuse):
                    raise UpstreamUnreachable(exc.message) from None
                raise

    def _take(self, key: Key) -> H1Connection | None:
        idle = self.idle.get(key)
        while idle:
            conn = idle.pop()
            self.count -= 1
            if not conn.closed:
                return conn
        return None

    def put(self, conn: H1Connection) -> None:
        idle = self.idle.setdefault(conn.key, [])
        if len(idle) >= self.per_key or self.count >= self.total:
            conn.abort()
            return
        conn.idle_since = conn.loop.time()
        idle.append(conn)
        self.count += 1
        if self._sweeper is None:
            self._sweeper = conn.loop.call_later(max(self.idle_timeout / 4, 1.0), self._sweep)

    def _sweep(self) -> None:
        """Close connections idle past ``idle_timeout`` (and forget closed ones)."""
        self._sweeper = None
        if not self.idle:
            return
        loop = asyncio.get_running_loop()
        oldest = loop.time() - self.idle_timeout
        for key in list(self.idle):
            keep = []
            for conn in self.idle[key]:
                if conn.closed or conn.idle_since < oldest:
                    conn.abort()
                else:
                    keep.append(conn)
            if keep:
                self.idle[key] = keep
            else:
                del self.idle[key]
        self.count = sum(len(conns) for conns in self.idle.values())
        if self.idle:
            self._sweeper = loop.call_later(max(self.idle_timeout / 4, 1.0), self._sweep)

    async def _open(self, key: Key) -> H1Connection:
        _, host, port, addresses = key
        if not addresses:
            raise UpstreamUnreachable(f"cannot connect to {host}:{port}: cannot resolve {host}")
        try:
            return await asyncio.wait_for(self._connect(key), self.connect_timeout)
        except asyncio.TimeoutError:
            raise UpstreamTimeout(f"{host}:{port} did not answer in time") from None

    async def _connect(self, key: Key) -> H1Connection:
        """The first of the checked addresses that accepts, TLS verified against the URL's host."""
        scheme, host, port, addresses = key
        loop = asyncio.get_running_loop()
        tls = self.tls if scheme == "https" else None
        error: UpstreamError = UpstreamUnreachable(f"cannot connect to {host}:{port}")
        for address in addresses:
            try:
                _, conn = await loop.create_connection(lambda: H1Connection(self, key, loop), str(address), port,
                                                       ssl=tls, server_hostname=host if tls else None)
            except ssl.SSLCertVerificationError as exc:
                raise UpstreamTLSError(f"upstream TLS certificate of {host} failed verification: "
                                       f"{exc.verify_message or exc}") from None
            except ssl.SSLError as exc:
                raise UpstreamTLSError(f"TLS with {host} failed: {exc.reason or exc}") from None
            except OSError as exc:
                error = UpstreamUnreachable(f"cannot connect to {host}:{port}: {exc.strerror or exc}")
                continue
            return conn
        raise error

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conns in self.idle.values():
            for conn in conns:
                conn.abort()
        self.idle.clear()
        self.count = 0
