"""The upstream client alone: CPU µs per keep-alive HTTPS GET through ``Upstream.send`` (the lean
``h1_client``) and through aiohttp's ``ClientSession`` (what ``send`` used before), same process,
same loop, same upstream (bench/upstream_server.py in its own process).

Measured as this process's CPU time (``time.process_time``) per request, so a busy shared machine
moves the figure far less than requests/s. Alternates the clients and keeps each one's best round.

Run: python bench/upstream_client_bench.py [--requests 3000] [--rounds 5] [--loop asyncio|uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from yarl import URL

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from policyproxy.proxy.options import ProxyOptions  # noqa: E402
from policyproxy.proxy.resolver import Resolver  # noqa: E402
from policyproxy.proxy.upstream import SKIP_AUTO, Upstream  # noqa: E402
from tests.shell.upstream import make_test_pki  # noqa: E402

HEADERS = [("Host", "localhost"), ("User-Agent", "bench"), ("Accept", "*/*"), ("Accept-Encoding", "gzip")]


async def lean(upstream: Upstream, url: URL, n: int) -> None:
    for _ in range(n):
        response = await upstream.send("GET", url, HEADERS, None, None)
        await response.read()
        response.release()


async def session(upstream: Upstream, url: URL, n: int) -> None:
    assert upstream.session is not None
    for _ in range(n):
        response = await upstream.session.request("GET", url, headers=HEADERS, allow_redirects=False,
                                                  skip_auto_headers=SKIP_AUTO, ssl=upstream.tls)
        await response.read()
        response.release()


async def lean_big(upstream: Upstream, url: URL) -> int:
    response = await upstream.send("GET", url, HEADERS, None, None)
    total = 0
    async for chunk in response.chunks():
        total += len(chunk)
    response.release()
    return total


async def session_big(upstream: Upstream, url: URL) -> int:
    assert upstream.session is not None
    response = await upstream.session.request("GET", url, headers=HEADERS, allow_redirects=False,
                                              skip_auto_headers=SKIP_AUTO, ssl=upstream.tls)
    total = 0
    async for chunk in response.content.iter_any():
        total += len(chunk)
    response.release()
    return total


async def main(args: argparse.Namespace, port: int, ca: Path) -> None:
    resolver = Resolver({("localhost", port): ipaddress.ip_address("127.0.0.1")})
    upstream = Upstream(ProxyOptions(upstream_cas=(ca,)), resolver)
    await upstream.start()
    url = URL(f"https://localhost:{port}/small")
    await resolver.lookup("localhost", port)
    best = {"h1_client": float("inf"), "aiohttp ClientSession": float("inf")}
    for _ in range(args.rounds):
        for name, run in (("h1_client", lean), ("aiohttp ClientSession", session)):
            await run(upstream, url, 50)   # warm: the connection is open
            before = time.process_time()
            await run(upstream, url, args.requests)
            best[name] = min(best[name], (time.process_time() - before) / args.requests * 1e6)
    big_url = URL(f"https://localhost:{port}/big?mb=100")
    big = {"h1_client": float("inf"), "aiohttp ClientSession": float("inf")}
    for _ in range(args.big_rounds):
        for name, fetch in (("h1_client", lean_big), ("aiohttp ClientSession", session_big)):
            before = time.process_time()
            assert await fetch(upstream, big_url) == 100 * 1024 * 1024
            big[name] = min(big[name], (time.process_time() - before) * 1000)
    await upstream.close()
    for name, us in best.items():
        print(f"{name:24} {us:7.1f} CPU µs/request (client process, TLS included)")
    for name, ms in big.items():
        if args.big_rounds:
            print(f"{name:24} {ms:7.1f} CPU ms per 100 MB body read")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--big-rounds", type=int, default=3, help="100 MB bodies read per client (0: none)")
    parser.add_argument("--loop", default="asyncio", choices=("asyncio", "uvloop"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="policyproxy-client-bench-"))
    ca, cert, key = make_test_pki(work, ("localhost",))
    server = subprocess.Popen([sys.executable, str(ROOT / "bench" / "upstream_server.py"), str(cert), str(key)],
                              stdout=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())  # type: ignore[union-attr]
        if args.loop == "uvloop":
            import uvloop
            uvloop.run(main(args, port, ca))
        else:
            asyncio.run(main(args, port, ca))
    finally:
        server.terminate()
        server.wait(10)
