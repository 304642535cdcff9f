"""Liveness attacks on the client side's HTTP/1.1 server (``h1_server``) through a real proxy, on
asyncio's loop and uvloop: plain HTTP over SOCKS5 to an intercepted host whose origin answers late.

Pipelining: a head that begins in the read that ends a large body is not "too large"; a request parsed ahead whose body had not begun when its turn came still reads it.
A stop answers the requests in flight (the last answer says the connection closes) and closes idle
connections at once. A client that vanishes mid-download ends the upstream request: one event, the
upstream connection is not pooled. Half-close: a client that shuts its side once its request is written (``curl``, ``nc -N``) still gets
its answers, then the connection closes; one that shuts it mid-request gets nothing sent upstream.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from policyproxy.proxy.server import ProxyServer
from tests.proxy.harness import build, pins, running
from tests.shell.attacks.test_client_heads import CONFIG, h, proxied, socks_plain, until_closed


class SlowOrigin:
    """Reads each request (a chunked body too) and answers ``ok`` ``delay`` seconds after its head,
    keeping the connection; records the paths and bodies."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.paths: list[bytes] = []
        self.bodies: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.paths.append(head.split(b" ")[1])
                answer_at = asyncio.get_running_loop().time() + self.delay
                body = b""
                if b"Transfer-Encoding: chunked" in head:
                    while (size := int((await reader.readuntil(b"\r\n")).strip(), 16)) != 0:
                        body += (await reader.readexactly(size + 2))[:-2]
                    await reader.readuntil(b"\r\n")
                self.bodies.append(body)
                await asyncio.sleep(answer_at - asyncio.get_running_loop().time())
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def slow(tmp_path: Path, delay: float) -> AsyncIterator[tuple[ProxyServer, SlowOrigin, int]]:
    origin = SlowOrigin(delay)
    server = await asyncio.start_server(origin.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with running(tmp_path, CONFIG, pins=pins(("a.test",), port)) as proxy:
            yield proxy, origin, port
    finally:
        server.close()


def test_a_client_that_half_closes_after_its_requests_still_gets_the_answers(tmp_path, on_both_loops):
    async def scenario() -> tuple[bytes, list[bytes]]:
        async with slow(tmp_path, 0.5) as (proxy, origin, port):
            reader, writer = await socks_plain(proxy, port)
            writer.write(f"GET /ok/1 HTTP/1.1\r\nHost: {h(port)}\r\n\r\n"
                         f"GET /ok/2 HTTP/1.1\r\nHost: {h(port)}\r\n\r\n".encode())
            writer.write_eof()   # in the same breath: the proxy reads both requests, then the end
            answer = await until_closed(reader)
            writer.close()
            return answer, origin.paths
    answer, paths = on_both_loops(scenario())
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", answer) == [b"200", b"200"]
    assert answer.endswith(b"Connection: close\r\n\r\nok")   # the last answer says the connection ends
    assert paths == [b"/ok/1", b"/ok/2"]


def test_a_client_that_half_closes_mid_body_ends_the_upstream_request(tmp_path, on_both_loops):
    async def scenario() -> tuple[bytes, int]:
        async with proxied(tmp_path) as (proxy, upstream):
            reader, writer = await socks_plain(proxy, upstream.port)
            writer.write(f"POST /ok HTTP/1.1\r\nHost: {h(upstream.port)}\r\nContent-Length: 10\r\n\r\nhello".encode())
            for _ in range(100):   # the upstream has the head
                if upstream.heads:
                    break
                await asyncio.sleep(0.02)
            writer.write_eof()
            answer = await until_closed(reader)
            writer.close()
            await asyncio.wait_for(upstream.closed.wait(), 3)
            return answer, upstream.cut
    answer, cut = on_both_loops(scenario())
    assert answer == b""   # a truncated body is never presented as complete
    assert cut == 1


def test_a_pipelined_upload_whose_body_had_not_begun_when_its_turn_came_is_read(tmp_path, on_both_loops):
    # The second request's chunk size line arrives while the first is served: reading pauses (a
    # request waits); when the second is served, nothing of its body is buffered to read on from.
    async def scenario() -> tuple[bytes, list[bytes]]:
        async with slow(tmp_path, 0.6) as (proxy, origin, port):
            reader, writer = await socks_plain(proxy, port)
            writer.write(f"GET /ok/1 HTTP/1.1\r\nHost: {h(port)}\r\n\r\n"
                         f"POST /ok/2 HTTP/1.1\r\nHost: {h(port)}\r\nTransfer-Encoding: chunked\r\n"
                         f"Connection: close\r\n\r\n".encode())
            await asyncio.sleep(0.2)
            writer.write(b"5\r\n")
            await asyncio.sleep(0.8)   # the first is answered meanwhile
            writer.write(b"hello\r\n0\r\n\r\n")
            answer = await until_closed(reader)
            writer.close()
            return answer, origin.bodies
    answer, bodies = on_both_loops(scenario())
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", answer) == [b"200", b"200"]
    assert bodies == [b"", b"hello"]


def test_a_pipelined_head_that_starts_in_the_read_ending_a_large_body_is_served(tmp_path, on_both_loops):
    # The head's size was counted per read: the 100,000 body bytes before it in the same read made it
    # "over 64 KiB", a 431 for a 40-byte head
    async def scenario() -> tuple[bytes, list[bytes]]:
        async with proxied(tmp_path) as (proxy, upstream):
            reader, writer = await socks_plain(proxy, upstream.port)
            host = h(upstream.port)
            writer.write(f"POST /ok/1 HTTP/1.1\r\nHost: {host}\r\nContent-Length: 100000\r\n\r\n".encode()
                         + b"x" * 100000 + f"GET /ok/2 HTTP/1.1\r\nHost: {host}\r\n".encode())
            await asyncio.sleep(0.3)
            writer.write(b"Connection: close\r\n\r\n")
            answer = await until_closed(reader)
            writer.close()
            return answer, upstream.heads
    answer, heads = on_both_loops(scenario())
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", answer) == [b"200", b"200"]
    assert [head.split(b" ")[1] for head in heads] == [b"/ok/1", b"/ok/2"]


def test_a_stop_answers_the_request_in_flight_with_connection_close_and_closes_idle_ones(tmp_path, on_both_loops):
    async def scenario() -> tuple[bytes, bytes, list[bytes]]:
        origin = SlowOrigin(1.0)
        server = await asyncio.start_server(origin.handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        proxy = build(tmp_path, CONFIG, pins=pins(("a.test",), port))
        await proxy.start()
        try:
            idle_reader, idle_writer = await socks_plain(proxy, port)
            idle_writer.write(f"GET /ok/idle HTTP/1.1\r\nHost: {h(port)}\r\n\r\n".encode())
            await idle_reader.readuntil(b"ok")
            reader, writer = await socks_plain(proxy, port)
            writer.write(f"GET /ok/busy HTTP/1.1\r\nHost: {h(port)}\r\n\r\n"
                         f"GET /ok/pipelined HTTP/1.1\r\nHost: {h(port)}\r\n\r\n".encode())
            await asyncio.sleep(0.3)
        finally:
            stopping = asyncio.ensure_future(proxy.stop(drain=5))
        answer = await until_closed(reader)
        idle = await until_closed(idle_reader)
        await stopping
        server.close()
        return answer, idle, origin.paths
    answer, idle, paths = on_both_loops(scenario())
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and b"Connection: close\r\n" in answer
    assert answer.count(b"HTTP/1.1 ") == 1   # the pipelined one is not started during a stop
    assert idle == b""
    assert paths == [b"/ok/idle", b"/ok/busy"]


def test_a_client_that_vanishes_mid_download_ends_the_upstream_request(tmp_path, on_both_loops):
    async def scenario() -> tuple[list[int | None], int, int]:
        closed = asyncio.Event()
        connections = 0

        async def big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal connections
            connections += 1
            try:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\n\r\n")
                while True:
                    writer.write(b"x" * 65536)
                    await writer.drain()
            except ConnectionError:
                pass
            finally:
                closed.set()
        server = await asyncio.start_server(big, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with running(tmp_path, CONFIG, pins=pins(("a.test",), port)) as proxy:
            events: list[int | None] = []
            proxy.context.reporter.sinks.append(lambda decision, outcome: events.append(outcome.status))
            reader, writer = await socks_plain(proxy, port)
            writer.write(f"GET /ok HTTP/1.1\r\nHost: {h(port)}\r\n\r\n".encode())
            await reader.readexactly(300000)
            writer.transport.abort()
            await asyncio.wait_for(closed.wait(), 5)   # the upstream connection ends too
            await asyncio.sleep(0.2)
            pooled = proxy.context.upstream.pool.count
        server.close()
        return events, pooled, connections
    events, pooled, connections = on_both_loops(scenario())
    assert events == [200, 200]   # the tunnel's, then the request's: one event
    assert pooled == 0 and connections == 1
