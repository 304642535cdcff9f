"""Attacks on the lean upstream client's liveness through a real proxy, on asyncio's loop and uvloop:
kept-alive connections that all died while idle (a middlebox forgot them, the upstream restarted), a
client that vanishes while the upstream streams, a client body cut short, an upstream that never answers."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Callable
from pathlib import Path

from policyproxy.policy.compile import compile_policy
from policyproxy.proxy.options import ProxyOptions
from policyproxy.proxy.server import ProxyServer
from policyproxy.tls.ca_store import load_or_create
from tests.helpers import settings

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
PROFILE = '[permissions.t.network.domains]\n"*" = "allow"\n'
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def proxied(tmp_path: Path, handle: Handler, body: Callable[[ProxyServer, int], Awaitable[object]],
                  read_timeout: float = 2) -> object:
    """``body(app, port)`` with a proxy in front of a loopback upstream whose every connection runs ``handle``."""
    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handle(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(upstream, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    s = settings(tmp_path, PROFILE)
    options = ProxyOptions(listen=("127.0.0.1", 0), socks_listen=None, read_timeout=read_timeout, connect_timeout=1,
                           pins={("a.test", port): ipaddress.ip_address("127.0.0.1")})
    app = ProxyServer(s, compile_policy(s), load_or_create(tmp_path / "ca"), options)
    await app.start()
    try:
        return await body(app, port)
    finally:
        await app.stop(drain=1)
        server.close()


async def get(app: ProxyServer, port: int, path: str = "/x") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", app.addresses["http"][1])
    writer.write(f"GET http://a.test:{port}{path} HTTP/1.1\r\nHost: a.test:{port}\r\nConnection: close\r\n\r\n"
                 .encode())
    try:
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


class TestIdleConnectionsAllDead:
    def test_a_get_is_sent_again_on_a_fresh_connection_not_on_another_dead_one(self, tmp_path, on_both_loops):
        """Two kept-alive connections, both reset when next used (a NAT or firewall dropped their state
        while they idled): the GET's one retry must not be spent on the second dead one."""
        accepted: list[int] = []

        async def answers_one_then_resets(reader, writer):
            accepted.append(1)
            await reader.readuntil(b"\r\n\r\n")
            await asyncio.sleep(0.1)   # both first requests in flight at once: two connections are pooled
            writer.write(OK)
            await writer.drain()
            await reader.readuntil(b"\r\n\r\n")
            writer.transport.abort()

        async def body(app, port):
            first = await asyncio.gather(get(app, port), get(app, port))
            assert app.upstream.pool.count == 2
            return first, await get(app, port)
        first, third = on_both_loops(proxied(tmp_path, answers_one_then_resets, body))
        assert all(a.startswith(b"HTTP/1.1 200 ") for a in first)
        assert third.startswith(b"HTTP/1.1 200 ") and third.endswith(b"\r\n\r\nok"), third
        assert len(accepted) == 3   # the retry opened a fresh connection
