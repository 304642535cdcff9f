"""``policyproxy run -- CMD``: CMD through a proxy that enforces THIS config, without the secrets.

A proxy already listening on the configured port is reused only when its admin ``/api/status``
proves the same config digest and the listeners ``run`` would export; anything else (another
profile, an older config, no admin listener, a stranger on the port) gets a private proxy on free
ports, and ``run`` says so. CMD's environment is the caller's minus every variable the proxy injects
as a secret (and any other variable holding the same value), so the agent cannot read the tokens the
proxy exists to keep from it; the proxy that ``run`` starts keeps them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from policyproxy.admin.server import AdminError, resolve_token
from policyproxy.admin.state import format_address
from policyproxy.cli.clientenv import IGNORES_PROXY_VARIABLES, configured_listeners, env_lines, show_host
from policyproxy.cli.harden import make_undumpable
from policyproxy.cli.render import config_digest
from policyproxy.cli.serve import ServeError, ca_dir
from policyproxy.config import load_settings
from policyproxy.config.admin import parse_listen
from policyproxy.config.schema import Settings
from policyproxy.config.source import read_secret_file
from policyproxy.tls.ca_store import load_or_create, trust_bundle

Address = tuple[str, int]
# Anchored at the line start: a profile name or config path on the banner's first line cannot pose as one.
_LISTENING = re.compile(r"(HTTP|SOCKS5) proxy listening on \w+://\[?([^\s\]]+?)\]?:(\d+)\s*$")
_START_TIMEOUT = 20.0


def withheld_variables(settings: Settings, environ: Mapping[str, str]) -> list[str]:
    """Names to remove from CMD's environment: every ``secret_env_var`` of an inject action (profile and
    requirements alike), the admin token's variable, the mapping store's password and key variables, and
    any other variable whose value is one of those secrets or a ``secret_file``'s content (the same token
    under another name)."""
    names: set[str] = set()
    values: set[str] = set()
    refs = [inject.secret for action in settings.network.actions for inject in action.inject_request_headers]
    if settings.admin.token is not None:
        refs.append(settings.admin.token)
    redaction = settings.network.redaction
    if redaction is not None:   # the Redis password and the mapping key stay with the proxy
        refs += [ref for ref in (redaction.mapping_store_password, redaction.mapping_key) if ref is not None]
    for ref in refs:
        if ref.env_var is not None:
            names.add(ref.env_var)
            value = environ.get(ref.env_var, "").strip()
        elif ref.file is None:
            continue   # secret_command: only the proxy runs it; CMD never sees its output
        else:
            try:
                value = read_secret_file(str(ref.file))
            except OSError:
                value = ""
        if len(value) >= 8:   # a short value would also match unrelated variables
            values.add(value)
    names |= {name for name, value in environ.items() if value.strip() in values}
    return sorted(name for name in names if name in environ)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


def _status(admin: Address, token: str | None) -> dict[str, object] | None:
    """The admin status at ``admin``, or None when nothing there answers it as a policyproxy would."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(f"http://{format_address(admin)}/api/status", headers=headers)
    # Never through HTTP_PROXY, never following a redirect (urllib would carry the token to its target).
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())
    try:
        with opener.open(request, timeout=2) as response:
            body = json.loads(response.read(1024 * 1024))
    except (OSError, ValueError, urllib.error.URLError):
        return None
    return body if isinstance(body, dict) else None


def reusable(settings: Settings, http: Address, socks: Address | None, ca_sha256: str) -> tuple[bool, str]:
    """Whether the proxy listening on ``http`` proves it serves ``settings`` with the CA the command will
    trust (``ca_sha256``); the reason when it does not."""
    if settings.admin.listen == "off":
        return False, "[admin] listen is off, so it cannot prove which config it serves"
    admin = parse_listen(settings.admin.listen)
    if admin is None or admin[1] == 0:
        return False, f"[admin] listen = {settings.admin.listen!r} names no fixed address to ask"
    try:
        token = resolve_token(settings.admin)
    except AdminError as exc:
        return False, str(exc)
    status = _status(admin, token)
    if status is None:
        return False, f"no policyproxy admin status at http://{format_address(admin)}/api/status"
    listeners = status.get("listeners") if isinstance(status.get("listeners"), dict) else {}
    assert isinstance(listeners, dict)
    if listeners.get("http") != format_address(http) or (socks is not None and listeners.get("socks5")
                                                         != format_address(socks)):
        return False, "the admin status there belongs to a proxy on other listeners"
    if status.get("config_digest") != config_digest(settings):
        return False, (f"it serves another config (profile {str(status.get('profile'))!r}, "
                       f"digest {str(status.get('config_digest'))[:19]}...)")
    if status.get("ca_sha256") != ca_sha256:
        return False, "it intercepts with another CA than the one the command would trust"
    return True, ""


def _listening(address: Address) -> bool:
    try:
        with socket.create_connection(address, timeout=0.5):
            return True
    except OSError:
        return False


