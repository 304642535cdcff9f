"""HTTP/2 on an intercepted connection (ALPN ``h2``), served with the sans-IO ``h2`` library.

Each stream is one request through ``pipeline.forward`` (``H2Stream`` is its ``Exchange``): decided,
hooked, redacted and reported exactly as an HTTP/1.1 request is; a denied stream gets its 403 while
the other streams go on. Flow control is backpressure both ways: received DATA is acknowledged (the
window reopened) only as the pipeline consumes it, and answers are sent only as the client's windows
allow (and the socket drains). Bounds: ``MAX_STREAMS`` concurrent streams, ``MAX_HEADER_LIST``
bytes of headers (``h2`` also caps CONTINUATION frames at 64 per header block), at most
``MAX_RESETS`` client RST_STREAMs per ``RESET_WINDOW`` seconds (the rapid-reset attack: past it, GOAWAY
with ENHANCE_YOUR_CALM), ``MAX_CONTROL_BACKLOG`` bytes of control frames (PING/SETTINGS acks) queued
for a client that does not read, and an idle connection is closed after the keep-alive timeout.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping
from typing import Any

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    RemoteSettingsChanged,
    RequestReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from h2.exceptions import FlowControlError, H2Error, ProtocolError, StreamClosedError
from h2.settings import SettingCodes
from hyperframe.frame import GoAwayFrame
from multidict import CIMultiDict, CIMultiDictProxy

from policyproxy import responses
from policyproxy.proxy.connection import Connection
from policyproxy.proxy.context import Context
from policyproxy.proxy.exchange import Headers
from policyproxy.proxy.h2_upstream import MAX_ENCODER_TABLE, WriteGate, hold
from policyproxy.proxy.pipeline import forward
from policyproxy.proxy.target import Refusal, read_in_tunnel

log = logging.getLogger("policyproxy")

MAX_STREAMS = 100                 # SETTINGS_MAX_CONCURRENT_STREAMS
MAX_HEADER_LIST = 64 * 1024       # SETTINGS_MAX_HEADER_LIST_SIZE (as the HTTP/1.1 head limit)
STREAM_WINDOW = 256 * 1024        # what one stream may send unread (widened by WINDOW_UPDATE)
CONNECTION_WINDOW = 1024 * 1024   # what all streams together may send unread
MAX_RESETS = 200                  # client RST_STREAMs tolerated per window ...
RESET_WINDOW = 10.0               # ... of this many seconds
MAX_CONTROL_BACKLOG = 4 * 1024 * 1024  # queued bytes to a client that does not read, before it is dropped

# Connection-specific fields (RFC 9113 section 8.2.2) never sent on HTTP/2.
_CONNECTION_FIELDS = frozenset({"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade",
                                "te", "content-length"})


_CLOSE_GRACE = 0.5   # seconds a stop waits for a closed connection's TLS close_notify exchange


class StreamGone(ConnectionResetError):
    """The client reset the stream (or the connection went away) while it was being answered."""


def _text(value: bytes) -> str:
    return value.decode("utf-8", "surrogateescape")


def h2_headers(headers: Iterable[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    """Response fields as HTTP/2 wants them: lower-case names, no connection-specific fields."""
    return [(k.lower().encode("latin-1"), v.encode("utf-8", "surrogateescape")) for k, v in headers
            if k.lower() not in _CONNECTION_FIELDS]


class H2Stream:
    """One request stream: the ``Exchange`` that ``forward`` reads and answers."""

    http2 = True
    upgrade = False

    def __init__(self, server: H2Server, stream_id: int, method: str, path: str,
                 headers: CIMultiDictProxy[str], ended: bool) -> None:
        self.server = server
        self.stream_id = stream_id
        self.method = method
        self.path = path
        self.headers: Mapping[str, str] = headers
        self._body_exists = not ended
        self.ended = ended                     # the client's END_STREAM arrived
        self.received: deque[list[Any]] = deque()   # [data, flow-controlled length] (``hold``)
        self.arrived = asyncio.Event()
        self.window = asyncio.Event()
        self.gone = False                      # reset by the client, or the connection closed
        self.started = False                   # our HEADERS went out
        self.finished = False                  # our END_STREAM (or RST_STREAM) went out
        self.task: asyncio.Task[None] | None = None

    @property
    def body_exists(self) -> bool:
        return self._body_exists

    async def body(self) -> AsyncIterator[bytes]:
        while True:
            if self.received:
                data, flow = self.received.popleft()
                data = bytes(data)
                self.server.consumed(self.stream_id, flow)   # the window reopens only as data is read
                if data:
                    yield data
                continue
            if self.ended:
                return
            if self.gone:
                raise StreamGone("the client reset the stream")
            self.arrived.clear()
            await self.arrived.wait()

    def upstream_body(self) -> Any:
        return self.body()

    async def expect_continue(self) -> None:
        if not self.started:
            self.server.send_headers(self.stream_id, [(b":status", b"100")], end=False)

    async def answer(self, rendered: responses.Answer) -> None:
        await self.reply(rendered.status, "", rendered.headers, rendered.body)

    async def reply(self, status: int, reason: str, headers: Headers, body: bytes,
                    trailers: Headers = ()) -> None:
        if not body and not trailers:   # one HEADERS frame ending the stream (gRPC's "trailers-only" answer)
            await self.start(status, reason, headers, None, end=True)
            return
        if self.method == "HEAD":   # the length of the answer a GET would get, never its body (a DATA
            await self.start(status, reason, headers, len(body), end=True)   # frame is a PROTOCOL_ERROR)
            return
        await self.start(status, reason, headers, len(body))
        if body:
            await self.write(body)
        await self.end(trailers)

    async def start(self, status: int, reason: str, headers: Headers, length: int | None, end: bool = False) -> None:
        if self.gone:
            raise StreamGone("the client reset the stream")
        fields = [(b":status", str(status).encode()), *h2_headers(headers)]
        if length is not None:
            fields.append((b"content-length", str(length).encode()))
        self.started = True
        self.finished = end
        self.server.send_headers(self.stream_id, fields, end=end)

    async def write(self, data: bytes) -> None:
        if self.method != "HEAD":   # a HEAD answer has no body, whatever an upstream sends
            await self.server.send_data(self, data)

    async def end(self, trailers: Headers = ()) -> None:
        if self.gone:
            raise StreamGone("the client reset the stream")
        self.finished = True
        if trailers:
            self.server.send_headers(self.stream_id, h2_headers(trailers), end=True)
        else:
            self.server.end_stream(self.stream_id)

    def alive(self) -> bool:
        return not self.gone and not self.server.closed

    def abort(self) -> None:
        """RST_STREAM INTERNAL_ERROR: the client sees the answer was cut, the connection goes on."""
        if not self.finished:
            self.finished = True
            self.server.reset(self.stream_id, ErrorCodes.INTERNAL_ERROR)


class H2Server(WriteGate):
    """One client connection speaking HTTP/2 inside an intercepted tunnel for ``conn``."""

    def __init__(self, ctx: Context, conn: Connection) -> None:
        self.ctx = ctx
        self.conn = conn
        self.h2 = H2Connection(H2Configuration(client_side=False, header_encoding=None))
        self.streams: dict[int, H2Stream] = {}
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.draining = False
        self.resets: deque[float] = deque()
        self._writable: asyncio.Future[None] | None = None
        self._idle: asyncio.TimerHandle | None = None
        self._flush_pending = False
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # -- the connection --------------------------------------------------------------------------------

    def take(self, transport: asyncio.Transport, first: bytes = b"") -> None:
        """Serve ``transport`` (reading paused) from here on; ``first`` is what was already read of it."""
        self.transport = transport
        transport.set_protocol(self)
        sock = transport.get_extra_info("socket")
        if sock is not None:   # frames are written whole: Nagle would only hold the next answer back
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.h2.local_settings.update({
            SettingCodes.MAX_CONCURRENT_STREAMS: MAX_STREAMS,
            SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST,
            SettingCodes.ENABLE_PUSH: 0,
        })
        self.h2.initiate_connection()
        # The limits hold from the first frame, not from the client's SETTINGS ACK (a client that never
        # acknowledges would otherwise never be bound by them).
        self.h2.local_settings.acknowledge()
        self.h2.decoder.max_header_list_size = MAX_HEADER_LIST
        self.h2.increment_flow_control_window(CONNECTION_WINDOW - self.h2.inbound_flow_control_window)
        self.flush()
        self._arm_idle(self.ctx.options.head_timeout)   # the client's preface and first request
        if first:
            self.data_received(first)
        if not self.closed:
            transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            events = self.h2.receive_data(data)
        except ProtocolError as exc:   # h2 has queued GOAWAY with the error's code
            log.info("HTTP/2 connection from %s for %s closed: %s", self.conn.client, self.conn.host,
                     type(exc).__name__)
            self._close()
            return
        for event in events:
            self._dispatch(event)
            if self.closed:
                return
        self.flush()

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, RequestReceived):
            self._request(event)
        elif isinstance(event, DataReceived):
            stream = self.streams.get(event.stream_id) if event.stream_id is not None else None
            if stream is None:   # data for a stream we already answered and forgot: give the window back
                self.h2.acknowledge_received_data(event.flow_controlled_length, event.stream_id or 0)
                return
            hold(stream.received, event.data or b"", event.flow_controlled_length)
            stream.arrived.set()
        elif isinstance(event, (StreamEnded, TrailersReceived)):
            # Request trailers are not relayed (no HTTP/1.1 upstream could carry them); the body ends.
            stream = self.streams.get(event.stream_id or 0)
            if stream is not None:
                stream.ended = True
                stream.arrived.set()
        elif isinstance(event, StreamReset):
            self._client_reset(event)
        elif isinstance(event, WindowUpdated):
            targets = self.streams.values() if not event.stream_id else [self.streams.get(event.stream_id)]
            for stream in targets:
                if stream is not None:
                    stream.window.set()
        elif isinstance(event, RemoteSettingsChanged):
            if self.h2.encoder.header_table_size > MAX_ENCODER_TABLE:
                # The client's HEADER_TABLE_SIZE is what it allows, not what we must keep (RFC 7541 4.2):
                # taken as offered (up to 4 GiB), every distinct answer field (an x-policyproxy-rule naming
                # the path) stayed in our encoder's table for the connection's life.
                self.h2.encoder.header_table_size = MAX_ENCODER_TABLE
            for stream in self.streams.values():   # INITIAL_WINDOW_SIZE may have grown
                stream.window.set()
        elif isinstance(event, ConnectionTerminated):   # the client's GOAWAY: open streams are still answered
            self.draining = True
            if not self.streams:
                self._close()

    def _request(self, event: RequestReceived) -> None:
        assert event.stream_id is not None
        if self.draining:
            self.reset(event.stream_id, ErrorCodes.REFUSED_STREAM)
            return
        pseudo: dict[bytes, bytes] = {}
        fields: CIMultiDict[str] = CIMultiDict()
        cookies: list[str] = []
        for name, value in event.headers or ():
            key, text = bytes(name), bytes(value)
            if key.startswith(b":"):
                pseudo[key] = text
            elif key == b"cookie":   # split on HTTP/2 (RFC 9113 section 8.2.3); one field again here
                cookies.append(_text(text))
            else:
                fields.add(_text(key), _text(text))
        if cookies:
            fields.add("cookie", "; ".join(cookies))
        # h2 refuses a Host that differs from :authority (RFC 9113 section 8.3.1: a connection error).
        authority = _text(pseudo.get(b":authority", b"")) or None
        if "host" not in fields and authority is not None:
            fields.add("Host", authority)
        stream = H2Stream(self, event.stream_id, _text(pseudo.get(b":method", b"")),
                          _text(pseudo.get(b":path", b"")), CIMultiDictProxy(fields),
                          event.stream_ended is not None)
        self.streams[event.stream_id] = stream
        if not stream.ended:   # widened by WINDOW_UPDATE, counted alike by both sides (SETTINGS are not)
            self.h2.increment_flow_control_window(STREAM_WINDOW - self.h2.local_settings.initial_window_size,
                                                  event.stream_id)
        self._disarm_idle()
        stream.task = asyncio.get_running_loop().create_task(self._serve(stream))

    async def _serve(self, stream: H2Stream) -> None:
        conn = self.conn
        try:
            routed = read_in_tunnel(stream.method, stream.path, stream.headers.get("host"), conn.host, conn.port,
                                    conn.scheme, conn.trusted)
            if isinstance(routed, Refusal):
                await stream.answer(responses.text_answer(routed.status, routed.message))
            else:
                await forward(self.ctx, self.ctx.live.snapshot, conn, stream, routed)
        except (StreamGone, ConnectionError, H2Error):
            pass
        except Exception:   # a bug, not the client: said once, the stream reset, the connection goes on
            log.exception("HTTP/2 stream %d from %s for %s failed", stream.stream_id, conn.client, conn.host)
        except asyncio.CancelledError:
            if not stream.gone:   # a stop, not a reset: the task ends as it was told
                raise
        finally:
            if not stream.gone and not self.closed:
                if not stream.finished:
                    self.reset(stream.stream_id, ErrorCodes.INTERNAL_ERROR)   # never a silent half answer
                elif not stream.ended:   # answered (a 403, say) before the body ended: stop its upload
                    self.reset(stream.stream_id, ErrorCodes.NO_ERROR)   # RFC 9113 section 8.1
            self._forget(stream)

    def _forget(self, stream: H2Stream) -> None:
        self.streams.pop(stream.stream_id, None)
        # What the client sent that was never read is given back, so other streams are not starved.
        unread = sum(flow for _, flow in stream.received)
        stream.received.clear()
        self.consumed(stream.stream_id, unread)
        if not self.streams:
            if self.draining:
                self._close()
            else:
                self._arm_idle(self.ctx.options.keepalive_timeout)

    def _client_reset(self, event: StreamReset) -> None:
        now = asyncio.get_running_loop().time()
        self.resets.append(now)
        while self.resets and self.resets[0] < now - RESET_WINDOW:
            self.resets.popleft()
        stream = self.streams.get(event.stream_id or 0)
        if stream is not None:
            stream.gone = True
            stream.finished = True
            stream.arrived.set()
            stream.window.set()
            if stream.task is not None:
                stream.task.cancel()
        if len(self.resets) > MAX_RESETS:   # rapid reset (CVE-2023-44487): this client is done
            log.warning("HTTP/2 client %s reset %d streams in %.0f s: GOAWAY (ENHANCE_YOUR_CALM)",
                        self.conn.client, len(self.resets), RESET_WINDOW)
            self.h2.close_connection(ErrorCodes.ENHANCE_YOUR_CALM, b"too many stream resets")
            self._close()

    # -- sending ---------------------------------------------------------------------------------------

    def send_headers(self, stream_id: int, fields: list[tuple[bytes, bytes]], end: bool) -> None:
        if self.closed:
            raise StreamGone("the connection is closed")
        try:
            self.h2.send_headers(stream_id, fields, end_stream=end)
        except StreamClosedError:
            raise StreamGone("the stream is closed") from None
        self._flush_soon()

    def end_stream(self, stream_id: int) -> None:
        if self.closed:
            raise StreamGone("the connection is closed")
        try:
            self.h2.end_stream(stream_id)
        except StreamClosedError:
            raise StreamGone("the stream is closed") from None
        self._flush_soon()

    def reset(self, stream_id: int, code: ErrorCodes) -> None:
        if self.closed:
            return
        try:
            self.h2.reset_stream(stream_id, code)
        except (StreamClosedError, ProtocolError):
            return
        self.flush()

    async def send_data(self, stream: H2Stream, data: bytes) -> None:
        """Send as the client's stream and connection windows allow, and only as fast as it reads."""
        await self.send_paced(stream.stream_id, data, stream.window, lambda: stream.gone or self.closed, StreamGone)

    def consumed(self, stream_id: int, flow: int) -> None:
        if flow and not self.closed:
            try:
                self.h2.acknowledge_received_data(flow, stream_id)
            except (StreamClosedError, ProtocolError, FlowControlError):
                return
            self._flush_soon()

    def _flush_soon(self) -> None:
        """Frames queued in this turn of the loop go out in one write (a head, its body and its end:
        one TLS record, one segment), not one write each."""
        if not self._flush_pending:
            self._flush_pending = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._flush_pending = False
        data = self.h2.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)
            # DATA waits for the socket to drain (at most a frame per stream is queued past that), so
            # this much queued means frames the client provokes (PING, SETTINGS acks) while not reading.
            if self.transport.get_write_buffer_size() > MAX_CONTROL_BACKLOG:
                self._close()

    # -- lifetime --------------------------------------------------------------------------------------

    def _arm_idle(self, timeout: float) -> None:
        self._disarm_idle()
        self._idle = asyncio.get_running_loop().call_later(timeout, self._idle_expired)

    def _disarm_idle(self) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None

    def _idle_expired(self) -> None:
        self._idle = None
        if not self.streams and not self.closed:
            self.h2.close_connection(ErrorCodes.NO_ERROR)
            self._close()

    def _close(self) -> None:
        if self.closed:
            return
        self.flush()
        self.closed = True
        self._disarm_idle()
        if self.transport is not None:
            self.transport.close()
        for stream in list(self.streams.values()):
            stream.gone = True
            stream.arrived.set()
            stream.window.set()
            if stream.task is not None:
                stream.task.cancel()
        self.resume_writing()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.transport = None
        self._close()
        if not self.done.done():
            self.done.set_result(None)

    # -- what a stop sees (``Registry.servers``) ---------------------------------------------------------

    @property
    def connections(self) -> list[H2Server]:
        return [] if self.closed else [self]

    def pre_shutdown(self) -> None:
        """GOAWAY: streams already open are answered, new ones are refused."""
        if self.closed or self.draining:
            return
        self.draining = True
        self.flush()
        # Written by hand: h2's close_connection would end its state machine, and the streams still open
        # could not be answered. Streams the client opens after it are refused (``_request``).
        goaway = GoAwayFrame(0)
        goaway.last_stream_id = self.h2.highest_inbound_stream_id
        goaway.error_code = ErrorCodes.NO_ERROR
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(goaway.serialize())
        if not self.streams:
            self._close()

    async def shutdown(self, timeout: float | None = None) -> None:
        self.pre_shutdown()
        if self.closed:
            # Closing already: only TLS's close_notify exchange is left, and a client that does not read
            # (an idle pooled connection) never answers it; a stop does not wait the drain out for that.
            timeout = min(timeout, _CLOSE_GRACE) if timeout is not None else _CLOSE_GRACE
        try:
            await asyncio.wait_for(asyncio.shield(self.done), timeout)
        except asyncio.TimeoutError:
            self._close()
            if self.transport is not None:
                self.transport.abort()
