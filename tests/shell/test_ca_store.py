"""The CA on disk: created once, 0600, never overwritten, refused when unsafe."""

import os
import stat
import subprocess
import sys
import threading

import pytest
from cryptography import x509

from policyproxy.tls.ca_store import CAError, load, load_or_create, trust_bundle


def test_ca_is_created_with_a_private_key_file(tmp_path):
    ca = load_or_create(tmp_path / "ca")
    assert stat.S_IMODE((tmp_path / "ca" / "ca.key").stat().st_mode) == 0o600
    assert ca.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_ca_is_reloaded_not_regenerated(tmp_path):
    first = load_or_create(tmp_path)
    before = (tmp_path / "ca.key").read_bytes()
    second = load_or_create(tmp_path)
    assert second.cert == first.cert and (tmp_path / "ca.key").read_bytes() == before


def test_half_a_ca_is_an_error_not_a_new_ca(tmp_path):
    load_or_create(tmp_path)
    os.remove(tmp_path / "ca.pem")
    with pytest.raises(CAError, match="exists but"):
        load_or_create(tmp_path)
    assert (tmp_path / "ca.key").exists()


def test_group_readable_key_is_refused(tmp_path):
    load_or_create(tmp_path)
    os.chmod(tmp_path / "ca.key", 0o640)
    with pytest.raises(CAError, match="chmod 600"):
        load_or_create(tmp_path)


def test_symlinked_key_is_refused(tmp_path):
    load_or_create(tmp_path / "real")
    (tmp_path / "link").mkdir()
    os.symlink(tmp_path / "real" / "ca.key", tmp_path / "link" / "ca.key")
    os.symlink(tmp_path / "real" / "ca.pem", tmp_path / "link" / "ca.pem")
    with pytest.raises(CAError, match="symlink"):
        load_or_create(tmp_path / "link")


def test_mismatched_key_and_cert_are_refused(tmp_path):
    load_or_create(tmp_path / "a")
    load_or_create(tmp_path / "b")
    (tmp_path / "a" / "ca.pem").write_bytes((tmp_path / "b" / "ca.pem").read_bytes())
    with pytest.raises(CAError, match="does not belong"):
        load_or_create(tmp_path / "a")


# Attack class: local file tampering with the CA directory (issue 9.18). One test per attack.

def test_world_writable_ca_directory_is_refused(tmp_path):
    load_or_create(tmp_path / "ca")
    os.chmod(tmp_path / "ca", 0o777)
    with pytest.raises(CAError, match=r"ca is writable by group or others \(mode 777\); chmod 700"):
        load_or_create(tmp_path / "ca")


def test_group_writable_ca_directory_is_refused_before_creating_anything(tmp_path):
    (tmp_path / "ca").mkdir(mode=0o770)
    os.chmod(tmp_path / "ca", 0o770)
    with pytest.raises(CAError, match="writable by group or others"):
        load_or_create(tmp_path / "ca")
    assert os.listdir(tmp_path / "ca") == []


def test_symlinked_ca_directory_is_refused(tmp_path):
    load_or_create(tmp_path / "real")
    os.symlink(tmp_path / "real", tmp_path / "ca")
    with pytest.raises(CAError, match="ca is a symlink"):
        load_or_create(tmp_path / "ca")
    with pytest.raises(CAError, match="ca is a symlink"):
        load(tmp_path / "ca")


def test_ca_directory_owned_by_someone_else_is_refused(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to chown")
    (tmp_path / "ca").mkdir(mode=0o700)
    os.chown(tmp_path / "ca", 65534, 65534)
    with pytest.raises(CAError, match="owned by uid 65534"):
        load_or_create(tmp_path / "ca")


def test_hard_linked_key_is_refused(tmp_path):
    load_or_create(tmp_path / "ca")
    os.link(tmp_path / "ca" / "ca.key", tmp_path / "stolen.key")
    with pytest.raises(CAError, match=r"ca\.key has 2 hard links"):
        load_or_create(tmp_path / "ca")


def test_symlinked_certificate_is_refused(tmp_path):
    load_or_create(tmp_path / "ca")
    real = tmp_path / "elsewhere.pem"
    os.rename(tmp_path / "ca" / "ca.pem", real)
    os.symlink(real, tmp_path / "ca" / "ca.pem")
    with pytest.raises(CAError, match=r"ca\.pem is a symlink"):
        load_or_create(tmp_path / "ca")


def test_key_owned_by_someone_else_is_refused(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root to chown")
    load_or_create(tmp_path / "ca")
    os.chown(tmp_path / "ca" / "ca.key", 65534, 65534)
    with pytest.raises(CAError, match=r"ca\.key is owned by uid 65534"):
        load(tmp_path / "ca")


def test_a_fifo_planted_as_the_key_is_refused_without_hanging(tmp_path):
    load_or_create(tmp_path / "ca")
    os.remove(tmp_path / "ca" / "ca.key")
    os.mkfifo(tmp_path / "ca" / "ca.key", 0o600)
    outcome: list[BaseException] = []

    def attempt() -> None:
        try:
            load(tmp_path / "ca")
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=attempt, daemon=True)   # a blocked open must not hang the suite
    worker.start()
    worker.join(10)
    assert not worker.is_alive(), "load() hung opening a FIFO"
    assert isinstance(outcome[0], CAError) and "not a regular file" in str(outcome[0])


def test_planted_symlink_at_bundle_tmp_is_not_followed(tmp_path):
    ca = load_or_create(tmp_path / "ca")
    victim = tmp_path / "victim.txt"
    victim.write_text("do not overwrite")
    os.symlink(victim, tmp_path / "ca" / "bundle.pem.tmp")
    bundle = trust_bundle(ca.cert_path.parent, ca.cert_pem)
    assert victim.read_text() == "do not overwrite"
    assert not bundle.is_symlink() and stat.S_ISREG(os.lstat(bundle).st_mode)
    assert ca.cert_pem.decode().strip() in bundle.read_text()


def test_planted_symlink_at_bundle_is_replaced_not_followed(tmp_path):
    ca = load_or_create(tmp_path / "ca")
    attacker = tmp_path / "attacker.pem"
    attacker.write_text("attacker roots\n")
    os.symlink(attacker, tmp_path / "ca" / "bundle.pem")
    bundle = trust_bundle(ca.cert_path.parent, ca.cert_pem)
    assert attacker.read_text() == "attacker roots\n"
    assert not bundle.is_symlink() and ca.cert_pem.decode().strip() in bundle.read_text()


def test_files_are_written_under_fresh_names_and_none_are_left_behind(tmp_path):
    ca = load_or_create(tmp_path / "ca")
    trust_bundle(ca.cert_path.parent, ca.cert_pem)
    assert sorted(os.listdir(tmp_path / "ca")) == ["bundle.pem", "ca.key", "ca.pem"]
    assert os.stat(tmp_path / "ca" / "ca.key").st_nlink == 1


def test_two_starts_racing_to_create_the_ca_agree_on_one(tmp_path):
    home = tmp_path / "home"
    env = {**os.environ, "POLICYPROXY_HOME": str(home)}
    procs = [subprocess.Popen([sys.executable, "-m", "policyproxy", "ca", "init"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    exported = {subprocess.run([sys.executable, "-m", "policyproxy", "ca", "export"], env=env, capture_output=True,
                               text=True, timeout=60).stdout}
    assert exported == {(home / "ca" / "ca.pem").read_text()}
    assert sorted(os.listdir(home / "ca")) == ["ca.key", "ca.pem"]
