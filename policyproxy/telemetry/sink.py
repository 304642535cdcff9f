"""The decision sink: cheap on the request path, everything expensive on one telemetry thread.

The request path builds the attributes (pure) and appends to a bounded queue. The thread writes the
audit log (its own writer: it never goes through the OpenTelemetry batch processor, which drops
silently when full) and emits OpenTelemetry log records through the SDK's LoggerProvider and batching
processor. A slow or dead collector only fills the SDK's queue; those drops are counted and reported
once a minute and at shutdown. Shutdown flushes within a bound.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from datetime import datetime, timezone
from typing import Any

from policyproxy.policy.model import Decision
from policyproxy.proxy.outcome import Outcome
from policyproxy.telemetry.audit import AuditFile
from policyproxy.telemetry.event import EVENT_NAME, decision_attributes, decision_summary, lifecycle_summary

# (timestamp ns, attributes, allowed (INFO) or not (WARN), added ms, event name, body: the one-line summary)
Queued = tuple[int, dict[str, Any], bool, "float | None", str, str]

log = logging.getLogger("policyproxy.telemetry")
# The request path does not wake the thread per event: the thread delivers every BATCH_WINDOW seconds
# (or as soon as WAKE_AT events wait), so a busy proxy pays one wake-up and one audit write per batch.
BATCH_WINDOW = 0.05
WAKE_AT = 256


class TelemetrySink:
    """Callable as a decision sink: ``sink(decision, outcome)`` (``policyproxy.proxy.outcome.Outcome``)."""

    def __init__(self, audit: AuditFile | None, otel: OtelEmitter | None, max_pending: int = 100_000,
                 report_every: float = 60.0, metrics: Any = None) -> None:
        self.audit = audit
        self.otel = otel
        self.metrics = metrics
        self.max_pending = max_pending
        self.report_every = report_every
        self._queue: collections.deque[Queued] = collections.deque()
        self._wake = threading.Event()
        self._stop = False
        self.dropped_here = 0    # our own queue overflowed (the audit log could not keep up)
        self._thread = threading.Thread(target=self._run, name="policyproxy-telemetry", daemon=True)
        self._thread.start()

    def __call__(self, decision: Decision, outcome: Outcome) -> None:
        if len(self._queue) >= self.max_pending:
            self.dropped_here += 1
            return
        attributes = decision_attributes(decision, client=outcome.client, status=outcome.status,
                                         connection_id=outcome.connection_id, redactions=outcome.redactions,
                                         emitted=outcome.emitted,
                                         genai=outcome.genai.attributes() if outcome.genai is not None else None,
                                         user=outcome.identity, protocol_version=outcome.protocol_version)
        body = decision_summary(decision, outcome.client, outcome.identity) if self.otel is not None else ""
        self._queue.append((time.time_ns(), attributes, decision.allowed, outcome.added_ms, EVENT_NAME, body))
        if len(self._queue) == WAKE_AT:
            self._wake.set()

    def lifecycle(self, name: str, attributes: dict[str, Any], warn: bool = False) -> None:
        """A lifecycle event (``policyproxy.reload``...): same audit log and exporter, its own name.
        Never dropped for a full queue: there are few, and the SIEM must see each one."""
        self._queue.append((time.time_ns(), attributes, not warn, None, name, lifecycle_summary(name, attributes)))
        self._wake.set()

    def _run(self) -> None:
        last_report = time.monotonic()
        reported = (0, 0)
        while True:
            self._wake.wait(BATCH_WINDOW)
            self._wake.clear()
            batch = []
            while self._queue:
                batch.append(self._queue.popleft())
            if batch:
                self._deliver(batch)
            now = time.monotonic()
            if now - last_report >= self.report_every:
                last_report = now
                reported = self._report(reported)
            if self._stop and not self._queue:
                return

    def _deliver(self, batch: list[Queued]) -> None:
        if self.audit is not None:
            try:
                self.audit.write([_audit_line(ts, attrs, name) for ts, attrs, _, _, name, _ in batch])
            except OSError as exc:
                log.error("audit log write failed: %s", exc.strerror or exc)
        if self.otel is not None:
            self.otel.emit(batch)
        if self.metrics is not None:
            for _, attrs, _, added_ms, name, _ in batch:
                if name == EVENT_NAME:
                    self.metrics.record(attrs, added_ms)

    def stats(self) -> dict[str, int]:
        """Counts for /metrics (read from the event loop while the telemetry thread writes: ints only)."""
        otel = self.otel
        return {"pending": len(self._queue), "dropped_pending": self.dropped_here,
                "otlp_queue": (otel.queue_length() or 0) if otel else 0, "otlp_dropped": otel.dropped if otel else 0,
                "otlp_failed": otel.failed if otel else 0}

    def _report(self, reported: tuple[int, int]) -> tuple[int, int]:
        dropped = (self.otel.dropped if self.otel else 0) + self.dropped_here
        failed = self.otel.failed if self.otel else 0
        if dropped > reported[0]:
            log.warning("policyproxy: %d decision events dropped so far (%d since the last report): "
                        "the collector is slow or down", dropped, dropped - reported[0])
        if failed > reported[1]:
            log.warning("policyproxy: %d events failed to export so far (%d since the last report): "
                        "the collector refused them or is unreachable", failed, failed - reported[1])
        return dropped, failed

    def close(self, timeout: float = 5.0) -> None:
        """Deliver what is queued, flush the audit log and the exporter, within ``timeout`` seconds."""
        self._stop = True
        self._wake.set()
        self._thread.join(timeout)
        if self.audit is not None:
            self.audit.close()
        if self.otel is not None:
            self.otel.close(timeout)
        if self.metrics is not None:
            self.metrics.close(timeout)
        dropped = (self.otel.dropped if self.otel else 0) + self.dropped_here
        if dropped:
            log.warning("policyproxy: %d decision events were dropped in total (collector slow or down)", dropped)
        if self.otel is not None and self.otel.failed:
            log.warning("policyproxy: %d events failed to export in total (collector refused them or is "
                        "unreachable)", self.otel.failed)


def _audit_line(ts_ns: int, attributes: dict[str, Any], name: str = EVENT_NAME) -> dict[str, Any]:
    return {"ts": _rfc3339_ms(ts_ns), "event.name": name, **attributes}


_second: tuple[int, str] = (-1, "")


def _rfc3339_ms(ts_ns: int) -> str:
    """``2026-12-02T11:36:16.123Z``: the seconds part formatted once per second (a busy proxy writes
    thousands of lines a second from this one thread), the milliseconds appended."""
    global _second
    seconds, ms = divmod(ts_ns // 1_000_000, 1000)
    if _second[0] != seconds:
        _second = (seconds, datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"))
    return f"{_second[1]}.{ms:03d}Z"


class OtelEmitter:
    """The OpenTelemetry side: a LoggerProvider with a batching processor whose drops are counted."""

    def __init__(self, provider: Any, processor: Any, capacity: int, exporter: CountingExporter | None = None) -> None:
        from opentelemetry._logs import SeverityNumber

        self.provider = provider
        self.processor = processor
        self.capacity = capacity
        self.exporter = exporter
        self.logger = provider.get_logger("policyproxy")
        self.dropped = 0
        self._info, self._warn = SeverityNumber.INFO, SeverityNumber.WARN

    @property
    def failed(self) -> int:
        """Records the exporter could not deliver (a FAILURE result or an exception); drops for a
        full queue are ``dropped``."""
        return self.exporter.failed if self.exporter is not None else 0

    def queue_length(self) -> int | None:
        return self._queue_length()

    def _queue_length(self) -> int | None:
        # The SDK drops silently when its queue is full; its length is read to count those drops.
        queue = getattr(getattr(self.processor, "_batch_processor", None), "_queue", None)
        return len(queue) if queue is not None else None

    def emit(self, batch: list[Queued]) -> None:
        for ts, attributes, allowed, _, name, body in batch:
            length = self._queue_length()
            if length is not None and length >= self.capacity:
                self.dropped += 1
                continue
            self.logger.emit(timestamp=ts, observed_timestamp=ts, event_name=name,
                             severity_number=self._info if allowed else self._warn,
                             severity_text="INFO" if allowed else "WARN", body=body,
                             attributes=_otel_attributes(attributes))

    def close(self, timeout: float) -> None:
        """Flush and shut down, never longer than ``timeout`` (a hung collector must not hold a stop)."""
        done = threading.Event()

        def finish() -> None:
            self.provider.force_flush(int(timeout * 1000))
            self.provider.shutdown()
            done.set()

        threading.Thread(target=finish, name="policyproxy-otel-close", daemon=True).start()
        if not done.wait(timeout):
            log.warning("policyproxy: the collector did not take the last events within %.0f s", timeout)


def _otel_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    """OTel attribute values are scalars or homogeneous lists: the detector map is flattened."""
    out = {}
    for key, value in attributes.items():
        if isinstance(value, dict):
            for name, count in value.items():
                out[f"{key}.{name}"] = count
        else:
            out[key] = value
    return out



class CountingExporter:
    """Wraps the SDK's log exporter to count what it fails to deliver: a ``FAILURE`` result
    (refused, unreachable after the SDK's retries) or an exception counts every record of the batch.
    The SDK itself only logs those; a SIEM team needs the number (``/metrics``, the minute report)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.failed = 0
        self.exported = 0

    def export(self, batch: Any) -> Any:
        # SDK 1.39+ returns ``LogRecordExportResult``; older ones ``LogExportResult``: compare by name.
        from opentelemetry.sdk._logs import export

        try:
            result = self.inner.export(batch)
        except Exception as exc:   # an exporter bug or transport error must not kill the export thread
            self.failed += len(batch)
            log.debug("OTLP export raised %s", type(exc).__name__)
            return getattr(export, "LogRecordExportResult", getattr(export, "LogExportResult", None)).FAILURE
        if getattr(result, "name", None) == "FAILURE":
            self.failed += len(batch)
        else:
            self.exported += len(batch)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        flush = getattr(self.inner, "force_flush", None)
        return bool(flush(timeout_millis)) if flush is not None else True
