"""``h1_server``: the lean HTTP/1.1 server for client connections, bytes in and bytes out.

Each test serves a loopback socket with ``H1Server`` and a scripted handler (the handler's answers go
through the ``Exchange`` seam as ``pipeline.forward``'s do), writes raw bytes as a client would and
reads back what the server wrote, on asyncio's loop and on uvloop.
"""

from __future__ import annotations

import asyncio
import importlib.util
import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from policyproxy import responses
from policyproxy.proxy.context import HeadGate
from policyproxy.proxy.h1_server import H1Exchange, H1Server

LOOPS = ["asyncio", pytest.param("uvloop", marks=pytest.mark.skipif(
    importlib.util.find_spec("uvloop") is None, reason="uvloop is not installed"))]
Handler = Callable[[H1Exchange], Awaitable[None]]


@pytest.fixture(params=LOOPS)
def run(request):
    def factory() -> asyncio.AbstractEventLoop:
        if request.param == "uvloop":
            import uvloop
            return uvloop.new_event_loop()
        return asyncio.new_event_loop()

    def runner(coro):
        with asyncio.Runner(loop_factory=factory) as r:
            return r.run(coro)
    return runner


class Served:
    """A loopback listener whose every connection is an ``H1Server`` running ``handler``."""

    def __init__(self, handler: Handler, head_timeout: float = 5, keepalive_timeout: float = 5,
                 websocket: Callable[[], Any] | None = None, max_heads: int = 100) -> None:
        self.handler = handler
        self.gate = HeadGate(max_heads)
        self.head_timeout = head_timeout
        self.keepalive_timeout = keepalive_timeout
        self.websocket = websocket
        self.servers: list[H1Server] = []

    def _make(self) -> H1Server:
        server = H1Server(self.handler, self.gate, self.head_timeout, self.keepalive_timeout, 64 * 1024,
                          self.websocket)
        self.servers.append(server)
        return server

    async def __aenter__(self) -> Served:
        self.listener = await asyncio.get_running_loop().create_server(self._make, "127.0.0.1", 0)
        self.port = self.listener.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.listener.close()
        await asyncio.gather(*(s.shutdown(1) for s in self.servers))

    async def exchange(self, data: bytes, until_close: bool = True, timeout: float = 5) -> bytes:
        """Write ``data``; everything the server writes until it closes (or ``timeout`` passes)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(data)
        out = b""
        try:
            async with asyncio.timeout(timeout):
                while chunk := await reader.read(65536):
                    out += chunk
                    if not until_close and out.count(b"\r\n\r\n") >= 1:
                        break
        except TimeoutError:
            pass
        writer.close()
        return out


def ok(body: bytes = b"ok", headers: tuple[tuple[str, str], ...] = (("X-A", "b"),)) -> Handler:
    async def handler(exchange: H1Exchange) -> None:
        await exchange.reply(200, "OK", list(headers), body)
    return handler


def echo(log: list[tuple[str, str, bytes]] | None = None) -> Handler:
    """Answers ``<method> <target> <body>`` once the whole body is read."""
    async def handler(exchange: H1Exchange) -> None:
        body = b"".join([chunk async for chunk in exchange.body()])
        if log is not None:
            log.append((exchange.method, exchange.target, body))
        await exchange.reply(200, "OK", [], f"{exchange.method} {exchange.target} ".encode() + body)
    return handler


# -- framing of answers ----------------------------------------------------------------------------------


def test_a_whole_answer_is_one_head_with_its_length_then_the_body(run):
    async def scenario() -> bytes:
        async with Served(ok()) as s:
            return await s.exchange(b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert run(scenario()) == b"HTTP/1.1 200 OK\r\nX-A: b\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


def test_keep_alive_serves_requests_in_turn_on_one_connection(run):
    async def scenario() -> bytes:
        async with Served(echo()) as s:
            reader, writer = await asyncio.open_connection("127.0.0.1", s.port)
            out = b""
            for path in ("/1", "/2"):
                writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                out += await reader.readuntil(b"\r\n\r\n")
                out += await reader.readexactly(len(f"GET {path} "))
            writer.close()
            return out
    assert run(scenario()) == (b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nGET /1 "
                               b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nGET /2 ")


def test_head_keeps_the_length_and_sends_no_body(run):
    async def scenario() -> bytes:
        async with Served(ok(b"twelve bytes")) as s:
            return await s.exchange(b"HEAD /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert run(scenario()) == b"HTTP/1.1 200 OK\r\nX-A: b\r\nContent-Length: 12\r\nConnection: close\r\n\r\n"


@pytest.mark.parametrize("status", [204, 304])
def test_204_and_304_carry_neither_a_length_nor_a_body(run, status):
    async def handler(exchange: H1Exchange) -> None:
        await exchange.start(status, "", [("ETag", "1")], 5)
        await exchange.write(b"hello")
        await exchange.end()

    async def scenario() -> bytes:
        async with Served(handler) as s:
            return await s.exchange(b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    phrase = "No Content" if status == 204 else "Not Modified"
    assert run(scenario()) == f"HTTP/1.1 {status} {phrase}\r\nETag: 1\r\nConnection: close\r\n\r\n".encode()


def streamed(length: int | None) -> Handler:
    async def handler(exchange: H1Exchange) -> None:
        await exchange.start(200, "OK", [], length)
        for part in (b"abc", b"", b"defgh"):
            await exchange.write(part)
        await exchange.end()
    return handler


def test_a_streamed_answer_of_unknown_length_is_chunked_on_http_1_1(run):
    async def scenario() -> bytes:
        async with Served(streamed(None)) as s:
            return await s.exchange(b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert run(scenario()) == (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                               b"3\r\nabc\r\n5\r\ndefgh\r\n0\r\n\r\n")


def test_a_streamed_answer_of_unknown_length_ends_with_the_connection_on_http_1_0(run):
    async def scenario() -> bytes:
        async with Served(streamed(None)) as s:
            return await s.exchange(b"GET /a HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n")
    assert run(scenario()) == b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nabcdefgh"


def test_a_streamed_answer_of_known_length_keeps_an_http_1_0_connection_alive(run):
    async def scenario() -> bytes:
        async with Served(streamed(8)) as s:
            return await s.exchange(b"GET /a HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n", timeout=1)
    assert run(scenario()) == b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: keep-alive\r\n\r\nabcdefgh"


def test_abort_closes_so_a_cut_answer_is_never_complete(run):
    async def handler(exchange: H1Exchange) -> None:
        await exchange.start(200, "OK", [], None)
        await exchange.write(b"part")
        exchange.abort()

    async def scenario() -> bytes:
        async with Served(handler) as s:
            return await s.exchange(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
    assert run(scenario()) == b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\npart\r\n"   # no 0-chunk


def test_a_proxy_answer_is_rendered_by_responses(run):
    async def handler(exchange: H1Exchange) -> None:
        await exchange.answer(responses.text_answer(405, "no"))

    async def scenario() -> bytes:
        async with Served(handler) as s:
            return await s.exchange(b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    answer = run(scenario())
    date = re.search(rb"\r\nDate: [A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT", answer)
    assert date is not None
    assert answer.replace(date.group(0), b"") == (
        b"HTTP/1.1 405 Method Not Allowed\r\nx-proxy-error: bad-request\r\n"
        b"content-type: text/plain; charset=utf-8\r\nContent-Length: 16\r\n"
        b"Connection: close\r\n\r\npolicyproxy: no\n")


def test_a_line_break_in_an_answer_field_is_never_written(run):
    async def handler(exchange: H1Exchange) -> None:
        await exchange.reply(200, "OK", [("X-A", "b\r\nSet-Cookie: evil=1")], b"ok")

    async def scenario() -> bytes:
        async with Served(handler) as s:
            return await s.exchange(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = run(scenario())
    assert answer.startswith(b"HTTP/1.1 500 ") and b"evil" not in answer


# -- request bodies ------------------------------------------------------------------------------------


def test_content_length_and_chunked_bodies_are_read_whole(run):
    async def scenario() -> bytes:
        async with Served(echo()) as s:
            return (await s.exchange(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
                                     b"POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                                     b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nX-Trailer: 1\r\n\r\n", timeout=1))
    assert run(scenario()) == (b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nPOST /a hello"
                               b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nPOST /b abcde")


def test_expect_100_continue_is_answered_before_the_body_is_read(run):
    async def handler(exchange: H1Exchange) -> None:
        await exchange.expect_continue()
        body = b"".join([chunk async for chunk in exchange.body()])
        await exchange.reply(200, "OK", [], body)

    async def scenario() -> tuple[bytes, bytes]:
        async with Served(handler) as s:
            reader, writer = await asyncio.open_connection("127.0.0.1", s.port)
            writer.write(b"PUT /a HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
            interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            writer.write(b"abc")
            final = await asyncio.wait_for(reader.readuntil(b"abc"), 5)
            writer.close()
            return interim, final
    assert run(scenario()) == (b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc")


def test_a_large_body_is_read_only_as_fast_as_the_handler_consumes_it(run):
    from policyproxy.proxy import h1_server

    async def scenario() -> tuple[int, int]:
        release = asyncio.Event()
        seen: list[int] = []

        async def handler(exchange: H1Exchange) -> None:
            await release.wait()
            total = 0
            async for chunk in exchange.body():
                total += len(chunk)
            seen.append(total)
            await exchange.reply(200, "OK", [], b"")

        async with Served(handler) as s:
            size = 16 * 1024 * 1024
            reader, writer = await asyncio.open_connection("127.0.0.1", s.port)
            writer.write(f"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n".encode())
            writer.write(bytes(size))
            await asyncio.sleep(0.5)
            buffered = s.servers[0].current._buffered if s.servers[0].current else -1
            release.set()
            await writer.drain()
            await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            writer.close()
            assert buffered <= h1_server.HIGH_WATER + 256 * 1024, buffered
            return seen[0], size
    seen, size = run(scenario())
    assert seen == size


def test_a_client_that_vanishes_mid_body_cancels_its_handler(run):
    async def scenario() -> list[str]:
        events: list[str] = []
        started = asyncio.Event()

        async def handler(exchange: H1Exchange) -> None:
            started.set()
            try:
                async for _ in exchange.body():
                    pass
                events.append("body ended")
            except asyncio.CancelledError:
                events.append("cancelled")
                raise

        async with Served(handler) as s:
            _reader, writer = await asyncio.open_connection("127.0.0.1", s.port)
            writer.write(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
            await asyncio.wait_for(started.wait(), 5)
            writer.transport.abort()
            for _ in range(100):
                if events:
                    break
                await asyncio.sleep(0.02)
            return events
    assert run(scenario()) == ["cancelled"]


# -- pipelining ---------------------------------------------------------------------------------------


def test_pipelined_requests_are_served_one_at_a_time_in_order(run):
    async def scenario() -> tuple[bytes, int]:
        running = 0
        most = 0

        async def handler(exchange: H1Exchange) -> None:
            nonlocal running, most
            running += 1
            most = max(most, running)
            await asyncio.sleep(0.05 if exchange.target == "/1" else 0)
            running -= 1
            await exchange.reply(200, "OK", [], exchange.target.encode())

        async with Served(handler) as s:
            answer = await s.exchange(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n"
                                      b"POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab"
                                      b"GET /3 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return answer, most
    answer, most = run(scenario())
    assert most == 1
    assert answer == (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n/1"
                      b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n/2"
                      b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n/3")


def test_a_request_answered_before_its_body_ended_lets_the_next_one_through(run):
    async def handler(exchange: H1Exchange) -> None:
        await exchange.reply(403, "Forbidden", [], exchange.target.encode())   # never reads the body

    async def scenario() -> bytes:
        async with Served(handler) as s:
            reader, writer = await asyncio.open_connection("127.0.0.1", s.port)
            writer.write(b"POST /1 HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nabc")
            first = await asyncio.wait_for(reader.readuntil(b"/1"), 5)
            writer.write(b"def" + b"GET /2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            rest = await asyncio.wait_for(reader.read(), 5)
            return first + rest
    assert run(scenario()) == (b"HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\n/1"
                               b"HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\nConnection: close\r\n\r\n/2")


# -- refused heads ------------------------------------------------------------------------------------

REFUSED = {
    "cl_and_te": (b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"0\r\n\r\n", 400),
    "two_content_lengths": (b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\na", 400),
    "signed_content_length": (b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: +1\r\n\r\na", 400),
    "te_gzip_then_chunked": (b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                             b"1\r\na\r\n0\r\n\r\n", 400),
    "te_chunked_twice": (b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    "obs_fold": (b"GET /a HTTP/1.1\r\nHost: x\r\nX-A: b\r\n folded\r\n\r\n", 400),
    "bare_lf": (b"GET /a HTTP/1.1\nHost: x\n\n", 400),
    "space_before_colon": (b"GET /a HTTP/1.1\r\nHost : x\r\n\r\n", 400),
    "nul_in_a_value": (b"GET /a HTTP/1.1\r\nHost: x\x00y\r\n\r\n", 400),
    "http_0_9": (b"GET /a\r\n\r\n", 400),
    "http_2_0_text": (b"GET /a HTTP/2.0\r\nHost: x\r\n\r\n", 400),
    "bad_chunk_size": (b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    "chunk_size_with_bare_lf": (b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\na\n0\n\n", 400),
    "long_request_line": (b"GET /" + b"a" * (17 * 1024) + b" HTTP/1.1\r\nHost: x\r\n\r\n", 431),
    "long_field": (b"GET /a HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * (17 * 1024) + b"\r\n\r\n", 431),
    "large_head": (b"GET /a HTTP/1.1\r\n" + b"X-Many: " + b"m" * 1000 + b"\r\n" * 1 + b"".join(
        b"X-%d: %s\r\n" % (i, b"v" * 1000) for i in range(80)) + b"\r\n", 431),
    "upgrade_with_a_body": (b"POST /a HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: h2c\r\n"
                            b"Content-Length: 5\r\n\r\nhello", 400),
}


@pytest.mark.parametrize("shape", sorted(REFUSED))
def test_refused_heads_get_their_status_never_reach_the_handler_and_close(run, shape):
    data, status = REFUSED[shape]
    served: list[tuple[str, str, bytes]] = []

    async def scenario() -> bytes:
        async with Served(echo(served)) as s:
            return await s.exchange(data)   # read until the server closes
    answer = run(scenario())
    assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer[:200]
    assert b"connection: close" in answer.lower() and b"Traceback" not in answer
    assert b"HTTP/1.1 200" not in answer
    assert served == []


def test_a_malformed_request_after_a_good_one_is_refused_after_its_answer(run):
    served: list[tuple[str, str, bytes]] = []

    async def scenario() -> bytes:
        async with Served(echo(served)) as s:
            return await s.exchange(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n"
                                    b"POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n"
                                    b"\r\n0\r\n\r\nGET /3 HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = run(scenario())
    first, _, refused = answer.partition(b"GET /1 ")
    assert first == b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n"
    assert refused.startswith(b"HTTP/1.1 400 ") and refused.count(b"HTTP/1.1") == 1
    assert [path for _, path, _ in served] == ["/1"]


def test_a_body_that_breaks_mid_way_cancels_its_request(run):
    async def scenario() -> tuple[bytes, list[str]]:
        events: list[str] = []

        async def handler(exchange: H1Exchange) -> None:
            try:
                async for _ in exchange.body():
                    pass
            except asyncio.CancelledError:
                events.append("cancelled")
                raise
            except ConnectionError:
                events.append("body broke")
                raise
            await exchange.reply(200, "OK", [], b"")

        async with Served(handler) as s:
            reader, writer = await asyncio.open_connection("127.0.0.1", s.port)
            writer.write(b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
            await asyncio.sleep(0.2)
            writer.write(b"zz\r\n")
            answer = await asyncio.wait_for(reader.read(), 5)
            return answer, events
    answer, events = run(scenario())
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert events in (["cancelled"], ["body broke"])


# -- timers -------------------------------------------------------------------------------------------


def test_a_head_dripped_past_the_timeout_gets_408_and_the_gate_is_released(run):
    async def scenario() -> tuple[bytes, int]:
        async with Served(ok(), head_timeout=0.5) as s:
            reader, writer = await asyncio.open_connection("127.0.0.1", s.port)
            writer.write(b"GET /a HTTP/1.1\r\n")
            answer = b""
            for _ in range(40):
                try:
                    writer.write(b"X-Drip: 1\r\n")
                    chunk = await asyncio.wait_for(reader.read(65536), 0.1)
                except asyncio.TimeoutError:
                    continue
                except ConnectionError:
                    break
                if not chunk:
                    break
                answer += chunk
            return answer, s.gate.count
    answer, count = run(scenario())
    assert answer.startswith(b"HTTP/1.1 408 ") and count == 0


def test_empty_lines_dripped_forever_are_timed(run):
    async def scenario() -> bytes:
        async with Served(ok(), head_timeout=0.5) as s:
            reader, writer = await asyncio.open_connection("127.0.0.1", s.port)
            answer = b""
            for _ in range(40):
                try:
                    writer.write(b"\r\n")
                    chunk = await asyncio.wait_for(reader.read(65536), 0.1)
                except asyncio.TimeoutError:
                    continue
                except ConnectionError:
                    break
                if not chunk:
                    break
                answer += chunk
            return answer
    assert run(scenario()).startswith(b"HTTP/1.1 408 ")


def test_beyond_the_gate_a_connection_with_an_incomplete_head_is_closed(run):
    async def scenario() -> tuple[bytes, bytes]:
        async with Served(ok(), max_heads=1) as s:
            r1, w1 = await asyncio.open_connection("127.0.0.1", s.port)
            w1.write(b"GET /a HTTP/1.1\r\n")
            await asyncio.sleep(0.1)
            refused = await s.exchange(b"GET /b HTTP/1.1\r\n", timeout=2)
            w1.write(b"Host: x\r\nConnection: close\r\n\r\n")
            served = await asyncio.wait_for(r1.read(), 5)
            return refused, served
    refused, served = run(scenario())
    assert refused == b"" and served.startswith(b"HTTP/1.1 200 ")


def test_an_idle_keep_alive_connection_is_closed_quietly(run):
    async def scenario() -> bytes:
        async with Served(ok(), keepalive_timeout=0.3) as s:
            return await s.exchange(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n", timeout=3)
    assert run(scenario()) == b"HTTP/1.1 200 OK\r\nX-A: b\r\nContent-Length: 2\r\n\r\nok"   # then closed


# -- upgrades and stops ---------------------------------------------------------------------------------


class Taker:
    """Stands in for aiohttp's server: records what it is handed."""

    def __init__(self) -> None:
        self.given: list[bytes] = []

    def take(self, transport: asyncio.Transport, first: bytes = b"", deadline: float | None = None) -> None:
        self.given.append(first)
        transport.write(b"taken")
        transport.close()


