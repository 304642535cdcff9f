"""Smuggling and spelling attacks on the client side's HTTP/1.1 server (``h1_server``), plain HTTP over
SOCKS5 to an intercepted host, on asyncio's loop and uvloop.

A differential runs the same raw bytes through aiohttp's server (``http_server.TimedServer``, what
served these connections before ``h1_server``): the upstream must receive byte-identical requests, or
both must refuse. The other tests pin what a difference found: a transfer coding split over two
fields, a second ``Host`` or none, whitespace after a field value.
"""

from __future__ import annotations

import asyncio
import logging
import re
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from policyproxy.proxy import opening
from policyproxy.proxy.handlers import tunnel_handler
from policyproxy.proxy.http_server import TimedServer
from policyproxy.proxy.server import ProxyServer
from tests.proxy.harness import pins, running
from tests.shell.attacks.test_client_heads import CONFIG, until_closed


class Recorder:
    """A loopback origin that records each request as it arrived (head and body bytes) and answers ``ok``."""

    def __init__(self) -> None:
        self.requests: list[bytes] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                raw = await reader.readuntil(b"\r\n\r\n")
                fields = {line.split(b":", 1)[0].strip().lower(): line.split(b":", 1)[1].strip()
                          for line in raw.split(b"\r\n")[1:] if b":" in line}
                if b"content-length" in fields:
                    raw += await reader.readexactly(int(fields[b"content-length"]))
                elif fields.get(b"transfer-encoding") == b"chunked":
                    while True:
                        line = await reader.readuntil(b"\r\n")
                        raw += line
                        if int(line.strip(), 16) == 0:
                            raw += await reader.readuntil(b"\r\n")
                            break
                        raw += await reader.readexactly(int(line.strip(), 16) + 2)
                self.requests.append(raw)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()


