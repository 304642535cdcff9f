"""Recent decisions for ``/api/decisions`` and the page: a bounded ring fed by a decision sink.

The sink runs on the event loop for every decision, so it does O(1) work: append the decision to a
``deque(maxlen=...)``, bump the Prometheus counters, and wake the SSE streams (one ``asyncio.Event``;
each stream then reads the ring from its own cursor, so a slow stream never holds memory or blocks the
sink). The audit JSON of an entry (the same attributes as the audit log line, ``telemetry/event.py``)
is rendered when it is first read, once: most entries leave the ring unread.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import itertools
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from policyproxy.admin.metrics import AdminMetrics
from policyproxy.policy.model import Decision
from policyproxy.proxy.outcome import Outcome
from policyproxy.telemetry.event import audit_record, decision_attributes

RING_SIZE = 2000


@dataclass(frozen=True)
class Filters:
    """What ``/api/decisions`` keeps: each given field must match (host and names case-insensitive)."""

    decision: str | None = None
    host: str | None = None
    reason: str | None = None
    detector: str | None = None

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> Filters:
        def one(name: str) -> str | None:
            value = query.get(name, "").strip().lower()
            return value or None

        return cls(one("decision"), (one("host") or "").rstrip(".") or None, one("reason"), one("detector"))

    def keep(self, record: Mapping[str, Any]) -> bool:
        if self.decision and record.get("network.policy.decision") != self.decision:
            return False
        if self.host and str(record.get("server.address", "")).lower().rstrip(".") != self.host:
            return False
        if self.reason and record.get("network.policy.reason") != self.reason:
            return False
        return not self.detector or self.detector in record.get("redaction.detectors", {}) \
            or self.detector in record.get("redaction.response.detectors", {})


Record = dict[str, Any]


class _Entry:
    """One decision in the ring; its record is made on the first read."""

    __slots__ = ("made", "make", "seq", "when")

    def __init__(self, seq: int, when: float, record: Record | Callable[[], Record]) -> None:
        self.seq = seq
        self.when = when
        self.made: Record | None = None if callable(record) else record
        self.make = record if callable(record) else None

    @property
    def record(self) -> Record:
        if self.made is None:
            assert self.make is not None
            self.made, self.make = self.make(), None
        return self.made


class DecisionRing:
    """The last ``size`` decisions as ``(seq, record)``; ``seq`` starts at 1 and never repeats."""

    def __init__(self, size: int = RING_SIZE) -> None:
        self.items: collections.deque[_Entry] = collections.deque(maxlen=size)
        self._seq = itertools.count(1)
        self.last = 0
        self._changed: asyncio.Event | None = None

    def add(self, record: Record | Callable[[], Record], now: float) -> int:
        """``record`` is the entry's audit record, or what makes it when it is first read."""
        self.last = seq = next(self._seq)
        self.items.append(_Entry(seq, now, record))
        if self._changed is not None:
            self._changed.set()
            self._changed = None
        return seq

    def wake(self) -> None:
        """Wake every waiting stream (the listener is stopping)."""
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    async def wait(self, timeout: float) -> None:
        """Until a decision is added (or ``timeout`` seconds pass)."""
        if self._changed is None:
            self._changed = asyncio.Event()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)

    @property
    def first(self) -> int:
        return self.items[0].seq if self.items else self.last + 1

    def after(self, cursor: int, filters: Filters, limit: int) -> list[dict[str, Any]]:
        """Records with ``seq > cursor`` that pass ``filters``, oldest first, at most ``limit``."""
        out = []
        for entry in self.items:
            if entry.seq > cursor and filters.keep(entry.record):
                out.append({"seq": entry.seq, **entry.record})
                if len(out) >= limit:
                    break
        return out

    def latest(self, filters: Filters, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` records that pass ``filters``, oldest first."""
        out = []
        for entry in reversed(self.items):
            if filters.keep(entry.record):
                out.append({"seq": entry.seq, **entry.record})
                if len(out) >= limit:
                    break
        out.reverse()
        return out

    def since(self, cutoff: float) -> Iterable[tuple[float, dict[str, Any]]]:
        return ((entry.when, entry.record) for entry in self.items if entry.when >= cutoff)


def summary(ring: DecisionRing, now: float, window: float = 3600.0, top: int = 10) -> dict[str, Any]:
    """The page's panels over the last ``window`` seconds of what the ring holds: counts by reason per
    minute, top denied hosts, redactions by detector."""
    minutes = int(window // 60)
    by_reason: dict[str, list[int]] = {}
    denied: collections.Counter[str] = collections.Counter()
    detectors: collections.Counter[str] = collections.Counter()
    for when, record in ring.since(now - window):
        slot = min(minutes - 1, int((now - when) // 60))
        reason = str(record.get("network.policy.reason"))
        by_reason.setdefault(reason, [0] * minutes)[minutes - 1 - slot] += 1
        if record.get("network.policy.decision") == "deny":
            denied[str(record.get("server.address"))] += 1
        detectors.update(record.get("redaction.detectors", {}))
    return {"window_seconds": window, "minutes": minutes, "by_reason": by_reason,
            "top_denied_hosts": [{"host": h, "count": c} for h, c in denied.most_common(top)],
            "redactions_by_detector": dict(detectors.most_common()),
            "oldest_seq": ring.first, "ring_size": ring.items.maxlen}


class AdminSink:
    """A decision sink for ``ProxyServer.sinks``: the ring and the Prometheus counters."""

    def __init__(self, ring: DecisionRing, metrics: AdminMetrics) -> None:
        self.ring = ring
        self.metrics = metrics

    def __call__(self, decision: Decision, outcome: Outcome) -> None:
        now = time.time()
        self.ring.add(functools.partial(_record, decision, outcome, now), now)
        self.metrics.decided(decision.verdict.value, decision.reason.value, outcome.redactions, outcome.added_ms)


def _record(decision: Decision, outcome: Outcome, when: float) -> Record:
    """The audit record of a reported decision (its outcome is complete once reported)."""
    attributes = decision_attributes(decision, client=outcome.client, status=outcome.status,
                                     connection_id=outcome.connection_id, redactions=outcome.redactions,
                                     emitted=outcome.emitted, user=outcome.identity,
                                     protocol_version=outcome.protocol_version)
    return audit_record(attributes, datetime.fromtimestamp(when, timezone.utc))
