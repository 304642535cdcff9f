"""Other names for an inspected host: a byte tunnel opened for an IP literal or another name whose
TLS ClientHello names a hooked, redaction or denied host is closed with a deny event, before any
byte reaches the upstream. What the proxy cannot see (no SNI, plain HTTP) is a documented limit."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import struct
import subprocess
import sys
import time

import pytest

from policyproxy.policy.compile import compile_policy
from policyproxy.proxy.options import ProxyOptions
from policyproxy.proxy.server import ProxyServer
from policyproxy.telemetry.audit import read_records
from policyproxy.tls.ca_store import load_or_create
from tests.helpers import settings

CONFIG = """
[permissions.t.network]
allow_local_binding = true
[permissions.t.network.domains]
"*" = "allow"
"denied.test" = "deny"
[permissions.t.network.mitm.hooks.gh]
host = "api.github.com"
methods = ["GET"]
path_prefixes = ["/repos/myorg/"]
action = ["strip"]
[permissions.t.network.mitm.actions.strip]
strip_request_headers = ["cookie"]
[permissions.t.network.redaction]
[permissions.t.network.redaction.detectors]
us_ssn = "block"
"""


@pytest.fixture(scope="module")
def proxy(start_proxy):
    return start_proxy(CONFIG)


def client_hello(server_name: str | None) -> bytes:
    """What OpenSSL sends first for ``server_name`` (captured from a memory BIO)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    return outgoing.read()


def open_tunnel(proxy, host: str, port: int, socks: bool = False) -> socket.socket:
    if socks:
        raw = socket.create_connection(("127.0.0.1", proxy.socks_port), 10)
        raw.sendall(b"\x05\x01\x00")
        assert raw.recv(2) == b"\x05\x00"
        try:
            address = b"\x01" + ipaddress.IPv4Address(host).packed
        except ValueError:
            address = b"\x03" + bytes([len(host)]) + host.encode()
        raw.sendall(b"\x05\x01\x00" + address + struct.pack("!H", port))
        reply = raw.recv(10)
        assert reply[:2] == b"\x05\x00", reply
        return raw
    raw = socket.create_connection(("127.0.0.1", proxy.http_port), 10)
    raw.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    head = raw.recv(4096)
    assert head.startswith(b"HTTP/1.1 200"), head
    return raw


def until_closed(sock: socket.socket, timeout: float = 10.0) -> bytes:
    sock.settimeout(timeout)
    out = b""
    try:
        while chunk := sock.recv(65536):
            out += chunk
    except ConnectionResetError:
        pass
    return out


def all_denies(proxy, host: str) -> list[dict]:
    return [r for r in read_records(proxy.home / "audit.jsonl")
            if r.get("server.address") == host and r.get("network.policy.decision") == "deny"]


