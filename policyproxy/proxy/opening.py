"""The connection-level decision, in one place: a CONNECT or SOCKS5 target is denied, tunnelled as
bytes, or intercepted. One decision event per connection opening, from a ``finally``."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from policyproxy import responses
from policyproxy.errors import UpstreamError
from policyproxy.grammar.hosts import IPAddress, normalize_host
from policyproxy.policy.model import Decision, Target
from policyproxy.proxy import pipe
from policyproxy.proxy.connection import Connection
from policyproxy.proxy.context import Context, Snapshot
from policyproxy.proxy.intercept import intercept_tls, peek, serve_http
from policyproxy.proxy.outcome import Outcome
from policyproxy.proxy.pipeline import refuse
from policyproxy.proxy.upstream import upstream_proxy
from policyproxy.reasons import Mode, Protocol, Reason, Source
from policyproxy.tls.clienthello import MalformedHello, NotTls, parse_client_hello

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
            await _tunnel(ctx, snap, transport, conn, decision, addresses, pinned, outcome)
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


async def _tunnel(ctx: Context, snap: Snapshot, transport: asyncio.Transport, conn: Connection, decision: Decision,
                  addresses: tuple[IPAddress, ...], pinned: bool, outcome: Outcome) -> None:
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
    screen = SniScreen(ctx, conn, decision, addresses, pinned)
    screen.transport = transport
    ctx.registry.add_pipe(transport, pipe.join(transport, side, screen))


class SniScreen:
    """The gate of a byte tunnel: decide again on the TLS server name of the client's first flight.

    A tunnel opened for one name or an IP literal must not reach a host the policy inspects, hooks or
    denies under another name: when the ClientHello names another host, that name is decided as if
    the client had asked for it, and a deny or a host that must be intercepted closes the tunnel (the
    client's next attempt, by the right name, is intercepted). A ClientHello that cannot be read, or
    does not arrive whole within ``head_timeout`` of its first byte, closes it too (fail closed).
    Bytes that are not TLS pass: the proxy cannot see a name in them (SECURITY.md). Each arrival
    re-reads what is held, so a hello dripped in more than ``MAX_PIECES`` reads is refused too.
    """

    MAX_PIECES = 64   # real ClientHellos arrive in one to three reads

    def __init__(self, ctx: Context, conn: Connection, decision: Decision, addresses: tuple[IPAddress, ...],
                 pinned: bool) -> None:
        self.ctx, self.conn, self.decision = ctx, conn, decision
        self.addresses, self.pinned = addresses, pinned
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.pieces = 0

    def __call__(self, held: bytes) -> bool | None:
        if self.timer is None:
            self.timer = asyncio.get_running_loop().call_later(self.ctx.options.head_timeout, self._expire)
        self.pieces += 1
        try:
            hello = parse_client_hello(held)
        except NotTls:
            return self._finish(None)
        except MalformedHello as exc:
            return self._finish(self._refusal(Reason.INSPECTION_FAILED, self.decision.host,
                                              f"unreadable TLS ClientHello on a tunnel: {exc}"))
        if hello is None:
            if self.pieces < self.MAX_PIECES:
                return None
            return self._finish(self._refusal(Reason.INSPECTION_FAILED, self.decision.host,
                                              f"TLS ClientHello still incomplete after {self.pieces} reads"))
        return self._finish(self._judge(hello.server_name))

    def _judge(self, server_name: str | None) -> Decision | None:
        """None lets the tunnel through; a Decision is the deny to report."""
        conn = self.conn
        if server_name is None or _canonical(server_name) == _canonical(conn.host):
            return None
        policy = self.ctx.live.snapshot.policy
        again = policy.decide(Target(server_name, conn.port, conn.protocol))
        if again.allowed:
            again = policy.check_addresses(again, self.addresses, self.pinned)
        where = f"TLS server name {again.host!r} on a tunnel opened for {conn.host!r}"
        if not again.allowed:
            return dataclasses.replace(again, message=f"{where}: {again.message or again.reason.value}")
        if again.intercept:
            return self._refusal(Reason.MITM_REQUIRED, again.host,
                                 f"{where}: that host is inspected; connect to it by name")
        return None

    def _refusal(self, reason: Reason, host: str, message: str) -> Decision:
        return dataclasses.replace(refuse(self.decision, reason, Source.DEFAULT, message), host=host)

    def _finish(self, refused: Decision | None) -> bool:
        if self.timer is not None:
            self.timer.cancel()
        if refused is None:
            return True
        self.ctx.reporter.report(refused, Outcome(self.conn.client, self.conn.connection_id))
        return False

    def _expire(self) -> None:
        side = self.ctx.registry.pipes.get(self.transport) if self.transport is not None else None
        if side is None or side.gate is None:
            return
        side.gate = None
        self.ctx.reporter.report(self._refusal(Reason.INSPECTION_FAILED, self.decision.host,
                                               "TLS ClientHello not complete within the head timeout"),
                                 Outcome(self.conn.client, self.conn.connection_id))
        side.held.clear()
        if self.transport is not None:
            self.transport.close()


def _canonical(host: str) -> str:
    return normalize_host(host) or host


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
