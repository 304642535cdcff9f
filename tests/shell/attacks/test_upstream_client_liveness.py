"""Attacks on the lean upstream client's liveness through a real proxy, on asyncio's loop and uvloop:
kept-alive connections that all died while idle (a middlebox forgot them, the upstream restarted), a
client that vanishes while the upstream streams, a client body cut short, an upstream that never answers."""

from __future__ import annotations

import asyncio
import ipaddress
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

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


class TestVanishedClient:
    def test_the_upstream_connection_is_closed_not_pooled_when_the_client_leaves_mid_stream(self, tmp_path,
                                                                                           on_both_loops):
        ended: list[str] = []

        async def endless(reader, writer):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            try:
                for _ in range(2000):   # 32 MB, at most 20 s: the proxy must cut it far sooner
                    writer.write(b"4000\r\n" + b"x" * 0x4000 + b"\r\n")
                    await writer.drain()
                    await asyncio.sleep(0.01)
                ended.append("streamed all")
            except ConnectionError:
                ended.append("closed by the proxy")

        async def body(app, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", app.addresses["http"][1])
            writer.write(f"GET http://a.test:{port}/x HTTP/1.1\r\nHost: a.test:{port}\r\n\r\n".encode())
            await reader.readexactly(20000)
            writer.transport.abort()
            for _ in range(50):
                if ended:
                    break
                await asyncio.sleep(0.1)
            return app.upstream.pool.count
        assert on_both_loops(proxied(tmp_path, endless, body)) == 0
        assert ended == ["closed by the proxy"]


class TestClientBodyCutShort:
    @pytest.mark.parametrize("framing", ["Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
                                         "Content-Length: 10\r\n\r\nhello"])
    @pytest.mark.parametrize("leaves", ["half-close", "reset"])
    def test_a_cut_body_never_reaches_the_upstream_as_complete(self, tmp_path, on_both_loops, framing, leaves):
        received: list[bytes] = []

        async def reads_all(reader, writer):
            data = b""
            try:
                while chunk := await asyncio.wait_for(reader.read(65536), 5):
                    data += chunk
            finally:
                received.append(data)

        async def body(app, port):
            _reader, writer = await asyncio.open_connection("127.0.0.1", app.addresses["http"][1])
            writer.write(f"POST http://a.test:{port}/x HTTP/1.1\r\nHost: a.test:{port}\r\n{framing}".encode())
            await writer.drain()
            await asyncio.sleep(0.3)
            if leaves == "reset":
                writer.transport.abort()
            else:
                writer.write_eof()
            for _ in range(60):
                if received:
                    break
                await asyncio.sleep(0.1)
            writer.close()
        on_both_loops(proxied(tmp_path, reads_all, body))
        assert len(received) == 1
        _, _, sent = received[0].partition(b"\r\n\r\n")
        assert sent in (b"5\r\nhello\r\n", b"hello")   # what came, and no end of body (0-chunk or 5 more bytes)


class TestSilentUpstream:
    def test_no_answer_is_a_504_after_the_read_timeout(self, tmp_path, on_both_loops):
        async def silent(reader, writer):
            await reader.readuntil(b"\r\n\r\n")
            await asyncio.sleep(10)

        async def body(app, port):
            started = asyncio.get_running_loop().time()
            answer = await get(app, port)
            return answer, asyncio.get_running_loop().time() - started
        answer, took = on_both_loops(proxied(tmp_path, silent, body, read_timeout=0.5))
        assert answer.startswith(b"HTTP/1.1 504 ") and answer.endswith(b"did not answer in time\n")
        assert took < 3


class TestCountsAfterMixedErrors:
    ANSWERS = (OK, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab",          # truncated, then closed
               b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",   # ambiguous framing
               b"HTTP/1.1 204 No Content\r\n\r\n", b"HTTP/1.1 200 O\x00K\r\n\r\n",
               b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", b"")   # b"": reset

    def test_descriptors_tasks_and_the_pool_come_back_after_600_requests(self, tmp_path, on_both_loops):
        async def mixed(reader, writer):
            while True:
                target = (await reader.readuntil(b"\r\n\r\n")).split(b" ", 2)[1]
                answer = self.ANSWERS[int(target.rsplit(b"/", 1)[1]) % len(self.ANSWERS)]
                if not answer:
                    writer.transport.abort()
                    return
                writer.write(answer)
                await writer.drain()
                if answer.endswith(b"ab"):
                    return

        def fds() -> int:
            return len(os.listdir("/proc/self/fd"))

        async def body(app, port):
            tasks, before = len(asyncio.all_tasks()), fds()
            statuses: dict[bytes, int] = {}

            async def client(k: int) -> None:
                for i in range(30):
                    answer = await get(app, port, f"/{k * 30 + i}")
                    statuses[answer[9:12]] = statuses.get(answer[9:12], 0) + 1
            await asyncio.gather(*(client(k) for k in range(20)))
            await asyncio.sleep(0.3)
            # each idle pooled connection holds two descriptors here: the proxy's and the upstream's end
            return statuses, fds() - before - 2 * app.upstream.pool.count, len(asyncio.all_tasks()) - tasks, \
                app.upstream.pool.count
        statuses, extra_fds, extra_tasks, pooled = on_both_loops(proxied(tmp_path, mixed, body))
        assert sum(statuses.values()) == 600 and set(statuses) == {b"200", b"204", b"502"}
        assert extra_fds <= 0   # no descriptor left behind by the broken exchanges
        assert extra_tasks <= pooled   # the scripted upstream's handler per pooled connection, nothing else
        assert pooled <= 20


class TestUpstreamStopsTakingTheBody:
    def test_an_upstream_that_never_reads_the_upload_is_a_504_after_the_read_timeout(self, tmp_path,
                                                                                     on_both_loops):
        """It reads the head, then neither reads the body nor answers: the proxy's writes stall. That is
        the upstream's silence (main's aiohttp client waits forever too)."""
        async def never_reads(reader, writer):
            await reader.readuntil(b"\r\n\r\n")
            await asyncio.sleep(15)

        async def body(app, port):
            size = 256 * 1024 * 1024
            reader, writer = await asyncio.open_connection("127.0.0.1", app.addresses["http"][1])
            writer.write(f"POST http://a.test:{port}/x HTTP/1.1\r\nHost: a.test:{port}\r\nContent-Length: {size}\r\n"
                         f"Connection: close\r\n\r\n".encode())

            async def upload() -> None:
                block = b"x" * 65536
                for _ in range(size // len(block)):
                    writer.write(block)
                    await writer.drain()
            uploading = asyncio.ensure_future(upload())
            started = asyncio.get_running_loop().time()
            try:
                answer = await asyncio.wait_for(reader.read(300), 8)
            finally:
                uploading.cancel()
                writer.transport.abort()
            return answer, asyncio.get_running_loop().time() - started
        answer, took = on_both_loops(proxied(tmp_path, never_reads, body, read_timeout=0.5))
        assert answer.startswith(b"HTTP/1.1 504 ")
        assert took < 4
