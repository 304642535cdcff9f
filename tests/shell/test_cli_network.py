"""``ca``, ``env`` and ``run``: the commands that set up clients."""

import json
import os
import shlex
import shutil
import socket
import stat
import subprocess
import sys

import pytest

from tests.shell.proxy_process import ProxyProcess


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli(home, *args, timeout=60, env=None):
    return subprocess.run([sys.executable, "-m", "policyproxy", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "POLICYPROXY_HOME": str(home), **(env or {})})


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


def shell_env(home, *env_args: str) -> dict[str, str]:
    """``eval "$(policyproxy env ...)"`` in bash, then the resulting environment."""
    script = (f'eval "$({shlex.quote(sys.executable)} -m policyproxy env {" ".join(map(shlex.quote, env_args))})" '
              f'&& {shlex.quote(sys.executable)} -c "import os, json; print(json.dumps(dict(os.environ)))"')
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60,
                            env={**without_proxy_variables(), "POLICYPROXY_HOME": str(home)})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def without_proxy_variables() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}


def test_env_evaluates_in_bash_with_a_space_and_a_quote_in_the_home(tmp_path):
    home = tmp_path / "my home's dir"
    seen = shell_env(home)
    assert seen["HTTPS_PROXY"] == seen["http_proxy"] == "http://127.0.0.1:3128"
    assert "ALL_PROXY" not in seen and "all_proxy" not in seen   # SOCKS only on request
    assert seen["NODE_USE_ENV_PROXY"] == "1"
    assert seen["NODE_EXTRA_CA_CERTS"] == str(home / "ca" / "ca.pem")
    bundle = home / "ca" / "bundle.pem"
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "CODEX_CA_CERTIFICATE", "GIT_SSL_CAINFO",
                 "PIP_CERT", "NPM_CONFIG_CAFILE", "CARGO_HTTP_CAINFO"):
        assert seen[name] == str(bundle)
    assert (home / "ca" / "ca.pem").read_text().strip() in bundle.read_text()


def test_env_socks_adds_all_proxy_on_request(tmp_path):
    assert shell_env(tmp_path, "--socks")["ALL_PROXY"] == "socks5h://127.0.0.1:8081"


def test_env_socks_without_a_socks_listener_is_an_error(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[permissions.p.network]\nenable_socks5 = false\n[permissions.p.network.domains]\n"*" = "allow"\n')
    result = cli(tmp_path, "env", "--socks", "--config", str(config))
    assert result.returncode == 2 and "no SOCKS5 listener" in result.stderr


def test_curl_goes_through_the_proxy_after_eval_with_a_space_in_the_home(tmp_path, pki, upstream):
    """The whole path a user takes: serve in a home with a space, eval env, curl an intercepted host."""
    home = tmp_path / "home with space"
    config = """
    [permissions.p.network.domains]
    "api.github.com" = "allow"
    [permissions.p.network.mitm.hooks.h]
    host = "api.github.com"
    methods = ["GET"]
    path_prefixes = ["/"]
    action = ["strip"]
    [permissions.p.network.mitm.actions.strip]
    strip_request_headers = ["cookie"]
    """
    proxy = ProxyProcess(home, config, pki[0], [f"api.github.com:{upstream.tls_port}:127.0.0.1"],
                         extra=["--admin-listen", "off"])
    try:
        env_args = ["--config", str(proxy.config), "--listen", f"127.0.0.1:{proxy.http_port}"]
        script = (f'eval "$({shlex.quote(sys.executable)} -m policyproxy env {" ".join(map(shlex.quote, env_args))})" '
                  f'&& curl -sS --max-time 20 -H "Cookie: c=1" https://api.github.com:{upstream.tls_port}/after-eval')
        result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60,
                                env={**without_proxy_variables(), "POLICYPROXY_HOME": str(home)})
    finally:
        proxy.stop()
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout)
    assert seen["path"] == "/after-eval" and seen["tls"]
    assert "cookie" not in {name.lower() for name, _ in seen["headers"]}   # the hook ran: it was intercepted


def env_text(tmp_path, fmt: str, escape) -> list[str]:
    """``env --format fmt`` lines with the CA directory (which holds a space and a quote) as {CA}."""
    ca = tmp_path / "it's a dir" / "ca"
    result = cli(tmp_path, "env", "--format", fmt, "--ca-dir", str(ca), "--listen", "127.0.0.1:3999")
    assert result.returncode == 0, result.stderr
    return result.stdout.replace(escape(str(ca)), "{CA}").splitlines()


