"""Every decision as one OpenTelemetry event and one audit line, delivered to real OTLP receivers,
with nothing secret in either; a slow or dead collector never slows proxying."""

import json
import signal
import socket
import ssl
import statistics
import time

import httpx
import pytest

from policyproxy.telemetry.audit import read_records
from tests.shell.otlp import GrpcReceiver, HangingCollector, HttpReceiver

TOKEN = "ghp_InjectedCanaryTokenValue00000000001"
FULL = """
[permissions.t.network.domains]
"*" = "allow"
"denied.test" = "deny"
[permissions.t.network.mitm.hooks.gh]
host = "api.github.com"
methods = ["POST"]
path_prefixes = ["/repos/myorg/"]
action = ["swap"]
[permissions.t.network.mitm.actions.swap]
strip_request_headers = ["authorization", "cookie", "x-api-key"]
[[permissions.t.network.mitm.actions.swap.inject_request_headers]]
name = "authorization"
secret_env_var = "CANARY_ENV_TOKEN"
prefix = "Bearer "
[[permissions.t.network.mitm.actions.swap.inject_request_headers]]
name = "x-file-token"
secret_file = "FILE"
[permissions.t.network.redaction]
[permissions.t.network.redaction.detectors]
us_ssn = "block"
"""
LIMITED = """
[permissions.l.network]
mode = "limited"
[permissions.l.network.mitm]
enabled = false
[permissions.l.network.domains]
"*" = "allow"
"""


