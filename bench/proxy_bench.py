"""policyproxy on the wire, side by side in one run: direct HTTPS, policyproxy tunnel, policyproxy
interception, and mitmproxy's mitmdump intercepting (the Python peer), all on loopback.

Run: python bench/proxy_bench.py [--mitmdump PATH] [--seconds 3] [--loop asyncio|uvloop]
Needs hey and curl; mitmdump is optional (pip install mitmproxy in any venv, pass its path).
Proxies are pinned to CPU 0, the upstream and the load tools to CPU 1 (when there are 2+ CPUs).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.shell.upstream import make_test_pki  # noqa: E402

PROFILE = """
[permissions.bench.network]
allow_local_binding = true
[permissions.bench.network.domains]
"*" = "allow"
[permissions.bench.network.mitm.hooks.bench]
host = "intercept.test"
methods = ["GET"]
path_prefixes = ["/"]
action = ["strip_cookies"]
[permissions.bench.network.mitm.actions.strip_cookies]
strip_request_headers = ["cookie"]
"""


def pinned(cpu: int) -> list[str]:
    return ["taskset", "-c", str(cpu)] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else []


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int | None) -> float:
    """user+sys CPU of ``pid`` so far (from /proc): the proxy's cost, steadier than wall-clock on a busy box."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def hey(url: str, proxy: str | None, concurrency: int, seconds: float, env: dict[str, str],
        keepalive: bool = True, pid: int | None = None) -> dict[str, float]:
    args = [*pinned(1), "hey", "-z", f"{seconds}s", "-c", str(concurrency)]
    if proxy:
        args += ["-x", proxy]
    if not keepalive:
        args.append("-disable-keepalive")
    before = cpu_seconds(pid)
    out = subprocess.run([*args, url], capture_output=True, text=True, env=env, timeout=seconds + 60).stdout
    spent = cpu_seconds(pid) - before
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"\[200\]\s+(\d+) responses", out).group(1))  # type: ignore[union-attr]
    p50 = float(re.search(r"50% in ([\d.]+) secs", out).group(1))  # type: ignore[union-attr]
    p99 = float(re.search(r"99% in ([\d.]+) secs", out).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Error distribution:(.*)", out, re.S)
    return {"rps": rps, "p50": p50 * 1000, "p99": p99 * 1000, "errors": 1.0 if errors else 0.0,
            "cpu_us": spent / max(total, 1) * 1e6}


def curl_metric(url: str, proxy: str | None, cafile: Path, metric: str, extra: list[str] | None = None) -> float:
    # HTTP/1.1 on every row (curl would pick h2 where the proxy offers it, and no other peer does):
    # bench/h2_bench.py puts the two side by side.
    args = ["curl", "-s", "--http1.1", "-o", "/dev/null", "--cacert", str(cafile), "-w", f"%{{{metric}}}",
            *(extra or [])]
    if proxy:
        args += ["-x", proxy]
    return float(subprocess.run([*args, url], capture_output=True, text=True, timeout=120).stdout)


async def hold_idle(proxy_port: int, target: str, count: int, tls_context: ssl.SSLContext | None) -> list:
    held = []
    for _ in range(count):
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
        writer.write(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")
        if tls_context is not None:
            await writer.start_tls(tls_context, server_hostname=target.split(":")[0])
        held.append(writer)
    return held


def idle_cost(pid: int, proxy_port: int, target: str, count: int, tls_context: ssl.SSLContext | None) -> float:
    """kB of proxy RSS per idle connection (tunnel, or intercepted after the TLS handshake)."""

    async def run() -> float:
        before = rss_kb(pid)
        held = await hold_idle(proxy_port, target, count, tls_context)
        await asyncio.sleep(1.0)
        after = rss_kb(pid)
        for writer in held:
            writer.close()
        return (after - before) / count

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mitmdump", default=shutil.which("mitmdump"))
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--idle", type=int, default=1000)
    parser.add_argument("--idle-only", action="store_true", help="skip the load runs")
    parser.add_argument("--loop", default="auto", choices=("auto", "asyncio", "uvloop"),
                        help="policyproxy's event loop (serve --loop)")
    parser.add_argument("--peers", default="direct,tunnel,intercept,mitmdump",
                        help="comma list of the rows to run (direct, tunnel, intercept, mitmdump)")
    parser.add_argument("--no-big", action="store_true", help="skip the 100 MB, SSE and new-connection runs")
    parser.add_argument("--big-only", action="store_true", help="only the 100 MB body (MB/s, proxy CPU)")
    parser.add_argument("--root", type=Path, default=ROOT,
                        help="the policyproxy checkout to run (another commit's, for a before/after)")
    args = parser.parse_args()
    wanted = set(args.peers.split(","))
    work = Path(tempfile.mkdtemp(prefix="policyproxy-bench-"))
    ca, cert, key = make_test_pki(work, ("localhost", "tunnel.test", "intercept.test"))
    procs: list[subprocess.Popen] = []
    try:
        upstream = subprocess.Popen([*pinned(1), sys.executable, str(ROOT / "bench" / "upstream_server.py"),
                                     str(cert), str(key)], stdout=subprocess.PIPE, text=True)
        procs.append(upstream)
        port = int(upstream.stdout.readline())  # type: ignore[union-attr]
        home = work / "home"
        (work / "bench.toml").write_text(PROFILE)
        pp_port = free_port()
        env = {**os.environ, "POLICYPROXY_HOME": str(home)}
        proxy = subprocess.Popen(
            [*pinned(0), sys.executable, "-m", "policyproxy", "serve", "--config", str(work / "bench.toml"),
             "--listen", f"127.0.0.1:{pp_port}", "--socks-listen", f"127.0.0.1:{free_port()}",
             "--upstream-ca", str(ca), "--resolve", f"tunnel.test:{port}:127.0.0.1",
             "--resolve", f"intercept.test:{port}:127.0.0.1", "--loop", args.loop, "--admin-listen", "127.0.0.1:0"],
            stdout=subprocess.DEVNULL, env=env, cwd=args.root)
        procs.append(proxy)
        wait_port(pp_port)
        bundle = work / "bundle.pem"
        while not (home / "ca" / "ca.pem").exists():
            time.sleep(0.05)
        parts = [ca.read_text(), (home / "ca" / "ca.pem").read_text()]
        peers = {
            "direct": (None, f"https://localhost:{port}"),
            "policyproxy tunnel": (f"http://127.0.0.1:{pp_port}", f"https://tunnel.test:{port}"),
            "policyproxy intercept": (f"http://127.0.0.1:{pp_port}", f"https://intercept.test:{port}"),
        }
        pids: dict[str, int | None] = {"policyproxy tunnel": proxy.pid, "policyproxy intercept": proxy.pid}
        mitm_pid = None
        if args.mitmdump and "mitmdump" in wanted:
            mitm_port = free_port()
            confdir = work / "mitm"
            mitm = subprocess.Popen([*pinned(0), args.mitmdump, "-q", "--listen-host", "127.0.0.1", "--listen-port",
                                     str(mitm_port), "--set", f"confdir={confdir}",
                                     "--set", f"ssl_verify_upstream_trusted_ca={ca}"], stdout=subprocess.DEVNULL)
            procs.append(mitm)
            wait_port(mitm_port)
            parts.append((confdir / "mitmproxy-ca-cert.pem").read_text())
            peers["mitmdump intercept"] = (f"http://127.0.0.1:{mitm_port}", f"https://localhost:{port}")
            mitm_pid = mitm.pid
            pids["mitmdump intercept"] = mitm_pid
        bundle.write_text("\n".join(parts))
        hey_env = {**os.environ, "SSL_CERT_FILE": str(bundle)}
        rows = {}
        for name, (via, base) in peers.items():
            if args.idle_only:
                break
            if name.rsplit(" ", 1)[-1] not in wanted and name not in wanted:
                continue
            row: dict[str, float] = {}
            if args.big_only:
                before = cpu_seconds(pids.get(name))
                row["MB/s 100MB"] = curl_metric(f"{base}/big?mb=100", via, bundle, "speed_download") / 1e6
                row["CPU ms 100MB"] = (cpu_seconds(pids.get(name)) - before) * 1000
                rows[name] = row
                continue
            for c in (1, 10):
                result = hey(f"{base}/small", via, c, args.seconds, hey_env, pid=pids.get(name))
                row[f"rps c={c}"] = result["rps"]
                row[f"CPU us/req c={c}"] = result["cpu_us"]
                row[f"p50 c={c}"] = result["p50"]
                row[f"p99 c={c}"] = result["p99"]
            if args.no_big:
                rows[name] = row
                continue
            row["new conn rps"] = hey(f"{base}/small", via, 10, args.seconds, hey_env, keepalive=False)["rps"]
            before = cpu_seconds(pids.get(name))
            row["MB/s 100MB"] = curl_metric(f"{base}/big?mb=100", via, bundle, "speed_download") / 1e6
            row["CPU ms 100MB"] = (cpu_seconds(pids.get(name)) - before) * 1000   # the proxy's (0: direct)
            row["SSE 1st byte ms"] = statistics.median(
                curl_metric(f"{base}/sse", via, bundle, "time_starttransfer", ["-N"]) * 1000 for _ in range(15))
            rows[name] = row
        direct = rows.get("direct", {})
        print(f"{'':24}" + "".join(f"{k:>16}" for k in next(iter(rows.values()), {})))
        for name, row in rows.items():
            print(f"{name:24}" + "".join(f"{v:16.2f}" for v in row.values()))
        print()
        for name, row in rows.items():
            if name == "direct" or not direct or args.no_big or args.big_only:
                continue
            print(f"{name}: rps c=1 {row['rps c=1'] / direct['rps c=1']:.0%} of direct, "
                  f"c=10 {row['rps c=10'] / direct['rps c=10']:.0%}; added p50 c=1 "
                  f"{row['p50 c=1'] - direct['p50 c=1']:.2f} ms; new connections "
                  f"{row['new conn rps'] / direct['new conn rps']:.0%} of direct; SSE first byte "
                  f"+{row['SSE 1st byte ms'] - direct['SSE 1st byte ms']:.2f} ms")
        if "mitmdump intercept" in rows and "policyproxy intercept" in rows:
            ratio = rows["policyproxy intercept"]["rps c=1"] / rows["mitmdump intercept"]["rps c=1"]
            ratio10 = rows["policyproxy intercept"]["rps c=10"] / rows["mitmdump intercept"]["rps c=10"]
            print(f"interception vs mitmdump: {ratio:.1f}x (c=1), {ratio10:.1f}x (c=10) requests/s")
        if args.idle <= 0:
            return
        trust = ssl.create_default_context(cafile=str(bundle))
        print(f"idle cost per connection, RSS delta over {args.idle} held connections:")
        tunnel_kb = idle_cost(proxy.pid, pp_port, f"tunnel.test:{port}", args.idle, None)
        print(f"idle policyproxy tunnel:    {tunnel_kb:.1f} kB")
        intercept_kb = idle_cost(proxy.pid, pp_port, f"intercept.test:{port}", args.idle, trust)
        print(f"idle policyproxy intercept: {intercept_kb:.1f} kB")
        if mitm_pid is not None:
            mitm_port = int(peers["mitmdump intercept"][0].rsplit(":", 1)[1])
            mitm_kb = idle_cost(mitm_pid, mitm_port, f"localhost:{port}", args.idle, trust)
            print(f"idle mitmdump intercept:    {mitm_kb:.1f} kB")
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
