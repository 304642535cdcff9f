"""The commands behind the CLI; each returns an exit code."""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
from datetime import datetime, timezone
from importlib import resources
from urllib.parse import urlsplit

from policyproxy.cli.render import render_policy, summary, toml_text, wildcard_warning
from policyproxy.config import home_dir, load_settings
from policyproxy.config.schema import Settings
from policyproxy.errors import ConfigError, ConfigErrors
from policyproxy.policy.compile import compile_policy
from policyproxy.policy.decide import Policy
from policyproxy.policy.lint import lint, trace_hooks
from policyproxy.policy.model import Decision, Request, Target
from policyproxy.reasons import Protocol
from policyproxy.safe_text import printable
from policyproxy.secret_provider import SecretProvider
from policyproxy.telemetry.event import audit_record, decision_attributes


class UsageError(Exception):
    """A command-line argument that cannot be used; the message says which and why."""


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.config, args.requirements, args.profile)


def check(args: argparse.Namespace) -> int:
    """Validate; print the compiled policy and warnings (``--json``: one document for CI annotations).

    ``--no-secrets``: a missing env var, file or command becomes a warning (naming it, never a value),
    so a profile is checked on a machine (a pull request's CI) that does not hold its secrets.
    """
    as_json = getattr(args, "json", False)
    no_secrets = getattr(args, "no_secrets", False)
    try:
        settings = _settings(args)
        policy = compile_policy(settings)
        _, secret_warnings = SecretProvider.for_settings(settings, missing_ok=no_secrets)
    except ConfigErrors as exc:
        if not as_json:
            raise
        _dump({"valid": False, "errors": [_problem(e) for e in exc.errors], "warnings": [], "summary": None})
        return 2
    from policyproxy.telemetry.otel import OtelError, describe_destination

    try:
        describe_destination(settings.otel)
    except OtelError as exc:   # serve would refuse to start: so does check
        if as_json:
            _dump({"valid": False, "errors": [{"code": "otel", "file": None, "line": None, "key": "otel",
                                               "message": str(exc)}], "warnings": [], "summary": None})
        else:
            print(f"policyproxy: {printable(exc)}", file=sys.stderr)
        return 2
    warnings = [_problem(w, "secret_unavailable") for w in secret_warnings]
    warnings += [{"code": "config", "file": None, "line": None, "key": None, "message": w} for w in settings.warnings]
    wildcard = wildcard_warning(settings)
    if wildcard is not None:
        warnings.append({"code": "wildcard_next_to_inspection", "file": str(settings.config_file)
                         if settings.config_file else None, "line": None, "key": None, "message": wildcard})
    for finding in lint(policy):
        where = settings.requirements_file if finding.managed else settings.config_file
        line = None if finding.managed else settings.line_of(finding.key)
        warnings.append({"code": finding.code, "file": str(where) if where else None, "line": line,
                         "key": finding.key, "message": finding.message})
    if as_json:
        _dump({"valid": True, "errors": [], "warnings": warnings, "summary": summary(settings, policy)})
        return 0
    print(render_policy(settings, policy))
    for warning in warnings:
        at = f"{warning['file']}:{warning['line']}: " if warning["file"] and warning["line"] else \
            f"{warning['file']}: " if warning["file"] else ""
        key = f"{warning['key']} " if warning["key"] else ""
        print(f"warning: {printable(at + key + str(warning['message']))}", file=sys.stderr)
    return 0


def _problem(error: ConfigError, code: str = "config") -> dict[str, object]:
    return {"code": code, "file": error.file, "line": error.line, "key": error.key or None, "message": error.message}


def _dump(document: dict[str, object]) -> None:
    json.dump(document, sys.stdout, indent=2, ensure_ascii=True)
    sys.stdout.write("\n")


def config_show(args: argparse.Namespace) -> int:
    settings = _settings(args)
    sys.stdout.write(toml_text(settings))
    return 0


def init(args: argparse.Namespace) -> int:
    path = args.config or home_dir() / "config.toml"
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    text = (resources.files("policyproxy") / "cli" / "starter.toml").read_text(encoding="utf-8")
    try:
        with open(path, "x", encoding="utf-8") as handle:
            handle.write(text)
    except FileExistsError:
        raise UsageError(f"{path} already exists; init never overwrites a config") from None
    print(f"wrote {path}")
    print(f"check it with: policyproxy check --config {path}")
    return 0


def explain(args: argparse.Namespace) -> int:
    settings = _settings(args)
    policy = compile_policy(settings)
    decision = explain_decision(policy, args.method, args.url, args.header, args.resolve, args.socks5)
    record = audit_record(decision_attributes(decision), datetime.now(timezone.utc))
    if decision.intercept or decision.protocol is Protocol.HTTPS_MITM:
        record["policyproxy.intercepted"] = True
    if decision.message:
        record["policyproxy.message"] = decision.message
    record["hooks"] = [t.as_json() for t in trace_hooks(policy, decision, explain_request(args.method, args.url,
                                                                                         args.header))]
    json.dump(record, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0 if decision.allowed else 1


def explain_decision(policy: Policy, method: str, url: str, headers: list[str], resolve: list[str],
                     socks5: bool = False) -> Decision:
    """What the proxy would decide for ``METHOD URL``: the connection first, then the request."""
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
    except ValueError:   # e.g. an unbalanced '[' in the authority
        raise UsageError(f"URL cannot be parsed: {url!r}") from None
    if parts.scheme not in ("http", "https") or not hostname:
        raise UsageError(f"URL must be http:// or https:// with a host, got {url!r}")
    if parts.username is not None or parts.password is not None:
        raise UsageError("URL must not carry user:password")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UsageError(f"URL has an invalid port: {url!r}") from None
    pinned = _pinned(resolve, parts.hostname, port)
    request = explain_request(method, url, headers)
    addresses = (pinned,) if pinned is not None else ()
    trusted = pinned is not None
    if parts.scheme == "http" and not socks5:
        return policy.decide(Target(parts.hostname, port, Protocol.HTTP, addresses, trusted), request)
    outer = Protocol.SOCKS5_TCP if socks5 else Protocol.HTTPS_CONNECT
    connection = policy.decide(Target(parts.hostname, port, outer, addresses, trusted))
    if not connection.allowed or not connection.intercept:
        return connection
    inner = Protocol.HTTP if parts.scheme == "http" else Protocol.HTTPS_MITM
    return policy.decide(Target(parts.hostname, port, inner, addresses, trusted), request)


def explain_request(method: str, url: str, headers: list[str]) -> Request:
    parts = urlsplit(url)
    return Request(method.upper(), parts.path or "/", parts.query, tuple(_header(h) for h in headers))


def _pinned(resolve: list[str], host: str, port: int) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    for entry in resolve:
        name, _, rest = entry.partition(":")
        port_text, _, addr = rest.partition(":")
        try:
            address = ipaddress.ip_address(addr.strip("[]"))
            entry_port = int(port_text)
        except ValueError:
            raise UsageError(f"--resolve wants HOST:PORT:ADDR, got {entry!r}") from None
        if name.lower() == host.lower() and entry_port == port:
            return address
    return None


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise UsageError(f"-H wants 'Name: value', got {text!r}")
    return name.strip(), value.strip()


