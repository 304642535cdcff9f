"""The deployment files in deploy/ work as written: the container profile passes ``check``, the
Dockerfile's healthcheck command tells a live proxy from a dead one, and the flags the Dockerfile
and the systemd unit pass to ``serve`` exist."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from tests.shell.conftest import pki, start_proxy, upstream  # noqa: F401 - fixtures

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def test_the_container_profile_passes_check():
    result = subprocess.run([sys.executable, "-m", "policyproxy", "check", "--config",
                             str(DEPLOY / "container-config.toml")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "admin:        http://127.0.0.1:9090/" in result.stdout


def _dockerfile_json(instruction: str) -> list[str]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    match = re.search(rf"^{instruction}\s+(?:--\S+\s+)*(?:CMD\s+)?(\[.*\])\s*$", text, re.M)
    assert match, instruction
    return json.loads(match.group(1))


def test_the_dockerfile_runs_as_a_non_root_user():
    users = re.findall(r"^USER\s+(\S+)", (DEPLOY / "Dockerfile").read_text(), re.M)
    assert users and users[-1] not in ("root", "0")


def test_the_healthcheck_command_passes_on_a_live_proxy_and_fails_on_a_dead_one(start_proxy):  # noqa: F811
    proxy = start_proxy('[permissions.p.network.domains]\n"*" = "allow"\n', extra=["--admin-listen", "127.0.0.1:0"])
    admin = next(line.split()[1] for line in proxy.output if line.startswith("admin: "))
    command = [part.replace("http://127.0.0.1:9090/", admin) for part in _dockerfile_json("HEALTHCHECK")]
    command[0] = sys.executable if command[0] == "python" else command[0]
    assert subprocess.run(command, timeout=30).returncode == 0
    proxy.stop()
    assert subprocess.run(command, capture_output=True, timeout=30).returncode != 0


def _serve_flags(argv: list[str]) -> list[str]:
    return [a for a in argv[argv.index("serve") + 1:] if a.startswith("--")]


def test_the_flags_the_deploy_files_pass_to_serve_exist():
    help_text = subprocess.run([sys.executable, "-m", "policyproxy", "serve", "--help"], capture_output=True,
                               text=True, timeout=60).stdout
    unit = (DEPLOY / "policyproxy.service").read_text()
    exec_start = shlex.split(re.search(r"^ExecStart=(.*)$", unit, re.M).group(1))
    assert re.search(r"^ExecReload=/bin/kill -HUP \$MAINPID$", unit, re.M)
    for flag in _serve_flags(_dockerfile_json("CMD")) + _serve_flags(exec_start):
        assert flag in help_text, flag
    assert os.path.basename(exec_start[0]) == "policyproxy"
