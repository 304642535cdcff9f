"""The admin's in-memory parts without sockets: the summary line, the ring (bound, cursor, filters),
the hour summary, the metrics registry, and the exporter wrapper that counts failed exports."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client.parser import text_string_to_metric_families

from policyproxy.admin.decisions import DecisionRing, Filters, summary
from policyproxy.admin.metrics import AdminMetrics
from policyproxy.telemetry.event import decision_attributes, decision_summary, lifecycle_summary
from policyproxy.telemetry.sink import CountingExporter
from tests.helpers import connect, policy, request

PROFILE = '[permissions.p.network.domains]\n"*" = "allow"\n"evil.test" = "deny"\n'


def record(seq_host: str, decision: str = "allow", reason: str = "allowed", **extra: object) -> dict:
    return {"network.policy.decision": decision, "network.policy.reason": reason, "server.address": seq_host, **extra}


def test_the_summary_line_names_verdict_method_target_reason_rule_client_and_user(tmp_path):
    p = policy(tmp_path, PROFILE)
    denied = connect(p, "evil.test")
    assert decision_summary(denied, "127.0.0.1") == \
        "deny CONNECT evil.test:443 denied (evil.test is denied by 'evil.test') from 127.0.0.1"
    allowed = request(p, "GET", "ok.test", "/a/b", query="token=QueryCanary1")
    line = decision_summary(allowed, "10.0.0.2", "job42")
    assert line.startswith("allow GET ok.test:443/a/b allowed") and line.endswith("from 10.0.0.2 as job42")
    assert "QueryCanary1" not in line
    assert decision_attributes(allowed, user="job42")["enduser.id"] == "job42"
    assert "enduser.id" not in decision_attributes(allowed)


def test_the_lifecycle_body():
    attrs = {"network.policy.profile": "p", "policyproxy.config.digest": "sha256:ab",
             "policyproxy.listeners": ["http=127.0.0.1:3128"]}
    assert lifecycle_summary("policyproxy.start", attrs) == "policyproxy.start profile 'p' sha256:ab http=127.0.0.1:3128"


def test_the_ring_keeps_the_last_n_with_a_cursor():
    ring = DecisionRing(size=3)
    for i in range(5):
        ring.add(record(f"h{i}.test"), now=1000.0 + i)
    assert ring.first == 3 and ring.last == 5
    assert [r["seq"] for r in ring.after(0, Filters(), 10)] == [3, 4, 5]
    assert [r["seq"] for r in ring.after(3, Filters(), 10)] == [4, 5]
    assert [r["seq"] for r in ring.latest(Filters(), 2)] == [4, 5]
    assert ring.after(5, Filters(), 10) == []


def test_a_ring_entry_is_rendered_on_its_first_read_only_and_an_unread_one_never():
    made: list[str] = []

    def lazy(host: str):
        def make() -> dict:
            made.append(host)
            return record(host)
        return make

    ring = DecisionRing(size=3)
    for i in range(5):
        ring.add(lazy(f"h{i}.test"), now=1000.0 + i)
    assert made == []                                   # the sink's per-decision cost: no rendering
    assert [r["server.address"] for r in ring.latest(Filters(), 1)] == ["h4.test"]
    assert made == ["h4.test"]
    assert [r["server.address"] for r in ring.after(0, Filters(), 10)] == ["h2.test", "h3.test", "h4.test"]
    assert [r["server.address"] for r in ring.after(0, Filters(host="h3.test"), 10)] == ["h3.test"]
    assert made == ["h4.test", "h2.test", "h3.test"]   # h0 and h1 left the ring unread: never rendered


def test_the_admin_sink_records_what_the_audit_log_would_say(tmp_path):
    from policyproxy.admin.decisions import AdminSink
    from policyproxy.proxy.outcome import Outcome

    ring, metrics = DecisionRing(), AdminMetrics()
    p = policy(tmp_path, PROFILE)
    AdminSink(ring, metrics)(connect(p, "evil.test"), Outcome("10.0.0.9", "c7", identity="job42"))
    [entry] = ring.latest(Filters(), 10)
    assert entry["seq"] == 1 and entry["event.name"] == "policyproxy.policy_decision"
    assert entry["network.policy.decision"] == "deny" and entry["server.address"] == "evil.test"
    assert entry["client.address"] == "10.0.0.9" and entry["enduser.id"] == "job42"
    assert entry["policyproxy.connection.id"] == "c7" and entry["ts"].endswith("Z")
    families = {f.name: f for f in text_string_to_metric_families(metrics.text().decode())}
    [sample] = [s for s in families["policyproxy_decisions"].samples if s.name.endswith("_total")]
    assert sample.labels == {"decision": "deny", "reason": "denied"} and sample.value == 1


@pytest.mark.parametrize(("query", "hosts"), [
    ({"decision": "DENY"}, ["evil.test"]),
    ({"host": "Evil.Test."}, ["evil.test"]),
    ({"reason": "redacted"}, ["llm.test"]),
    ({"detector": "email"}, ["llm.test", "model.test"]),
    ({"detector": "email", "decision": "deny"}, []),
    ({"host": "  "}, ["ok.test", "evil.test", "llm.test", "model.test"]),
])
def test_filters(query, hosts):
    ring = DecisionRing()
    ring.add(record("ok.test"), 1.0)
    ring.add(record("evil.test", "deny", "denied"), 2.0)
    ring.add(record("llm.test", reason="redacted", **{"redaction.detectors": {"email": 1}}), 3.0)
    ring.add(record("model.test", **{"redaction.response.detectors": {"email": 2}}), 4.0)
    assert [r["server.address"] for r in ring.after(0, Filters.from_query(query), 10)] == hosts


def test_a_waiting_stream_wakes_on_the_next_decision():
    async def scenario() -> float:
        ring = DecisionRing()
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, ring.add, record("x.test"), 1.0)
        started = loop.time()
        await ring.wait(5.0)
        return loop.time() - started

    assert asyncio.run(scenario()) < 1.0


def test_the_hour_summary_buckets_by_minute_and_counts_hosts_and_detectors():
    ring = DecisionRing()
    now = 10_000.0
    ring.add(record("old.test", "deny", "denied"), now - 3700)   # outside the hour
    ring.add(record("evil.test", "deny", "denied"), now - 130)
    ring.add(record("evil.test", "deny", "denied"), now - 5)
    ring.add(record("llm.test", reason="redacted", **{"redaction.detectors": {"email": 2, "phone": 1}}), now - 5)
    body = summary(ring, now)
    assert body["by_reason"]["denied"][-1] == 1 and body["by_reason"]["denied"][-3] == 1
    assert sum(body["by_reason"]["denied"]) == 2 and "old.test" not in str(body)
    assert body["top_denied_hosts"] == [{"host": "evil.test", "count": 2}]
    assert body["redactions_by_detector"] == {"email": 2, "phone": 1}


def test_metrics_use_a_private_registry():
    first, second = AdminMetrics(lambda: {"plain": 1}), AdminMetrics()
    first.decided("deny", "denied", {"email": 2}, 3.0)
    first.reloaded(applied=False)
    families = {f.name: f for f in text_string_to_metric_families(first.text().decode())}
    assert families["policyproxy_decisions"].samples[0].labels == {"decision": "deny", "reason": "denied"}
    assert b'policyproxy_decisions_total{decision="deny"' not in second.text()
    assert any(s.labels == {"result": "refused"} and s.value == 1 for s in families["policyproxy_reloads"].samples)


class _Failing:
    def __init__(self, outcome):
        self.outcome = outcome

    def export(self, batch):
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


def test_failed_exports_are_counted_by_record():
    from opentelemetry.sdk._logs import export

    results = getattr(export, "LogRecordExportResult", None) or export.LogExportResult
    failing = CountingExporter(_Failing(results.FAILURE))
    assert failing.export([1, 2, 3]).name == "FAILURE" and failing.failed == 3
    raising = CountingExporter(_Failing(ConnectionError("collector gone")))
    assert raising.export([1, 2]).name == "FAILURE" and raising.failed == 2
    fine = CountingExporter(_Failing(results.SUCCESS))
    assert fine.export([1]).name == "SUCCESS" and (fine.failed, fine.exported) == (0, 1)
