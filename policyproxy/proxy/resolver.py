"""Name resolution for policy checks and upstream connections, from one cache.

The local-address rule is checked on the addresses this resolver returns, and aiohttp's connector
asks the same resolver (with its own DNS cache off), so a check and the connect that follows see the
same answer within the TTL: a rebinding name cannot pass the check with a public address and then
connect to a private one: the connector's ``resolve`` reuses the checked answer even past its TTL.
Names are looked up only after the policy allowed them (a denied name is never resolved: DNS is an
exfiltration channel). ``--resolve`` pins are operator-trusted and never looked up.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Mapping

from aiohttp.abc import AbstractResolver, ResolveResult

from policyproxy.grammar.hosts import IPAddress, normalize_host, parse_ip


class Resolver(AbstractResolver):
    def __init__(self, pins: Mapping[tuple[str, int], IPAddress] | None = None, ttl: float = 30.0,
                 timeout: float = 5.0) -> None:
        self.pins = {(normalize_host(h) or h, p): a for (h, p), a in (pins or {}).items()}
        self.ttl = ttl
        self.timeout = timeout
        self._cache: dict[tuple[str, int], tuple[float, tuple[IPAddress, ...]]] = {}

    async def lookup(self, host: str, port: int) -> tuple[tuple[IPAddress, ...], bool]:
        """(addresses, pinned). A failed lookup gives no addresses; the connect then fails (502)."""
        canonical = normalize_host(host) or host
        pin = self.pins.get((canonical, port))
        if pin is not None:
            return (pin,), True
        literal = parse_ip(canonical)
        if literal is not None:
            return (literal,), False
        key = (canonical, port)
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1], False
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(canonical, port, type=socket.SOCK_STREAM), self.timeout)
        except (OSError, asyncio.TimeoutError, UnicodeError):
            return (), False
        addresses = tuple(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).partition("%")[0]) for info in infos))
        self._cache[key] = (now + self.ttl, addresses)
        if len(self._cache) > 4096:   # bounded: expired entries first, then the oldest half
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
            if len(self._cache) > 4096:
                self._cache = dict(sorted(self._cache.items(), key=lambda item: item[1][0])[2048:])
        return addresses, False

    async def checked(self, host: str, port: int) -> tuple[IPAddress, ...]:
        """The answer the policy checked (``lookup`` ran just before), never a fresh one: the upstream
        clients connect to exactly these addresses, even past the TTL."""
        hit = self._cache.get((host, port)) or self._cache.get((normalize_host(host) or host, port))
        return hit[1] if hit is not None else (await self.lookup(host, port))[0]

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
                      ) -> list[ResolveResult]:
        """aiohttp's connector (upstream proxies, WebSockets): ``checked``'s answer."""
        addresses = await self.checked(host, port)
        if not addresses:
            raise OSError(socket.EAI_NONAME, f"cannot resolve {host}")
        return [
            ResolveResult(hostname=host, host=str(a), port=port,
                          family=socket.AF_INET6 if a.version == 6 else socket.AF_INET,
                          proto=0, flags=socket.AI_NUMERICHOST)
            for a in addresses
        ]

    async def close(self) -> None:
        self._cache.clear()