def wait_until(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def deny_events(proxy, host: str) -> list[dict]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        found = [r for r in read_records(proxy.home / "audit.jsonl")
                 if r.get("server.address") == host and r.get("network.policy.decision") == "deny"]
        if found:
            return found
        time.sleep(0.05)
    return []


def https_get(raw: socket.socket, server_name: str, authority: str, cafile: str) -> bytes:
    context = ssl.create_default_context(cafile=cafile)
    with context.wrap_socket(raw, server_hostname=server_name) as tls:
        tls.sendall(f"GET /sni HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
    return answer


# The CONNECT names an IP literal or another name; the ClientHello names the inspected host.
REFUSED = {
    "ip_literal_for_hooked_host": ("127.0.0.1", "api.github.com", "mitm_required"),
    "other_name_for_hooked_host": ("tunnel.test", "api.github.com", "mitm_required"),
    "upper_case_sni": ("tunnel.test", "API.GITHUB.COM", "mitm_required"),
    "trailing_dot_sni": ("127.0.0.1", "api.github.com.", "mitm_required"),
    "ip_literal_for_llm_host": ("127.0.0.1", "api.openai.com", "mitm_required"),
    "other_name_for_llm_host": ("upstream.test", "api.anthropic.com", "mitm_required"),
    "ip_literal_for_denied_host": ("127.0.0.1", "denied.test", "denied"),
}


@pytest.mark.parametrize("socks", [False, True], ids=["connect", "socks5"])
@pytest.mark.parametrize("case", sorted(REFUSED))
def test_sni_naming_an_inspected_or_denied_host_closes_the_tunnel(proxy, upstream, case, socks):
    connect_host, server_name, reason = REFUSED[case]
    before = len(upstream.requests)
    raw = open_tunnel(proxy, connect_host, upstream.tls_port, socks)
    with raw:
        raw.sendall(client_hello(server_name))
        assert until_closed(raw) == b""          # no ServerHello: the upstream never saw the hello
    assert len(upstream.requests) == before
    canonical = server_name.lower().rstrip(".")
    events = deny_events(proxy, canonical)
    assert events and events[-1]["network.policy.reason"] == reason, events


def test_a_hello_fragmented_over_records_and_writes_is_still_read(proxy, upstream):
    message = client_hello("api.github.com")[5:]
    records = b"".join(b"\x16\x03\x01" + struct.pack("!H", len(message[i:i + 40])) + message[i:i + 40]
                       for i in range(0, len(message), 40))
    raw = open_tunnel(proxy, "127.0.0.1", upstream.tls_port)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with raw:
        for i in range(0, len(records), 61):
            raw.sendall(records[i:i + 61])
            time.sleep(0.005)
        assert until_closed(raw) == b""
    assert deny_events(proxy, "api.github.com")[-1]["network.policy.reason"] == "mitm_required"


def test_a_hello_dripped_byte_by_byte_is_refused(proxy, upstream):
    """Each read re-parses what is held: a hello in hundreds of pieces is refused, not parsed 500 times."""
    hello = client_hello("upstream.test")
    before = len(all_denies(proxy, "127.0.0.1"))
    raw = open_tunnel(proxy, "127.0.0.1", upstream.tls_port)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with raw:
        try:
            for i in range(len(hello)):
                raw.sendall(hello[i:i + 1])
                time.sleep(0.002)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert until_closed(raw) == b""
    assert wait_until(lambda: len(all_denies(proxy, "127.0.0.1")) > before)
    assert all_denies(proxy, "127.0.0.1")[-1]["network.policy.reason"] == "inspection_failed"


def _sni_extension(name: bytes) -> bytes:
    entry = b"\x00" + struct.pack("!H", len(name)) + name
    return struct.pack("!HH", 0, len(entry) + 2) + struct.pack("!H", len(entry)) + entry


@pytest.mark.parametrize("hello", ["two_server_names", "truncated_body"])
def test_a_malformed_hello_is_refused(proxy, upstream, hello):
    """Two SNI extensions (two readers could pick different names) or a body shorter than its
    lengths: the proxy cannot tell the name, so the tunnel closes (fail closed)."""
    if hello == "two_server_names":
        extensions = _sni_extension(b"upstream.test") + _sni_extension(b"api.github.com")
        body = (b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
                + struct.pack("!H", len(extensions)) + extensions)
    else:
        body = b"\x03\x03" + bytes(10)
    message = b"\x01" + len(body).to_bytes(3, "big") + body
    raw = open_tunnel(proxy, "127.0.0.1", upstream.tls_port)
    before = len(upstream.requests)
    with raw:
        raw.sendall(b"\x16\x03\x01" + struct.pack("!H", len(message)) + message)
        assert until_closed(raw) == b""
    assert len(upstream.requests) == before
    assert deny_events(proxy, "127.0.0.1")[-1]["network.policy.reason"] == "inspection_failed"


@pytest.mark.parametrize(("connect_host", "server_name"), [("tunnel.test", "tunnel.test"),
                                                           ("127.0.0.1", "upstream.test"),
                                                           ("tunnel.test", "upstream.test")])
def test_a_sni_for_an_allowed_uninspected_host_keeps_its_tunnel(proxy, upstream, pki, connect_host, server_name):
    raw = open_tunnel(proxy, connect_host, upstream.tls_port)
    answer = https_get(raw, server_name, f"{server_name}:{upstream.tls_port}", str(pki[0]))
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]


def test_limit_no_sni_is_tunnelled(proxy, upstream, pki):
    """Documented limit (SECURITY.md): without a server name there is no other name to decide on."""
    raw = open_tunnel(proxy, "127.0.0.1", upstream.tls_port)
    context = ssl.create_default_context(cafile=str(pki[0]))
    context.check_hostname = False
    with context.wrap_socket(raw) as tls:
        tls.sendall(f"GET /nosni HTTP/1.1\r\nHost: api.github.com:{upstream.tls_port}\r\nConnection: close\r\n\r\n"
                    .encode())
        assert tls.recv(4096).startswith(b"HTTP/1.1 200")


def test_limit_plain_http_by_ip_is_tunnelled(proxy, upstream):
    """Documented limit (SECURITY.md): bytes that are not TLS carry no name the proxy reads."""
    raw = open_tunnel(proxy, "127.0.0.1", upstream.plain_port)
    with raw:
        raw.sendall(b"GET /plain HTTP/1.1\r\nHost: api.github.com\r\nConnection: close\r\n\r\n")
        assert until_closed(raw).startswith(b"HTTP/1.1 200")


def test_a_hello_that_never_completes_is_closed_after_the_head_timeout(tmp_path, upstream):
    s = settings(tmp_path, '[permissions.t.network.domains]\n"*" = "allow"\n')
    pin = {("tunnel.test", upstream.tls_port): ipaddress.ip_address("127.0.0.1")}
    options = ProxyOptions(listen=("127.0.0.1", 0), socks_listen=None, pins=pin, head_timeout=0.5)
    denies: list = []

    async def scenario() -> tuple[bytes, float]:
        app = ProxyServer(s, compile_policy(s), load_or_create(tmp_path / "ca"), options)
        app.sinks.append(lambda decision, context: denies.append(decision))
        await app.start()
        reader, writer = await asyncio.open_connection("127.0.0.1", app.addresses["http"][1])
        writer.write(f"CONNECT tunnel.test:{upstream.tls_port} HTTP/1.1\r\n\r\n".encode())
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200")
        writer.write(client_hello("tunnel.test")[:20])     # a third of a hello, then silence
        loop = asyncio.get_running_loop()
        start = loop.time()
        rest = await asyncio.wait_for(reader.read(), 5)
        elapsed = loop.time() - start
        await app.stop(drain=1)
        return rest, elapsed

    rest, elapsed = asyncio.run(scenario())
    assert rest == b"" and elapsed < 3
    assert [d.reason.value for d in denies if not d.allowed] == ["inspection_failed"]


def test_check_warns_when_star_is_allowed_next_to_hooks(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(CONFIG)
    done = subprocess.run([sys.executable, "-m", "policyproxy", "check", "--config", str(config)],
                          capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "POLICYPROXY_HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    warning = next(line for line in done.stderr.splitlines() if line.startswith("warning:") and '"*"' in line)
    assert 'config.toml: "*" is allowed next to hooks (api.github.com) and redaction' in warning
    config.write_text(CONFIG.replace('"*" = "allow"', '"*.test" = "allow"\n"api.github.com" = "allow"'))
    done = subprocess.run([sys.executable, "-m", "policyproxy", "check", "--config", str(config)],
                          capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "POLICYPROXY_HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    assert '"*" is allowed' not in done.stderr


def _hello_with_sni(name: bytes) -> bytes:
    extensions = _sni_extension(name)
    body = (b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
            + struct.pack("!H", len(extensions)) + extensions)
    message = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(message)) + message


@pytest.mark.parametrize(("server_name", "event_host", "reason"), [
    ("api.github.com:443", "api.github.com", "mitm_required"),     # a port in the name
    ("API.GitHub.COM.", "api.github.com", "mitm_required"),        # mixed case and a trailing dot
    ("api.github.com..", "api.github.com..", "not_allowed"),       # not a usable host: denied
    ("api%2egithub.com", "api%2egithub.com", "not_allowed"),       # percent-encoding is not a host
])
def test_odd_sni_spellings_are_decided_and_refused(proxy, upstream, server_name, event_host, reason):
    """Hand-built hellos (OpenSSL refuses to send these names): every spelling is either the hooked
    host (intercept required) or not a host at all (denied); none gets a plain tunnel."""
    before = len(upstream.requests)
    raw = open_tunnel(proxy, "127.0.0.1", upstream.tls_port)
    with raw:
        raw.sendall(_hello_with_sni(server_name.encode()))
        assert until_closed(raw) == b""
    assert len(upstream.requests) == before
    assert deny_events(proxy, event_host)[-1]["network.policy.reason"] == reason
