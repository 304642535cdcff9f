"""Reversible placeholders: ``[[EMAIL_1a2b3c4d]]``, typed, short, and never made of the value.

The id is an HMAC of the value under a key of the scope (one client identity), so the same value gets
the same placeholder on every turn of a conversation (provider prompt caching keeps working and no
placeholder is ever renumbered), and a placeholder from one scope means nothing in another. The vault
keeps placeholder -> value for restoring, with a TTL.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import sqlite3
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PLACEHOLDER = re.compile(r"\[\[([A-Z][A-Z0-9_]{1,30})_([0-9a-f]{8,16})\]\]")
OPEN = "[["
MAX_LENGTH = 2 + 31 + 1 + 16 + 2


def placeholder_prefix_at_end(text: str) -> int:
    """Length of the longest suffix of ``text`` that could still grow into a placeholder (0 if none)."""
    start = text.find("[", max(0, len(text) - MAX_LENGTH))
    while start >= 0:   # leftmost first: the longest candidate tail wins
        tail = text[start:]
        if _could_become_placeholder(tail):
            return len(tail)
        start = text.find("[", start + 1)
    return 0


_PARTIAL = re.compile(r"\[(?:\[(?:[A-Z][A-Z0-9_]{0,30}(?:_[0-9a-f]{0,16}(?:\])?)?)?)?")


def _could_become_placeholder(tail: str) -> bool:
    return _PARTIAL.fullmatch(tail) is not None and len(tail) < MAX_LENGTH


@dataclass
class Vault:
    """placeholder -> value for one scope, each entry living ``ttl`` seconds after its last use."""

    key: bytes
    ttl: float = 24 * 3600.0
    entries: dict[str, tuple[str, float]] = field(default_factory=dict)
    cache: OrderedDict[str, Any] = field(default_factory=OrderedDict)   # the engine's per-scope text cache
    scope: str = ""
    store: MappingStore | None = None

    def touch(self, token: str, value: str, now: float | None = None) -> None:
        """Keep ``token`` restorable for another TTL (a cached redaction was reused)."""
        now = time.time() if now is None else now
        previous = self.entries.get(token)
        self.entries[token] = (value, now + self.ttl)
        if self.store is not None and (previous is None or previous[1] < now + self.ttl * 0.9):
            self.store.put(self.scope, token, value, now + self.ttl)

    def placeholder(self, kind: str, value: str, now: float | None = None) -> str:
        now = time.time() if now is None else now
        digest = hmac.new(self.key, f"{kind}\0{value}".encode(), hashlib.sha256).hexdigest()
        label = kind.upper()
        for size in (8, 12, 16):
            token = f"[[{label}_{digest[:size]}]]"
            held = self.entries.get(token)
            if held is None or held[0] == value:
                self.touch(token, value, now)
                return token
        raise RuntimeError("placeholder collision")  # pragma: no cover - 64 bits of HMAC

    def value(self, token: str, now: float | None = None) -> str | None:
        held = self.entries.get(token)
        if held is None:
            return None
        now = time.time() if now is None else now
        if held[1] < now:
            del self.entries[token]
            return None
        return held[0]

    def expire(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        for token in [t for t, (_, until) in self.entries.items() if until < now]:
            del self.entries[token]


class MappingStore:
    """Optional persistence (SQLite, file mode 0600): the master key and live mappings survive a restart,
    so a conversation that spans one keeps its placeholders restorable."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
        os.chmod(path, 0o600)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB)")
        self._db.execute("CREATE TABLE IF NOT EXISTS mappings (scope TEXT, token TEXT, value TEXT, expires REAL, "
                         "PRIMARY KEY (scope, token))")
        self._db.execute("DELETE FROM mappings WHERE expires < ?", (time.time(),))

    def master(self) -> bytes:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = 'master'").fetchone()
            if row is not None:
                return bytes(row[0])
            master = secrets.token_bytes(32)
            self._db.execute("INSERT INTO meta VALUES ('master', ?)", (master,))
            return master

    def load(self, scope: str) -> dict[str, tuple[str, float]]:
        with self._lock:
            rows = self._db.execute("SELECT token, value, expires FROM mappings WHERE scope = ? AND expires >= ?",
                                    (scope, time.time())).fetchall()
        return {token: (value, expires) for token, value, expires in rows}

    def put(self, scope: str, token: str, value: str, expires: float) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO mappings VALUES (?, ?, ?, ?)", (scope, token, value, expires))

    def close(self) -> None:
        with self._lock:
            self._db.close()


class Vaults:
    """One vault per scope (client identity), keys derived from one master secret."""

    def __init__(self, master: bytes | None = None, ttl: float = 24 * 3600.0,
                 store: MappingStore | None = None) -> None:
        self.store = store
        self.master = master or (store.master() if store is not None else secrets.token_bytes(32))
        self.ttl = ttl
        self._vaults: dict[str, Vault] = {}

    def for_scope(self, scope: str) -> Vault:
        vault = self._vaults.get(scope)
        if vault is None:
            key = hmac.new(self.master, scope.encode(), hashlib.sha256).digest()
            entries = self.store.load(scope) if self.store is not None else {}
            vault = self._vaults[scope] = Vault(key, self.ttl, entries, scope=scope, store=self.store)
        return vault
