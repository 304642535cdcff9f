"""Person names and street addresses without a model: the places they sit in coding-agent traffic.

Names: an email display name (``Jane Doe <jane@x.io>``), git trailers (``Author:``, ``Co-authored-by:``,
``Signed-off-by:``), keys that hold a person (``full_name``, ``first_name``, ``customer``, ``contact``),
salutations (``Dear``, ``Mr.``, ``Dr.``) and "my name is". Addresses: a house number, a street name and
a street-type word (US, UK, DE, FR shapes), with the postcode and city when they follow.
"""

from __future__ import annotations

import re

from policyproxy.reasons import DetectorName as D
from policyproxy.redaction.detectors.base import Detector

_UPPER = "A-ZÀ-ÖØ-ÞĀ-Ž"
_LOWER = "a-zß-öø-ÿā-ž"
_WORD = rf"[{_UPPER}][{_LOWER}'’-]+"
_PARTICLE = r"(?:van|von|de|der|den|da|di|del|la|le|du|bin|al|el|dos|das|ter)"
NAME = rf"{_WORD}(?:[ ](?:{_WORD}|[{_UPPER}]\.|{_PARTICLE})){{0,3}}"
_NOT_NAMES = frozenset({
    "The", "This", "That", "Team", "All", "Everyone", "World", "There", "Sir", "Madam", "Customer", "User",
    "Support", "Admin", "Hello", "Thanks", "Thank", "Bot", "Github", "GitHub", "Claude", "Codex", "Unknown",
    "Name", "First", "Last", "Full", "Null", "None", "True", "False", "Yes", "No", "Dependabot", "Renovate",
})


_TITLES = frozenset({"Mr", "Mrs", "Ms", "Mx", "Dr", "Prof", "Sir", "Madam", "Miss", "Sr", "Sra", "Herr", "Frau"})


def _person(value: str, text: str, start: int) -> bool:
    words = value.replace(",", " ").split()
    return (bool(words) and words[0] not in _NOT_NAMES and words[0] not in _TITLES and not value.endswith("-")
            and len(value) <= 80 and any(c.islower() for c in value))


def _two_words(value: str, text: str, start: int) -> bool:
    """Under ``name``/``customer``/``contact`` keys: a first and a last name, not a one-word label."""
    return _person(value, text, start) and len(value.split()) >= 2


_TRAILERS = ("Author:", "Co-authored-by:", "Co-Authored-By:", "Signed-off-by:", "Reviewed-by:", "Acked-by:",
             "Reported-by:", "Tested-by:", "Suggested-by:", "Committer:", "Reviewer:")
_SALUTATIONS = ("Dear ", "Mr. ", "Mrs. ", "Ms. ", "Mr ", "Mrs ", "Ms ", "Dr. ", "Prof. ", "Mx. ", "Hi ", "Hello ",
                "Monsieur ", "Madame ", "Herr ", "Frau ", "Sr. ", "Sra. ")
_NAME_KEYS = ("full_name", "fullName", "FullName", "first_name", "firstName", "FirstName", "last_name", "lastName",
              "LastName", "given_name", "givenName", "family_name", "familyName", "surname", "display_name",
              "displayName", "customer_name", "customerName", "contact_name", "contactName", "author_name",
              "patient_name", "employee_name", "holder_name", "cardholder", "recipient_name")
_PERSON_KEYS = ('"name"', "'name'", "name:", "name =", "name=", "customer", "Customer", "contact", "Contact",
                "Name:")

_STREET_TYPES = (r"Street|St\.?|Avenue|Ave\.?|Road|Rd\.?|Boulevard|Blvd\.?|Lane|Ln\.?|Drive|Dr\.?|Court|Ct\.?|"
                 r"Place|Pl\.?|Terrace|Parkway|Pkwy\.?|Highway|Hwy\.?|Way|Close|Crescent|Gardens|Square|Mews|Grove|"
                 r"Row|Hill|Walk")
_US_UK = re.compile(
    rf"(?<![\w.-])\d{{1,6}}[A-Za-z]?,?\s+(?:[{_UPPER}0-9][\w'’.-]*\s+){{1,4}}(?:{_STREET_TYPES})(?![\w])"
    r"(?:\s+(?:N|S|E|W|NE|NW|SE|SW)\b)?"
    rf"(?:,?\s+(?:Apt|Apartment|Suite|Ste|Unit|Flat|#)\.?\s*[\w-]+)?"
    rf"(?:,\s*[{_UPPER}][{_LOWER}'’-]+(?:\s[{_UPPER}][{_LOWER}'’-]+){{0,2}})?"
    r"(?:,?\s+(?:[A-Z]{2}\s+\d{5}(?:-\d{4})?|[A-Z]{1,2}\d[A-Z\d]?\s?\d[A-Z]{2}))?")
