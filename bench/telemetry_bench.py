"""Decision events: cost on the request path, and events per second delivered end to end.

Run: python bench/telemetry_bench.py [--events 50000]
Goals: under 15 µs per decision on the request path; at least 10,000 decisions/s delivered to an
in-process OTLP receiver with nothing dropped.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from policyproxy.config.schema import OtelSpec  # noqa: E402
from policyproxy.policy.model import Decision, HeaderEdits  # noqa: E402
from policyproxy.proxy.outcome import Outcome  # noqa: E402
from policyproxy.reasons import Protocol, Reason, Source, Verdict  # noqa: E402
from policyproxy.telemetry.audit import AuditFile  # noqa: E402
from policyproxy.telemetry.otel import build_emitter  # noqa: E402
from policyproxy.telemetry.sink import TelemetrySink  # noqa: E402
from tests.shell.otlp import GrpcReceiver, HttpReceiver  # noqa: E402

DECISION = Decision(Verdict.ALLOW, Reason.HOOK_MATCHED, Source.PROFILE, "bench", Protocol.HTTPS_MITM, "api.github.com",
                    443, "POST", "/repos/myorg/site/issues", "github_write", ("strip", "inject"),
                    HeaderEdits(("authorization", "cookie")))
CONTEXT = Outcome("127.0.0.1", "c42", 201)


def run(exporter: str, events: int) -> None:
    receiver = GrpcReceiver() if exporter == "otlp-grpc" else HttpReceiver()
    spec = OtelSpec(exporter=exporter, endpoint=f"http://127.0.0.1:{receiver.port}")
    with tempfile.TemporaryDirectory() as tmp:
        sink = TelemetrySink(AuditFile(Path(tmp) / "audit.jsonl"),
                             build_emitter(spec, "bench", env={}, queue_size=events))
        start = time.perf_counter()
        for _ in range(events):
            sink(DECISION, CONTEXT)
        on_path = (time.perf_counter() - start) / events * 1e6
        while len(receiver.records) < events and time.perf_counter() - start < 120:
            time.sleep(0.01)
        elapsed = time.perf_counter() - start
        delivered = len(receiver.records)
        sink.close(timeout=10)
        lines = len((Path(tmp) / "audit.jsonl").read_text().splitlines())
    receiver.close()
    dropped = sink.otel.dropped if sink.otel else 0
    print(f"{exporter:10} request path {on_path:6.2f} µs/decision (goal < 15); delivered {delivered}/{events} in "
          f"{elapsed:.2f} s = {delivered / elapsed:,.0f}/s (goal >= 10,000); dropped {dropped}; audit lines {lines}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=50_000)
    args = parser.parse_args()
    for exporter in ("otlp-grpc", "otlp-http"):
        run(exporter, args.events)


if __name__ == "__main__":
    main()
