"""Load and soak: 500 concurrent clients (hey), half keep-alive through interception and half through
byte tunnels with a fresh connection per request (so every tunnel opens and closes normally), RSS and
the proxy's open fd count sampled over the run, a SIGHUP reload in the middle; then a graceful stop
while slow streams are in flight.

Run: ulimit -n 1024; python bench/soak.py [--seconds 60] [--clients 500]   (needs hey)
"""

from __future__ import annotations

import argparse
import os
import re
import resource
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


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def proxy_errors(stderr: Path) -> str:
    """Tracebacks on the proxy's stderr so far (a file: a pipe nobody reads would stall the proxy)."""
    text = stderr.read_text(errors="replace")
    count = text.count("Traceback")
    return f"{count} tracebacks, first: {text[text.find('Traceback'):][:300]!r}" if count else ""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--settle", type=int, default=0,
                        help="seconds to wait after the load before counting fds again (upstream keep-alive "
                             "connections close after 60 s idle)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="policyproxy-soak-"))
    ca, cert, key = make_test_pki(work, ("localhost", "tunnel.test", "intercept.test"))
    print(f"fd limit (ulimit -n) of the proxy: {resource.getrlimit(resource.RLIMIT_NOFILE)[0]}")
    upstream = subprocess.Popen([sys.executable, str(ROOT / "bench" / "upstream_server.py"), str(cert), str(key)],
                                stdout=subprocess.PIPE, text=True)
    port = int(upstream.stdout.readline())  # type: ignore[union-attr]
    config = work / "soak.toml"
    config.write_text(PROFILE)
    pp_port = free_port()
    env = {**os.environ, "POLICYPROXY_HOME": str(work / "home")}
    proxy = subprocess.Popen([sys.executable, "-m", "policyproxy", "serve", "--config", str(config),
                              "--listen", f"127.0.0.1:{pp_port}", "--socks-listen", f"127.0.0.1:{free_port()}",
                              "--upstream-ca", str(ca), "--resolve", f"intercept.test:{port}:127.0.0.1",
                              "--resolve", f"tunnel.test:{port}:127.0.0.1"],
                             stdout=subprocess.DEVNULL, stderr=open(work / "proxy.stderr", "w"),  # noqa: SIM115
                             text=True, env=env, cwd=ROOT)
    try:
        wait_port(pp_port)
        while not (work / "home" / "ca" / "ca.pem").exists():
            time.sleep(0.05)
        bundle = work / "bundle.pem"
        bundle.write_text(ca.read_text() + (work / "home" / "ca" / "ca.pem").read_text())
        samples: list[tuple[float, int, int]] = []
        stop = threading.Event()

        def sample() -> None:
            start = time.monotonic()
            while not stop.is_set():
                samples.append((time.monotonic() - start, rss_kb(proxy.pid), fd_count(proxy.pid)))
                stop.wait(2)

        fds_before, rss_before = fd_count(proxy.pid), rss_kb(proxy.pid)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        half = max(1, args.clients // 2)
        hey_env = {**os.environ, "SSL_CERT_FILE": str(bundle)}
        loads = {
            "interception (keep-alive)": subprocess.Popen(
                ["hey", "-z", f"{args.seconds}s", "-c", str(args.clients - half), "-x", f"http://127.0.0.1:{pp_port}",
                 f"https://intercept.test:{port}/small"], stdout=subprocess.PIPE, text=True, env=hey_env),
            "byte tunnels (new connection per request)": subprocess.Popen(
                ["hey", "-z", f"{args.seconds}s", "-c", str(half), "-disable-keepalive", "-x",
                 f"http://127.0.0.1:{pp_port}", f"https://tunnel.test:{port}/small"],
                stdout=subprocess.PIPE, text=True, env=hey_env),
        }
        time.sleep(args.seconds / 2)
        proxy.send_signal(signal.SIGHUP)     # reload under load
        outputs = {name: load.communicate(timeout=args.seconds + 120)[0] for name, load in loads.items()}
        stop.set()
        print(f"{args.clients} clients x {args.seconds} s, SIGHUP at {args.seconds // 2} s:")
        for name, out in outputs.items():
            rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
            p99 = re.search(r"99% in ([\d.]+) secs", out)
            errors = re.search(r"Error distribution:(.*)", out, re.S)
            status = re.findall(r"\[(\d{3})\]\s+(\d+) responses", out)
            p99_ms = float(p99.group(1)) * 1000 if p99 else float("nan")
            print(f"  {name}: {rps.group(1) if rps else '?'} req/s, p99 {p99_ms:.1f} ms, "
                  f"status {dict(status)}, errors: {errors.group(1).strip() if errors else 'none'}")
        time.sleep(3)   # closes in flight finish
        fds_after, rss_after = fd_count(proxy.pid), rss_kb(proxy.pid)
        third = max(1, len(samples) // 3)
        early = sum(r for _, r, _ in samples[:third]) / third
        late = sum(r for _, r, _ in samples[-third:]) / third
        print("  RSS samples (MB):", " ".join(str(r // 1024) for _, r, _ in samples))
        print("  open fd samples: ", " ".join(str(f) for _, _, f in samples))
        print(f"  RSS: before {rss_before / 1024:.0f} MB, max {max(r for _, r, _ in samples) / 1024:.0f} MB, "
              f"first third {early / 1024:.0f} MB, last third {late / 1024:.0f} MB, after {rss_after / 1024:.0f} MB")
        print(f"  open fds: before {fds_before}, max {max(f for _, _, f in samples)}, after the load {fds_after}")
        if args.settle:
            time.sleep(args.settle)
            print(f"  open fds {args.settle} s after the load (idle upstream keep-alives closed): "
                  f"{fd_count(proxy.pid)}, RSS {rss_kb(proxy.pid) / 1024:.0f} MB")
        errors_logged = proxy_errors(work / "proxy.stderr")
        print(f"  proxy stderr: {errors_logged or 'no tracebacks'}")
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
