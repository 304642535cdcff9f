"""Attack class: redirects. The proxy never follows one, on any path (intercepted HTTP, plain HTTP,
WebSocket upgrades): the client gets the 3xx and its next request is decided again. The redirect
target (a denied name pinned to loopback, a loopback literal, an unhooked path on the hooked origin)
must see nothing, least of all a hook-injected header."""

from __future__ import annotations

import socket
import ssl

import pytest

from tests.shell.recorder import Recorder
from tests.shell.upstream import NAMES, make_test_pki

KEY = "ws-hook-canary-41"
CONFIG = """
[permissions.t.network.domains]
"api.github.com" = "allow"
"upstream.test" = "allow"
[permissions.t.network.mitm.hooks.gh]
host = "api.github.com"
methods = ["GET"]
path_prefixes = ["/redirect/"]
action = ["inject"]
[permissions.t.network.mitm.actions.inject]
[[permissions.t.network.mitm.actions.inject.inject_request_headers]]
name = "x-api-key"
secret_env_var = "TEST_WS_KEY"
"""
CODES = [301, 302, 303, 307, 308]


@pytest.fixture(scope="module")
def recorder_pki(tmp_path_factory):
    """Its own test CA, with a certificate that also names evil.test: a followed redirect would succeed."""
    return make_test_pki(tmp_path_factory.mktemp("recorder-pki"), (*NAMES, "evil.test"))


@pytest.fixture(scope="module")
def recorder(recorder_pki):
    server = Recorder(recorder_pki[1], recorder_pki[2])
    yield server
    server.close()


def proxy_args(recorder, recorder_pki) -> list[str]:
    pins = [f"{name}:{port}:127.0.0.1" for name in ("api.github.com", "evil.test", "upstream.test")
            for port in (recorder.tls_port, recorder.plain_port)]
    return ["--upstream-ca", str(recorder_pki[0]), *(a for pin in pins for a in ("--resolve", pin))]


@pytest.fixture(scope="module")
def proxy(start_proxy, recorder, recorder_pki):
    return start_proxy(CONFIG, env={"TEST_WS_KEY": KEY}, extra=proxy_args(recorder, recorder_pki))


def targets(recorder) -> dict[str, str]:
    return {"denied_name": f"https://evil.test:{recorder.tls_port}/landing",
            "loopback_literal": f"https://127.0.0.1:{recorder.tls_port}/landing",
            "unhooked_same_origin": "/landing"}


def intercepted(proxy, port: int, request: str) -> bytes:
    """``request`` sent inside an intercepted tunnel to api.github.com; the answer's head."""
    raw = socket.create_connection(("127.0.0.1", proxy.http_port), 10)
    authority = f"api.github.com:{port}"
    raw.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
    assert raw.recv(4096).startswith(b"HTTP/1.1 200")
    tls = ssl.create_default_context(cafile=str(proxy.ca)).wrap_socket(raw, server_hostname="api.github.com")
    tls.sendall(request.replace("{authority}", authority).encode())
    out = b""
    try:
        while chunk := tls.recv(65536):
            out += chunk
            if b"\r\n\r\n" in out:
                break
    except (ssl.SSLError, OSError):
        pass
    tls.close()
    return out


UPGRADE = ("GET /redirect/{code}?to={to} HTTP/1.1\r\nHost: {{authority}}\r\nUpgrade: websocket\r\n"
           "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
PLAIN_GET = "GET /redirect/{code}?to={to} HTTP/1.1\r\nHost: {{authority}}\r\nConnection: close\r\n\r\n"


@pytest.mark.parametrize("where", ["denied_name", "loopback_literal", "unhooked_same_origin"])
@pytest.mark.parametrize("code", CODES)
def test_websocket_upgrade_redirect_is_not_followed(proxy, recorder, code, where):
    before = len(recorder.requests)
    answer = intercepted(proxy, recorder.tls_port, UPGRADE.format(code=code, to=targets(recorder)[where]))
    assert answer.startswith(f"HTTP/1.1 {code}".encode()), answer[:200]
    assert b"location:" in answer.lower()
    assert recorder.paths(before) == [f"/redirect/{code}"]          # the redirect target saw nothing
    assert recorder.requests[before]["headers"]["x-api-key"] == KEY  # the hook did apply where it should


@pytest.mark.parametrize("where", ["denied_name", "loopback_literal", "unhooked_same_origin"])
@pytest.mark.parametrize("code", CODES)
def test_intercepted_request_redirect_is_not_followed(proxy, recorder, code, where):
    before = len(recorder.requests)
    answer = intercepted(proxy, recorder.tls_port, PLAIN_GET.format(code=code, to=targets(recorder)[where]))
    assert answer.startswith(f"HTTP/1.1 {code}".encode()), answer[:200]
    assert recorder.paths(before) == [f"/redirect/{code}"]


@pytest.mark.parametrize("code", CODES)
def test_plain_http_redirect_is_not_followed(proxy, recorder, code):
    before = len(recorder.requests)
    authority = f"upstream.test:{recorder.plain_port}"
    to = f"http://evil.test:{recorder.plain_port}/landing"
    with socket.create_connection(("127.0.0.1", proxy.http_port), 10) as s:
        s.sendall(f"GET http://{authority}/redirect/{code}?to={to} HTTP/1.1\r\nHost: {authority}\r\n"
                  "Connection: close\r\n\r\n".encode())
        answer = s.recv(65536)
    assert answer.startswith(f"HTTP/1.1 {code}".encode()), answer[:200]
    assert recorder.paths(before) == [f"/redirect/{code}"]


def test_the_clients_next_request_to_the_redirect_target_is_decided_again(proxy, recorder):
    answer = intercepted(proxy, recorder.tls_port, "GET /landing HTTP/1.1\r\nHost: {authority}\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 403") and b"blocked-by-mitm-hook" in answer


@pytest.fixture(scope="module")
def gateway(start_proxy, recorder, recorder_pki):
    config = CONFIG + f'[gateway.routes]\nrec = "https://upstream.test:{recorder.tls_port}"\n'
    return start_proxy(config, env={"TEST_WS_KEY": KEY}, extra=proxy_args(recorder, recorder_pki))


@pytest.mark.parametrize("code", CODES)
def test_gateway_redirect_is_not_followed(gateway, recorder, code):
    before = len(recorder.requests)
    to = f"https://evil.test:{recorder.tls_port}/landing"
    with socket.create_connection(("127.0.0.1", gateway.http_port), 10) as s:
        s.sendall(f"GET /rec/redirect/{code}?to={to} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        answer = s.recv(65536)
    assert answer.startswith(f"HTTP/1.1 {code}".encode()), answer[:200]
    assert recorder.paths(before) == [f"/redirect/{code}"]


@pytest.mark.parametrize("code", CODES)
def test_plain_http_websocket_upgrade_redirect_is_not_followed(proxy, recorder, code):
    before = len(recorder.requests)
    authority = f"upstream.test:{recorder.plain_port}"
    to = f"http://evil.test:{recorder.plain_port}/landing"
    with socket.create_connection(("127.0.0.1", proxy.http_port), 10) as s:
        s.sendall(f"GET http://{authority}/redirect/{code}?to={to} HTTP/1.1\r\nHost: {authority}\r\n"
                  "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n".encode())
        answer = s.recv(65536)
    assert answer.startswith(f"HTTP/1.1 {code}".encode()), answer[:200]
    assert recorder.paths(before) == [f"/redirect/{code}"]
