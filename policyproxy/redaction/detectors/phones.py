"""Phone numbers: North-American and international shapes by regex, then Google's libphonenumber
(``phonenumbers``) for the configured regions (``redaction.phone_regions``), which knows each country's
lengths and prefixes (UK ``07700 900123``, DE ``+49 151 ...``, FR ``06 12 34 56 78``, BR
``(11) 91234-5678``).

Only runs of digits and separators are parsed (the ``digits`` windows), so the library's cost is paid
where a number is. Order, invoice and tracking numbers, dates, timestamps and IDs are not phones: a
bare digit run needs a ``+``, a trunk ``0``, an area code in brackets or separators, and a number right
after ``order``/``tracking``/``invoice``/``#`` is left alone.
"""

from __future__ import annotations

import re
from functools import lru_cache

import phonenumbers

from policyproxy.config.schema import DEFAULT_PHONE_REGIONS
from policyproxy.reasons import DetectorName as D
from policyproxy.redaction.detectors.base import Detector, free_standing

_REFERENCE_BEFORE = re.compile(   # "Order #", "Tracking number: 1Z 999 AA1", "invoice no." right before the digits
    r"(?:(?i:\b(?:order|tracking|track|invoice|inv|receipt|ref(?:erence)?|transaction|txn|account|acct|ticket|case|"
    r"build|pid|serial|sku|isbn|ean|upc|shipment|parcel|awb|confirmation|booking|po|id|no|nr)\b)|#)"
    r"[\s.:#=_-]*(?i:(?:no|number|nr|id)\b\.?)?[\s.:#=_-]*(?:[A-Z0-9]{1,4}\s+){0,3}$")
_PHONE_WORDS = re.compile(
    r"(?i)\b(?:phone|tel|mobile|mob|cell|call|fax|whatsapp|sms|contact|dial|ring|reach|office|desk|answer\w*|"
    r"celular|telefone|t[ée]l[ée]phone|portable|handy|telefon|móvil|movil)\b")
_DATE_SHAPE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./](?:\d{4}|\d{2})")
_COMPACT_DATE = re.compile(r"(?:19|20)\d\d(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])")
_RANGE = re.compile(r"\d+-\d+")
# A unit right after a range makes it a quantity: "effective range is 250-30000 ms" (Codex's exec_command tool)
_UNIT_AFTER = re.compile(r"\s?(?:ms|s|secs?|seconds?|minutes?|mins?|hours?|days?|bytes?|[KMGT]i?B|tokens?|"
                         r"chars?|characters?|lines?|px|%)(?![\w-])", re.IGNORECASE)
_DECIMAL = re.compile(r"\d+\.\d+")
_LATE_BRACKET = re.compile(r"^(?!\+\d{1,3}[ .-]?\().*\d[ .-]?\(")   # a bracket not opening the area code
_SSN_SHAPE = re.compile(r"\d{3}-\d{2}-\d{4}")
_EXTENSION = re.compile(r"\s?(?:x|ext\.?\s?)\d{1,6}$")


def _stands_alone(text: str, start: int, end: int) -> bool:
    """Not part of a longer token; a label glued after a dash (``082 490 1693-Office``) is fine."""
    before = text[start - 1] if start > 0 else ""
    if before == ":" and start > 1 and text[start - 2].isalpha():
        before = ""   # a label: TEL;TYPE=CELL:+33..., Phone:+1...
    if before and (before.isalnum() or before in "-./:_"):
        return False
    after = text[end:end + 1]
    if not after or not (after.isalnum() or after in "-/:_"):
        return True
    return after == "-" and re.match(r"-[A-Z][a-z]+(?![\w-])", text[end:end + 16]) is not None


def not_a_reference_number(text: str, start: int) -> bool:
    """False where the digits are an order, tracking, invoice or other reference number: the label
    (with at most a few short tokens, ``Tracking number: 1Z 999 AA1``) sits right before them."""
    return _REFERENCE_BEFORE.search(text, max(0, start - 40), start) is None


def _phone(value: str, text: str, start: int) -> bool:
    digits = re.sub(r"\D", "", value)
    if not 10 <= len(digits) <= 15 or len(set(digits)) < 3:
        return False
    return free_standing(text, start, len(value), "-./:", "-/:") and not_a_reference_number(text, start)


