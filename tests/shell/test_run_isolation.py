"""``policyproxy run``: the command never sees the proxy's secrets, and only a proxy that proves it
serves the same config is reused. Attack classes: secrets reaching the agent (9.7) and a proxy
that impersonates the configured one (9.9)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from policyproxy.cli.render import config_digest
from policyproxy.config import load_settings
from policyproxy.tls.ca_store import load_or_create
from tests.shell.proxy_process import ProxyProcess

TOKEN = "tok-run-canary-1111111111"
REQ_TOKEN = "req-run-canary-2222222222"
FILE_TOKEN = "file-run-canary-3333333333"
ADMIN_TOKEN = "admin-run-canary-444444444"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(home, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    return subprocess.run([sys.executable, "-m", "policyproxy", "run", *args], capture_output=True, text=True,
                          timeout=90, env={**base, "POLICYPROXY_HOME": str(home), **(env or {})})


CHILD_ENV = "import os, json; print(json.dumps(dict(os.environ)))"


def test_run_withholds_every_injected_secret_and_copies_of_it(tmp_path, upstream):
    secret_file = tmp_path / "token.txt"
    secret_file.write_text(FILE_TOKEN + "\n")
    http = free_port()
    config = tmp_path / "c.toml"
    config.write_text(textwrap.dedent(f"""
        [permissions.p.network]
        proxy_url = "http://127.0.0.1:{http}"
        enable_socks5 = false
        [permissions.p.network.domains]
        "127.0.0.1" = "allow"
        [permissions.p.network.mitm.hooks.h]
        host = "127.0.0.1"
        methods = ["GET"]
        path_prefixes = ["/"]
        action = ["inject"]
        allow_plaintext_secrets = true
        [permissions.p.network.mitm.hooks.f]
        host = "127.0.0.1"
        methods = ["PUT"]
        path_prefixes = ["/"]
        action = ["from_file"]
        allow_plaintext_secrets = true
        [permissions.p.network.mitm.actions.inject]
        [[permissions.p.network.mitm.actions.inject.inject_request_headers]]
        name = "authorization"
        secret_env_var = "RUN_TEST_TOKEN"
        prefix = "Bearer "
        [permissions.p.network.mitm.actions.from_file]
        [[permissions.p.network.mitm.actions.from_file.inject_request_headers]]
        name = "x-file-token"
        secret_file = "{secret_file}"
        [admin]
        listen = "127.0.0.1:0"
        token_env_var = "RUN_TEST_ADMIN_TOKEN"
    """))
    requirements = tmp_path / "r.toml"
    requirements.write_text(textwrap.dedent("""
        [network.mitm.hooks.managed]
        host = "127.0.0.1"
        methods = ["DELETE"]
        path_prefixes = ["/"]
        action = ["managed_inject"]
        allow_plaintext_secrets = true
        [network.mitm.actions.managed_inject]
        [[network.mitm.actions.managed_inject.inject_request_headers]]
        name = "x-managed"
        secret_env_var = "RUN_TEST_REQ_TOKEN"
    """))
    child = ("import os, json, urllib.request\n"
             "env = dict(os.environ)\n"
             "os.environ.pop('NO_PROXY'); os.environ.pop('no_proxy')   # urllib would go direct to 127.0.0.1\n"
             "opener = urllib.request.build_opener(urllib.request.ProxyHandler({'http': os.environ['HTTP_PROXY']}))\n"
             f"seen = json.loads(opener.open('http://127.0.0.1:{upstream.plain_port}/through-run', timeout=20).read())\n"
             "print(json.dumps({'env': env, 'seen': seen}))\n")
    env = {"RUN_TEST_TOKEN": TOKEN, "GH_TOKEN_COPY": TOKEN + "\n", "RUN_TEST_REQ_TOKEN": REQ_TOKEN,
           "FILE_TOKEN_COPY": FILE_TOKEN, "RUN_TEST_ADMIN_TOKEN": ADMIN_TOKEN, "UNRELATED": "keep-me"}
    result = run(tmp_path, "--config", str(config), "--requirements", str(requirements), "--", sys.executable,
                 "-c", child, env=env)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    withheld = ["FILE_TOKEN_COPY", "GH_TOKEN_COPY", "RUN_TEST_ADMIN_TOKEN", "RUN_TEST_REQ_TOKEN", "RUN_TEST_TOKEN"]
    for name in withheld:
        assert name not in out["env"]
    values = "\n".join(out["env"].values())
    for canary in (TOKEN, REQ_TOKEN, FILE_TOKEN, ADMIN_TOKEN):
        assert canary not in values
    assert out["env"]["UNRELATED"] == "keep-me"
    assert f"withheld from the command (the proxy injects them): {', '.join(withheld)}" in result.stderr
    for canary in (TOKEN, REQ_TOKEN, FILE_TOKEN, ADMIN_TOKEN):
        assert canary not in result.stderr
    # the proxy run started kept them: the hook still injects the token the command cannot read
    headers = {name.lower(): value for name, value in out["seen"]["headers"]}
    assert headers["authorization"] == f"Bearer {TOKEN}"


def test_run_without_injected_secrets_withholds_nothing(tmp_path):
    result = run(tmp_path, "--listen", f"127.0.0.1:{free_port()}", "--socks-listen", f"127.0.0.1:{free_port()}",
                 "--", sys.executable, "-c", CHILD_ENV, env={"SOME_TOKEN": "x" * 20})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["SOME_TOKEN"] == "x" * 20 and "withheld" not in result.stderr


def profile(name: str, http: int, socks: int, admin: int, deny: str = "") -> str:
    return textwrap.dedent(f"""
        default_permissions = "{name}"
        [permissions.{name}.network]
        proxy_url = "http://127.0.0.1:{http}"
        socks_url = "socks5://127.0.0.1:{socks}"
        [permissions.{name}.network.domains]
        "*" = "allow"
        {f'"{deny}" = "deny"' if deny else ""}
        [admin]
        listen = "127.0.0.1:{admin}"
    """)


CHILD_DENIED = ("import os, urllib.request, urllib.error\n"
                "try:\n    urllib.request.urlopen('http://denied.test/x', timeout=20)\n    print('ALLOWED')\n"
                "except urllib.error.HTTPError as e:\n    print(e.code, e.headers.get('x-proxy-error'))\n"
                "except Exception as e:\n    print('ERROR', type(e).__name__)\n"
                "print(os.environ['HTTP_PROXY'])\n")


def serve_on(home, config_text: str, http: int, socks: int, pki) -> ProxyProcess:
    return ProxyProcess(home, config_text, pki[0], [], extra=["--listen", f"127.0.0.1:{http}",
                                                             "--socks-listen", f"127.0.0.1:{socks}"])


def test_a_proxy_serving_another_profile_on_the_configured_ports_is_not_reused(tmp_path, pki):
    http, socks, admin = free_port(), free_port(), free_port()
    laptop = serve_on(tmp_path / "laptop", profile("laptop", http, socks, admin), http, socks, pki)
    try:
        assert any(line.strip() == f"admin: http://127.0.0.1:{admin}/" for line in laptop.output)
        ci = tmp_path / "ci.toml"
        ci.write_text(profile("ci", http, socks, admin, deny="denied.test"))
        result = run(tmp_path, "--config", str(ci), "--", sys.executable, "-c", CHILD_DENIED)
        assert result.returncode == 0, result.stderr
        verdict, proxy_url = result.stdout.splitlines()
        assert verdict == "403 blocked-by-denylist"     # the ci policy applied, not the laptop's
        assert proxy_url != f"http://127.0.0.1:{http}"  # the child got the private proxy's port
        assert f"not reusing the proxy on 127.0.0.1:{http}: it serves another config (profile 'laptop'" in result.stderr
        assert laptop.process.poll() is None
        audit = laptop.home / "audit.jsonl"
        assert "denied.test" not in (audit.read_text() if audit.exists() else "")
    finally:
        laptop.stop()


def test_a_proxy_serving_the_same_config_is_reused(tmp_path, pki):
    http, socks, admin = free_port(), free_port(), free_port()
    text = profile("ci", http, socks, admin, deny="denied.test")
    shared = serve_on(tmp_path / "shared", text, http, socks, pki)
    try:
        result = run(tmp_path, "--config", str(shared.config), "--ca-dir", str(shared.home / "ca"), "--",
                     sys.executable, "-c", CHILD_DENIED)
        assert result.returncode == 0, result.stderr
        assert result.stdout.splitlines() == ["403 blocked-by-denylist", f"http://127.0.0.1:{http}"]
        assert f"reusing the proxy on 127.0.0.1:{http} (same config digest)" in result.stderr
        assert shared.process.poll() is None   # run does not stop a proxy it did not start
        assert "denied.test" in (shared.home / "audit.jsonl").read_text()
    finally:
        shared.stop()


def test_the_same_config_with_another_ca_is_not_reused(tmp_path, pki):
    """The command would trust its own CA; a proxy intercepting with another one would fail its TLS."""
    http, socks, admin = free_port(), free_port(), free_port()
    shared = serve_on(tmp_path / "shared", profile("ci", http, socks, admin, deny="denied.test"), http, socks, pki)
    try:
        result = run(tmp_path, "--config", str(shared.config), "--", sys.executable, "-c", CHILD_DENIED)
    finally:
        shared.stop()
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "403 blocked-by-denylist"
    assert "it intercepts with another CA than the one the command would trust" in result.stderr


def test_a_stranger_on_the_port_without_an_admin_is_not_reused(tmp_path):
    http, socks, admin = free_port(), free_port(), free_port()
    config = tmp_path / "c.toml"
    config.write_text(profile("ci", http, socks, admin, deny="denied.test"))
    with socket.socket() as stranger:
        stranger.bind(("127.0.0.1", http))
        stranger.listen()
        result = run(tmp_path, "--config", str(config), "--", sys.executable, "-c", CHILD_DENIED)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "403 blocked-by-denylist"
    assert f"no policyproxy admin status at http://127.0.0.1:{admin}/api/status" in result.stderr


class _FakeAdmin(BaseHTTPRequestHandler):
    body = b"{}"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("lie", ["other_listeners", "other_digest", "other_ca", "not_json"])
def test_an_admin_that_does_not_prove_both_digest_and_listeners_is_not_trusted(tmp_path, lie):
    http, socks, admin = free_port(), free_port(), free_port()
    config = tmp_path / "c.toml"
    config.write_text(profile("ci", http, socks, admin, deny="denied.test"))
    digest = config_digest(load_settings(config, None, None, env={"POLICYPROXY_HOME": str(tmp_path)}))
    ca = load_or_create(tmp_path / "ca")
    status = {"config_digest": digest, "profile": "ci", "ca_sha256": ca.fingerprint,
              "listeners": {"http": f"127.0.0.1:{http}", "socks5": f"127.0.0.1:{socks}"}}
    if lie == "other_listeners":
        status["listeners"]["http"] = "127.0.0.1:1"
    elif lie == "other_digest":
        status["config_digest"] = "sha256:" + "0" * 64
    elif lie == "other_ca":
        status["ca_sha256"] = "0" * 64
    handler = type("Fake", (_FakeAdmin,), {"body": b"<html>" if lie == "not_json" else json.dumps(status).encode()})
    server = ThreadingHTTPServer(("127.0.0.1", admin), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with socket.socket() as stranger:
            stranger.bind(("127.0.0.1", http))
            stranger.listen()
            result = run(tmp_path, "--config", str(config), "--", sys.executable, "-c", CHILD_DENIED)
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == "403 blocked-by-denylist"
    assert re.search(rf"not reusing the proxy on 127.0.0.1:{http}: .+; starting a private one", result.stderr)


def _unprivileged_python() -> list[str] | None:
    """A command prefix that runs this checkout's policyproxy as uid 65534 with no capabilities."""
    setpriv, python = shutil.which("setpriv"), "/usr/bin/python3"
    if os.geteuid() != 0 or setpriv is None or not os.path.exists(python):
        return None
    site = [p for p in sys.path if p.endswith("site-packages") and os.path.isdir(p)]
    prefix = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
              "--bounding-set=-all", "env", f"PYTHONPATH={os.pathsep.join([REPO, *site])}", python]
    probe = subprocess.run([*prefix, "-c", "import policyproxy.cli.main, aiohttp, cryptography"],
                           capture_output=True, timeout=60)
    return prefix if probe.returncode == 0 else None


