"""The interception CA on disk: created once (ECDSA P-256), key 0600, never overwritten.

Refuses a key that is a symlink or readable by group or others, and a directory holding only one of
the two files, as Codex does: a half-written or tampered CA is an error, not something to replace.
"""

from __future__ import annotations

import datetime as dt
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from policyproxy.errors import PolicyProxyError

CERT_NAME = "ca.pem"
KEY_NAME = "ca.key"


class CAError(PolicyProxyError):
    """The CA files are missing, half present, or unsafe; the message says which file and why."""


@dataclass(frozen=True)
class CertificateAuthority:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    cert_path: Path

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


def load_or_create(directory: Path) -> CertificateAuthority:
    """Load the CA in ``directory``, creating it only when neither file exists."""
    cert_path, key_path = directory / CERT_NAME, directory / KEY_NAME
    have_cert, have_key = cert_path.exists() or cert_path.is_symlink(), key_path.exists() or key_path.is_symlink()
    if have_cert != have_key:
        present, missing = (cert_path, key_path) if have_cert else (key_path, cert_path)
        raise CAError(f"{present} exists but {missing} does not; restore it or remove both to create a new CA")
    if not have_cert:
        _create(directory, cert_path, key_path)
    return load(directory)


def load(directory: Path) -> CertificateAuthority:
    cert_path, key_path = directory / CERT_NAME, directory / KEY_NAME
    if key_path.is_symlink():
        raise CAError(f"{key_path} is a symlink; refusing to use it as the CA key")
    try:
        mode = key_path.stat().st_mode
    except FileNotFoundError:
        raise CAError(f"{key_path} does not exist; run `policyproxy ca init`") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise CAError(f"{key_path} is readable by group or others (mode {stat.S_IMODE(mode):o}); chmod 600 it")
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except (ValueError, OSError) as exc:
        raise CAError(f"cannot load the CA from {directory}: {type(exc).__name__}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        raise CAError(f"{key_path} does not belong to {cert_path}")
    return CertificateAuthority(cert, key, cert_path)


def _create(directory: Path, cert_path: Path, key_path: Path) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "policyproxy local CA"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "policyproxy")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    # O_EXCL: never overwrite, even when two processes race to create the CA.
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key_pem)
    fd = os.open(cert_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(cert.public_bytes(serialization.Encoding.PEM))
