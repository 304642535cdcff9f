"""Resource safety: connections that close normally give back every file descriptor (byte tunnels
over CONNECT and SOCKS5, intercepted TLS), a proxy with few descriptors keeps serving, and a client
that reads a large answer slowly or never holds the proxy's memory to a few buffers."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import resource
import socket
import ssl
import struct
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.shell.upstream import big_digest

CONFIG = """
[permissions.t.network.domains]
"*" = "allow"
[permissions.t.network.mitm.hooks.gh]
host = "api.github.com"
methods = ["GET"]
path_prefixes = ["/repos/myorg/"]
action = ["strip"]
[permissions.t.network.mitm.actions.strip]
strip_request_headers = ["cookie"]
"""


@pytest.fixture(scope="module")
def proxy(start_proxy):
    return start_proxy(CONFIG)


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def settled_fds(pid: int, ceiling: int, timeout: float = 10.0) -> int:
    """The proxy's fd count once it falls to ``ceiling`` or ``timeout`` passes (closes are async)."""
    deadline = time.monotonic() + timeout
    count = fd_count(pid)
    while count > ceiling and time.monotonic() < deadline:
        time.sleep(0.1)
        count = fd_count(pid)
    return count


def _http_connect(port: int, target: str) -> socket.socket:
    raw = socket.create_connection(("127.0.0.1", port), 10)
    raw.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = raw.recv(4096)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 200"), head
    return raw


def _socks_connect(port: int, host: str, target_port: int) -> socket.socket:
    raw = socket.create_connection(("127.0.0.1", port), 10)
    raw.sendall(b"\x05\x01\x00")
    assert raw.recv(2) == b"\x05\x00"
    name = host.encode()
    raw.sendall(b"\x05\x01\x00\x03" + bytes([len(name)]) + name + struct.pack("!H", target_port))
    reply = b""
    while len(reply) < 10:
        chunk = raw.recv(10 - len(reply))
        assert chunk, reply
        reply += chunk
    assert reply[:2] == b"\x05\x00", reply
    return raw


def https_get(raw: socket.socket, authority: str, cafile: str, path: str = "/x") -> bytes:
    """One HTTPS request on a fresh tunnel; the client closes normally after the answer."""
    context = ssl.create_default_context(cafile=cafile)
    with context.wrap_socket(raw, server_hostname=authority.rpartition(":")[0]) as tls:
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := tls.recv(65536):
            answer += chunk
    return answer


def test_http_connect_byte_tunnels_give_back_their_fds(proxy, upstream, pki):
    pid = proxy.process.pid
    target = f"tunnel.test:{upstream.tls_port}"
    https_get(_http_connect(proxy.http_port, target), target, str(pki[0]))   # warm up
    before = settled_fds(pid, 0, timeout=0.5)
    for _ in range(200):
        answer = https_get(_http_connect(proxy.http_port, target), target, str(pki[0]))
        assert answer.startswith(b"HTTP/1.1 200"), answer[:100]
    after = settled_fds(pid, before + 4)
    assert after <= before + 4, f"{after - before} fds left open after 200 tunnelled requests"


def test_socks5_byte_tunnels_give_back_their_fds(proxy, upstream, pki):
    pid = proxy.process.pid
    target = f"tunnel.test:{upstream.tls_port}"
    https_get(_socks_connect(proxy.socks_port, "tunnel.test", upstream.tls_port), target, str(pki[0]))
    before = settled_fds(pid, 0, timeout=0.5)
    for _ in range(200):
        answer = https_get(_socks_connect(proxy.socks_port, "tunnel.test", upstream.tls_port), target,
                           str(pki[0]))
        assert answer.startswith(b"HTTP/1.1 200"), answer[:100]
    after = settled_fds(pid, before + 4)
    assert after <= before + 4, f"{after - before} fds left open after 200 SOCKS5 tunnels"


def test_intercepted_connections_give_back_their_fds(proxy, upstream):
    pid = proxy.process.pid
    target = f"api.github.com:{upstream.tls_port}"
    https_get(_http_connect(proxy.http_port, target), target, str(proxy.ca), "/repos/myorg/a")
    before = settled_fds(pid, 0, timeout=0.5)
    for _ in range(100):
        answer = https_get(_http_connect(proxy.http_port, target), target, str(proxy.ca),
                           "/repos/myorg/a")
        assert answer.startswith(b"HTTP/1.1 200"), answer[:100]
    # the upstream keep-alive pool may hold a few connections; the client side must be gone
    after = settled_fds(pid, before + 8)
    assert after <= before + 8, f"{after - before} fds left open after 100 intercepted connections"


