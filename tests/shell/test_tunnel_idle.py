"""Byte tunnels are closed after ``tunnel_idle_timeout`` of silence in both directions."""

import asyncio
import ipaddress

from policyproxy.policy.compile import compile_policy
from policyproxy.proxy.options import ProxyOptions
from policyproxy.proxy.server import ProxyServer
from policyproxy.tls.ca_store import load_or_create
from tests.helpers import settings


def test_idle_tunnel_is_closed_and_an_active_one_is_kept(tmp_path, upstream):
    s = settings(tmp_path, '[permissions.t.network.domains]\n"*" = "allow"\n')
    pin = {("tunnel.test", upstream.plain_port): ipaddress.ip_address("127.0.0.1")}
    options = ProxyOptions(listen=("127.0.0.1", 0), socks_listen=None, pins=pin, tunnel_idle_timeout=0.4)

    async def scenario() -> tuple[bytes, bytes]:
        app = ProxyServer(s, compile_policy(s), load_or_create(tmp_path / "ca"), options)
        await app.start()
        port = app.addresses["http"][1]

        async def open_tunnel():
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(f"CONNECT tunnel.test:{upstream.plain_port} HTTP/1.1\r\n\r\n".encode())
            assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
            return reader, writer

        idle_reader, _ = await open_tunnel()
        busy_reader, busy_writer = await open_tunnel()
        for _ in range(6):  # keep one tunnel busy for 1.2 s, three timeouts long
            busy_writer.write(b"GET /ping HTTP/1.1\r\nHost: tunnel.test\r\n\r\n")
            await busy_reader.readuntil(b"}")
            await asyncio.sleep(0.2)
        idle_end = await asyncio.wait_for(idle_reader.read(), 5)
        busy_writer.write(b"GET /ping HTTP/1.1\r\nHost: tunnel.test\r\n\r\n")
        busy_answer = await busy_reader.readuntil(b"}")
        await app.stop(drain=1)
        return idle_end, busy_answer

    idle_end, busy_answer = asyncio.run(scenario())
    assert idle_end == b""                       # closed by the proxy
    assert busy_answer.startswith(b"HTTP/1.1 200")
