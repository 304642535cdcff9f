"""``serve``, ``ca``, ``env`` and ``run``: the commands that touch the network or the CA."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from policyproxy import __version__
from policyproxy.cli.clientenv import configured_listeners as _listeners
from policyproxy.cli.clientenv import env_lines, render
from policyproxy.cli.harden import make_undumpable
from policyproxy.config import home_dir, load_settings
from policyproxy.config.schema import Settings
from policyproxy.errors import ConfigErrors
from policyproxy.grammar.hosts import IPAddress
from policyproxy.policy.compile import compile_policy
from policyproxy.safe_text import install_console
from policyproxy.telemetry.audit import AuditFile
from policyproxy.telemetry.otel import build_emitter
from policyproxy.telemetry.sink import TelemetrySink
from policyproxy.tls.ca_store import CAError, load, load_or_create, trust_bundle

if TYPE_CHECKING:
    from policyproxy.proxy.server import ProxyServer


class ServeError(Exception):
    """A reason not to start; the message says what to change."""


def parse_address(text: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(text if "://" in text else f"//{text}")
    try:
        port = parts.port if parts.port is not None else default_port
    except ValueError:
        raise ServeError(f"invalid port in listen address {text!r}") from None
    host = parts.hostname or "127.0.0.1"
    return ("127.0.0.1" if host == "localhost" else host), port


def listener_credentials(url: str) -> tuple[str, str] | None:
    """Username and password a listener requires, from its URL (``scheme://user:pass@host:port``), if any."""
    parts = urlsplit(url)
    if parts.username is None:
        return None
    return unquote(parts.username), unquote(parts.password or "")


def check_loopback(address: tuple[str, int], allowed: bool, what: str) -> None:
    try:
        loopback = ipaddress.ip_address(address[0]).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not allowed:
        raise ServeError(f"{what} would listen on {address[0]}, which is not loopback; set "
                         "dangerously_allow_non_loopback_proxy = true in the profile to allow it")


def parse_pins(entries: list[str]) -> dict[tuple[str, int], IPAddress]:
    pins: dict[tuple[str, int], IPAddress] = {}
    for entry in entries:
        host, _, rest = entry.partition(":")
        port, _, address = rest.partition(":")
        try:
            pins[(host.lower(), int(port))] = ipaddress.ip_address(address.strip("[]"))
        except ValueError:
            raise ServeError(f"--resolve wants HOST:PORT:ADDR, got {entry!r}") from None
    return pins


def ca_dir(args: argparse.Namespace) -> Path:
    return Path(getattr(args, "ca_dir", None) or home_dir() / "ca")


def serve(args: argparse.Namespace) -> int:
    from policyproxy.proxy.options import ProxyOptions
    from policyproxy.proxy.server import ProxyServer, run_loop, tune_process

    settings = load_settings(args.config, args.requirements, args.profile)
    policy = compile_policy(settings)
    if not settings.network.enabled:
        raise ServeError(f"profile {settings.profile!r} sets network.enabled = false; nothing to serve")
    http, socks = _listeners(args, settings)
    allow_remote = settings.network.dangerously_allow_non_loopback_proxy
    check_loopback(http, allow_remote, "the HTTP proxy")
    if socks is not None:
        check_loopback(socks, allow_remote, "the SOCKS5 proxy")
    ca = load_or_create(ca_dir(args))
    options = ProxyOptions(listen=http, socks_listen=socks, upstream_cas=tuple(args.upstream_ca),
                           pins=parse_pins(args.resolve),
                           socks_credentials=listener_credentials(settings.network.socks_url),
                           proxy_credentials=listener_credentials(settings.network.proxy_url))

    sink = telemetry_sink(settings, args.audit_log)
    install_console()   # (files, 9.19) console log lines escaped: hosts and paths never drive the terminal
    make_undumpable()   # (files, 9.7) same-uid processes cannot read our environ (secrets) or ptrace us

    tune_process()

    async def main() -> None:
        app = ProxyServer(settings, policy, ca, options)
        app.sinks.append(sink)
        if settings.otel.metrics_exporter != "none":
            from policyproxy.telemetry.metrics import Metrics

            sink.metrics = Metrics(settings.otel, settings.profile, app.open_connections)
        await app.start()
        # --- admin listener (files): /healthz, /readyz, /api/status; AdminState follows reloads ---
        from policyproxy.admin import AdminState, start_admin

        admin_state = AdminState(__version__, lambda: app.settings, ca.cert_path.parent, ca.fingerprint)
        admin_state.bound(app.addresses)
        try:
            admin = await start_admin(settings.admin, getattr(args, "admin_listen", None), admin_state)
        except BaseException:
            await app.stop()
            raise
        # --- end admin listener ---
        # Signals first: a supervisor may stop the proxy as soon as it has announced itself.
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: _reload(app, args))
        http_at = app.addresses["http"]
        socks_at = app.addresses.get("socks5")
        print(f"policyproxy {__version__}: profile {settings.profile!r} from {settings.config_file}", flush=True)
        print(f"HTTP proxy listening on http://{http_at[0]}:{http_at[1]}")
        if socks_at:
            print(f"SOCKS5 proxy listening on socks5://{socks_at[0]}:{socks_at[1]}")
        print(f"CA certificate: {ca.cert_path}")
        print(f"audit log: {sink.audit.path if sink.audit else 'off'}; OpenTelemetry: "
              f"{'on' if sink.otel else 'off'}")
        print(f"admin: {admin.url if admin else 'off'}")
        bundle = trust_bundle(ca.cert_path.parent, ca.cert_pem)
        sys.stdout.write(render(env_lines(http_at, socks_at, ca.cert_path, bundle, settings, reveal=False), "sh"))
        sys.stdout.flush()
        await stop.wait()
        print("policyproxy: stopping, draining in-flight requests", file=sys.stderr, flush=True)
        if admin is not None:
            await admin.stop()
        await app.stop()
        sink.close(timeout=3.0)

    run_loop(main(), getattr(args, "loop", "auto"))
    return 0


def telemetry_sink(settings: Settings, audit_log: Path | None) -> TelemetrySink:
    """The audit log (unless turned off) and the OTLP exporter (when configured) behind one sink."""
    audit = None
    if audit_log is not None or settings.audit.enabled:
        path = audit_log or Path(settings.audit.path or home_dir() / "audit.jsonl").expanduser()
        audit = AuditFile(path, settings.audit.max_bytes, settings.audit.backups)
    otel = build_emitter(settings.otel, settings.profile, queue_size=settings.otel.max_queue_size)
    return TelemetrySink(audit, otel)


def _reload(app: ProxyServer, args: argparse.Namespace) -> None:
    try:
        settings = load_settings(args.config, args.requirements, args.profile)
        policy = compile_policy(settings)
    except ConfigErrors as exc:
        print(f"policyproxy: reload refused, keeping the running policy:\n{exc}", file=sys.stderr, flush=True)
        return
    app.reload(settings, policy)
    print(f"policyproxy: reloaded profile {settings.profile!r}", file=sys.stderr, flush=True)


def ca_command(args: argparse.Namespace) -> int:
    directory = ca_dir(args)
    if args.ca_command == "init":
        existed = (directory / "ca.pem").exists()
        ca = load_or_create(directory)
        print(f"{'CA already exists' if existed else 'created CA'}: {ca.cert_path}")
    elif args.ca_command == "path":
        print(load(directory).cert_path)
    else:
        sys.stdout.write(load(directory).cert_pem.decode())
    return 0


__all__ = ["CAError", "ServeError", "ca_command", "serve"]
