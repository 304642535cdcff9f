"""Request handlers: read the target (``target``), then hand the request to ``pipeline``.

Requests are served by ``h1_server`` (``h1_plain_handler``, ``h1_tunnel_handler``); a WebSocket upgrade
is handed to aiohttp's server, whose handlers (``plain_handler``, ``tunnel_handler``) take the same walk."""

from __future__ import annotations

from aiohttp import web

from policyproxy import responses
from policyproxy.proxy import h1_server
from policyproxy.proxy.connection import Connection
from policyproxy.proxy.context import Context
from policyproxy.proxy.exchange import AiohttpExchange, Exchange
from policyproxy.proxy.headers import proxy_user
from policyproxy.proxy.http_server import Handler
from policyproxy.proxy.pipeline import forward
from policyproxy.proxy.target import Refusal, read_in_tunnel, read_plain


def peer(transport: object) -> str:
    info = getattr(transport, "get_extra_info", None)
    address = info("peername") if info is not None else None
    return str(address[0]) if address else "unknown"


async def _plain(ctx: Context, exchange: Exchange, raw_path: str, client: str) -> None:
    if exchange.method == "CONNECT":
        await exchange.answer(responses.text_answer(400, "CONNECT must be the first request on a connection"))
        return
    identity = None
    credentials = ctx.live.proxy_credentials   # per request: a reload that changes them applies at once
    if credentials is not None:
        identity = proxy_user(exchange.headers.get("Proxy-Authorization"), credentials)
        if identity is None:
            await exchange.answer(responses.auth_required())
            return
    snap = ctx.live.snapshot
    routed = read_plain(raw_path, exchange.headers.get("Host"), snap.routes)
    if isinstance(routed, Refusal):
        await exchange.answer(responses.text_answer(routed.status, routed.message))
        return
    await forward(ctx, snap, Connection(client, None, identity), exchange, routed)


def h1_plain_handler(ctx: Context) -> h1_server.Handler:
    """The HTTP listener: absolute-form ``http://`` requests, or ``/<route>/...`` gateway requests."""

    async def handle(exchange: h1_server.H1Exchange) -> None:
        await _plain(ctx, exchange, exchange.target, peer(exchange.server.transport))

    return handle


def plain_handler(ctx: Context) -> Handler:
    """``h1_plain_handler`` for aiohttp's server (a WebSocket upgrade on the listener is handed to it)."""

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        exchange = AiohttpExchange(request)
        await _plain(ctx, exchange, request.raw_path, peer(request.transport))
        assert exchange.response is not None
        return exchange.response

    return handle


async def _in_tunnel(ctx: Context, conn: Connection, exchange: Exchange, raw_path: str) -> None:
    routed = read_in_tunnel(exchange.method, raw_path, exchange.headers.get("Host"), conn.host, conn.port,
                            conn.scheme, conn.trusted)
    if isinstance(routed, Refusal):
        await exchange.answer(responses.text_answer(routed.status, routed.message))
        return
    await forward(ctx, ctx.live.snapshot, conn, exchange, routed)


def h1_tunnel_handler(ctx: Context, conn: Connection) -> h1_server.Handler:
    """Requests inside an intercepted tunnel (or plain HTTP over SOCKS5) opened for ``conn``."""

    async def handle(exchange: h1_server.H1Exchange) -> None:
        await _in_tunnel(ctx, conn, exchange, exchange.target)

    return handle


def tunnel_handler(ctx: Context, conn: Connection) -> Handler:
    """``h1_tunnel_handler`` for aiohttp's server (a WebSocket upgrade in a tunnel is handed to it)."""

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        exchange = AiohttpExchange(request)
        await _in_tunnel(ctx, conn, exchange, request.raw_path)
        assert exchange.response is not None
        return exchange.response

    return handle