def test_a_websocket_upgrade_is_handed_over_with_its_head_and_what_followed(run):
    taker = Taker()
    served: list[tuple[str, str, bytes]] = []

    async def scenario() -> bytes:
        async with Served(echo(served), websocket=lambda: taker) as s:
            return await s.exchange(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n"
                                    b"GET /ws?q=1 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                                    b"Sec-WebSocket-Key: k\r\n\r\n\x81\x00frame")
    answer = run(scenario())
    assert answer == b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nGET /1 taken"
    assert taker.given == [b"GET /ws?q=1 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                           b"Sec-WebSocket-Key: k\r\n\r\n\x81\x00frame"]
    assert [path for _, path, _ in served] == ["/1"]


def test_connect_and_other_upgrades_are_served_then_the_connection_closes(run):
    served: list[tuple[str, str, bytes]] = []

    async def scenario() -> bytes:
        async with Served(echo(served), websocket=Taker) as s:
            return await s.exchange(b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: h2c\r\n\r\n"
                                    b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = run(scenario())
    assert answer == b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\nGET /a "
    assert [path for _, path, _ in served] == ["/a"]


def test_a_stop_closes_idle_connections_and_lets_a_busy_one_finish(run):
    async def scenario() -> tuple[bytes, bytes]:
        gate = asyncio.Event()

        async def handler(exchange: H1Exchange) -> None:
            if exchange.target == "/slow":
                await gate.wait()
            await exchange.reply(200, "OK", [], b"ok")

        async with Served(handler) as s:
            idle_r, idle_w = await asyncio.open_connection("127.0.0.1", s.port)
            idle_w.write(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
            await idle_r.readuntil(b"ok")
            busy_r, busy_w = await asyncio.open_connection("127.0.0.1", s.port)
            busy_w.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            await asyncio.sleep(0.1)
            stops = asyncio.gather(*(server.shutdown(5) for server in s.servers))
            idle = await asyncio.wait_for(idle_r.read(), 2)
            gate.set()
            busy = await asyncio.wait_for(busy_r.read(), 5)
            await stops
            assert all(not server.connections for server in s.servers)
            return idle, busy
    idle, busy = run(scenario())
    assert idle == b""
    assert busy == b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"


def test_the_listener_hands_over_a_first_head_timed_from_its_own_deadline(run):
    from policyproxy.proxy.h1_server import H1Listener

    async def scenario() -> tuple[bytes, int, int]:
        loop = asyncio.get_running_loop()
        gate = HeadGate(10)
        plain = H1Listener(ok(), gate, 30, 30, 64 * 1024)   # its own head timeout is 30 s

        class Entry(asyncio.Protocol):   # what listeners.HttpEntry does once the first line is in
            def connection_made(self, transport: Any) -> None:
                self.transport = transport

            def data_received(self, data: bytes) -> None:
                self.transport.pause_reading()
                plain.take(self.transport, data, loop.time() + 0.3)

        listener = await loop.create_server(Entry, "127.0.0.1", 0)
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.sockets[0].getsockname()[1])
        writer.write(b"GET http://a.test/ HTTP/1.1\r\n")
        answer = await asyncio.wait_for(reader.read(), 5)   # long before 30 s
        open_before = len(plain.connections)
        writer.close()
        listener.close()
        await plain.shutdown(1)
        return answer, open_before, gate.count
    answer, open_after_408, count = run(scenario())
    assert answer.startswith(b"HTTP/1.1 408 ") and open_after_408 == 0 and count == 0


def test_an_answer_is_written_only_as_fast_as_the_client_reads_it(run):
    async def scenario() -> tuple[int, int, int]:
        written = 0
        size = 64 * 1024 * 1024

        async def handler(exchange: H1Exchange) -> None:
            nonlocal written
            await exchange.start(200, "OK", [], size)
            chunk = bytes(64 * 1024)
            while written < size:
                await exchange.write(chunk)   # awaits the transport's drain
                written += len(chunk)
            await exchange.end()

        async with Served(handler) as s:
            reader, writer = await asyncio.open_connection("127.0.0.1", s.port, limit=1024)
            writer.transport.pause_reading()   # a client that does not read
            writer.write(b"GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            await asyncio.sleep(0.5)
            held = written
            buffered = s.servers[0].transport.get_write_buffer_size() if s.servers[0].transport else -1
            writer.transport.resume_reading()
            received = 0
            while chunk := await asyncio.wait_for(reader.read(1024 * 1024), 10):
                received += len(chunk)
            writer.close()
            return held, buffered, received
    held, buffered, received = run(scenario())
    assert held < 16 * 1024 * 1024 and 0 <= buffered < 4 * 1024 * 1024
    assert received > 64 * 1024 * 1024   # the head and the whole body, once read
