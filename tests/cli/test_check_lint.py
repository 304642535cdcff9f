"""``check --no-secrets``, ``check --json`` and ``explain``'s hook trace, run as CI and users run them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PROFILE = """\
default_permissions = "ws"
[permissions.ws.network.domains]
"api.github.com" = "allow"
[permissions.ws.network.mitm.hooks.writes]
host = "api.github.com"
methods = ["POST", "GET"]
path_prefixes = ["/repos/"]
action = ["inject"]
[permissions.ws.network.mitm.hooks.dead]
host = "api.github.com"
methods = ["POST"]
path_prefixes = ["/repos/myorg/"]
action = ["inject"]
[permissions.ws.network.mitm.actions.inject]
[[permissions.ws.network.mitm.actions.inject.inject_request_headers]]
name = "authorization"
secret_env_var = "LINT_GH_TOKEN"
[[permissions.ws.network.mitm.actions.inject.inject_request_headers]]
name = "x-file"
secret_file = "/run/secrets/not-here"
"""


def cli(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k != "LINT_GH_TOKEN"}
    return subprocess.run([sys.executable, "-m", "policyproxy", *args], capture_output=True, text=True, timeout=60,
                          env={**clean, "POLICYPROXY_HOME": str(tmp_path / "home"), **(env or {})})


def config(tmp_path: Path, text: str = PROFILE) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return path


def test_check_without_the_secrets_fails_and_names_them(tmp_path):
    result = cli(tmp_path, "check", "--config", str(config(tmp_path)))
    assert result.returncode == 2
    assert "LINT_GH_TOKEN" in result.stderr and "/run/secrets/not-here" in result.stderr


def test_check_no_secrets_passes_with_warnings_naming_each_source(tmp_path):
    path = config(tmp_path)
    result = cli(tmp_path, "check", "--no-secrets", "--config", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith("OK")
    assert (f"warning: {path}:17: permissions.ws.network.mitm.actions.inject.inject_request_headers[0]."
            "secret_env_var names LINT_GH_TOKEN") in result.stderr
    assert "cannot read /run/secrets/not-here" in result.stderr
    assert f"warning: {path}:9: permissions.ws.network.mitm.hooks.dead can never match: the earlier hook " \
           "'writes' matches every request it can match" in result.stderr


def test_check_json_is_one_document_for_ci_annotations(tmp_path):
    path = config(tmp_path)
    result = cli(tmp_path, "check", "--json", "--no-secrets", "--config", str(path),
                 env={"LINT_GH_TOKEN": "ghp_lint_canary_value"})
    assert result.returncode == 0
    doc = json.loads(result.stdout)
    assert doc["valid"] is True and doc["errors"] == []
    by_code = {w["code"]: w for w in doc["warnings"]}
    assert by_code["hook_shadowed"] == {"code": "hook_shadowed", "file": str(path), "line": 9,
                                        "key": "permissions.ws.network.mitm.hooks.dead",
                                        "message": "can never match: the earlier hook 'writes' matches every "
                                                   "request it can match (first match wins)"}
    assert by_code["secret_unavailable"]["key"].endswith("inject_request_headers[1].secret_file")
    assert doc["summary"]["profile"] == "ws"
    assert [h["name"] for h in doc["summary"]["hooks"]] == ["writes", "dead"]
    assert "canary" not in result.stdout   # the env var that was set is never printed


def test_check_json_reports_errors_with_file_line_and_key(tmp_path):
    path = config(tmp_path, PROFILE.replace('methods = ["POST"]', 'methods = "POST"'))
    result = cli(tmp_path, "check", "--json", "--config", str(path))
    assert result.returncode == 2
    doc = json.loads(result.stdout)
    assert doc["valid"] is False and doc["summary"] is None
    assert {"file": str(path), "line": 11, "key": "permissions.ws.network.mitm.hooks.dead.methods"}.items() <= \
        doc["errors"][0].items()


def test_explain_says_why_each_hook_did_or_did_not_match(tmp_path):
    path = config(tmp_path)
    result = cli(tmp_path, "explain", "--config", str(path), "PUT", "https://api.github.com/repos/myorg/x",
                 env={"LINT_GH_TOKEN": "t"})
    assert result.returncode == 1
    record = json.loads(result.stdout)
    assert record["network.policy.reason"] == "mitm_hook_denied"
    assert record["hooks"] == [
        {"name": "writes", "matched": False, "why": "method PUT is not one of GET, POST"},
        {"name": "dead", "matched": False, "why": "method PUT is not one of POST"},
    ]
    result = cli(tmp_path, "explain", "--config", str(path), "POST", "https://api.github.com/repos/myorg/x")
    assert result.returncode == 0   # explain needs no secret
    assert [h["matched"] for h in json.loads(result.stdout)["hooks"]] == [True, False]


def test_config_show_round_trips_a_secret_command_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    text = PROFILE.replace('secret_file = "/run/secrets/not-here"',
                           f'secret_command = ["/bin/sh", "-c", "touch {marker}; echo v"]\nsecret_ttl_seconds = 45')
    shown = cli(tmp_path, "config", "show", "--config", str(config(tmp_path, text)))
    assert shown.returncode == 0, shown.stderr
    assert 'secret_ttl_seconds = 45' in shown.stdout and not marker.exists()
    again = tmp_path / "again.toml"
    again.write_text(shown.stdout)
    result = cli(tmp_path, "check", "--config", str(again), env={"LINT_GH_TOKEN": "t"})
    assert result.returncode == 0, result.stderr
    assert marker.exists()   # check runs the command: it validates that the secret can be minted