_DE = re.compile(
    rf"(?<![\w-])[{_UPPER}][{_LOWER}-]*(?:straße|strasse|str\.|weg|allee|platz|gasse|ring|damm|ufer)"
    rf"\s+\d{{1,4}}[a-z]?(?:,\s*\d{{5}}\s+[{_UPPER}][\w-]+)?")
_FR = re.compile(
    rf"(?<![\w-])\d{{1,4}}(?:\s?(?:bis|ter))?,?\s+(?:rue|avenue|boulevard|bd|place|chemin|allée|impasse|quai|route|"
    rf"cours)\s+(?:de\s+la\s+|du\s+|des\s+|de\s+l['’]|d['’]|de\s+)?[{_UPPER}][\w'’-]+(?:\s[{_UPPER}][\w'’-]+){{0,3}}"
    r"(?:,\s*\d{5}\s+[A-Z][\w-]+)?")

NAMES_AND_ADDRESSES: tuple[Detector, ...] = (
    Detector(D.PERSON_NAME, re.compile(rf"(?<![\w.])\"?({NAME})\"?\s*<"), group=1, validate=_person,
             secret=False, family="display"),
    Detector(D.PERSON_NAME, re.compile(rf"\"({_WORD},? {NAME})\"\s*<"), group=1, validate=_person,   # "Doe, Jane" <...>
             secret=False, family="display"),
    Detector(D.PERSON_NAME, prefixes=_TRAILERS, regex=re.compile(rf"[A-Za-z-]+:[ \t]+({NAME})(?=\s*<|\s*$)", re.M),
             group=1, validate=_person, secret=False),
    Detector(D.PERSON_NAME, prefixes=_SALUTATIONS, regex=re.compile(
        rf"(?:Dear|Mrs?\.?|Ms\.?|Mx\.|Dr\.|Prof\.|Hi|Hello|Monsieur|Madame|Herr|Frau|Sra?\.)\s+({NAME})"),
        group=1, validate=_person, secret=False, not_after=""),
    Detector(D.PERSON_NAME, prefixes=("FN:", "FN;"), regex=re.compile(rf"FN[:;](?:[^:\n]*:)?({NAME})"), group=1,
             validate=_person, secret=False),   # vCard
    Detector(D.PERSON_NAME, prefixes=("my name is", "My name is", "my name's", "I am called"),
             regex=re.compile(rf"(?:[Mm]y name is|my name's|I am called)\s+({NAME})"), group=1, validate=_person,
             secret=False),
    Detector(D.PERSON_NAME, prefixes=_NAME_KEYS, regex=re.compile(
        rf"[\w]+[\"']?\s*(?::|=|=>)\s*[\"']?({NAME})(?=[\"',\s}}]|$)"), group=1, validate=_person, secret=False,
        not_after=""),
    Detector(D.PERSON_NAME, prefixes=_PERSON_KEYS, regex=re.compile(
        rf"[\"']?[\w]*[\"']?\s*(?::|=|=>)\s*[\"']?({NAME})(?=[\"',\s}}]|$)"), group=1, validate=_two_words,
        secret=False, not_after=""),
    Detector(D.STREET_ADDRESS, _US_UK, secret=False, window=(90, 160), exact=True,
             context=("Street", "Avenue", "Road", "Boulevard", "Lane", "Drive", "Court", "Place", "Terrace",
                      "Parkway", "Highway", "Close", "Crescent", "Gardens", "Square", "Mews", "Grove", "St.", "St,",
                      "St\n", "Ave", "Rd", "Blvd", "Way,", "Way\n", " Way ", "Dr.", "Ln", "Ct", "Pl", "Row", "Hill",
                      "Walk")),
    Detector(D.STREET_ADDRESS, _DE, secret=False, window=(40, 60), exact=True,
             context=("straße", "strasse", "Straße", "Strasse", "str.", "Str.", "weg ", "allee", "platz", "gasse",
                      "damm ", "ufer ")),
    Detector(D.STREET_ADDRESS, _FR, secret=False, window=(20, 160), exact=True,
             context=(" rue ", " avenue ", " boulevard ", " bd ", " place ", " chemin ", " allée ", " impasse ",
                      " quai ", " route ", " cours ")),
)
