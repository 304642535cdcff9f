"""The connection-level decision, in one place: a CONNECT or SOCKS5 target is denied, tunnelled as
bytes, or intercepted. One decision event per connection opening, from a ``finally``."""

from __future__ import annotations

import asyncio
import logging

from policyproxy import responses
from policyproxy.errors import UpstreamError
from policyproxy.grammar.hosts import IPAddress
from policyproxy.policy.model import Decision, Target
from policyproxy.proxy import pipe
from policyproxy.proxy.connection import Connection
from policyproxy.proxy.context import Context, Snapshot
from policyproxy.proxy.intercept import intercept_tls, peek, serve_http
from policyproxy.proxy.outcome import Outcome
from policyproxy.proxy.pipeline import refuse
from policyproxy.proxy.upstream import upstream_proxy
from policyproxy.reasons import Mode, Protocol, Reason, Source

log = logging.getLogger("policyproxy")


async def open_tunnel(ctx: Context, transport: asyncio.Transport, conn: Connection) -> None:
    """Decide a CONNECT (HTTP or SOCKS5) and answer it."""
    snap = ctx.live.snapshot
    policy = snap.policy
    socks5 = conn.protocol is Protocol.SOCKS5_TCP
    outcome = Outcome(conn.client, conn.connection_id, identity=conn.identity)
    decision = policy.decide(Target(conn.host, conn.port, conn.protocol))
    try:
        if decision.allowed and socks5 and conn.port == 80 and policy.mode is Mode.LIMITED:
            # As Codex does: plain HTTP cannot be inspected over SOCKS5 in limited mode, so say so at once.
            decision = refuse(decision, Reason.MITM_REQUIRED, policy.mode_source,
                              "plain HTTP (port 80) is refused over SOCKS5 in limited mode")
        addresses: tuple[IPAddress, ...] = ()
        pinned = False
        if decision.allowed:
            # Resolved only now the name is allowed (a denied name is never looked up).
            addresses, pinned = await ctx.resolver.lookup(conn.host, conn.port)
            decision = policy.check_addresses(decision, addresses, pinned)
        if not decision.allowed:
            answer = responses.block_answer(decision)
            outcome.status = answer.status
            transport.write(responses.SOCKS_NOT_ALLOWED if socks5 else responses.to_bytes(answer))
            transport.close()
            return
        if not decision.intercept:
            await _tunnel(ctx, snap, transport, conn, addresses, outcome)
            return
        inner = conn.inner("https", pinned)
        if not socks5:
            outcome.status = 200
            transport.write(responses.CONNECT_ESTABLISHED)
            await intercept_tls(ctx, transport, inner)
            return
        transport.write(responses.SOCKS_SUCCEEDED)
        decision = await _sniff(ctx, transport, inner, decision, outcome, policy.mode)
    except Exception as exc:   # a bug here must not leave the connection (and its descriptor) hanging
        log.error("opening %s to %s:%s failed: %s", conn.connection_id, conn.host, conn.port, type(exc).__name__)
        outcome.status = None
        transport.close()
    finally:
        ctx.reporter.report(decision, outcome)


async def _tunnel(ctx: Context, snap: Snapshot, transport: asyncio.Transport, conn: Connection,
                  addresses: tuple[IPAddress, ...], outcome: Outcome) -> None:
    socks5 = conn.protocol is Protocol.SOCKS5_TCP
    proxy = upstream_proxy(snap.settings.network.allow_upstream_proxy, "https", conn.host)
    try:
        side = await ctx.upstream.connect(conn.host, addresses, conn.port, proxy)
    except UpstreamError as exc:
        outcome.status = 502
        transport.write(responses.SOCKS_HOST_UNREACHABLE if socks5
                        else responses.to_bytes(responses.text_answer(502, exc.message)))
        transport.close()
        return
    outcome.status = 200
    transport.write(responses.SOCKS_SUCCEEDED if socks5 else responses.CONNECT_ESTABLISHED)
    ctx.registry.add_pipe(transport, pipe.join(transport, side))


async def _sniff(ctx: Context, transport: asyncio.Transport, conn: Connection, decision: Decision,
                 outcome: Outcome, mode: Mode) -> Decision:
    """SOCKS5 says nothing of the protocol: TLS is intercepted, plain HTTP served, anything else refused."""
    first = await peek(transport, 8, ctx.options.head_timeout)
    if first[:1] == b"\x16":
        outcome.status = 200
        await intercept_tls(ctx, transport, conn)
        return decision
    if first[:1].isalpha() and mode is not Mode.LIMITED:
        outcome.status = 200
        serve_http(ctx, transport, conn.inner("http", conn.trusted))
        return decision
    transport.close()
    return refuse(decision, Reason.MITM_REQUIRED, Source.DEFAULT,
                  "traffic to an inspected host must be TLS or plain HTTP"
                  + (" (plain HTTP is refused over SOCKS5 in limited mode)" if first[:1].isalpha() else ""))
