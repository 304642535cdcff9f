"""The admin HTTP server (aiohttp): ``/healthz``, ``/readyz``, ``/api/status``.

Guards, in order: a bearer token when one is configured (required off loopback; ``/healthz`` stays
open for container health checks); without a token, a ``Host`` header that is an IP literal or
``localhost`` (a web page that rebinds its own name to 127.0.0.1 cannot read the status); GET/HEAD
only; no CORS headers, ``no-store``.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import os
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from aiohttp import web

from policyproxy.admin.state import AdminState, format_address
from policyproxy.config.admin import is_loopback, parse_listen
from policyproxy.config.schema import AdminSpec
from policyproxy.errors import PolicyProxyError
from policyproxy.tls.ca_store import CAError, load

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_OPEN_PATHS = frozenset({"/healthz"})


class AdminError(PolicyProxyError):
    """The admin listener cannot start as configured; the message says what to change."""


def resolve_token(spec: AdminSpec, env: Mapping[str, str] | None = None) -> str | None:
    """The bearer token's value, read from its source (never printed)."""
    if spec.token is None:
        return None
    env = os.environ if env is None else env
    if spec.token.env_var is not None:
        value = env.get(spec.token.env_var, "")
        if not value.strip():
            raise AdminError(f"admin.token_env_var names {spec.token.env_var}, which is not set or empty")
        return value.strip()
    try:
        value = Path(str(spec.token.file)).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise AdminError(f"admin.token_file {spec.token.file} cannot be read: {exc.strerror}") from None
    if not value:
        raise AdminError(f"admin.token_file {spec.token.file} is empty")
    return value


def _is_local_name(host_header: str) -> bool:
    host = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else host_header
    host = host.strip("[]").rstrip(".").lower()
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def build_app(state: AdminState, token: str | None) -> web.Application:
    """The admin application over ``state``; ``token`` (if any) is required on every path but /healthz."""
    expected = f"Bearer {token}".encode() if token else None

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if expected is not None:
            if request.path not in _OPEN_PATHS and not hmac.compare_digest(
                    request.headers.get("Authorization", "").encode(), expected):
                return _headers(web.json_response({"error": "a bearer token is required"}, status=401,
                                                  headers={"WWW-Authenticate": 'Bearer realm="policyproxy"'}))
        elif not _is_local_name(request.host):
            return _headers(web.json_response({"error": "Host must be localhost or an IP address"}, status=421))
        return _headers(await handler(request))

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def readyz(_: web.Request) -> web.Response:
        problems = await readiness(state)
        if problems:
            return web.json_response({"status": "not ready", "reasons": problems}, status=503)
        return web.json_response({"status": "ready"})

    async def status(_: web.Request) -> web.Response:
        return web.json_response(state.status())

    app = web.Application(middlewares=[guard])
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/api/status", status)
    return app


def _headers(response: web.StreamResponse) -> web.StreamResponse:
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


async def readiness(state: AdminState) -> list[str]:
    """Why the proxy is not ready to serve (empty when it is)."""
    problems: list[str] = []
    if "http" not in state.listeners:
        problems.append("listeners: not bound yet")
    try:
        state.digest()
    except Exception as exc:   # a settings provider that cannot answer means no config is in force
        problems.append(f"config: not loaded ({type(exc).__name__})")
    try:
        await asyncio.to_thread(load, state.ca_dir)
    except CAError as exc:
        problems.append(f"ca: {exc}")
    for check in state.checks:
        problems += await check()
    return problems


class AdminServer:
    """One admin listener; ``start`` binds (port 0 picks one) and returns the bound address."""

    def __init__(self, state: AdminState, token: str | None) -> None:
        self.state = state
        self.runner = web.AppRunner(build_app(state, token), access_log=None, handle_signals=False)
        self.address: tuple[str, int] | None = None

    async def start(self, host: str, port: int) -> tuple[str, int]:
        await self.runner.setup()
        site = web.TCPSite(self.runner, host, port, reuse_address=True)
        try:
            await site.start()
        except OSError:
            await self.runner.cleanup()
            raise
        bound = self.runner.addresses[0]
        self.address = (bound[0], bound[1])
        self.state.listeners.setdefault("admin", self.address)
        return self.address

    @property
    def url(self) -> str:
        assert self.address is not None
        return f"http://{format_address(self.address)}/"

    async def stop(self) -> None:
        await self.runner.cleanup()


async def start_admin(spec: AdminSpec, override: str | None, state: AdminState,
                      env: Mapping[str, str] | None = None) -> AdminServer | None:
    """Start the admin listener as configured (``--admin-listen`` wins over ``[admin] listen``).

    ``off`` -> None. A non-loopback address without a token is refused. When the address is the
    default one (nothing configured it) and it is taken, e.g. by another proxy on this machine,
    the admin listener is skipped with a warning instead of failing the proxy.
    """
    listen = override if override is not None else spec.listen
    if listen == "off":
        return None
    address = parse_listen(listen)
    if address is None:
        raise AdminError(f'--admin-listen wants "HOST:PORT", "[IPv6]:PORT" or "off", got {listen!r}')
    token = resolve_token(spec, env)
    if not is_loopback(address[0]) and token is None:
        raise AdminError(f"the admin listener would listen on {address[0]}, which is not loopback; set "
                         "[admin] token_env_var or token_file so it requires a bearer token")
    server = AdminServer(state, token)
    try:
        await server.start(*address)
    except OSError as exc:
        if override is None and spec.listen == AdminSpec.listen:
            print(f"policyproxy: warning: admin listener off: {listen} is in use ({exc.strerror}); set "
                  "[admin] listen or --admin-listen (port 0 picks a free one)", file=sys.stderr, flush=True)
            return None
        raise AdminError(f"the admin listener cannot listen on {listen}: {exc.strerror}") from None
    return server
