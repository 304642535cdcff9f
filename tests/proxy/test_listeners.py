"""Listener entries as transcripts, in memory: bytes in, then the bytes out, whether the connection
was closed, and the decision events (as mitmproxy's layer tests read). No sockets: a recording
transport, and an upstream seam that records what it was asked to connect to."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import socket
from typing import Any

import pytest

from policyproxy.errors import UpstreamUnreachable
from policyproxy.proxy.h1_server import H1Listener, H1Server
from policyproxy.proxy.handlers import h1_plain_handler
from policyproxy.proxy.listeners import HttpEntry, Socks5Entry, SocksState
from policyproxy.proxy.pipe import PipeSide
from tests.proxy.harness import build, running

CONFIG = '[permissions.t.network.domains]\n"a.test" = "allow"\n"*.denied.test" = "deny"\n"b.test" = "allow"\n'
PINS = {(host, port): ipaddress.ip_address("127.0.0.1") for host in ("a.test", "b.test") for port in (80, 443)}
LIMITED = CONFIG.replace("[permissions.t.network.domains]", '[permissions.t.network]\nmode = "limited"\n'
                         "[permissions.t.network.domains]")


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.out = bytearray()
        self.closed = False
        self.protocol: Any = None

    def write(self, data: Any) -> None:
        self.out += data

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("10.1.2.3", 50000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def get_protocol(self) -> Any:
        return self.protocol

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        pass


class RecordingUpstream:
    """The ``Upstream`` seam's ``connect`` as a plain function of its arguments."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.connects: list[tuple[str, tuple[str, ...], int]] = []

    async def connect(self, host: str, addresses: tuple[Any, ...], port: int, proxy: str | None) -> PipeSide:
        self.connects.append((host, tuple(map(str, addresses)), port))
        if self.fail:
            raise UpstreamUnreachable(f"cannot connect to {host}:{port}: Connection refused")
        side = PipeSide()
        side.connection_made(RecordingTransport())
        return side


def transcript(tmp_path, config: str, entry: str, chunks: list[bytes], fail: bool = False, handed_over: bool = False,
               **options: Any) -> tuple[bytes, bool, list[tuple[str, int | None]], list[Any], Any]:
    async def run() -> tuple[bytes, bool, list[tuple[str, int | None]], list[Any], Any]:
        server = build(tmp_path, config, pins=PINS, **options)
        upstream = RecordingUpstream(fail)
        ctx = dataclasses.replace(server.context, upstream=upstream)
        events: list[tuple[str, int | None]] = []
        ctx.reporter.sinks.append(lambda decision, outcome: events.append((decision.reason.value, outcome.status)))
        transport = RecordingTransport()
        protocol: Any = (HttpEntry(ctx, H1Listener(h1_plain_handler(ctx), ctx.heads, 15, 120, 64 * 1024)) if entry == "http"
                         else Socks5Entry(ctx))
        protocol.connection_made(transport)
        for chunk in chunks:
            if not transport.closed:
                protocol.data_received(chunk)
        while ctx.registry.openings:
            await asyncio.wait(list(ctx.registry.openings))
        # Nothing still counted as sending a head, unless aiohttp's server now times the rest of it.
        assert ctx.heads.count == (1 if handed_over else 0)
        return bytes(transport.out), transport.closed, events, upstream.connects, protocol

    return asyncio.run(run())


# ---- HTTP listener: CONNECT -------------------------------------------------------------------------

def test_connect_to_an_allowed_host_is_tunnelled(tmp_path):
    out, closed, events, connects, _ = transcript(tmp_path, CONFIG, "http", [b"CONNECT a.test:443 HTTP/1.1\r\n\r\n"])
    assert out == b"HTTP/1.1 200 Connection established\r\n\r\n" and not closed
    assert events == [("allowed", 200)]
    assert connects == [("a.test", ("127.0.0.1",), 443)]


