"""Attack class: slow heads. The whole request head (not just its first line) must arrive within
``head_timeout`` on the HTTP listener, on later keep-alive requests and inside TLS tunnels: a client
dripping a header line at a time gets 408 and is closed. Connections still sending a head are
bounded (``max_heads``): beyond it a new connection is closed at once."""

from __future__ import annotations

import asyncio
import ssl

from tests.proxy.harness import pins, running

ALLOW_ALL = '[permissions.t.network.domains]\n"*" = "allow"\n'
HOOKED = ALLOW_ALL + """
[permissions.t.network.mitm.hooks.gh]
host = "api.github.com"
methods = ["GET"]
path_prefixes = ["/"]
action = ["strip"]
[permissions.t.network.mitm.actions.strip]
strip_request_headers = ["cookie"]
"""
TIMEOUT = 1.0


async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, first: bytes,
               seconds: float = 6.0) -> tuple[bytes, float]:
    """Send ``first``, then a header line every 0.25 s; what came back and when the proxy closed."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    writer.write(first)
    answer = b""
    while loop.time() - start < seconds:
        try:
            writer.write(b"X-Drip: still-coming\r\n")
            chunk = await asyncio.wait_for(reader.read(65536), 0.25)
        except asyncio.TimeoutError:
            continue
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            break
        if not chunk:
            break
        answer += chunk
    return answer, loop.time() - start


def test_dripped_header_lines_on_the_listener_get_408(tmp_path, upstream):
    async def scenario() -> tuple[bytes, float]:
        async with running(tmp_path, ALLOW_ALL, head_timeout=TIMEOUT,
                           pins=pins(("tunnel.test",), upstream.plain_port)) as proxy:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.addresses["http"][1])
            h = f"tunnel.test:{upstream.plain_port}"
            return await drip(reader, writer, f"GET http://{h}/x HTTP/1.1\r\nHost: {h}\r\n".encode())

    answer, elapsed = asyncio.run(scenario())
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert elapsed < TIMEOUT + 1.5


def test_dripped_header_lines_on_a_keepalive_request_get_408(tmp_path, upstream):
    async def scenario() -> tuple[bytes, bytes, float]:
        async with running(tmp_path, ALLOW_ALL, head_timeout=TIMEOUT,
                           pins=pins(("tunnel.test",), upstream.plain_port)) as proxy:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.addresses["http"][1])
            h = f"tunnel.test:{upstream.plain_port}"
            writer.write(f"GET http://{h}/first HTTP/1.1\r\nHost: {h}\r\n\r\n".encode())
            first = await asyncio.wait_for(reader.readuntil(b"}"), 5)
            answer, elapsed = await drip(reader, writer, f"GET http://{h}/x HTTP/1.1\r\nHost: {h}\r\n".encode())
            return first, answer, elapsed

    first, answer, elapsed = asyncio.run(scenario())
    assert first.startswith(b"HTTP/1.1 200")
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert elapsed < TIMEOUT + 1.5


def test_dripped_connect_head_gets_408(tmp_path):
    async def scenario() -> tuple[bytes, float]:
        async with running(tmp_path, ALLOW_ALL, head_timeout=TIMEOUT) as proxy:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.addresses["http"][1])
            return await drip(reader, writer, b"CONNECT tunnel.test:443 HTTP/1.1\r\n")

    answer, elapsed = asyncio.run(scenario())
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert elapsed < TIMEOUT + 1.5


def test_dripped_header_lines_inside_a_tls_tunnel_get_408(tmp_path, upstream):
    async def scenario() -> tuple[bytes, float]:
        async with running(tmp_path, HOOKED, head_timeout=TIMEOUT,
                           pins=pins(("api.github.com",), upstream.tls_port)) as proxy:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.addresses["http"][1])
            h = f"api.github.com:{upstream.tls_port}"
            writer.write(f"CONNECT {h} HTTP/1.1\r\n\r\n".encode())
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
            await writer.start_tls(ssl.create_default_context(cafile=str(tmp_path / "ca" / "ca.pem")),
                                   server_hostname="api.github.com")
            return await drip(reader, writer, f"GET /x HTTP/1.1\r\nHost: {h}\r\n".encode())

    answer, elapsed = asyncio.run(scenario())
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert elapsed < TIMEOUT + 1.5


def test_connections_still_sending_a_head_are_bounded(tmp_path, upstream):
    async def scenario() -> tuple[list[bytes], bytes, bytes]:
        async with running(tmp_path, ALLOW_ALL, head_timeout=TIMEOUT, max_heads=3,
                           pins=pins(("tunnel.test",), upstream.plain_port)) as proxy:
            port = proxy.addresses["http"][1]
            slow = []
            for _ in range(3):
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"GET http://tunnel.test/ HTTP/1.1\r\n")
                slow.append((reader, writer))
            await asyncio.sleep(0.1)
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            h = f"tunnel.test:{upstream.plain_port}"
            request = f"GET http://{h}/x HTTP/1.1\r\nHost: {h}\r\nConnection: close\r\n\r\n".encode()
            writer.write(request)
            refused = await asyncio.wait_for(reader.read(), 0.5)    # closed at once, not served
            timed_out = [await asyncio.wait_for(r.read(), TIMEOUT + 2) for r, _ in slow]
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(request)
            served = await asyncio.wait_for(reader.read(), 5)
            return timed_out, refused, served

    timed_out, refused, served = asyncio.run(scenario())
    assert refused == b""
    assert all(answer.startswith(b"HTTP/1.1 408") for answer in timed_out)
    assert served.startswith(b"HTTP/1.1 200")   # the gate is released once the slow heads are gone


def test_empty_lines_dripped_before_a_head_do_not_hold_the_connection(tmp_path, upstream):
    async def scenario() -> tuple[bytes, float]:
        async with running(tmp_path, HOOKED, head_timeout=TIMEOUT,
                           pins=pins(("api.github.com",), upstream.tls_port)) as proxy:
            reader, writer = await asyncio.open_connection("127.0.0.1", proxy.addresses["http"][1])
            h = f"api.github.com:{upstream.tls_port}"
            writer.write(f"CONNECT {h} HTTP/1.1\r\n\r\n".encode())
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
            await writer.start_tls(ssl.create_default_context(cafile=str(tmp_path / "ca" / "ca.pem")),
                                   server_hostname="api.github.com")
            loop = asyncio.get_running_loop()
            start = loop.time()
            answer = b""
            while loop.time() - start < 6:
                try:
                    writer.write(b"\r\n\r\n")   # each read holds an "end of head", never a head
                    chunk = await asyncio.wait_for(reader.read(65536), 0.25)
                except asyncio.TimeoutError:
                    continue
                except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
                    break
                if not chunk:
                    break
                answer += chunk
            return answer, loop.time() - start

    answer, elapsed = asyncio.run(scenario())
    assert answer.split(b" ", 2)[1:2] in ([b"400"], [b"408"]) or answer == b"", answer[:200]
    assert elapsed < TIMEOUT + 1.5
