"""``policyproxy scan``: try the profile's detectors on your own data, or drive an evaluation.

One process, rules compiled once, so thousands of texts cost what the scanning costs. Values are
never printed unless ``--show`` asks for them. Exit 0 when nothing was found, 1 when something was,
2 on bad input (an unreadable file, a ``--jsonl`` line that is not a JSON string).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from typing import TextIO

from policyproxy.config.load import load_settings
from policyproxy.config.schema import RedactionSpec
from policyproxy.redaction.detectors import Span
from policyproxy.redaction.engine import Redactor

STDIN = "-"


class BadInput(Exception):
    """Input that cannot be scanned; the message names the file (and line)."""


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser],   # no public name for it
               with_config: Callable[[argparse.ArgumentParser], argparse.ArgumentParser]) -> None:
    scan = with_config(sub.add_parser("scan", help="find secrets and PII in files (stdin when none) with the "
                                                   "profile's detectors"))
    scan.add_argument("files", nargs="*", metavar="FILE", help="files to scan ('-' or none: stdin)")
    form = scan.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true",
                      help='one JSON array of {"file", "start", "end", "detector"} (character offsets)')
    form.add_argument("--jsonl", action="store_true",
                      help='each input line is a JSON string; print one JSON array of {"detector", "start", "end"} '
                           "per line, in order")
    scan.add_argument("--show", action="store_true", help="print the values found too (they are secrets)")


def redactor_for(args: argparse.Namespace) -> tuple[Redactor, str | None]:
    """The profile's detectors, actions, patterns and allowlists (the defaults when it has no redaction)."""
    settings = load_settings(args.config, args.requirements, args.profile)
    spec = settings.network.redaction
    if spec is None or not spec.enabled:
        return Redactor(RedactionSpec()), (f"profile {settings.profile!r} does not redact: "
                                           "scanning with the default detectors")
    return Redactor(spec), None


def run(args: argparse.Namespace) -> int:
    redactor, note = redactor_for(args)
    if note:
        print(f"policyproxy: {note}", file=sys.stderr)
    out = sys.stdout
    try:
        found = _jsonl(redactor, args, out) if args.jsonl else _files(redactor, args, out)
    except BadInput as exc:
        out.flush()
        print(f"policyproxy: {exc}", file=sys.stderr)
        return 2
    return 1 if found else 0


def _sources(files: list[str]) -> Iterator[tuple[str, TextIO]]:
    for name in files or [STDIN]:
        if name == STDIN:
            yield "<stdin>", sys.stdin
            continue
        try:
            with open(name, encoding="utf-8", newline="") as handle:
                yield name, handle
        except OSError as exc:
            raise BadInput(f"cannot read {name}: {exc.strerror}") from None


def _read(name: str, handle: TextIO) -> str:
    try:
        return handle.read()
    except UnicodeDecodeError as exc:
        raise BadInput(f"{name}: not UTF-8 text (byte {exc.start})") from None


def _files(redactor: Redactor, args: argparse.Namespace, out: TextIO) -> int:
    found = 0
    records: list[dict[str, object]] = []
    for name, handle in _sources(args.files):
        text = _read(name, handle)
        spans = redactor.find(text)
        found += len(spans)
        if args.json:
            records += [_record(span, text, args.show, file=name) for span in spans]
            continue
        for span, (line, column) in zip(spans, _positions(text, spans), strict=True):
            value = f" {json.dumps(text[span.start:span.end], ensure_ascii=False)}" if args.show else ""
            out.write(f"{name}:{line}:{column} {span.detector}{value}\n")
    if args.json:
        json.dump(records, out, ensure_ascii=False)
        out.write("\n")
    return found


def _jsonl(redactor: Redactor, args: argparse.Namespace, out: TextIO) -> int:
    found = 0
    for name, handle in _sources(args.files):
        number = 0
        try:
            for number, line in enumerate(handle, 1):
                try:
                    text = json.loads(line)
                except ValueError:
                    raise BadInput(f"{name}:{number}: not a JSON string") from None
                if not isinstance(text, str):
                    raise BadInput(f"{name}:{number}: a JSON {type(text).__name__}, expected a string")
                spans = redactor.find(text)
                found += len(spans)
                out.write(json.dumps([_record(span, text, args.show) for span in spans], ensure_ascii=False))
                out.write("\n")
        except UnicodeDecodeError as exc:
            raise BadInput(f"{name}:{number + 1}: not UTF-8 text (byte {exc.start})") from None
    return found


def _record(span: Span, text: str, show: bool, **extra: str) -> dict[str, object]:
    record: dict[str, object] = {**extra, "start": span.start, "end": span.end, "detector": span.detector}
    if not extra:   # --jsonl: {"detector", "start", "end"}
        record = {"detector": span.detector, "start": span.start, "end": span.end}
    if show:
        record["value"] = text[span.start:span.end]
    return record


def _positions(text: str, spans: list[Span]) -> list[tuple[int, int]]:
    """1-based line and column (in characters) of each span's start; spans are in text order."""
    out: list[tuple[int, int]] = []
    line, line_start, cursor = 1, 0, 0
    for span in spans:
        newlines = text.count("\n", cursor, span.start)
        if newlines:
            line += newlines
            line_start = text.rfind("\n", cursor, span.start) + 1
        cursor = span.start
        out.append((line, span.start - line_start + 1))
    return out
