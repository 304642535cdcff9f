"""Attack class: the admin listener as a way to starve the proxy. It shares the proxy's descriptors,
and aiohttp times nothing while a head arrives: 300 clients that open an admin connection and drip
half a request line used to hold every descriptor under ``ulimit -n 256``, so the proxy stopped
serving (curl timed out) and logged an accept() traceback per attempt, for as long as the clients
liked. The admin listener now keeps at most 32 connections and closes each after 10 s."""

from __future__ import annotations

import os
import re
import resource
import socket
import subprocess
import time

import pytest

CONFIG = """
[permissions.t.network]
[permissions.t.network.domains]
"upstream.test" = "allow"
"""


@pytest.fixture
def proxy(start_proxy):
    return start_proxy(CONFIG, extra=["--admin-listen", "127.0.0.1:0"])


def admin_port(proxy) -> int:
    for line in proxy.output:
        match = re.fullmatch(r"admin: http://127\.0\.0\.1:(\d+)/", line.strip())
        if match:
            return int(match.group(1))
    raise AssertionError(proxy.output)


def drip(port: int, count: int) -> list[socket.socket]:
    held = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), 2)
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")   # and never the rest
        held.append(sock)
    return held


def test_dripping_admin_clients_do_not_starve_the_proxy(proxy, upstream):
    resource.prlimit(proxy.process.pid, resource.RLIMIT_NOFILE, (256, 256))
    held = drip(admin_port(proxy), 300)
    try:
        time.sleep(0.5)
        assert len(os.listdir(f"/proc/{proxy.process.pid}/fd")) < 100
        result = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5",
                                 "-x", proxy.url, f"http://upstream.test:{upstream.plain_port}/x"],
                                capture_output=True, text=True, timeout=10)
        assert result.stdout == "200", result.stderr
    finally:
        for sock in held:
            sock.close()
    assert "Traceback" not in proxy.logs()


def test_a_dripping_admin_client_is_closed_within_its_lifetime(proxy):
    (sock,) = drip(admin_port(proxy), 1)
    sock.settimeout(15)
    started = time.monotonic()
    assert sock.recv(1024) == b""   # closed by the proxy, not answered
    assert time.monotonic() - started < 12
    sock.close()
