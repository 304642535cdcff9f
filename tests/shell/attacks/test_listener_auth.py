"""Listener authentication: credentials on either listener (HTTP ``proxy_url`` or ``socks_url``)
mean both listeners require them, so no unauthenticated door leads to the same policy and injected
secrets; ``check`` and the banner say who must authenticate where."""

from __future__ import annotations

import base64
import socket
import struct
import subprocess
import sys

import pytest

HOOKED = """
[permissions.t.network]
{listener}
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
secret_env_var = "LISTENER_AUTH_TOKEN"
prefix = "Bearer "
"""
TOKEN = "ghp_ListenerAuthCanary000000000000000001"
HTTP_CREDS = 'proxy_url = "http://alice:s3cret@127.0.0.1:3128"'
SOCKS_CREDS = 'socks_url = "socks5://bob:hunter2@127.0.0.1:8081"'


def start(start_proxy, listener: str):
    return start_proxy(HOOKED.format(listener=listener), env={"LISTENER_AUTH_TOKEN": TOKEN})


def recv_exact(sock: socket.socket, size: int) -> bytes:
    out = b""
    while len(out) < size:
        chunk = sock.recv(size - len(out))
        if not chunk:
            break
        out += chunk
    return out


def recv_all(sock: socket.socket) -> bytes:
    out = b""
    try:
        while chunk := sock.recv(65536):
            out += chunk
    except ConnectionResetError:
        pass
    return out


def socks_greeting(port: int, methods: bytes) -> tuple[socket.socket, bytes]:
    sock = socket.create_connection(("127.0.0.1", port), 5)
    sock.sendall(bytes([5, len(methods)]) + methods)
    return sock, recv_exact(sock, 2)


def socks_login(port: int, user: str, password: str) -> tuple[socket.socket, bytes]:
    sock, method = socks_greeting(port, b"\x02")
    assert method == b"\x05\x02"
    sock.sendall(bytes([1, len(user)]) + user.encode() + bytes([len(password)]) + password.encode())
    return sock, recv_exact(sock, 2)


def socks_plain_get(sock: socket.socket, host: str, port: int) -> bytes:
    name = host.encode()
    sock.sendall(b"\x05\x01\x00\x03" + bytes([len(name)]) + name + struct.pack("!H", port))
    reply = recv_exact(sock, 10)
    assert reply[:2] == b"\x05\x00", reply
    sock.sendall(f"GET /x HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
    return recv_all(sock)


@pytest.fixture(scope="module")
def http_creds_proxy(start_proxy):
    return start(start_proxy, HTTP_CREDS)


@pytest.fixture(scope="module")
def socks_creds_proxy(start_proxy):
    return start(start_proxy, SOCKS_CREDS)


class TestHttpCredentialsCoverSocks5:
    @pytest.fixture
    def proxy(self, http_creds_proxy):
        return http_creds_proxy

    def test_unauthenticated_socks5_greeting_is_refused(self, proxy, upstream):
        before = len(upstream.requests)
        sock, method = socks_greeting(proxy.socks_port, b"\x00")
        with sock:
            assert method == b"\x05\xff"          # no acceptable method
            assert recv_all(sock) == b""          # and closed
        assert len(upstream.requests) == before

    def test_socks5_with_the_http_listeners_credentials_works(self, proxy, upstream):
        sock, status = socks_login(proxy.socks_port, "alice", "s3cret")
        with sock:
            assert status == b"\x01\x00"
            answer = socks_plain_get(sock, "upstream.test", upstream.plain_port)
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]

    def test_socks5_with_a_wrong_password_is_refused(self, proxy):
        sock, status = socks_login(proxy.socks_port, "alice", "wrong")
        with sock:
            assert status == b"\x01\x01"
            assert recv_all(sock) == b""

    def test_http_connect_still_needs_credentials(self, proxy, upstream):
        target = f"api.github.com:{upstream.tls_port}"
        with socket.create_connection(("127.0.0.1", proxy.http_port), 5) as sock:
            sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
            assert recv_all(sock).startswith(b"HTTP/1.1 407")

    def test_banner_states_auth_on_both_listeners(self, proxy):
        banner = "".join(proxy.output)
        assert "listener auth: http user 'alice', socks5 user 'alice' (the other listener's credentials)" in banner
        assert "s3cret" not in banner


