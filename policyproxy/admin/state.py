"""What the admin endpoints show. The proxy writes it; the endpoints only read it."""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from policyproxy.admin.decisions import AdminSink, DecisionRing
from policyproxy.admin.metrics import AdminMetrics
from policyproxy.cli.render import config_digest, settings_to_toml
from policyproxy.config.schema import Settings
from policyproxy.telemetry.otel import mask_userinfo


def format_address(address: tuple[str, int]) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass
class AdminState:
    """The status of one running proxy.

    ``settings`` is a callable so a reload is seen without telling the admin: it returns whatever
    settings the proxy enforces now. ``listeners`` is filled once the proxy's sockets are bound.
    Nothing here may hold a secret, a header value or a body: ``/api/status`` renders all of it.
    """

    version: str
    settings: Callable[[], Settings]
    ca_dir: Path
    ca_sha256: str = ""     # fingerprint of the CA certificate clients must trust (public, not the key)
    listeners: dict[str, tuple[str, int]] = field(default_factory=dict)
    # More readiness checks (each returns the problems it sees; none = ready), e.g. the mapping store.
    checks: list[Callable[[], Awaitable[list[str]]]] = field(default_factory=list)
    pid: int = field(default_factory=os.getpid)
    started_at: float = field(default_factory=time.time)
    started_monotonic: float = field(default_factory=time.monotonic)
    ring: DecisionRing = field(default_factory=DecisionRing)
    streams: int = 0          # open SSE streams (bounded by the server)
    closing: bool = False     # the admin listener is stopping: streams end
    metrics: AdminMetrics = field(default_factory=AdminMetrics)
    _digest: tuple[Settings | None, str] = field(default=(None, ""), repr=False)

    def sink(self) -> AdminSink:
        """The decision sink to append to ``ProxyServer.sinks`` (ring and counters)."""
        return AdminSink(self.ring, self.metrics)

    def reloaded(self, applied: bool) -> None:
        """Serve's SIGHUP handler calls this once per reload: ``policyproxy_reloads_total{result}``."""
        self.metrics.reloaded(applied)

    def profile(self) -> dict[str, Any]:
        """The effective profile as ``config show`` renders it (secrets by source only), with any
        password in a URL (listener credentials in ``proxy_url``/``socks_url``, a collector URL) masked."""
        return _masked(settings_to_toml(self.settings()))

    def bound(self, listeners: Mapping[str, tuple[str, int]]) -> None:
        """The proxy's listeners are accepting (kind -> address: ``http``, ``socks5``)."""
        self.listeners.update(listeners)

    def digest(self) -> str:
        settings = self.settings()
        cached_for, value = self._digest
        if cached_for is not settings:
            value = config_digest(settings)
            self._digest = (settings, value)
        return value

    def status(self) -> dict[str, Any]:
        settings = self.settings()
        return {
            "version": self.version,
            "profile": settings.profile,
            "config_digest": self.digest(),
            "listeners": {kind: format_address(address) for kind, address in self.listeners.items()},
            "ca_sha256": self.ca_sha256,
            "started_at": dt.datetime.fromtimestamp(self.started_at, dt.timezone.utc)
            .isoformat(timespec="seconds").replace("+00:00", "Z"),
            "uptime_seconds": round(time.monotonic() - self.started_monotonic, 3),
            "pid": self.pid,
        }


def _masked(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _masked(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_masked(item) for item in value]
    return mask_userinfo(value) if isinstance(value, str) else value
