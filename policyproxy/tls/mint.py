"""Leaf certificates for intercepted hosts, minted on demand and cached as ready server contexts.

All leaves share one P-256 key (as mitmproxy does), so minting a host is one ECDSA signature
(~0.2 ms); loading a chain into an ``SSLContext`` costs ~1 ms, so contexts are cached per host.
``ssl`` can only load a chain from files: each leaf goes through a private 0700 directory and is
deleted once loaded.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
import tempfile
from collections import OrderedDict
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from policyproxy.grammar.hosts import parse_ip
from policyproxy.tls.ca_store import CertificateAuthority


def mint_leaf(ca: CertificateAuthority, key: ec.EllipticCurvePrivateKey, host: str) -> x509.Certificate:
    """A certificate for ``host`` (a canonical name or IP literal) signed by ``ca``."""
    ip = parse_ip(host)
    san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host.partition("%")[0])) if ip else x509.DNSName(host)
    now = dt.datetime.now(dt.timezone.utc)
    common_name = host if len(host) <= 64 else host[:64]
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=2))
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([san]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False)
        .sign(ca.key, hashes.SHA256())
    )


class LeafContexts:
    """host -> server ``SSLContext`` with a minted leaf, least recently used evicted."""

    def __init__(self, ca: CertificateAuthority, capacity: int = 1024) -> None:
        self.ca = ca
        self.capacity = capacity
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._dir = Path(tempfile.mkdtemp(prefix="policyproxy-leaves-"))
        os.chmod(self._dir, 0o700)
        self._key_path = self._dir / "leaf.key"
        fd = os.open(self._key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(self._key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()))
        self._cache: OrderedDict[tuple[str, bool], ssl.SSLContext] = OrderedDict()

    def context_for(self, host: str, http2: bool = False) -> ssl.SSLContext:
        """``http2``: ALPN offers ``h2`` before ``http/1.1``."""
        key = (host, http2)
        context = self._cache.get(key)
        if context is not None:
            self._cache.move_to_end(key)
            return context
        context = self._build(host, http2)
        self._cache[key] = context
        if len(self._cache) > self.capacity:
            self._cache.popitem(last=False)
        return context

    def _build(self, host: str, http2: bool) -> ssl.SSLContext:
        leaf = mint_leaf(self.ca, self._key, host)
        chain = leaf.public_bytes(serialization.Encoding.PEM) + self.ca.cert_pem
        fd, name = tempfile.mkstemp(dir=self._dir, suffix=".pem")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(chain)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.load_cert_chain(name, self._key_path)
        finally:
            os.unlink(name)
        context.set_alpn_protocols(["h2", "http/1.1"] if http2 else ["http/1.1"])
        return context

    def close(self) -> None:
        for path in self._dir.iterdir():
            path.unlink()
        self._dir.rmdir()
