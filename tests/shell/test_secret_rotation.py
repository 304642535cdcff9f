"""Secrets that rotate (issue 12 part 7), through a real ``policyproxy serve`` and a recording upstream.

Attack classes: a file rewritten in place or swapped by rename (no reload, no mixed value); a command
that mints a new token when the old one gets old; a broker that fails (last good value kept until it
expires, then a clear 503 and never a value in an answer, the console or the audit log).
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.shell.test_proxy_http import curl, status_and_body

pytestmark = pytest.mark.skipif(__import__("shutil").which("curl") is None, reason="curl is not installed")

CONFIG = """
[permissions.t.network]
[permissions.t.network.domains]
"*" = "allow"
[permissions.t.network.mitm.hooks.gh]
host = "api.github.com"
methods = ["GET"]
path_prefixes = ["/repos/"]
action = ["inject"]
[permissions.t.network.mitm.actions.inject]
[[permissions.t.network.mitm.actions.inject.inject_request_headers]]
name = "authorization"
SOURCE
prefix = "Bearer "
"""

# Prints tok-<n> (n counts runs, kept in a state file); exits 3 while a "fail" file exists.
MINT = textwrap.dedent("""\
    import pathlib, sys
    state = pathlib.Path(sys.argv[1])
    if (state / "fail").exists():
        print("half-minted-canary-should-never-show")
        sys.exit(3)
    count = int((state / "count").read_text()) + 1 if (state / "count").exists() else 1
    (state / "count").write_text(str(count))
    print(f"tok-{count}-canary")
""")


def authorization(proxy, upstream) -> tuple[int, str | None, str]:
    result = curl("-i", "-x", proxy.url, "--cacert", str(proxy.ca),
                  f"https://api.github.com:{upstream.tls_port}/repos/myorg/x")
    status, body = status_and_body(result)
    if status != 200:
        return status, None, body
    headers = {k.lower(): v for k, v in json.loads(body)["headers"]}
    return status, headers.get("authorization"), body


def source(line: str) -> str:
    return CONFIG.replace("SOURCE", line)


def test_a_rotated_secret_file_is_used_by_the_next_request(start_proxy, upstream, tmp_path):
    token = tmp_path / "token"
    token.write_text("first-token-canary\n")
    proxy = start_proxy(source(f'secret_file = "{token}"'))
    assert authorization(proxy, upstream)[1] == "Bearer first-token-canary"
    # Rewritten in place, same length: picked up without SIGHUP.
    token.write_text("other-token-canary\n")
    assert authorization(proxy, upstream)[1] == "Bearer other-token-canary"
    # Swapped by rename, the way Kubernetes and most secret agents write.
    staged = tmp_path / "token.new"
    staged.write_text("third-token-canary-longer\n")
    os.replace(staged, token)
    assert authorization(proxy, upstream)[1] == "Bearer third-token-canary-longer"


def test_a_secret_file_emptied_mid_rewrite_keeps_the_last_good_value(start_proxy, upstream, tmp_path):
    token = tmp_path / "token"
    token.write_text("steady-token-canary\n")
    proxy = start_proxy(source(f'secret_file = "{token}"'))
    assert authorization(proxy, upstream)[1] == "Bearer steady-token-canary"
    token.write_text("")      # a writer that truncates first: never an empty header
    assert authorization(proxy, upstream)[1] == "Bearer steady-token-canary"
    token.unlink()            # gone (a swap in progress): the last good value stays
    assert authorization(proxy, upstream)[1] == "Bearer steady-token-canary"
    token.write_text("next-token-canary\n")
    assert authorization(proxy, upstream)[1] == "Bearer next-token-canary"
    assert "canary" not in proxy.logs()


def test_a_fifo_swapped_in_for_the_secret_file_never_stalls_the_proxy(start_proxy, upstream, tmp_path):
    token = tmp_path / "token"
    token.write_text("fifo-token-canary\n")
    proxy = start_proxy(source(f'secret_file = "{token}"'))
    assert authorization(proxy, upstream)[1] == "Bearer fifo-token-canary"
    token.unlink()
    os.mkfifo(token)   # reading it would block until a writer comes: the event loop must not wait
    started = time.monotonic()
    assert authorization(proxy, upstream)[1] == "Bearer fifo-token-canary"
    assert time.monotonic() - started < 5
    assert "is not a regular file" in proxy.logs() and "canary" not in proxy.logs()


def _mint(tmp_path: Path, ttl: int) -> tuple[Path, str]:
    script = tmp_path / "mint.py"
    script.write_text(MINT)
    state = tmp_path / "state"
    state.mkdir()
    return state, source(f'secret_command = ["{sys.executable}", "{script}", "{state}"]\nsecret_ttl_seconds = {ttl}')


def test_a_secret_command_mints_a_new_value_when_its_ttl_expires(start_proxy, upstream, tmp_path):
    state, config = _mint(tmp_path, ttl=1)
    proxy = start_proxy(config)
    assert (state / "count").read_text() == "1"          # run once at start
    assert authorization(proxy, upstream)[1] == "Bearer tok-1-canary"
    time.sleep(1.2)
    assert authorization(proxy, upstream)[1] == "Bearer tok-2-canary"   # expired: this request waited
    assert authorization(proxy, upstream)[1] == "Bearer tok-2-canary"


def test_a_failed_refresh_keeps_the_last_value_until_it_expires_then_denies(start_proxy, upstream, tmp_path):
    state, config = _mint(tmp_path, ttl=2)
    proxy = start_proxy(config)
    (state / "fail").touch()
    time.sleep(1.6)   # past 3/4 of its life: a use starts a refresh, which fails; the value still serves
    assert authorization(proxy, upstream)[1] == "Bearer tok-1-canary"
    time.sleep(0.7)   # expired
    status, _, body = authorization(proxy, upstream)
    assert status == 503
    assert "secret_unavailable" in body or "expired" in body
    assert "canary" not in body
    (state / "fail").unlink()
    time.sleep(0.6)   # past the retry pause
    assert authorization(proxy, upstream)[1] == "Bearer tok-2-canary"
    logs = proxy.logs()
    assert "refreshing the secret" in logs and "exited with status 3" in logs
    assert "canary" not in logs
    audit = (proxy.home / "audit.jsonl").read_text()
    assert '"network.policy.reason":"secret_unavailable"' in audit and "canary" not in audit


def test_a_secret_command_that_fails_at_start_refuses_to_start_without_showing_its_output(start_proxy, tmp_path):
    state, config = _mint(tmp_path, ttl=60)
    (state / "fail").touch()
    with pytest.raises(RuntimeError) as info:
        start_proxy(config)
    message = str(info.value)
    assert (f"inject_request_headers[0].secret_command '{Path(sys.executable).name}' exited with status 3"
            in message)
    assert "canary" not in message
