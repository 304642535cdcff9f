"""Attack class: channels that write in limited mode. A WebSocket upgrade is a GET that becomes a
two-way channel: refused with the method-policy answer, as a write would be. Plain HTTP over SOCKS5
(port 80) cannot be inspected there: refused with reply 2 at once (as Codex does)."""

from __future__ import annotations

import socket
import ssl

import pytest

CONFIG = """
[permissions.t.network]
mode = "limited"
[permissions.t.network.domains]
"*" = "allow"
"""


@pytest.fixture(scope="module")
def proxy(start_proxy):
    return start_proxy(CONFIG)


def test_websocket_upgrade_is_refused_in_limited_mode(proxy, upstream):
    before = len(upstream.requests)
    raw = socket.create_connection(("127.0.0.1", proxy.http_port), 10)
    authority = f"api.github.com:{upstream.tls_port}"
    raw.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
    assert raw.recv(4096).startswith(b"HTTP/1.1 200")
    tls = ssl.create_default_context(cafile=str(proxy.ca)).wrap_socket(raw, server_hostname="api.github.com")
    tls.sendall(f"GET /ws HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    answer = tls.recv(65536)
    tls.close()
    assert answer.startswith(b"HTTP/1.1 403"), answer[:200]
    assert b"x-proxy-error: blocked-by-method-policy" in answer.lower()
    assert b"limited mode" in answer
    assert len(upstream.requests) == before


def test_a_plain_get_is_still_served_in_limited_mode(proxy, upstream):
    raw = socket.create_connection(("127.0.0.1", proxy.http_port), 10)
    authority = f"api.github.com:{upstream.tls_port}"
    raw.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
    assert raw.recv(4096).startswith(b"HTTP/1.1 200")
    tls = ssl.create_default_context(cafile=str(proxy.ca)).wrap_socket(raw, server_hostname="api.github.com")
    tls.sendall(f"GET /ws-not HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n".encode())
    answer = tls.recv(65536)
    tls.close()
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]


def socks_connect(port: int, host: bytes, target_port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), 10) as s:
        s.settimeout(5)
        s.sendall(b"\x05\x01\x00")
        assert s.recv(2) == b"\x05\x00"
        s.sendall(b"\x05\x01\x00\x03" + bytes([len(host)]) + host + target_port.to_bytes(2, "big"))
        reply = b""
        while len(reply) < 10:
            chunk = s.recv(10 - len(reply))   # the reply comes at once, before the client sends anything
            if not chunk:
                break
            reply += chunk
        return reply


def test_socks5_connect_to_port_80_is_refused_at_once_in_limited_mode(proxy):
    reply = socks_connect(proxy.socks_port, b"tunnel.test", 80)
    assert reply[:2] == b"\x05\x02", reply


def test_plain_http_websocket_upgrade_is_refused_in_limited_mode(proxy, upstream):
    before = len(upstream.requests)
    h = f"upstream.test:{upstream.plain_port}"
    with socket.create_connection(("127.0.0.1", proxy.http_port), 10) as s:
        s.sendall(f"GET http://{h}/ws HTTP/1.1\r\nHost: {h}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        answer = s.recv(65536)
    assert answer.startswith(b"HTTP/1.1 403"), answer[:200]
    assert b"x-proxy-error: blocked-by-method-policy" in answer.lower()
    assert len(upstream.requests) == before
