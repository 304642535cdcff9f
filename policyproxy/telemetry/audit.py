"""The JSONL audit log: one line per decision, size-based rotation, written by the telemetry thread."""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import orjson


def _line(record: dict[str, Any]) -> str:
    """One JSONL line. orjson: the stdlib encoder was the telemetry thread's largest cost (it holds the
    GIL the request path needs). A string orjson refuses (a lone surrogate from a header that was not
    UTF-8) is written escaped by the stdlib encoder instead of losing the record."""
    try:
        return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE).decode("utf-8")
    except TypeError:
        return json.dumps(record, separators=(",", ":")) + "\n"


class AuditFile:
    """Append-only JSONL with rotation (``audit.jsonl`` -> ``.1`` -> ... -> ``.N``); file mode 0600."""

    def __init__(self, path: Path, max_bytes: int = 50 * 1024 * 1024, backups: int = 5) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.backups = backups
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._file = self._open()

    def _open(self) -> TextIO:
        # O_NOFOLLOW: a link planted at the log's name must not make the proxy append to another file.
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(self.path, flags, 0o600)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise OSError(errno.ELOOP, "is a symlink; the audit log must be a regular file",
                              str(self.path)) from None
            raise
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise OSError(errno.EINVAL, "is not a regular file; the audit log must be one", str(self.path))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "a", encoding="utf-8", buffering=1024 * 1024)

    def write(self, records: list[dict[str, Any]]) -> None:
        self._file.write("".join(_line(r) for r in records))
        self._file.flush()
        if self._file.tell() >= self.max_bytes:
            self._rotate()

    def _rotate(self) -> None:
        self._file.close()
        for i in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{i}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{i + 1}"))
        if self.backups > 0:
            self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink()
        self._file = self._open()

    def close(self) -> None:
        self._file.close()


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    """Every record of the log, oldest first (rotated files included); malformed lines skipped."""
    rotated = sorted((p for p in path.parent.glob(path.name + ".*") if p.suffix[1:].isdigit()),
                     key=lambda p: -int(p.suffix[1:]))
    for file in [*rotated, path]:
        if not file.exists():
            continue
        with open(file, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                try:
                    yield json.loads(line)
                except ValueError:
                    continue
