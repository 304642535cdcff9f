"""WebSocket relay, message by message, once both handshakes are done.

On a redaction endpoint (``redaction.websocket = "inspect"``, the default) every client message is
redacted before it is sent on and every server message restored before the client sees it
(``redaction.wsmessages``); a client message that cannot be inspected closes both sides with 1008 and
a reason, and nothing of it is sent. With ``"refuse"`` the upgrade gets 426 (Codex then falls back to
HTTP and SSE at once). An uninspected channel to an LLM API is never opened.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Union

import aiohttp
from aiohttp import web

from policyproxy.redaction.wsmessages import POLICY_VIOLATION, MessageRefused, ServerMessages

# Negotiated by each side's own WebSocket stack, never copied across.
HANDSHAKE = frozenset({"sec-websocket-key", "sec-websocket-version", "sec-websocket-extensions",
                       "sec-websocket-accept", "sec-websocket-protocol"})

AnySocket = Union[web.WebSocketResponse, "aiohttp.ClientWebSocketResponse[bool]"]


def is_upgrade(request: web.BaseRequest) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


def offers_deflate(request: web.BaseRequest) -> bool:
    """The client asked for permessage-deflate: the upstream is asked for it too."""
    return "permessage-deflate" in request.headers.get("Sec-WebSocket-Extensions", "").lower()


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
    await _both_ways(client, upstream, _pump(client, upstream), _pump(upstream, client))


async def _both_ways(client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse[bool],
                     *directions: Coroutine[Any, Any, None]) -> None:
    """Run the directions until either ends; then cancel the other and close both sides."""
    tasks = [asyncio.ensure_future(direction) for direction in directions]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await upstream.close()
        await client.close()


@dataclass
class Channel:
    """One inspected WebSocket: how client text is redacted (awaited: it takes the scope's lock), how
    server text is restored, and why it was closed for policy, if it was."""

    redact: Callable[[str], Awaitable[str]]
    server: ServerMessages
    limit: int = 0   # the largest client message read (bytes)
    refused: MessageRefused | None = None


async def _client_side(client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse[bool],
                       channel: Channel) -> None:
    async for message in client:
        try:
            if message.type is aiohttp.WSMsgType.TEXT:
                await upstream.send_str(await channel.redact(message.data))
            elif message.type is aiohttp.WSMsgType.BINARY:
                raise MessageRefused("binary messages cannot be inspected on a redaction endpoint")
            elif message.type is aiohttp.WSMsgType.PING:
                await upstream.ping(message.data)
            elif message.type is aiohttp.WSMsgType.PONG:
                await upstream.pong(message.data)
        except MessageRefused as refused:
            channel.refused = refused
            reason = refused.reason.encode("utf-8")[:120]
            await client.close(code=POLICY_VIOLATION, message=reason)   # the client hears why first
            await upstream.close(code=POLICY_VIOLATION, message=b"policy violation")
            return
    await upstream.close(code=client.close_code or aiohttp.WSCloseCode.OK)


async def _server_side(upstream: aiohttp.ClientWebSocketResponse[bool], client: web.WebSocketResponse,
                       channel: Channel) -> None:
    async for message in upstream:
        if message.type is aiohttp.WSMsgType.TEXT:
            for out in channel.server.text(message.data):
                await client.send_str(out)
        elif message.type is aiohttp.WSMsgType.BINARY:
            await client.send_bytes(message.data)   # from the model; placeholders in it stay as they are
        elif message.type is aiohttp.WSMsgType.PING:
            await client.ping(message.data)
        elif message.type is aiohttp.WSMsgType.PONG:
            await client.pong(message.data)
    if channel.refused is not None:
        return   # the client side closed both for policy
    for out in channel.server.close():
        await client.send_str(out)
    await client.close(code=upstream.close_code or aiohttp.WSCloseCode.OK)


async def relay_inspected(client: web.WebSocketResponse, upstream: aiohttp.ClientWebSocketResponse[bool],
                          channel: Channel) -> None:
    """``relay`` with every client message redacted and every server message restored."""
    await _both_ways(client, upstream, _client_side(client, upstream, channel), _server_side(upstream, client, channel))
