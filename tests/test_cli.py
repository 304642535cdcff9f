"""The command line, run as users run it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from policyproxy.cli import main
from policyproxy.config.load import bundled_profiles

PROFILES = Path(__file__).resolve().parent.parent / "policyproxy" / "profiles"
CI_ENV = {"CI_GITHUB_TOKEN": "ghp_cli_canary_1", "CI_NPM_TOKEN": "npm_cli_canary_2"}


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    monkeypatch.setenv("POLICYPROXY_HOME", str(tmp_path / "home"))
    for key, value in CI_ENV.items():
        monkeypatch.setenv(key, value)


def run(*args, env=None):
    return subprocess.run([sys.executable, "-m", "policyproxy", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=60)


def test_bundled_profiles_are_the_profiles_folder():
    assert bundled_profiles() == sorted(p.stem for p in PROFILES.glob("*.toml"))
    assert {"default", "workspace", "ci", "readonly"} <= set(bundled_profiles())


@pytest.mark.parametrize("name", bundled_profiles())
def test_check_accepts_every_bundled_profile(name):
    result = run("check", "--config", str(PROFILES / f"{name}.toml"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip().endswith("OK")


def test_check_never_prints_a_secret():
    result = run("check", "--config", str(PROFILES / "ci.toml"))
    assert "env:CI_GITHUB_TOKEN" in result.stdout
    assert "canary" not in result.stdout + result.stderr


def test_check_with_no_config_uses_the_bundled_default(capsys):
    assert main(["check"]) == 0
    assert "profile:      default" in capsys.readouterr().out


def test_check_rejects_a_broken_config_with_exit_2(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[permissions.x.network]\nmode = 'fast'\n")
    result = run("check", "--config", str(bad))
    assert result.returncode == 2
    assert f"{bad}:2: permissions.x.network.mode must be" in result.stderr


def test_check_with_requirements_reports_violations(tmp_path):
    req = tmp_path / "requirements.toml"
    req.write_text('[network]\nmode = "limited"\n')
    result = run("check", "--config", str(PROFILES / "default.toml"), "--requirements", str(req))
    assert result.returncode == 2
    assert 'network.mode: "full" is not allowed by requirements.toml (limited or more restrictive)' in result.stderr


def test_requirements_example_documents_valid_keys():
    from policyproxy.config.requirements import parse_requirements
    from policyproxy.config.source import load_toml

    example = PROFILES.parent.parent / "requirements.example.toml"
    reqs, reader = parse_requirements(load_toml(example))
    assert reader.errors == []
    assert reqs.mode is not None and reqs.denied_domains and reqs.network.hooks and reqs.otel is not None


def test_a_compliant_profile_passes_the_example_requirements(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[permissions.dev.network]\nmode = "limited"\n[permissions.dev.network.domains]\n'
                   '"api.github.com" = "allow"\n"pypi.org" = "allow"\n')
    example = PROFILES.parent.parent / "requirements.example.toml"
    result = run("check", "--config", str(cfg), "--requirements", str(example))
    assert result.returncode == 0, result.stderr
    assert "audit_github_deletes (requirements)" in result.stdout


def test_explain_prints_the_audit_json_and_exits_by_verdict(capsys):
    code = main(["explain", "--config", str(PROFILES / "ci.toml"), "POST",
                 "https://api.github.com/repos/o/r/issues", "-H", "X-GitHub-Api-Version: 2022-11-28"])
    record = json.loads(capsys.readouterr().out)
    assert code == 0
    assert record["event.name"] == "policyproxy.policy_decision"
    assert record["network.policy.decision"] == "allow"
    assert record["network.policy.reason"] == "hook_matched"
    assert record["network.policy.hook"] == "github_write"
    assert record["headers.injected"] == ["authorization"]
    assert record["network.transport.protocol"] == "https_mitm"
    assert record["ts"].endswith("Z")


def test_explain_a_denied_request(capsys):
    code = main(["explain", "--config", str(PROFILES / "ci.toml"), "DELETE", "https://api.github.com/repos/o/r"])
    record = json.loads(capsys.readouterr().out)
    assert code == 1
    assert (record["network.policy.reason"], record["http.response.status_code"]) == ("mitm_hook_denied", 403)


def test_explain_a_tunnelled_host(capsys):
    assert main(["explain", "GET", "https://example.org/"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert (record["network.transport.protocol"], record["network.policy.reason"]) == ("https_connect", "allowed")


def test_explain_never_prints_a_secret_or_query(capsys):
    main(["explain", "--config", str(PROFILES / "ci.toml"), "GET",
          "https://api.github.com/repos/o/r?access_token=qcanary", "-H", "Authorization: Bearer hcanary"])
    out = capsys.readouterr().out
    assert "canary" not in out
    assert json.loads(out)["url.path"] == "/repos/o/r"


def test_explain_honours_resolve_pins(capsys):
    assert main(["explain", "GET", "https://localhost:8443/"]) == 1
    assert json.loads(capsys.readouterr().out)["network.policy.reason"] == "not_allowed_local"
    assert main(["explain", "--resolve", "localhost:8443:127.0.0.1", "GET", "https://localhost:8443/"]) == 0
    assert json.loads(capsys.readouterr().out)["network.policy.reason"] == "allowed"


def test_init_writes_a_starter_once(tmp_path, capsys):
    target = tmp_path / "cfg" / "config.toml"
    assert main(["init", "--config", str(target)]) == 0
    assert main(["check", "--config", str(target)]) == 0
    before = target.read_text()
    assert main(["init", "--config", str(target)]) == 2
    assert target.read_text() == before
    assert "already exists" in capsys.readouterr().err


def test_init_defaults_to_the_home_directory(tmp_path):
    assert main(["init"]) == 0
    assert (tmp_path / "home" / "config.toml").exists()


def test_config_show_round_trips_and_hides_secrets(tmp_path, capsys):
    assert main(["config", "show", "--config", str(PROFILES / "ci.toml")]) == 0
    shown = capsys.readouterr().out
    assert "CI_GITHUB_TOKEN" in shown and "canary" not in shown
    again = tmp_path / "again.toml"
    again.write_text(shown)
    assert main(["config", "show", "--config", str(again)]) == 0
    assert capsys.readouterr().out == shown


def test_config_show_applies_extends_and_requirements(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text("default_permissions = 'child'\n[permissions.base.network.domains]\n'a.example' = 'allow'\n"
                   "[permissions.child]\nextends = 'base'\n[permissions.child.network]\nmode = 'limited'\n")
    req = tmp_path / "r.toml"
    req.write_text('[network]\ndenied_domains = ["pastebin.com"]\n[otel]\nexporter = "otlp-grpc"\n'
                   'endpoint = "http://c:4317"\nheaders = { authorization = "Bearer otelcanary" }\n')
    assert main(["config", "show", "--config", str(cfg), "--requirements", str(req)]) == 0
    shown = capsys.readouterr().out
    assert '"a.example" = "allow"' in shown and '"pastebin.com" = "deny"' in shown
    assert 'mode = "limited"' in shown and "otelcanary" not in shown


def test_config_show_keeps_audit_telemetry_and_redaction_settings(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[permissions.p.network.domains]\n'*' = 'allow'\n"
                   "[permissions.p.network.redaction]\nallow_values = ['hush-value']\nmapping_ttl_seconds = 60\n"
                   "[audit]\npath = '/var/log/pp.jsonl'\nbackups = 2\n"
                   "[otel]\nexporter = 'otlp-http'\nendpoint = 'http://c:4318'\nmax_queue_size = 100\n"
                   "metrics_exporter = 'otlp-http'\n")
    assert main(["config", "show", "--config", str(cfg)]) == 0
    shown = capsys.readouterr().out
    assert "hush-value" not in shown
    again = tmp_path / "again.toml"
    again.write_text(shown.replace('"***"', '"hush-value"'))
    assert main(["config", "show", "--config", str(again)]) == 0
    assert capsys.readouterr().out == shown
    for fragment in ('path = "/var/log/pp.jsonl"', "backups = 2", "max_queue_size = 100", 'metrics_exporter',
                     "mapping_ttl_seconds = 60"):
        assert fragment in shown


@pytest.mark.parametrize(("table", "message"), [
    ('listen = "127.0.0.1"', 'admin.listen must be "HOST:PORT", "[IPv6]:PORT" or "off"'),
    ('listen = "10.0.0.5:9090"', "admin.listen '10.0.0.5:9090' is not loopback: set token_env_var or token_file"),
    ('token_env_var = "A"\ntoken_file = "/x"', "admin.token_file set only one of token_env_var and token_file"),
    ('token_file = "relative/token"', "admin.token_file must be an absolute path"),
    ('token_env_var = "NOT-A-NAME"', "admin.token_env_var 'NOT-A-NAME' is not a valid environment variable name"),
    ('listen = "127.0.0.1:9090"\nport = 1', "admin.port is not a known key"),
])
def test_admin_table_errors_name_file_line_and_key(tmp_path, table, message):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'[permissions.p.network.domains]\n"*" = "allow"\n[admin]\n{table}\n')
    result = run("check", "--config", str(cfg))
    assert result.returncode == 2
    assert f"{cfg}:" in result.stderr and message in result.stderr


def test_admin_table_round_trips_through_config_show_with_the_token_by_source_only(tmp_path, capsys):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[permissions.p.network.domains]\n"*" = "allow"\n'
                   '[admin]\nlisten = "0.0.0.0:9191"\ntoken_env_var = "PP_ADMIN_TOKEN"\n')
    assert main(["config", "show", "--config", str(cfg)]) == 0
    shown = capsys.readouterr().out
    assert '[admin]\nlisten = "0.0.0.0:9191"\ntoken_env_var = "PP_ADMIN_TOKEN"' in shown
    assert main(["check", "--config", str(cfg)]) == 0
    assert "admin:        http://0.0.0.0:9191/ (bearer token from env:PP_ADMIN_TOKEN)" in capsys.readouterr().out


def test_config_show_and_the_digest_never_carry_a_listener_password(tmp_path, capsys):
    from policyproxy.cli.render import config_digest
    from policyproxy.config import load_settings

    def config(password: str) -> Path:
        path = tmp_path / f"{password}.toml"
        path.write_text("[permissions.p.network]\n"
                        f"proxy_url = 'http://job42:{password}@127.0.0.1:3128'\n"
                        f"socks_url = 'socks5://job42:{password}@127.0.0.1:8081'\n"
                        "[permissions.p.network.domains]\n'a.example' = 'allow'\n")
        return path

    assert main(["config", "show", "--config", str(config("hunter2canary"))]) == 0
    shown = capsys.readouterr().out
    assert "hunter2canary" not in shown and "job42:***@127.0.0.1:3128" in shown
    env = {"POLICYPROXY_HOME": str(tmp_path)}
    one = config_digest(load_settings(config("hunter2canary"), None, None, env=env))
    other = config_digest(load_settings(config("correcthorse"), None, None, env=env))
    assert one == other   # the digest is made of what config show prints: no password to guess from it