def wait_for(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def raw_connect(proxy, target):
    with socket.create_connection(("127.0.0.1", proxy.http_port), 10) as s:
        s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        return s.recv(4096)


@pytest.fixture(scope="module")
def grpc_receiver():
    receiver = GrpcReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def http_receiver():
    receiver = HttpReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def file_secret(tmp_path_factory):
    path = tmp_path_factory.mktemp("secret") / "token"
    path.write_text("FileCanarySecret_9f8e7d6c5b4a\n")
    return path


@pytest.fixture(scope="module")
def full(start_proxy, grpc_receiver, file_secret):
    config = FULL.replace("FILE", str(file_secret)) + \
        f'[otel]\nexporter = {{ otlp-grpc = {{ endpoint = "http://127.0.0.1:{grpc_receiver.port}" }} }}\n'
    return start_proxy(config, env={"CANARY_ENV_TOKEN": TOKEN}, extra=["--admin-listen", "127.0.0.1:0"])


@pytest.fixture(scope="module")
def limited(start_proxy, http_receiver):
    return start_proxy(LIMITED + f'[otel]\nexporter = "otlp-http"\nendpoint = "http://127.0.0.1:{http_receiver.port}"\n')


def client(proxy):
    return httpx.Client(proxy=proxy.url, verify=ssl.create_default_context(cafile=str(proxy.bundle)), timeout=20)


def drive_every_reason(full, limited, upstream):
    up = upstream.tls_port
    with client(full) as c:
        c.get(f"http://tunnel.test:{upstream.plain_port}/allowed")                                   # allowed
        c.get("http://denied.test/")                                                                # denied
        c.get(f"http://127.0.0.1:{upstream.plain_port}/")                                           # not_allowed_local
        c.post(f"https://api.github.com:{up}/repos/myorg/x", json={})                               # hook_matched
        c.delete(f"https://api.github.com:{up}/repos/myorg/x")                                      # mitm_hook_denied
        c.post(f"https://api.anthropic.com:{up}/v1/messages",
               json={"model": "m", "messages": [{"role": "user", "content": "key AKIAZ7PQ3LXRN4TW2KJD"}]})  # redacted
        c.post(f"https://api.anthropic.com:{up}/v1/messages",
               json={"model": "m", "messages": [{"role": "user", "content": "ssn 123-45-6789"}]})          # pii_blocked
        c.post(f"https://api.anthropic.com:{up}/v1/messages", content=b"{not json")                 # inspection_failed
    raw_connect(full, "bad..host:443")                                                               # not_allowed
    with client(limited) as c:
        c.post(f"http://tunnel.test:{upstream.plain_port}/x")                                       # method_not_allowed
    raw_connect(limited, f"tunnel.test:{up}")                                                        # mitm_required


EXPECTED = {
    "allowed": "allow", "denied": "deny", "not_allowed_local": "deny", "hook_matched": "allow",
    "mitm_hook_denied": "deny", "redacted": "allow", "pii_blocked": "deny", "inspection_failed": "deny",
    "not_allowed": "deny", "method_not_allowed": "deny", "mitm_required": "deny",
}


@pytest.fixture(scope="module")
def driven(full, limited, upstream, grpc_receiver, http_receiver):
    drive_every_reason(full, limited, upstream)

    def decisions():   # lifecycle events (policyproxy.start, .stop) share the exporter
        return [r for r in grpc_receiver.records + http_receiver.records
                if r["event_name"] == "policyproxy.policy_decision"]

    assert wait_for(lambda: {r["attributes"]["network.policy.reason"] for r in decisions()} >= set(EXPECTED))
    return decisions()


@pytest.mark.parametrize("reason", sorted(EXPECTED))
def test_each_reason_reaches_the_collector_as_one_event(driven, reason):
    records = [r for r in driven if r["attributes"]["network.policy.reason"] == reason]
    assert records, reason
    record = records[0]
    assert record["event_name"] == "policyproxy.policy_decision"
    assert record["attributes"]["network.policy.decision"] == EXPECTED[reason]
    assert record["severity_text"] == ("INFO" if EXPECTED[reason] == "allow" else "WARN")
    assert record["time_unix_nano"] > 0
    assert record["resource"]["service.name"] == "policyproxy"
    assert {"service.version", "host.name", "policyproxy.profile"} <= set(record["resource"])


def test_event_attributes_follow_the_contract(driven):
    hooked = next(r for r in driven if r["attributes"]["network.policy.reason"] == "hook_matched")["attributes"]
    assert hooked["network.policy.hook"] == "gh"
    assert hooked["network.transport.protocol"] == "https_mitm"
    assert hooked["headers.injected"] == ["authorization", "x-file-token"]
    assert "authorization" in hooked["headers.stripped"]
    assert hooked["url.path"] == "/repos/myorg/x" and hooked["http.request.method"] == "POST"
    assert hooked["server.address"] == "api.github.com" and hooked["client.address"] == "127.0.0.1"
    redacted = next(r for r in driven if r["attributes"]["network.policy.reason"] == "redacted")["attributes"]
    assert redacted["redaction.count"] == 1 and redacted["redaction.detectors.aws_access_key"] == 1


def test_the_audit_log_holds_the_same_decisions(driven, full, limited):
    lines = list(read_records(full.home / "audit.jsonl")) + list(read_records(limited.home / "audit.jsonl"))
    assert {line.get("network.policy.reason") for line in lines} >= set(EXPECTED)
    assert lines[0]["event.name"] == "policyproxy.start"   # then the decisions
    line = lines[1]
    assert line["event.name"] == "policyproxy.policy_decision" and line["ts"].endswith("Z")


def test_no_canary_reaches_the_log_the_exporter_or_the_console(full, upstream, grpc_receiver, file_secret):
    canaries = ["CanaryAuthHeader7731", "CanaryCookie8842", "CanaryApiKey9953", "CanaryBody1064",
                "CanaryQuery2175", "AKIACANARY7PQ3LXRN4T", TOKEN, "FileCanarySecret_9f8e7d6c5b4a"]
    with client(full) as c:
        for path in ("/repos/myorg/x", "/repos/other/y"):    # hooked (allowed) and hooked (denied)
            c.post(f"https://api.github.com:{upstream.tls_port}{path}?token=CanaryQuery2175",
                   headers={"Authorization": "Bearer CanaryAuthHeader7731", "Cookie": "s=CanaryCookie8842",
                            "X-Api-Key": "CanaryApiKey9953"}, content=b'{"note": "CanaryBody1064"}')
        c.post(f"https://api.anthropic.com:{upstream.tls_port}/v1/messages?q=CanaryQuery2175",
               headers={"X-Api-Key": "CanaryApiKey9953"},
               json={"model": "m", "messages": [{"role": "user", "content": "AKIACANARY7PQ3LXRN4T CanaryBody1064"}]})
        c.get("http://denied.test/?x=CanaryQuery2175", headers={"Cookie": "CanaryCookie8842"})
    wait_for(lambda: len(grpc_receiver.payloads) > 0)
    time.sleep(1.0)
    audit = (full.home / "audit.jsonl").read_text()
    exported = b"".join(grpc_receiver.payloads)
    console = "".join(full.output) + full.logs()
    admin = admin_pages(full)
    assert "CanaryQuery" not in admin and "/repos/myorg/x" in admin   # the decisions are there, not the values
    for canary in canaries:
        assert canary not in audit, canary
        assert canary.encode() not in exported, canary
        assert canary not in console, canary
        assert canary not in admin, canary


def admin_pages(proxy) -> str:
    """Every admin endpoint and the page, the SSE stream replayed from the start (read for 2 s)."""
    from tests.shell.test_admin import admin_url

    url = admin_url(proxy)
    texts = []
    with httpx.Client(trust_env=False, timeout=10) as admin:
        for path in ("", "healthz", "readyz", "metrics", "api/status", "api/decisions?limit=2000",
                     "api/summary", "api/profile"):
            response = admin.get(url + path)
            assert response.status_code == 200, path
            texts.append(response.text)
        with admin.stream("GET", url + "api/decisions/stream?after=0", timeout=httpx.Timeout(10, read=2)) as response:
            try:
                for line in response.iter_lines():   # the whole ring is replayed, then the stream goes quiet
                    texts.append(line)
            except httpx.ReadTimeout:
                pass
    assert any(text.startswith("event: decision") for text in texts)
    return "\n".join(texts)


def test_audit_cli_tail_and_stats(driven, full):
    import subprocess
    import sys

    audit = full.home / "audit.jsonl"
    tail = subprocess.run([sys.executable, "-m", "policyproxy", "audit", "tail", "--file", str(audit),
                           "--decision", "deny", "--lines", "50"], capture_output=True, text=True, timeout=30)
    assert tail.returncode == 0 and "denied" in tail.stdout and " allow " not in tail.stdout
    stats = subprocess.run([sys.executable, "-m", "policyproxy", "audit", "stats", "--file", str(audit), "--json"],
                           capture_output=True, text=True, timeout=30)
    counts = json.loads(stats.stdout)
    assert counts["decision"]["deny"] >= 1 and counts["reason"]["hook_matched"] >= 1
    assert counts["detector"]["aws_access_key"] >= 1


@pytest.mark.parametrize("collector", ["down", "hanging"])
def test_a_bad_collector_never_slows_proxying_and_drops_are_reported(start_proxy, upstream, collector):
    hanging = HangingCollector() if collector == "hanging" else None
    port = hanging.port if hanging else 9   # nothing listens on the discard port here
    config = ('[permissions.t.network.domains]\n"*" = "allow"\n'
              f'[otel]\nexporter = "otlp-http"\nendpoint = "http://127.0.0.1:{port}"\nmax_queue_size = 8\n')
    baseline = start_proxy('[permissions.t.network.domains]\n"*" = "allow"\n')
    proxy = start_proxy(config)
    url = f"http://tunnel.test:{upstream.plain_port}/x"

    def latencies(via):
        out = []
        with httpx.Client(proxy=via.url, timeout=20) as c:
            for _ in range(150):
                start = time.perf_counter()
                assert c.get(url).status_code == 200
                out.append(time.perf_counter() - start)
        return out

    base, bad = latencies(baseline), latencies(proxy)
    assert statistics.median(bad) < statistics.median(base) * 2 + 0.002
    assert sorted(bad)[int(len(bad) * 0.99)] < 0.1
    proxy.signal(signal.SIGTERM)
    proxy.process.wait(30)
    if hanging:
        assert "dropped" in proxy.logs()
        hanging.close()
    decisions = [r for r in read_records(proxy.home / "audit.jsonl") if r["event.name"] == "policyproxy.policy_decision"]
    assert len(decisions) == 150   # the audit log loses nothing


def test_optional_metrics_count_decisions_latency_and_connections(start_proxy, upstream):
    from tests.shell.otlp import GrpcMetricsReceiver

    receiver = GrpcMetricsReceiver()
    config = ('[permissions.t.network.domains]\n"*" = "allow"\n"denied.test" = "deny"\n'
              f'[otel]\nmetrics_exporter = {{ otlp-grpc = {{ endpoint = "http://127.0.0.1:{receiver.port}" }} }}\n')
    proxy = start_proxy(config, env={"OTEL_METRIC_EXPORT_INTERVAL": "300"})
    with httpx.Client(proxy=proxy.url, timeout=20) as c:
        for _ in range(5):
            assert c.get(f"http://tunnel.test:{upstream.plain_port}/m").status_code == 200
        assert c.get("http://denied.test/").status_code == 403
        assert wait_for(lambda: {"policyproxy.decisions", "policyproxy.added_latency",
                                 "policyproxy.connections.open"} <= set(receiver.points))
        assert wait_for(lambda: any(a.get("network.policy.reason") == "allowed" and v >= 5
                                    for a, v in receiver.points["policyproxy.decisions"]))
    assert any(a.get("network.policy.reason") == "denied" for a, _ in receiver.points["policyproxy.decisions"])
    assert any(v >= 5 for _, v in receiver.points["policyproxy.added_latency"])
    assert any(a.get("kind") == "plain" for a, _ in receiver.points["policyproxy.connections.open"])
    receiver.close()


@pytest.mark.parametrize("protocol", ["grpc", "http/protobuf"])
def test_standard_otel_environment_works_without_any_config(start_proxy, upstream, protocol):
    receiver = GrpcReceiver() if protocol == "grpc" else HttpReceiver()
    proxy = start_proxy('[permissions.t.network.domains]\n"*" = "allow"\n',
                        env={"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.port}",
                             "OTEL_EXPORTER_OTLP_PROTOCOL": protocol})
    with httpx.Client(proxy=proxy.url, timeout=20) as c:
        assert c.get(f"http://tunnel.test:{upstream.plain_port}/env").status_code == 200
    assert wait_for(lambda: any(r["attributes"].get("url.path") == "/env" for r in receiver.records))
    receiver.close()


def test_otel_sdk_disabled_turns_the_environment_exporter_off(start_proxy, upstream):
    receiver = GrpcReceiver()
    proxy = start_proxy('[permissions.t.network.domains]\n"*" = "allow"\n',
                        env={"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.port}",
                             "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_SDK_DISABLED": "true"})
    assert "OpenTelemetry: off" in "".join(proxy.output)
    with httpx.Client(proxy=proxy.url, timeout=20) as c:
        assert c.get(f"http://tunnel.test:{upstream.plain_port}/off").status_code == 200
    time.sleep(1.0)
    assert receiver.records == []
    receiver.close()


@pytest.mark.parametrize("ts_ns", [0, 999_999, 1_000_000, 1_764_675_376_999_999_999, 1_764_675_377_000_000_000,
                                   1_764_675_377_123_456_789, 4_102_444_799_999_000_000])
def test_the_audit_timestamp_is_rfc3339_utc_milliseconds_truncated(ts_ns):
    from datetime import datetime, timezone

    from policyproxy.telemetry.sink import _audit_line

    seconds, rest = divmod(ts_ns, 1_000_000_000)
    want = datetime.fromtimestamp(seconds, timezone.utc).replace(microsecond=rest // 1000)
    line = _audit_line(ts_ns, {"server.address": "a.test"})
    assert line["ts"] == want.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert list(line)[:2] == ["ts", "event.name"]