def test_connect_head_split_across_reads(tmp_path):
    chunks = [b"CONN", b"ECT a.test:443 HT", b"TP/1.1\r\nHost: a.test:443\r\n", b"\r\n"]
    out, _, events, _, _ = transcript(tmp_path, CONFIG, "http", chunks)
    assert out.startswith(b"HTTP/1.1 200") and events == [("allowed", 200)]


@pytest.mark.parametrize(("host", "reason", "error"), [("c.test", "not_allowed", "blocked-by-allowlist"),
                                                       ("x.denied.test", "denied", "blocked-by-denylist"),
                                                       ("127.0.0.1", "not_allowed_local", "blocked-by-allowlist")])
def test_connect_denied(tmp_path, host, reason, error):
    out, closed, events, connects, _ = transcript(tmp_path, CONFIG, "http", [f"CONNECT {host}:443 HTTP/1.1\r\n\r\n".encode()])
    assert out.startswith(b"HTTP/1.1 403 Forbidden\r\n") and f"x-proxy-error: {error}\r\n".encode() in out
    assert out.endswith(b"\r\nconnection: close\r\n\r\n" + out.partition(b"\r\n\r\n")[2]) and closed
    assert events == [(reason, 403)] and connects == []


def test_connect_upstream_unreachable_is_502(tmp_path):
    out, closed, events, _, _ = transcript(tmp_path, CONFIG, "http", [b"CONNECT a.test:443 HTTP/1.1\r\n\r\n"], fail=True)
    assert out.startswith(b"HTTP/1.1 502 ") and b"cannot connect to a.test:443" in out and closed
    assert events == [("allowed", 502)]


@pytest.mark.parametrize(("head", "status"), [
    (b"CONNECT a.test:4\xb23 HTTP/1.1\r\n\r\n", 400),
    (b"CONNECT a.test:443:443 HTTP/1.1\r\n\r\n", 400),
    (b"CONNECT a.test:443 HTTP/1.1\r\n\r\nearly", 400),
    (b"CONNECT a.test:443 HTTP/1.1\nHost: a\n\n", 400),
    (b"CONNECT a.test:443 HTTP/1.1\r\n folded\r\n\r\n", 400),
    (b"CONNECT a.test:443 HTTP/2\r\n\r\n", 400),
    (b"CONNECT " + b"a" * 70000, 431),
])
def test_malformed_connect_heads(tmp_path, head, status):
    out, closed, events, connects, _ = transcript(tmp_path, CONFIG, "http", [head])
    assert out.startswith(f"HTTP/1.1 {status} ".encode()) and closed
    assert events == [] and connects == []


def test_connect_needs_proxy_credentials_when_configured(tmp_path):
    head = b"CONNECT a.test:443 HTTP/1.1\r\n\r\n"
    out, closed, events, _, _ = transcript(tmp_path, CONFIG, "http", [head], proxy_credentials=("u", "p"))
    assert out.startswith(b"HTTP/1.1 407 ") and b"proxy-authenticate: Basic" in out and closed and events == []
    authed = b"CONNECT a.test:443 HTTP/1.1\r\nProxy-Authorization: Basic dTpw\r\n\r\n"
    out, _, events, _, _ = transcript(tmp_path, CONFIG, "http", [authed], proxy_credentials=("u", "p"))
    assert out.startswith(b"HTTP/1.1 200") and events == [("allowed", 200)]


def test_a_non_connect_request_is_handed_to_the_http_server(tmp_path):
    out, closed, events, _, protocol = transcript(tmp_path, CONFIG, "http", [b"GET http://a.test/ HTTP/1.1\r\n"],
                                                  handed_over=True)
    assert out == b"" and not closed and events == []
    assert protocol.buffer == b"GET http://a.test/ HTTP/1.1\r\n"
    server = protocol.transport.get_protocol()
    assert isinstance(server, H1Server) and server._timer is not None   # the incomplete head is timed


# ---- SOCKS5 listener --------------------------------------------------------------------------------

def socks_connect(host: bytes, port: int, command: int = 1) -> bytes:
    return bytes((5, command, 0, 3, len(host))) + host + port.to_bytes(2, "big")