@lru_cache(maxsize=4096)
def _parses(candidate: str, regions: tuple[str, ...]) -> tuple[bool, bool]:
    """(valid in one of ``regions``, possible in one of them): libphonenumber's two verdicts."""
    possible = False
    for region in (None,) if candidate.startswith("+") else regions:
        try:
            number = phonenumbers.parse(candidate, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(number):
            return True, True
        possible = possible or phonenumbers.is_possible_number(number)
    return False, possible


def _international(regions: tuple[str, ...]):  # type: ignore[no-untyped-def]
    def validate(value: str, text: str, start: int) -> bool:
        number = _EXTENSION.sub("", value)
        digits = re.sub(r"\D", "", number)
        if not 7 <= len(digits) <= 15 or len(set(digits)) < 3 or _DATE_SHAPE.fullmatch(number.strip("()")):
            return False
        if _RANGE.fullmatch(number):
            low, high = number.split("-")
            if not low.startswith("0") and int(high) > int(low) and (
                    len(low) >= 4 or (len(low) == len(high) and int(high) - int(low) < 1000)):
                return False   # a range: RFCs 2045-2047, slots 5462-10922
            if not low.startswith("0") and int(high) > int(low) and _UNIT_AFTER.match(text, start + len(value)):
                return False   # a range of a quantity: 250-30000 ms, 100-20000 bytes
        if _SSN_SHAPE.fullmatch(number):
            return False   # NNN-NN-NNNN is the SSN/ITIN shape (us_ssn's), no region writes phones so
        if "." in number and ("-" in number or " " in number):
            return False   # 2.20-2014.11, "RFC 2373 2.5.2": versions and section numbers mix dots with others
        if _DECIMAL.fullmatch(number) or number.count("(") != number.count(")") or _LATE_BRACKET.search(number):
            return False   # 0.6666259765625, "(2455024", "5233 (2019)": a decimal, a tuple, a year
        if re.search(r"\d{1,3}(?:\.\d{1,3}){3}", number) and not re.fullmatch(r"\d\d(?:\.\d\d){3,5}", number):
            return False   # an IPv4 address (FR's 06.12.34.56.78 is a phone)
        if not (_stands_alone(text, start, start + len(value)) and not_a_reference_number(text, start)):
            return False
        context = (_PHONE_WORDS.search(text, max(0, start - 40), start) is not None
                   or _PHONE_WORDS.match(text, start + len(value) + 1, start + len(value) + 12) is not None)
        shaped = number[0] in "+(" or re.search(r"\d[ .()-]+\d", number) is not None
        if not shaped and (not context or _COMPACT_DATE.fullmatch(number)):
            return False   # a bare run (an id, a timestamp, 20120323) with nothing saying it is a phone
        candidate = "+" + number[2:] if number.startswith("00") else number
        valid, possible = _parses(candidate, regions)
        if valid and (len(digits) >= 8 or context):
            return True   # 7-digit local numbers are valid in some region: they need a phone word
        return possible and (context or (number[0] in "+0" and len(digits) >= 10 and not digits.startswith("00")))
    return validate


_NANP_AND_SPACED = re.compile(
    r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)|\d{2,4})[ .-]\d{3,4}[ .-]\d{3,4}(?![\w])|"
    r"(?<![\w+])\+\d{7,14}(?!\w)|"
    # international and national forms: +46 (0)8 928 571 38, 0490 75 40 81, 07700 063 966
    r"(?<![\w+.])(?:\+\d{1,3}[ .-]?(?:\(0\)\s?)?|0)\d{1,4}(?:[ .-]\d{2,4}){2,4}(?![\w.])")
_ANY_GROUPING = re.compile(   # one run of digits and separators; libphonenumber judges the grouping
    r"(?<![\w+/.-])(?:\+|\()?\d(?:[ .-]?\(?\d\)?){5,17}(?:\s?(?:x|ext\.?\s?)\d{1,6})?(?![\w/]|[.-]\d)")


__all__ = ["DEFAULT_PHONE_REGIONS", "phone_detectors"]


def phone_detectors(regions: tuple[str, ...]) -> tuple[Detector, ...]:
    """The phone detectors for ``regions`` (ISO 3166 codes); no regions: the regex shapes only."""
    shapes = Detector(D.PHONE, _NANP_AND_SPACED, validate=_phone, secret=False, family="digits")
    if not regions:
        return (shapes,)
    return (shapes, Detector(D.PHONE, _ANY_GROUPING, validate=_international(tuple(regions)), secret=False,
                             family="digits"))