class TestSocksCredentialsCoverHttp:
    @pytest.fixture
    def proxy(self, socks_creds_proxy):
        return socks_creds_proxy

    @staticmethod
    def basic(user: str, password: str) -> str:
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def test_unauthenticated_connect_gets_407(self, proxy, upstream):
        before = len(upstream.requests)
        target = f"api.github.com:{upstream.tls_port}"
        with socket.create_connection(("127.0.0.1", proxy.http_port), 5) as sock:
            sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
            assert recv_all(sock).startswith(b"HTTP/1.1 407")
        assert len(upstream.requests) == before

    def test_unauthenticated_plain_request_gets_407(self, proxy, upstream):
        before = len(upstream.requests)
        h = f"upstream.test:{upstream.plain_port}"
        with socket.create_connection(("127.0.0.1", proxy.http_port), 5) as sock:
            sock.sendall(f"GET http://{h}/x HTTP/1.1\r\nHost: {h}\r\nConnection: close\r\n\r\n".encode())
            assert recv_all(sock).startswith(b"HTTP/1.1 407")
        assert len(upstream.requests) == before

    def test_http_with_the_socks_listeners_credentials_works(self, proxy, upstream):
        h = f"upstream.test:{upstream.plain_port}"
        with socket.create_connection(("127.0.0.1", proxy.http_port), 5) as sock:
            sock.sendall(f"GET http://{h}/x HTTP/1.1\r\nHost: {h}\r\nProxy-Authorization: "
                         f"{self.basic('bob', 'hunter2')}\r\nConnection: close\r\n\r\n".encode())
            assert recv_all(sock).startswith(b"HTTP/1.1 200")

    def test_socks5_keeps_its_own_credentials(self, proxy, upstream):
        sock, method = socks_greeting(proxy.socks_port, b"\x00")
        with sock:
            assert method == b"\x05\xff"
        sock, status = socks_login(proxy.socks_port, "bob", "hunter2")
        with sock:
            assert status == b"\x01\x00"
            assert socks_plain_get(sock, "upstream.test", upstream.plain_port).startswith(b"HTTP/1.1 200")


def test_no_credentials_means_both_open_and_check_says_so(start_proxy, upstream, tmp_path):
    proxy = start(start_proxy, "")
    sock, method = socks_greeting(proxy.socks_port, b"\x00")
    with sock:
        assert method == b"\x05\x00"
    assert "listener auth: http none, socks5 none (any local process can use the proxy)" in "".join(proxy.output)


@pytest.mark.parametrize(("listener", "expected"), [
    (HTTP_CREDS, "listener auth: http user 'alice', socks5 user 'alice' (the other listener's credentials)"),
    (SOCKS_CREDS, "listener auth: http user 'bob' (the other listener's credentials), socks5 user 'bob'"),
    (f"{HTTP_CREDS}\n{SOCKS_CREDS}", "listener auth: http user 'alice', socks5 user 'bob'"),
])
def test_check_states_the_auth_of_both_listeners(tmp_path, listener, expected):
    config = tmp_path / "config.toml"
    config.write_text(HOOKED.format(listener=listener))
    done = subprocess.run([sys.executable, "-m", "policyproxy", "check", "--config", str(config)],
                          capture_output=True, text=True, env={"LISTENER_AUTH_TOKEN": TOKEN, "PATH": "/usr/bin:/bin",
                                                               "POLICYPROXY_HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert expected in done.stdout
    assert "s3cret" not in done.stdout and "hunter2" not in done.stdout   # check printed proxy_url whole