@pytest.mark.parametrize("who_closes_first", ["server", "client"])
def test_curl_through_a_tunnel_leaves_no_fds(proxy, upstream, pki, who_closes_first):
    """``Connection: close``: the upstream closes first; keep-alive: curl closes first."""
    pid = proxy.process.pid
    url = f"https://tunnel.test:{upstream.tls_port}/curl"
    command = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--proxy", proxy.url, "--cacert",
               str(pki[0]), url]
    if who_closes_first == "server":
        command += ["-H", "Connection: close"]
    subprocess.run(command, check=True, capture_output=True, timeout=20)
    before = settled_fds(pid, 0, timeout=0.5)
    for _ in range(30):
        done = subprocess.run(command, capture_output=True, text=True, timeout=20)
        assert done.stdout == "200", done.stderr
    after = settled_fds(pid, before + 4)
    assert after <= before + 4, f"{after - before} fds left open after 30 curl requests"


def test_low_fd_limit_soak_serves_600_tunnels(start_proxy, upstream, pki):
    """With ``ulimit -n 256`` the proxy used to stop serving after about 120 tunnelled requests."""
    proxy = start_proxy(CONFIG)
    resource.prlimit(proxy.process.pid, resource.RLIMIT_NOFILE, (256, 256))
    target = f"tunnel.test:{upstream.tls_port}"
    failures = 0
    for i in range(600):
        try:
            answer = https_get(_http_connect(proxy.http_port, target) if i % 2 else
                               _socks_connect(proxy.socks_port, "tunnel.test", upstream.tls_port),
                               target, str(pki[0]))
            failures += not answer.startswith(b"HTTP/1.1 200")
        except (OSError, AssertionError):
            failures += 1
    assert failures == 0, f"{failures} of 600 tunnelled requests failed under ulimit -n 256"
    assert "Traceback" not in proxy.logs()
    assert fd_count(proxy.process.pid) < 64


def test_more_clients_than_descriptors_wait_instead_of_failing(start_proxy, upstream):
    """150 tunnels held open at once need about 300 descriptors; with ``ulimit -n 256`` the proxy used to
    accept them all, fail upstream connects with EMFILE (502) and log accept() tracebacks. Now clients
    over the budget wait in the backlog and are served as others close."""
    import asyncio

    proxy = start_proxy(CONFIG)
    resource.prlimit(proxy.process.pid, resource.RLIMIT_NOFILE, (256, 256))
    target = f"tunnel.test:{upstream.plain_port}"

    async def use(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        writer.write(f"GET /held HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n".encode())
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        return answer.startswith(b"HTTP/1.1 200")

    async def scenario() -> tuple[int, int, int]:
        clients = [await asyncio.open_connection("127.0.0.1", proxy.http_port) for _ in range(150)]
        for _, writer in clients:
            writer.write(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())

        async def head(reader: asyncio.StreamReader, timeout: float) -> bytes | None:
            try:
                return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
            except asyncio.TimeoutError:
                return None
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                return getattr(exc, "partial", b"") or b"closed"

        first = await asyncio.gather(*(head(r, 3) for r, _ in clients))
        answered_first = sum(1 for h in first if h is not None)
        failures = sum(1 for h in first if h is not None and not h.startswith(b"HTTP/1.1 200"))
        served = [c for c, h in zip(clients, first, strict=True) if h is not None and h.startswith(b"HTTP/1.1 200")]
        failures += sum(not ok for ok in await asyncio.gather(*(use(r, w) for r, w in served)))
        waiting = [c for c, h in zip(clients, first, strict=True) if h is None]
        later = await asyncio.gather(*(head(r, 15) for r, _ in waiting))
        failures += sum(1 for h in later if h is None or not h.startswith(b"HTTP/1.1 200"))
        ready = [c for c, h in zip(waiting, later, strict=True) if h is not None and h.startswith(b"HTTP/1.1 200")]
        failures += sum(not ok for ok in await asyncio.gather(*(use(r, w) for r, w in ready)))
        return answered_first, len(waiting), failures

    answered_first, waited, failures = asyncio.run(scenario())
    assert failures == 0, f"{failures} of 150 clients failed ({answered_first} answered at once, {waited} waited)"
    assert waited > 0      # the budget ((256 - 64) / 2 = 96) held the rest back
    assert "Traceback" not in proxy.logs()


def test_a_half_closed_client_still_gets_the_whole_answer(start_proxy):
    """Closing both sides on the second EOF must not cut the first direction short: a server that
    answers only after the client's EOF (aiohttp does not, so a raw one) still gets its answer through."""
    import threading

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve_one() -> None:
        conn, _ = server.accept()
        with conn:
            received = b""
            while chunk := conn.recv(65536):
                received += chunk
            conn.sendall(b"received %d bytes;" % len(received) + b"z" * 200_000 + b";end")

    thread = threading.Thread(target=serve_one, daemon=True)
    thread.start()
    proxy = start_proxy(CONFIG, extra=["--resolve", f"halfclose.test:{port}:127.0.0.1"])
    raw = _http_connect(proxy.http_port, f"halfclose.test:{port}")
    with raw:
        raw.sendall(b"x" * 5000)
        raw.shutdown(socket.SHUT_WR)               # the client is done sending, still reading
        raw.settimeout(10)
        answer = b""
        while chunk := raw.recv(65536):
            answer += chunk
    thread.join(5)
    server.close()
    assert answer.startswith(b"received 5000 bytes;") and answer.endswith(b";end") and len(answer) == 200_024


def test_vanished_clients_give_back_their_fds(proxy, upstream):
    """Clients that reset the connection (SO_LINGER 0) in the middle of a request."""
    pid = proxy.process.pid
    target = f"tunnel.test:{upstream.plain_port}"
    before = settled_fds(pid, 0, timeout=0.5)
    for _ in range(100):
        raw = _http_connect(proxy.http_port, target)
        raw.sendall(f"GET /gone HTTP/1.1\r\nHost: {target}\r\n".encode())      # head never finished
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        raw.close()
    after = settled_fds(pid, before + 4)
    assert after <= before + 4, f"{after - before} fds left open after 100 reset tunnels"


BIG = """
[permissions.t.network.domains]
"*" = "allow"
[permissions.t.network.mitm.hooks.big]
host = "api.github.com"
methods = ["GET"]
path_prefixes = ["/big"]
action = ["strip"]
[permissions.t.network.mitm.actions.strip]
strip_request_headers = ["cookie"]
"""
# Through interception (the proxy reads, parses and writes the body) and through a byte tunnel.
BIG_HOSTS = {"intercepted": "api.github.com", "tunnelled": "tunnel.test"}
LOOPS = ["asyncio", pytest.param("uvloop", marks=pytest.mark.skipif(
    importlib.util.find_spec("uvloop") is None, reason="uvloop is not installed"))]
MIB = 1024 * 1024


@pytest.fixture(scope="module", params=LOOPS)
def big_proxy(request, start_proxy):
    return start_proxy(BIG, extra=["--loop", request.param])


def big_client(proxy, pki) -> httpx.Client:
    trust = ssl.create_default_context(cafile=str(proxy.bundle))
    trust.load_verify_locations(cafile=str(pki[0]))   # a tunnel: the client meets the upstream's certificate
    return httpx.Client(proxy=proxy.url, verify=trust, timeout=30)


def rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split("VmRSS:", 1)[1].split()[0])


