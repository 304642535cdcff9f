"""``audit tail`` and ``audit stats``: read the JSONL audit log."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from policyproxy.config import home_dir
from policyproxy.safe_text import printable
from policyproxy.telemetry.audit import read_records
from policyproxy.telemetry.event import EVENT_NAME


def add_parsers(sub: Any) -> None:
    audit = sub.add_parser("audit", help="read the audit log")
    actions = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    tail = actions.add_parser("tail", help="the latest decisions (optionally following)")
    tail.add_argument("--file", type=Path, help="audit log (default: $POLICYPROXY_HOME/audit.jsonl)")
    tail.add_argument("-n", "--lines", type=int, default=20)
    tail.add_argument("-f", "--follow", action="store_true")
    tail.add_argument("--decision", choices=["allow", "deny"])
    tail.add_argument("--host", help="server.address, exact or with a leading *. for subdomains")
    tail.add_argument("--reason")
    tail.add_argument("--json", action="store_true", help="print the raw JSON lines")
    stats = actions.add_parser("stats", help="counts by decision, reason, host, hook and detector")
    stats.add_argument("--file", type=Path)
    stats.add_argument("--since", default="24h", help="window: 30m, 24h, 7d, or 'all'")
    stats.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    path = args.file or home_dir() / "audit.jsonl"
    if args.audit_command == "tail":
        return _tail(args, path)
    return _stats(args, path)


def _matches(record: dict[str, Any], args: argparse.Namespace) -> bool:
    if args.decision and record.get("network.policy.decision") != args.decision:
        return False
    if args.reason and record.get("network.policy.reason") != args.reason:
        return False
    if args.host:
        host = str(record.get("server.address", ""))
        if args.host.startswith("*."):
            return host.endswith(args.host[1:])
        return host == args.host.lower()
    return True


def _line(record: dict[str, Any], as_json: bool) -> str:
    if as_json:   # ASCII-only JSON: a control or bidi character in a host stays an escape, not a terminal command
        return json.dumps(record, ensure_ascii=True)
    if record.get("event.name", EVENT_NAME) != EVENT_NAME:   # a lifecycle event (policyproxy.reload, ...)
        details = " ".join(f"{k}={v}" for k, v in record.items() if k not in ("ts", "event.name"))
        return printable(f"{record.get('ts')} {record.get('event.name')} {details}")
    where = f"{record.get('server.address')}:{record.get('server.port')}"
    path = record.get("url.path") or ""
    extra = f" hook={record['network.policy.hook']}" if record.get("network.policy.hook") else ""
    if record.get("redaction.count"):
        extra += f" redacted={record['redaction.count']}"
    return printable(f"{record.get('ts')} {record.get('network.policy.decision'):5} "
                     f"{record.get('network.policy.reason'):18} {record.get('http.request.method', 'none'):7} "
                     f"{where}{path}{extra} "
                     f"[{record.get('network.transport.protocol')} from {record.get('client.address', '?')}]")


def _tail(args: argparse.Namespace, path: Path) -> int:
    selected = [r for r in read_records(path) if _matches(r, args)]
    for record in selected[-args.lines:] if args.lines > 0 else []:
        print(_line(record, args.json))
    if not args.follow:
        return 0
    sys.stdout.flush()
    position = path.stat().st_size if path.exists() else 0
    try:
        while True:
            time.sleep(0.5)
            if not path.exists():
                continue
            size = path.stat().st_size
            if size < position:   # rotated
                position = 0
            if size == position:
                continue
            with open(path, encoding="utf-8", errors="replace") as handle:
                handle.seek(position)
                chunk = handle.read()
                position = handle.tell()
            for line in chunk.splitlines():
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if _matches(record, args):
                    print(_line(record, args.json), flush=True)
    except KeyboardInterrupt:
        return 0


_WINDOW = re.compile(r"(\d+)([smhd])")


def _since(text: str) -> datetime | None:
    if text == "all":
        return None
    match = _WINDOW.fullmatch(text)
    if match is None:
        raise SystemExit(f"policyproxy: --since wants 30m, 24h, 7d or all, got {text!r}")
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
    return datetime.now(timezone.utc) - timedelta(**{unit: int(match.group(1))})


def count(records: Iterable[dict[str, Any]], since: datetime | None) -> dict[str, Counter[str]]:
    counters: dict[str, Counter[str]] = {k: Counter() for k in ("decision", "reason", "host", "hook", "detector")}
    for record in records:
        if since is not None:
            try:
                when = datetime.fromisoformat(str(record.get("ts", "")).replace("Z", "+00:00"))
            except ValueError:
                continue
            if when < since:
                continue
        if record.get("event.name", EVENT_NAME) != EVENT_NAME:
            continue   # lifecycle events are not decisions
        counters["decision"][record.get("network.policy.decision", "?")] += 1
        counters["reason"][record.get("network.policy.reason", "?")] += 1
        counters["host"][str(record.get("server.address", "?"))] += 1
        if record.get("network.policy.hook"):
            counters["hook"][record["network.policy.hook"]] += 1
        for name, n in (record.get("redaction.detectors") or {}).items():
            counters["detector"][name] += n
    return counters


def _stats(args: argparse.Namespace, path: Path) -> int:
    counters = count(read_records(path), _since(args.since))
    if args.json:
        print(json.dumps({k: dict(v.most_common()) for k, v in counters.items()}, indent=2, ensure_ascii=True))
        return 0
    for name, counter in counters.items():
        print(f"{name}:")
        for key, n in counter.most_common(15):
            print(f"  {n:8d}  {printable(key)}")
    return 0
