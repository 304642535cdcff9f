"""Attack class: destination names the policy reads leniently. ``normalize_host`` forgives a
careless ``host:port`` and surrounding whitespace, so a SOCKS5 domain name ``api.github.com:443`` or
a CONNECT host ``api.github.com\\x0b`` was decided as ``api.github.com`` and intercepted, then the
upstream URL was built from the raw name and the request ended in a 500 with a traceback in the log.
A destination name with a port, whitespace or a control character is refused at the listener
(SOCKS5 reply 8, HTTP 400) and never reaches an upstream."""

from __future__ import annotations

import socket
import struct

import pytest

from tests.shell.attacks.test_listener_auth import recv_all, recv_exact

TOKEN = "odd-names-canary-5521"
CONFIG = """
[permissions.t.network]
[permissions.t.network.domains]
"*" = "allow"
[permissions.t.network.mitm.hooks.gh]
host = "api.github.com"
methods = ["GET"]
path_prefixes = ["/repos/myorg/"]
action = ["token"]
[permissions.t.network.mitm.actions.token]
[[permissions.t.network.mitm.actions.token.inject_request_headers]]
name = "authorization"
secret_env_var = "ODD_NAMES_TOKEN"
"""
ODD = ["{host}:443", "{host}:{port}", "{host}:x", " {host}", "{host}\t", "{host}\r\n", "{host}\x0b", "{host}\x0c",
       "{host}\x1f"]


@pytest.fixture(scope="module")
def proxy(start_proxy):
    return start_proxy(CONFIG, env={"ODD_NAMES_TOKEN": TOKEN})


def socks_connect(proxy, name: bytes, port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", proxy.socks_port), 5) as sock:
        sock.sendall(b"\x05\x01\x00")
        assert recv_exact(sock, 2) == b"\x05\x00"
        sock.sendall(b"\x05\x01\x00\x03" + bytes([len(name)]) + name + struct.pack("!H", port))
        return recv_exact(sock, 10)


@pytest.mark.parametrize("host", ["api.github.com", "upstream.test"])
@pytest.mark.parametrize("shape", ODD)
def test_socks5_domain_with_a_port_or_whitespace_is_refused(proxy, upstream, host, shape):
    before = len(upstream.requests)
    name = shape.format(host=host, port=upstream.tls_port).encode()
    reply = socks_connect(proxy, name, upstream.tls_port)
    assert reply[:2] == b"\x05\x08", reply
    assert len(upstream.requests) == before
    assert "Traceback" not in proxy.logs()


@pytest.mark.parametrize("shape", [*ODD[2:], "{host}\xa0", "{host}\x85"])
def test_connect_host_with_whitespace_or_control_is_refused(proxy, upstream, shape):
    host = shape.format(host="api.github.com", port=upstream.tls_port)
    with socket.create_connection(("127.0.0.1", proxy.http_port), 5) as sock:
        sock.sendall(f"CONNECT {host}:{upstream.tls_port} HTTP/1.1\r\nHost: x\r\n\r\n".encode("latin-1"))
        answer = recv_all(sock)
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:80]
    assert "Traceback" not in proxy.logs()


def test_the_bare_name_still_works_over_socks5(proxy, upstream):
    """The refusals above are about the spelling: the same host by its plain name is intercepted."""
    reply = socks_connect(proxy, b"upstream.test", upstream.plain_port)
    assert reply[:2] == b"\x05\x00"
