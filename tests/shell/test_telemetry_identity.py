"""Events a SIEM can attribute and read: ``enduser.id`` from the listener user, the one-line summary
as the OTLP log body, ``policyproxy.start``/``policyproxy.stop`` with the config digest, resource
attributes from the environment on every record, and OTLP/JSON refused at start (real receivers)."""

from __future__ import annotations

import os
import re
import ssl
import subprocess
import sys
import time

import httpx
import pytest

from policyproxy.cli.render import config_digest
from policyproxy.config import load_settings
from policyproxy.telemetry.audit import read_records
from tests.shell.otlp import GrpcReceiver

CONFIG = """
[permissions.p.network]
proxy_url = "http://job42:IdentityPw-Canary3@127.0.0.1:3128"
[permissions.p.network.domains]
"*" = "allow"
"evil.test" = "deny"
"""


def wait_for(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(scope="module")
def receiver():
    server = GrpcReceiver()
    yield server
    server.close()


@pytest.fixture(scope="module")
def proxy(start_proxy, receiver):
    config = CONFIG + f'[otel]\nexporter = {{ otlp-grpc = {{ endpoint = "http://127.0.0.1:{receiver.port}" }} }}\n'
    return start_proxy(config, env={"OTEL_RESOURCE_ATTRIBUTES": "ci.job.id=4711,vcs.ref=main"})


def authed(proxy) -> str:
    return f"http://job42:IdentityPw-Canary3@127.0.0.1:{proxy.http_port}"


def test_the_http_listener_user_is_enduser_id_in_the_log_and_the_exporter(proxy, upstream, receiver):
    with httpx.Client(proxy=authed(proxy), timeout=20) as c:
        assert c.get(f"http://tunnel.test:{upstream.plain_port}/who").status_code == 200
        assert c.get("http://evil.test/").status_code == 403
    assert wait_for(lambda: any(r["attributes"].get("url.path") == "/who" for r in receiver.records))
    record = next(r for r in receiver.records if r["attributes"].get("url.path") == "/who")
    assert record["attributes"]["enduser.id"] == "job42"
    assert record["resource"]["ci.job.id"] == "4711" and record["resource"]["vcs.ref"] == "main"
    assert wait_for(lambda: any(line.get("url.path") == "/who" for line in read_records(proxy.home / "audit.jsonl")))
    line = next(line for line in read_records(proxy.home / "audit.jsonl") if line.get("url.path") == "/who")
    assert line["enduser.id"] == "job42"
    exported = b"".join(receiver.payloads)
    assert b"IdentityPw-Canary3" not in exported
    assert "IdentityPw-Canary3" not in (proxy.home / "audit.jsonl").read_text() + proxy.logs() + "".join(proxy.output)


def test_a_connect_tunnel_carries_the_user_too(proxy, upstream, receiver, pki):
    with httpx.Client(proxy=authed(proxy), verify=ssl.create_default_context(cafile=str(pki[0])), timeout=20) as c:
        c.get(f"https://tunnel.test:{upstream.tls_port}/tunnelled")
    assert wait_for(lambda: any(r["attributes"].get("network.transport.protocol") == "https_connect"
                                and r["attributes"].get("server.address") == "tunnel.test" for r in receiver.records))
    record = next(r for r in receiver.records if r["attributes"].get("network.transport.protocol") == "https_connect"
                  and r["attributes"].get("server.address") == "tunnel.test")
    assert record["attributes"]["enduser.id"] == "job42"


def test_the_log_body_is_the_one_line_summary(proxy, receiver):
    import socket

    with socket.create_connection(("127.0.0.1", proxy.http_port), 10) as s:
        s.sendall(b"CONNECT evil.test:443 HTTP/1.1\r\nHost: evil.test:443\r\n"
                  b"Proxy-Authorization: Basic am9iNDI6SWRlbnRpdHlQdy1DYW5hcnkz\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 403")
    assert wait_for(lambda: any(r["attributes"].get("network.transport.protocol") == "https_connect"
                                and r["attributes"].get("server.address") == "evil.test" for r in receiver.records))
    record = next(r for r in receiver.records if r["attributes"].get("network.transport.protocol") == "https_connect"
                  and r["attributes"].get("server.address") == "evil.test")
    assert record["body"] == ("deny CONNECT evil.test:443 denied (evil.test is denied by 'evil.test') "
                              "from 127.0.0.1 as job42")
    assert record["severity_text"] == "WARN"
    assert all(isinstance(r["body"], str) and r["body"] for r in receiver.records)


def test_start_and_stop_events_carry_the_config_digest(start_proxy, receiver):
    config = CONFIG + f'[otel]\nexporter = {{ otlp-grpc = {{ endpoint = "http://127.0.0.1:{receiver.port}" }} }}\n'
    proxy = start_proxy(config, extra=["--admin-listen", "127.0.0.1:0"])
    digest = config_digest(load_settings(proxy.config, None, None, env={"POLICYPROXY_HOME": str(proxy.home)}))
    proxy.stop()
    lines = list(read_records(proxy.home / "audit.jsonl"))
    names = [line["event.name"] for line in lines]
    assert names[0] == "policyproxy.start" and names[-1] == "policyproxy.stop"
    for line in (lines[0], lines[-1]):
        assert line["policyproxy.config.digest"] == digest and line["network.policy.profile"] == "p"
        assert f"http=127.0.0.1:{proxy.http_port}" in line["policyproxy.listeners"]
        assert any(item.startswith("admin=127.0.0.1:") for item in line["policyproxy.listeners"])
        assert re.fullmatch(r"\d+\.\d+\.\d+.*", line["service.version"])
    assert wait_for(lambda: {"policyproxy.start", "policyproxy.stop"} <= {
        r["event_name"] for r in receiver.records if r["attributes"].get("policyproxy.config.digest") == digest})
    start = next(r for r in receiver.records if r["event_name"] == "policyproxy.start"
                 and f"http=127.0.0.1:{proxy.http_port}" in r["attributes"]["policyproxy.listeners"])
    assert start["body"].startswith(f"policyproxy.start profile 'p' {digest}")
    assert "IdentityPw-Canary3" not in str(start)


def serve(home, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "policyproxy", "serve", "--listen", "127.0.0.1:0",
                           "--socks-listen", "127.0.0.1:0", "--admin-listen", "off"],
                          capture_output=True, text=True, timeout=30,
                          env={**os.environ, "POLICYPROXY_HOME": str(home), **env})


