"""``mapping_store`` as a Redis URL in config: ``check`` validates it (errors name file, line and key),
credentials only ever come from env or file and are shown by source only."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

HEAD = """
[permissions.r.network.domains]
"*" = "allow"
[permissions.r.network.redaction]
"""


def cli(tmp_path, *args: str, body: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "config.toml"
    config.write_text(HEAD + body)
    return subprocess.run([sys.executable, "-m", "policyproxy", *args, "--config", str(config)], text=True,
                          capture_output=True, env={**os.environ, "POLICYPROXY_HOME": str(tmp_path), **(env or {})},
                          timeout=60)


@pytest.mark.parametrize("store, why", [
    ("redis://:hunter2-secret@cache:6379/0", "has a password in the URL"),
    ("redis://bob:hunter2-secret@cache:6379/0", "has a password in the URL"),
    ("memcached://cache:11211", "must be an absolute path (SQLite) or a redis:// or rediss:// URL"),
    ("redis://cache:99999/0", "invalid port"),
    ("redis:///0", "needs a host"),
    ("redis://cache:6379/zero", "database must be a number"),
    ("redis://cache:6379/0?password=x", "takes no query"),
    ("relative/path.db", "must be an absolute path"),
])
def test_check_refuses_a_bad_store_url_naming_file_line_and_key(tmp_path, store, why):
    result = cli(tmp_path, "check", body=f'mapping_store = "{store}"\n')
    assert result.returncode == 2
    assert why in result.stderr
    assert "config.toml:5: " in result.stderr and "redaction.mapping_store" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_check_accepts_redis_and_config_show_prints_sources_only(tmp_path):
    body = ('mapping_store = "rediss://policyproxy@cache.internal:6380/2"\n'
            'mapping_store_password_env = "PP_REDIS_PASSWORD"\nmapping_key_file = "/run/secrets/pp-key"\n'
            'mapping_store_ca_file = "/etc/ssl/redis-ca.pem"\n')
    key = tmp_path / "key"
    key.write_text("k" * 44)
    result = cli(tmp_path, "config", "show", body=body.replace("/run/secrets/pp-key", str(key)),
                 env={"PP_REDIS_PASSWORD": "hunter2-secret"})
    assert result.returncode == 0, result.stderr
    assert 'mapping_store = "rediss://policyproxy@cache.internal:6380/2"' in result.stdout
    assert 'mapping_store_password_env = "PP_REDIS_PASSWORD"' in result.stdout
    assert "hunter2" not in result.stdout and "kkkk" not in result.stdout


@pytest.mark.parametrize("body, env, why", [
    ('mapping_store = "redis://cache/0"\nmapping_store_password_env = "PP_MISSING"\n', {},
     "names PP_MISSING, a missing required environment variable"),
    ('mapping_store = "redis://cache/0"\nmapping_key_env = "PP_KEY"\n', {"PP_KEY": "short"},
     "shorter than 32 characters"),
    ('mapping_store = "/tmp/x.db"\nmapping_store_password_env = "PP_P"\n', {"PP_P": "x"},
     "only used with a redis:// or rediss:// mapping_store"),
    ('mapping_store = "redis://cache/0"\nmapping_key_env = "A"\nmapping_key_file = "/k"\n', {},
     "set only one of mapping_key_env and mapping_key_file"),
])
def test_store_secrets_are_checked_at_start_without_showing_them(tmp_path, body, env, why):
    result = cli(tmp_path, "check", body=body, env=env)
    assert result.returncode == 2 and why in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_run_withholds_the_store_password_and_key_from_the_command(tmp_path):
    from policyproxy.cli.run import withheld_variables
    from policyproxy.config import load_settings

    config = tmp_path / "config.toml"
    config.write_text(HEAD + 'mapping_store = "redis://cache/0"\nmapping_store_password_env = "PP_REDIS_PW"\n'
                      'mapping_key_env = "PP_KEY"\n')
    settings = load_settings(config, None, None)
    environ = {"PP_REDIS_PW": "hunter2-secret", "PP_KEY": "k" * 44, "COPY": "hunter2-secret", "HOME": "/root"}
    assert withheld_variables(settings, environ) == ["COPY", "PP_KEY", "PP_REDIS_PW"]
