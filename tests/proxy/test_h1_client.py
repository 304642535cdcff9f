"""``h1_client``: the lean upstream HTTP/1.1 client against real loopback servers that misbehave.

Each test runs on asyncio's loop and on uvloop (their transports differ: uvloop's TLS transport is
not an ``asyncio.Transport`` subclass). The servers are plain asyncio servers scripted per accepted
connection, so what the client wrote is read back byte for byte.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from policyproxy.errors import UpstreamBroken, UpstreamError, UpstreamTimeout, UpstreamTLSError, UpstreamUnreachable
from policyproxy.proxy import h1_client
from policyproxy.proxy.h1_client import Pool
from tests.shell.upstream import PIECE, big_piece, make_test_pki

LOCAL = (ipaddress.ip_address("127.0.0.1"),)
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

@pytest.fixture
def run(on_both_loops):
    """Each test here on both loops (``tests/conftest.py``)."""
    return on_both_loops


class Script:
    """A loopback server: the n-th accepted connection runs the n-th handler (the last one repeats)."""

    def __init__(self, *handlers: Handler, tls: ssl.SSLContext | None = None) -> None:
        self.handlers = handlers
        self.tls = tls
        self.accepted = 0
        self.received: list[bytes] = []

    async def __aenter__(self) -> Script:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.tls)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = self.handlers[min(self.accepted, len(self.handlers) - 1)]
        self.accepted += 1
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


def answering(*answers: bytes, then_close: bool = False) -> Handler:
    """Reads a request head per answer and writes the answer; keeps the connection open after."""
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for answer in answers:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(answer)
            await writer.drain()
        if not then_close:
            await reader.read()
    return handler


def pool(**kwargs) -> Pool:
    kwargs.setdefault("tls", ssl.create_default_context())
    kwargs.setdefault("connect_timeout", 2.0)
    kwargs.setdefault("read_timeout", 2.0)
    return Pool(**kwargs)


async def get(p: Pool, port: int, method: str = "GET", body=None, headers=None, scheme: str = "http",
              host: str = "a.test"):
    return await p.send(method, scheme, host, port, LOCAL, "/x?y=1", headers or [("Host", host)], body)


class TestKeepAlive:
    def test_a_connection_read_to_its_end_is_reused(self, run):
        async def case():
            async with Script(answering(OK, OK, OK)) as server:
                p = pool()
                for _ in range(3):
                    response = await get(p, server.port)
                    assert (response.status, await response.read()) == (200, b"ok")
                    response.release()
                p.close()
                return server.accepted
        assert run(case()) == 1

    def test_an_answer_released_unread_closes_its_connection(self, run):
        async def case():
            big = b"HTTP/1.1 200 OK\r\nContent-Length: 5000000\r\n\r\n" + b"x" * 5_000_000
            async with Script(answering(big), answering(OK)) as server:
                p = pool()
                response = await get(p, server.port)
                response.release()   # the client went away mid-body
                response = await get(p, server.port)
                assert await response.read() == b"ok"
                response.release()
                p.close()
                return server.accepted
        assert run(case()) == 2

    def test_connection_close_is_not_reused(self, run):
        async def case():
            closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
            async with Script(answering(closing), answering(OK)) as server:
                p = pool()
                for _ in range(2):
                    response = await get(p, server.port)
                    assert await response.read() == b"ok"
                    response.release()
                p.close()
                return server.accepted
        assert run(case()) == 2

    def test_an_answer_following_the_answer_is_never_parsed_into_it(self, run):
        async def case():
            forged = OK + b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nforge"
            async with Script(answering(forged), answering(OK)) as server:
                p = pool()
                bodies = []
                for _ in range(2):
                    response = await get(p, server.port)
                    bodies.append(await response.read())
                    response.release()
                p.close()
                return bodies, server.accepted
        assert run(case()) == ([b"ok", b"ok"], 2)

    def test_idle_connections_are_bounded(self, run):
        async def case():
            async with Script(answering(OK)) as server:
                p = pool(per_key=1)
                first, second = await asyncio.gather(get(p, server.port), get(p, server.port))
                for response in (first, second):
                    await response.read()
                    response.release()
                idle = p.count
                p.close()
                return idle, server.accepted
        assert run(case()) == (1, 2)

    def test_idle_connections_close_after_the_idle_timeout(self, run):
        async def case():
            async with Script(answering(OK, OK)) as server:
                p = pool(idle_timeout=0.2)
                response = await get(p, server.port)
                await response.read()
                response.release()
                assert p.count == 1
                await asyncio.sleep(1.3)   # the sweep runs every max(idle/4, 1 s)
                idle = p.count
                response = await get(p, server.port)
                await response.read()
                response.release()
                p.close()
                return idle, server.accepted
        assert run(case()) == (0, 2)


def closes_the_second_request() -> Handler:
    """Answers one request, then reads the next and closes without a byte: an idle-closed connection."""
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(OK)
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")
        writer.transport.abort()
    return handler


class TestSlowReader:
    def test_what_is_buffered_for_a_slow_reader_is_bounded(self, run):
        async def case():
            size = 64 * 1024 * 1024
            big = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size

            async def flood(reader, writer):
                await reader.readuntil(b"\r\n\r\n")
                writer.write(big)
                chunk = b"x" * (1024 * 1024)
                for _ in range(size // len(chunk)):
                    writer.write(chunk)
                    await writer.drain()
                await reader.read()
            async with Script(flood) as server:
                p = pool()
                response = await get(p, server.port)
                await asyncio.sleep(0.5)   # the reader is slow: the upstream is no longer read
                held = response._buffered
                total = 0
                async for chunk in response.chunks():
                    total += len(chunk)
                response.release()
                p.close()
                return held, total, size
        held, total, size = run(case())
        assert held <= h1_client.HIGH_WATER + 512 * 1024   # one read past the mark at most
        assert total == size


class TestDeadOnReuse:
    def test_an_idempotent_request_is_sent_again_once(self, run):
        async def case():
            async with Script(closes_the_second_request(), answering(OK)) as server:
                p = pool()
                for _ in range(2):
                    response = await get(p, server.port)
                    assert await response.read() == b"ok"
                    response.release()
                p.close()
                return server.accepted
        assert run(case()) == 2

    def test_a_post_is_never_sent_again(self, run):
        async def case():
            async with Script(closes_the_second_request(), answering(OK)) as server:
                p = pool()
                response = await get(p, server.port)
                await response.read()
                response.release()
                with pytest.raises(UpstreamUnreachable, match="closed a kept-alive connection"):
                    await get(p, server.port, method="POST", body=b"{}")
                p.close()
                return server.accepted
        assert run(case()) == 1

    def test_a_fresh_connection_that_dies_is_not_retried(self, run):
        async def case():
            async def slam(reader, writer):
                await reader.readuntil(b"\r\n\r\n")
                writer.transport.abort()
            async with Script(slam) as server:
                p = pool()
                with pytest.raises(UpstreamUnreachable, match="failed before answering"):
                    await get(p, server.port)
                p.close()
                return server.accepted
        assert run(case()) == 1


class TestBrokenAnswers:
    def test_truncated_body_is_broken_after_what_came(self, run):
        async def case():
            async with Script(answering(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10,
                                        then_close=True)) as server:
                p = pool()
                response = await get(p, server.port)
                got = []
                with pytest.raises(UpstreamBroken):
                    async for chunk in response.chunks():
                        got.append(chunk)
                assert not response.body_complete()
                response.release()
                p.close()
                return b"".join(got)
        assert run(case()) == b"x" * 10

    def test_bad_chunk_size(self, run):
        async def case():
            async with Script(answering(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n")) \
                    as server:
                p = pool()
                response = await get(p, server.port)
                with pytest.raises(UpstreamBroken, match="unreadable"):
                    await response.read()
                response.release()
                p.close()
        run(case())

    def test_garbage_status_line(self, run):
        async def case():
            async with Script(answering(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")) as server:
                p = pool()
                with pytest.raises(UpstreamUnreachable, match="unreadable answer"):
                    await get(p, server.port)
                p.close()
        run(case())

    @pytest.mark.parametrize("head", [
        b"Content-Length: 2\r\nContent-Length: 3",        # which one frames the body?
        b"Content-Length: 2\r\nTransfer-Encoding: chunked",
        b"Content-Length: 2, 2",
        b"Content-Length: +2",
        b"X-A: a\nb",                                     # a bare LF inside the head
    ])
    def test_ambiguous_framing_is_refused(self, run, head):
        async def case():
            async with Script(answering(b"HTTP/1.1 200 OK\r\n" + head + b"\r\n\r\nok\r\n0\r\n\r\n")) as server:
                p = pool()
                with pytest.raises(UpstreamUnreachable, match="unreadable answer"):
                    await get(p, server.port)
                p.close()
        run(case())

    def test_oversized_head(self, run):
        async def case():
            async def endless(reader, writer):
                await reader.readuntil(b"\r\n\r\n")
                writer.write(b"HTTP/1.1 200 OK\r\n")
                for i in range(5000):
                    writer.write(b"X-Filler-%d: %s\r\n" % (i, b"y" * 100))
                    await writer.drain()
                await reader.read()
            async with Script(endless) as server:
                p = pool()
                with pytest.raises(UpstreamUnreachable, match="head over 256 KiB"):
                    await get(p, server.port)
                p.close()
        run(case())

    def test_slow_head_times_out(self, run):
        async def case():
            async def silent(reader, writer):
                await reader.readuntil(b"\r\n\r\n")
                writer.write(b"HTTP/1.1 200")   # a first byte, then silence
                await asyncio.sleep(5)
            async with Script(silent) as server:
                p = pool(read_timeout=0.3)
                started = asyncio.get_running_loop().time()
                with pytest.raises(UpstreamTimeout, match="did not answer in time"):
                    await get(p, server.port)
                p.close()
                return asyncio.get_running_loop().time() - started
        assert run(case()) < 2

    def test_silence_mid_body_breaks_it(self, run):
        async def case():
            async def stall(reader, writer):
                await reader.readuntil(b"\r\n\r\n")
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
                await asyncio.sleep(5)
            async with Script(stall) as server:
                p = pool(read_timeout=0.3)
                response = await get(p, server.port)
                with pytest.raises(UpstreamBroken, match="silent"):
                    await response.read()
                response.release()
                p.close()
        run(case())

    def test_silence_on_a_reused_connection_times_out_from_its_own_request(self, run):
        """The silence timer is one per connection, moved on lazily: the one left pending by the first
        exchange must not fire early for the second, nor let a silent second one hang."""
        async def case():
            async def answer_then_stall(reader, writer):
                await reader.readuntil(b"\r\n\r\n")
                writer.write(OK)
                await reader.readuntil(b"\r\n\r\n")   # the second request: never answered
                await asyncio.sleep(5)
            async with Script(answer_then_stall) as server:
                p = pool(read_timeout=0.4)
                loop = asyncio.get_running_loop()
                response = await get(p, server.port)
                assert await response.read() == b"ok"
                response.release()
                await asyncio.sleep(0.3)   # the first exchange's timer is due 0.1 s into the second
                started = loop.time()
                with pytest.raises(UpstreamTimeout, match="did not answer in time"):
                    await get(p, server.port)
                waited = loop.time() - started
                p.close()
                return server.accepted, waited
        accepted, waited = run(case())
        assert accepted == 1 and 0.35 < waited < 2   # the same connection; a whole read_timeout of silence

    def test_connect_refused(self, run):
        async def case():
            async with Script(answering(OK)) as server:
                port = server.port
            await asyncio.sleep(0.05)
            with pytest.raises(UpstreamUnreachable, match=f"cannot connect to a.test:{port}"):
                await get(pool(), port)
        run(case())

    def test_no_address_is_unreachable(self, run):
        async def case():
            with pytest.raises(UpstreamUnreachable, match="cannot resolve"):
                await pool().send("GET", "http", "a.test", 80, (), "/", [("Host", "a.test")], None)
        run(case())


class TestFraming:
    def test_chunked_answer_keeps_its_trailers(self, run):
        async def case():
            answer = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"3\r\nabc\r\n2\r\nde\r\n0\r\nX-Checksum: 42\r\nX-Other: y\r\n\r\n")
            async with Script(answering(answer, OK)) as server:
                p = pool()
                response = await get(p, server.port)
                body = await response.read()
                trailers = response.trailers()
                response.release()
                again = await get(p, server.port)   # read to its end: reused
                await again.read()
                again.release()
                p.close()
                return body, trailers, server.accepted
        assert run(case()) == (b"abcde", [("X-Checksum", "42"), ("X-Other", "y")], 1)

    def test_head_answer_has_no_body_despite_its_length(self, run):
        async def case():
            async with Script(answering(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n", OK)) as server:
                p = pool()
                response = await get(p, server.port, method="HEAD")
                assert response.headers["content-length"] == "1234"
                assert await asyncio.wait_for(response.read(), 1) == b""
                response.release()
                p.close()
        run(case())

    @pytest.mark.parametrize("status", [204, 304])
    def test_no_body_statuses(self, run, status):
        async def case():
            answer = b"HTTP/1.1 %d X\r\nContent-Length: 5\r\n\r\n" % status if status == 304 \
                else b"HTTP/1.1 204 No Content\r\n\r\n"
            async with Script(answering(answer, OK)) as server:
                p = pool()
                response = await get(p, server.port)
                assert await asyncio.wait_for(response.read(), 1) == b""
                response.release()
                second = await get(p, server.port)
                assert await second.read() == b"ok"
                second.release()
                p.close()
                return server.accepted
        assert run(case()) == 1

    def test_interim_answers_are_skipped(self, run):
        async def case():
            answer = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n" + OK
            async with Script(answering(answer)) as server:
                p = pool()
                response = await get(p, server.port)
                result = response.status, response.header_items(), await response.read()
                response.release()
                p.close()
                return result
        assert run(case()) == (200, [("Content-Length", "2")], b"ok")

    def test_until_close_body(self, run):
        async def case():
            async with Script(answering(b"HTTP/1.1 200 OK\r\n\r\nall of it", then_close=True)) as server:
                p = pool()
                response = await get(p, server.port)
                body = await response.read()
                response.release()
                p.close()
                return body
        assert run(case()) == b"all of it"

    @pytest.mark.parametrize("coding", [b"chunked, identity", b"gzip, chunked", b"gzip", b"chunked, gzip"])
    def test_a_transfer_coding_never_offered_is_refused(self, run, coding):
        """The proxy sends no TE: a coding other than chunked would reach the client (or the restorer)
        still coded."""
        async def case():
            answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: " + coding + b"\r\n\r\n2\r\nok"
            async with Script(answering(answer, then_close=True)) as server:
                p = pool()
                try:
                    with pytest.raises(UpstreamError) as caught:
                        await get(p, server.port)
                finally:
                    p.close()
                return caught.value.message
        assert "never offered" in run(case())

    def test_streamed_body_of_unknown_length_goes_chunked(self, run):
        class Stream:
            """What the pipeline passes: aiohttp's request.content (``readany``, empty at the end)."""
            def __init__(self, parts):
                self.parts = list(parts)

            async def readany(self):
                await asyncio.sleep(0)
                return self.parts.pop(0) if self.parts else b""

        async def case():
            seen = []

            async def record(reader, writer):
                head = await reader.readuntil(b"\r\n\r\n")
                body = await reader.readuntil(b"0\r\n\r\n")
                seen.append(head + body)
                writer.write(OK)
                await writer.drain()
                await reader.read()
            async with Script(record) as server:
                p = pool()
                response = await get(p, server.port, method="POST", body=Stream([b"hello ", b"world"]),
                                     headers=[("Host", "a.test"), ("Transfer-Encoding", "gzip")])
                await response.read()
                response.release()
                p.close()
            return seen[0]
        wire = run(case())
        assert wire.startswith(b"POST /x?y=1 HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n")
        assert wire.endswith(b"\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n")

    def test_bytes_body_gets_its_own_length(self, run):
        async def case():
            seen = []

            async def record(reader, writer):
                seen.append(await reader.readuntil(b"\r\n\r\n") + await reader.readexactly(4))
                writer.write(OK)
                await writer.drain()
                await reader.read()
            async with Script(record) as server:
                p = pool()
                response = await get(p, server.port, method="POST", body=b"abcd",
                                     headers=[("Host", "a.test"), ("content-length", "999")])
                await response.read()
                response.release()
                p.close()
            return seen[0]
        assert run(case()) == b"POST /x?y=1 HTTP/1.1\r\nHost: a.test\r\nContent-Length: 4\r\n\r\nabcd"

    @pytest.mark.parametrize("header", [("X-A", "v\r\nX-Injected: 1"), ("X-A\nX-B", "v"), ("X-A", "v\rx")])
    def test_line_breaks_in_headers_are_refused_unsent(self, run, header):
        async def case():
            async with Script(answering(OK)) as server:
                p = pool()
                with pytest.raises(UpstreamUnreachable, match="line break"):
                    await get(p, server.port, headers=[("Host", "a.test"), header])
                p.close()
                return server.accepted
        assert run(case()) == 0


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_test_pki(tmp_path_factory.mktemp("pki"))


