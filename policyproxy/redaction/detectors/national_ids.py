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


_DISTINCTIVE = (
    (re.compile(r"\d{3}\.\d{3}\.\d{3}-\d{2}"), br_cpf.is_valid),                      # CPF 123.456.789-09
    (re.compile(r"[2-9]\d{3}([ -])\d{4}\1\d{4}"), in_aadhaar.is_valid),                  # Aadhaar 2345 6789 0124
    (re.compile(r"[12] ?\d{2} ?\d{2} ?(?:\d{2}|2[AB]) ?\d{3} ?\d{3} ?\d{2}"), fr_nir.is_valid),  # FR NIR
    (re.compile(r"\d{6}[-+A]\d{3}[0-9A-Y]"), fi_hetu.is_valid),                           # FI HETU
)


def _distinctive(value: str) -> bool:
    if len(set(re.sub(r"\D", "", value))) <= 2:
        return False
    return any(shape.fullmatch(value) and is_valid(value) for shape, is_valid in _DISTINCTIVE)


def _bare_eu(value: str) -> bool:
    if len(value) == 9:
        return nl_bsn.is_valid(value) or pt_nif.is_valid(value)
    return len(value) == 11 and (de_idnr.is_valid(value) or pl_pesel.is_valid(value))


_SIN_WORDS = r"sin|s\.i\.n\.?|social\s+insurance(?:\s+number)?|nas|num[ée]ro\s+d'assurance\s+sociale"
_AADHAAR_WORDS = r"aadhaa?r|uidai|uid"
_CPF_WORDS = r"cpf"

# Context words as written (exact): short ones like SIN or NIE are common inside lower-case words.
_ES_CONTEXT = ("DNI", "dni", "NIE", "NIF", "nif", "documento", "Documento")
_CPF_CONTEXT = ("CPF", "cpf", "Cpf")
_AADHAAR_CONTEXT = ("Aadhaar", "aadhaar", "AADHAAR", "Aadhar", "aadhar", "UIDAI", "UID")
_SE_DK_CONTEXT = ("personnummer", "Personnummer", "person nr", "CPR", "cpr")
_BE_CONTEXT = (
    "rijksregisternummer", "Rijksregisternummer", "numéro national", "Numéro national", "national number",
    "National number", "NN"
)
_EU_CONTEXT = (
    "BSN", "bsn", "burgerservicenummer", "Burgerservicenummer", "NIF", "nif", "contribuinte", "Steuer-ID",
    "Steuer-Id", "SteuerID", "steuer-id", "IdNr", "idnr", "Identifikationsnummer", "identifikationsnummer",
    "PESEL", "pesel"
)

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
             secret=False, context=_ES_CONTEXT, exact=True, window=(0, 90)),
    # digit shapes distinctive by themselves: one pass over the digit-run windows for all of them
    Detector(D.NATIONAL_ID, re.compile(
        r"(?<![\d.-])(?:\d{3}\.\d{3}\.\d{3}-\d{2}|[2-9]\d{3}([ -])\d{4}\1\d{4}|"
        r"[12] ?\d{2} ?\d{2} ?(?:\d{2}|2[AB]) ?\d{3} ?\d{3} ?\d{2}|\d{6}[-+A]\d{3}[0-9A-Y])(?![\w-]|\.\d)"),
        validate=_checked(_distinctive), secret=False, family="digits"),
    # bare runs: only after their context word
    Detector(D.NATIONAL_ID, re.compile(r"(?<![\d.-])\d{11}(?![\d.-])"),
             validate=_checked(br_cpf.is_valid, _CPF_WORDS), secret=False, context=_CPF_CONTEXT, exact=True,
             window=(0, 90)),
    Detector(D.NATIONAL_ID, re.compile(r"(?<![\d-])\d{3}([- ]?)\d{3}\1\d{3}(?![\d-])"),
             validate=_checked(lambda v: ca_sin.is_valid(v) and stdnum_luhn.is_valid(re.sub(r"\D", "", v)), _SIN_WORDS),
             secret=False, context=("SIN", "S.I.N", "sin:", "sin ", "Sin:", "social insurance", "Social Insurance",
                                    "Social insurance", "NAS", "assurance sociale"), exact=True, window=(0, 90)),
    Detector(D.NATIONAL_ID, re.compile(r"(?<![\d-])[2-9]\d{11}(?![\d-])"),
             validate=_checked(_aadhaar, _AADHAAR_WORDS), secret=False,
             context=_AADHAAR_CONTEXT, exact=True, window=(0, 90)),
    Detector(D.NATIONAL_ID, re.compile(r"(?<![\d-])\d{6}-\d{4}(?![\d-])"),
             validate=_checked(lambda v: se_pn.is_valid(v) or dk_cpr.is_valid(v),
                               r"personnummer|person\s*nr|cpr(?:-nr|-nummer)?|cpr\s+number"),
             secret=False, context=_SE_DK_CONTEXT, exact=True, window=(0, 90)),
    Detector(D.NATIONAL_ID, re.compile(r"(?<![\d.-])\d{2}\.?\d{2}\.?\d{2}-?\d{3}\.?\d{2}(?![\d.-])"),
             validate=_checked(be_nn.is_valid, r"rijksregisternummer|num[ée]ro\s+national|national\s+number|nn"),
             secret=False, context=_BE_CONTEXT, exact=True, window=(0, 90)),
    Detector(D.NATIONAL_ID, re.compile(r"(?<![\d.-])\d{9,11}(?![\d.-])"),
             validate=_checked(_bare_eu, r"bsn|burgerservicenummer|nif|contribuinte|steuer-?id|idnr|"
                                         r"steuerliche\s+identifikationsnummer|identifikationsnummer|pesel"),
             secret=False, context=_EU_CONTEXT, exact=True, window=(0, 90)),
)
