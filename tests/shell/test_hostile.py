"""Hostile clients: malformed and smuggling-shaped requests get a 4xx and reach no upstream; the
server keeps serving. Slow clients are timed out without hurting others."""

import asyncio
import contextlib
import ipaddress
import socket
import ssl

import pytest

from policyproxy.policy.compile import compile_policy
from policyproxy.proxy.options import ProxyOptions
from policyproxy.proxy.server import ProxyServer
from policyproxy.tls.ca_store import load_or_create
from tests.helpers import settings

CONFIG = """
[permissions.t.network.domains]
"*" = "allow"
[permissions.t.network.mitm.hooks.gh]
host = "api.github.com"
methods = ["POST", "GET"]
path_prefixes = ["/repos/myorg/"]
action = ["strip"]
[permissions.t.network.mitm.actions.strip]
strip_request_headers = ["cookie"]
"""


@pytest.fixture(scope="module")
def proxy(start_proxy):
    return start_proxy(CONFIG)


def exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send ``data``; what comes back until the head of one answer is complete, or the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout) as s:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(data)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
                if b"\r\n\r\n" in out:
                    break
        except (ConnectionResetError, TimeoutError):
            pass
        return out


def tls_exchange(proxy, upstream_port: int, data: bytes) -> bytes:
    raw = socket.create_connection(("127.0.0.1", proxy.http_port), 10)
    target = f"api.github.com:{upstream_port}"
    raw.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    assert raw.recv(4096).startswith(b"HTTP/1.1 200")
    context = ssl.create_default_context(cafile=str(proxy.ca))
    tls = context.wrap_socket(raw, server_hostname="api.github.com")
    tls.sendall(data)
    out = b""
    try:
        while chunk := tls.recv(65536):
            out += chunk
            if b"\r\n\r\n" in out:
                break
    except (ssl.SSLError, ConnectionResetError, TimeoutError, OSError):
        pass
    tls.close()
    return out


def status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.") else 0


def host(upstream) -> str:
    return f"upstream.test:{upstream.plain_port}"


PLAIN_ATTACKS = {
    "cl_and_te": "POST http://{h}/a HTTP/1.1\r\nHost: {h}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: {h}\r\n\r\n",
    "two_content_lengths": "POST http://{h}/a HTTP/1.1\r\nHost: {h}\r\nContent-Length: 3\r\nContent-Length: 30\r\n\r\nabc",
    "obs_fold": "GET http://{h}/a HTTP/1.1\r\nHost: {h}\r\nX-A: b\r\n  folded\r\n\r\n",
    "bare_lf": "GET http://{h}/a HTTP/1.1\nHost: {h}\n\n",
    "bad_chunk_size": "POST http://{h}/a HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    "huge_request_line": "GET http://{h}/" + "a" * 70000 + " HTTP/1.1\r\nHost: {h}\r\n\r\n",
    "huge_header": "GET http://{h}/a HTTP/1.1\r\nHost: {h}\r\nX-Big: " + "b" * 70000 + "\r\n\r\n",
    "invalid_method": "G(T http://{h}/a HTTP/1.1\r\nHost: {h}\r\n\r\n",
    "invalid_target": "GET http://{h}/a b HTTP/1.1\r\nHost: {h}\r\n\r\n",
    "host_mismatch": "GET http://{h}/a HTTP/1.1\r\nHost: evil.test\r\n\r\n",
    "userinfo": "GET http://user:pw@{h}/a HTTP/1.1\r\nHost: {h}\r\n\r\n",
    "https_absolute_form": "GET https://{h}/a HTTP/1.1\r\nHost: {h}\r\n\r\n",
    "te_not_chunked": "POST http://{h}/a HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: gzip\r\n\r\nabc",
}


@pytest.mark.parametrize("attack", sorted(PLAIN_ATTACKS))
def test_malformed_plain_requests_get_4xx_and_reach_no_upstream(proxy, upstream, attack):
    before = len(upstream.requests)
    answer = exchange(proxy.http_port, PLAIN_ATTACKS[attack].format(h=host(upstream)).encode())
    assert 400 <= status(answer) < 500, answer[:200]
    assert len(upstream.requests) == before
    # and the server keeps serving
    ok = exchange(proxy.http_port, f"GET http://{host(upstream)}/ok HTTP/1.1\r\nHost: {host(upstream)}\r\n"
                                   "Connection: close\r\n\r\n".encode())
    assert status(ok) == 200


