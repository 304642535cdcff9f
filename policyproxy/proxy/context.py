"""``Context``: what a handler may use, frozen and handed down (never the server itself).

``Live`` is the one mutable cell: a reload swaps its ``Snapshot``; a request reads it once and keeps
that snapshot to its end (requests already decided keep the old policy).
"""

from __future__ import annotations

import asyncio
import itertools
import weakref
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from policyproxy.config.schema import Settings
from policyproxy.policy.decide import Policy
from policyproxy.proxy.inspector import Inspector
from policyproxy.proxy.options import ProxyOptions
from policyproxy.proxy.outcome import Reporter
from policyproxy.proxy.pipe import PipeSide
from policyproxy.proxy.resolver import Resolver
from policyproxy.proxy.upstream import UpstreamSeam
from policyproxy.redaction.engine import Redactor
from policyproxy.secret_provider import SecretProvider
from policyproxy.tls.mint import LeafContexts


@dataclass(frozen=True, slots=True)
class Snapshot:
    settings: Settings
    policy: Policy
    routes: Mapping[str, str]
    redactor: Redactor | None
    secrets: SecretProvider


class Live:
    """The current snapshot, replaced whole on reload, and the listener credentials (a reload applies
    them to the next connection)."""

    __slots__ = ("proxy_credentials", "snapshot", "socks_credentials")

    def __init__(self, snapshot: Snapshot, proxy_credentials: tuple[str, str] | None = None,
                 socks_credentials: tuple[str, str] | None = None) -> None:
        self.snapshot = snapshot
        self.proxy_credentials = proxy_credentials
        self.socks_credentials = socks_credentials


class HeadGate:
    """Counts connections still sending a request head or handshake; beyond ``limit`` new ones close."""

    __slots__ = ("count", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0

    def enter(self) -> bool:
        if self.count >= self.limit:
            return False
        self.count += 1
        return True

    def leave(self) -> None:
        self.count -= 1


class Drainable(Protocol):
    """A client connection server a stop drains: aiohttp's ``web.Server`` or an HTTP/2 connection."""

    @property
    def connections(self) -> Sequence[object]: ...

    def pre_shutdown(self) -> None: ...

    async def shutdown(self, timeout: float | None = None) -> None: ...


@dataclass
class Registry:
    """Open connections, so a stop can drain them and the idle sweep and metrics can see them."""

    pipes: dict[asyncio.Transport, PipeSide] = field(default_factory=dict)
    servers: weakref.WeakSet[Drainable] = field(default_factory=weakref.WeakSet)
    openings: set[asyncio.Task[None]] = field(default_factory=set)
    clients: set[asyncio.BaseTransport] = field(default_factory=set)   # open client connections (fd budget)
    clients_pruned: int = 0                # len(clients) after the last pruning of closed ones
    clients_opening: int = 0               # accepted, transport not made yet

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        """Run a connection's opening (CONNECT, SOCKS5, TLS handshake) as a task a stop waits for."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self.openings.add(task)
        task.add_done_callback(self.openings.discard)

    def add_pipe(self, transport: asyncio.Transport, side: PipeSide) -> None:
        self.pipes[transport] = side
        side.closed.add_done_callback(lambda _: self.pipes.pop(transport, None))


@dataclass(frozen=True, slots=True)
class Context:
    options: ProxyOptions
    live: Live
    resolver: Resolver
    leaves: LeafContexts
    upstream: UpstreamSeam
    inspector: Inspector
    reporter: Reporter
    heads: HeadGate
    registry: Registry
    ids: itertools.count[int]

    def connection_id(self) -> str:
        return f"c{next(self.ids)}"