REPO = str(Path(__file__).resolve().parents[2])


def test_the_command_cannot_read_withheld_secrets_from_proc_environ(tmp_path):
    """Same-user processes: the agent scans every /proc/<pid>/environ it can read for the token."""
    prefix = _unprivileged_python()
    if prefix is None:
        pytest.skip("needs root, setpriv and a system python3 that can import the checkout")
    work = Path(tempfile.mkdtemp(prefix="pp-run-"))
    try:
        os.chmod(work, 0o777)
        http = free_port()
        config = work / "c.toml"
        config.write_text(textwrap.dedent(f"""
            [permissions.p.network]
            proxy_url = "http://127.0.0.1:{http}"
            enable_socks5 = false
            [permissions.p.network.domains]
            "api.github.com" = "allow"
            [permissions.p.network.mitm.hooks.h]
            host = "api.github.com"
            methods = ["GET"]
            path_prefixes = ["/"]
            action = ["inject"]
            [permissions.p.network.mitm.actions.inject]
            [[permissions.p.network.mitm.actions.inject.inject_request_headers]]
            name = "authorization"
            secret_env_var = "RUN_TEST_TOKEN"
            [admin]
            listen = "off"
        """))
        os.chmod(config, 0o644)
        scan = ("import os, glob\nfound = []\n"
                "for path in glob.glob('/proc/[0-9]*/environ'):\n"
                "    try:\n        data = open(path, 'rb').read()\n    except OSError:\n        continue\n"
                f"    if b'{TOKEN}' in data:\n        found.append(path)\n"
                "print('FOUND' if found else 'CLEAN', found)\n")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "POLICYPROXY_HOME": str(work / "home"),
               "RUN_TEST_TOKEN": TOKEN}
        result = subprocess.run([*prefix, "-m", "policyproxy", "run", "--config", str(config), "--",
                                 "/usr/bin/python3", "-c", scan], capture_output=True, text=True, timeout=90, env=env)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("CLEAN"), result.stdout


