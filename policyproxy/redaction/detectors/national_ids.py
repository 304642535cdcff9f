"""National identifiers with check digits (``python-stdnum`` validates them): UK NINO, Canadian SIN,
Indian Aadhaar and PAN, Brazilian CPF, and EU numbers (ES DNI/NIE, IT codice fiscale, FR NIR, DE
Steuer-ID, NL BSN, PL PESEL, SE personnummer, DK CPR, FI HETU, BE national number, PT NIF).

A check digit passes one random number in ten or so, so a shape that is common in code (a bare run of
9 to 12 digits) also needs its context word (``SIN``, ``Aadhaar``, ``BSN``...) just before it; shapes
that are distinctive by themselves (a formatted CPF ``123.456.789-09``, a NINO ``AB 12 34 56 C``, a
16-character codice fiscale) need only the checksum.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from stdnum import luhn as stdnum_luhn
from stdnum.be import nn as be_nn
from stdnum.br import cpf as br_cpf
from stdnum.ca import sin as ca_sin
from stdnum.de import idnr as de_idnr
from stdnum.dk import cpr as dk_cpr
from stdnum.es import dni as es_dni
from stdnum.es import nie as es_nie
from stdnum.fi import hetu as fi_hetu
from stdnum.fr import nir as fr_nir
from stdnum.in_ import aadhaar as in_aadhaar
from stdnum.in_ import pan as in_pan
from stdnum.it import codicefiscale as it_cf
from stdnum.nl import bsn as nl_bsn
from stdnum.pl import pesel as pl_pesel
from stdnum.pt import nif as pt_nif
from stdnum.se import personnummer as se_pn

from policyproxy.reasons import DetectorName as D
from policyproxy.redaction.detectors.base import Detector, free_standing

_NINO = re.compile(r"(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D]")


def _checked(is_valid: Callable[[str], bool], words: str | None = None) -> Callable[[str, str, int], bool]:
    """A validator: the checksum passes, the value stands alone, and (if ``words``) a context word is near."""
    context = re.compile(r"(?i)\b(?:" + words + r")\b") if words else None

    def validate(value: str, text: str, start: int) -> bool:
        if not free_standing(text, start, len(value), "-./_", "-/_"):
            return False
        if context is not None and context.search(text, max(0, start - 60), start) is None:
            return False
        try:
            return bool(is_valid(value))
        except Exception:   # stdnum raises on shapes it cannot read: not an identifier
            return False
    return validate


def _nino(value: str) -> bool:
    return _NINO.fullmatch(value.upper()) is not None


def _aadhaar(value: str) -> bool:
    return in_aadhaar.is_valid(value) and len(set(re.sub(r"\D", "", value))) > 2


def _bare_eu(value: str) -> bool:
    if len(value) == 9:
        return nl_bsn.is_valid(value) or pt_nif.is_valid(value)
    return len(value) == 11 and (de_idnr.is_valid(value) or pl_pesel.is_valid(value))


_SIN_WORDS = r"sin|s\.i\.n\.?|social\s+insurance(?:\s+number)?|nas|num[ée]ro\s+d'assurance\s+sociale"
_AADHAAR_WORDS = r"aadhaa?r|uidai|uid"
_CPF_WORDS = r"cpf"

NATIONAL_IDS: tuple[Detector, ...] = (
    # shapes with letters: found by their own regex, never inside a longer token
    Detector(D.NATIONAL_ID, re.compile(
        r"(?<![A-Za-z0-9])[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D](?![A-Za-z0-9])"),
        validate=_checked(_nino, r"nino|ni\s+(?:no|number)|national\s+insurance(?:\s+(?:no|number))?"),
        secret=False, context=("nino", "national insurance", "National Insurance", "NI number", "NI No"),
        window=(0, 80)),
    Detector(D.NATIONAL_ID, re.compile(r"(?<![A-Za-z0-9])[A-Z]{3}[ABCFGHLJPTK][A-Z]\d{4}[A-Z](?![A-Za-z0-9])"),
             validate=_checked(in_pan.is_valid), secret=False,
             context=("pan", "permanent account", "income tax"), window=(0, 80)),
    Detector(D.NATIONAL_ID, re.compile(r"(?<![A-Za-z0-9])[A-Z]{6}\d{2}[A-Z]\d{2}[A-Z]\d{3}[A-Z](?![A-Za-z0-9])"),
             validate=_checked(it_cf.is_valid), secret=False, window=(0, 80),
             context=("fiscale", "c.f.", "cf:", "cf ", "cf=", "tax code", "codice")),
    Detector(D.NATIONAL_ID, re.compile(r"(?<![A-Za-z0-9])(?:\d{8}-?[A-Z]|[XYZ]-?\d{7}-?[A-Z])(?![A-Za-z0-9])"),
             validate=_checked(lambda v: es_dni.is_valid(v) or es_nie.is_valid(v), r"dni|nie|nif|documento"),
             secret=False, family="digits"),
    # digit shapes: inside the digit-run windows
    Detector(D.NATIONAL_ID, re.compile(r"(?<![\d.-])\d{3}\.\d{3}\.\d{3}-\d{2}(?![\d.-])"),
             validate=_checked(br_cpf.is_valid), secret=False, family="digits"),
    Detector(D.NATIONAL_ID, re.compile(r"(?<![\d.-])\d{11}(?![\d.-])"),
             validate=_checked(br_cpf.is_valid, _CPF_WORDS), secret=False, family="digits"),
    Detector(D.NATIONAL_ID, re.compile(r"(?<![\d-])\d{3}([- ]?)\d{3}\1\d{3}(?![\d-])"),
             validate=_checked(lambda v: ca_sin.is_valid(v) and stdnum_luhn.is_valid(re.sub(r"\D", "", v)), _SIN_WORDS),
             secret=False, family="digits"),
    Detector(D.NATIONAL_ID, re.compile(r"(?<![\d-])[2-9]\d{3}([ -])\d{4}\1\d{4}(?![\d-])"),
             validate=_checked(_aadhaar), secret=False, family="digits"),
    Detector(D.NATIONAL_ID, re.compile(r"(?<![\d-])[2-9]\d{11}(?![\d-])"),
             validate=_checked(_aadhaar, _AADHAAR_WORDS), secret=False, family="digits"),
    Detector(D.NATIONAL_ID, re.compile(r"(?<![\d-])[12] ?\d{2} ?\d{2} ?(?:\d{2}|2[AB]) ?\d{3} ?\d{3} ?\d{2}(?![\d-])"),
             validate=_checked(fr_nir.is_valid), secret=False, family="digits"),
    Detector(D.NATIONAL_ID, re.compile(r"(?<![\d-])\d{6}[-+A]\d{3}[0-9A-Y](?![\w-])"),
             validate=_checked(fi_hetu.is_valid), secret=False, family="digits"),
    Detector(D.NATIONAL_ID, re.compile(r"(?<![\d-])\d{6}-\d{4}(?![\d-])"),
             validate=_checked(lambda v: se_pn.is_valid(v) or dk_cpr.is_valid(v),
                               r"personnummer|person\s*nr|cpr(?:-nr|-nummer)?|cpr\s+number"),
             secret=False, family="digits"),
    Detector(D.NATIONAL_ID, re.compile(r"(?<![\d.-])\d{2}\.?\d{2}\.?\d{2}-?\d{3}\.?\d{2}(?![\d.-])"),
             validate=_checked(be_nn.is_valid, r"rijksregisternummer|num[ée]ro\s+national|national\s+number|nn"),
             secret=False, family="digits"),
    Detector(D.NATIONAL_ID, re.compile(r"(?<![\d.-])\d{9,11}(?![\d.-])"),
             validate=_checked(_bare_eu, r"bsn|burgerservicenummer|nif|contribuinte|steuer-?id|idnr|"
                                         r"steuerliche\s+identifikationsnummer|identifikationsnummer|pesel"),
             secret=False, family="digits"),
)
