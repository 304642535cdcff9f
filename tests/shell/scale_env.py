"""Real components for the scale tests: ``redis-server`` and ``haproxy`` from Debian on loopback."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


class RedisServer:
    """``redis-server`` on a free loopback port, with an append-only file so a restart keeps its data
    (as a production Redis would; a SIGTERM shutdown syncs it); ``stop``/``start`` simulate an outage."""

    def __init__(self, directory: Path, password: str | None = None, tls: tuple[Path, Path, Path] | None = None,
                 user: tuple[str, str] | None = None) -> None:
        self.binary = shutil.which("redis-server")
        if self.binary is None:
            raise RuntimeError("redis-server is not installed")
        self.directory = directory
        self.password = password
        self.tls = tls          # (ca, cert, key): TLS only, on ``port``
        self.user = user        # an ACL user (name, password) besides the default one
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        scheme = "rediss" if self.tls else "redis"
        user = f"{self.user[0]}@" if self.user else ""
        return f"{scheme}://{user}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        ports = ["--port", str(self.port)]
        if self.tls:
            ca, cert, key = self.tls
            ports = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(cert), "--tls-key-file",
                     str(key), "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no"]
        args = [str(self.binary), *ports, "--bind", "127.0.0.1", "--dir", str(self.directory),
                "--save", "", "--appendonly", "yes", "--appendfsync", "everysec", "--daemonize", "no",
                "--logfile", str(self.directory / "redis.log")]
        if self.password:
            args += ["--requirepass", self.password]
        if self.user:
            args += ["--user", self.user[0], "on", f">{self.user[1]}", "~*", "&*", "+@all"]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_port(self.port)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None

    def client(self):  # type: ignore[no-untyped-def]
        import redis

        if self.user:
            return redis.Redis(host="127.0.0.1", port=self.port, username=self.user[0], password=self.user[1],
                               ssl=bool(self.tls), ssl_ca_certs=str(self.tls[0]) if self.tls else None)
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, ssl=bool(self.tls),
                           ssl_ca_certs=str(self.tls[0]) if self.tls else None)


class HAProxy:
    """Debian's haproxy in TCP mode, round robin over ``backends``, health-checked every 200 ms."""

    def __init__(self, directory: Path, backends: list[int]) -> None:
        binary = shutil.which("haproxy")
        if binary is None:
            raise RuntimeError("haproxy is not installed")
        self.port = free_port()
        servers = "\n".join(f"  server s{i} 127.0.0.1:{port} check inter 200ms fall 1 rise 2"
                            for i, port in enumerate(backends))
        config = directory / "haproxy.cfg"
        config.write_text(f"""global
  maxconn 512
defaults
  mode tcp
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  retries 3
  option redispatch
frontend entry
  bind 127.0.0.1:{self.port}
  default_backend proxies
backend proxies
  balance roundrobin
{servers}
""")
        self.process = subprocess.Popen([binary, "-db", "-f", str(config)], stdout=subprocess.DEVNULL,
                                        stderr=open(directory / "haproxy.log", "w"))  # noqa: SIM115
        _wait_port(self.port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