def test_the_openai_and_anthropic_sdks_work_under_run(tmp_path, pki, upstream):
    """httpx (under both SDKs) fails on ALL_PROXY=socks5h:// without socksio: run must not hand it one,
    and the SDKs must trust the interception CA through the exported bundle."""
    port = upstream.tls_port
    config = tmp_path / "c.toml"
    config.write_text(textwrap.dedent(f"""
        [permissions.p.network]
        proxy_url = "http://127.0.0.1:{free_port()}"
        socks_url = "socks5://127.0.0.1:{free_port()}"
        [permissions.p.network.domains]
        "api.openai.com" = "allow"
        "api.anthropic.com" = "allow"
        [permissions.p.network.redaction]
        default_action = "mask"
        [admin]
        listen = "off"
    """))
    child = textwrap.dedent(f"""
        import anthropic, openai
        o = openai.OpenAI(api_key="k", base_url="https://api.openai.com:{port}/v1", max_retries=0)
        r = o.chat.completions.create(model="m", messages=[{{"role": "user", "content": "mail alice@example.com"}}])
        print(r.choices[0].message.content)
        a = anthropic.Anthropic(api_key="k", base_url="https://api.anthropic.com:{port}", max_retries=0)
        m = a.messages.create(model="m", max_tokens=50, messages=[{{"role": "user", "content": "mail bob@example.com"}}])
        print(m.content[0].text)
    """)
    before = len(upstream.requests)
    result = run(tmp_path, "--config", str(config), "--upstream-ca", str(pki[0]),
                 "--resolve", f"api.openai.com:{port}:127.0.0.1", "--resolve", f"api.anthropic.com:{port}:127.0.0.1",
                 "--", sys.executable, "-c", child,
                 env={"ALL_PROXY": "socks5h://127.0.0.1:1", "all_proxy": "socks5h://127.0.0.1:1"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "alice@example.com" in lines[0] and "bob@example.com" in lines[1]   # restored for the client
    sent = "".join(r["body"] for r in upstream.requests[before:])
    assert "alice@example.com" not in sent and "bob@example.com" not in sent   # masked upstream


def test_a_redirecting_admin_does_not_get_the_token_carried_elsewhere(tmp_path):
    """A stranger on the admin port answers 302 to a server it controls: run must not follow it with
    the admin bearer token (urllib forwards Authorization on redirects)."""
    seen: list[str | None] = []

    class Catch(_FakeAdmin):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization"))
            super().do_GET()

    catcher = ThreadingHTTPServer(("127.0.0.1", 0), Catch)
    target = f"http://127.0.0.1:{catcher.server_address[1]}/steal"

    class Redirect(_FakeAdmin):
        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", target)
            self.end_headers()

    http, socks, admin = free_port(), free_port(), free_port()
    redirector = ThreadingHTTPServer(("127.0.0.1", admin), Redirect)
    for server in (catcher, redirector):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    config = tmp_path / "c.toml"
    config.write_text(profile("ci", http, socks, admin, deny="denied.test")
                      + 'token_env_var = "RUN_TEST_ADMIN_TOKEN"\n')
    try:
        with socket.socket() as stranger:
            stranger.bind(("127.0.0.1", http))
            stranger.listen()
            result = run(tmp_path, "--config", str(config), "--", sys.executable, "-c", CHILD_DENIED,
                         env={"RUN_TEST_ADMIN_TOKEN": ADMIN_TOKEN})
    finally:
        for server in (catcher, redirector):
            server.shutdown()
            server.server_close()
    assert result.returncode == 0, result.stderr
    assert seen == []
    assert "starting a private one" in result.stderr


def test_terminating_run_stops_the_command_and_the_proxy_it_started(tmp_path):
    """Attack class: a vanished parent. SIGTERM to run must not leave the proxy (holding the secrets
    and the port) or the command behind."""
    http = free_port()
    marker = tmp_path / "child.pid"
    child = f"import os, time; open({str(marker)!r}, 'w').write(str(os.getpid())); time.sleep(120)"
    base = {k: v for k, v in os.environ.items() if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    process = subprocess.Popen([sys.executable, "-m", "policyproxy", "run", "--listen", f"127.0.0.1:{http}",
                                "--socks-listen", f"127.0.0.1:{free_port()}", "--", sys.executable, "-c", child],
                               env={**base, "POLICYPROXY_HOME": str(tmp_path)}, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not marker.exists() or not marker.read_text():
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    child_pid = int(marker.read_text())
    socket.create_connection(("127.0.0.1", http), 2).close()   # the proxy it started is up
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 128 + signal.SIGTERM
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", http), 0.5).close()
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{child_pid}") and time.monotonic() < deadline:
        time.sleep(0.05)
    stat_path = Path(f"/proc/{child_pid}/stat")
    stat_line = stat_path.read_text() if stat_path.exists() else ""
    assert not stat_line or stat_line.split(") ")[1].startswith("Z"), "the command outlived run"
