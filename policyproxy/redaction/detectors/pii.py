"""Personal data with a fixed shape: emails, card numbers (Luhn), IBANs (mod 97), IP addresses, US SSNs
and ITINs, dates of birth and passport numbers (the last two only next to the words that say so).

Digit-shaped detectors look only inside the ``digits`` windows (runs of digits and separators), so text
without such runs costs nothing here.
"""

from __future__ import annotations

import ipaddress
import re

from policyproxy.reasons import DetectorName as D
from policyproxy.redaction.detectors.base import Detector, free_standing, iban_valid, luhn
from policyproxy.redaction.placeholders import PLACEHOLDER


def near(text: str, start: int, words: re.Pattern[str], back: int = 60, end: int | None = None) -> bool:
    """One of ``words`` (a compiled regex) in the ``back`` characters before ``start``, on its line."""
    window = text[max(0, start - back):start]
    cut = window.rfind("\n\n")
    return words.search(window[cut + 1:] if cut >= 0 else window) is not None


_CARD_WORDS = re.compile(r"(?i)\b(?:card|cc|credit|debit|visa|mastercard|maestro|amex|pan)\b")


def _card(value: str, text: str, start: int) -> bool:
    digits = "".join(str(int(c)) for c in value if c not in " -")   # ASCII, also from full-width or Arabic digits
    if not 12 <= len(digits) <= 19 or not luhn(digits) or len(set(digits)) < 2:
        return False
    if len(digits) == 12:
        return near(text, start, _CARD_WORDS, back=30)   # 12 digits (Maestro): only where the text says "card"
    separators = set(re.sub(r"\d", "", value))
    if len(separators) > 1:
        return False
    groups = [len(g) for g in re.split(r"[ -]", value)]
    if len(groups) > 1 and not (all(n == 4 for n in groups[:-1]) and 1 <= groups[-1] <= 4) \
            and groups not in ([4, 6, 5], [4, 6, 4]):
        return False   # cards are printed in fours (Amex 4-6-5): "2 55 08 14 168 025 38" is something else
    return bool(re.match(r"4|5[1-5]|2[2-7]|3[47]|6(?:011|5|4[4-9]|22)|3(?:0[0-5]|[68])|35|2131|1800|50|5[6-9]|6[37]",
                         digits))


def _iban(value: str, text: str, start: int) -> bool:
    return iban_valid(value)


_VERSION_SIGNS = ("v", "V", ".", "-", "#", "==", ">=", "<=", "~=", "!=", ">", "<", "~", "^", "@")
_VERSION_BEFORE = re.compile(r"(?i)(?:version|ver|v)\W{0,6}$")


def _ipv4(value: str, text: str, start: int) -> bool:
    before = text[max(0, start - 40):start]
    after = text[start + len(value):start + len(value) + 2]
    if after[:1] == "." or _VERSION_BEFORE.search(before) or before.rstrip(" ").endswith(_VERSION_SIGNS) or \
            re.match(r"[-+~]\d|[a-z]", after):
        return False   # a longer dotted number, or a version: AssemblyVersion("10.0.0.1"), "version": "4.12.0.1",
        # brotlicffi>=1.2.0.0, a Debian revision (1.2.5.1-2), a pre-release (1.0.0.1rc1)
    address = ipaddress.ip_address(value)
    return not (address.is_loopback or address.is_unspecified or str(address) == "255.255.255.255")


def _ipv6(value: str, text: str, start: int) -> bool:
    if value.count(":") < 3:
        return False   # too short to tell from a C++ scope or a clock
    try:
        address = ipaddress.IPv6Address(value)
    except ValueError:
        return False
    return not (address.is_loopback or address.is_unspecified)


def _email(value: str, text: str, start: int) -> bool:
    local = value.split("@", 1)[0].lower()
    return local not in ("git",) and not PLACEHOLDER.search(value)


def _ssn(value: str, text: str, start: int) -> bool:
    return free_standing(text, start, len(value), "-./", "-/")


_SSN_WORDS = re.compile(r"(?i)\b(?:ssn|ss#|soc(?:ial)?\.?\s+sec(?:urity)?(?:\s+(?:number|no\.?|#))?|itin|"
                        r"taxpayer\s+id(?:entification)?(?:\s+number)?|tin)\b")
_DOB_WORDS = re.compile(r"(?i)\b(?:dob|d\.o\.b\.?|date\s+of\s+birth|birth\s*date|birthday|born(?:\s+on)?|"
                        r"geburtsdatum|date\s+de\s+naissance|fecha\s+de\s+nacimiento)\b")