@pytest.mark.parametrize("variable", ["OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL"])
def test_otlp_json_from_the_environment_is_refused_at_start(tmp_path, variable):
    result = serve(tmp_path, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", variable: "http/json"})
    assert result.returncode == 2
    assert f"{variable}='http/json' is not supported" in result.stderr and "http/protobuf" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_banner_says_where_events_go_when_the_environment_decides(start_proxy, receiver):
    proxy = start_proxy('[permissions.p.network.domains]\n"*" = "allow"\n',
                        env={"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.port}",
                             "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    banner = "".join(proxy.output)
    assert (f"OpenTelemetry: otlp-grpc (from OTEL_EXPORTER_OTLP_ENDPOINT http://127.0.0.1:{receiver.port}, "
            "OTEL_EXPORTER_OTLP_PROTOCOL=grpc)") in banner
    configured = start_proxy('[permissions.p.network.domains]\n"*" = "allow"\n'
                             f'[otel]\nexporter = "otlp-http"\nendpoint = "http://127.0.0.1:{receiver.port}"\n')
    assert f"OpenTelemetry: otlp-http http://127.0.0.1:{receiver.port} (from [otel])" in "".join(configured.output)


def test_check_says_where_events_go_and_refuses_otlp_json(tmp_path):
    def check(env: dict[str, str]) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "policyproxy", "check", "--profile", "default"],
                              capture_output=True, text=True, timeout=30,
                              env={**os.environ, "POLICYPROXY_HOME": str(tmp_path), **env})

    plain = check({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector.example:4318"})
    assert plain.returncode == 0
    assert ("otel:         otlp-http (from OTEL_EXPORTER_OTLP_ENDPOINT http://collector.example:4318, "
            "http/protobuf by default)") in plain.stdout
    assert "otel:         off (OTEL_SDK_DISABLED=true)" in check({"OTEL_SDK_DISABLED": "true"}).stdout
    refused = check({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})
    assert refused.returncode == 2 and "OTEL_EXPORTER_OTLP_PROTOCOL='http/json' is not supported" in refused.stderr
