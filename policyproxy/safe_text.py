"""One escape for every human-readable line: text that came off the wire never drives a terminal.

A CONNECT host, a path or a header name can carry ESC sequences (``\\x1b]0;title\\x07``, ``\\x1b[2J``),
CR, BEL, 8-bit C1 controls (U+0080-U+009F: U+009B is a CSI on some terminals) or bidi overrides
(U+202E) that reorder what an operator reads. ``printable`` keeps printable text as it is and writes
everything else as a Python-style escape, so the line says what was sent without acting on it.
JSON output needs nothing from here: it is written with ``ensure_ascii=True``.
"""

from __future__ import annotations

import logging

__all__ = ["SafeFormatter", "install_console", "printable"]


def _escape(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text: object) -> str:
    """``text`` as one safe line: every non-printable character (C0, DEL, C1, format characters such
    as bidi overrides and zero-width ones, line and paragraph separators, unassigned code points)
    escaped; printable text (including non-ASCII letters) unchanged."""
    value = text if isinstance(text, str) else str(text)
    if value.isprintable():
        return value
    return "".join(c if c.isprintable() else _escape(c) for c in value)


class SafeFormatter(logging.Formatter):
    """A logging formatter whose message is one ``printable`` line (a newline in a host is escaped too);
    tracebacks keep their own line breaks, each line escaped."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return printable(super().formatMessage(record))

    def formatException(self, ei: object) -> str:
        return "\n".join(printable(line) for line in super().formatException(ei).split("\n"))  # type: ignore[arg-type]


def install_console(logger_name: str = "policyproxy", level: int = logging.WARNING) -> logging.Handler:
    """Send ``logger_name``'s records to stderr through ``SafeFormatter`` (once; returns the handler).

    Without it, Python's last-resort handler prints WARNING records raw. ``serve -v`` lowers the
    handler's level to show per-decision lines, which carry hosts and paths from the wire.
    """
    logger = logging.getLogger(logger_name)
    for handler in logger.handlers:
        if isinstance(handler.formatter, SafeFormatter):
            return handler
    handler = logging.StreamHandler()
    handler.setFormatter(SafeFormatter("%(message)s"))
    handler.setLevel(level)
    logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > level:
        logger.setLevel(level)
    return handler
