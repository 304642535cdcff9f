"""The forward pipeline, one for every request the proxy can see (plain, gateway, intercepted,
WebSocket upgrades): decide -> resolve and check -> inspect -> send -> restore.

Exactly one decision event per request, from the ``finally`` of ``forward``: whatever happens (a
block, an upstream failure, a client that vanished), the decision and its ``Outcome`` are reported
once. Bodies stream both ways (the client's ``Exchange.write`` awaits drain or the HTTP/2 window). The
client's side is an ``exchange.Exchange``: an HTTP/1.1 request (``h1_server``; aiohttp for a WebSocket
upgrade) or an HTTP/2 stream.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any

from aiohttp import web
from yarl import URL

from policyproxy import responses
from policyproxy.config.schema import WebSocketRedaction
from policyproxy.errors import UpstreamAnswered, UpstreamBroken, UpstreamError
from policyproxy.policy.decide import Policy
from policyproxy.policy.model import Decision, Request, Target
from policyproxy.proxy.connection import Connection
from policyproxy.proxy.context import Context, Snapshot
from policyproxy.proxy.exchange import AiohttpExchange, Exchange
from policyproxy.proxy.headers import host_header, request_headers, response_headers
from policyproxy.proxy.http_server import web_response
from policyproxy.proxy.inspector import Inspector
from policyproxy.proxy.outcome import Outcome
from policyproxy.proxy.restoring import response_scan, restorer
from policyproxy.proxy.target import DEFAULT_PORTS, Routed
from policyproxy.proxy.upstream import upstream_proxy
from policyproxy.proxy.websocket import (
    HANDSHAKE,
    Channel,
    offered_protocols,
    offers_deflate,
    relay,
    relay_inspected,
)
from policyproxy.reasons import Mode, Reason, Source, Verdict
from policyproxy.redaction.genai import GenAI
from policyproxy.redaction.inspect import screen_query
from policyproxy.redaction.placeholders import Vault
from policyproxy.redaction.restore import ResponseScan
from policyproxy.redaction.wsmessages import ClientMessages, MessageRefused, ServerMessages
from policyproxy.secret_provider import SecretUnavailable
from policyproxy.stores.redis import StoreUnavailable


def refuse(decision: Decision, reason: Reason, source: Source, message: str) -> Decision:
    return dataclasses.replace(decision, verdict=Verdict.DENY, reason=reason, source=source, message=message)


def upgrade_in_limited_mode(decision: Decision, policy: Policy) -> Decision:
    """A WebSocket is a two-way channel: in limited mode it is refused as a write would be."""
    return refuse(decision, Reason.METHOD_NOT_ALLOWED, policy.mode_source,
                  f"WebSocket upgrades are not allowed in limited mode (GET, HEAD and OPTIONS only) on {decision.host}")


def _web_answer(outcome: Outcome, answer: responses.Answer) -> web.Response:
    outcome.status = answer.status
    return web_response(answer)


async def _answer(exchange: Exchange, outcome: Outcome, answer: responses.Answer) -> None:
    outcome.status = answer.status
    await exchange.answer(answer)


async def forward(ctx: Context, snap: Snapshot, conn: Connection, request: Exchange, routed: Routed) -> None:
    """Answer ``request`` (through its ``Exchange``) and report one event."""
    started = time.perf_counter()
    policy = snap.policy
    outcome = Outcome(conn.client, conn.connection_id, identity=conn.identity,
                      protocol_version="2" if request.http2 else None)
    decision = policy.decide(Target(routed.host, routed.port, routed.protocol, trusted=routed.trusted),
                             Request(request.method, routed.path, routed.query, tuple(request.headers.items())))
    try:
        upgrade = request.upgrade
        if upgrade and decision.allowed and policy.mode is Mode.LIMITED:
            decision = upgrade_in_limited_mode(decision, policy)
        if decision.allowed:
            # Resolved only now the name is allowed (a denied name is never looked up); the connector
            # then connects to exactly these addresses (``Resolver.resolve``).
            addresses, pinned = await ctx.resolver.lookup(routed.host, routed.port)
            decision = policy.check_addresses(decision, addresses, routed.trusted or pinned)
        spec = snap.settings.network.redaction
        if (decision.allowed and decision.redaction is not None and upgrade
                and (spec is None or spec.websocket is WebSocketRedaction.REFUSE)):
            decision = refuse(decision, Reason.INSPECTION_FAILED, Source.DEFAULT,
                              "WebSocket on a redaction endpoint is refused (redaction.websocket = \"refuse\"); "
                              "use HTTP (server-sent events)")
            return await _answer(request, outcome, responses.websocket_refused(decision))
        vault = body = None
        if decision.allowed and request.body_exists and request.headers.get("Expect", "").lower() == "100-continue":
            await request.expect_continue()   # the client waits for this before sending the body
        if decision.allowed and decision.redaction is not None:
            outcome.genai = GenAI.describe(decision.redaction.api, decision.host, decision.path or routed.path)
            if snap.redactor is not None:
                try:
                    vault = await ctx.inspector.open_vault(conn.identity, conn.client)
                except StoreUnavailable as exc:
                    decision = Inspector.store_down(decision, exc)
                    return await _answer(request, outcome, responses.block_answer(decision))
                decision = screen_query(snap.redactor, decision, routed.query)
                if decision.allowed and request.body_exists:
                    inspection = await ctx.inspector.inspect(snap.settings, snap.redactor, decision, request, vault)
                    decision, outcome.redactions = inspection.decision, inspection.counts
                    if outcome.genai is not None and inspection.model is not None:
                        outcome.genai.request_model = outcome.genai.request_model or inspection.model
                    if not decision.allowed and inspection.answer is not None:
                        return await _answer(request, outcome, inspection.answer)
                    body = inspection.body
            elif request.body_exists or upgrade:
                decision = Inspector.unavailable(decision)
        headers: list[tuple[str, str]] = []
        if decision.allowed:
            if decision.edits.inject:
                await snap.secrets.prepare(decision.edits.secrets)
            try:
                headers = request_headers(request.headers.items(), decision.edits,
                                          host_header(routed.host, routed.port, DEFAULT_PORTS.get(routed.scheme, 80)),
                                          snap.secrets.lookup)
            except SecretUnavailable as exc:
                decision = refuse(decision, Reason.SECRET_UNAVAILABLE, decision.source,
                                  f"hook {decision.hook!r} cannot inject its header: {exc}")
        if not decision.allowed:
            return await _answer(request, outcome, responses.block_answer(decision))
        url = URL.build(scheme=routed.scheme, host=routed.host.strip("[]"), port=routed.port,
                        path=decision.path or "/", query_string=routed.query, encoded=True)
        proxy = upstream_proxy(snap.settings.network.allow_upstream_proxy, routed.scheme, routed.host)
        scan = response_scan(snap.settings, snap.redactor, vault)
        if upgrade:
            assert isinstance(request, AiohttpExchange)   # only HTTP/1.1 upgrades
            channel = None
            if vault is not None and snap.redactor is not None and spec is not None:
                messages = ClientMessages(snap.redactor, vault, spec.max_body_bytes)
                if outcome.genai is not None:
                    outcome.genai.channel = True   # one event for many responses: usage adds up
                observe = outcome.genai.observe if outcome.genai is not None else None
                channel = Channel(functools.partial(_redact_message, ctx, messages),
                                  ServerMessages(vault, scan, observe), spec.max_body_bytes)
            try:
                request.response = await _websocket(ctx, request.request, headers, url, proxy, outcome, channel)
                return
            finally:
                if channel is not None:
                    outcome.redactions = messages.counts
                    if scan is not None:
                        outcome.emitted = scan.counts
                    if outcome.genai is not None and messages.model is not None:
                        outcome.genai.request_model = messages.model
                    if channel.refused is not None:   # closed with 1008: the event says why
                        decision = refuse(decision, Reason.PII_BLOCKED if channel.refused.blocked
                                          else Reason.INSPECTION_FAILED, Source.DEFAULT, channel.refused.reason)
                    elif messages.counts:   # the same reason as a redacted HTTP body (inspect._decide)
                        decision = dataclasses.replace(decision, reason=Reason.REDACTED)
        try:
            return await _send(ctx, request, url, headers, proxy, body, vault, scan, outcome, started)
        finally:
            if scan is not None:
                outcome.emitted = scan.counts
    finally:
        ctx.reporter.report(decision, outcome)


async def _redact_message(ctx: Context, messages: ClientMessages, data: str) -> str:
    """A channel lives across reloads: each message is judged by the rules in force when it arrives."""
    live = ctx.live.snapshot
    spec = live.settings.network.redaction
    if live.redactor is None or spec is None:
        raise MessageRefused("redaction is not configured for this endpoint")
    messages.redactor, messages.limit = live.redactor, spec.max_body_bytes
    return await ctx.inspector.redact_message(messages, data)


async def _websocket(ctx: Context, request: web.BaseRequest, headers: list[tuple[str, str]], url: URL,
                     proxy: str | None, outcome: Outcome, channel: Channel | None) -> web.StreamResponse:
    """101 is recorded only once both sides are upgraded; the upstream's other answers are relayed.
    ``channel``: a redaction endpoint's messages are inspected (``relay_inspected``)."""
    headers = [(k, v) for k, v in headers if k.lower() not in HANDSHAKE]
    try:
        upstream = await ctx.upstream.ws_connect(url, headers, offered_protocols(request), proxy,
                                                 compress=15 if offers_deflate(request) else 0)
    except UpstreamAnswered as answered:
        return _web_answer(outcome, responses.relayed_answer(answered.status, answered.headers, answered.body))
    except UpstreamError as exc:
        return _web_answer(outcome, responses.text_answer(exc.status, f"WebSocket to {url.host} failed: {exc.message}"))
    # An inspected client message is read whole, so it is bounded (past the limit: closed with 1009).
    client = web.WebSocketResponse(protocols=[upstream.protocol] if upstream.protocol else (), autoping=False,
                                   max_msg_size=channel.limit + 1 if channel is not None else 0)
    try:
        await client.prepare(request)
    except BaseException:
        await upstream.close()
        raise
    outcome.status = 101
    if channel is not None:
        await relay_inspected(client, upstream, channel)
    else:
        await relay(client, upstream)
    return client


