"""``ProxyServer``: the composition root (lifecycle, listeners, reload); only the CLI imports it.

It builds the frozen ``Context`` handed to every handler, and keeps to itself what only a lifecycle
needs (listening sockets, the idle sweep, draining on stop).
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import itertools
import sys
from collections.abc import Coroutine
from typing import Any

from policyproxy.config.schema import Settings
from policyproxy.policy.decide import Policy
from policyproxy.proxy.context import Context, Drainable, HeadGate, Live, Registry, Snapshot
from policyproxy.proxy.h1_server import H1Listener
from policyproxy.proxy.handlers import h1_plain_handler, plain_handler
from policyproxy.proxy.http_server import TimedServer
from policyproxy.proxy.inspector import Inspector, redactor_for
from policyproxy.proxy.listeners import HttpEntry, Listener, Socks5Entry
from policyproxy.proxy.options import ProxyOptions
from policyproxy.proxy.outcome import DecisionSink, Reporter
from policyproxy.proxy.pipe import idle_since
from policyproxy.proxy.resolver import Resolver
from policyproxy.proxy.upstream import Upstream
from policyproxy.secret_provider import SecretProvider
from policyproxy.tls.ca_store import CertificateAuthority
from policyproxy.tls.mint import LeafContexts

# CPython's SSLProtocol allocates a read buffer of ``max_size`` (256 KiB) per TLS connection up front
# and reads the socket at most that much at a time. An intercepting proxy holds two TLS connections
# per client, so a connection starts with 32 KiB (two TLS records: idle connections stay cheap) and
# grows to 256 KiB once a read fills its buffer (a bulk body): with 32 KiB reads a 100 MB answer cost
# about 150 ms more CPU on asyncio's loop (bench/proxy_bench.py --big-only: 340 -> 190 ms per 100 MB).
TLS_READ_BUFFER = 32 * 1024
TLS_BULK_READ_BUFFER = 256 * 1024
# While a worker thread scans, the GIL is handed back to the event loop every this many seconds
# (CPython's default is 5 ms): bench/redaction_bench.py measured the loop's worst delay during a 5 MB
# scan at 7.4 ms with the default and 3.4 ms with 1 ms.
GIL_SWITCH_INTERVAL = 0.001


class _GrowingSSLProtocol(asyncio.sslproto.SSLProtocol):
    """asyncio's SSLProtocol with a read buffer that starts small and grows for bulk transfers."""

    max_size = TLS_READ_BUFFER

    def buffer_updated(self, nbytes: int) -> None:
        if nbytes >= self.max_size and self.max_size < TLS_BULK_READ_BUFFER:
            self.max_size = TLS_BULK_READ_BUFFER   # ``get_buffer`` gives a buffer this large from the next read
        super().buffer_updated(nbytes)  # type: ignore[misc,unused-ignore]   # typeshed's 3.10 SSLProtocol lacks it


def tune_process() -> None:
    """Process-wide settings for a proxy process; ``serve`` calls it once, before the loop starts."""
    # No public setting for the TLS read buffer of asyncio's SSL transports: the loop makes its TLS
    # transports (``create_connection``, ``start_tls``, servers) from this module attribute. Python 3.10's
    # SSLProtocol has no read buffer of its own (it is left as it is).
    if hasattr(asyncio.sslproto.SSLProtocol, "get_buffer"):
        asyncio.sslproto.SSLProtocol = _GrowingSSLProtocol  # type: ignore[misc]
    sys.setswitchinterval(GIL_SWITCH_INTERVAL)


def run_loop(main: Coroutine[Any, Any, None], choice: str = "auto") -> None:
    """Run ``main`` on uvloop when chosen or (``auto``) installed, else on asyncio's loop. uvloop's
    transports and TLS are in C: about a fifth fewer instructions per intercepted request."""
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise RuntimeError("--loop uvloop: uvloop is not installed (pip install 'policyproxy[fast]')") from None
        else:
            uvloop.run(main)
            return
    asyncio.run(main)


def snapshot(settings: Settings, policy: Policy, secrets: SecretProvider) -> Snapshot:
    return Snapshot(settings, policy, dict(settings.gateway_routes), redactor_for(settings), secrets)


