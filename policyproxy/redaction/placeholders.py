"""Reversible placeholders: ``[[EMAIL_1a2b3c4d]]``, typed, short, and never made of the value.

The id is an HMAC of the value under a key of the scope (one client identity), so the same value gets
the same placeholder on every turn of a conversation (provider prompt caching keeps working and no
placeholder is ever renumbered), and a placeholder from one scope means nothing in another. The vault
keeps placeholder -> value for restoring, with a TTL.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
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

    def touch(self, token: str, value: str, now: float | None = None) -> None:
        """Keep ``token`` restorable for another TTL (a cached redaction was reused)."""
        self.entries[token] = (value, (time.monotonic() if now is None else now) + self.ttl)

    def placeholder(self, kind: str, value: str, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        digest = hmac.new(self.key, f"{kind}\0{value}".encode(), hashlib.sha256).hexdigest()
        label = kind.upper()
        for size in (8, 12, 16):
            token = f"[[{label}_{digest[:size]}]]"
            held = self.entries.get(token)
            if held is None or held[0] == value:
                self.entries[token] = (value, now + self.ttl)
                return token
        raise RuntimeError("placeholder collision")  # pragma: no cover - 64 bits of HMAC

    def value(self, token: str, now: float | None = None) -> str | None:
        held = self.entries.get(token)
        if held is None:
            return None
        now = time.monotonic() if now is None else now
        if held[1] < now:
            del self.entries[token]
            return None
        return held[0]

    def expire(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for token in [t for t, (_, until) in self.entries.items() if until < now]:
            del self.entries[token]


class Vaults:
    """One vault per scope (client identity), keys derived from one master secret."""

    def __init__(self, master: bytes | None = None, ttl: float = 24 * 3600.0) -> None:
        self.master = master or secrets.token_bytes(32)
        self.ttl = ttl
        self._vaults: dict[str, Vault] = {}

    def for_scope(self, scope: str) -> Vault:
        vault = self._vaults.get(scope)
        if vault is None:
            key = hmac.new(self.master, scope.encode(), hashlib.sha256).digest()
            vault = self._vaults[scope] = Vault(key, self.ttl)
        return vault
