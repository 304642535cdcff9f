"""Attacks on the client side's HTTP/1.1 server (``h1_server``) through a real proxy, on asyncio's loop
and uvloop, inside tunnels: plain HTTP over SOCKS5 to an intercepted host, and HTTPS over CONNECT.

By class: smuggling shapes (refused 4xx, nothing reaches the upstream, the connection closes);
oversize heads; pipelining after a denial (answers in order, the denied request never sent); a
client that vanishes mid-body (the upstream request ends at once, one event); upgrade tricks (a
request hidden behind an upgrade is never sent); resource counts over thousands of requests.
"""

from __future__ import annotations

import asyncio
import os
import re
import ssl
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from policyproxy.proxy.server import ProxyServer
from tests.proxy.harness import pins, running

CONFIG = """
[permissions.t.network.domains]
"*" = "allow"
[permissions.t.network.mitm.hooks.a]
host = "a.test"
methods = ["GET", "POST", "HEAD"]
path_prefixes = ["/ok"]
action = ["strip"]
[permissions.t.network.mitm.actions.strip]
strip_request_headers = ["cookie"]
"""


class Upstream:
    """A loopback HTTP/1.1 origin (plain or TLS) that records each request's head and body, answers
    ``ok`` and keeps the connection alive; ``cut`` counts connections closed mid-body."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        self.heads: list[bytes] = []
        self.cut = 0
        self.closed = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                self.heads.append(head)
                fields = {line.split(b":", 1)[0].strip().lower(): line.split(b":", 1)[1].strip()
                          for line in head.split(b"\r\n")[1:] if b":" in line}
                if b"content-length" in fields:
                    await reader.readexactly(int(fields[b"content-length"]))
                elif fields.get(b"transfer-encoding") == b"chunked":
                    while (size := int((await reader.readuntil(b"\r\n")).strip(), 16)) != 0:
                        await reader.readexactly(size + 2)
                    await reader.readuntil(b"\r\n")
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except asyncio.IncompleteReadError as exc:
            if exc.partial or not reader.at_eof():
                self.cut += 1
        except (ConnectionError, ValueError):
            self.cut += 1
        finally:
            writer.close()
            self.closed.set()

    async def __aenter__(self) -> Upstream:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0, ssl=self.tls)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()


@asynccontextmanager
async def proxied(tmp_path: Path, tls: bool = False, **options: object) -> AsyncIterator[tuple[ProxyServer, Upstream]]:
    context = None
    if tls:
        from tests.shell.upstream import make_test_pki
        (tmp_path / "pki").mkdir(exist_ok=True)
        ca, cert, key = make_test_pki(tmp_path / "pki", ("a.test",))
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        options["upstream_cas"] = (ca,)
    async with Upstream(context) as upstream, \
            running(tmp_path, CONFIG, pins=pins(("a.test",), upstream.port), **options) as proxy:
        yield proxy, upstream


async def socks_plain(proxy: ProxyServer, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A SOCKS5 tunnel to ``a.test:port`` (intercepted: its requests are served by ``h1_server``)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.addresses["socks5"][1])
    writer.write(b"\x05\x01\x00")
    assert await reader.readexactly(2) == b"\x05\x00"
    writer.write(b"\x05\x01\x00\x03\x06a.test" + struct.pack("!H", port))
    assert (await reader.readexactly(10))[:2] == b"\x05\x00"
    return reader, writer


async def connect_tls(proxy: ProxyServer, tmp_path: Path, port: int) -> tuple[asyncio.StreamReader,
                                                                                 asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy.addresses["http"][1])
    writer.write(f"CONNECT a.test:{port} HTTP/1.1\r\nHost: a.test:{port}\r\n\r\n".encode())
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
    context = ssl.create_default_context(cafile=str(tmp_path / "ca" / "ca.pem"))
    context.set_alpn_protocols(["http/1.1"])
    await writer.start_tls(context, server_hostname="a.test")
    return reader, writer


async def until_closed(reader: asyncio.StreamReader, timeout: float = 5) -> bytes:
    out = b""
    try:
        async with asyncio.timeout(timeout):
            while chunk := await reader.read(65536):
                out += chunk
    except (ConnectionError, ssl.SSLError, TimeoutError):
        pass
    return out


def h(port: int) -> str:
    return f"a.test:{port}"


# -- smuggling shapes ------------------------------------------------------------------------------------

SMUGGLING = {
    "cl_and_te": "POST /ok HTTP/1.1\r\nHost: {h}\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "0\r\n\r\nGET /ok/smuggled HTTP/1.1\r\nHost: {h}\r\n\r\n",
    "te_and_cl": "POST /ok HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n"
                 "0\r\n\r\nGET /ok/smuggled HTTP/1.1\r\nHost: {h}\r\n\r\n",
    "two_content_lengths": "POST /ok HTTP/1.1\r\nHost: {h}\r\nContent-Length: 0\r\nContent-Length: 40\r\n\r\n"
                           "GET /ok/smuggled HTTP/1.1\r\nHost: {h}\r\n\r\n",
    "content_length_list": "POST /ok HTTP/1.1\r\nHost: {h}\r\nContent-Length: 0, 40\r\n\r\n"
                           "GET /ok/smuggled HTTP/1.1\r\nHost: {h}\r\n\r\n",
    "te_gzip_chunked": "POST /ok HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    "te_identity": "POST /ok HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: identity\r\n\r\nabc",
    "te_with_space_before_colon": "POST /ok HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
    "te_obs_fold": "POST /ok HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
    "te_vertical_tab": "POST /ok HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: \x0bchunked\r\n\r\n0\r\n\r\n",
    "bare_lf_in_head": "GET /ok HTTP/1.1\nHost: {h}\n\n",
    "bare_cr_in_head": "GET /ok HTTP/1.1\rHost: {h}\r\n\r\n",
    "chunk_size_overflow": "POST /ok HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: chunked\r\n\r\n"
                           "10000000000000001\r\na\r\n0\r\n\r\n",
    "chunk_without_crlf": "POST /ok HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n",
    "http_0_9": "GET /ok\r\n\r\n",
    "http_1_2": "GET /ok HTTP/1.2\r\nHost: {h}\r\n\r\n",
    "nul_in_a_value": "GET /ok HTTP/1.1\r\nHost: {h}\r\nX-A: a\x00b\r\n\r\n",
    "long_field": "GET /ok HTTP/1.1\r\nHost: {h}\r\nX-Big: " + "b" * 20000 + "\r\n\r\n",
    "many_fields": "GET /ok HTTP/1.1\r\nHost: {h}\r\n" + "".join(f"X-{i}: {'v' * 900}\r\n" for i in range(90)) + "\r\n",
    "long_target": "GET /ok" + "a" * 20000 + " HTTP/1.1\r\nHost: {h}\r\n\r\n",
}


@pytest.mark.parametrize("shape", sorted(SMUGGLING))
def test_smuggling_shapes_are_refused_and_reach_no_upstream(tmp_path, on_both_loops, shape):
    async def scenario() -> tuple[bytes, int]:
        async with proxied(tmp_path) as (proxy, upstream):
            reader, writer = await socks_plain(proxy, upstream.port)
            writer.write(SMUGGLING[shape].replace("{h}", h(upstream.port)).encode("latin-1"))
            answer = await until_closed(reader)
            writer.close()
            return answer, len(upstream.heads)
    answer, sent = on_both_loops(scenario())
    assert answer.startswith((b"HTTP/1.1 400 ", b"HTTP/1.1 431 ")), answer[:200]
    assert b"connection: close" in answer.lower()
    assert sent == 0


@pytest.mark.parametrize("shape", ["cl_and_te", "two_content_lengths", "te_gzip_chunked", "bare_lf_in_head",
                                   "long_field"])
def test_smuggling_shapes_inside_tls_are_refused_too(tmp_path, on_both_loops, shape):
    async def scenario() -> tuple[bytes, int]:
        async with proxied(tmp_path, tls=True) as (proxy, upstream):
            reader, writer = await connect_tls(proxy, tmp_path, upstream.port)
            writer.write(SMUGGLING[shape].replace("{h}", h(upstream.port)).encode("latin-1"))
            answer = await until_closed(reader)
            writer.close()
            return answer, len(upstream.heads)
    answer, sent = on_both_loops(scenario())
    assert answer.startswith((b"HTTP/1.1 400 ", b"HTTP/1.1 431 ")), answer[:200]
    assert sent == 0


# -- pipelining ------------------------------------------------------------------------------------------


def test_pipelining_after_a_denial_answers_in_order_and_sends_only_the_allowed(tmp_path, on_both_loops):
    async def scenario() -> tuple[bytes, list[bytes], list[int | None]]:
        async with proxied(tmp_path) as (proxy, upstream):
            events: list[int | None] = []
            proxy.context.reporter.sinks.append(lambda decision, outcome: events.append(outcome.status))
            reader, writer = await socks_plain(proxy, upstream.port)
            host = h(upstream.port)
            writer.write((f"POST /denied HTTP/1.1\r\nHost: {host}\r\nContent-Length: 5\r\n\r\nhello"
                          f"GET /ok/1 HTTP/1.1\r\nHost: {host}\r\n\r\n"
                          f"GET /ok/2 HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").encode())
            answer = await until_closed(reader)
            writer.close()
            return answer, upstream.heads, events
    answer, heads, events = on_both_loops(scenario())
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", answer) == [b"403", b"200", b"200"]
    assert [head.split(b" ")[1] for head in heads] == [b"/ok/1", b"/ok/2"]
    assert events == [200, 403, 200, 200]   # the tunnel's, then one per request


def test_a_request_dripped_behind_a_served_one_is_still_timed(tmp_path, on_both_loops):
    async def scenario() -> bytes:
        async with proxied(tmp_path, head_timeout=0.5) as (proxy, upstream):
            reader, writer = await socks_plain(proxy, upstream.port)
            writer.write(f"GET /ok/1 HTTP/1.1\r\nHost: {h(upstream.port)}\r\n\r\nGET /ok/2 HTTP/1.1\r\n".encode())
            answer = b""
            loop = asyncio.get_running_loop()
            start = loop.time()
            while loop.time() - start < 4:
                writer.write(b"X-Drip: 1\r\n")
                try:
                    chunk = await asyncio.wait_for(reader.read(65536), 0.1)
                except asyncio.TimeoutError:
                    continue
                except ConnectionError:
                    break
                if not chunk:
                    break
                answer += chunk
            writer.close()
            return answer
    answer = on_both_loops(scenario())
    assert answer.startswith(b"HTTP/1.1 200 OK") and b"HTTP/1.1 408 " in answer


# -- vanishing clients ------------------------------------------------------------------------------------


def test_a_client_that_vanishes_mid_body_ends_the_upstream_request(tmp_path, on_both_loops):
    async def scenario() -> tuple[int, list[int | None]]:
        async with proxied(tmp_path) as (proxy, upstream):
            events: list[int | None] = []
            proxy.context.reporter.sinks.append(lambda decision, outcome: events.append(outcome.status))
            _reader, writer = await socks_plain(proxy, upstream.port)
            writer.write(f"POST /ok HTTP/1.1\r\nHost: {h(upstream.port)}\r\nContent-Length: 100000\r\n\r\n".encode()
                         + b"x" * 1000)
            for _ in range(100):   # the upstream has the head
                if upstream.heads:
                    break
                await asyncio.sleep(0.02)
            writer.transport.abort()
            await asyncio.wait_for(upstream.closed.wait(), 3)   # not the read timeout (600 s)
            for _ in range(100):
                if len(events) == 2:
                    break
                await asyncio.sleep(0.02)
            return upstream.cut, events
    cut, events = on_both_loops(scenario())
    assert cut == 1
    assert events == [200, None]   # the tunnel's, then the request's (no answer status: the client left)


# -- upgrade tricks -----------------------------------------------------------------------------------------


UPGRADES = {
    "h2c": "GET /ok HTTP/1.1\r\nHost: {h}\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
           "HTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\nGET /ok/smuggled HTTP/1.1\r\nHost: {h}\r\n\r\n",
    "websocket_without_connection_upgrade": "GET /ok HTTP/1.1\r\nHost: {h}\r\nUpgrade: websocket\r\n\r\n"
                                            "GET /ok/smuggled HTTP/1.1\r\nHost: {h}\r\n\r\n",
    "connect_inside": "CONNECT evil.test:443 HTTP/1.1\r\nHost: evil.test:443\r\n\r\n"
                      "GET /ok/smuggled HTTP/1.1\r\nHost: {h}\r\n\r\n",
}


@pytest.mark.parametrize("trick", sorted(UPGRADES))
def test_a_request_hidden_behind_an_upgrade_is_never_sent(tmp_path, on_both_loops, trick):
    async def scenario() -> tuple[bytes, list[bytes]]:
        async with proxied(tmp_path) as (proxy, upstream):
            reader, writer = await socks_plain(proxy, upstream.port)
            writer.write(UPGRADES[trick].replace("{h}", h(upstream.port)).encode())
            # Without ``Connection: upgrade`` what follows the head is dropped and the connection waits for
            # its idle timeout: 2 s on loopback is ample for a smuggled request to have reached the upstream.
            answer = await until_closed(reader, 2 if trick == "websocket_without_connection_upgrade" else 10)
            writer.close()
            return answer, upstream.heads
    answer, heads = on_both_loops(scenario())
    assert not any(b"smuggled" in head for head in heads), heads
    if trick == "h2c":
        assert not any(b"upgrade" in head.lower() for head in heads)
    assert answer.count(b"HTTP/1.1 ") <= 1 and b"Traceback" not in answer


# -- resources -----------------------------------------------------------------------------------------------


def proxy_tasks() -> int:
    """Tasks running now, but for the in-process origin's (one per pooled connection)."""
    return sum(1 for task in asyncio.all_tasks() if "Upstream.handle" not in repr(task.get_coro()))


