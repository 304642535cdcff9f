"""HTTP/2 to upstreams that offer it by ALPN (asked only when the client itself speaks HTTP/2).

``H2Upstream.send`` returns an ``UpstreamResponse`` (status, headers, body as it arrives, trailers),
or ``None`` when the origin chose HTTP/1.1 (remembered for a while): the caller then takes the
HTTP/1.1 path, before anything of the request was sent. Connections are kept per origin and
multiplexed up to the peer's SETTINGS_MAX_CONCURRENT_STREAMS. Flow control is backpressure both
ways: the answer's DATA is acknowledged only as the pipeline reads it, and the request body is sent
only as the upstream's windows allow. TLS is verified (the same trust as HTTP/1.1), redirects are
answers like any other (never followed), and failures are the ``UpstreamError`` tree.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping
from typing import Any, cast

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    Event,
    InformationalResponseReceived,
    RemoteSettingsChanged,
    ResponseReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from h2.exceptions import H2Error, ProtocolError, StreamClosedError
from h2.settings import SettingCodes
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from policyproxy.errors import UpstreamBroken, UpstreamError, UpstreamTimeout, UpstreamTLSError, UpstreamUnreachable
from policyproxy.proxy.resolver import Resolver

STREAM_WINDOW = 256 * 1024        # what the upstream may send on one stream before the client reads it
CONNECTION_WINDOW = 1024 * 1024
MERGE = 64 * 1024                 # received DATA smaller than this is held in one buffer per stream
MAX_ENCODER_TABLE = 4096          # HPACK dynamic table kept for what we send, whatever the peer allows
HTTP1_MEMORY = 600.0              # an origin that chose HTTP/1.1 is not asked again for this long
IDLE_TIMEOUT = 60.0               # a connection with no stream open is closed (as the HTTP/1.1 pool does)
_CONNECTION_FIELDS = frozenset({"host", "connection", "keep-alive", "proxy-connection", "transfer-encoding",
                                "upgrade", "te"})


def _text(value: bytes) -> str:
    return value.decode("utf-8", "surrogateescape")


def hold(received: deque[list[Any]], data: bytes, flow: int) -> None:
    """Keep a DATA frame's bytes until they are read, merged into the last buffer while it is small:
    flow control bounds the bytes held, this bounds the objects (held one per frame, 1-byte frames
    cost ~130 bytes of memory per byte of window)."""
    last = received[-1] if received else None
    if last is not None and len(last[0]) + len(data) <= MERGE:
        last[0] += data
        last[1] += flow
    else:
        received.append([bytearray(data), flow])


class H2Answer:
    """``UpstreamResponse`` for one HTTP/2 stream."""

    def __init__(self, conn: _Conn, stream_id: int) -> None:
        self.conn = conn
        self.stream_id = stream_id
        self.status = 0
        self.reason = ""
        self.items: list[tuple[str, str]] = []
        self.headers: Mapping[str, str] = CIMultiDictProxy(CIMultiDict())
        self.head: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.received: deque[list[Any]] = deque()   # [data, flow-controlled length] (``hold``)
        self.arrived = asyncio.Event()
        self.window = asyncio.Event()
        self.ended = False
        self.error: str | None = None
        self._trailers: list[tuple[str, str]] = []
        self.uploader: asyncio.Task[None] | None = None

    def header_items(self) -> list[tuple[str, str]]:
        return list(self.items)

    def body_complete(self) -> bool:
        return self.ended

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.chunks()])

    async def chunks(self) -> AsyncIterator[bytes]:
        timeout = self.conn.read_timeout
        while True:
            if self.received:
                data, flow = self.received.popleft()
                data = bytes(data)
                self.conn.consumed(self.stream_id, flow)
                if data:
                    yield data
                continue
            if self.ended:
                return
            if self.error is not None:
                raise UpstreamBroken(f"the answer's body broke off: {self.error}")
            self.arrived.clear()
            try:
                await asyncio.wait_for(self.arrived.wait(), timeout)
            except asyncio.TimeoutError:
                raise UpstreamBroken("the answer's body broke off: the upstream went silent") from None

    def trailers(self) -> list[tuple[str, str]]:
        return list(self._trailers)

    def release(self) -> None:
        if self.uploader is not None and not self.uploader.done():
            self.uploader.cancel()
        if not self.ended and self.error is None:
            self.conn.reset(self.stream_id, ErrorCodes.CANCEL)
        self.conn.forget(self.stream_id)

    def fail(self, why: str) -> None:
        if self.error is None:
            self.error = why
        self.arrived.set()
        self.window.set()
        if not self.head.done():
            self.head.set_exception(UpstreamUnreachable(f"upstream closed the stream: {why}"))
            self.head.exception()   # retrieved: ``send`` may have stopped waiting (timeout, release)


class WriteGate(asyncio.Protocol):
    """An h2 connection's side of the socket's flow control: ``_writable`` is a future while the
    transport's write buffer is over its high-water mark (senders await it). The client-facing and the
    upstream connection send DATA the same way: ``send_paced``."""

    _writable: asyncio.Future[None] | None = None
    h2: H2Connection

    def pause_writing(self) -> None:
        if self._writable is None:
            self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None:
            if not self._writable.done():
                self._writable.set_result(None)
            self._writable = None

    def flush(self) -> None:
        """Write what ``h2`` has queued."""
        raise NotImplementedError

    async def send_paced(self, stream_id: int, data: bytes, window: asyncio.Event, gone: Callable[[], bool],
                         error: Callable[[str], Exception]) -> None:
        """``data`` as DATA frames, each when the stream's window (``window`` is set when it reopens)
        and the socket (``_writable``) allow: backpressure both ways, never more than a frame per
        stream queued past the socket's high-water mark. Once the stream or the connection is gone
        (``gone()``, or h2 says the stream is closed), raises ``error(why)``."""
        view = memoryview(data)
        while view:
            if gone():
                raise error("the stream is gone")
            try:
                size = min(self.h2.local_flow_control_window(stream_id), self.h2.max_outbound_frame_size)
            except StreamClosedError:
                raise error("the stream is closed") from None
            if size <= 0:
                window.clear()
                await window.wait()
                continue
            piece, view = view[:size], view[size:]
            self.h2.send_data(stream_id, bytes(piece))
            self.flush()
            if self._writable is not None:
                await self._writable


class _Conn(WriteGate):
    """One HTTP/2 connection to an origin."""

    def __init__(self, origin: tuple[str, int], read_timeout: float) -> None:
        self.origin = origin
        self.read_timeout = read_timeout
        self.h2 = H2Connection(H2Configuration(client_side=True, header_encoding=None))
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, H2Answer] = {}
        self.closed = False
        self.going_away = False
        self.slot = asyncio.Event()
        self.speaks_h2 = False
        self._idle: asyncio.TimerHandle | None = None
        self._writable: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Called once TLS is up: the preface goes out at once (before the server's SETTINGS are read)."""
        self.transport = cast(asyncio.Transport, transport)   # uvloop's are not asyncio.Transport subclasses
        ssl_object = transport.get_extra_info("ssl_object")
        self.speaks_h2 = ssl_object is not None and ssl_object.selected_alpn_protocol() == "h2"
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.speaks_h2:
            self.start()
        else:
            self.closed = True   # the opener closes it and remembers the origin as HTTP/1.1

    def start(self) -> None:
        self.h2.local_settings.update({SettingCodes.ENABLE_PUSH: 0})
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(CONNECTION_WINDOW - self.h2.inbound_flow_control_window)
        self.flush()

    def usable(self) -> bool:
        return (not self.closed and not self.going_away
                and self.h2.open_outbound_streams < self.h2.remote_settings.max_concurrent_streams)

    # -- receiving ---------------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if not self.speaks_h2:
            return
        try:
            events = self.h2.receive_data(data)
        except ProtocolError as exc:
            self.flush()
            self.lost(f"protocol error ({type(exc).__name__})")
            return
        for event in events:
            self._dispatch(event)
        self.flush()

    def _dispatch(self, event: Event) -> None:
        stream_id = getattr(event, "stream_id", None)
        answer = self.streams.get(stream_id) if stream_id else None
        if isinstance(event, ResponseReceived) and answer is not None:
            items = [(_text(bytes(k)), _text(bytes(v))) for k, v in event.headers or ()]
            answer.status = int(next((v for k, v in items if k == ":status"), "0") or 0)
            answer.items = [(k, v) for k, v in items if not k.startswith(":")]
            answer.headers = CIMultiDictProxy(CIMultiDict(answer.items))
            if event.stream_ended is not None:
                answer.ended = True
            if not answer.head.done():
                answer.head.set_result(None)
        elif isinstance(event, DataReceived):
            if answer is None:
                self.h2.acknowledge_received_data(event.flow_controlled_length, stream_id or 0)
                return
            hold(answer.received, event.data or b"", event.flow_controlled_length)
            answer.arrived.set()
        elif isinstance(event, TrailersReceived) and answer is not None:
            answer._trailers = [(_text(bytes(k)), _text(bytes(v))) for k, v in event.headers or ()]
            answer.ended = True
            answer.arrived.set()
        elif isinstance(event, StreamEnded) and answer is not None:
            answer.ended = True
            answer.arrived.set()
        elif isinstance(event, StreamReset) and answer is not None:
            answer.fail(f"reset by the upstream (error code {event.error_code})")
        elif isinstance(event, (WindowUpdated, RemoteSettingsChanged)):
            if self.h2.encoder.header_table_size > MAX_ENCODER_TABLE:   # what the origin allows, not what we keep
                self.h2.encoder.header_table_size = MAX_ENCODER_TABLE
            for each in self.streams.values():
                each.window.set()
            self.slot.set()
        elif isinstance(event, ConnectionTerminated):
            self.going_away = True
            last = event.last_stream_id if event.last_stream_id is not None else 0
            for sid, each in list(self.streams.items()):
                if sid > last:
                    each.fail("the upstream went away (GOAWAY)")
        elif isinstance(event, InformationalResponseReceived):
            pass   # 1xx: the client already had its 100-continue from the proxy

    # -- sending -----------------------------------------------------------------------------------------

    async def request(self, method: str, url: URL, headers: list[tuple[str, str]], data: Any) -> H2Answer:
        authority = next((v for k, v in headers if k.lower() == "host"), url.raw_authority)
        fields: list[tuple[bytes, bytes]] = [
            (b":method", method.encode()), (b":scheme", b"https"), (b":authority", authority.encode()),
            (b":path", (url.raw_path_qs or "/").encode()),
        ]
        fields += [(k.lower().encode("latin-1"), v.encode("utf-8", "surrogateescape")) for k, v in headers
                   if k.lower() not in _CONNECTION_FIELDS]
        fields.append((b"te", b"trailers"))   # the proxy relays trailers (gRPC servers ask for this)
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        stream_id = self.h2.get_next_available_stream_id()
        answer = H2Answer(self, stream_id)
        self.streams[stream_id] = answer
        try:
            self.h2.send_headers(stream_id, fields, end_stream=data is None)
        except ProtocolError:   # a field h2 refuses (its message may quote a value: never shown)
            self.streams.pop(stream_id, None)
            raise UpstreamUnreachable("the request's header fields are not valid in HTTP/2") from None
        # The stream's window is widened by WINDOW_UPDATE, not by SETTINGS_INITIAL_WINDOW_SIZE: a setting
        # is applied by each side at its own moment (some peers never widen streams opened before it),
        # an update is counted the same way by both.
        self.h2.increment_flow_control_window(STREAM_WINDOW - self.h2.local_settings.initial_window_size, stream_id)
        self.flush()
        if data is not None:
            answer.uploader = asyncio.get_running_loop().create_task(self._upload(answer, data))
        return answer

    async def _upload(self, answer: H2Answer, data: Any) -> None:
        try:
            if isinstance(data, (bytes, bytearray, memoryview)):
                await self.send_data(answer, bytes(data))
            else:
                assert isinstance(data, AsyncIterable)
                async for chunk in data:
                    await self.send_data(answer, bytes(chunk))
            if not self.closed and answer.error is None:
                self.h2.end_stream(answer.stream_id)
                self.flush()
        except (StreamClosedError, ConnectionError):
            pass   # the upstream answered (or reset) before the body was all sent
        except (H2Error, OSError) as exc:
            self.reset(answer.stream_id, ErrorCodes.CANCEL)
            answer.fail(f"the request body could not be sent ({type(exc).__name__})")
        except Exception as exc:   # the client's body broke off (its stream was reset): cancel upstream
            self.reset(answer.stream_id, ErrorCodes.CANCEL)
            answer.fail(f"the request body broke off ({type(exc).__name__})")

    async def send_data(self, answer: H2Answer, data: bytes) -> None:
        await self.send_paced(answer.stream_id, data, answer.window,
                              lambda: self.closed or answer.error is not None, ConnectionError)

    def consumed(self, stream_id: int, flow: int) -> None:
        if flow and not self.closed:
            self.h2.acknowledge_received_data(flow, stream_id)
            self.flush()

    def reset(self, stream_id: int, code: ErrorCodes) -> None:
        if self.closed:
            return
        try:
            self.h2.reset_stream(stream_id, code)
        except (StreamClosedError, ProtocolError):
            return
        self.flush()

    def forget(self, stream_id: int) -> None:
        self.streams.pop(stream_id, None)
        self.slot.set()
        if not self.streams and not self.closed and self._idle is None:
            self._idle = asyncio.get_running_loop().call_later(IDLE_TIMEOUT, self._idle_expired)

    def _idle_expired(self) -> None:
        self._idle = None
        if not self.streams:
            self.close()

    def flush(self) -> None:
        data = self.h2.data_to_send()
        if data and self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    # -- lifetime ----------------------------------------------------------------------------------------

    def lost(self, why: str) -> None:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        if self.closed:
            return
        self.closed = True
        if self.transport is not None:
            self.transport.close()
        for answer in list(self.streams.values()):
            answer.fail(why)
        self.resume_writing()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.transport = None
        self.lost("the upstream closed the connection")

    def close(self) -> None:
        if not self.closed:
            self.h2.close_connection()
            self.flush()
        self.lost("the proxy is stopping")


