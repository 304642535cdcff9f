"""Load and soak: 500 concurrent keep-alive clients through interception (hey), RSS sampled over the
run, a SIGHUP reload in the middle; then a graceful stop while slow streams are in flight.

Run: python bench/soak.py [--seconds 60] [--clients 500]   (needs hey)
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.proxy_bench import PROFILE, free_port, rss_kb, wait_port  # noqa: E402
from tests.shell.upstream import make_test_pki  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--clients", type=int, default=500)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="policyproxy-soak-"))
    ca, cert, key = make_test_pki(work, ("localhost", "tunnel.test", "intercept.test"))
    upstream = subprocess.Popen([sys.executable, str(ROOT / "bench" / "upstream_server.py"), str(cert), str(key)],
                                stdout=subprocess.PIPE, text=True)
    port = int(upstream.stdout.readline())  # type: ignore[union-attr]
    config = work / "soak.toml"
    config.write_text(PROFILE)
    pp_port = free_port()
    env = {**os.environ, "POLICYPROXY_HOME": str(work / "home")}
    proxy = subprocess.Popen([sys.executable, "-m", "policyproxy", "serve", "--config", str(config),
                              "--listen", f"127.0.0.1:{pp_port}", "--socks-listen", f"127.0.0.1:{free_port()}",
                              "--upstream-ca", str(ca), "--resolve", f"intercept.test:{port}:127.0.0.1"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        wait_port(pp_port)
        while not (work / "home" / "ca" / "ca.pem").exists():
            time.sleep(0.05)
        bundle = work / "bundle.pem"
        bundle.write_text(ca.read_text() + (work / "home" / "ca" / "ca.pem").read_text())
        samples: list[tuple[float, int]] = []
        stop = threading.Event()

        def sample() -> None:
            start = time.monotonic()
            while not stop.is_set():
                samples.append((time.monotonic() - start, rss_kb(proxy.pid)))
                stop.wait(2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        load = subprocess.Popen(["hey", "-z", f"{args.seconds}s", "-c", str(args.clients), "-x",
                                 f"http://127.0.0.1:{pp_port}", f"https://intercept.test:{port}/small"],
                                stdout=subprocess.PIPE, text=True, env={**os.environ, "SSL_CERT_FILE": str(bundle)})
        time.sleep(args.seconds / 2)
        proxy.send_signal(signal.SIGHUP)     # reload under load
        out, _ = load.communicate(timeout=args.seconds + 120)
        stop.set()
        rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
        p99 = re.search(r"99% in ([\d.]+) secs", out)
        errors = re.search(r"Error distribution:(.*)", out, re.S)
        status = re.findall(r"\[(\d{3})\]\s+(\d+) responses", out)
        print(f"{args.clients} clients x {args.seconds} s through interception, SIGHUP at {args.seconds // 2} s:")
        p99_ms = float(p99.group(1)) * 1000 if p99 else float("nan")
        print(f"  {rps.group(1) if rps else '?'} req/s, p99 {p99_ms:.1f} ms, "
              f"status {dict(status)}, errors: {errors.group(1).strip() if errors else 'none'}")
        third = max(1, len(samples) // 3)
        early = sum(r for _, r in samples[:third]) / third
        late = sum(r for _, r in samples[-third:]) / third
        print("  RSS samples (MB):", " ".join(str(r // 1024) for _, r in samples))
        print(f"  RSS: start {samples[0][1] / 1024:.0f} MB, max {max(r for _, r in samples) / 1024:.0f} MB, "
              f"first third {early / 1024:.0f} MB, last third {late / 1024:.0f} MB (flat if about equal)")
        # graceful stop with slow streams in flight
        trust = ssl.create_default_context(cafile=str(bundle))
        handler = urllib.request.ProxyHandler({"https": f"http://127.0.0.1:{pp_port}"})
        opener = urllib.request.build_opener(handler, urllib.request.HTTPSHandler(context=trust))
        results: list[str] = []

        def stream() -> None:
            try:
                body = opener.open(f"https://intercept.test:{port}/sse", timeout=20).read()
                results.append("ok" if body.count(b"data:") == 2 else "short")
            except Exception as exc:
                results.append(type(exc).__name__)

        threads = [threading.Thread(target=stream) for _ in range(50)]
        for t in threads:
            t.start()
        time.sleep(0.02)
        proxy.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(30)
        print(f"  graceful stop with 50 streams in flight: {results.count('ok')} completed, "
              f"{len(results) - results.count('ok')} failed ({set(results) - {'ok'} or 'none'}); "
              f"proxy exit {proxy.wait(30)}")
    finally:
        for process in (proxy, upstream):
            if process.poll() is None:
                process.terminate()
                process.wait(10)


if __name__ == "__main__":
    main()
