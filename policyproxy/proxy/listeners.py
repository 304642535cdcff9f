"""The two listeners' first steps: read a request head (HTTP) or a handshake (SOCKS5), decide, and
hand the connection on (aiohttp's parser, a byte pipe, or TLS interception)."""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import hmac
import resource
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

from policyproxy.policy.model import Decision, Target
from policyproxy.proxy import socks5_codec as socks
from policyproxy.proxy import tunnel as pipes
from policyproxy.proxy.forward import Tunnel
from policyproxy.proxy.headers import proxy_user
from policyproxy.proxy.intercept import connect_upstream, intercept_tls, peek, serve_http
from policyproxy.reasons import Mode, Protocol, Reason, Source, Verdict
from policyproxy.responses import block_answer
from policyproxy.tls.clienthello import MalformedHello, NotTls, parse_client_hello

if TYPE_CHECKING:
    from policyproxy.proxy.app import ProxyApp

_REASONS = {400: "Bad Request", 403: "Forbidden", 405: "Method Not Allowed", 407: "Proxy Authentication Required",
            408: "Request Timeout", 431: "Request Header Fields Too Large",
            502: "Bad Gateway", 504: "Gateway Timeout"}


def raw_response(status: int, body: bytes, headers: tuple[tuple[str, str], ...] = (),
                 content_type: str = "text/plain; charset=utf-8") -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}"]
    names = {k.lower() for k, _ in headers}
    lines += [f"{k}: {v}" for k, v in headers]
    if "content-type" not in names:
        lines.append(f"content-type: {content_type}")
    lines += [f"content-length: {len(body)}", "connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1") + body


def _peer(transport: asyncio.BaseTransport) -> str:
    peer = transport.get_extra_info("peername")
    return str(peer[0]) if peer else "unknown"


