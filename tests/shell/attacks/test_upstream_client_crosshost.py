"""Attacks on the lean upstream client's keep-alive pool across names, through a real proxy on asyncio's
loop and uvloop: two names on one address and port, a hook injecting a credential for one of them. A
pooled connection opened for one name never carries the other's requests, so the credential reaches only
the host the hook names."""

from __future__ import annotations

import asyncio
import ipaddress
from pathlib import Path

from policyproxy.policy.compile import compile_policy
from policyproxy.proxy.options import ProxyOptions
from policyproxy.proxy.server import ProxyServer
from policyproxy.tls.ca_store import load_or_create
from tests.helpers import provider, settings

TOKEN = "crosshost-canary-7731"
CONFIG = """
[permissions.t.network.domains]
"*" = "allow"
[permissions.t.network.mitm.hooks.a]
host = "a.test"
methods = ["GET"]
path_prefixes = ["/"]
action = ["token"]
allow_plaintext_secrets = true   # plain http:// keeps the scripted upstream simple
[permissions.t.network.mitm.actions.token]
[[permissions.t.network.mitm.actions.token.inject_request_headers]]
name = "authorization"
secret_env_var = "CROSSHOST_TOKEN"
"""
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


async def alternate(tmp_path: Path, names: list[str]) -> list[list[bytes]]:
    """Each name in turn as its own client request; the request heads each upstream connection carried."""
    connections: list[list[bytes]] = []

    async def upstream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        heads: list[bytes] = []
        connections.append(heads)
        try:
            while True:
                heads.append(await reader.readuntil(b"\r\n\r\n"))
                writer.write(OK)
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(upstream, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    s = settings(tmp_path, CONFIG)
    local = ipaddress.ip_address("127.0.0.1")
    options = ProxyOptions(listen=("127.0.0.1", 0), socks_listen=None, read_timeout=2, connect_timeout=1,
                           pins={(name, port): local for name in set(names)})
    app = ProxyServer(s, compile_policy(s), load_or_create(tmp_path / "ca"), options,
                      provider(s, {"CROSSHOST_TOKEN": TOKEN}))
    await app.start()
    try:
        for name in names:
            reader, writer = await asyncio.open_connection("127.0.0.1", app.addresses["http"][1])
            writer.write(f"GET http://{name}:{port}/x HTTP/1.1\r\nHost: {name}:{port}\r\nConnection: close\r\n\r\n"
                         .encode())
            assert (await asyncio.wait_for(reader.read(), 10)).endswith(b"\r\n\r\nok")
            writer.close()
    finally:
        await app.stop(drain=1)
        server.close()
    return connections


class TestCredentialStaysWithItsHost:
    def test_a_pooled_connection_never_carries_the_other_names_requests(self, tmp_path, on_both_loops):
        connections = on_both_loops(alternate(tmp_path, ["a.test", "b.test", "a.test", "B.TEST", "a.test"]))
        assert len(connections) >= 2 and sum(len(c) for c in connections) == 5
        for heads in connections:
            hosts = {h.split(b"\r\nHost: ", 1)[1].split(b":", 1)[0].lower() for h in heads}
            assert len(hosts) == 1
            assert all((TOKEN.encode() in h) == (hosts == {b"a.test"}) for h in heads)
        assert [len(c) for c in connections if TOKEN.encode() in c[0]] == [3]   # a.test reused its own