@pytest.mark.parametrize("path", BIG_HOSTS)
def test_a_client_that_never_reads_a_big_answer_holds_no_more_than_a_few_buffers(big_proxy, upstream, pki, path):
    """Attack: ask for 256 MiB and read nothing past the head. Backpressure must reach the upstream
    (the proxy stops reading it) instead of the proxy holding the body for the client."""
    pid = big_proxy.process.pid
    url = f"https://{BIG_HOSTS[path]}:{upstream.tls_port}/big?mb="
    with big_client(big_proxy, pki) as client:
        warm = client.get(url + "8")   # connections, TLS read buffers and the allocator warmed up
        assert hashlib.sha256(warm.content).hexdigest() == big_digest(8)
        before = peak = rss_kib(pid)
        with client.stream("GET", url + "256") as response:
            assert response.status_code == 200 and response.headers["content-length"] == str(256 * MIB)
            for _ in range(15):   # 3 s: the upstream writes 256 MiB in about one when it is read
                time.sleep(0.2)
                peak = max(peak, rss_kib(pid))
    assert peak - before < 32 * 1024, f"the proxy grew by {(peak - before) // 1024} MiB for a client that never read"
    with big_client(big_proxy, pki) as client:   # and it still serves
        assert client.get(url + "1").status_code == 200


@pytest.mark.parametrize("path", BIG_HOSTS)
def test_a_slow_reader_gets_every_byte_of_a_big_answer_in_order(big_proxy, upstream, pki, path):
    """A reader that stops and starts: the proxy pauses and resumes the upstream over and over, and
    the body arrives whole, each byte once and in order (every 64 KiB of ``/big`` differs)."""
    url = f"https://{BIG_HOSTS[path]}:{upstream.tls_port}/big?mb=32"
    digest = hashlib.sha256()
    received = 0
    with big_client(big_proxy, pki) as client, client.stream("GET", url) as response:
        assert response.status_code == 200 and response.headers["content-length"] == str(32 * MIB)
        for chunk in response.iter_raw(16 * 1024):
            digest.update(chunk)
            before, received = received, received + len(chunk)
            if received // MIB != before // MIB:
                time.sleep(0.03)   # a pause every MiB: the proxy's buffers fill and the upstream is paused
    assert received == 32 * MIB
    assert digest.hexdigest() == big_digest(32)