# Descriptors kept for what is not a client connection: listeners, the event loop, log and audit
# files, CA and leaf files, worker pipes, idle upstream keep-alive connections beyond one per client.
FD_RESERVE = 64
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
    ``ProxyApp.stop`` and ``start`` use of an asyncio server.
    """

    BACKLOG = 1024
    RETRY = 0.02      # seconds between looks at a full budget
    NO_FDS_RETRY = 0.1

    def __init__(self, app: ProxyApp, sock: socket.socket, factory: Callable[[], asyncio.Protocol]) -> None:
        self.app = app
        self.sockets = [sock]
        self.factory = factory
        self.loop = asyncio.get_running_loop()
        self.watching = False
        self.closed = False
        self.warned = False
        self._watch()

    @classmethod
    async def open(cls, app: ProxyApp, host: str, port: int, factory: Callable[[], asyncio.Protocol]) -> Listener:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host, port), family=family, backlog=cls.BACKLOG)
        sock.setblocking(False)
        return cls(app, sock, factory)

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
                    self.app.log.warning("accept on %s failed: %s", sock.getsockname(), exc.strerror)
                    return
                if not self.warned:
                    self.app.log.warning("out of file descriptors (%s): new connections wait in the backlog",
                                         exc.strerror)
                    self.warned = True
                self._unwatch(self.NO_FDS_RETRY)
                return
            conn.setblocking(False)
            self.app.clients_opening += 1
            self.app.spawn(self._start(conn))

    async def _start(self, conn: socket.socket) -> None:
        try:
            transport, _ = await self.loop.connect_accepted_socket(self.factory, conn)
        except OSError:
            conn.close()
            return
        finally:
            self.app.clients_opening -= 1
        self.app.clients.add(transport)

    def _full(self) -> bool:
        app = self.app
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


class _Opening(asyncio.Protocol):
    """A listener's first bytes: the client has ``head_timeout`` seconds to say where it goes."""

    def __init__(self, app: ProxyApp) -> None:
        self.app = app
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.timer = asyncio.get_running_loop().call_later(self.app.options.head_timeout, self._timeout)

    def _timeout(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()


class HttpEntry(_Opening):
    """Reads the first request line; CONNECT is ours, anything else goes to aiohttp at once."""

    def __init__(self, app: ProxyApp) -> None:
        super().__init__(app)
        self.buffer = bytearray()

    def _timeout(self) -> None:
        if self.transport is not None:
            self.transport.write(raw_response(408, b"policyproxy: request head not received in time\n"))
        super()._timeout()

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        line_end = self.buffer.find(b"\n")
        if line_end < 0:
            if len(self.buffer) > self.app.options.max_head_bytes:
                self._fail(431, "request line too long")
            return
        if not self.buffer.startswith(b"CONNECT "):
            self._to_aiohttp()
            return
        head_end = self.buffer.find(b"\r\n\r\n")
        if head_end < 0:
            if len(self.buffer) > self.app.options.max_head_bytes:
                self._fail(431, "request head too large")
            elif b"\n\n" in self.buffer:
                self._fail(400, "request head lines must end with CRLF")
            return
        if self.timer is not None:
            self.timer.cancel()
        self.transport.pause_reading()
        head, rest = bytes(self.buffer[:head_end]), bytes(self.buffer[head_end + 4:])
        self.app.spawn(self._connect(head, rest))

    def _to_aiohttp(self) -> None:
        assert self.transport is not None
        if self.timer is not None:
            self.timer.cancel()
        handler = self.app.plain_server()
        self.transport.set_protocol(handler)
        handler.connection_made(self.transport)
        handler.data_received(bytes(self.buffer))

    def _fail(self, status: int, message: str) -> None:
        assert self.transport is not None
        self.transport.write(raw_response(status, f"policyproxy: {message}\n".encode()))
        self.transport.close()

    async def _connect(self, head: bytes, rest: bytes) -> None:
        transport = self.transport
        assert transport is not None
        try:
            text = head.decode("latin-1")
        except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
            return self._fail(400, "undecodable request head")
        request_line, *header_lines = text.split("\r\n")
        parts = request_line.split(" ")
        if len(parts) != 3 or parts[2] not in ("HTTP/1.1", "HTTP/1.0"):
            return self._fail(400, "malformed CONNECT request line")
        if any(not line or line[0] in " \t" or ":" not in line for line in header_lines):
            return self._fail(400, "malformed header line (obs-fold or missing colon)")
        authority = parts[1]
        host, _, port_text = authority.rpartition(":")
        if not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            return self._fail(400, f"CONNECT target must be host:port, got {authority!r}")
        if rest:
            return self._fail(400, "data sent before the CONNECT was answered")
        identity = None
        credentials = self.app.options.proxy_credentials
        if credentials is not None:
            given = next((line.partition(":")[2] for line in header_lines
                          if line.partition(":")[0].strip().lower() == "proxy-authorization"), None)
            identity = proxy_user(given, credentials)
            if identity is None:
                transport.write(raw_response(407, b"policyproxy: proxy authentication required\n",
                                             (("proxy-authenticate", 'Basic realm="policyproxy"'),)))
                transport.close()
                return None
        await open_target(self.app, transport, host.strip("[]") if host.startswith("[") else host, int(port_text),
                          Protocol.HTTPS_CONNECT, _peer(transport), identity)


async def open_target(app: ProxyApp, transport: asyncio.Transport, host: str, port: int, protocol: Protocol,
                      client: str, identity: str | None = None) -> None:
    """Decide a CONNECT (HTTP or SOCKS5) and answer it: deny, tunnel, or intercept."""
    socks5 = protocol is Protocol.SOCKS5_TCP
    target = await app.target(host, port, protocol)
    decision = app.policy.decide(target)
    connection_id = app.connection_id()
    if not decision.allowed:
        answer = block_answer(decision)
        app.report(decision, client, answer.status, connection_id)
        transport.write(socks.reply(socks.NOT_ALLOWED) if socks5
                        else raw_response(answer.status, answer.body, answer.headers))
        transport.close()
        return
    if not decision.intercept:
        upstream = (await connect_upstream(app, host, target.addresses, port)
                    if target.addresses or app.upstream_proxy("https", host) else "cannot resolve")
        if not isinstance(upstream, str):
            app.report(decision, client, 200, connection_id)
            transport.write(socks.reply(socks.SUCCEEDED) if socks5
                            else b"HTTP/1.1 200 Connection established\r\n\r\n")
            screen = SniScreen(app, target, decision, client, connection_id)
            client_side = pipes.join(transport, upstream, screen)
            screen.transport = transport
            app.pipes[transport] = client_side
            client_side.closed.add_done_callback(lambda _: app.pipes.pop(transport, None))
            return
        error = upstream
        app.report(decision, client, 502, connection_id)
        transport.write(socks.reply(socks.HOST_UNREACHABLE) if socks5 else
                        raw_response(502, f"policyproxy: cannot connect to {host}:{port}: {error}\n".encode()))
        transport.close()
        return
    app.report(decision, client, 200, connection_id)
    tunnel = Tunnel(host, port, "https", target.trusted, client, connection_id, identity)
    if not socks5:
        transport.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await intercept_tls(app, transport, tunnel)
        return
    transport.write(socks.reply(socks.SUCCEEDED))
    first = await peek(transport, 8, app.options.head_timeout)
    if first[:1] == b"\x16":
        await intercept_tls(app, transport, tunnel)
    elif first[:1].isalpha() and app.policy.mode is not Mode.LIMITED:
        serve_http(app, transport, Tunnel(host, port, "http", target.trusted, client, connection_id, identity))
    else:
        refused = Decision(Verdict.DENY, Reason.MITM_REQUIRED, Source.DEFAULT, decision.profile, protocol,
                           decision.host, port, message="traffic to an inspected host must be TLS or plain HTTP"
                           + (" (plain HTTP is refused over SOCKS5 in limited mode)" if first[:1].isalpha() else ""))
        app.report(refused, client, None, connection_id)
        transport.close()


class SniScreen:
    """The gate of a byte tunnel: decide again on the TLS server name of the client's first flight.

    A tunnel opened for one name or an IP literal must not reach a host the policy inspects, hooks or
    denies under another name: when the ClientHello names another host, that name is decided as if
    the client had asked for it, and a deny or a host that must be intercepted closes the tunnel (the
    client's next attempt, by the right name, is intercepted). A ClientHello that cannot be read, or
    does not arrive whole within ``head_timeout`` of its first byte, closes it too (fail closed).
    Bytes that are not TLS pass: the proxy cannot see a name in them (SECURITY.md). Each arrival
    re-reads what is held, so a hello dripped in more than ``MAX_PIECES`` reads is refused too.
    """

    MAX_PIECES = 64   # real ClientHellos arrive in one to three reads

    def __init__(self, app: ProxyApp, target: Target, decision: Decision, client: str, connection_id: str) -> None:
        self.app, self.target, self.decision = app, target, decision
        self.client, self.connection_id = client, connection_id
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.pieces = 0

    def __call__(self, held: bytes) -> bool | None:
        if self.timer is None:
            self.timer = asyncio.get_running_loop().call_later(self.app.options.head_timeout, self._expire)
        self.pieces += 1
        try:
            hello = parse_client_hello(held)
        except NotTls:
            return self._finish(None)
        except MalformedHello as exc:
            return self._finish(self._refusal(Reason.INSPECTION_FAILED, self.target.host,
                                              f"unreadable TLS ClientHello on a tunnel: {exc}"))
        if hello is None:
            if self.pieces < self.MAX_PIECES:
                return None
            return self._finish(self._refusal(Reason.INSPECTION_FAILED, self.target.host,
                                              f"TLS ClientHello still incomplete after {self.pieces} reads"))
        return self._finish(self._judge(hello.server_name))

    def _judge(self, server_name: str | None) -> Decision | None:
        """None lets the tunnel through; a Decision is the deny to report."""
        app, target = self.app, self.target
        if server_name is None or app.canonical(server_name) == app.canonical(target.host):
            return None
        again = app.policy.decide(Target(server_name, target.port, target.protocol, target.addresses,
                                         target.trusted))
        where = f"TLS server name {again.host!r} on a tunnel opened for {target.host!r}"
        if not again.allowed:
            return dataclasses.replace(again, message=f"{where}: {again.message or again.reason.value}")
        if again.intercept:
            return self._refusal(Reason.MITM_REQUIRED, again.host,
                                 f"{where}: that host is inspected; connect to it by name")
        return None

    def _refusal(self, reason: Reason, host: str, message: str) -> Decision:
        return Decision(Verdict.DENY, reason, Source.DEFAULT, self.decision.profile, self.target.protocol,
                        host, self.target.port, message=message)

    def _finish(self, refused: Decision | None) -> bool:
        if self.timer is not None:
            self.timer.cancel()
        if refused is None:
            return True
        self.app.report(refused, self.client, None, self.connection_id)
        return False

    def _expire(self) -> None:
        side = self.app.pipes.get(self.transport) if self.transport is not None else None
        if side is None or side.gate is None:
            return
        side.gate = None
        self.app.report(self._refusal(Reason.INSPECTION_FAILED, self.target.host,
                                      "TLS ClientHello not complete within the head timeout"),
                        self.client, None, self.connection_id)
        side.held.clear()
        if self.transport is not None:
            self.transport.close()


class Socks5Entry(_Opening):
    """RFC 1928 handshake (with RFC 1929 auth when configured), then ``open_target``."""

    def __init__(self, app: ProxyApp) -> None:
        super().__init__(app)
        self.buffer = b""
        self.state = "greeting"
        self.user: str | None = None

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        try:
            self._advance()
        except socks.Socks5Error as exc:
            if self.state == "request":
                self.transport.write(socks.reply(exc.reply))
            self.app.log.info("socks5 from %s refused: %s", _peer(self.transport), exc)
            self.transport.close()

    def _advance(self) -> None:
        assert self.transport is not None
        credentials = self.app.options.socks_credentials
        if self.state == "greeting":
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
            self.state = "auth" if credentials else "request"
        if self.state == "auth":
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
            self.state = "request"
        if self.state == "request":
            parsed_request = socks.parse_request(self.buffer)
            if parsed_request is None:
                return
            request, used = parsed_request
            if request.command != socks.CMD_CONNECT:
                name = {socks.CMD_BIND: "BIND", socks.CMD_UDP_ASSOCIATE: "UDP ASSOCIATE"}.get(request.command, "?")
                raise socks.Socks5Error(f"{name} is not supported (CONNECT only)", socks.COMMAND_NOT_SUPPORTED)
            if self.buffer[used:]:
                raise socks.Socks5Error("data sent before the CONNECT was answered")
            self.state = "done"
            if self.timer is not None:
                self.timer.cancel()
            self.transport.pause_reading()
            self.app.spawn(
                open_target(self.app, self.transport, request.host, request.port, Protocol.SOCKS5_TCP,
                            _peer(self.transport), self.user))
