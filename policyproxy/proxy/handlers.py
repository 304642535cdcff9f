"""aiohttp request handlers: read the target (``target``), then hand the request to ``pipeline``."""

from __future__ import annotations

from aiohttp import web

from policyproxy import responses
from policyproxy.proxy.connection import Connection
from policyproxy.proxy.context import Context, Snapshot
from policyproxy.proxy.exchange import AiohttpExchange
from policyproxy.proxy.headers import proxy_user
from policyproxy.proxy.http_server import Handler, web_response
from policyproxy.proxy.pipeline import forward
from policyproxy.proxy.target import Refusal, Routed, read_in_tunnel, read_plain


def peer(transport: object) -> str:
    info = getattr(transport, "get_extra_info", None)
    address = info("peername") if info is not None else None
    return str(address[0]) if address else "unknown"


async def _forward(ctx: Context, snap: Snapshot, conn: Connection, request: web.BaseRequest,
                   routed: Routed) -> web.StreamResponse:
    exchange = AiohttpExchange(request)
    await forward(ctx, snap, conn, exchange, routed)
    assert exchange.response is not None
    return exchange.response


def plain_handler(ctx: Context) -> Handler:
    """The HTTP listener: absolute-form ``http://`` requests, or ``/<route>/...`` gateway requests."""
    credentials = ctx.live.proxy_credentials

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        if request.method == "CONNECT":
            return web_response(responses.text_answer(400, "CONNECT must be the first request on a connection"))
        identity = None
        if credentials is not None:
            identity = proxy_user(request.headers.get("Proxy-Authorization"), credentials)
            if identity is None:
                return web_response(responses.auth_required())
        snap = ctx.live.snapshot
        routed = read_plain(request.raw_path, request.headers.get("Host"), snap.routes)
        if isinstance(routed, Refusal):
            return web_response(responses.text_answer(routed.status, routed.message))
        return await _forward(ctx, snap, Connection(peer(request.transport), None, identity), request, routed)

    return handle


def tunnel_handler(ctx: Context, conn: Connection) -> Handler:
    """Requests inside an intercepted tunnel (or plain HTTP over SOCKS5) opened for ``conn``."""

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        routed = read_in_tunnel(request.method, request.raw_path, request.headers.get("Host"), conn.host, conn.port,
                                conn.scheme, conn.trusted)
        if isinstance(routed, Refusal):
            return web_response(responses.text_answer(routed.status, routed.message))
        return await _forward(ctx, ctx.live.snapshot, conn, request, routed)

    return handle