class H2Upstream:
    """The pool of HTTP/2 connections to origins, and what origins chose HTTP/1.1."""

    def __init__(self, resolver: Resolver, tls: ssl.SSLContext, connect_timeout: float, read_timeout: float) -> None:
        self.resolver = resolver
        self.tls = tls
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.pool: dict[tuple[str, int], list[_Conn]] = {}
        self.http1: OrderedDict[tuple[str, int], float] = OrderedDict()
        self._opening: dict[tuple[str, int], asyncio.Future[_Conn | None]] = {}

    async def send(self, method: str, url: URL, headers: list[tuple[str, str]], data: Any) -> H2Answer | None:
        """The answer head (its body still to read), or None when the origin speaks HTTP/1.1 only."""
        origin = (url.host or "", url.port or 443)
        chose = self.http1.get(origin)
        if chose is not None:
            if chose > time.monotonic():
                return None
            del self.http1[origin]
        conn = await self._connection(origin)
        if conn is None:
            return None
        try:
            answer = await conn.request(method, url, headers, data)
        except (H2Error, OSError) as exc:
            conn.lost(type(exc).__name__)
            raise UpstreamUnreachable(f"upstream {origin[0]} failed: {type(exc).__name__}") from None
        try:
            await asyncio.wait_for(asyncio.shield(answer.head), self.read_timeout)
        except asyncio.TimeoutError:
            answer.release()
            raise UpstreamTimeout(f"{origin[0]}:{origin[1]} did not answer in time") from None
        except BaseException:
            answer.release()
            raise
        return answer

    async def _connection(self, origin: tuple[str, int]) -> _Conn | None:
        conns = self.pool.get(origin, [])
        conns[:] = [c for c in conns if not c.closed]
        for each in conns:
            if each.usable():
                return each
        pending = self._opening.get(origin)
        if pending is not None:   # one handshake per origin at a time; the others share its connection
            shared = await asyncio.shield(pending)
            if shared is None or shared.usable():
                return shared
        future: asyncio.Future[_Conn | None] = asyncio.get_running_loop().create_future()
        self._opening[origin] = future
        try:
            conn = await self._open(origin)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()   # retrieved: waiters see it, nobody else must
            raise
        else:
            future.set_result(conn)
        finally:
            self._opening.pop(origin, None)
        if conn is not None:
            self.pool.setdefault(origin, conns)
            self.pool[origin].append(conn)
        return conn

    async def _open(self, origin: tuple[str, int]) -> _Conn | None:
        host, port = origin
        try:   # the answer the policy checked (as aiohttp's connector gets it), never a fresh one
            addresses = [result["host"] for result in await self.resolver.resolve(host, port)]
        except OSError:
            addresses = []
        loop = asyncio.get_running_loop()
        error: UpstreamError = UpstreamUnreachable(f"cannot connect to {host}:{port}: cannot resolve")
        for address in addresses:
            conn = _Conn(origin, self.read_timeout)

            def protocol(conn: _Conn = conn) -> _Conn:
                return conn

            try:
                transport, _ = await asyncio.wait_for(
                    loop.create_connection(protocol, address, port, ssl=self.tls, server_hostname=host.strip("[]")),
                    self.connect_timeout)
            except asyncio.TimeoutError:
                error = UpstreamTimeout(f"cannot connect to {host}:{port}: timed out")
                continue
            except ssl.SSLCertVerificationError as exc:
                raise UpstreamTLSError(f"upstream TLS certificate of {host} failed verification: "
                                       f"{exc.verify_message}") from None
            except ssl.SSLError as exc:
                raise UpstreamTLSError(f"TLS with {host} failed: {exc.reason}") from None
            except OSError as exc:
                error = UpstreamUnreachable(f"cannot connect to {host}:{port}: {exc.strerror or type(exc).__name__}")
                continue
            if not conn.speaks_h2:
                transport.close()
                self.http1[origin] = time.monotonic() + HTTP1_MEMORY
                if len(self.http1) > 4096:
                    self.http1.popitem(last=False)
                return None
            return conn
        raise error

    def close(self) -> None:
        for conns in self.pool.values():
            for conn in conns:
                conn.close()
        self.pool.clear()
