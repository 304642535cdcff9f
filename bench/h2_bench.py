"""HTTP/2 vs HTTP/1.1 keep-alive through policyproxy's interception, side by side.

Run: python bench/h2_bench.py [--seconds 5] [--concurrency 1,10,50] [--loop asyncio|uvloop]

The same httpx client drives both: HTTP/2 multiplexes every request on one connection, HTTP/1.1
keeps up to ``concurrency`` connections alive. The upstream is bench/upstream_server.py (HTTP/1.1), so
this measures the client side of the proxy (its h2 server and the pipeline per stream). Figures:
requests/s, p50/p99 latency, and the proxy's own CPU per request (user+sys from /proc, steadier than
wall-clock on a shared box). The proxy is pinned to CPU 0, the upstream and this client to CPU 1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.proxy_bench import PROFILE, cpu_seconds, free_port, pinned, wait_port  # noqa: E402
from tests.shell.upstream import make_test_pki  # noqa: E402


async def load(url: str, proxy: str, trust: ssl.SSLContext, http2: bool, concurrency: int,
               seconds: float) -> tuple[int, list[float], str]:
    """``concurrency`` workers asking ``url`` in a loop for ``seconds``; (count, latencies in ms, version)."""
    limits = httpx.Limits(max_connections=1 if http2 else concurrency, max_keepalive_connections=concurrency)
    latencies: list[float] = []
    versions: set[str] = set()
    async with httpx.AsyncClient(http2=http2, http1=not http2, proxy=proxy, verify=trust, limits=limits,
                                 timeout=30) as client:
        await client.get(url)   # the connection (and the proxy's leaf) is up before the clock starts
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                answer = await client.get(url)
                latencies.append((time.perf_counter() - started) * 1000)
                versions.add(answer.http_version)
                if answer.status_code != 200:
                    raise RuntimeError(f"{url}: {answer.status_code}")

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(latencies), latencies, ",".join(sorted(versions))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", default="1,10,50")
    parser.add_argument("--loop", default="auto", choices=("auto", "asyncio", "uvloop"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="policyproxy-h2bench-"))
    ca, cert, key = make_test_pki(work, ("localhost", "intercept.test"))
    procs: list[subprocess.Popen[str]] = []
    if pinned(1):
        os.sched_setaffinity(0, {1})
    try:
        upstream = subprocess.Popen([*pinned(1), sys.executable, str(ROOT / "bench" / "upstream_server.py"),
                                     str(cert), str(key)], stdout=subprocess.PIPE, text=True)
        procs.append(upstream)
        port = int(upstream.stdout.readline())  # type: ignore[union-attr]
        home = work / "home"
        (work / "bench.toml").write_text(PROFILE)
        proxy_port = free_port()
        proxy = subprocess.Popen(
            [*pinned(0), sys.executable, "-m", "policyproxy", "serve", "--config", str(work / "bench.toml"),
             "--listen", f"127.0.0.1:{proxy_port}", "--socks-listen", f"127.0.0.1:{free_port()}",
             "--upstream-ca", str(ca), "--resolve", f"intercept.test:{port}:127.0.0.1", "--loop", args.loop,
             "--admin-listen", "127.0.0.1:0"],
            stdout=subprocess.DEVNULL, env={**os.environ, "POLICYPROXY_HOME": str(home)}, cwd=ROOT, text=True)
        procs.append(proxy)
        wait_port(proxy_port)
        while not (home / "ca" / "ca.pem").exists():
            time.sleep(0.05)
        trust = ssl.create_default_context(cafile=str(home / "ca" / "ca.pem"))
        url = f"https://intercept.test:{port}/small"
        via = f"http://127.0.0.1:{proxy_port}"
        print(f"{'':18}{'rps':>10}{'p50 ms':>10}{'p99 ms':>10}{'proxy CPU us/req':>18}  version")
        results: dict[tuple[str, int], float] = {}
        for concurrency in (int(c) for c in args.concurrency.split(",")):
            for http2 in (False, True):
                before = cpu_seconds(proxy.pid)
                started = time.perf_counter()
                count, latencies, versions = asyncio.run(load(url, via, trust, http2, concurrency, args.seconds))
                elapsed = time.perf_counter() - started
                cpu = cpu_seconds(proxy.pid) - before
                latencies.sort()
                name = f"{'h2' if http2 else 'h1 keep-alive'} c={concurrency}"
                rps = count / elapsed
                results[("h2" if http2 else "h1", concurrency)] = rps
                print(f"{name:18}{rps:10.0f}{statistics.median(latencies):10.2f}"
                      f"{latencies[int(len(latencies) * 0.99) - 1]:10.2f}{cpu / count * 1e6:18.0f}  {versions}")
        print()
        for (kind, concurrency), rps in results.items():
            if kind == "h2":
                print(f"c={concurrency}: h2 {rps / results[('h1', concurrency)]:.0%} of h1 keep-alive requests/s")
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)


if __name__ == "__main__":
    main()