def with_aiohttp(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tunnels served by aiohttp's server again, as before ``h1_server``."""
    def serve_http(ctx, transport, conn, first=b""):
        server = TimedServer(tunnel_handler(ctx, conn), ctx.heads, ctx.options.head_timeout,
                             ctx.options.keepalive_timeout)
        ctx.registry.servers.add(server)
        server.take(transport, first)
    monkeypatch.setattr(opening, "serve_http", serve_http)


@asynccontextmanager
async def recorded(tmp_path: Path) -> AsyncIterator[tuple[ProxyServer, Recorder, int]]:
    origin = Recorder()
    server = await asyncio.start_server(origin.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with running(tmp_path, CONFIG, pins=pins(("a.test",), port)) as proxy:
            yield proxy, origin, port
    finally:
        server.close()


async def through(tmp_path: Path, raw: str) -> tuple[list[bytes], list[bytes]]:
    """``raw`` (``{h}`` is the tunnel's host:port, ``{p}`` its port) written at once into a SOCKS5 tunnel
    to ``a.test``: the statuses answered and the requests the origin received (port spelled ``{p}``)."""
    async with recorded(tmp_path) as (proxy, origin, port):
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.addresses["socks5"][1])
        writer.write(b"\x05\x01\x00")
        assert await reader.readexactly(2) == b"\x05\x00"
        writer.write(b"\x05\x01\x00\x03\x06a.test" + struct.pack("!H", port))
        assert (await reader.readexactly(10))[:2] == b"\x05\x00"
        writer.write(raw.replace("{h}", "a.test:{p}").replace("{p}", str(port)).encode("latin-1"))
        answer = await until_closed(reader)
        writer.close()
        return (re.findall(rb"HTTP/1\.[01] (\d{3}) ", answer),
                [request.replace(str(port).encode(), b"{p}") for request in origin.requests])


H = "Host: {h}\r\n"
CLOSE = "Connection: close\r\n"

# Shapes both servers must treat alike: the same requests upstream, byte for byte, or both refuse.
SAME_AS_AIOHTTP = {
    "cl_leading_zeros": "POST /ok HTTP/1.1\r\n" + H + "Content-Length: 005\r\n" + CLOSE + "\r\nhello",
    "cl_trailing_space": "POST /ok HTTP/1.1\r\n" + H + "Content-Length: 5 \r\n" + CLOSE + "\r\nhello",
    "value_trailing_tab": "GET /ok HTTP/1.1\r\n" + H + "X-A: a b\t \r\n" + CLOSE + "\r\n",
    "value_leading_spaces": "GET /ok HTTP/1.1\r\n" + H + "X-A:    a\r\n" + CLOSE + "\r\n",
    "value_obs_text": "GET /ok HTTP/1.1\r\n" + H + "X-A: caf\xe9\r\n" + CLOSE + "\r\n",
    "te_chunked_on_http_1_0": "POST /ok HTTP/1.0\r\n" + H + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "te_chunked_capitalised": "POST /ok HTTP/1.1\r\n" + H + "Transfer-Encoding: Chunked\r\n" + CLOSE
                              + "\r\n5\r\nhello\r\n0\r\n\r\n",
    "te_two_fields_gzip_then_chunked": "POST /ok HTTP/1.1\r\n" + H + "Transfer-Encoding: gzip\r\n"
                                       "Transfer-Encoding: chunked\r\n" + CLOSE + "\r\n5\r\nhello\r\n0\r\n\r\n",
    "te_two_fields_chunked": "POST /ok HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\n"
                             "Transfer-Encoding: chunked\r\n" + CLOSE + "\r\n5\r\nhello\r\n0\r\n\r\n",
    "te_chunked_identity": "POST /ok HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked, identity\r\n" + CLOSE
                           + "\r\n5\r\nhello\r\n0\r\n\r\n",
    "cl_plus": "POST /ok HTTP/1.1\r\n" + H + "Content-Length: +5\r\n" + CLOSE + "\r\nhello",
    "cl_two_equal_fields": "POST /ok HTTP/1.1\r\n" + H + "Content-Length: 5\r\nContent-Length: 5\r\n" + CLOSE
                           + "\r\nhello",
    "chunk_extension": "POST /ok HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\n" + CLOSE
                       + "\r\n5;a=b\r\nhello\r\n0\r\n\r\n",
    "chunk_size_0x": "POST /ok HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\n" + CLOSE
                     + "\r\n0x5\r\nhello\r\n0\r\n\r\n",
    "chunk_trailer_field": "POST /ok HTTP/1.1\r\n" + H + "Transfer-Encoding: chunked\r\n" + CLOSE
                           + "\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
    "space_before_colon": "POST /ok HTTP/1.1\r\n" + H + "Content-Length : 5\r\n" + CLOSE + "\r\nhello",
    "host_twice": "GET /ok HTTP/1.1\r\n" + H + "Host: evil.test\r\n" + CLOSE + "\r\n",
    "host_twice_same": "GET /ok HTTP/1.1\r\n" + H + H + CLOSE + "\r\n",
    "host_missing": "GET /ok HTTP/1.1\r\n" + CLOSE + "\r\n",
    "host_missing_on_http_1_0": "GET /ok HTTP/1.0\r\n\r\n",
    "host_upper_case": "GET /ok HTTP/1.1\r\nHost: A.TEST:{p}\r\n" + CLOSE + "\r\n",
    "host_trailing_dot": "GET /ok HTTP/1.1\r\nHost: a.test.:{p}\r\n" + CLOSE + "\r\n",
    "host_port_leading_zero": "GET /ok HTTP/1.1\r\nHost: a.test:0{p}\r\n" + CLOSE + "\r\n",
    "host_userinfo": "GET /ok HTTP/1.1\r\nHost: x@a.test:{p}\r\n" + CLOSE + "\r\n",
    "absolute_form_in_tunnel": "GET http://{h}/ok HTTP/1.1\r\n" + H + CLOSE + "\r\n",
    "path_dot_dot": "GET /ok/../admin HTTP/1.1\r\n" + H + CLOSE + "\r\n",
    "path_percent_dot_dot": "GET /ok/%2e%2e/admin HTTP/1.1\r\n" + H + CLOSE + "\r\n",
    "path_percent_slash": "GET /ok%2f..%2fadmin HTTP/1.1\r\n" + H + CLOSE + "\r\n",
    "method_lower_case": "get /ok HTTP/1.1\r\n" + H + CLOSE + "\r\n",
    "expect_on_a_denied_request": "POST /denied HTTP/1.1\r\n" + H + "Expect: 100-continue\r\n"
                                  "Content-Length: 5\r\n" + CLOSE + "\r\n",
    "connection_lists_content_length": "POST /ok HTTP/1.1\r\n" + H + "Connection: content-length\r\n"
                                       "Content-Length: 5\r\n\r\nhelloGET /ok/after HTTP/1.1\r\n" + H + CLOSE + "\r\n",
    "pipelined_after_a_denied_upload": "POST /denied HTTP/1.1\r\n" + H + "Content-Length: 25\r\n\r\n"
                                       "GET /ok/smuggled HTTP/1.1GET /ok/after HTTP/1.1\r\n" + H + CLOSE + "\r\n",
}


@pytest.mark.parametrize("shape", sorted(SAME_AS_AIOHTTP))
def test_the_upstream_receives_what_it_received_behind_aiohttp(tmp_path, on_both_loops, monkeypatch, shape):
    raw = SAME_AS_AIOHTTP[shape]
    (tmp_path / "h1").mkdir()
    (tmp_path / "aiohttp").mkdir()
    statuses, requests = on_both_loops(through(tmp_path / "h1", raw))
    with_aiohttp(monkeypatch)
    before_statuses, before_requests = on_both_loops(through(tmp_path / "aiohttp", raw))
    assert requests == before_requests
    assert [s[:1] for s in statuses] == [s[:1] for s in before_statuses]   # 2xx/4xx alike (reasons differ)
    assert not any(b"smuggled" in request for request in requests)


def test_a_transfer_coding_split_over_two_fields_is_refused(tmp_path, on_both_loops):
    # One field says gzip, the next chunked: llhttp decodes the chunks, the gzip was relayed undecoded
    # (its bytes past the redaction inspector, a coding the upstream never hears of).
    statuses, requests = on_both_loops(through(tmp_path, SAME_AS_AIOHTTP["te_two_fields_gzip_then_chunked"]))
    assert statuses == [b"400"]
    assert requests == []


@pytest.mark.parametrize("shape", ["host_twice", "host_twice_same"])
def test_a_second_host_field_is_refused(tmp_path, on_both_loops, shape):
    # RFC 9112 section 3.2: more than one Host is a 400 (the proxy read the first, another hop may read the last)
    statuses, requests = on_both_loops(through(tmp_path, SAME_AS_AIOHTTP[shape]))
    assert statuses == [b"400"]
    assert requests == []


def test_whitespace_after_a_field_value_is_not_part_of_it(tmp_path, on_both_loops):
    # RFC 9112 section 5: OWS around a value is not part of it; hook matchers and the upstream saw "5 "
    statuses, requests = on_both_loops(through(
        tmp_path, "POST /ok HTTP/1.1\r\n" + H + "X-A: a b\t \r\nContent-Length: 5 \r\n" + CLOSE + "\r\nhello"))
    assert statuses == [b"200"]
    assert requests == [b"POST /ok HTTP/1.1\r\nHost: a.test:{p}\r\nX-A: a b\r\nContent-Length: 5\r\n\r\nhello"]


def test_a_websocket_upgrade_without_host_is_refused_before_aiohttp_reads_it(tmp_path, on_both_loops, caplog):
    # handed over, aiohttp's parser refused it too, but logged "Error handling request" with a traceback
    statuses, requests = on_both_loops(through(
        tmp_path, "GET /ok HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"))
    assert statuses == [b"400"]
    assert requests == []
    assert not [record for record in caplog.records if record.name.startswith(("aiohttp", "policyproxy"))
                and record.levelno >= logging.ERROR]


def test_a_denied_request_that_expected_100_continue_closes_the_connection(tmp_path, on_both_loops):
    # No 100 went out, so the client sends no body: kept alive, its next request was read as the
    # denied one's body (its first 50 bytes), the rest a 400 (aiohttp's server did the same)
    async def scenario() -> tuple[bytes, bytes]:
        async with recorded(tmp_path) as (proxy, _origin, port):
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.addresses["socks5"][1])
            writer.write(b"\x05\x01\x00")
            await reader.readexactly(2)
            writer.write(b"\x05\x01\x00\x03\x06a.test" + struct.pack("!H", port))
            await reader.readexactly(10)
            writer.write(f"POST /denied HTTP/1.1\r\nHost: a.test:{port}\r\nExpect: 100-continue\r\n"
                         f"Content-Length: 50\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            rest = await until_closed(reader, 3)   # closed at once: not after the 5 s linger
            writer.close()
            return head, rest
    head, rest = on_both_loops(scenario())
    assert head.startswith(b"HTTP/1.1 403 ")
    assert b"Connection: close\r\n" in head
    assert b"HTTP/1.1" not in rest


def test_a_chunked_http_1_0_request_closes_the_connection_after_its_answer(tmp_path, on_both_loops):
    # RFC 9112 section 6.1: Transfer-Encoding in HTTP/1.0 is faulty framing, the connection closes after
    # it even when kept alive (an HTTP/1.0 hop before the proxy would read the chunks as the next request)
    statuses, requests = on_both_loops(through(
        tmp_path, "POST /ok HTTP/1.0\r\n" + H + "Connection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"
                  "5\r\nhello\r\n0\r\n\r\nGET /ok/after HTTP/1.1\r\n" + H + CLOSE + "\r\n"))
    assert statuses == [b"200"]
    assert [request.split(b" ")[1] for request in requests] == [b"/ok"]