def test_thousands_of_keep_alive_requests_leave_no_descriptor_or_task_behind(tmp_path, on_both_loops):
    async def scenario() -> tuple[int, int, int, int, int, int]:
        async with proxied(tmp_path, tls=True) as (proxy, upstream):
            async def client(n: int) -> int:
                reader, writer = await connect_tls(proxy, tmp_path, upstream.port)
                served = 0
                for i in range(n):
                    writer.write(f"GET /ok/{i} HTTP/1.1\r\nHost: {h(upstream.port)}\r\n\r\n".encode())
                    await reader.readuntil(b"ok")
                    served += 1
                writer.close()
                return served

            await client(1)   # warm: the upstream pool holds its connection from now on
            await asyncio.sleep(0.2)
            fds, tasks = len(os.listdir("/proc/self/fd")), proxy_tasks()
            served = sum(await asyncio.gather(*(client(40) for _ in range(50))))
            served += sum(await asyncio.gather(*(client(1) for _ in range(200))))
            for _ in range(100):
                await asyncio.sleep(0.05)
                # the upstream pool keeps idle connections: two descriptors each, with the origin in-process
                pooled = 2 * proxy.context.upstream.pool.count
                if proxy.open_connections()["intercepted"] == 0 and len(os.listdir("/proc/self/fd")) <= fds + pooled:
                    break
            return (served, fds + pooled, len(os.listdir("/proc/self/fd")), tasks, proxy_tasks(),
                    proxy.open_connections()["intercepted"])
    served, fds_before, fds_after, tasks_before, tasks_after, open_after = on_both_loops(scenario())
    assert served == 2200
    assert open_after == 0
    assert fds_after <= fds_before
    assert tasks_after <= tasks_before
