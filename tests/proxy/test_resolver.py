"""``Resolver``: pins are never looked up, the connector gets the answer the policy checked (even past
its TTL: no second lookup can rebind), and the cache is bounded."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any

from policyproxy.proxy.resolver import Resolver


def answering(loop: asyncio.AbstractEventLoop, answers: list[str]) -> list[str]:
    """Replace ``getaddrinfo``: each call answers the next address of ``answers`` (the last repeats)."""
    calls: list[str] = []

    async def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> list[Any]:
        address = answers[min(len(calls), len(answers) - 1)]
        calls.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    loop.getaddrinfo = getaddrinfo  # type: ignore[method-assign]
    return calls


def test_pins_and_literals_are_never_looked_up():
    async def run() -> tuple[Any, Any, list[str]]:
        calls = answering(asyncio.get_running_loop(), ["203.0.113.9"])
        resolver = Resolver({("Pinned.Test", 443): ipaddress.ip_address("127.0.0.1")})
        return await resolver.lookup("pinned.test.", 443), await resolver.lookup("10.0.0.1", 80), calls

    pinned, literal, calls = asyncio.run(run())
    assert pinned == ((ipaddress.ip_address("127.0.0.1"),), True)
    assert literal == ((ipaddress.ip_address("10.0.0.1"),), False)
    assert calls == []


def test_the_connector_gets_the_checked_answer_even_after_its_ttl():
    async def run() -> tuple[Any, list[Any], list[str]]:
        calls = answering(asyncio.get_running_loop(), ["203.0.113.9", "127.0.0.1"])   # rebinds on 2nd query
        resolver = Resolver(ttl=0.0)
        checked = await resolver.lookup("rebind.test", 443)
        connected = await resolver.resolve("rebind.test", 443)
        return checked, connected, calls

    checked, connected, calls = asyncio.run(run())
    assert checked == ((ipaddress.ip_address("203.0.113.9"),), False)
    assert [r["host"] for r in connected] == ["203.0.113.9"] and calls == ["rebind.test"]


def test_the_cache_is_bounded():
    async def run() -> int:
        answering(asyncio.get_running_loop(), ["203.0.113.9"])
        resolver = Resolver(ttl=3600)
        for i in range(5000):
            await resolver.lookup(f"n{i}.test", 443)
        return len(resolver._cache)

    assert asyncio.run(run()) <= 4096
