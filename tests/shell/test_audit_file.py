"""Attack class: local file tampering with the audit log. A link planted at the log's name must not
make the proxy append decision events to another file."""

import os
import subprocess
import sys

from policyproxy.telemetry.audit import AuditFile


def test_a_symlink_planted_at_the_audit_log_is_refused_by_serve(tmp_path):
    victim = tmp_path / "victim.rc"
    victim.write_text("original\n")
    log = tmp_path / "audit.jsonl"
    os.symlink(victim, log)
    result = subprocess.run([sys.executable, "-m", "policyproxy", "serve", "--listen", "127.0.0.1:0",
                             "--socks-listen", "127.0.0.1:0", "--admin-listen", "off", "--audit-log", str(log)],
                            capture_output=True, text=True, timeout=30,
                            env={**os.environ, "POLICYPROXY_HOME": str(tmp_path / "home")})
    assert result.returncode == 2
    assert "is a symlink; the audit log must be a regular file" in result.stderr and str(log) in result.stderr
    assert victim.read_text() == "original\n"


def test_rotation_replaces_a_planted_link_instead_of_writing_through_it(tmp_path):
    victim = tmp_path / "victim.rc"
    victim.write_text("original\n")
    log = tmp_path / "audit.jsonl"
    audit = AuditFile(log, max_bytes=1024, backups=2)
    os.symlink(victim, tmp_path / "audit.jsonl.1")
    audit.write([{"n": i, "pad": "x" * 100} for i in range(20)])   # past max_bytes: rotates
    audit.write([{"n": "after"}])
    audit.close()
    assert victim.read_text() == "original\n"
    assert not (tmp_path / "audit.jsonl.1").is_symlink()
    assert '"after"' in log.read_text()


def test_a_value_that_is_not_utf8_is_written_escaped_with_the_rest_of_the_batch(tmp_path):
    """A header value that was not UTF-8 reaches the attributes as a lone surrogate (surrogateescape);
    the batch it is in is still written, every line valid JSON."""
    import json

    audit = AuditFile(tmp_path / "audit.jsonl")
    audit.write([{"n": 1, "user_agent": "curl\udcff", "host": "é.test"}, {"n": 2}])
    audit.close()
    lines = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text(encoding="utf-8").splitlines()]
    assert lines == [{"n": 1, "user_agent": "curl\udcff", "host": "é.test"}, {"n": 2}]
