"""The two listeners' entries: they only parse (an HTTP CONNECT head, or a SOCKS5 handshake) and hand
the connection over, to ``opening.open_tunnel`` or, for any other HTTP request, to the HTTP server
(``h1_server.H1Listener``).

Each has ``head_timeout`` seconds for its whole head or handshake, and counts against ``HeadGate``
until then (beyond its limit a new connection is closed at once).
"""

from __future__ import annotations

import asyncio
import enum
import errno
import hmac
import logging
import resource
import socket
from collections.abc import Callable
from typing import cast

from policyproxy import responses
from policyproxy.proxy import socks5_codec as socks
from policyproxy.proxy.connection import Connection
from policyproxy.proxy.context import Context
from policyproxy.proxy.h1_server import Taker
from policyproxy.proxy.handlers import peer
from policyproxy.proxy.headers import proxy_user
from policyproxy.proxy.opening import open_tunnel
from policyproxy.proxy.target import Refusal, read_connect
from policyproxy.reasons import Protocol

# Descriptors kept for what is not a client connection: listeners, the event loop, log and audit
# files, CA and leaf files, worker pipes, idle upstream keep-alive connections beyond one per client.
FD_RESERVE = 64
log = logging.getLogger("policyproxy")
_OUT_OF_FDS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


def connection_budget() -> int:
    """How many client connections may be open at once: each may hold two descriptors (the client
    and its upstream), under the soft ``RLIMIT_NOFILE`` read now (it can change while running)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1 << 20
    return max(8, (soft - FD_RESERVE) // 2)


class Listener:
    """A listening socket that stops accepting at the connection budget.

    asyncio's own server accepts until ``accept()`` fails with EMFILE, then logs a traceback, and the
    connections it did accept fail upstream with 502. Here, like asyncio's server, every readiness
    accepts what the backlog holds, but only up to the budget: then the socket is unwatched, clients
    wait in the kernel's backlog, and it is watched again once connections have closed. An accept
    that still runs out of descriptors waits and retries. ``close()`` and ``sockets`` are what
    ``ProxyServer.stop`` and ``start`` use of an asyncio server.
    """

    BACKLOG = 1024
    RETRY = 0.02      # seconds between looks at a full budget
    NO_FDS_RETRY = 0.1

    def __init__(self, ctx: Context, sock: socket.socket, factory: Callable[[], asyncio.Protocol]) -> None:
        self.ctx = ctx
        self.sockets = [sock]
        self.factory = factory
        self.loop = asyncio.get_running_loop()
        self.watching = False
        self.closed = False
        self.warned = False
        self._watch()

    @classmethod
    async def open(cls, ctx: Context, host: str, port: int, factory: Callable[[], asyncio.Protocol]) -> Listener:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host, port), family=family, backlog=cls.BACKLOG)
        sock.setblocking(False)
        return cls(ctx, sock, factory)

    def _watch(self) -> None:
        if not self.closed and not self.watching:
            self.loop.add_reader(self.sockets[0].fileno(), self._accept_ready)
            self.watching = True

    def _unwatch(self, retry: float) -> None:
        if self.watching:
            self.loop.remove_reader(self.sockets[0].fileno())
            self.watching = False
        self.loop.call_later(retry, self._resume)

    def _resume(self) -> None:
        if self.closed:
            return
        if self._full():
            self.loop.call_later(self.RETRY, self._resume)
            return
        self._watch()
        self._accept_ready()

    def _accept_ready(self) -> None:
        sock = self.sockets[0]
        for _ in range(self.BACKLOG):
            if self._full():
                self._unwatch(self.RETRY)
                return
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno not in _OUT_OF_FDS:
                    log.warning("accept on %s failed: %s", sock.getsockname(), exc.strerror)
                    return
                if not self.warned:
                    log.warning("out of file descriptors (%s): new connections wait in the backlog",
                                         exc.strerror)
                    self.warned = True
                self._unwatch(self.NO_FDS_RETRY)
                return
            conn.setblocking(False)
            # asyncio sets TCP_NODELAY only on sockets made with proto=IPPROTO_TCP (uvloop always does):
            # without it a tunnel's first small writes wait out Nagle and delayed ACKs (~40 ms).
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.ctx.registry.clients_opening += 1
            self.ctx.registry.spawn(self._start(conn))

    async def _start(self, conn: socket.socket) -> None:
        try:
            transport, _ = await self.loop.connect_accepted_socket(self.factory, conn)
        except OSError:
            conn.close()
            return
        finally:
            self.ctx.registry.clients_opening -= 1
        self.ctx.registry.clients.add(transport)

    def _full(self) -> bool:
        app = self.ctx.registry
        budget = connection_budget()
        if len(app.clients) + app.clients_opening >= min(budget, app.clients_pruned + 256):
            for transport in [t for t in app.clients if t.is_closing()]:   # closed ones leave in batches
                app.clients.discard(transport)
            app.clients_pruned = len(app.clients)
        return len(app.clients) + app.clients_opening >= budget

    def close(self) -> None:
        self.closed = True
        if self.watching:
            self.loop.remove_reader(self.sockets[0].fileno())
            self.watching = False
        self.sockets[0].close()


class _Entry(asyncio.Protocol):
    """A listener's first bytes: the client has ``head_timeout`` seconds to say where it goes."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.deadline = 0.0
        self.counted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's are not asyncio.Transport subclasses, hence a cast, not a check).
        self.transport = transport = cast(asyncio.Transport, transport)
        if not self.ctx.heads.enter():
            transport.abort()   # too many connections still sending a head
            return
        self.counted = True
        loop = asyncio.get_running_loop()
        self.deadline = loop.time() + self.ctx.options.head_timeout
        self.timer = loop.call_at(self.deadline, self._timeout)

    def _timeout(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def handed_over(self) -> None:
        """The head is read: no longer timed or counted here."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.counted:
            self.counted = False
            self.ctx.heads.leave()

    def connection_lost(self, exc: Exception | None) -> None:
        self.handed_over()


class HttpEntry(_Entry):
    """Reads the first request line; CONNECT is read here, anything else goes to the HTTP server at once."""

    def __init__(self, ctx: Context, plain: Taker) -> None:   # h1_server.H1Listener
        super().__init__(ctx)
        self.plain = plain
        self.buffer = bytearray()

    def _timeout(self) -> None:
        if self.transport is not None:
            self.transport.write(responses.to_bytes(responses.head_timeout()))
        super()._timeout()

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        limit = self.ctx.options.max_head_bytes
        line_end = self.buffer.find(b"\n")
        if line_end < 0:
            if len(self.buffer) > limit:
                self._fail(431, "request line too long")
            return
        if not self.buffer.startswith(b"CONNECT "):
            self.handed_over()
            self.transport.pause_reading()
            self.plain.take(self.transport, bytes(self.buffer), self.deadline)
            return
        head_end = self.buffer.find(b"\r\n\r\n")
        if head_end < 0:
            if len(self.buffer) > limit:
                self._fail(431, "request head too large")
            elif b"\n\n" in self.buffer:
                self._fail(400, "request head lines must end with CRLF")
            return
        self.transport.pause_reading()
        self._connect(bytes(self.buffer[:head_end]), bytes(self.buffer[head_end + 4:]))

    def _fail(self, status: int, message: str) -> None:
        assert self.transport is not None
        self.handed_over()
        self.transport.write(responses.to_bytes(responses.text_answer(status, message)))
        self.transport.close()

    def _connect(self, head: bytes, rest: bytes) -> None:
        transport = self.transport
        assert transport is not None
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        parts = request_line.split(" ")
        if len(parts) != 3 or parts[2] not in ("HTTP/1.1", "HTTP/1.0"):
            return self._fail(400, "malformed CONNECT request line")
        if any(not line or line[0] in " \t" or ":" not in line for line in header_lines):
            return self._fail(400, "malformed header line (obs-fold or missing colon)")
        target = read_connect(parts[1])
        if isinstance(target, Refusal):
            return self._fail(target.status, target.message)
        if rest:
            return self._fail(400, "data sent before the CONNECT was answered")
        identity = None
        credentials = self.ctx.live.proxy_credentials
        if credentials is not None:
            given = next((line.partition(":")[2] for line in header_lines
                          if line.partition(":")[0].strip().lower() == "proxy-authorization"), None)
            identity = proxy_user(given, credentials)
            if identity is None:
                self.handed_over()
                transport.write(responses.to_bytes(responses.auth_required()))
                transport.close()
                return None
        self.handed_over()
        host, port = target
        conn = Connection(peer(transport), self.ctx.connection_id(), identity, host, port, Protocol.HTTPS_CONNECT)
        self.ctx.registry.spawn(open_tunnel(self.ctx, transport, conn))
        return None


class SocksState(enum.Enum):
    GREETING = "greeting"
    AUTH = "auth"
    REQUEST = "request"
    DONE = "done"


class Socks5Entry(_Entry):
    """RFC 1928 handshake (with RFC 1929 auth when configured), then ``open_tunnel``."""

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self.buffer = b""
        self.state = SocksState.GREETING
        self.user: str | None = None

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        if self.state is SocksState.DONE:
            return
        self.buffer += data
        try:
            self._advance()
        except socks.Socks5Error as exc:
            if self.state is SocksState.REQUEST:
                self.transport.write(responses.socks_reply(exc.reply))
            self.ctx.reporter.log.info("socks5 from %s refused: %s", peer(self.transport), exc)
            self.handed_over()
            self.transport.close()

    def _advance(self) -> None:
        assert self.transport is not None
        credentials = self.ctx.live.socks_credentials
        if self.state is SocksState.GREETING:
            parsed = socks.parse_greeting(self.buffer)
            if parsed is None:
                return
            methods, used = parsed
            self.buffer = self.buffer[used:]
            wanted = socks.USER_PASS if credentials else socks.NO_AUTH
            if wanted not in methods:
                self.transport.write(socks.method_reply(socks.NO_ACCEPTABLE))
                raise socks.Socks5Error("no acceptable authentication method")
            self.transport.write(socks.method_reply(wanted))
            self.state = SocksState.AUTH if credentials else SocksState.REQUEST
        if self.state is SocksState.AUTH:
            parsed_auth = socks.parse_user_pass(self.buffer)
            if parsed_auth is None:
                return
            (user, password), used = parsed_auth
            self.buffer = self.buffer[used:]
            ok = credentials is not None and hmac.compare_digest(f"{user}\0{password}".encode(),
                                                                 f"{credentials[0]}\0{credentials[1]}".encode())
            self.user = user if ok else None
            self.transport.write(socks.auth_reply(ok))
            if not ok:
                raise socks.Socks5Error("bad username or password")
            self.state = SocksState.REQUEST
        if self.state is SocksState.REQUEST:
            parsed_request = socks.parse_request(self.buffer)
            if parsed_request is None:
                return
            request, used = parsed_request
            if request.command != socks.CMD_CONNECT:
                name = {socks.CMD_BIND: "BIND", socks.CMD_UDP_ASSOCIATE: "UDP ASSOCIATE"}.get(request.command, "?")
                raise socks.Socks5Error(f"{name} is not supported (CONNECT only)", socks.COMMAND_NOT_SUPPORTED)
            if request.port == 0:
                raise socks.Socks5Error("port 0 is not a destination", socks.ADDRESS_NOT_SUPPORTED)
            if self.buffer[used:]:
                raise socks.Socks5Error("data sent before the CONNECT was answered")
            self.state = SocksState.DONE
            self.handed_over()
            self.transport.pause_reading()
            conn = Connection(peer(self.transport), self.ctx.connection_id(), self.user, request.host, request.port,
                              Protocol.SOCKS5_TCP)
            self.ctx.registry.spawn(open_tunnel(self.ctx, self.transport, conn))
