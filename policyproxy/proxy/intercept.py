"""Serving HTTP inside a tunnel: TLS termination with a leaf for the target, then ``h1_server`` (or
``h2_server`` when the client chose h2)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl

from policyproxy.grammar.hosts import normalize_host
from policyproxy.policy.model import Decision
from policyproxy.proxy.connection import Connection
from policyproxy.proxy.context import Context
from policyproxy.proxy.h1_server import H1Server
from policyproxy.proxy.h2_server import H2Server
from policyproxy.proxy.handlers import h1_tunnel_handler, tunnel_handler
from policyproxy.proxy.http_server import TimedServer
from policyproxy.proxy.outcome import Outcome
from policyproxy.reasons import Protocol, Reason, Source, Verdict

log = logging.getLogger("policyproxy")


class _Buffer(asyncio.Protocol):
    """Holds what arrives while ``start_tls`` finishes (TLS 1.3 can deliver data before it returns)."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.eof = False

    def data_received(self, data: bytes) -> None:
        self.data += data

    def eof_received(self) -> bool:
        self.eof = True
        return False


def serve_http(ctx: Context, transport: asyncio.Transport, conn: Connection, first: bytes = b"") -> None:
    """Hand ``transport`` (reading paused) to an HTTP/1.1 server bound to ``conn``."""
    options = ctx.options

    def websocket() -> TimedServer:   # an upgrade is handed over to aiohttp's server (``h1_server``)
        upgraded = TimedServer(tunnel_handler(ctx, conn), ctx.heads, options.head_timeout, options.keepalive_timeout)
        ctx.registry.servers.add(upgraded)
        return upgraded

    server = H1Server(h1_tunnel_handler(ctx, conn), ctx.heads, options.head_timeout, options.keepalive_timeout,
                      options.max_head_bytes, websocket)
    ctx.registry.servers.add(server)
    server.take(transport, first)


async def intercept_tls(ctx: Context, transport: asyncio.Transport, conn: Connection) -> None:
    """Terminate the client's TLS with a leaf for ``conn.host`` and serve HTTP inside it."""
    loop = asyncio.get_running_loop()
    http2 = ctx.live.snapshot.settings.network.mitm_http2
    context = ctx.leaves.context_for(normalize_host(conn.host) or conn.host, http2)
    buffer = _Buffer()
    try:
        tls = await loop.start_tls(transport, buffer, context, server_side=True,
                                   ssl_handshake_timeout=ctx.options.handshake_timeout)
    except (OSError, asyncio.TimeoutError, ConnectionError) as exc:
        log.info("TLS handshake with %s for %s failed: %s", conn.client, conn.host, type(exc).__name__)
        transport.close()
        _handshake_failed(ctx, conn, exc)
        return
    if tls is None or buffer.eof:
        if tls is not None:
            tls.close()
        return
    tls.pause_reading()
    ssl_object = tls.get_extra_info("ssl_object")
    if ssl_object is not None and ssl_object.selected_alpn_protocol() == "h2":
        server = H2Server(ctx, conn)
        ctx.registry.servers.add(server)
        server.take(tls, bytes(buffer.data))
        return
    serve_http(ctx, tls, conn, bytes(buffer.data))


# OpenSSL's names for the alerts a client sends when it does not trust the certificate it was shown.
_DISTRUST = frozenset({"TLSV1_ALERT_UNKNOWN_CA", "SSLV3_ALERT_BAD_CERTIFICATE", "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
                       "TLSV1_ALERT_ACCESS_DENIED"})
_HINT_EVERY = 60.0
_hinted: dict[str, float] = {}


def _handshake_failed(ctx: Context, conn: Connection, exc: BaseException) -> None:
    """One ``tls_handshake_failed`` event; when the client refused our certificate, a console hint
    (at most once a minute per client address) saying how to give it the CA."""
    distrust = isinstance(exc, ssl.SSLError) and getattr(exc, "reason", None) in _DISTRUST
    if distrust:
        why = (f"the client refused the interception certificate for {conn.host} "
               f"({str(getattr(exc, 'reason', '')).lower()}): it does not trust the policyproxy CA")
    elif isinstance(exc, asyncio.TimeoutError):
        why = f"the TLS handshake for {conn.host} timed out"
    else:
        why = f"the TLS handshake for {conn.host} failed ({type(exc).__name__})"
    decision = Decision(Verdict.DENY, Reason.TLS_HANDSHAKE_FAILED, Source.DEFAULT, ctx.live.snapshot.policy.profile,
                        Protocol.HTTPS_MITM, normalize_host(conn.host) or conn.host, conn.port, message=why)
    ctx.reporter.report(decision, Outcome(conn.client, conn.connection_id))
    if distrust:
        now = asyncio.get_running_loop().time()
        if now - _hinted.get(conn.client, -_HINT_EVERY) >= _HINT_EVERY:
            if len(_hinted) > 1024:
                _hinted.clear()
            _hinted[conn.client] = now
            log.warning("%s; give the client the CA: `policyproxy ca export > policyproxy-ca.pem` "
                        "(or `eval \"$(policyproxy env)\"`, or `policyproxy run -- CMD`)", why)


async def peek(transport: asyncio.Transport, size: int, timeout: float) -> bytes:
    """The first bytes the client sends, left unread in the socket (for SOCKS5 sniffing).

    The transport owns its descriptor in the event loop, so readiness is watched on a duplicate.
    """
    loop = asyncio.get_running_loop()
    transport.pause_reading()
    sock: socket.socket = transport.get_extra_info("socket")
    watcher = socket.socket(fileno=os.dup(sock.fileno()))
    watcher.setblocking(False)
    ready: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(watcher.fileno(), readable)
    try:
        await asyncio.wait_for(ready, timeout)
        return watcher.recv(size, socket.MSG_PEEK)
    except (BlockingIOError, asyncio.TimeoutError):
        return b""
    finally:
        loop.remove_reader(watcher.fileno())
        watcher.close()
