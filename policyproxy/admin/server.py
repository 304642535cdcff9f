"""The admin HTTP server (aiohttp): ``/healthz``, ``/readyz``, ``/metrics``, ``/api/status``,
``/api/decisions`` (JSON with filters and a cursor, or a live SSE stream), ``/api/summary``,
``/api/profile`` and the page at ``/``.

Guards, in order: a bearer token when one is configured (required off loopback; ``/healthz`` stays
open for container health checks); without a token, a ``Host`` header that is an IP literal or
``localhost`` (a web page that rebinds its own name to 127.0.0.1 cannot read the status); GET/HEAD
only; no CORS headers, ``no-store``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import ipaddress
import json
import os
import re
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

from aiohttp import web

from policyproxy.admin.decisions import RING_SIZE, Filters, summary
from policyproxy.admin.metrics import CONTENT_TYPE
from policyproxy.admin.state import AdminState, format_address
from policyproxy.config.admin import is_loopback, parse_listen
from policyproxy.config.schema import AdminSpec
from policyproxy.errors import PolicyProxyError
from policyproxy.tls.ca_store import CAError, load

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# "/" is the static page (no data in it: it reads the API, sending the token the user types in).
_OPEN_PATHS = frozenset({"/healthz", "/"})
MAX_STREAMS = 16          # concurrent SSE streams; more are refused with 503 (each holds a connection)
KEEPALIVE = 15.0          # seconds between SSE comments on a quiet stream (proxies close idle streams)
PAGE = Path(__file__).with_name("page.html")


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
        response = await handler(request)
        return response if response.prepared else _headers(response)

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def readyz(_: web.Request) -> web.Response:
        problems = await readiness(state)
        if problems:
            return web.json_response({"status": "not ready", "reasons": problems}, status=503)
        return web.json_response({"status": "ready"})

    async def status(_: web.Request) -> web.Response:
        return web.json_response(state.status())

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=state.metrics.text(), headers={"Content-Type": CONTENT_TYPE})

    async def decisions(request: web.Request) -> web.StreamResponse:
        if "text/event-stream" in request.headers.get("Accept", ""):
            return await stream(request)
        filters = Filters.from_query(request.query)
        try:
            limit = min(RING_SIZE, max(1, int(request.query.get("limit", "200"))))
            after = int(request.query["after"]) if "after" in request.query else None
        except ValueError:
            return web.json_response({"error": "limit and after must be integers"}, status=400)
        ring = state.ring
        items = ring.latest(filters, limit) if after is None else ring.after(after, filters, limit)
        return web.json_response({"decisions": items, "last_seq": ring.last, "oldest_seq": ring.first,
                                  "next_after": items[-1]["seq"] if items else max(after or 0, ring.last)})

    async def stream(request: web.Request) -> web.StreamResponse:
        """Server-sent events: ``id: <seq>``, ``event: decision``, ``data: <audit JSON>``. Starts after
        ``?after=`` or ``Last-Event-ID`` (default: only new decisions); ``event: gap`` when the ring
        dropped decisions this stream had not read yet."""
        filters = Filters.from_query(request.query)
        ring = state.ring
        try:
            cursor = int(request.query.get("after") or request.headers.get("Last-Event-ID") or ring.last)
        except ValueError:
            return web.json_response({"error": "after must be an integer"}, status=400)
        if state.streams >= MAX_STREAMS:
            return web.json_response({"error": f"at most {MAX_STREAMS} decision streams at once"}, status=503)
        response = _headers(web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                                        "X-Accel-Buffering": "no"}))
        state.streams += 1
        try:
            await response.prepare(request)
            await response.write(b"retry: 2000\n\n")
            while not state.closing:
                if cursor < ring.first - 1:
                    await response.write(_sse("gap", None, {"resume_seq": ring.first}))
                    cursor = ring.first - 1
                last = ring.last
                items = ring.after(cursor, filters, 500)
                cursor = items[-1]["seq"] if len(items) == 500 else last
                if items:
                    await response.write(b"".join(_sse("decision", item["seq"], item) for item in items))
                    continue
                before = ring.last
                await ring.wait(KEEPALIVE)
                if ring.last == before and not state.closing:
                    await response.write(b": keep-alive\n\n")
        except ConnectionError:
            pass
        finally:   # a client that goes away cancels this handler (handler_cancellation): the slot frees at once
            state.streams -= 1
        return response

    async def summary_view(_: web.Request) -> web.Response:
        return web.json_response(summary(state.ring, time.time()))

    async def profile(_: web.Request) -> web.Response:
        return web.json_response({"profile": state.settings().profile, "config_digest": state.digest(),
                                  "document": state.profile()})

    async def page(_: web.Request) -> web.Response:
        return web.Response(body=html, content_type="text/html", charset="utf-8",
                            headers={"Content-Security-Policy": csp, "Referrer-Policy": "no-referrer",
                                     "X-Frame-Options": "DENY"})

    html, csp = _page()
    app = web.Application(middlewares=[guard])
    app.router.add_get("/", page)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/status", status)
    app.router.add_get("/api/decisions", decisions)
    app.router.add_get("/api/decisions/stream", stream)
    app.router.add_get("/api/summary", summary_view)
    app.router.add_get("/api/profile", profile)
    return app


def _sse(event: str, seq: int | None, data: object) -> bytes:
    head = f"id: {seq}\n" if seq is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _page() -> tuple[bytes, str]:
    """The page and a Content-Security-Policy that allows exactly its inline script and style (by
    hash): even if a value escaped the page's own escaping, no injected script would run."""
    html = PAGE.read_bytes()
    hashes = {}
    for tag in ("script", "style"):
        found = re.search(rf"<{tag}>(.*?)</{tag}>".encode(), html, re.S)
        assert found is not None, f"page.html has no <{tag}>"
        hashes[tag] = "'sha256-" + base64.b64encode(hashlib.sha256(found.group(1)).digest()).decode() + "'"
    csp = (f"default-src 'none'; script-src {hashes['script']}; style-src {hashes['style']}; connect-src 'self'; "
           "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
    return html, csp


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


class _Capped(asyncio.Protocol):
    """An admin connection: at most ``MAX_CONNECTIONS`` at once (others are closed on arrival), each
    closed ``LIFETIME`` seconds after it opened.

    aiohttp times nothing while a head arrives, and the admin listener shares the proxy's descriptors:
    without these bounds, a few hundred clients dripping header lines held every descriptor and the
    proxy stopped serving. An admin answer is a few hundred bytes, so neither bound is felt.
    """

    MAX_CONNECTIONS = 32
    LIFETIME = 10.0

    def __init__(self, inner: asyncio.Protocol, open_now: set[_Capped]) -> None:
        self.inner, self.open_now = inner, open_now
        self.timer: asyncio.TimerHandle | None = None
        self.transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if len(self.open_now) >= self.MAX_CONNECTIONS:
            transport.close()
            return
        self.transport = transport
        self.open_now.add(self)
        self.timer = asyncio.get_running_loop().call_later(self.LIFETIME, transport.close)
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.transport is not None:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.transport is not None else None

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is None:
            return
        self.open_now.discard(self)
        if self.timer is not None:
            self.timer.cancel()
        self.inner.connection_lost(exc)


class AdminServer:
    """One admin listener; ``start`` binds (port 0 picks one) and returns the bound address."""

    def __init__(self, state: AdminState, token: str | None) -> None:
        self.state = state
        self.runner = web.AppRunner(build_app(state, token), access_log=None, handle_signals=False,
                                    shutdown_timeout=2.0, handler_cancellation=True)
        self.address: tuple[str, int] | None = None
        self.server: asyncio.Server | None = None
        self.open_now: set[_Capped] = set()

    async def start(self, host: str, port: int) -> tuple[str, int]:
        await self.runner.setup()
        handlers = self.runner.server
        assert handlers is not None   # set by setup()
        try:
            self.server = await asyncio.get_running_loop().create_server(
                lambda: _Capped(handlers(), self.open_now), host, port, reuse_address=True)
        except OSError:
            await self.runner.cleanup()
            raise
        bound = self.server.sockets[0].getsockname()
        self.address = (bound[0], bound[1])
        self.state.listeners.setdefault("admin", self.address)
        return self.address

    @property
    def url(self) -> str:
        assert self.address is not None
        return f"http://{format_address(self.address)}/"

    async def stop(self) -> None:
        self.state.closing = True
        self.state.ring.wake()   # open SSE streams see ``closing`` and end
        if self.server is not None:
            self.server.close()
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