class ProxyServer:
    def __init__(self, settings: Settings, policy: Policy, ca: CertificateAuthority, options: ProxyOptions,
                 secrets: SecretProvider | None = None) -> None:
        """``secrets``: the injected secrets, read (``SecretProvider.for_settings``); by default read
        here from this process's environment (a missing one raises ``ConfigErrors``)."""
        self.options = options
        self.ca = ca
        resolver = Resolver(options.pins)
        self.upstream = Upstream(options, resolver)
        if secrets is None:
            secrets, _ = SecretProvider.for_settings(settings)
        self.context = Context(options, Live(snapshot(settings, policy, secrets), options.proxy_credentials,
                                             options.socks_credentials), resolver, LeafContexts(ca), self.upstream,
                               Inspector(settings), Reporter(), HeadGate(options.max_heads), Registry(),
                               itertools.count(1))
        self.servers: list[Listener] = []
        self.addresses: dict[str, tuple[str, int]] = {}
        self._plain: H1Listener | None = None
        self._plain_ws: TimedServer | None = None
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def sinks(self) -> list[DecisionSink]:
        return self.context.reporter.sinks

    @property
    def policy(self) -> Policy:
        return self.context.live.snapshot.policy

    @property
    def settings(self) -> Settings:
        """The settings in force (after the last applied reload)."""
        return self.context.live.snapshot.settings

    async def start(self) -> None:
        ctx = self.context
        await self.upstream.start()
        options = self.options
        # WebSocket upgrades on the listener are handed to aiohttp's server (``h1_server``)
        self._plain_ws = upgraded = TimedServer(plain_handler(ctx), ctx.heads, options.head_timeout,
                                                options.keepalive_timeout)
        self._plain = plain = H1Listener(h1_plain_handler(ctx), ctx.heads, options.head_timeout,
                                         options.keepalive_timeout, options.max_head_bytes, lambda: upgraded)
        loop = asyncio.get_running_loop()
        host, port = self.options.listen
        server = await Listener.open(ctx, host, port, lambda: HttpEntry(ctx, plain))
        self.servers.append(server)
        self.addresses["http"] = server.sockets[0].getsockname()[:2]
        self._sweeper = loop.create_task(self._sweep_forever())
        if self.options.socks_listen is not None:
            host, port = self.options.socks_listen
            server = await Listener.open(ctx, host, port, lambda: Socks5Entry(ctx))
            self.servers.append(server)
            self.addresses["socks5"] = server.sockets[0].getsockname()[:2]

    async def stop(self, drain: float = 10.0) -> None:
        """Stop accepting, let in-flight requests finish (up to ``drain`` seconds), then close.

        Connections still opening (CONNECT answered, TLS handshaking) finish opening first, and a just
        opened connection gets a moment to send its request, so a stop drops nothing in flight.
        """
        registry = self.context.registry
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain
        for server in self.servers:
            server.close()
        if registry.openings:
            await asyncio.wait(list(registry.openings), timeout=drain)
        await asyncio.sleep(min(0.2, max(0.0, deadline - loop.time())))
        servers: list[Drainable] = [*([self._plain] if self._plain is not None else []),
                                    *([self._plain_ws] if self._plain_ws is not None else []), *list(registry.servers)]
        for http in servers:
            http.pre_shutdown()  # idle keep-alive connections close now; busy ones after their request
        remaining = max(0.1, deadline - loop.time())
        await asyncio.gather(*(http.shutdown(remaining) for http in servers), return_exceptions=True)
        for transport in list(registry.pipes):
            transport.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        await self.context.inspector.aclose()
        await self.upstream.close()
        self.context.leaves.close()

    def close_idle_tunnels(self, now: float) -> int:
        """Close byte tunnels idle for longer than ``tunnel_idle_timeout``; how many were closed."""
        pipes = self.context.registry.pipes
        stale = [t for t, side in pipes.items() if now - idle_since(side) > self.options.tunnel_idle_timeout]
        for transport in stale:
            transport.close()
        return len(stale)

    async def _sweep_forever(self) -> None:
        interval = max(0.05, min(30.0, self.options.tunnel_idle_timeout / 4))
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            self.close_idle_tunnels(loop.time())

    def set_credentials(self, proxy: tuple[str, str] | None, socks: tuple[str, str] | None) -> None:
        """Listener credentials for the next connections (a reload applies them live)."""
        self.context.live.proxy_credentials, self.context.live.socks_credentials = proxy, socks

    @property
    def secrets(self) -> SecretProvider:
        return self.context.live.snapshot.secrets

    def reload(self, settings: Settings, policy: Policy, secrets: SecretProvider | None = None) -> None:
        """Swap in a new policy; requests already decided keep the old one. ``secrets`` as read for the
        new settings (``SecretProvider.for_settings(..., previous=self.secrets)``); by default read here."""
        if secrets is None:
            secrets, _ = SecretProvider.for_settings(settings, previous=self.secrets)
        self.context.live.snapshot = snapshot(settings, policy, secrets)
        self.context.inspector.reload()

    def open_connections(self) -> dict[str, int]:
        """Open client connections by kind, for the metrics gauge (read from another thread)."""
        registry = self.context.registry
        plain = sum(len(http.connections) for http in (self._plain, self._plain_ws) if http is not None)
        return {"tunnel": len(registry.pipes), "plain": plain,
                "intercepted": sum(len(s.connections) for s in list(registry.servers))}
