"""The admin listener's data on a real ``policyproxy serve``: ``/metrics`` read by Prometheus' own
parser, ``/api/decisions`` (filters, cursor, bounded ring, live SSE), ``/api/summary`` and
``/api/profile``, after real requests through the proxy (httpx, raw sockets, SOCKS5 via curl)."""

from __future__ import annotations

import json
import signal
import socket
import ssl
import subprocess
import threading
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.shell.test_admin import ADMIN, admin_url

CONFIG = """
[permissions.p.network.domains]
"*" = "allow"
"**.denied.test" = "deny"
[permissions.p.network.redaction]
"""


def wait_for(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def admin_get(url: str, **params) -> httpx.Response:
    with httpx.Client(trust_env=False, timeout=10) as c:   # straight to the admin, never through a proxy
        return c.get(url, params=params)


def samples(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every sample of /metrics by sample name, parsed with prometheus_client's own parser."""
    response = admin_get(url + "metrics")
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def value(found, name: str, **labels: str) -> float:
    return sum(v for got, v in found.get(name, []) if all(got.get(k) == x for k, x in labels.items()))


def client(proxy) -> httpx.Client:
    return httpx.Client(proxy=proxy.url, verify=ssl.create_default_context(cafile=str(proxy.bundle)), timeout=20)


@pytest.fixture(scope="module")
def proxy(start_proxy):
    return start_proxy(CONFIG, extra=ADMIN)


def test_metrics_count_decisions_redactions_latency_and_connections(proxy, upstream):
    url = admin_url(proxy)
    before = samples(url)
    with client(proxy) as c:
        for _ in range(3):
            assert c.get(f"http://tunnel.test:{upstream.plain_port}/m").status_code == 200
        assert c.get("http://denied.test/").status_code == 403
        assert c.post(f"https://api.anthropic.com:{upstream.tls_port}/v1/messages",
                      json={"model": "m", "messages": [{"role": "user", "content": "mail jane.doe@example.org"}]}
                      ).status_code == 200
        found = samples(url)   # while the client's connections are open
    allowed = value(found, "policyproxy_decisions_total", decision="allow", reason="allowed")
    assert allowed - value(before, "policyproxy_decisions_total", decision="allow", reason="allowed") >= 3
    assert value(found, "policyproxy_decisions_total", decision="deny", reason="denied") >= 1
    assert value(found, "policyproxy_decisions_total", decision="allow", reason="redacted") >= 1
    assert value(found, "policyproxy_redactions_total", detector="email") >= 1
    assert value(found, "policyproxy_added_latency_seconds_count") >= 4
    assert value(found, "policyproxy_added_latency_seconds_bucket", le="+Inf") >= 4
    assert {labels["kind"] for labels, _ in found["policyproxy_open_connections"]} == {"plain", "tunnel", "intercepted"}
    assert value(found, "policyproxy_open_connections", kind="plain") >= 1
    for name in ("policyproxy_otlp_queue_depth", "policyproxy_otlp_dropped_total",
                 "policyproxy_otlp_export_failed_total", "policyproxy_reloads_total"):
        assert name in found, name


def test_reloads_applied_and_refused_are_counted(start_proxy):
    proxy = start_proxy(CONFIG, extra=ADMIN)
    url = admin_url(proxy)
    proxy.signal(signal.SIGHUP)
    assert wait_for(lambda: value(samples(url), "policyproxy_reloads_total", result="applied") == 1)
    proxy.config.write_text(CONFIG + "\n[permissions.p.network.bogus]\n")
    proxy.signal(signal.SIGHUP)
    assert wait_for(lambda: value(samples(url), "policyproxy_reloads_total", result="refused") == 1)
    assert value(samples(url), "policyproxy_reloads_total", result="applied") == 1


def test_failed_exports_to_a_dead_collector_are_counted(start_proxy, upstream):
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()   # nothing listens there now: every export is refused
    proxy = start_proxy(CONFIG + f'[otel]\nexporter = "otlp-http"\nendpoint = "http://127.0.0.1:{port}"\n',
                        extra=ADMIN, env={"OTEL_EXPORTER_OTLP_TIMEOUT": "1"})
    url = admin_url(proxy)
    with client(proxy) as c:
        for _ in range(5):
            assert c.get(f"http://tunnel.test:{upstream.plain_port}/dead").status_code == 200
    assert wait_for(lambda: value(samples(url), "policyproxy_otlp_export_failed_total") >= 5, timeout=30)
    proxy.stop()
    assert "failed to export" in proxy.logs()


def test_decisions_api_filters_and_cursor(proxy, upstream):
    url = admin_url(proxy) + "api/decisions"
    start = admin_get(url).json()["last_seq"]
    with client(proxy) as c:
        c.get(f"http://tunnel.test:{upstream.plain_port}/one")
        c.get("http://two.denied.test/")
        c.post(f"https://api.anthropic.com:{upstream.tls_port}/v1/messages",
               json={"model": "m", "messages": [{"role": "user", "content": "jane.doe@example.org"}]})
    assert wait_for(lambda: admin_get(url).json()["last_seq"] >= start + 3)
    page = admin_get(url, after=start).json()
    assert [d["seq"] for d in page["decisions"]] == sorted(d["seq"] for d in page["decisions"])
    assert all(d["seq"] > start for d in page["decisions"]) and page["next_after"] == page["decisions"][-1]["seq"]
    first = page["decisions"][0]
    assert first["event.name"] == "policyproxy.policy_decision" and first["ts"].endswith("Z")
    assert {d.get("url.path") for d in page["decisions"]} >= {"/one", "/v1/messages"}
    assert "two.denied.test" in {d["server.address"] for d in page["decisions"]}
    denies = admin_get(url, after=start, decision="deny").json()["decisions"]
    assert denies and all(d["network.policy.decision"] == "deny" for d in denies)
    assert {d["server.address"] for d in admin_get(url, after=start, host="TWO.denied.TEST.").json()["decisions"]} == {"two.denied.test"}
    by_detector = admin_get(url, after=start, detector="email").json()["decisions"]
    assert [d["url.path"] for d in by_detector] == ["/v1/messages"] and by_detector[0]["redaction.detectors"]["email"] >= 1
    assert admin_get(url, after=start, reason="denied").json()["decisions"][0]["server.address"] == "two.denied.test"
    after_all = admin_get(url, after=page["next_after"] + 100).json()
    assert after_all["decisions"] == []
    assert admin_get(url, after="x").status_code == 400
    limited = admin_get(url, after=start, limit=1).json()
    assert len(limited["decisions"]) == 1 and limited["next_after"] == limited["decisions"][0]["seq"]


def test_the_ring_is_bounded(start_proxy, upstream):
    proxy = start_proxy(CONFIG, extra=ADMIN)
    url = admin_url(proxy) + "api/decisions"
    with httpx.Client(proxy=proxy.url, timeout=20) as c:
        for _ in range(2050):
            assert c.get("http://denied.test/").status_code == 403
    assert wait_for(lambda: admin_get(url).json()["last_seq"] >= 2050)
    body = admin_get(url, limit=5000).json()
    assert len(body["decisions"]) == 2000 and body["oldest_seq"] == body["last_seq"] - 1999
    assert admin_get(url, after=0, limit=1).json()["decisions"][0]["seq"] == body["oldest_seq"]


def read_sse(response: httpx.Response, events: list[dict], stop: threading.Event) -> None:
    kind, data = "message", ""
    try:
        for line in response.iter_lines():
            if stop.is_set():
                return
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                data += line[6:]
            elif line == "":
                if kind == "decision":
                    events.append(json.loads(data))
                kind, data = "message", ""
    except httpx.HTTPError:
        return


@pytest.mark.parametrize("how", ["path", "accept"])
def test_decisions_stream_live_with_a_filter(proxy, upstream, how):
    base = admin_url(proxy)
    events: list[dict] = []
    stop = threading.Event()
    with httpx.Client(trust_env=False, timeout=httpx.Timeout(10, read=30)) as admin:
        if how == "path":
            request = admin.build_request("GET", base + "api/decisions/stream", params={"decision": "deny"})
        else:
            request = admin.build_request("GET", base + "api/decisions", params={"decision": "deny"},
                                          headers={"Accept": "text/event-stream"})
        response = admin.send(request, stream=True)
        assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/event-stream")
        reader = threading.Thread(target=read_sse, args=(response, events, stop), daemon=True)
        reader.start()
        time.sleep(0.3)
        with client(proxy) as c:
            c.get(f"http://tunnel.test:{upstream.plain_port}/stream-allowed")
            c.get(f"http://stream-{how}.denied.test/")
        assert wait_for(lambda: any(e["server.address"] == f"stream-{how}.denied.test" for e in events), timeout=10)
        stop.set()
        response.close()
    assert all(e["network.policy.decision"] == "deny" for e in events)
    assert not any(e.get("url.path") == "/stream-allowed" for e in events)


def test_streams_are_bounded_and_resume_from_last_event_id(start_proxy, upstream):
    proxy = start_proxy(CONFIG, extra=ADMIN)   # its own: no stream of another test holds a slot
    base = admin_url(proxy)
    with client(proxy) as c:
        c.get("http://resume.denied.test/")
    url = base + "api/decisions"
    assert wait_for(lambda: any(d["server.address"] == "resume.denied.test" for d in admin_get(url).json()["decisions"]))
    seq = next(d["seq"] for d in admin_get(url).json()["decisions"] if d["server.address"] == "resume.denied.test")
    with httpx.Client(trust_env=False, timeout=httpx.Timeout(10, read=10)) as admin, \
            admin.stream("GET", base + "api/decisions/stream", headers={"Last-Event-ID": str(seq - 1)}) as response:
        for line in response.iter_lines():
            if line.startswith("id: "):
                assert int(line[4:]) == seq
                break
    streams = []
    with httpx.Client(trust_env=False, timeout=10, limits=httpx.Limits(max_connections=40)) as admin:
        try:
            for _ in range(16):
                streams.append(admin.send(admin.build_request("GET", base + "api/decisions/stream"), stream=True))
            assert all(s.status_code == 200 for s in streams)
            extra = admin.get(base + "api/decisions/stream")
            assert extra.status_code == 503
        finally:
            for s in streams:
                s.close()

    def stream_accepted() -> bool:   # closed streams give their slots back
        with httpx.Client(trust_env=False, timeout=10) as admin, \
                admin.stream("GET", base + "api/decisions/stream") as response:
            return response.status_code == 200

    assert wait_for(stream_accepted)


def test_summary_counts_the_last_hour(proxy, upstream):
    with client(proxy) as c:
        c.get("http://denied.test/summary")
    url = admin_url(proxy) + "api/summary"
    assert wait_for(lambda: any(e["host"] == "denied.test" for e in admin_get(url).json()["top_denied_hosts"]))
    body = admin_get(url).json()
    assert body["minutes"] == 60 and sum(body["by_reason"]["denied"]) >= 1 and len(body["by_reason"]["denied"]) == 60


def test_profile_shows_secrets_by_source_and_masks_listener_passwords(start_proxy):
    config = CONFIG.replace("[permissions.p.network.domains]",
                            '[permissions.p.network]\nproxy_url = "http://job42:ListenerPw-Canary7@127.0.0.1:3128"\n'
                            "[permissions.p.network.domains]")
    config += ('[permissions.p.network.mitm.hooks.h]\nhost = "api.github.com"\nmethods = ["GET"]\npath_prefixes = ["/"]\naction = ["i"]\n'
               '[permissions.p.network.mitm.actions.i]\n[[permissions.p.network.mitm.actions.i.inject_request_headers]]\n'
               'name = "authorization"\nsecret_env_var = "PROFILE_SECRET"\n')
    proxy = start_proxy(config, extra=ADMIN, env={"PROFILE_SECRET": "ghp_ProfileCanary000000000000000000001"})
    body = admin_get(admin_url(proxy) + "api/profile").text
    doc = json.loads(body)["document"]
    assert doc["permissions"]["p"]["network"]["proxy_url"] == "http://job42:***@127.0.0.1:3128"
    inject = doc["permissions"]["p"]["network"]["mitm"]["actions"]["i"]["inject_request_headers"][0]
    assert inject["secret_env_var"] == "PROFILE_SECRET"
    assert "ListenerPw-Canary7" not in body and "ProfileCanary" not in body


def test_socks5_user_is_the_enduser_of_its_decisions(start_proxy, upstream, pki):
    config = CONFIG.replace("[permissions.p.network.domains]",
                            '[permissions.p.network]\nsocks_url = "socks5://ci-job-7:sockspw@127.0.0.1:8081"\n'
                            "[permissions.p.network.domains]")
    proxy = start_proxy(config, extra=ADMIN)
    subprocess.run(["curl", "-s", "-o", "/dev/null", "--socks5-hostname", f"127.0.0.1:{proxy.socks_port}",
                    "--proxy-user", "ci-job-7:sockspw", "--cacert", str(pki[0]),
                    f"https://tunnel.test:{upstream.tls_port}/socks-user"], timeout=30, check=False)
    url = admin_url(proxy) + "api/decisions"
    assert wait_for(lambda: any(d.get("server.address") == "tunnel.test" for d in admin_get(url).json()["decisions"]))
    decision = next(d for d in admin_get(url).json()["decisions"] if d.get("server.address") == "tunnel.test")
    assert decision["enduser.id"] == "ci-job-7" and decision["network.transport.protocol"] == "socks5_tcp"
    assert "sockspw" not in json.dumps(admin_get(url).json())


def test_an_open_stream_never_holds_a_stop(start_proxy):
    """Attack: a dashboard left open (or a client that never reads) must not delay SIGTERM."""
    proxy = start_proxy(CONFIG, extra=ADMIN)
    base = admin_url(proxy)
    with httpx.Client(trust_env=False, timeout=10) as admin:
        stream = admin.send(admin.build_request("GET", base + "api/decisions/stream"), stream=True)
        assert stream.status_code == 200
        started = time.monotonic()
        proxy.signal(signal.SIGTERM)
        proxy.process.wait(30)
        assert time.monotonic() - started < 5
        stream.close()
    assert proxy.process.returncode == 0


def test_a_stream_that_fell_behind_the_ring_is_told(start_proxy):
    proxy = start_proxy(CONFIG, extra=ADMIN)
    url = admin_url(proxy)
    with httpx.Client(proxy=proxy.url, timeout=20) as c:
        for _ in range(2010):
            c.get("http://gap.denied.test/")
    assert wait_for(lambda: admin_get(url + "api/decisions").json()["last_seq"] >= 2010)
    with httpx.Client(trust_env=False, timeout=10) as admin, \
            admin.stream("GET", url + "api/decisions/stream", params={"after": 1}) as response:
        lines = []
        for line in response.iter_lines():
            lines.append(line)
            if line.startswith("id: "):
                break
    assert "event: gap" in lines
    gap = json.loads(lines[lines.index("event: gap") + 1][len("data: "):])
    assert gap["resume_seq"] >= 11 and lines[-1] == f"id: {gap['resume_seq']}"


def test_with_a_token_only_the_static_page_and_healthz_are_open(start_proxy):
    config = CONFIG + '\n[admin]\nlisten = "127.0.0.1:9090"\ntoken_env_var = "ADMIN_API_TOKEN"\n'
    proxy = start_proxy(config, env={"ADMIN_API_TOKEN": "admin-api-token-canary"}, extra=ADMIN)
    url = admin_url(proxy)
    page = admin_get(url)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "script-src 'sha256-" in page.headers["Content-Security-Policy"] and "admin-api-token-canary" not in page.text
    for path in ("metrics", "api/decisions", "api/decisions/stream", "api/summary", "api/profile"):
        assert admin_get(url + path).status_code == 401, path
    with httpx.Client(trust_env=False, timeout=10,
                      headers={"Authorization": "Bearer admin-api-token-canary"}) as admin:
        assert admin.get(url + "metrics").status_code == 200
        assert admin.get(url + "api/decisions").status_code == 200
