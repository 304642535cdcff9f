"""One way to build a proxy in-process for tests: ``running(tmp_path, config, **options)``."""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from policyproxy.policy.compile import compile_policy
from policyproxy.proxy.options import ProxyOptions
from policyproxy.proxy.server import ProxyServer
from policyproxy.tls.ca_store import load_or_create
from tests.helpers import provider, settings


def pins(names: tuple[str, ...], *ports: int) -> dict[tuple[str, int], Any]:
    return {(name, port): ipaddress.ip_address("127.0.0.1") for name in names for port in ports}


def build(tmp_path: Path, config: str, env: dict[str, str] | None = None, **options: Any) -> ProxyServer:
    s = settings(tmp_path, config)
    options.setdefault("listen", ("127.0.0.1", 0))
    options.setdefault("socks_listen", ("127.0.0.1", 0))
    return ProxyServer(s, compile_policy(s), load_or_create(tmp_path / "ca"), ProxyOptions(**options), provider(s, env))


@contextlib.asynccontextmanager
async def running(tmp_path: Path, config: str, env: dict[str, str] | None = None,
                  **options: Any) -> AsyncIterator[ProxyServer]:
    server = build(tmp_path, config, env, **options)
    await server.start()
    try:
        yield server
    finally:
        await server.stop(drain=1)
