"""The environment a client needs to go through the proxy, and ``policyproxy env`` in five shell dialects.

Only what every common client understands by default is exported: ``HTTP(S)_PROXY`` (both cases),
``NO_PROXY``, the trust variables, and ``NODE_USE_ENV_PROXY=1`` (Node's built-in fetch and http
ignore proxy variables without it; older Nodes ignore it). ``ALL_PROXY=socks5h://`` only with
``--socks``: httpx, and so the OpenAI and Anthropic Python SDKs, fail on it without ``socksio``.
Every value is quoted for its dialect (a CA path with a space must survive ``eval``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from urllib.parse import quote

from policyproxy.cli.render import listener_auth
from policyproxy.config import load_settings
from policyproxy.config.schema import Settings
from policyproxy.tls.ca_store import load_or_create, trust_bundle

FORMATS = ("sh", "fish", "powershell", "dotenv", "github")
BUNDLE_VARIABLES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "CODEX_CA_CERTIFICATE", "GIT_SSL_CAINFO",
                    "PIP_CERT", "NPM_CONFIG_CAFILE", "CARGO_HTTP_CAINFO")
# Clients that do not read HTTP(S)_PROXY, and what to do; printed by ``run`` and kept true in the README.
IGNORES_PROXY_VARIABLES = (
    "Node's built-in fetch/http honour the proxy only with NODE_USE_ENV_PROXY=1 (set here; Node >= 22.21 or "
    ">= 24.5); older Node: use the gateway (ANTHROPIC_BASE_URL={gateway}/anthropic, "
    "OPENAI_BASE_URL={gateway}/openai/v1)"
)


class EnvError(Exception):
    """The environment cannot be written as asked; the message says why."""


def show_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def env_lines(http: tuple[str, int], socks: tuple[str, int] | None, ca_path: Path, bundle: Path,
              settings: Settings | None = None, reveal: bool = True,
              socks_proxy: bool = False) -> list[tuple[str, str]]:
    """The client environment. ``ALL_PROXY`` only with ``socks_proxy`` (and a SOCKS listener); listener
    passwords are shown only when ``reveal`` (never in a banner)."""

    http_credentials, socks_credentials = listener_auth(settings.network) if settings is not None else (None, None)

    def userinfo(credentials: tuple[str, str] | None) -> str:
        if credentials is None:
            return ""
        password = quote(credentials[1], safe="") if reveal else "***"
        return f"{quote(credentials[0], safe='')}:{password}@"

    proxy = f"http://{userinfo(http_credentials)}{show_host(http[0])}:{http[1]}"
    lines = [("HTTP_PROXY", proxy), ("HTTPS_PROXY", proxy), ("http_proxy", proxy), ("https_proxy", proxy)]
    if socks is not None and socks_proxy:
        socks_url = f"socks5h://{userinfo(socks_credentials)}{show_host(socks[0])}:{socks[1]}"
        lines += [("ALL_PROXY", socks_url), ("all_proxy", socks_url)]
    lines.append(("NO_PROXY", "localhost,127.0.0.1,::1"))
    lines.append(("no_proxy", "localhost,127.0.0.1,::1"))
    lines.append(("NODE_USE_ENV_PROXY", "1"))
    lines += [(name, str(bundle)) for name in BUNDLE_VARIABLES]
    lines.append(("NODE_EXTRA_CA_CERTS", str(ca_path)))
    return lines


def _sh(value: str) -> str:
    return "'" + value.replace("'", "'\"'\"'") + "'"


def _fish(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _powershell(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _dotenv(value: str) -> str:
    if "'" not in value:
        return f"'{value}'"   # literal in python-dotenv, node dotenv and docker compose alike
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'


def render(lines: list[tuple[str, str]], fmt: str) -> str:
    """``lines`` as text for ``fmt``; every value quoted for that dialect. ``github`` is the
    ``$GITHUB_ENV`` file syntax (``NAME=value``, taken literally by the runner)."""
    for name, value in lines:
        if "\n" in value or "\r" in value or "\x00" in value:
            raise EnvError(f"{name} would contain a line break or NUL; refusing to write it")
    if fmt == "sh":
        out = [f"export {name}={_sh(value)}" for name, value in lines]
    elif fmt == "fish":
        out = [f"set -gx {name} {_fish(value)}" for name, value in lines]
    elif fmt == "powershell":
        out = [f"$env:{name} = {_powershell(value)}" for name, value in lines]
    elif fmt == "dotenv":
        out = [f"{name}={_dotenv(value)}" for name, value in lines]
    elif fmt == "github":
        out = [f"{name}={value}" for name, value in lines]
    else:
        raise EnvError(f"unknown format {fmt!r} (one of: {', '.join(FORMATS)})")
    return "\n".join(out) + "\n"


Address = tuple[str, int]


def configured_listeners(args: argparse.Namespace, settings: Settings) -> tuple[Address, Address | None]:
    """The listener addresses from ``--listen``/``--socks-listen`` or the profile (SOCKS only if enabled)."""
    from policyproxy.cli.serve import parse_address  # serve imports this module: import at call time

    net = settings.network
    http = parse_address(getattr(args, "listen", None) or net.proxy_url, 3128)
    socks = parse_address(getattr(args, "socks_listen", None) or net.socks_url, 8081) if net.enable_socks5 else None
    return http, socks


def env_command(args: argparse.Namespace) -> int:
    settings = load_settings(args.config, args.requirements, args.profile)
    http, socks = configured_listeners(args, settings)
    if args.socks and socks is None:
        raise EnvError(f"--socks: profile {settings.profile!r} has no SOCKS5 listener (enable_socks5 = false)")
    from policyproxy.cli.serve import ca_dir

    ca = load_or_create(ca_dir(args))
    bundle = trust_bundle(ca.cert_path.parent, ca.cert_pem)
    text = render(env_lines(http, socks, ca.cert_path, bundle, settings, socks_proxy=args.socks), args.format)
    if args.format != "github":
        sys.stdout.write(text)
        return 0
    target = os.environ.get("GITHUB_ENV")
    if not target:
        raise EnvError("--format github appends to the file named by $GITHUB_ENV, which is not set "
                       "(run it inside a GitHub Actions step)")
    with open(target, "a", encoding="utf-8") as handle:
        handle.write(text)
    names = ", ".join(name for name, _ in env_lines(http, socks, ca.cert_path, bundle, settings,
                                                     socks_proxy=args.socks))
    print(f"appended to $GITHUB_ENV: {names}")
    return 0