class StartedProxy:
    """A ``policyproxy serve`` child: its bound addresses read from its banner, its stdout drained after."""

    def __init__(self, args: argparse.Namespace, http: Address, socks: Address | None, ca: Path) -> None:
        command = [sys.executable, "-m", "policyproxy", "serve", "--listen", f"{show_host(http[0])}:{http[1]}",
                   "--admin-listen", "127.0.0.1:0", "--ca-dir", str(ca)]
        for flag in ("config", "requirements", "profile"):
            if getattr(args, flag, None):
                command += [f"--{flag}", str(getattr(args, flag))]
        if socks is not None:
            command += ["--socks-listen", f"{show_host(socks[0])}:{socks[1]}"]
        for path in getattr(args, "upstream_ca", None) or []:
            command += ["--upstream-ca", str(path)]
        for pin in getattr(args, "resolve", None) or []:
            command += ["--resolve", pin]
        # The proxy keeps the whole environment: it is the one that injects the secrets.
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=dict(os.environ))
        self.http: Address | None = None
        self.socks: Address | None = None
        self._read_banner(socks is not None)
        threading.Thread(target=self._drain, daemon=True).start()

    def _read_banner(self, want_socks: bool) -> None:
        assert self.process.stdout is not None
        deadline = time.monotonic() + _START_TIMEOUT
        timer = threading.Timer(_START_TIMEOUT, self.process.kill)   # readline cannot time out by itself
        timer.start()
        try:
            for line in self.process.stdout:
                match = _LISTENING.match(line)
                if match:
                    address = (match.group(2), int(match.group(3)))
                    if match.group(1) == "HTTP":
                        self.http = address
                    else:
                        self.socks = address
                if line.startswith("admin:") or time.monotonic() > deadline:
                    break
        finally:
            timer.cancel()
        if self.http is None or (want_socks and self.socks is None):
            self.stop()
            raise ServeError("the proxy did not start; run `policyproxy serve` with the same options to see why")

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for _ in self.process.stdout:
            pass

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def run_command(args: argparse.Namespace) -> int:
    """Reuse a proxy that proves this config, else start one; run CMD with the proxy's environment
    minus the withheld secrets; stop what was started; exit with CMD's code."""
    if not args.cmd:
        raise ServeError("run needs a command: policyproxy run -- CMD [ARGS...]")
    command = args.cmd[1:] if args.cmd[0] == "--" else args.cmd
    make_undumpable()   # CMD must not read the withheld secrets from /proc/<this pid>/environ
    for sig in (signal.SIGTERM, signal.SIGHUP):   # stopping run stops CMD and the proxy it started (no orphans)
        signal.signal(sig, _exit_on_signal)
    settings = load_settings(args.config, args.requirements, args.profile)
    http, socks = configured_listeners(args, settings)
    if args.socks and socks is None:
        raise ServeError(f"--socks: profile {settings.profile!r} has no SOCKS5 listener (enable_socks5 = false)")
    ca = load_or_create(ca_dir(args))
    started: StartedProxy | None = None
    if _listening(http):
        proven, why = reusable(settings, http, socks, ca.fingerprint)
        if proven:
            print(f"policyproxy: reusing the proxy on {format_address(http)} (same config digest)", file=sys.stderr)
        else:
            print(f"policyproxy: not reusing the proxy on {format_address(http)}: {why}; starting a private one",
                  file=sys.stderr)
            started = StartedProxy(args, ("127.0.0.1", 0), ("127.0.0.1", 0) if socks else None, ca.cert_path.parent)
    else:
        started = StartedProxy(args, http, socks, ca.cert_path.parent)
    try:
        if started is not None:
            assert started.http is not None
            http, socks = started.http, started.socks
            print(f"policyproxy: started a proxy on {format_address(http)} for this command", file=sys.stderr)
        bundle = trust_bundle(ca.cert_path.parent, ca.cert_pem)
        withheld = withheld_variables(settings, os.environ)
        env = {name: value for name, value in os.environ.items() if name not in withheld}
        if not args.socks:   # an inherited ALL_PROXY=socks5h:// breaks httpx without socksio
            for name in ("ALL_PROXY", "all_proxy"):
                env.pop(name, None)
        env.update(env_lines(http, socks, ca.cert_path, bundle, settings, socks_proxy=args.socks))
        if withheld:
            print(f"policyproxy: withheld from the command (the proxy injects them): {', '.join(withheld)}",
                  file=sys.stderr)
        gateway = f"http://{show_host(http[0])}:{http[1]}"
        print(f"policyproxy: note: {IGNORES_PROXY_VARIABLES.format(gateway=gateway)}", file=sys.stderr, flush=True)
        try:
            return subprocess.call(command, env=env)
        except FileNotFoundError:
            raise ServeError(f"command not found: {command[0]}") from None
    finally:
        if started is not None:
            started.stop()