BUNDLE_NAMES = ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "CODEX_CA_CERTIFICATE", "GIT_SSL_CAINFO",
                "PIP_CERT", "NPM_CONFIG_CAFILE", "CARGO_HTTP_CAINFO"]


def test_env_fish_golden(tmp_path):
    assert env_text(tmp_path, "fish", lambda p: p.replace("'", "\\'")) == [
        "set -gx HTTP_PROXY 'http://127.0.0.1:3999'", "set -gx HTTPS_PROXY 'http://127.0.0.1:3999'",
        "set -gx http_proxy 'http://127.0.0.1:3999'", "set -gx https_proxy 'http://127.0.0.1:3999'",
        "set -gx NO_PROXY 'localhost,127.0.0.1,::1'", "set -gx no_proxy 'localhost,127.0.0.1,::1'",
        "set -gx NODE_USE_ENV_PROXY '1'",
        *[f"set -gx {name} '{{CA}}/bundle.pem'" for name in BUNDLE_NAMES],
        "set -gx NODE_EXTRA_CA_CERTS '{CA}/ca.pem'"]


@pytest.mark.skipif(shutil.which("fish") is None, reason="fish is not installed")
def test_env_fish_evaluates_in_fish(tmp_path):
    ca = tmp_path / "it's a dir" / "ca"
    script = (f"{shlex.quote(sys.executable)} -m policyproxy env --format fish --ca-dir {shlex.quote(str(ca))} | source; "
              "echo $SSL_CERT_FILE; echo $HTTPS_PROXY")
    result = subprocess.run(["fish", "-c", script], capture_output=True, text=True, timeout=60,
                            env={**without_proxy_variables(), "POLICYPROXY_HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [str(ca / "bundle.pem"), "http://127.0.0.1:3128"]


def test_env_powershell_golden(tmp_path):
    assert env_text(tmp_path, "powershell", lambda p: p.replace("'", "''")) == [
        "$env:HTTP_PROXY = 'http://127.0.0.1:3999'", "$env:HTTPS_PROXY = 'http://127.0.0.1:3999'",
        "$env:http_proxy = 'http://127.0.0.1:3999'", "$env:https_proxy = 'http://127.0.0.1:3999'",
        "$env:NO_PROXY = 'localhost,127.0.0.1,::1'", "$env:no_proxy = 'localhost,127.0.0.1,::1'",
        "$env:NODE_USE_ENV_PROXY = '1'",
        *[f"$env:{name} = '{{CA}}/bundle.pem'" for name in BUNDLE_NAMES],
        "$env:NODE_EXTRA_CA_CERTS = '{CA}/ca.pem'"]


def test_env_dotenv_golden(tmp_path):
    # a value holding a single quote is written in double quotes (with \\, \" and \$ escaped)
    assert env_text(tmp_path, "dotenv", lambda p: p) == [
        "HTTP_PROXY='http://127.0.0.1:3999'", "HTTPS_PROXY='http://127.0.0.1:3999'",
        "http_proxy='http://127.0.0.1:3999'", "https_proxy='http://127.0.0.1:3999'",
        "NO_PROXY='localhost,127.0.0.1,::1'", "no_proxy='localhost,127.0.0.1,::1'", "NODE_USE_ENV_PROXY='1'",
        *[f'{name}="{{CA}}/bundle.pem"' for name in BUNDLE_NAMES],
        'NODE_EXTRA_CA_CERTS="{CA}/ca.pem"']


def test_env_github_appends_to_github_env(tmp_path):
    target = tmp_path / "github_env"
    target.write_text("EARLIER=1\n")
    result = subprocess.run([sys.executable, "-m", "policyproxy", "env", "--format", "github"], capture_output=True,
                            text=True, timeout=60, env={**os.environ, "POLICYPROXY_HOME": str(tmp_path / "h h"),
                                                        "GITHUB_ENV": str(target)})
    assert result.returncode == 0, result.stderr
    lines = target.read_text().splitlines()
    assert lines[0] == "EARLIER=1" and "HTTPS_PROXY=http://127.0.0.1:3128" in lines
    assert f"SSL_CERT_FILE={tmp_path / 'h h' / 'ca' / 'bundle.pem'}" in lines
    assert "appended to $GITHUB_ENV" in result.stdout and "127.0.0.1" not in result.stdout


def test_env_github_without_github_env_is_an_error(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "GITHUB_ENV"}
    result = subprocess.run([sys.executable, "-m", "policyproxy", "env", "--format", "github"], capture_output=True,
                            text=True, timeout=60, env={**env, "POLICYPROXY_HOME": str(tmp_path)})
    assert result.returncode == 2 and "$GITHUB_ENV" in result.stderr


def test_run_starts_the_proxy_and_gives_the_command_its_environment(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[permissions.t.network.domains]\n"*" = "allow"\n"denied.test" = "deny"\n')
    http, socks = free_port(), free_port()
    child = ("import os, urllib.request, urllib.error\n"
             "try:\n    urllib.request.urlopen('http://denied.test/x', timeout=10)\n"
             "except urllib.error.HTTPError as e:\n    print(e.code, e.headers['x-proxy-error'])\n"
             "print(os.environ['HTTP_PROXY'], os.environ.get('ALL_PROXY'))\n")
    result = cli(tmp_path, "run", "--config", str(config), "--listen", f"127.0.0.1:{http}",
                 "--socks-listen", f"127.0.0.1:{socks}", "--", sys.executable, "-c", child)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["403 blocked-by-denylist", f"http://127.0.0.1:{http} None"]
    assert "NODE_USE_ENV_PROXY=1" in result.stderr   # says which clients ignore proxy variables
    with pytest.raises(OSError):  # the proxy it started is gone again
        socket.create_connection(("127.0.0.1", http), 0.5).close()


def test_run_passes_the_exit_code_through(tmp_path):
    http, socks = free_port(), free_port()
    result = cli(tmp_path, "run", "--listen", f"127.0.0.1:{http}", "--socks-listen", f"127.0.0.1:{socks}",
                 "--", sys.executable, "-c", "raise SystemExit(7)")
    assert result.returncode == 7


def test_run_socks_gives_all_proxy_and_drops_an_inherited_one_otherwise(tmp_path):
    http, socks = free_port(), free_port()
    child = "import os; print(os.environ.get('ALL_PROXY'), os.environ.get('all_proxy'))"
    inherited = {"ALL_PROXY": "socks5h://127.0.0.1:1", "all_proxy": "socks5h://127.0.0.1:1"}
    plain = cli(tmp_path, "run", "--listen", f"127.0.0.1:{http}", "--socks-listen", f"127.0.0.1:{socks}",
                "--", sys.executable, "-c", child, env=inherited)
    assert plain.stdout.split() == ["None", "None"], plain.stderr
    with_socks = cli(tmp_path, "run", "--socks", "--listen", f"127.0.0.1:{http}", "--socks-listen",
                     f"127.0.0.1:{socks}", "--", sys.executable, "-c", child, env=inherited)
    assert with_socks.stdout.split() == [f"socks5h://127.0.0.1:{socks}"] * 2, with_socks.stderr


def test_listener_credentials_with_shell_metacharacters_survive_eval(tmp_path, pki, upstream):
    """A listener password holding ', $, " and a space: eval must not break or expand it, and curl must
    authenticate with it (407 otherwise)."""
    config = """
    [permissions.p.network]
    proxy_url = "http://agent:p$a's\\"w rd@127.0.0.1:3128"
    socks_url = "socks5://agent:p$a's\\"w rd@127.0.0.1:8081"
    [permissions.p.network.domains]
    "upstream.test" = "allow"
    """
    home = tmp_path / "home"
    proxy = ProxyProcess(home, config, pki[0], [f"upstream.test:{upstream.plain_port}:127.0.0.1"],
                         extra=["--admin-listen", "off"])
    try:
        env_args = ["--config", str(proxy.config), "--listen", f"127.0.0.1:{proxy.http_port}"]
        script = (f'eval "$({shlex.quote(sys.executable)} -m policyproxy env {" ".join(map(shlex.quote, env_args))})" '
                  f'&& curl -sS --max-time 20 -o /dev/null -w "%{{http_code}}" http://upstream.test:{upstream.plain_port}/creds')
        result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60,
                                env={**without_proxy_variables(), "POLICYPROXY_HOME": str(home)})
    finally:
        proxy.stop()
    assert result.returncode == 0, result.stderr
    assert result.stdout == "200"
