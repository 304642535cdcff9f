"""Exactly one decision event per request, with the status the client got: a WebSocket records 101
only once both sides are upgraded; a failed upstream handshake records 502."""

from __future__ import annotations

import asyncio
import socket
import ssl

import aiohttp
import pytest

from tests.proxy.harness import pins, running

CONFIG = """
[permissions.t.network.domains]
"*" = "allow"
[permissions.t.network.mitm.hooks.gh]
host = "api.github.com"
methods = ["GET"]
path_prefixes = ["/"]
action = ["strip"]
[permissions.t.network.mitm.actions.strip]
strip_request_headers = ["cookie"]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(("path", "closed_port", "status"), [("/ws", False, 101), ("/echo", False, 502),
                                                              ("/ws", True, 502), ("/status/403", False, 403)])
def test_one_event_per_websocket_upgrade_with_its_real_status(tmp_path, pki, upstream, path, closed_port, status):
    port = free_port() if closed_port else upstream.tls_port

    async def scenario() -> tuple[int, list[tuple[str, int | None, str | None]]]:
        events: list[tuple[str, int | None, str | None]] = []
        async with running(tmp_path, CONFIG, pins=pins(("api.github.com",), port),
                           upstream_cas=(pki[0],)) as proxy:
            proxy.sinks.append(lambda d, o: events.append((d.reason.value, o.status, d.path)))
            trust = ssl.create_default_context(cafile=str(tmp_path / "ca" / "ca.pem"))
            url = f"https://api.github.com:{port}{path}".replace("https", "wss")
            async with aiohttp.ClientSession() as session:
                try:
                    async with session.ws_connect(url, proxy=f"http://127.0.0.1:{proxy.addresses['http'][1]}",
                                                  ssl=trust) as ws:
                        await ws.send_str("hi")
                        assert await ws.receive_str() == "echo:hi"
                        got = 101
                except aiohttp.WSServerHandshakeError as exc:
                    got = exc.status
            await asyncio.sleep(0.2)
        return got, events

    got, events = asyncio.run(scenario())
    assert got == status
    inner = [e for e in events if e[2] is not None]   # the connection's own event has no path
    assert inner == [("hook_matched", status, path.split("?")[0])]
