"""``policyproxy serve`` as a child process, the way users run it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

_LISTEN = re.compile(r"(HTTP|SOCKS5) proxy listening on \w+://([\d.]+):(\d+)")


class ProxyProcess:
    def __init__(self, home: Path, config: str, upstream_ca: Path | None, pins: list[str],
                 env: dict[str, str] | None = None, extra: list[str] | None = None) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.home = home
        self.config = home / "config.toml"
        self.config.write_text(textwrap.dedent(config))
        args = [sys.executable, "-m", "policyproxy", "serve", "--config", str(self.config),
                "--listen", "127.0.0.1:0", "--socks-listen", "127.0.0.1:0"]
        if upstream_ca is not None:
            args += ["--upstream-ca", str(upstream_ca)]
        for pin in pins:
            args += ["--resolve", pin]
        args += extra or []
        self.stderr_path = home / "stderr.log"
        self.stderr = open(self.stderr_path, "w")  # noqa: SIM115 - kept open for the process's life
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.stderr, text=True,
                                        env={**os.environ, "POLICYPROXY_HOME": str(home), **(env or {})})
        self.http_port = self.socks_port = 0
        self.output: list[str] = []
        deadline = time.monotonic() + 20
        while not (self.http_port and self.socks_port and self.output[-1].startswith("export NODE_EXTRA_CA_CERTS")):
            line = self.process.stdout.readline() if self.process.stdout else ""
            if not line:
                raise RuntimeError(f"proxy exited: {self.stderr_path.read_text()}")
            self.output.append(line)
            match = _LISTEN.search(line)
            if match:
                port = int(match.group(3))
                if match.group(1) == "HTTP":
                    self.http_port = port
                else:
                    self.socks_port = port
            if time.monotonic() > deadline:
                raise RuntimeError("proxy did not start")
        self.ca = home / "ca" / "ca.pem"
        self.bundle = home / "ca" / "bundle.pem"
        while not self.bundle.exists() and time.monotonic() < deadline:
            time.sleep(0.02)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def signal(self, sig: int) -> None:
        self.process.send_signal(sig)

    def logs(self) -> str:
        return self.stderr_path.read_text()

    def signal_stop(self) -> None:
        """SIGTERM without waiting (many proxies are stopped at once, then waited for)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
        if self.process.stdout:
            self.process.stdout.close()
        self.stderr.close()
