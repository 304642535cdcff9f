"""The SQLite mapping store: placeholders stay restorable across a restart (I/O, so not in the core)."""

from __future__ import annotations

import os
import secrets
import sqlite3
import threading
import time
from pathlib import Path


class SqliteMappingStore:
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

