"""deploy/scale/ works as written: the shared-gateway config passes ``check`` (Redis store, secrets from
env), the Kubernetes ConfigMap carries it verbatim, HAProxy accepts its config, and the flags the
manifests pass to ``serve`` exist."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCALE = Path(__file__).resolve().parents[2] / "deploy" / "scale"


def test_the_gateway_config_passes_check_with_its_secrets_from_env(tmp_path):
    env = {**os.environ, "POLICYPROXY_HOME": str(tmp_path), "PP_REDIS_PASSWORD": "p" * 24, "PP_MAPPING_KEY": "k" * 44}
    result = subprocess.run([sys.executable, "-m", "policyproxy", "check", "--config", str(SCALE / "config.toml")],
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    missing = subprocess.run([sys.executable, "-m", "policyproxy", "check", "--config", str(SCALE / "config.toml")],
                             capture_output=True, text=True, timeout=60,
                             env={k: v for k, v in env.items() if k != "PP_MAPPING_KEY"})
    assert missing.returncode == 2 and "PP_MAPPING_KEY" in missing.stderr


def test_the_kubernetes_configmap_is_the_config_file_verbatim():
    manifest = (SCALE / "kubernetes.yaml").read_text()
    block = manifest.split("  config.toml: |\n", 1)[1].split("---\n", 1)[0]
    embedded = "".join(line[4:] if line.strip() else line for line in block.splitlines(True))
    assert embedded == (SCALE / "config.toml").read_text()
    assert re.search(r"replicas: [2-9]", manifest) and "kind: StatefulSet" in manifest
    assert "secretName: policyproxy-ca" in manifest and "otel-collector" in manifest


def test_serve_flags_in_the_manifests_exist():
    help_text = subprocess.run([sys.executable, "-m", "policyproxy", "serve", "--help"], capture_output=True,
                               text=True, timeout=60).stdout
    for name in ("kubernetes.yaml", "docker-compose.yml"):
        for command in re.findall(r'\["policyproxy", "serve", (.*?)\]', (SCALE / name).read_text()):
            for flag in re.findall(r'"(--[a-z-]+)"', command):
                assert flag in help_text, (name, flag)


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed (.ci/run installs it)")
def test_haproxy_accepts_the_balancer_config():
    result = subprocess.run(["haproxy", "-c", "-f", str(SCALE / "haproxy.cfg")], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
