"""``serve``, ``ca``, ``env`` and ``run``: the commands that touch the network or the CA."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from policyproxy import __version__
from policyproxy.admin.state import format_address
from policyproxy.cli.clientenv import configured_listeners as _listeners
from policyproxy.cli.clientenv import env_lines, render
from policyproxy.cli.harden import make_undumpable
from policyproxy.cli.render import config_digest, decision_line, listener_auth, listener_auth_summary, settings_to_toml
from policyproxy.config import home_dir, load_settings
from policyproxy.config.schema import Settings
from policyproxy.errors import ConfigError, ConfigErrors
from policyproxy.grammar.hosts import IPAddress
from policyproxy.policy.compile import compile_policy
from policyproxy.safe_text import install_console
from policyproxy.secret_provider import SecretProvider
from policyproxy.telemetry.audit import AuditFile
from policyproxy.telemetry.event import RELOAD_EVENT, START_EVENT, STOP_EVENT, lifecycle_attributes, reload_attributes
from policyproxy.telemetry.otel import OtelError, build_emitter, collector_readiness, describe_destination
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
    secrets, _ = SecretProvider.for_settings(settings)   # a missing secret: ConfigErrors, before listening
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
                           socks_credentials=listener_auth(settings.network)[1],
                           proxy_credentials=listener_auth(settings.network)[0])

    try:
        events_to = describe_destination(settings.otel)
    except OtelError as exc:
        raise ServeError(str(exc)) from None
    sink = telemetry_sink(settings, args.audit_log)
    install_console()   # (files, 9.19) console log lines escaped: hosts and paths never drive the terminal
    make_undumpable()   # (files, 9.7) same-uid processes cannot read our environ (secrets) or ptrace us

    tune_process()

    async def main() -> None:
        from policyproxy.admin import AdminState, start_admin
        from policyproxy.admin.metrics import AdminMetrics

        app = ProxyServer(settings, policy, ca, options, secrets)
        app.sinks.append(sink)
        if getattr(args, "verbose", False):
            app.sinks.append(lambda decision, outcome: print(decision_line(decision, outcome.status, outcome.client),
                                                             file=sys.stderr, flush=True))
        admin_state = AdminState(__version__, lambda: app.settings, ca.cert_path.parent, ca.fingerprint,
                                 metrics=AdminMetrics(app.open_connections, sink.stats))
        app.sinks.append(admin_state.sink())   # /api/decisions ring and /metrics counters
        if settings.otel.metrics_exporter != "none":
            from policyproxy.telemetry.metrics import Metrics

            sink.metrics = Metrics(settings.otel, settings.profile, app.open_connections)
        await app.start()
        # --- admin listener: /healthz, /readyz, /metrics, /api/*, the page; AdminState follows reloads ---
        admin_state.bound(app.addresses)
        admin_state.checks.append(app.context.inspector.readiness)   # (scale) the shared mapping store
        collector = collector_readiness(settings.otel)
        if collector is not None:
            admin_state.checks.append(collector)   # the OTLP collector accepts connections
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
        loop.add_signal_handler(signal.SIGHUP, lambda: admin_state.reloaded(_reload(app, args, sink)))
        http_at = app.addresses["http"]
        socks_at = app.addresses.get("socks5")
        print(f"policyproxy {__version__}: profile {settings.profile!r} from {settings.config_file}", flush=True)
        print(f"HTTP proxy listening on http://{http_at[0]}:{http_at[1]}")
        if socks_at:
            print(f"SOCKS5 proxy listening on socks5://{socks_at[0]}:{socks_at[1]}")
        print(f"listener auth: {listener_auth_summary(settings.network)}")
        print(f"CA certificate: {ca.cert_path}")
        print(f"audit log: {sink.audit.path if sink.audit else 'off'}; OpenTelemetry: {events_to}")
        print(f"admin: {admin.url if admin else 'off'}")
        listeners = {kind: format_address(address) for kind, address in admin_state.listeners.items()}
        lifecycle = lifecycle_attributes(admin_state.digest(), settings.profile, __version__, listeners)
        sink.lifecycle(START_EVENT, lifecycle)
        bundle = trust_bundle(ca.cert_path.parent, ca.cert_pem)
        sys.stdout.write(render(env_lines(http_at, socks_at, ca.cert_path, bundle, settings, reveal=False), "sh"))
        sys.stdout.flush()
        await stop.wait()
        print("policyproxy: stopping, draining in-flight requests", file=sys.stderr, flush=True)
        if admin is not None:
            await admin.stop()
        await app.stop()
        sink.lifecycle(STOP_EVENT, {**lifecycle, "policyproxy.config.digest": admin_state.digest(),
                                    "network.policy.profile": app.settings.profile})
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


# Keys a reload cannot apply to a running proxy: the sockets it listens on, the telemetry and audit
# writers and the placeholder store are built once at start. Listener credentials are applied live.
RESTART_KEYS = ("network.enabled", "network.enable_socks5", "network.dangerously_allow_non_loopback_proxy",
                "network.redaction.mapping_store", "network.redaction.mapping_ttl_seconds", "audit", "otel")


def _flat(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _reloadable_view(settings: Settings) -> dict[str, Any]:
    doc = settings_to_toml(settings)
    return _flat({"network": doc["permissions"][settings.profile]["network"], "audit": doc.get("audit", {}),
                  "otel": doc.get("otel", {})})


def restart_keys(running: Settings, new: Settings, args: argparse.Namespace) -> list[str]:
    """The changed keys a reload cannot apply: each needs a restart to take effect."""
    before, after = _reloadable_view(running), _reloadable_view(new)
    changed = {key for key in before.keys() | after.keys() if before.get(key) != after.get(key)}
    keys = sorted(key for key in changed if any(key == p or key.startswith(p + ".") for p in RESTART_KEYS))
    for name, flag, default in (("proxy_url", "listen", 3128), ("socks_url", "socks_listen", 8081)):
        if getattr(args, flag, None):
            continue   # the command line chose the address; the config's does not apply
        if parse_address(getattr(running.network, name), default) != parse_address(getattr(new.network, name), default):
            keys.append(f"network.{name} (listen address)")
    return keys


def _reload(app: ProxyServer, args: argparse.Namespace, sink: TelemetrySink) -> bool:
    """SIGHUP: apply what can be applied live, name what needs a restart, and emit a reload event
    either way (a refused reload is what a SIEM must see: the running policy stays in force).
    Whether the new config was applied (the admin counts applied and refused reloads)."""
    running = app.settings
    try:
        settings = load_settings(args.config, args.requirements, args.profile)
        policy = compile_policy(settings)
        secrets, _ = SecretProvider.for_settings(settings, previous=app.secrets)
    except ConfigErrors as exc:
        print(f"policyproxy: reload refused, keeping the running policy ({config_digest(running)}):\n{exc}",
              file=sys.stderr, flush=True)
        sink.lifecycle(RELOAD_EVENT, reload_attributes("refused", config_digest(running), running.profile,
                                                       errors=exc.errors), warn=True)
        return False
    except (OSError, ValueError) as exc:   # unreadable file, bad encoding: refused the same way
        print(f"policyproxy: reload refused, keeping the running policy: {exc}", file=sys.stderr, flush=True)
        error = ConfigError(str(exc), file=args.config)
        sink.lifecycle(RELOAD_EVENT, reload_attributes("refused", config_digest(running), running.profile,
                                                       errors=[error]), warn=True)
        return False
    restart = restart_keys(running, settings, args)
    http_credentials, socks_credentials = listener_auth(settings.network)
    app.set_credentials(http_credentials, socks_credentials)
    app.reload(settings, policy, secrets)
    digest = config_digest(settings)
    print(f"policyproxy: reloaded profile {settings.profile!r} ({digest})", file=sys.stderr, flush=True)
    if restart:
        print(f"policyproxy: reload applied, but these changes need a restart to take effect: {', '.join(restart)}",
              file=sys.stderr, flush=True)
    sink.lifecycle(RELOAD_EVENT, reload_attributes("applied", digest, settings.profile, restart), warn=bool(restart))
    return True


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
