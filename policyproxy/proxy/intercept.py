"""Open a tunnel: plain byte pipe, or TLS termination handing the inner HTTP to aiohttp's parser."""

from __future__ import annotations

import asyncio
import os
import socket
from functools import partial
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from aiohttp import web

from policyproxy.grammar.hosts import IPAddress
from policyproxy.proxy import tunnel as pipes
from policyproxy.proxy.forward import Tunnel, handle_intercepted

if TYPE_CHECKING:
    from policyproxy.proxy.app import ProxyApp


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


def serve_http(app: ProxyApp, transport: asyncio.Transport, tunnel: Tunnel, first: bytes = b"") -> None:
    """Hand ``transport`` to an aiohttp request handler bound to ``tunnel``."""
    server = web.Server(partial(handle_intercepted, app, tunnel), **app.http_options)
    app.tunnel_servers.add(server)
    handler = server()
    transport.set_protocol(handler)
    handler.connection_made(transport)
    if first:
        handler.data_received(first)
    transport.resume_reading()


async def intercept_tls(app: ProxyApp, transport: asyncio.Transport, tunnel: Tunnel) -> None:
    """Terminate the client's TLS with a leaf for ``tunnel.host`` and serve HTTP inside it."""
    loop = asyncio.get_running_loop()
    context = app.leaves.context_for(app.canonical(tunnel.host))
    buffer = _Buffer()
    try:
        tls = await loop.start_tls(transport, buffer, context, server_side=True,
                                   ssl_handshake_timeout=app.options.handshake_timeout)
    except (OSError, asyncio.TimeoutError, ConnectionError) as exc:
        app.log.info("TLS handshake with %s for %s failed: %s", tunnel.client, tunnel.host, type(exc).__name__)
        transport.close()
        return
    if tls is None or buffer.eof:
        if tls is not None:
            tls.close()
        return
    tls.pause_reading()
    serve_http(app, tls, tunnel, bytes(buffer.data))


async def connect_upstream(app: ProxyApp, host: str, addresses: tuple[IPAddress, ...],
                           port: int) -> pipes.PipeSide | str:
    """A pipe end connected to the first reachable address (or through the upstream proxy), or why not."""
    chained = app.upstream_proxy("https", host)
    if chained is not None:
        return await _connect_via_proxy(app, chained, host, port)
    loop = asyncio.get_running_loop()
    error = "no address"
    for address in addresses:
        side = pipes.PipeSide()
        try:
            await asyncio.wait_for(loop.create_connection(lambda side=side: side, str(address), port),
                                   app.options.connect_timeout)
        except asyncio.TimeoutError:
            error = "timed out"
            continue
        except OSError as exc:
            error = exc.strerror or type(exc).__name__
            continue
        sock = side.transport.get_extra_info("socket") if side.transport else None
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return side
    return error


async def _connect_via_proxy(app: ProxyApp, proxy_url: str, host: str, port: int) -> pipes.PipeSide | str:
    """CONNECT through an upstream HTTP proxy, then hand the raw connection to a pipe end."""
    parts = urlsplit(proxy_url)
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(parts.hostname, parts.port or 80), app.options.connect_timeout)
    except (OSError, asyncio.TimeoutError) as exc:
        return f"upstream proxy {parts.hostname} unreachable: {type(exc).__name__}"
    authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    writer.write(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), app.options.connect_timeout)
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        writer.close()
        return "upstream proxy did not answer the CONNECT"
    status = head.split(b" ", 2)[1:2]
    if status != [b"200"]:
        writer.close()
        return f"upstream proxy refused the CONNECT ({b''.join(status).decode('latin-1') or '?'})"
    transport = writer.transport
    side = pipes.PipeSide()
    side.connection_made(transport)
    transport.set_protocol(side)
    if reader._buffer:  # bytes the proxy sent after its answer belong to the tunnel
        side.data_received(bytes(reader._buffer))
    return side


async def peek(transport: asyncio.Transport, size: int, timeout: float) -> bytes:
    """The first bytes the client sends, left unread in the socket (for SOCKS5 sniffing).

    The transport owns its descriptor in the event loop, so readiness is watched on a duplicate.
    """
    loop = asyncio.get_running_loop()
    transport.pause_reading()
    sock: socket.socket = transport.get_extra_info("socket")
    watcher = socket.socket(fileno=os.dup(sock.fileno()))
    watcher.setblocking(False)
    ready = loop.create_future()
    loop.add_reader(watcher.fileno(), lambda: ready.done() or ready.set_result(None))
    try:
        await asyncio.wait_for(ready, timeout)
        return watcher.recv(size, socket.MSG_PEEK)
    except (BlockingIOError, asyncio.TimeoutError):
        return b""
    finally:
        loop.remove_reader(watcher.fileno())
        watcher.close()