_PASSPORT_WORDS = re.compile(r"(?i)\b(?:passport|passeport|reisepass|pasaporte)\b")


def _ssn_in_context(value: str, text: str, start: int) -> bool:
    digits = re.sub(r"\D", "", value)
    return (len(digits) == 9 and digits[:3] != "000" and digits[3:5] != "00" and digits[5:] != "0000"
            and free_standing(text, start, len(value), "-./", "-/") and near(text, start, _SSN_WORDS))


_MONTHS = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)[a-z]*\.?"


def _date_of_birth(value: str, text: str, start: int) -> bool:
    years = [int(y) for y in re.findall(r"\d{4}", value)]
    if years and not 1900 <= years[0] <= 2030:
        return False
    return near(text, start, _DOB_WORDS, back=50)


def _passport(value: str, text: str, start: int) -> bool:
    return (sum(c.isdigit() for c in value) >= 5 and not value.isalpha()
            and near(text, start, _PASSPORT_WORDS, back=50))


PII: tuple[Detector, ...] = (
    Detector(D.EMAIL, re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24}"
                                 r"(?![A-Za-z0-9-])"), validate=_email, secret=False, family="at"),
    Detector(D.EMAIL, re.compile(   # percent-encoded in a URL or a log line: jane.doe%40example.com
        r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._+-][A-Za-z0-9._%+-]{0,63}%40(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24}"
        r"(?![A-Za-z0-9-])"), secret=False, context=("%40",), exact=True, window=(66, 260)),
    Detector(D.US_SSN, re.compile(r"(?<!\d)(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?!\d)"),
             validate=_ssn, secret=False, family="digits"),
    # undashed, spaced, or in the 9xx area (ITINs): only next to the words that say so
    Detector(D.US_SSN, re.compile(r"(?<![\d-])\d{3}([- ]?)\d{2}\1\d{4}(?![\d-])"),
             validate=_ssn_in_context, secret=False, window=(0, 90), exact=True,
             context=("SSN", "ssn", "Ssn", "SS#", "social security", "Social Security", "Social security",
                      "SOCIAL SECURITY", "ITIN", "itin", "TIN", "taxpayer", "Taxpayer")),
    Detector(D.CREDIT_CARD, re.compile(r"(?<![\dA-Za-z.-])(?:\d[ -]?){11,18}\d(?![\dA-Za-z-]|\.\d)"), validate=_card,
             secret=False, family="digits"),
    Detector(D.IBAN, re.compile(r"(?<![A-Z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![A-Z0-9])"), validate=_iban,
             secret=False, family="digits"),
    Detector(D.IBAN, re.compile(r"(?i)(?<![A-Z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![A-Z0-9])"), validate=_iban,
             secret=False, context=("iban",), window=(0, 80)),   # lower case, where the text says IBAN
    Detector(D.IP_ADDRESS, re.compile(
        r"(?<![\d.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![\d])"),
        validate=_ipv4, secret=False, family="digits"),
    Detector(D.IP_ADDRESS, re.compile(
        r"(?<![0-9A-Za-z:])(?=[0-9A-Fa-f:]*:[0-9A-Fa-f]*:)[0-9A-Fa-f:]{3,39}(?![0-9A-Za-z:])"),
        validate=_ipv6, secret=False, family="colons"),
    Detector(D.DATE_OF_BIRTH, re.compile(
        r"(?<![\d/.-])(?:\d{4}-\d{1,2}-\d{1,2}|\d{1,2}[/.-]\d{1,2}[/.-](?:\d{4}|\d{2})|"
        r"\d{1,2}(?:st|nd|rd|th)?\s+" + _MONTHS + r",?\s+\d{4}|" + _MONTHS + r"\s+\d{1,2}(?:st|nd|rd|th)?,?\s+\d{4})"
        r"(?![\d/.-]\d)"),
        validate=_date_of_birth, secret=False,
        context=("dob", "d.o.b", "birth", "born", "geburtsdatum", "naissance", "nacimiento"), window=(30, 60)),
    Detector(D.PASSPORT, re.compile(r"(?<![A-Za-z0-9])[A-Z]{0,2}[0-9]{6,9}[A-Z]?(?![A-Za-z0-9])"),
             validate=_passport, secret=False,
             context=("passport", "passeport", "reisepass", "pasaporte"), window=(0, 60)),
)