def test_socks5_connect_allowed(tmp_path):
    out, closed, events, connects, protocol = transcript(tmp_path, CONFIG, "socks5",
                                                         [b"\x05\x01\x00", socks_connect(b"a.test", 443)])
    assert out == b"\x05\x00" + b"\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00" and not closed
    assert events == [("allowed", 200)] and connects == [("a.test", ("127.0.0.1",), 443)]
    assert protocol.state is SocksState.DONE


def test_socks5_byte_by_byte(tmp_path):
    data = b"\x05\x01\x00" + socks_connect(b"a.test", 443)
    out, _, events, _, _ = transcript(tmp_path, CONFIG, "socks5", [bytes([b]) for b in data])
    assert out.endswith(b"\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00") and events == [("allowed", 200)]


def test_socks5_connect_denied_is_reply_2(tmp_path):
    out, closed, events, connects, _ = transcript(tmp_path, CONFIG, "socks5",
                                                  [b"\x05\x01\x00", socks_connect(b"x.denied.test", 443)])
    assert out == b"\x05\x00" + b"\x05\x02\x00\x01\x00\x00\x00\x00\x00\x00" and closed
    assert events == [("denied", 403)] and connects == []


def test_socks5_port_80_in_limited_mode_is_reply_2_at_once(tmp_path):
    out, closed, events, connects, _ = transcript(tmp_path, LIMITED, "socks5",
                                                  [b"\x05\x01\x00", socks_connect(b"a.test", 80)])
    assert out == b"\x05\x00" + b"\x05\x02\x00\x01\x00\x00\x00\x00\x00\x00" and closed
    assert events == [("mitm_required", 403)] and connects == []


@pytest.mark.parametrize(("data", "reply"), [
    (b"\x05\x01\x00" + socks_connect(b"a.test", 443, command=2), 7),
    (b"\x05\x01\x00" + socks_connect(b"a.test", 443, command=3), 7),
    (b"\x05\x01\x00" + socks_connect(b"a.test", 0), 8),
    (b"\x05\x01\x00\x05\x01\x00\x07\x00", 8),
    (b"\x05\x01\x00" + socks_connect(b"a.test", 443) + b"early", 1),
])
def test_socks5_refusals(tmp_path, data, reply):
    out, closed, events, connects, _ = transcript(tmp_path, CONFIG, "socks5", [data])
    assert out[:2] == b"\x05\x00" and out[2:4] == bytes((5, reply)) and closed
    assert events == [] and connects == []


def test_socks5_greeting_without_the_required_method(tmp_path):
    out, closed, events, _, _ = transcript(tmp_path, CONFIG, "socks5", [b"\x05\x01\x02"])
    assert out == b"\x05\xff" and closed and events == []


def test_socks5_wrong_password(tmp_path):
    out, closed, _, connects, protocol = transcript(tmp_path, CONFIG, "socks5", [b"\x05\x01\x02", b"\x01\x01u\x01x"],
                                                    socks_credentials=("u", "p"))
    assert out == b"\x05\x02\x01\x01" and closed and connects == []
    assert protocol.state is SocksState.AUTH


def test_accepted_client_sockets_have_nagle_off_on_either_loop(tmp_path):
    """asyncio turns TCP_NODELAY on only for sockets made with proto=IPPROTO_TCP, and the listeners'
    accepted sockets are not: without it a byte tunnel's first small writes waited out Nagle and
    delayed ACKs (about 40 ms to an SSE stream's first byte on asyncio's loop)."""
    async def run() -> list[int]:
        async with running(tmp_path, "[permissions.t.network]\n") as server:
            flags = []
            for kind in ("http", "socks5"):
                _, writer = await asyncio.open_connection(*server.addresses[kind])
                for _ in range(100):
                    if server.context.registry.clients:
                        break
                    await asyncio.sleep(0.01)
                for transport in server.context.registry.clients:
                    sock = transport.get_extra_info("socket")
                    flags.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
                server.context.registry.clients.clear()   # the next kind's connection alone
                writer.close()
            return flags

    assert asyncio.run(run()) == [1, 1]