class TestTLS:
    def server_tls(self, pki: tuple[Path, Path, Path]) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pki[1], pki[2])
        return context

    def test_big_answers_read_at_once_come_whole_though_their_connections_share_a_read_buffer(self, run, pki):
        """The pool's connections decrypt into one buffer (``BufferedProtocol``): each read must be
        consumed before the next lands in it, whichever connection it is for."""
        def streaming(first: int, pieces: int) -> Handler:
            async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (pieces * PIECE))
                for i in range(first, first + pieces):
                    writer.write(big_piece(i))
                    await writer.drain()
                await reader.read()
            return handler

        async def digest(response) -> str:
            checksum = hashlib.sha256()
            async for chunk in response.chunks():
                checksum.update(chunk)
                await asyncio.sleep(0)   # the other answer's reads land in between
            response.release()
            return checksum.hexdigest()

        async def case():
            async with Script(streaming(0, 128), streaming(1000, 128), tls=self.server_tls(pki)) as server:
                p = pool(tls=ssl.create_default_context(cafile=str(pki[0])))
                first = await get(p, server.port, scheme="https", host="upstream.test")
                second = await get(p, server.port, scheme="https", host="upstream.test")   # a second connection
                digests = await asyncio.gather(digest(first), digest(second))
                p.close()
                return digests, server.accepted
        expected = [hashlib.sha256(b"".join(big_piece(i) for i in range(first, first + 128))).hexdigest()
                    for first in (0, 1000)]
        assert run(case()) == (expected, 2)

    def test_verified_with_the_url_host_as_sni(self, run, pki):
        async def case():
            names = []
            context = self.server_tls(pki)
            context.sni_callback = lambda sock, name, ctx: names.append(name)
            async with Script(answering(OK), tls=context) as server:
                p = pool(tls=ssl.create_default_context(cafile=str(pki[0])))
                response = await get(p, server.port, scheme="https", host="upstream.test")
                body = await response.read()
                response.release()
                p.close()
                return body, names
        assert run(case()) == (b"ok", ["upstream.test"])

    def test_a_name_the_certificate_does_not_cover_fails_verification(self, run, pki):
        async def case():
            async with Script(answering(OK), tls=self.server_tls(pki)) as server:
                p = pool(tls=ssl.create_default_context(cafile=str(pki[0])))
                with pytest.raises(UpstreamTLSError, match="failed verification"):
                    await get(p, server.port, scheme="https", host="elsewhere.test")
                p.close()
        run(case())

    def test_an_untrusted_issuer_fails_verification(self, run, pki):
        async def case():
            async with Script(answering(OK), tls=self.server_tls(pki)) as server:
                with pytest.raises(UpstreamTLSError, match="failed verification"):
                    await get(pool(), server.port, scheme="https", host="upstream.test")
        run(case())
