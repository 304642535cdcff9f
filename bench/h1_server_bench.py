"""The client side's HTTP/1.1 server alone: CPU per keep-alive request of ``h1_server`` against aiohttp's
``web.Server`` (``http_server.TimedServer``, what served client connections before), side by side.

Each server runs in its own process on plain loopback HTTP with a handler that answers a 2-byte body
through the ``exchange.Exchange`` seam, as ``pipeline.forward`` does (``reply``); ``hey`` drives it
with keep-alive GETs. The figure is the server process's CPU (from /proc) per request.

Run: python bench/h1_server_bench.py [--seconds 3] [--loop asyncio|uvloop]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def serve(kind: str, loop_kind: str, port: int) -> None:
    from aiohttp import web

    from policyproxy.proxy.context import HeadGate
    from policyproxy.proxy.exchange import AiohttpExchange
    from policyproxy.proxy.h1_server import H1Exchange, H1Server
    from policyproxy.proxy.http_server import TimedServer

    headers = [("Content-Type", "text/plain"), ("Date", "Wed, 02 Dec 2026 12:00:00 GMT")]

    async def h1(exchange: H1Exchange) -> None:
        await exchange.reply(200, "OK", headers, b"ok")

    async def aio(request: web.BaseRequest) -> web.StreamResponse:
        exchange = AiohttpExchange(request)
        await exchange.reply(200, "OK", headers, b"ok")
        assert exchange.response is not None
        return exchange.response

    async def main() -> None:
        gate = HeadGate(512)
        loop = asyncio.get_running_loop()
        if kind == "h1_server":
            factory = lambda: H1Server(h1, gate, 15, 120, 64 * 1024)  # noqa: E731
        else:
            server = TimedServer(aio, gate, 15, 120)
            factory = server
        await loop.create_server(factory, "127.0.0.1", port)
        print("ready", flush=True)
        await asyncio.Event().wait()

    if loop_kind == "uvloop":
        import uvloop
        uvloop.run(main())
    else:
        asyncio.run(main())


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(kind: str, loop_kind: str, seconds: float, concurrency: int) -> tuple[float, float]:
    port = free_port()
    taskset = ["taskset", "-c", "0"] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else []
    proc = subprocess.Popen([*taskset, sys.executable, __file__, "--serve", kind, "--loop", loop_kind,
                             "--port", str(port)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        hey_taskset = ["taskset", "-c", "1"] if taskset else []
        before = cpu_seconds(proc.pid)
        out = subprocess.run([*hey_taskset, "hey", "-z", f"{seconds}s", "-c", str(concurrency),
                              f"http://127.0.0.1:{port}/"], capture_output=True, text=True, check=True).stdout
        used = cpu_seconds(proc.pid) - before
        total = int(re.search(r"\[200\]\s+(\d+) responses", out).group(1))  # type: ignore[union-attr]
        rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
        return rps, used / total * 1e6
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--loop", default="asyncio", choices=("asyncio", "uvloop"))
    parser.add_argument("--serve", choices=("h1_server", "aiohttp"))
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.loop, args.port)
        return
    print(f"{'':12}{'rps c=1':>12}{'CPU us/req':>12}{'rps c=10':>12}{'CPU us/req':>12}   ({args.loop})")
    for kind in ("aiohttp", "h1_server"):
        cells = []
        for concurrency in (1, 10):
            rps, cpu = run(kind, args.loop, args.seconds, concurrency)
            cells += [f"{rps:12.0f}", f"{cpu:12.1f}"]
        print(f"{kind:12}" + "".join(cells))
        time.sleep(0.2)


if __name__ == "__main__":
    main()
