"""Secret and PII detectors: compiled once, pure, each named by a ``DetectorName``.

A regex finds candidates; a validator (checksum, context, shape) keeps only real ones, which is where
false positives die: UUIDs, git SHAs and other hex digests, integrity hashes, version strings,
timestamps, paths, identifiers, placeholders and our own placeholders are rejected by construction or
by ``looks_benign``. One module per family:

- ``base``: the shared machinery (``Windows``, ``PrefixIndex``, ``Detector``, ``Span``, shape tests)
- ``secrets``: fixed vendor formats and secrets named by their key in config formats
- ``vendors``: the rest of gitleaks' vendor formats, prefix- or context-gated
- ``pii``: email, cards, IBAN, IP, US SSN/ITIN, date of birth, passport
- ``phones``: regex shapes plus libphonenumber for the configured regions
- ``national_ids``: check-digit identifiers via python-stdnum
- ``names_addresses``: person names and street addresses where coding-agent traffic carries them
"""

from __future__ import annotations

from policyproxy.redaction.detectors.base import (
    Detector,
    PrefixIndex,
    Span,
    Windows,
    entropy,
    looks_benign,
    looks_like_reference,
    looks_placeholder,
    luhn,
)
from policyproxy.redaction.detectors.names_addresses import NAMES_AND_ADDRESSES
from policyproxy.redaction.detectors.national_ids import NATIONAL_IDS
from policyproxy.redaction.detectors.phones import DEFAULT_PHONE_REGIONS, phone_detectors
from policyproxy.redaction.detectors.pii import PII
from policyproxy.redaction.detectors.secrets import SECRETS
from policyproxy.redaction.detectors.vendors import VENDOR_PREFIXES, VENDORS


def builtin_detectors(phone_regions: tuple[str, ...] = DEFAULT_PHONE_REGIONS) -> tuple[Detector, ...]:
    """Every built-in detector, in precedence order (earlier wins a tie between equal spans: a checksummed
    identifier beats a phone of the same digits)."""
    return SECRETS + VENDORS + PII + NATIONAL_IDS + phone_detectors(phone_regions) + NAMES_AND_ADDRESSES


DETECTORS: tuple[Detector, ...] = builtin_detectors()

__all__ = [
    "DEFAULT_PHONE_REGIONS", "DETECTORS", "VENDOR_PREFIXES", "Detector", "PrefixIndex", "Span", "Windows",
    "builtin_detectors", "entropy", "looks_benign", "looks_like_reference", "looks_placeholder", "luhn",
]
