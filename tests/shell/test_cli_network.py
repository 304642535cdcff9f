"""``ca``, ``env`` and ``run``: the commands that set up clients."""

import os
import socket
import stat
import subprocess
import sys

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(home, *args, timeout=60):
    return subprocess.run([sys.executable, "-m", "policyproxy", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "POLICYPROXY_HOME": str(home)})


def test_ca_init_creates_once_and_path_and_export_agree(tmp_path):
    first = cli(tmp_path, "ca", "init")
    assert first.returncode == 0 and "created CA" in first.stdout
    key = tmp_path / "ca" / "ca.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    before = key.read_bytes()
    again = cli(tmp_path, "ca", "init")
    assert "already exists" in again.stdout and key.read_bytes() == before
    path = cli(tmp_path, "ca", "path").stdout.strip()
    assert path == str(tmp_path / "ca" / "ca.pem")
    assert cli(tmp_path, "ca", "export").stdout == (tmp_path / "ca" / "ca.pem").read_text()


def test_ca_path_without_a_ca_is_an_error(tmp_path):
    result = cli(tmp_path, "ca", "path")
    assert result.returncode == 2 and "policyproxy ca init" in result.stderr


def test_env_prints_proxy_and_trust_variables(tmp_path):
    lines = dict(line.removeprefix("export ").split("=", 1) for line in cli(tmp_path, "env").stdout.splitlines())
    assert lines["HTTPS_PROXY"] == "http://127.0.0.1:3128"
    assert lines["ALL_PROXY"] == "socks5h://127.0.0.1:8081"
    assert lines["NODE_EXTRA_CA_CERTS"] == str(tmp_path / "ca" / "ca.pem")
    bundle = tmp_path / "ca" / "bundle.pem"
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "CODEX_CA_CERTIFICATE", "GIT_SSL_CAINFO",
                 "PIP_CERT", "NPM_CONFIG_CAFILE", "CARGO_HTTP_CAINFO"):
        assert lines[name] == str(bundle)
    assert (tmp_path / "ca" / "ca.pem").read_text().strip() in bundle.read_text()


def test_run_starts_the_proxy_and_gives_the_command_its_environment(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[permissions.t.network.domains]\n"*" = "allow"\n"denied.test" = "deny"\n')
    http, socks = free_port(), free_port()
    child = ("import os, urllib.request, urllib.error\n"
             "try:\n    urllib.request.urlopen('http://denied.test/x', timeout=10)\n"
             "except urllib.error.HTTPError as e:\n    print(e.code, e.headers['x-proxy-error'])\n"
             "print(os.environ['ALL_PROXY'])\n")
    result = cli(tmp_path, "run", "--config", str(config), "--listen", f"127.0.0.1:{http}",
                 "--socks-listen", f"127.0.0.1:{socks}", "--", sys.executable, "-c", child)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["403 blocked-by-denylist", f"socks5h://127.0.0.1:{socks}"]
    with pytest.raises(OSError):  # the proxy it started is gone again
        socket.create_connection(("127.0.0.1", http), 0.5).close()


def test_run_passes_the_exit_code_through(tmp_path):
    http, socks = free_port(), free_port()
    result = cli(tmp_path, "run", "--listen", f"127.0.0.1:{http}", "--socks-listen", f"127.0.0.1:{socks}",
                 "--", sys.executable, "-c", "raise SystemExit(7)")
    assert result.returncode == 7
