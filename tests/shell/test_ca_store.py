"""The CA on disk: created once, 0600, never overwritten, refused when unsafe."""

import os
import stat

import pytest
from cryptography import x509

from policyproxy.tls.ca_store import CAError, load_or_create


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