async def _send(ctx: Context, request: Exchange, url: URL, headers: list[tuple[str, str]],
                proxy: str | None, body: bytes | None, vault: Vault | None, scan: ResponseScan | None,
                outcome: Outcome, started: float) -> None:
    data: Any = request.upstream_body() if request.body_exists else None
    if vault is not None:
        # The body was read and maybe rewritten; the answer must come uncompressed to be restored.
        dropped = {"accept-encoding"} | ({"content-length", "content-encoding"} if body is not None else set())
        headers = [(k, v) for k, v in headers if k.lower() not in dropped] + [("Accept-Encoding", "identity")]
        if body is not None:
            data = body
    sent = time.perf_counter()
    try:
        if request.http2:   # the upstream is asked for HTTP/2 too (gRPC needs it end to end)
            upstream = await ctx.upstream.send(request.method, url, headers, data, proxy, http2=True)
        else:
            upstream = await ctx.upstream.send(request.method, url, headers, data, proxy)
    except UpstreamError as exc:
        return await _answer(request, outcome, responses.text_answer(exc.status, exc.message))
    answered = time.perf_counter()
    try:
        no_body = request.method == "HEAD" or upstream.status in (204, 304) or upstream.status < 200
        observe = outcome.genai.observe if outcome.genai is not None else None
        restore = None if vault is None or no_body else restorer(upstream, vault, scan, observe, url.path,
                                                                  ctx.inspector.fetcher(vault))
        head = response_headers(upstream.header_items())
        if restore is not None:
            head = [(k, v) for k, v in head if k.lower() != "content-encoding"]   # decoded to be restored
        outcome.status = upstream.status
        whole: bytes | None = None
        try:
            if restore is not None and restore.whole:
                whole = await restore.read_whole(upstream)
            elif restore is None and not no_body and upstream.body_complete():
                whole = await upstream.read()   # a small answer came whole with its head (does not wait)
        except UpstreamBroken as exc:
            return await _answer(request, outcome, responses.text_answer(exc.status, exc.message))
        if whole is not None:
            outcome.added_ms = ((sent - started) + (time.perf_counter() - answered)) * 1000
            return await request.reply(upstream.status, upstream.reason, head, whole, upstream.trailers())
        length = upstream.headers.get("Content-Length")
        # A HEAD's answer says the length its GET would have (RFC 9110 section 8.6): relayed, no body sent.
        known = (restore is None and length is not None and length.isdigit()
                 and (not no_body or (request.method == "HEAD" and upstream.status >= 200)))
        await request.start(upstream.status, upstream.reason, head, int(length) if known and length else None)
        outcome.added_ms = ((sent - started) + (time.perf_counter() - answered)) * 1000
        if not no_body:
            try:
                async for chunk in upstream.chunks():
                    out = await restore.afeed(chunk) if restore is not None else chunk
                    if out:
                        await request.write(out)
                if restore is not None:
                    tail = restore.close()
                    if tail:
                        await request.write(tail)
            except UpstreamBroken:
                # The upstream broke mid-body: release what the restorer held back (restored), then end
                # the client's connection (or stream) so it sees a truncation.
                if restore is not None and request.alive():
                    tail = restore.close()
                    if tail:
                        await request.write(tail)
                request.abort()
                return
        await request.end(upstream.trailers())
    finally:
        upstream.release()
