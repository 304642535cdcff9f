"""WebSocket upgrades inside an intercepted tunnel: relayed message by message.

A WebSocket on a redaction endpoint is refused with 426 (Codex then falls back to HTTP and SSE at
once): its frames are not inspected, and an uninspected channel to an LLM API is never opened.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web
from yarl import URL

from policyproxy.policy.model import Decision
from policyproxy.proxy.headers import request_headers
from policyproxy.reasons import Reason, Source, Verdict

if TYPE_CHECKING:
    from policyproxy.proxy.app import ProxyApp

# Negotiated by each side's own WebSocket stack, never copied across.
_HANDSHAKE = frozenset({"sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions",
                        "sec-websocket-accept", "sec-websocket-protocol"})


def is_upgrade(request: web.BaseRequest) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


def refused(decision: Decision) -> Decision:
    return dataclasses.replace(
        decision, verdict=Verdict.DENY, reason=Reason.INSPECTION_FAILED, source=Source.DEFAULT,
        message="WebSocket on a redaction endpoint cannot be inspected; use HTTP (server-sent events)")


async def relay(app: ProxyApp, request: web.BaseRequest, decision: Decision, url: URL,
                authority: str) -> web.StreamResponse:
    headers = [(k, v) for k, v in request_headers(request.headers.items(), decision.edits, authority)
               if k.lower() not in _HANDSHAKE]
    protocols = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
    assert app.session is not None
    try:
        upstream = await app.session.ws_connect(url.with_scheme("wss" if url.scheme == "https" else "ws"),
                                                headers=headers, protocols=protocols, autoping=False,
                                                ssl=app.upstream_ssl, max_msg_size=0,
                                                proxy=app.upstream_proxy(url.scheme, url.host or ""))
    except aiohttp.WSServerHandshakeError as exc:
        return web.Response(status=exc.status or 502,
                            text=f"policyproxy: upstream refused the WebSocket: {exc.message}\n")
    except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
        return web.Response(status=502, text=f"policyproxy: WebSocket to {url.host} failed: {type(exc).__name__}\n")
    client = web.WebSocketResponse(protocols=[upstream.protocol] if upstream.protocol else (), autoping=False,
                                   max_msg_size=0)
    await client.prepare(request)  # type: ignore[arg-type]

    async def pump(source: web.WebSocketResponse | aiohttp.ClientWebSocketResponse,
                   sink: web.WebSocketResponse | aiohttp.ClientWebSocketResponse) -> None:
        async for message in source:
            if message.type is aiohttp.WSMsgType.TEXT:
                await sink.send_str(message.data)
            elif message.type is aiohttp.WSMsgType.BINARY:
                await sink.send_bytes(message.data)
            elif message.type is aiohttp.WSMsgType.PING:
                await sink.ping(message.data)
            elif message.type is aiohttp.WSMsgType.PONG:
                await sink.pong(message.data)
        await sink.close(code=source.close_code or aiohttp.WSCloseCode.OK)

    tasks = [asyncio.ensure_future(pump(client, upstream)), asyncio.ensure_future(pump(upstream, client))]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await upstream.close()
        await client.close()
    return client
