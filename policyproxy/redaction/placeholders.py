"""Reversible placeholders: ``[[EMAIL_1a2b3c4d]]``, typed, short, and never made of the value.

The id is an HMAC of the value under a key of the scope (one client identity), so the same value gets
the same placeholder on every turn of a conversation (provider prompt caching keeps working and no
placeholder is ever renumbered), and a placeholder from one scope means nothing in another. The vault
keeps placeholder -> value for restoring, with a TTL and a size cap; persistence is behind the
``MappingStore`` protocol (the stores live on the I/O side: ``policyproxy.stores.sqlite`` writes at
once; ``policyproxy.stores.redis`` queues ``put`` and the shell flushes the queue in one round trip).
A vault never awaits: placeholders it does not hold (minted by another instance) are named by
``missing`` so the shell can fetch them and hand them over with ``learn`` before restoring.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

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


class Lookup(Protocol):
    """What restoring needs: the value of a placeholder, or None when it is not known."""

    def value(self, token: str, now: float | None = None) -> str | None: ...


class MappingStore(Protocol):
    """Where mappings persist (``policyproxy.stores``). ``put`` must not block on the network: a remote
    store queues it and the shell flushes."""

    def master(self) -> bytes: ...
    def load(self, scope: str) -> dict[str, tuple[str, float]]: ...
    def put(self, scope: str, token: str, value: str, expires: float) -> None: ...
    def close(self) -> None: ...


class TextCache:
    """The engine's per-scope cache of rewritten texts: least recently used first out, bounded by
    entries and by characters (a few huge pastes must not pin gigabytes), valid for one set of rules."""

    def __init__(self, max_entries: int = 4096, max_chars: int = 64 * 1024 * 1024) -> None:
        self.max_entries = max_entries
        self.max_chars = max_chars
        self.chars = 0
        self.owner: object | None = None
        self._items: OrderedDict[Any, tuple[Any, int]] = OrderedDict()

    def claim(self, owner: object) -> None:
        """Empty the cache if it was filled under other rules (a reload)."""
        if self.owner is not owner:
            self._items.clear()
            self.chars = 0
            self.owner = owner

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Any) -> Any:
        held = self._items.get(key)
        if held is None:
            return None
        self._items.move_to_end(key)
        return held[0]

    def put(self, key: Any, value: Any, size: int) -> None:
        previous = self._items.pop(key, None)
        if previous is not None:
            self.chars -= previous[1]
        if size > self.max_chars:
            return
        self._items[key] = (value, size)
        self.chars += size
        while len(self._items) > self.max_entries or self.chars > self.max_chars:
            _, (_, dropped) = self._items.popitem(last=False)
            self.chars -= dropped


@dataclass
class Vault:
    """placeholder -> value for one scope, each entry living ``ttl`` seconds after its last use, at
    most ``max_entries`` of them (the least recently used goes first)."""

    key: bytes
    ttl: float = 24 * 3600.0
    entries: dict[str, tuple[str, float]] = field(default_factory=dict)
    cache: TextCache = field(default_factory=TextCache)
    scope: str = ""
    store: MappingStore | None = None
    max_entries: int = 100_000
    clock: Callable[[], float] = field(default=lambda: 0.0)   # the shell passes time.time

    def touch(self, token: str, value: str, now: float | None = None) -> None:
        """Keep ``token`` restorable for another TTL (a cached redaction was reused)."""
        now = self.clock() if now is None else now
        previous = self.entries.pop(token, None)
        self.entries[token] = (value, now + self.ttl)   # re-inserted: dict order is least recent first
        if len(self.entries) > self.max_entries:
            del self.entries[next(iter(self.entries))]
        if self.store is not None and (previous is None or previous[1] < now + self.ttl * 0.9):
            self.store.put(self.scope, token, value, now + self.ttl)

    def placeholder(self, kind: str, value: str, now: float | None = None) -> str:
        now = self.clock() if now is None else now
        digest = hmac.new(self.key, f"{kind}\0{value}".encode(), hashlib.sha256).hexdigest()
        label = kind.upper()
        for size in (8, 12, 16):
            token = f"[[{label}_{digest[:size]}]]"
            held = self.entries.get(token)
            if held is None or held[0] == value:
                self.touch(token, value, now)
                return token
        raise RuntimeError("placeholder collision")  # pragma: no cover - 64 bits of HMAC

    def learn(self, token: str, value: str, expires: float) -> None:
        """Hold a mapping another instance minted (fetched from the shared store): restorable here
        until ``expires``, never written back (it is already in the store)."""
        self.entries.pop(token, None)
        self.entries[token] = (value, expires)
        if len(self.entries) > self.max_entries:
            del self.entries[next(iter(self.entries))]

    def missing(self, tokens: Iterable[str], now: float | None = None) -> list[str]:
        """The placeholders among ``tokens`` this vault cannot restore (unknown or expired here)."""
        now = self.clock() if now is None else now
        out = []
        for token in tokens:
            held = self.entries.get(token)
            if held is None or held[1] < now:
                out.append(token)
        return out

    def value(self, token: str, now: float | None = None) -> str | None:
        held = self.entries.get(token)
        if held is None:
            return None
        now = self.clock() if now is None else now
        if held[1] < now:
            del self.entries[token]
            return None
        return held[0]


class Vaults:
    """One vault per scope (client identity), keys derived from one master secret. Bounded: at most
    ``max_scopes`` vaults, and the text caches of all of them together hold at most ``max_cache_chars``
    (least recently used scopes are dropped first; with a store their mappings come back from it)."""

    def __init__(self, master: bytes | None = None, ttl: float = 24 * 3600.0,
                 store: MappingStore | None = None, max_scopes: int = 1024,
                 max_cache_chars: int = 256 * 1024 * 1024, clock: Callable[[], float] | None = None) -> None:
        # The core reads no clock: the proxy passes ``time.time``; without one (tests, benches) time
        # stands still at 0 and mappings live their full TTL.
        self.clock: Callable[[], float] = clock if clock is not None else (lambda: 0.0)
        self.store = store
        self.master = master or (store.master() if store is not None else secrets.token_bytes(32))
        self.ttl = ttl
        self.max_scopes = max_scopes
        self.max_cache_chars = max_cache_chars
        self._vaults: OrderedDict[str, Vault] = OrderedDict()

    def __len__(self) -> int:
        return len(self._vaults)

    def for_scope(self, scope: str) -> Vault:
        vault = self._vaults.get(scope)
        if vault is None:
            key = hmac.new(self.master, scope.encode(), hashlib.sha256).digest()
            entries = self.store.load(scope) if self.store is not None else {}
            vault = self._vaults[scope] = Vault(key, self.ttl, entries, scope=scope, store=self.store,
                                                clock=self.clock)
        else:
            self._vaults.move_to_end(scope)
        total = sum(v.cache.chars for v in self._vaults.values())
        while len(self._vaults) > 1 and (len(self._vaults) > self.max_scopes or total > self.max_cache_chars):
            _, dropped = self._vaults.popitem(last=False)
            total -= dropped.cache.chars
        return vault
