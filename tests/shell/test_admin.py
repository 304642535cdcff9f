"""The admin listener on a real ``policyproxy serve``: /healthz, /readyz, /api/status, its guards."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from policyproxy.cli.render import config_digest
from policyproxy.config import load_settings
from policyproxy.tls.ca_store import load

CONFIG = """
[permissions.p.network.domains]
"*" = "allow"
[permissions.p.network.mitm.hooks.h]
host = "api.github.com"
methods = ["GET"]
path_prefixes = ["/"]
action = ["inject"]
[permissions.p.network.mitm.actions.inject]
[[permissions.p.network.mitm.actions.inject.inject_request_headers]]
name = "authorization"
secret_env_var = "ADMIN_TEST_SECRET"
prefix = "Bearer "
"""
SECRET = "ghp_admincanary0123456789abcdef"
ADMIN = ["--admin-listen", "127.0.0.1:0"]


def admin_url(proxy) -> str:
    for line in proxy.output:
        match = re.match(r"admin: (http://\S+/)$", line.strip())
        if match:
            return match.group(1)
    raise AssertionError(f"no admin banner line in {proxy.output}")


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict, dict]:
    request = urllib.request.Request(url, headers=headers or {})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))   # never through a proxy
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read())


def test_status_reports_version_profile_digest_listeners_and_pid(start_proxy):
    proxy = start_proxy(CONFIG, env={"ADMIN_TEST_SECRET": SECRET}, extra=ADMIN)
    url = admin_url(proxy)
    status, headers, body = get(url + "api/status")
    assert status == 200 and headers["Cache-Control"] == "no-store"
    assert "Access-Control-Allow-Origin" not in headers
    settings = load_settings(proxy.config, None, None, env={"POLICYPROXY_HOME": str(proxy.home)})
    assert body["profile"] == "p" and body["pid"] == proxy.process.pid
    assert body["config_digest"] == config_digest(settings)
    assert body["listeners"]["http"] == f"127.0.0.1:{proxy.http_port}"
    assert body["listeners"]["socks5"] == f"127.0.0.1:{proxy.socks_port}"
    assert url == f"http://{body['listeners']['admin']}/"
    assert body["uptime_seconds"] >= 0 and re.fullmatch(r"\d+\.\d+\.\d+.*", body["version"])
    assert body["ca_sha256"] == load(proxy.home / "ca").fingerprint
    assert SECRET not in json.dumps(body)


def test_healthz_and_readyz_answer_when_serving(start_proxy):
    proxy = start_proxy(CONFIG, env={"ADMIN_TEST_SECRET": SECRET}, extra=ADMIN)
    url = admin_url(proxy)
    assert get(url + "healthz")[::2] == (200, {"status": "alive"})
    assert get(url + "readyz")[::2] == (200, {"status": "ready"})


def test_readyz_is_503_with_the_reason_when_the_ca_becomes_unsafe(start_proxy):
    proxy = start_proxy(CONFIG, env={"ADMIN_TEST_SECRET": SECRET}, extra=ADMIN)
    url = admin_url(proxy)
    os.chmod(proxy.home / "ca" / "ca.key", 0o644)
    try:
        status, _, body = get(url + "readyz")
    finally:
        os.chmod(proxy.home / "ca" / "ca.key", 0o600)
    assert status == 503 and body["status"] == "not ready"
    assert any(reason.startswith("ca: ") and "readable by group or others" in reason for reason in body["reasons"])
    assert get(url + "healthz")[0] == 200
    assert get(url + "readyz")[0] == 200


def test_status_follows_a_reload(start_proxy):
    proxy = start_proxy(CONFIG, env={"ADMIN_TEST_SECRET": SECRET}, extra=ADMIN)
    url = admin_url(proxy)
    before = get(url + "api/status")[2]["config_digest"]
    proxy.config.write_text(CONFIG.replace('"*" = "allow"', '"*" = "allow"\n"extra.example" = "deny"'))
    proxy.signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while get(url + "api/status")[2]["config_digest"] == before and time.monotonic() < deadline:
        time.sleep(0.1)
    settings = load_settings(proxy.config, None, None, env={"POLICYPROXY_HOME": str(proxy.home)})
    assert get(url + "api/status")[2]["config_digest"] == config_digest(settings) != before


def test_a_rebound_host_name_cannot_read_the_status(start_proxy):
    """DNS rebinding: a page on evil.example resolved to 127.0.0.1 sends Host: evil.example."""
    proxy = start_proxy(CONFIG, env={"ADMIN_TEST_SECRET": SECRET}, extra=ADMIN)
    url = admin_url(proxy)
    status, _, body = get(url + "api/status", {"Host": "evil.example:9090"})
    assert status == 421 and "version" not in body
    assert get(url + "api/status", {"Host": "localhost:9090"})[0] == 200


def test_only_get_is_served(start_proxy):
    proxy = start_proxy(CONFIG, env={"ADMIN_TEST_SECRET": SECRET}, extra=ADMIN)
    request = urllib.request.Request(admin_url(proxy) + "api/status", data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.build_opener(urllib.request.ProxyHandler({})).open(request, timeout=10)
    assert info.value.code == 405


def test_a_token_guards_everything_but_healthz(start_proxy):
    config = CONFIG + '\n[admin]\nlisten = "127.0.0.1:9090"\ntoken_env_var = "ADMIN_TEST_TOKEN"\n'
    token = "admintoken-canary-42"
    proxy = start_proxy(config, env={"ADMIN_TEST_SECRET": SECRET, "ADMIN_TEST_TOKEN": token}, extra=ADMIN)
    url = admin_url(proxy)
    assert get(url + "healthz")[0] == 200
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": token}):
        status, response_headers, body = get(url + "api/status", headers)
        assert status == 401 and response_headers["WWW-Authenticate"].startswith("Bearer")
        assert "version" not in body
    assert get(url + "readyz")[0] == 401
    status, _, body = get(url + "api/status", {"Authorization": f"Bearer {token}", "Host": "anything.example"})
    assert status == 200 and token not in json.dumps(body)
    assert token not in proxy.logs() + "".join(proxy.output)


def serve(home, *args: str, env: dict[str, str] | None = None, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "policyproxy", "serve", "--listen", "127.0.0.1:0",
                           "--socks-listen", "127.0.0.1:0", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "POLICYPROXY_HOME": str(home), **(env or {})})


def test_non_loopback_admin_without_a_token_is_refused(tmp_path):
    result = serve(tmp_path, "--admin-listen", "0.0.0.0:0")
    assert result.returncode == 2
    assert "admin listener would listen on 0.0.0.0, which is not loopback" in result.stderr
    config = tmp_path / "c.toml"
    config.write_text('[permissions.p.network.domains]\n"*" = "allow"\n[admin]\nlisten = "0.0.0.0:9090"\n')
    check = subprocess.run([sys.executable, "-m", "policyproxy", "check", "--config", str(config)],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 2
    assert f"{config}:4: admin.listen '0.0.0.0:9090' is not loopback" in check.stderr


def test_a_missing_token_variable_is_an_error_naming_it(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[permissions.p.network.domains]\n"*" = "allow"\n'
                      '[admin]\nlisten = "127.0.0.1:0"\ntoken_env_var = "NO_SUCH_ADMIN_TOKEN"\n')
    result = serve(tmp_path, "--config", str(config))
    assert result.returncode == 2 and "NO_SUCH_ADMIN_TOKEN, which is not set" in result.stderr


@pytest.mark.parametrize("value", ["127.0.0.1", "127.0.0.1:99999", "127.0.0.1:٩٠", "[::1:0", "host:1:2"])
def test_malformed_admin_addresses_are_refused(tmp_path, value):
    result = serve(tmp_path, "--admin-listen", value)
    assert result.returncode == 2 and "--admin-listen wants" in result.stderr


def test_off_disables_the_admin_listener(start_proxy):
    proxy = start_proxy(CONFIG, env={"ADMIN_TEST_SECRET": SECRET}, extra=["--admin-listen", "off"])
    assert "admin: off\n" in proxy.output


def test_an_explicit_admin_address_in_use_is_an_error(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = serve(tmp_path, "--admin-listen", f"127.0.0.1:{taken.getsockname()[1]}")
    assert result.returncode == 2 and "admin listener cannot listen on" in result.stderr


def test_the_default_admin_port_in_use_is_a_warning_not_a_failure(start_proxy):
    """9090 is either free (this test takes it) or held by some other process: both mean 'in use'."""
    holder = socket.socket()
    try:
        try:
            holder.bind(("127.0.0.1", 9090))
            holder.listen()
        except OSError:
            pass
        proxy = start_proxy(CONFIG, env={"ADMIN_TEST_SECRET": SECRET})
        assert "admin: off\n" in proxy.output
        assert "admin listener off: 127.0.0.1:9090 is in use" in proxy.logs()
    finally:
        holder.close()


def test_readyz_names_an_unreachable_otlp_collector_and_recovers_when_it_listens(start_proxy):
    import socket

    with socket.socket() as probe:   # a free port with nothing listening yet
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proxy = start_proxy(CONFIG, env={"ADMIN_TEST_SECRET": SECRET, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
                                     "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, extra=ADMIN)
    url = admin_url(proxy)
    status, _, body = get(url + "readyz")
    assert status == 503 and any(r.startswith(f"otel: the collector at 127.0.0.1:{port} is unreachable")
                                 for r in body["reasons"]), body
    assert get(url + "healthz")[0] == 200
    with socket.socket() as collector:
        collector.bind(("127.0.0.1", port))
        collector.listen()
        assert get(url + "readyz")[::2] == (200, {"status": "ready"})
