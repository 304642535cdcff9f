"""``ProxyOptions``: what the operator fixed at start (listeners, timeouts, pins, trust), frozen."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from policyproxy.grammar.hosts import IPAddress


@dataclass(frozen=True)
class ProxyOptions:
    listen: tuple[str, int] = ("127.0.0.1", 3128)
    socks_listen: tuple[str, int] | None = ("127.0.0.1", 8081)
    upstream_cas: tuple[Path, ...] = ()
    pins: dict[tuple[str, int], IPAddress] = field(default_factory=dict)
    socks_credentials: tuple[str, str] | None = None
    proxy_credentials: tuple[str, str] | None = None   # HTTP listener: Proxy-Authorization Basic required
    head_timeout: float = 15.0          # to receive a whole request head or a SOCKS5 handshake
    max_heads: int = 512                # connections still sending a head; beyond it new ones close at once
    handshake_timeout: float = 15.0     # TLS handshake with the client
    connect_timeout: float = 10.0       # TCP connect upstream
    read_timeout: float = 600.0         # silence from the upstream mid-response (long SSE streams)
    keepalive_timeout: float = 120.0    # idle client keep-alive connections
    tunnel_idle_timeout: float = 3600.0  # a byte tunnel with no data either way is closed
    max_head_bytes: int = 64 * 1024
