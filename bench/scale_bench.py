"""The mapping store's cost on a redaction endpoint, side by side in one run: the same proxy with
in-memory mappings and with a Redis ``mapping_store`` (redis-server on loopback), at concurrency 10.

Every request is an OpenAI Chat Completions turn through the intercepting proxy to the repo's fake
LLM (the test upstream) with a few KiB of history and a new e-mail address, so every request mints
a mapping and pays the Redis write (one pipelined round trip) before it goes out. Printed:
requests/s, p50 and p95 latency, p50 added latency (through the proxy minus direct), and the ratio
Redis/in-memory. Goal (issue 13): the Redis path within 15 %. The paths are measured in turn, several
rounds each, so the load of a shared machine weighs on all of them alike.

Run: python bench/scale_bench.py [--requests 1500] [--concurrency 10]
Needs redis-server (apt-get install redis-server).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from tests.shell.proxy_process import ProxyProcess  # noqa: E402
from tests.shell.scale_env import RedisServer  # noqa: E402
from tests.shell.upstream import NAMES, Upstream, make_test_pki  # noqa: E402

CONFIG = """
[permissions.b.network.domains]
"*" = "allow"
[permissions.b.network.redaction]
{store}
"""
HISTORY = [{"role": "user", "content": "Our deploy notes: ship on Fridays only after the canary is green. " * 20},
           {"role": "assistant", "content": "Understood, I will check the canary before shipping. " * 20}]


async def drive(url: str, proxy: str | None, verify: ssl.SSLContext, total: int, concurrency: int) -> list[float]:
    latencies: list[float] = []
    counter = iter(range(total))

    async def worker(client: httpx.AsyncClient) -> None:
        for i in counter:
            body = {"model": "gpt-x", "messages": [*HISTORY, {"role": "user",
                                                              "content": f"mail user{i}@bench.example now"}]}
            started = time.perf_counter()
            answer = await client.post(url, content=json.dumps(body), headers={"content-type": "application/json"})
            latencies.append(time.perf_counter() - started)
            if answer.status_code != 200 or f"user{i}@bench.example" not in answer.text:
                raise SystemExit(f"bad answer {answer.status_code}: {answer.text[:200]}")

    clients = [httpx.AsyncClient(proxy=proxy, verify=verify, timeout=30) for _ in range(concurrency)]
    try:
        # warm up: connections, TLS leaves, the placeholder key
        await asyncio.gather(*(c.post(url, content=json.dumps({"model": "m", "messages": HISTORY}),
                                      headers={"content-type": "application/json"}) for c in clients))
        started = time.perf_counter()
        await asyncio.gather(*(worker(c) for c in clients))
        latencies.append(-(time.perf_counter() - started))   # the wall time rides along, negated
    finally:
        for client in clients:
            await client.aclose()
    return latencies


def summary(label: str, samples: list[float], wall: float) -> dict[str, float | str]:
    samples.sort()
    return {"label": label, "rps": len(samples) / wall, "p50": statistics.median(samples) * 1000,
            "p95": samples[int(len(samples) * 0.95)] * 1000}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5, help="paths measured in turn, this many times each "
                        "(a shared machine's load then weighs on all paths alike)")
    args = parser.parse_args()
    if shutil.which("redis-server") is None:
        print("redis-server is not installed (apt-get install redis-server)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="scale-bench-"))
    (tmp / "pki").mkdir()
    ca, cert, key = make_test_pki(tmp / "pki")
    upstream = Upstream(cert, key)
    (tmp / "redis").mkdir()
    redis = RedisServer(tmp / "redis")
    pins = [f"{name}:{port}:127.0.0.1" for name in NAMES if name != "rebind.test"
            for port in (upstream.tls_port, upstream.plain_port)]
    url = f"https://api.openai.com:{upstream.tls_port}/v1/chat/completions"
    proxies = []
    try:
        # direct: the client resolves api.openai.com itself, so talk to 127.0.0.1 (the chain is checked)
        paths: list[tuple[str, str, str | None, ssl.SSLContext]] = [
            ("direct (no proxy)", url.replace("api.openai.com", "127.0.0.1"), None,
             _sni(ssl.create_default_context(cafile=str(ca))))]
        for label, store in (("in-memory mappings", ""), ("redis mapping_store", f'mapping_store = "{redis.url}"')):
            home = tmp / label.split()[0]
            proxy = ProxyProcess(home, CONFIG.format(store=store), ca, pins, None, ["--admin-listen", "off"])
            proxies.append(proxy)
            paths.append((label, url, proxy.url, ssl.create_default_context(cafile=str(proxy.bundle))))
        samples: dict[str, list[float]] = {label: [] for label, *_ in paths}
        walls = dict.fromkeys(samples, 0.0)
        for _ in range(args.rounds):
            for label, target, via, verify in paths:
                got = asyncio.run(drive(target, via, verify, args.requests // args.rounds, args.concurrency))
                walls[label] -= got.pop()
                samples[label] += got
        rows = [summary(label, samples[label], walls[label]) for label in samples]
    finally:
        for proxy in proxies:
            proxy.stop()
        redis.stop()
        upstream.close()
    base = float(rows[0]["p50"])
    print(f"{args.requests} Chat Completions turns (a new e-mail each) at c={args.concurrency}, loopback")
    print(f"{'path':24} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p50 added ms':>13}")
    for row in rows:
        added = float(row["p50"]) - base
        print(f"{row['label']:24} {row['rps']:8.0f} {row['p50']:8.2f} {row['p95']:8.2f} {added:13.2f}")
    memory, shared = rows[1], rows[2]
    rps = float(shared["rps"]) / float(memory["rps"])
    memory_added, shared_added = float(memory["p50"]) - base, float(shared["p50"]) - base
    latency = float(shared["p50"]) / float(memory["p50"])
    # The added latency can be within noise of zero (or below it) on loopback: then only the p50 ratio says anything.
    added = f", p50 added latency {shared_added / memory_added:.2f}x" if memory_added > 0.05 else \
        f" (p50 added {memory_added:+.2f} vs {shared_added:+.2f} ms: within noise of direct)"
    print(f"redis / in-memory: requests/s {rps:.2f}x, p50 {latency:.2f}x{added} (goal: within 15 %)")
    return 0


def _sni(context: ssl.SSLContext) -> ssl.SSLContext:
    """The test certificate names api.openai.com, not 127.0.0.1: check the chain, not the name."""
    context.check_hostname = False
    return context


if __name__ == "__main__":
    raise SystemExit(main())
