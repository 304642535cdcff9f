"""Attacks on the upstream keep-alive pool through a real proxy: an upstream that drops a kept-alive
connection, one that answers out of step, and two names on the same address (a connection is never
shared between names)."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path

from policyproxy.policy.compile import compile_policy
from policyproxy.proxy.options import ProxyOptions
from policyproxy.proxy.server import ProxyServer
from policyproxy.tls.ca_store import load_or_create
from tests.helpers import settings

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
PROFILE = '[permissions.t.network.domains]\n"*" = "allow"\n'


async def through_proxy(tmp_path: Path, handle, requests: list[tuple[str, str]]) -> tuple[list[bytes], list[str]]:
    """Each (method, host) as its own client connection through the proxy; the upstream's handler gets
    every upstream connection and the list of Host headers it saw."""
    hosts: list[str] = []

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handle(reader, writer, hosts)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(upstream, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    s = settings(tmp_path, PROFILE)
    local = ipaddress.ip_address("127.0.0.1")
    options = ProxyOptions(listen=("127.0.0.1", 0), socks_listen=None, read_timeout=2, connect_timeout=1,
                           pins={("a.test", port): local, ("b.test", port): local})
    app = ProxyServer(s, compile_policy(s), load_or_create(tmp_path / "ca"), options)
    await app.start()
    answers = []
    try:
        for method, host in requests:
            reader, writer = await asyncio.open_connection("127.0.0.1", app.addresses["http"][1])
            length = "Content-Length: 2\r\n" if method == "POST" else ""
            writer.write(f"{method} http://{host}:{port}/x HTTP/1.1\r\nHost: {host}:{port}\r\n{length}"
                         f"Connection: close\r\n\r\n{'{}' if method == 'POST' else ''}".encode())
            answers.append(await asyncio.wait_for(reader.read(), 10))
            writer.close()
    finally:
        await app.stop(drain=1)
        server.close()
    return answers, hosts


async def read_head(reader: asyncio.StreamReader, hosts: list[str]) -> None:
    head = await reader.readuntil(b"\r\n\r\n")
    hosts.extend(line.split(b":", 1)[1].strip().decode() for line in head.split(b"\r\n")
                 if line.lower().startswith(b"host:"))
    if b"content-length: 2" in head.lower():
        await reader.readexactly(2)


class TestDroppedKeepAlive:
    @staticmethod
    async def drops_the_second(reader, writer, hosts) -> None:
        """Answers one request, then closes on the next without a byte (an idle timeout racing it)."""
        await read_head(reader, hosts)
        writer.write(OK)
        await writer.drain()
        await read_head(reader, hosts)
        writer.transport.abort()

    def test_a_get_on_a_dropped_connection_is_sent_again(self, tmp_path):
        answers, hosts = asyncio.run(through_proxy(tmp_path, self.drops_the_second, [("GET", "a.test")] * 2))
        assert [a.split(b"\r\n", 1)[0] for a in answers] == [b"HTTP/1.1 200 OK"] * 2
        assert len(hosts) == 3   # the second GET reached the upstream twice: once dropped, once answered

    def test_a_post_on_a_dropped_connection_is_not_sent_again(self, tmp_path):
        answers, hosts = asyncio.run(through_proxy(tmp_path, self.drops_the_second,
                                                   [("GET", "a.test"), ("POST", "a.test")]))
        assert answers[0].startswith(b"HTTP/1.1 200 ")
        assert answers[1].startswith(b"HTTP/1.1 502 ") and b"closed a kept-alive connection" in answers[1]
        assert len(hosts) == 2   # sent once


class TestOutOfStep:
    def test_bytes_after_the_answer_end_the_connection(self, tmp_path):
        async def handle(reader, writer, hosts):
            await read_head(reader, hosts)
            writer.write(OK + b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nforge")   # an answer nobody asked for
            await writer.drain()
            await reader.read()
        answers, hosts = asyncio.run(through_proxy(tmp_path, handle, [("GET", "a.test")] * 2))
        assert all(a.startswith(b"HTTP/1.1 200 ") and a.endswith(b"\r\n\r\nok") for a in answers)
        assert b"forge" not in b"".join(answers)
        assert len(hosts) == 2   # a fresh connection for the second: the first was out of step


class TestOtherNameSameAddress:
    def test_a_connection_is_not_shared_between_names(self, tmp_path):
        connections = []

        async def handle(reader, writer, hosts):
            mine: list[str] = []
            connections.append(mine)
            while True:
                await read_head(reader, mine)
                hosts.append(mine[-1])
                writer.write(OK)
                await writer.drain()
        answers, _ = asyncio.run(through_proxy(tmp_path, handle, [("GET", "a.test"), ("GET", "b.test"),
                                                                      ("GET", "a.test")]))
        assert all(a.startswith(b"HTTP/1.1 200 ") for a in answers)
        assert sorted(len(c) for c in connections) == [1, 2]   # a.test reused its own, b.test got another
        assert all(len({h.split(":")[0] for h in c}) == 1 for c in connections)


class TestVanishedClient:
    def test_a_half_sent_upload_never_goes_back_to_the_pool(self, tmp_path):
        async def case():
            connections: list[list[bytes]] = []
            got_part = asyncio.Event()

            async def upstream(reader, writer):
                seen: list[bytes] = []
                connections.append(seen)
                try:
                    while True:
                        head = await reader.readuntil(b"\r\n\r\n")
                        seen.append(head.split(b" ", 1)[0])
                        if head.startswith(b"POST"):
                            await reader.readexactly(1000)
                            got_part.set()
                            await reader.read()   # the rest never comes: the proxy must close this one
                            return
                        writer.write(OK)
                        await writer.drain()
                except (ConnectionError, asyncio.IncompleteReadError):
                    pass
                finally:
                    writer.close()

            server = await asyncio.start_server(upstream, "127.0.0.1", 0)
            port = server.sockets[0].getsockname()[1]
            s = settings(tmp_path, PROFILE)
            options = ProxyOptions(listen=("127.0.0.1", 0), socks_listen=None, read_timeout=5, connect_timeout=1,
                                   pins={("a.test", port): ipaddress.ip_address("127.0.0.1")})
            app = ProxyServer(s, compile_policy(s), load_or_create(tmp_path / "ca"), options)
            reported: list = []
            app.sinks.append(lambda decision, context: reported.append(context.status))
            await app.start()
            proxy = app.addresses["http"][1]
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", proxy)
                writer.write(f"GET http://a.test:{port}/warm HTTP/1.1\r\nHost: a.test:{port}\r\n\r\n".encode())
                assert (await reader.readuntil(b"\r\n\r\nok")).startswith(b"HTTP/1.1 200 ")
                writer.close()   # the upstream connection is now idle in the pool
                reader, writer = await asyncio.open_connection("127.0.0.1", proxy)
                writer.write(f"POST http://a.test:{port}/up HTTP/1.1\r\nHost: a.test:{port}\r\n"
                             f"Content-Length: 1000000\r\n\r\n".encode() + b"x" * 1000)
                await asyncio.wait_for(got_part.wait(), 5)
                writer.transport.abort()   # the client vanishes mid-upload
                await asyncio.sleep(0.3)
                reader, writer = await asyncio.open_connection("127.0.0.1", proxy)
                writer.write(f"GET http://a.test:{port}/after HTTP/1.1\r\nHost: a.test:{port}\r\n"
                             f"Connection: close\r\n\r\n".encode())
                after = await asyncio.wait_for(reader.read(), 5)
                writer.close()
            finally:
                await app.stop(drain=1)
                server.close()
            return after, connections, reported

        after, connections, reported = asyncio.run(case())
        assert after.startswith(b"HTTP/1.1 200 ")
        # The pooled connection carried the GET then the POST; the POST's was dropped with the client,
        # so the GET after it opened a new one.
        assert connections[0] == [b"GET", b"POST"] and connections[1] == [b"GET"]
        assert len(reported) == 3   # the vanished request was reported too
