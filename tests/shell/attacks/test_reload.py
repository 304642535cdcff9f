"""Reload in the middle: SIGHUP applies what it can (policy, listener credentials), names each
changed key that needs a restart, and emits one ``policyproxy.reload`` event (applied or refused,
with the config digest) to the audit log and OpenTelemetry, a refused managed tightening included."""

from __future__ import annotations

import base64
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from policyproxy.cli.render import config_digest
from policyproxy.config import load_settings
from policyproxy.telemetry.audit import read_records
from tests.shell.otlp import HttpReceiver

BASE = """
[permissions.t.network.domains]
"*.test" = "allow"
"api.github.com" = "allow"
"""


def wait_for(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    return None


def reload_events(path: Path) -> list[dict]:
    return [r for r in read_records(path) if r.get("event.name") == "policyproxy.reload"]


def sighup(proxy, text: str | None = None, requirements: Path | None = None, req_text: str | None = None) -> dict:
    """Rewrite the config (and requirements), send SIGHUP, return the new reload event."""
    audit = proxy.home / "audit.jsonl"
    seen = len(reload_events(audit))
    if text is not None:
        proxy.config.write_text(text)
    if requirements is not None and req_text is not None:
        requirements.write_text(req_text)
    proxy.signal(signal.SIGHUP)
    events = wait_for(lambda: reload_events(audit)[seen:] or None)
    assert events, proxy.logs()
    return events[-1]


def connect_status(proxy, target: str) -> bytes:
    with socket.create_connection(("127.0.0.1", proxy.http_port), 5) as sock:
        sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        return sock.recv(4096).split(b"\r\n", 1)[0]


def digest_of(config: Path, requirements: Path | None = None) -> str:
    return config_digest(load_settings(config, requirements, None, env={"POLICYPROXY_HOME": str(config.parent)}))


def test_applied_reload_is_an_event_with_the_digest_of_the_new_config(start_proxy, upstream):
    proxy = start_proxy(BASE)
    target = f"upstream.test:{upstream.tls_port}"
    assert connect_status(proxy, target).startswith(b"HTTP/1.1 200")
    event = sighup(proxy, BASE + '"upstream.test" = "deny"\n')
    assert event["policyproxy.reload.outcome"] == "applied"
    assert event["policyproxy.config.digest"] == digest_of(proxy.config)
    assert event["policyproxy.reload.restart_keys"] == []
    assert event["network.policy.profile"] == "t"
    assert connect_status(proxy, target).startswith(b"HTTP/1.1 403")      # the new policy is live
    assert f"reloaded profile 't' ({event['policyproxy.config.digest']})" in proxy.logs()


def test_keys_that_need_a_restart_are_named_on_stderr_and_in_the_event(start_proxy, tmp_path):
    proxy = start_proxy(BASE)
    moved = tmp_path / "elsewhere.jsonl"
    text = BASE + ('[permissions.t.network]\nenable_socks5 = false\n'
                   f'[audit]\npath = "{moved}"\nmax_bytes = 1048576\n'
                   '[otel]\nexporter = "otlp-http"\nendpoint = "http://127.0.0.1:9"\n')
    event = sighup(proxy, text)
    keys = event["policyproxy.reload.restart_keys"]
    assert event["policyproxy.reload.outcome"] == "applied"
    for key in ("network.enable_socks5", "audit.path", "audit.max_bytes", "otel.exporter", "otel.endpoint"):
        assert key in keys, keys
    assert "need a restart to take effect: " + ", ".join(keys) in proxy.logs()
    assert not moved.exists()                     # not applied: the event went to the running audit log
    with socket.create_connection(("127.0.0.1", proxy.socks_port), 5) as sock:   # SOCKS5 still listening
        sock.sendall(b"\x05\x01\x00")
        assert sock.recv(2) == b"\x05\x00"


def test_a_listen_address_change_needs_a_restart(tmp_path):
    """``--listen`` on the command line wins over the config; without it the address is a restart key."""
    from argparse import Namespace

    from policyproxy.cli.serve import restart_keys

    config = tmp_path / "config.toml"
    config.write_text(BASE)
    before = load_settings(config, None, None, env={"POLICYPROXY_HOME": str(tmp_path)})
    config.write_text(BASE + '[permissions.t.network]\nproxy_url = "http://127.0.0.1:3999"\n'
                      'socks_url = "socks5://u:p@127.0.0.1:8081"\n')
    after = load_settings(config, None, None, env={"POLICYPROXY_HOME": str(tmp_path)})
    keys = restart_keys(before, after, Namespace(listen=None, socks_listen=None))
    assert keys == ["network.proxy_url (listen address)"]    # credentials alone are applied live
    assert restart_keys(before, after, Namespace(listen="127.0.0.1:0", socks_listen=None)) == []


def test_listener_credentials_added_by_a_reload_apply_at_once(start_proxy, upstream):
    proxy = start_proxy(BASE)
    target = f"upstream.test:{upstream.tls_port}"
    assert connect_status(proxy, target).startswith(b"HTTP/1.1 200")
    event = sighup(proxy, BASE + '[permissions.t.network]\nproxy_url = "http://alice:s3cret@127.0.0.1:3128"\n')
    assert event["policyproxy.reload.outcome"] == "applied"
    assert connect_status(proxy, target).startswith(b"HTTP/1.1 407")
    with socket.create_connection(("127.0.0.1", proxy.socks_port), 5) as sock:
        sock.sendall(b"\x05\x01\x00")
        assert sock.recv(2) == b"\x05\xff"       # and SOCKS5 requires them too
    assert "s3cret" not in (proxy.home / "audit.jsonl").read_text()


def plain_status(proxy, url: str, user: str | None = None) -> bytes:
    """A plain ``http://`` request on the HTTP listener (the other way in besides CONNECT)."""
    auth = f"Proxy-Authorization: Basic {base64.b64encode(user.encode()).decode()}\r\n" if user else ""
    with socket.create_connection(("127.0.0.1", proxy.http_port), 5) as sock:
        sock.sendall(f"GET {url} HTTP/1.1\r\nHost: {url.split('/')[2]}\r\n{auth}Connection: close\r\n\r\n".encode())
        return sock.recv(4096).split(b"\r\n", 1)[0]


def test_listener_credentials_changed_by_a_reload_apply_to_plain_http_requests_at_once(start_proxy, upstream):
    """A revoked password must stop working on every way in, not only on CONNECT: the plain listener's
    handler read the credentials once at start and kept accepting the old ones."""
    creds = '[permissions.t.network]\nproxy_url = "http://{}@127.0.0.1:3128"\n'
    proxy = start_proxy(BASE + creds.format("alice:s3cret"))
    url = f"http://upstream.test:{upstream.plain_port}/x"
    assert plain_status(proxy, url) == b"HTTP/1.1 407 Proxy Authentication Required"
    assert plain_status(proxy, url, "alice:s3cret").startswith(b"HTTP/1.1 200")
    event = sighup(proxy, BASE + creds.format("bob:hunter2"))
    assert event["policyproxy.reload.outcome"] == "applied"
    assert plain_status(proxy, url, "alice:s3cret") == b"HTTP/1.1 407 Proxy Authentication Required"
    assert plain_status(proxy, url, "bob:hunter2").startswith(b"HTTP/1.1 200")
    event = sighup(proxy, BASE)   # credentials removed: the listener is open again, on both ways in
    assert event["policyproxy.reload.outcome"] == "applied"
    assert plain_status(proxy, url).startswith(b"HTTP/1.1 200")


def test_a_broken_config_is_a_refused_event_and_the_running_policy_stays(start_proxy, upstream):
    proxy = start_proxy(BASE)
    running = digest_of(proxy.config)
    event = sighup(proxy, BASE + '[permissions.t.network]\nmode = "fast"\n')
    assert event["policyproxy.reload.outcome"] == "refused"
    assert event["policyproxy.config.digest"] == running
    assert event["policyproxy.reload.requirement_violation"] is False
    assert any(str(proxy.config) in error and "permissions.t.network.mode" in error
               for error in event["policyproxy.reload.errors"]), event
    assert "fast" not in str(event)                               # keys and lines, never values
    assert "reload refused, keeping the running policy" in proxy.logs()
    assert connect_status(proxy, f"upstream.test:{upstream.tls_port}").startswith(b"HTTP/1.1 200")


def test_a_refused_managed_tightening_is_an_event(start_proxy, tmp_path, upstream):
    requirements = tmp_path / "requirements.toml"
    requirements.write_text('[network]\ndenied_domains = ["pastebin.com"]\n')
    proxy = start_proxy(BASE + '"upstream.test" = "allow"\n', extra=["--requirements", str(requirements)])
    event = sighup(proxy, requirements=requirements, req_text='[network]\ndenied_domains = ["upstream.test"]\n')
    assert event["policyproxy.reload.outcome"] == "refused"
    assert event["policyproxy.reload.requirement_violation"] is True
    assert "reload refused" in proxy.logs()
    # the tightening was refused: the running (looser) policy is still in force, and the SIEM saw it
    assert connect_status(proxy, f"upstream.test:{upstream.tls_port}").startswith(b"HTTP/1.1 200")


def test_reload_events_reach_opentelemetry(start_proxy):
    receiver = HttpReceiver()
    try:
        otel = f'[otel]\nexporter = "otlp-http"\nendpoint = "http://127.0.0.1:{receiver.port}"\n'
        proxy = start_proxy(BASE + otel)
        applied = sighup(proxy, BASE + '"upstream.test" = "deny"\n' + otel)
        refused = sighup(proxy, BASE + '[permissions.t.network]\nmode = "fast"\n' + otel)
        records = wait_for(lambda: [r for r in receiver.records if r["event_name"] == "policyproxy.reload"]
                           if len([r for r in receiver.records if r["event_name"] == "policyproxy.reload"]) >= 2
                           else None)
        assert records, receiver.records
        outcomes = [(r["attributes"]["policyproxy.reload.outcome"], r["attributes"]["policyproxy.config.digest"],
                     r["severity_text"]) for r in records]
        assert outcomes == [("applied", applied["policyproxy.config.digest"], "INFO"),
                            ("refused", refused["policyproxy.config.digest"], "WARN")]
        assert applied["policyproxy.config.digest"] == refused["policyproxy.config.digest"]   # refused: unchanged
    finally:
        receiver.close()


def test_audit_tail_and_stats_read_a_log_with_reload_events(start_proxy):
    proxy = start_proxy(BASE)
    sighup(proxy, BASE + '"upstream.test" = "deny"\n')
    audit = proxy.home / "audit.jsonl"
    tail = subprocess.run([sys.executable, "-m", "policyproxy", "audit", "tail", "--file", str(audit)],
                          capture_output=True, text=True)
    assert tail.returncode == 0, tail.stderr
    assert "policyproxy.reload policyproxy.reload.outcome=applied" in tail.stdout
    stats = subprocess.run([sys.executable, "-m", "policyproxy", "audit", "stats", "--file", str(audit), "--json"],
                           capture_output=True, text=True)
    assert stats.returncode == 0, stats.stderr
    assert '"?"' not in stats.stdout                 # a lifecycle event is not counted as a decision


def test_reload_storm_keeps_serving(start_proxy, upstream):
    """Five reloads in a row, broken and valid in turn: one event each, in order, serving throughout."""
    proxy = start_proxy(BASE)
    outcomes = []
    for i in range(5):
        text = BASE + (f'"x{i}.example" = "deny"\n' if i % 2 else '[permissions.t.network]\nmode = 1\n')
        outcomes.append(sighup(proxy, text)["policyproxy.reload.outcome"])
        assert connect_status(proxy, f"upstream.test:{upstream.tls_port}").startswith(b"HTTP/1.1 200")
    assert outcomes == ["refused", "applied", "refused", "applied", "refused"]


def test_the_reload_event_and_the_admin_status_give_the_same_digest(start_proxy):
    """One digest everywhere: the reload event (applied and refused), /api/status, and ``config_digest``."""
    from tests.shell.test_admin import ADMIN, admin_url, get

    proxy = start_proxy(BASE, extra=ADMIN)
    url = admin_url(proxy)
    applied = sighup(proxy, BASE + '"upstream.test" = "deny"\n')
    status = get(url + "api/status")[2]["config_digest"]
    assert applied["policyproxy.config.digest"] == status == digest_of(proxy.config)
    refused = sighup(proxy, BASE + '[permissions.t.network]\nmode = "fast"\n')
    assert refused["policyproxy.config.digest"] == get(url + "api/status")[2]["config_digest"] == status
