"""``policyproxy scan`` as users and evaluation pipelines run it: a real process, files and stdin."""

import json
import subprocess
import sys
import time

import pytest

AWS = "AKIAZ7PQ3LXRN4TW2KJD"
EMAIL = "dana@acme-corp.io"


def scan(*args, stdin="", home=None):
    env = {"POLICYPROXY_HOME": str(home)} if home else None
    import os

    return subprocess.run([sys.executable, "-m", "policyproxy", "scan", *args], input=stdin, capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})})


@pytest.fixture
def home(tmp_path):
    return tmp_path / "home"


def test_findings_are_file_line_column_detector_and_never_the_value(tmp_path, home):
    path = tmp_path / "paste.txt"
    path.write_text(f"first line\n  key {AWS}\nmail {EMAIL}\n")
    done = scan(str(path), home=home)
    assert done.returncode == 1
    assert done.stdout.splitlines() == [f"{path}:2:7 aws_access_key", f"{path}:3:6 email"]
    assert AWS not in done.stdout + done.stderr and EMAIL not in done.stdout

    shown = scan("--show", str(path), home=home)
    assert AWS in shown.stdout


def test_stdin_when_no_file_and_exit_zero_when_clean(home):
    assert scan(stdin=f"x {EMAIL}", home=home).stdout == "<stdin>:1:3 email\n"
    clean = scan(stdin="nothing to see", home=home)
    assert clean.returncode == 0 and clean.stdout == ""


def test_json_gives_character_offsets(tmp_path, home):
    path = tmp_path / "u.txt"
    text = f"é€😀 {EMAIL}"
    path.write_text(text)
    done = scan("--json", str(path), home=home)
    records = json.loads(done.stdout)
    assert records == [{"file": str(path), "start": 4, "end": 4 + len(EMAIL), "detector": "email"}]
    assert text[records[0]["start"]:records[0]["end"]] == EMAIL


def test_jsonl_one_array_per_line_in_order(home):
    lines = [f"mail {EMAIL}", "clean", f"{AWS}\n{EMAIL}", "😀" + EMAIL]
    done = scan("--jsonl", stdin="".join(json.dumps(line) + "\n" for line in lines), home=home)
    assert done.returncode == 1
    out = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(out) == len(lines)
    assert out[1] == []
    for line, found in zip(lines, out, strict=True):
        for record in found:
            assert set(record) == {"detector", "start", "end"}
            assert line[record["start"]:record["end"]] in (EMAIL, AWS)


def test_the_profiles_detectors_patterns_and_allowlists_apply(tmp_path, home):
    config = tmp_path / "config.toml"
    config.write_text(f"""
[permissions.p.network.redaction]
allow_values = ["{EMAIL}"]
[permissions.p.network.redaction.detectors]
aws_access_key = "off"
[permissions.p.network.redaction.patterns.employee_id]
regex = "EMP-[0-9]{{6}}"
""")
    done = scan("--config", str(config), "--profile", "p", stdin=f"{EMAIL} {AWS} EMP-123456", home=home)
    assert done.stdout == f"<stdin>:1:{len(EMAIL) + len(AWS) + 3} employee_id\n"


@pytest.mark.parametrize(("args", "stdin", "why"), [
    (["--jsonl"], '"ok"\n{"not": "a string"}\n', "<stdin>:2: a JSON dict"),
    (["--jsonl"], "not json\n", "<stdin>:1: not a JSON string"),
    (["/nonexistent/file"], "", "cannot read /nonexistent/file"),
])
def test_bad_input_is_exit_two_naming_the_place(home, args, stdin, why):
    done = scan(*args, stdin=stdin, home=home)
    assert done.returncode == 2 and why in done.stderr and "Traceback" not in done.stderr


def test_invalid_utf8_file_is_exit_two(tmp_path, home):
    path = tmp_path / "bin"
    path.write_bytes(b"ok \xff\xfe")
    done = scan(str(path), home=home)
    assert done.returncode == 2 and "not UTF-8" in done.stderr


def test_a_bad_config_is_exit_two(tmp_path, home):
    config = tmp_path / "c.toml"
    config.write_text("[permissions.p.network.redaction.detectors]\nnope = 'mask'\n")
    done = scan("--config", str(config), stdin="x", home=home)
    assert done.returncode == 2 and "nope" in done.stderr


def test_ten_thousand_lines_in_one_process_quickly(home):
    stdin = "".join(json.dumps(f"line {i}: build output for user{i}@corp.io " * 4) + "\n" for i in range(10_000))
    started = time.perf_counter()
    done = scan("--jsonl", stdin=stdin, home=home)
    elapsed = time.perf_counter() - started
    assert done.returncode == 1 and len(done.stdout.splitlines()) == 10_000
    assert elapsed < 15, elapsed   # about 1 s on the 2-core test machine
