"""WebSocket relay, message by message, once both handshakes are done.

A WebSocket on a redaction endpoint is refused with 426 (Codex then falls back to HTTP and SSE at
once): its frames are not inspected, and an uninspected channel to an LLM API is never opened.
"""

from __future__ import annotations

import asyncio
from typing import Union

import aiohttp
from aiohttp import web

# Negotiated by each side's own WebSocket stack, never copied across.
HANDSHAKE = frozenset({"sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions",
                       "sec-websocket-accept", "sec-websocket-protocol"})

AnySocket = Union[web.WebSocketResponse, "aiohttp.ClientWebSocketResponse[bool]"]


def is_upgrade(request: web.BaseRequest) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


def offered_protocols(request: web.BaseRequest) -> list[str]:
    return [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]


async def _pump(source: AnySocket, sink: AnySocket) -> None:
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


async def relay(client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse[bool]) -> None:
    """Both directions until either side closes; then both are closed."""
    tasks = [asyncio.ensure_future(_pump(client, upstream)), asyncio.ensure_future(_pump(upstream, client))]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await upstream.close()
        await client.close()
