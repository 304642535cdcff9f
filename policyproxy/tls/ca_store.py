"""The interception CA on disk: created once (ECDSA P-256), key 0600, never overwritten.

Whoever can swap a file here can make every intercepted host trust their certificates, so nothing
here follows a link or trusts a file it did not check on the open descriptor:

- the directory is a real directory (not a symlink), owned by the current user (or root) and not
  writable by group or others;
- ``ca.key`` is a regular file owned by the current user, mode 0600 (no group/other bits) and with one
  link (a hard link elsewhere is a second name an attacker may control); ``ca.pem`` is a regular file;
  both are opened with ``O_NOFOLLOW | O_NONBLOCK`` (a FIFO planted there cannot hang a start) and
  checked with ``fstat`` on what was opened, not on the path;
- every file (``ca.key``, ``ca.pem``, ``bundle.pem``) is written to a fresh random name in the same
  directory with ``O_CREAT | O_EXCL | O_NOFOLLOW``, fsynced, then linked into place once (the CA: two
  starts racing cannot overwrite each other) or renamed over the old one (the bundle: a rename replaces
  a planted symlink itself, never its target).

A directory holding only one of the two CA files is an error, as in Codex: a half-written or tampered
CA is something to look at, not something to replace.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import ssl
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from policyproxy.errors import PolicyProxyError

CERT_NAME = "ca.pem"
KEY_NAME = "ca.key"
BUNDLE_NAME = "bundle.pem"
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
_SYSTEM_ROOTS = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/cert.pem")


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

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the certificate (DER), hex: what ``run`` compares before reusing a proxy."""
        return self.cert.fingerprint(hashes.SHA256()).hex()


def load_or_create(directory: Path) -> CertificateAuthority:
    """Load the CA in ``directory``, creating it (and the directory, 0700) only when neither file exists."""
    if not os.path.lexists(directory):
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    check_directory(directory)
    cert_path, key_path = directory / CERT_NAME, directory / KEY_NAME
    have_cert, have_key = os.path.lexists(cert_path), os.path.lexists(key_path)
    if have_cert != have_key:
        present, missing = (cert_path, key_path) if have_cert else (key_path, cert_path)
        raise CAError(f"{present} exists but {missing} does not; restore it or remove both to create a new CA")
    if not have_cert:
        _create(directory, cert_path, key_path)
    return load(directory)


def load(directory: Path) -> CertificateAuthority:
    """The CA in ``directory``, after checking the directory and both files (see the module docstring)."""
    check_directory(directory)
    cert_path, key_path = directory / CERT_NAME, directory / KEY_NAME
    key_pem = _read_checked(key_path, private=True)
    cert_pem = _read_checked(cert_path, private=False)
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise CAError(f"cannot load the CA from {directory}: {type(exc).__name__}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        raise CAError(f"{key_path} does not belong to {cert_path}")
    return CertificateAuthority(cert, key, cert_path)


def check_directory(directory: Path) -> None:
    """Refuse a CA directory that is a symlink, not a directory, someone else's, or writable by others."""
    try:
        info = os.lstat(directory)
    except FileNotFoundError:
        raise CAError(f"{directory} does not exist; run `policyproxy ca init`") from None
    if stat.S_ISLNK(info.st_mode):
        raise CAError(f"{directory} is a symlink; use the real directory as the CA directory")
    if not stat.S_ISDIR(info.st_mode):
        raise CAError(f"{directory} is not a directory")
    if info.st_uid not in (os.geteuid(), 0):
        raise CAError(f"{directory} is owned by uid {info.st_uid}, not by the current user (uid {os.geteuid()}); "
                      "use a directory of your own")
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise CAError(f"{directory} is writable by group or others (mode {stat.S_IMODE(info.st_mode):o}); "
                      f"chmod 700 {directory}")


def _read_checked(path: Path, private: bool) -> bytes:
    """Read ``path`` without following a link, checking what was actually opened."""
    what = "the CA key" if private else "the CA certificate"
    try:
        fd = os.open(path, _READ_FLAGS)
    except FileNotFoundError:
        raise CAError(f"{path} does not exist; run `policyproxy ca init`") from None
    except OSError as exc:
        if os.path.islink(path):
            raise CAError(f"{path} is a symlink; refusing to use it as {what}") from None
        raise CAError(f"cannot open {path}: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise CAError(f"{path} is not a regular file; refusing to use it as {what}")
        if private:
            if info.st_uid != os.geteuid():
                raise CAError(f"{path} is owned by uid {info.st_uid}, not by the current user (uid {os.geteuid()})")
            if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise CAError(f"{path} is readable by group or others (mode {stat.S_IMODE(info.st_mode):o}); "
                              f"chmod 600 {path}")
            if info.st_nlink != 1:
                raise CAError(f"{path} has {info.st_nlink} hard links; the CA key must have exactly one name "
                              "(copy it to a fresh file with mode 600)")
        return handle.read()


def write_file(directory: Path, name: str, data: bytes, mode: int, replace: bool) -> Path:
    """Write ``directory/name`` through a fresh random temp name (``O_EXCL | O_NOFOLLOW``), fsync, then
    rename it over the old file (``replace``) or link it into place only if the name is free
    (``FileExistsError`` otherwise). A planted link at any name is never followed."""
    final = directory / name
    tmp = directory / f".{name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if replace:
            os.replace(tmp, final)
        else:
            os.link(tmp, final, follow_symlinks=False)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)
    _fsync_directory(directory)
    return final


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError:   # some filesystems refuse fsync on a directory; the data itself is synced
        pass
    finally:
        os.close(fd)


def trust_bundle(directory: Path, ca_pem: bytes) -> Path:
    """``bundle.pem`` next to the CA: the system roots plus the CA, for tools whose CA variable replaces
    the system store (SSL_CERT_FILE, REQUESTS_CA_BUNDLE...). Rewritten only when its content changes."""
    check_directory(directory)
    roots = b""
    for candidate in (ssl.get_default_verify_paths().cafile, *_SYSTEM_ROOTS):
        if candidate and Path(candidate).is_file():
            roots = Path(candidate).read_bytes()
            break
    content = roots.rstrip(b"\n") + b"\n" + ca_pem if roots else ca_pem
    bundle = directory / BUNDLE_NAME
    try:
        fd = os.open(bundle, _READ_FLAGS)
    except OSError:   # missing, or a planted link (ELOOP): write a fresh file over the name
        current = None
    else:
        with os.fdopen(fd, "rb") as handle:
            current = handle.read() if stat.S_ISREG(os.fstat(handle.fileno()).st_mode) else None
    if current != content:
        write_file(directory, BUNDLE_NAME, content, 0o644, replace=True)
    return bundle


def _create(directory: Path, cert_path: Path, key_path: Path) -> None:
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
    # Link-once: when two starts race to create the CA, the first key wins and the other start waits
    # for the winner's certificate instead of overwriting anything.
    try:
        write_file(directory, KEY_NAME, key_pem, 0o600, replace=False)
    except FileExistsError:
        deadline = time.monotonic() + 5
        while not os.path.lexists(cert_path) and time.monotonic() < deadline:
            time.sleep(0.02)
        return
    write_file(directory, CERT_NAME, cert.public_bytes(serialization.Encoding.PEM), 0o644, replace=False)