@pytest.mark.parametrize("attack", ["cl_and_te", "two_content_lengths", "obs_fold", "bad_chunk_size",
                                    "invalid_method", "inner_connect", "absolute_other_host"])
def test_malformed_requests_inside_interception_get_4xx(proxy, upstream, attack):
    h = f"api.github.com:{upstream.tls_port}"
    requests = {
        "cl_and_te": f"POST /repos/myorg/a HTTP/1.1\r\nHost: {h}\r\nContent-Length: 4\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "two_content_lengths": f"POST /repos/myorg/a HTTP/1.1\r\nHost: {h}\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        "obs_fold": f"GET /repos/myorg/a HTTP/1.1\r\nHost: {h}\r\nX-A: b\r\n folded\r\n\r\n",
        "bad_chunk_size": f"POST /repos/myorg/a HTTP/1.1\r\nHost: {h}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "invalid_method": f"G(T /repos/myorg/a HTTP/1.1\r\nHost: {h}\r\n\r\n",
        "inner_connect": f"CONNECT evil.test:443 HTTP/1.1\r\nHost: {h}\r\n\r\n",
        "absolute_other_host": f"GET https://evil.test/repos/myorg/a HTTP/1.1\r\nHost: {h}\r\n\r\n",
    }
    before = len(upstream.requests)
    answer = tls_exchange(proxy, upstream.tls_port, requests[attack].encode())
    assert 400 <= status(answer) < 500, answer[:200]
    assert len(upstream.requests) == before


def test_non_tls_bytes_on_an_intercepted_tunnel_are_dropped(proxy, upstream):
    with socket.create_connection(("127.0.0.1", proxy.http_port), 10) as s:
        target = f"api.github.com:{upstream.tls_port}"
        s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(20)
        assert s.recv(4096) == b""   # the TLS handshake fails: closed, nothing answered in the clear


def test_idn_homograph_is_not_the_allowed_host(tmp_path):
    from tests.helpers import connect, policy

    p = policy(tmp_path, '[permissions.t.network.domains]\n"github.com" = "allow"\n')
    assert not connect(p, "gіthub.com").allowed      # Cyrillic і
    assert connect(p, "gіthub.com").host.startswith("xn--")


def socks_exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send ``data`` and half-close; everything the server answers until it closes the connection.

    Reading to the close (not just the first bytes) is what lets a success reply sent after a
    correct method reply fail the test.
    """
    with socket.create_connection(("127.0.0.1", port), timeout) as s:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        out = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := s.recv(65536):
                out += chunk
        return out


NO_AUTH = b"\x05\x00"
SOCKS_REPLY_TAIL = b"\x00\x01" + bytes(6)   # RSV, ATYP IPv4, 0.0.0.0:0
MALFORMED_SOCKS5 = {
    "socks4_greeting": (b"\x04\x01\x00\x50\x7f\x00\x00\x01\x00", b""),
    "no_methods": (b"\x05\x00", b""),
    "truncated_request": (b"\x05\x01\x00\x05\x09", NO_AUTH),
    "unknown_address_type": (b"\x05\x01\x00\x05\x01\x00\x07\x00\x00\x00\x00\x00\x00",
                             NO_AUTH + b"\x05\x08" + SOCKS_REPLY_TAIL),
    "unknown_command": (b"\x05\x01\x00\x05\x09\x00\x01\x7f\x00\x00\x01\x00\x50",
                        NO_AUTH + b"\x05\x07" + SOCKS_REPLY_TAIL),
    "bind": (b"\x05\x01\x00\x05\x02\x00\x01\x7f\x00\x00\x01\x00\x50", NO_AUTH + b"\x05\x07" + SOCKS_REPLY_TAIL),
    "reserved_not_zero": (b"\x05\x01\x00\x05\x01\x01\x01\x7f\x00\x00\x01\x00\x50",
                          NO_AUTH + b"\x05\x01" + SOCKS_REPLY_TAIL),
    "empty_domain": (b"\x05\x01\x00\x05\x01\x00\x03\x00\x00\x50", NO_AUTH + b"\x05\x08" + SOCKS_REPLY_TAIL),
    "request_version_4": (b"\x05\x01\x00\x04\x01\x00\x01\x7f\x00\x00\x01\x00\x50",
                          NO_AUTH + b"\x05\x01" + SOCKS_REPLY_TAIL),
}


@pytest.mark.parametrize("attack", sorted(MALFORMED_SOCKS5))
def test_malformed_socks5_is_refused_and_the_listener_keeps_serving(proxy, attack):
    data, expected = MALFORMED_SOCKS5[attack]
    assert socks_exchange(proxy.socks_port, data) == expected   # the whole answer, then the close
    assert socks_exchange(proxy.socks_port, b"\x05\x01\x00") == NO_AUTH


def test_slow_clients_are_timed_out_and_others_are_unaffected(tmp_path, upstream):
    s = settings(tmp_path, '[permissions.t.network.domains]\n"*" = "allow"\n')
    pin = {("tunnel.test", upstream.plain_port): ipaddress.ip_address("127.0.0.1")}
    options = ProxyOptions(listen=("127.0.0.1", 0), socks_listen=("127.0.0.1", 0), pins=pin, head_timeout=0.5)

    async def scenario() -> tuple[bytes, bytes, bytes, float]:
        app = ProxyServer(s, compile_policy(s), load_or_create(tmp_path / "ca"), options)
        await app.start()
        port, socks_port = app.addresses["http"][1], app.addresses["socks5"][1]
        slow_reader, slow_writer = await asyncio.open_connection("127.0.0.1", port)
        socks_reader, socks_writer = await asyncio.open_connection("127.0.0.1", socks_port)
        socks_writer.write(b"\x05")   # a SOCKS5 greeting that never finishes
        loop = asyncio.get_running_loop()
        start = loop.time()
        slow = b""
        for byte in b"CONNECT tunnel.test:80 HTTP/1.1\r\n":   # slowloris: a byte every 50 ms
            slow_writer.write(bytes([byte]))
            try:
                slow = await asyncio.wait_for(slow_reader.read(4096), 0.05)
            except asyncio.TimeoutError:
                continue
            break
        # meanwhile an ordinary client is served at once
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        h = f"tunnel.test:{upstream.plain_port}"
        writer.write(f"GET http://{h}/x HTTP/1.1\r\nHost: {h}\r\nConnection: close\r\n\r\n".encode())
        ok = await asyncio.wait_for(reader.read(), 5)
        elapsed = loop.time() - start
        socks = await asyncio.wait_for(socks_reader.read(), 5)
        await app.stop(drain=1)
        return ok, slow, socks, elapsed

    ok, slow, socks, elapsed = asyncio.run(scenario())
    assert ok.startswith(b"HTTP/1.1 200")
    assert slow.startswith(b"HTTP/1.1 408") and elapsed < 3
    assert socks == b""


def test_sni_that_differs_from_the_connect_target_gets_no_certificate_for_it(proxy, upstream):
    before = len(upstream.requests)
    raw = socket.create_connection(("127.0.0.1", proxy.http_port), 10)
    target = f"api.github.com:{upstream.tls_port}"
    raw.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    assert raw.recv(4096).startswith(b"HTTP/1.1 200")
    context = ssl.create_default_context(cafile=str(proxy.ca))
    with pytest.raises(ssl.SSLCertVerificationError):   # the leaf names the CONNECT target only
        context.wrap_socket(raw, server_hostname="evil.test")
    raw.close()
    assert len(upstream.requests) == before


def test_a_tls_handshake_that_never_finishes_is_closed(tmp_path):
    s = settings(tmp_path, '[permissions.t.network.domains]\n"*" = "allow"\n[permissions.t.network]\nmode = "limited"\n')
    options = ProxyOptions(listen=("127.0.0.1", 0), socks_listen=None, handshake_timeout=0.5,
                           pins={("tunnel.test", 443): ipaddress.ip_address("127.0.0.1")})

    async def scenario() -> tuple[bytes, float]:
        app = ProxyServer(s, compile_policy(s), load_or_create(tmp_path / "ca"), options)
        await app.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", app.addresses["http"][1])
        writer.write(b"CONNECT tunnel.test:443 HTTP/1.1\r\n\r\n")
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        writer.write(b"\x16\x03\x01\x00")   # the start of a ClientHello, and then nothing
        loop = asyncio.get_running_loop()
        start = loop.time()
        rest = await asyncio.wait_for(reader.read(), 5)
        elapsed = loop.time() - start
        await app.stop(drain=1)
        return rest, elapsed

    rest, elapsed = asyncio.run(scenario())
    assert rest == b"" and elapsed < 3
