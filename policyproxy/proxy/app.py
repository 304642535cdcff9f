"""``ProxyApp``: the running proxy's state (policy, resolver, CA, upstream session) and listeners.

The policy is swapped atomically on reload; every decision goes through ``report``.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import dataclasses
import itertools
import logging
import os
import ssl
import sys
import urllib.request
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from policyproxy.config.schema import Settings
from policyproxy.offload import ParallelFinder
from policyproxy.policy.decide import Policy
from policyproxy.policy.hosts import IPAddress, normalize_host
from policyproxy.policy.model import Decision, Target
from policyproxy.proxy.forward import handle_plain
from policyproxy.proxy.resolver import Resolver
from policyproxy.proxy.tunnel import PipeSide, idle_since
from policyproxy.reasons import Protocol, Reason, Source, Verdict
from policyproxy.redaction.engine import Redactor
from policyproxy.redaction.inspect import Inspection, InspectionFailed, conclude, failed, inspect, parse_body
from policyproxy.redaction.placeholders import Vault, Vaults
from policyproxy.stores.sqlite import SqliteMappingStore
from policyproxy.tls.ca_store import CertificateAuthority
from policyproxy.tls.mint import LeafContexts

DecisionSink = Callable[[Decision, dict[str, Any]], None]

# CPython's SSLProtocol allocates a read buffer of ``max_size`` (256 KiB) per TLS connection up front;
# for an intercepting proxy that holds two TLS connections per client, 32 KiB (two TLS records) keeps
# idle connections cheap and costs no measurable throughput (bench/proxy_bench.py).
TLS_READ_BUFFER = 32 * 1024
# Bodies larger than this are redacted on a worker thread, so one big request cannot stall the loop.
OFFLOAD_BYTES = 64 * 1024
# New text beyond this is scanned in worker processes, split across cores.
PARALLEL_BYTES = 256 * 1024
# While a worker thread scans, the GIL is handed back to the event loop every this many seconds
# (CPython's default is 5 ms): bench/redaction_bench.py measured the loop's worst delay during a 5 MB
# scan at 7.4 ms with the default and 3.4 ms with 1 ms.
GIL_SWITCH_INTERVAL = 0.001


@dataclass(frozen=True)
class ProxyOptions:
    listen: tuple[str, int] = ("127.0.0.1", 3128)
    socks_listen: tuple[str, int] | None = ("127.0.0.1", 8081)
    upstream_cas: tuple[Path, ...] = ()
    pins: dict[tuple[str, int], IPAddress] = field(default_factory=dict)
    socks_credentials: tuple[str, str] | None = None
    proxy_credentials: tuple[str, str] | None = None   # HTTP listener: Proxy-Authorization Basic required
    head_timeout: float = 15.0          # to receive a request head or a SOCKS5 handshake
    handshake_timeout: float = 15.0     # TLS handshake with the client
    connect_timeout: float = 10.0       # TCP connect upstream
    read_timeout: float = 600.0         # silence from the upstream mid-response (long SSE streams)
    keepalive_timeout: float = 120.0    # idle client keep-alive connections
    tunnel_idle_timeout: float = 3600.0  # a byte tunnel with no data either way is closed
    max_head_bytes: int = 64 * 1024


def upstream_context(extra_cas: tuple[Path, ...]) -> ssl.SSLContext:
    """System trust plus ``--upstream-ca``; verification is never turned off."""
    context = ssl.create_default_context()
    for path in extra_cas:
        context.load_verify_locations(cafile=str(path))
    context.set_alpn_protocols(["http/1.1"])
    return context


def _redactor(settings: Settings) -> Redactor | None:
    spec = settings.network.redaction
    return Redactor(spec) if spec is not None and spec.enabled else None


class ProxyApp:
    def __init__(self, settings: Settings, policy: Policy, ca: CertificateAuthority, options: ProxyOptions) -> None:
        asyncio.sslproto.SSLProtocol.max_size = TLS_READ_BUFFER  # type: ignore[attr-defined]
        self.settings = settings
        self.policy = policy
        self.options = options
        self.ca = ca
        self.leaves = LeafContexts(ca)
        self.resolver = Resolver(options.pins)
        self.upstream_ssl = upstream_context(options.upstream_cas)
        self.routes = dict(settings.gateway_routes)
        self.redactor = _redactor(settings)
        spec = settings.network.redaction
        ttl = spec.mapping_ttl_seconds if spec else 24 * 3600
        store = SqliteMappingStore(Path(spec.mapping_store)) if spec is not None and spec.mapping_store else None
        self.vaults = Vaults(ttl=ttl, store=store)
        self.scanner = ThreadPoolExecutor(max_workers=2, thread_name_prefix="policyproxy-scan")
        self.finder: ParallelFinder | None = None
        self._scope_locks: dict[str, asyncio.Lock] = {}
        self.sinks: list[DecisionSink] = []
        self.log = logging.getLogger("policyproxy")
        self.http_options: dict[str, Any] = {
            "auto_decompress": False, "keepalive_timeout": options.keepalive_timeout,
            "max_line_size": 16 * 1024, "max_field_size": 16 * 1024, "access_log": None,
            "handler_cancellation": True,
        }
        self.session: aiohttp.ClientSession | None = None
        self.servers: list[asyncio.base_events.Server] = []
        self.addresses: dict[str, tuple[str, int]] = {}
        self._ids = itertools.count(1)
        self._plain = web.Server(partial(handle_plain, self), **self.http_options)
        # Per-tunnel HTTP servers and open byte pipes, so a stop can drain and then close them.
        self.tunnel_servers: weakref.WeakSet[web.Server] = weakref.WeakSet()
        self.pipes: dict[asyncio.Transport, PipeSide] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self.openings: set[asyncio.Task[None]] = set()

    # ---- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        sys.setswitchinterval(GIL_SWITCH_INTERVAL)
        from policyproxy.proxy.listeners import HttpEntry, Socks5Entry

        connector = aiohttp.TCPConnector(resolver=self.resolver, use_dns_cache=False, limit=0,
                                         limit_per_host=0, keepalive_timeout=60, ssl=self.upstream_ssl)
        timeout = aiohttp.ClientTimeout(total=None, connect=self.options.connect_timeout,
                                        sock_read=self.options.read_timeout)
        self.session = aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=False,
                                             trust_env=False, cookie_jar=aiohttp.DummyCookieJar())
        loop = asyncio.get_running_loop()
        host, port = self.options.listen
        server = await loop.create_server(lambda: HttpEntry(self), host, port)
        self.servers.append(server)
        self.addresses["http"] = server.sockets[0].getsockname()[:2]
        self._sweeper = loop.create_task(self._sweep_forever())
        if self.options.socks_listen is not None:
            host, port = self.options.socks_listen
            server = await loop.create_server(lambda: Socks5Entry(self), host, port)
            self.servers.append(server)
            self.addresses["socks5"] = server.sockets[0].getsockname()[:2]

    def spawn(self, coroutine: Any) -> None:
        """Run a connection's opening (CONNECT, SOCKS5, TLS handshake) as a task a stop waits for."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self.openings.add(task)
        task.add_done_callback(self.openings.discard)

    async def stop(self, drain: float = 10.0) -> None:
        """Stop accepting, let in-flight requests finish (up to ``drain`` seconds), then close.

        Connections still opening (CONNECT answered, TLS handshaking) finish opening first, and a just
        opened connection gets a moment to send its request, so a stop drops nothing in flight.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain
        for server in self.servers:
            server.close()
        if self.openings:
            await asyncio.wait(list(self.openings), timeout=drain)
        await asyncio.sleep(min(0.2, max(0.0, deadline - loop.time())))
        servers = [self._plain, *list(self.tunnel_servers)]
        for server in servers:
            server.pre_shutdown()  # idle keep-alive connections close now; busy ones after their request
        remaining = max(0.1, deadline - loop.time())
        await asyncio.gather(*(server.shutdown(remaining) for server in servers), return_exceptions=True)
        for transport in list(self.pipes):
            transport.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        self.scanner.shutdown(wait=False, cancel_futures=True)
        if self.finder is not None:
            self.finder.close()
        if self.vaults.store is not None:
            self.vaults.store.close()
        if self.session is not None:
            await self.session.close()
        self.leaves.close()

    def close_idle_tunnels(self, now: float) -> int:
        """Close byte tunnels idle for longer than ``tunnel_idle_timeout``; how many were closed."""
        stale = [t for t, side in self.pipes.items() if now - idle_since(side) > self.options.tunnel_idle_timeout]
        for transport in stale:
            transport.close()
        return len(stale)

    async def _sweep_forever(self) -> None:
        interval = max(0.05, min(30.0, self.options.tunnel_idle_timeout / 4))
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(interval)
            self.close_idle_tunnels(loop.time())

    def reload(self, settings: Settings, policy: Policy) -> None:
        """Swap in a new policy; requests already decided keep the old one."""
        self.settings, self.policy = settings, policy
        self.routes = dict(settings.gateway_routes)
        self.redactor = _redactor(settings)
        if self.finder is not None:   # its workers compiled the old detectors
            self.finder.close()
            self.finder = None

    # ---- helpers for the handlers -------------------------------------------------------------
    def upstream_proxy(self, scheme: str, host: str) -> str | None:
        """The proxy this proxy's own egress goes through (``allow_upstream_proxy``), from the standard
        environment variables of the policyproxy process, honouring ``NO_PROXY``."""
        if not self.settings.network.allow_upstream_proxy:
            return None
        proxies = urllib.request.getproxies_environment()
        if not proxies or urllib.request.proxy_bypass_environment(host, proxies):
            return None
        return proxies.get(scheme) or proxies.get("all")

    @property
    def plain_server(self) -> web.Server:
        return self._plain

    def connection_id(self) -> str:
        return f"c{next(self._ids)}"

    @staticmethod
    def canonical(host: str) -> str:
        return normalize_host(host) or host

    async def target(self, host: str, port: int, protocol: Protocol, trusted: bool = False) -> Target:
        addresses, pinned = await self.resolver.lookup(host, port)
        return Target(host, port, protocol, addresses, trusted or pinned)

    async def inspect(self, decision: Decision, request: web.BaseRequest, vault: Vault) -> Inspection:
        """Step 7: read the body (bounded), then redact it - off the event loop when it is large."""
        assert self.redactor is not None and self.settings.network.redaction is not None
        limit = self.settings.network.redaction.max_body_bytes
        body = bytearray()
        async for chunk in request.content.iter_any():
            body += chunk
            if len(body) > limit:
                return inspect(self.redactor, vault, decision, bytes(body), None, limit)
        encoding = request.headers.get("Content-Encoding")
        # One inspection at a time per scope: its vault and text cache are never touched concurrently.
        async with self._scope_locks.setdefault(vault.scope, asyncio.Lock()):
            return await self._inspect(decision, vault, bytes(body), encoding, limit)

    async def _inspect(self, decision: Decision, vault: Vault, body: bytes, encoding: str | None,
                       limit: int) -> Inspection:
        assert self.redactor is not None
        if len(body) < OFFLOAD_BYTES:
            return inspect(self.redactor, vault, decision, body, encoding, limit)
        loop = asyncio.get_running_loop()
        finder = self._finder()
        if finder is None or not finder.ready:
            return await loop.run_in_executor(self.scanner, inspect, self.redactor, vault, decision, body, encoding,
                                              limit)
        try:
            raw, document = await loop.run_in_executor(self.scanner, parse_body, body, encoding, limit)
        except InspectionFailed as exc:
            return failed(decision, exc)
        texts = await loop.run_in_executor(self.scanner, self.redactor.unseen, document, vault)
        spans = await finder.spans(texts) if sum(map(len, texts)) >= PARALLEL_BYTES else None
        return await loop.run_in_executor(self.scanner, conclude, self.redactor, vault, decision, body, raw,
                                          document, spans)

    def _finder(self) -> ParallelFinder | None:
        """Worker processes for large first turns, started on first need (the scan goes to a thread
        until they are up)."""
        spec = self.settings.network.redaction
        if self.redactor is None or spec is None or (os.cpu_count() or 1) < 2:
            return None
        if self.finder is None:
            self.finder = ParallelFinder(spec)
        return self.finder

    def inspect_unavailable(self, decision: Decision) -> Decision:
        """A redaction endpoint with redaction disabled by a reload race: never forward uninspected."""
        return dataclasses.replace(decision, verdict=Verdict.DENY, reason=Reason.INSPECTION_FAILED,
                                   source=Source.DEFAULT, message="redaction is not configured for this endpoint")

    def open_connections(self) -> dict[str, int]:
        """Open client connections by kind, for the metrics gauge (read from another thread)."""
        return {"tunnel": len(self.pipes), "plain": len(self._plain.connections),
                "intercepted": sum(len(s.connections) for s in list(self.tunnel_servers))}

    def report(self, decision: Decision, client: str, status: int | None = None,
               connection_id: str | None = None, redactions: dict[str, int] | None = None,
               added_ms: float | None = None, emitted: dict[str, int] | None = None) -> None:
        context = {"client": client, "status": status, "connection_id": connection_id,
                   "redactions": redactions or {}, "added_ms": added_ms, "emitted": emitted or {}}
        if not decision.allowed:
            self.log.info("deny %s %s:%s %s (%s) from %s", decision.reason.value, decision.host, decision.port,
                          decision.method or "", decision.message, client)
        for sink in self.sinks:
            try:
                sink(decision, context)
            except Exception:  # a broken sink must never break proxying
                self.log.exception("decision sink failed")
