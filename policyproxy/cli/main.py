"""argparse front: parses arguments, calls one command, maps errors to exit codes.

Exit codes: 0 success (for ``explain``: allowed; for ``scan``: nothing found), 1 ``explain`` denied or
``scan`` found something, 2 configuration error or bad input.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from policyproxy import __version__
from policyproxy.cli import audit, commands, scan
from policyproxy.cli.clientenv import FORMATS
from policyproxy.errors import ConfigErrors
from policyproxy.safe_text import printable

EXIT_CONFIG = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="policyproxy", description="A declarative policy proxy for AI coding agents.")
    parser.add_argument("--version", action="version", version=f"policyproxy {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", type=Path, help="config file (default: $POLICYPROXY_HOME/config.toml, "
                       "else the bundled default profile)")
        p.add_argument("--requirements", type=Path, help="managed requirements.toml "
                       "(default: /etc/policyproxy/requirements.toml if it exists)")
        p.add_argument("--profile", help="profile to use (default: default_permissions)")
        return p

    serve = with_config(sub.add_parser("serve", help="run the proxy"))
    serve.add_argument("--listen", help="HTTP proxy address (default: the profile's proxy_url)")
    serve.add_argument("--socks-listen", help="SOCKS5 address (default: the profile's socks_url)")
    serve.add_argument("--ca-dir", type=Path, help="CA directory (default: $POLICYPROXY_HOME/ca)")
    serve.add_argument("--audit-log", type=Path, help="JSONL audit log path")
    serve.add_argument("--upstream-ca", type=Path, action="append", default=[],
                       help="extra CA file trusted for upstream servers (repeatable)")
    serve.add_argument("--resolve", action="append", default=[], metavar="HOST:PORT:ADDR",
                       help="pin HOST:PORT to ADDR (operator-trusted; repeatable)")
    serve.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto",
                       help="event loop: auto (default: uvloop when installed, pip install 'policyproxy[fast]', "
                            "else asyncio), asyncio, or uvloop")
    serve.add_argument("--admin-listen", metavar="ADDR", help="admin listener (/healthz, /readyz, /api/status): "
                       "HOST:PORT or off (default: [admin] listen, else 127.0.0.1:9090)")
    serve.add_argument("-v", "--verbose", action="store_true",
                       help="print one line per decision (a deny names its rule, config key and explain line)")
    ca = sub.add_parser("ca", help="the interception CA")
    ca.add_argument("ca_command", choices=["init", "path", "export"])
    ca.add_argument("--ca-dir", type=Path, help="CA directory (default: $POLICYPROXY_HOME/ca)")
    env = with_config(sub.add_parser("env", help="print the environment a client needs, quoted for a shell"))
    env.add_argument("--listen")
    env.add_argument("--socks-listen")
    env.add_argument("--ca-dir", type=Path)
    env.add_argument("--format", choices=FORMATS, default="sh",
                     help="sh (default), fish, powershell, dotenv, or github (appends to $GITHUB_ENV)")
    env.add_argument("--socks", action="store_true", help="also ALL_PROXY=socks5h:// (httpx needs socksio for it)")
    run = with_config(sub.add_parser("run", help="run CMD through a proxy that serves this config, "
                                     "without the secrets the proxy injects"))
    run.add_argument("--listen")
    run.add_argument("--socks-listen")
    run.add_argument("--ca-dir", type=Path)
    run.add_argument("--socks", action="store_true", help="also give CMD ALL_PROXY=socks5h://")
    run.add_argument("--upstream-ca", type=Path, action="append", default=[],
                     help="for a proxy run starts: extra CA trusted for upstream servers (repeatable)")
    run.add_argument("--resolve", action="append", default=[], metavar="HOST:PORT:ADDR",
                     help="for a proxy run starts: pin HOST:PORT to ADDR (repeatable)")
    run.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD")
    audit.add_parsers(sub)
    check = with_config(sub.add_parser("check", help="validate the configuration and print the compiled policy"))
    check.add_argument("--no-secrets", action="store_true",
                       help="missing secret env vars, files and commands are warnings (commands are not run)")
    check.add_argument("--json", action="store_true",
                       help="one JSON document: valid, errors and warnings (file, line, key), the summary")
    config = sub.add_parser("config", help="show the effective configuration")
    config_sub = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    with_config(config_sub.add_parser("show", help="the effective profile as TOML"))
    init = sub.add_parser("init", help="write a commented starter config.toml (never over an existing file)")
    init.add_argument("--config", type=Path, help="where to write (default: $POLICYPROXY_HOME/config.toml)")
    scan.add_parser(sub, with_config)
    explain = with_config(sub.add_parser("explain", help="the decision a request would get, as its audit JSON"))
    explain.add_argument("method", metavar="METHOD")
    explain.add_argument("url", metavar="URL")
    explain.add_argument("-H", "--header", action="append", default=[], metavar="'Name: value'")
    explain.add_argument("--resolve", action="append", default=[], metavar="HOST:PORT:ADDR",
                         help="treat HOST:PORT as resolved to ADDR (operator-pinned)")
    explain.add_argument("--socks5", action="store_true", help="as if sent over the SOCKS5 listener")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command in ("serve", "ca", "env", "run"):
            from policyproxy.admin import AdminError
            from policyproxy.cli import clientenv, run
            from policyproxy.cli import serve as network

            command = {"serve": network.serve, "ca": network.ca_command, "env": clientenv.env_command,
                       "run": run.run_command}[args.command]
            try:
                return command(args)
            except (network.ServeError, network.CAError, AdminError, clientenv.EnvError, OSError) as exc:
                print(f"policyproxy: {printable(exc)}", file=sys.stderr)
                return EXIT_CONFIG
        if args.command == "audit":
            return audit.run(args)
        if args.command == "check":
            return commands.check(args)
        if args.command == "config":
            return commands.config_show(args)
        if args.command == "init":
            return commands.init(args)
        if args.command == "explain":
            return commands.explain(args)
        if args.command == "scan":
            return scan.run(args)
    except ConfigErrors as exc:
        print(f"policyproxy: configuration is invalid ({len(exc.errors)} "
              f"problem{'s' if len(exc.errors) != 1 else ''}):", file=sys.stderr)
        for error in exc.errors:
            print(f"  {printable(error)}", file=sys.stderr)
        return EXIT_CONFIG
    except commands.UsageError as exc:
        print(f"policyproxy: {printable(exc)}", file=sys.stderr)
        return EXIT_CONFIG
    raise AssertionError(args.command)  # argparse guarantees a known command


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
