"""Attack class: terminal escape injection. A host, path or config key carrying ESC sequences, CR, BEL,
C1 controls or bidi overrides must reach the operator's terminal as inert escapes, in every
human-readable output; JSON outputs stay JSON (ASCII-escaped) and parse back to the original."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from policyproxy.safe_text import SafeFormatter, printable

# Window-title OSC, clear screen, carriage return over the line, bell, 8-bit CSI, right-to-left override.
HOSTILE = "ev\x1b]0;pwned\x07il\x1b[2J\rX\x07\x9b31m\u202etxt.exe\u2066"


def assert_inert(text: str) -> None:
    """Nothing a terminal would act on: only printable characters and line breaks."""
    for line in text.split("\n"):
        assert line.isprintable(), repr(line)


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "policyproxy", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "POLICYPROXY_HOME": str(home)})


def hostile_log(path: Path) -> None:
    record = {"ts": "2099-01-01T00:00:00.000Z", "event.name": "policyproxy.policy_decision",
              "network.policy.decision": "deny", "network.policy.reason": "not_allowed",
              "network.policy.hook": f"hook{HOSTILE}", "network.transport.protocol": "https_connect",
              "server.address": HOSTILE, "server.port": 443, "url.path": f"/p{HOSTILE}",
              "http.request.method": "GET", "client.address": "127.0.0.1",
              "redaction.detectors": {f"det{HOSTILE}": 1}}
    path.write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")


def test_printable_escapes_every_class_and_keeps_text():
    assert printable("api.github.com/repos/ö/ü") == "api.github.com/repos/ö/ü"
    out = printable(HOSTILE)
    assert out.isprintable()
    for escape in ("\\x1b", "\\x07", "\\x0d", "\\x9b", "\\u202e", "\\u2066"):
        assert escape in out
    assert printable("a\nb\u2028c") == "a\\x0ab\\u2028c"


def test_safe_formatter_keeps_a_log_record_on_one_inert_line():
    import logging

    record = logging.LogRecord("policyproxy", logging.INFO, __file__, 1, "deny %s", (HOSTILE + "\nfake line",), None)
    line = SafeFormatter("%(message)s").format(record)
    assert "\n" not in line and line.isprintable() and line.startswith("deny ev\\x1b]0;pwned")


def test_audit_tail_escapes_host_path_and_hook(tmp_path):
    log = tmp_path / "audit.jsonl"
    hostile_log(log)
    result = cli(tmp_path, "audit", "tail", "--file", str(log))
    assert result.returncode == 0, result.stderr
    assert_inert(result.stdout)
    assert "ev\\x1b]0;pwned\\x07il" in result.stdout and "\\u202etxt.exe" in result.stdout


def test_audit_tail_json_stays_json_and_inert(tmp_path):
    log = tmp_path / "audit.jsonl"
    hostile_log(log)
    result = cli(tmp_path, "audit", "tail", "--json", "--file", str(log))
    assert_inert(result.stdout)
    assert json.loads(result.stdout)["server.address"] == HOSTILE


def test_audit_stats_escapes_keys_in_text_and_json(tmp_path):
    log = tmp_path / "audit.jsonl"
    hostile_log(log)
    text = cli(tmp_path, "audit", "stats", "--since", "all", "--file", str(log))
    assert_inert(text.stdout)
    assert "\\u202etxt.exe" in text.stdout
    as_json = cli(tmp_path, "audit", "stats", "--since", "all", "--json", "--file", str(log))
    assert_inert(as_json.stdout)
    assert json.loads(as_json.stdout)["host"] == {HOSTILE: 1}


def test_audit_tail_follow_escapes_lines_written_later(tmp_path):
    log = tmp_path / "audit.jsonl"
    log.write_text("")
    follow = subprocess.Popen([sys.executable, "-m", "policyproxy", "audit", "tail", "-f", "--file", str(log)],
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "POLICYPROXY_HOME": str(tmp_path)})
    try:
        time.sleep(1.5)
        hostile_log(log)
        line = follow.stdout.readline() if follow.stdout else ""
    finally:
        follow.terminate()
        follow.wait(10)
        if follow.stdout:
            follow.stdout.close()
    assert "pwned" in line
    assert_inert(line.rstrip("\n"))


def test_check_escapes_a_hostile_key_in_its_error(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(f'[permissions.p.network.domains]\n"{HOSTILE.encode("unicode_escape").decode().replace(chr(92) + "x", chr(92) + "u00")}" = "allow"\n')
    result = cli(tmp_path, "check", "--config", str(config))
    assert result.returncode == 2
    assert_inert(result.stdout + result.stderr)
    assert "pwned" in result.stderr


def test_check_and_config_show_escape_hostile_values(tmp_path):
    config = tmp_path / "c.toml"
    escaped = HOSTILE.encode("unicode_escape").decode().replace("\\x", "\\u00")
    config.write_text('[permissions.p.network.domains]\n"*" = "allow"\n'
                      '[permissions.p.network.mitm.hooks.h]\nhost = "api.github.com"\nmethods = ["GET"]\n'
                      f'path_prefixes = ["/x{escaped}"]\naction = ["a"]\n'
                      '[permissions.p.network.mitm.actions.a]\nstrip_request_headers = ["cookie"]\n')
    check = cli(tmp_path, "check", "--config", str(config))
    assert_inert(check.stdout + check.stderr)
    assert "pwned" in check.stdout + check.stderr
    show = cli(tmp_path, "config", "show", "--config", str(config))
    assert show.returncode == 2 and "pwned" in show.stderr
    assert_inert(show.stdout + show.stderr)


def test_config_show_escapes_a_hostile_value_and_stays_toml(tmp_path):
    import tomllib

    config = tmp_path / "c.toml"
    escaped = HOSTILE.encode("unicode_escape").decode().replace("\\x", "\\u00")
    config.write_text('[permissions.p.network.domains]\n"*" = "allow"\n'
                      f'[permissions.p.network.redaction.patterns.emp]\nregex = "EMP{escaped}[0-9]+"\naction = "mask"\n')
    show = cli(tmp_path, "config", "show", "--config", str(config))
    assert show.returncode == 0, show.stderr
    assert_inert(show.stdout)
    assert "\\u202e" in show.stdout and "\\u009b" in show.stdout
    pattern = tomllib.loads(show.stdout)["permissions"]["p"]["network"]["redaction"]["patterns"]["emp"]
    assert pattern["regex"] == f"EMP{HOSTILE}[0-9]+"   # the escapes are TOML's: it loads back to the value


def test_explain_json_is_inert(tmp_path):
    result = cli(tmp_path, "explain", "GET", "https://example.org/a%1b%5d0;pwned%07\u202e/b")
    assert_inert(result.stdout + result.stderr)


def test_explain_usage_error_is_inert(tmp_path):
    result = cli(tmp_path, "explain", "GET", f"ftp://{HOSTILE}/")
    assert result.returncode == 2
    assert_inert(result.stdout + result.stderr)


@pytest.mark.parametrize("target", [f"{HOSTILE}.test:443", "a.test:443\x9b2J"])
def test_audit_tail_after_a_hostile_connect_through_a_real_proxy(start_proxy, target, tmp_path):
    proxy = start_proxy('[permissions.p.network.domains]\n"allowed.test" = "allow"\n')
    with socket.create_connection(("127.0.0.1", proxy.http_port), timeout=10) as sock:
        sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode("utf-8", "surrogateescape"))
        sock.recv(4096)
    log = proxy.home / "audit.jsonl"
    deadline = time.monotonic() + 10
    while (not log.exists() or not log.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    result = cli(proxy.home, "audit", "tail", "--file", str(log))
    assert_inert(result.stdout + result.stderr)
    stats = cli(proxy.home, "audit", "stats", "--since", "all", "--file", str(log))
    assert_inert(stats.stdout + stats.stderr)


def test_the_serve_console_handler_escapes_what_the_proxy_logs(capsys):
    import logging

    from policyproxy.safe_text import install_console

    handler = install_console("policyproxy.test_console")
    try:
        logging.getLogger("policyproxy.test_console").warning("deny %s from %s", HOSTILE, "127.0.0.1")
        err = capsys.readouterr().err
    finally:
        logging.getLogger("policyproxy.test_console").removeHandler(handler)
    assert "pwned" in err
    assert_inert(err)
