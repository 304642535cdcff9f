"""Person names and street addresses without a model: the places they sit in coding-agent traffic.

Names: an email display name (``Jane Doe <jane@x.io>``), git trailers (``Author:``, ``Co-authored-by:``,
``Signed-off-by:``), keys that hold a person (``full_name``, ``first_name``, ``customer``, ``contact``),
salutations (``Dear``, ``Mr.``, ``Dr.``) and "my name is". Addresses: a house number, a street name and
a street-type word (US, UK, CA, AU, DE, NL, FR, ES, PT shapes), with the postcode and city when they
follow; a letter's sign-off (``Best regards,`` then a name on the next line).
"""

from __future__ import annotations

import re

from policyproxy.reasons import DetectorName as D
from policyproxy.redaction.detectors.base import Detector

_UPPER = "A-ZÀ-ÖØ-ÞĀ-Ž"
_LOWER = "a-zß-öø-ÿā-ž"
_WORD = rf"[{_UPPER}][{_LOWER}]+(?:['’-][{_UPPER}{_LOWER}][{_LOWER}]+)*"   # O'Brien, Jean-Luc
_PARTICLE = r"(?:van|von|de|der|den|da|di|del|la|le|du|bin|al|el|dos|das|ter)"
NAME = rf"{_WORD}(?:[ ](?:{_WORD}|[{_UPPER}]\.|{_PARTICLE})){{0,3}}"
def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Capitalised words that start sentences, labels and titles, not names.
_STOPWORDS = _words("""
A An And As At Be But By Do For From Get Has Have How If In Is It Its Let Like New No Not Of On Or Our Set So
Than That The Then There These This To Use Used Uses Using We What When Where Which While Who Why Will With You
Your Returns Return Default Optional Required Note See Also Example Examples Type Value Values Test Tests Error
Patch Theory Number Farm Service Server Client Data File Files Project Product Page Group Team Role Policy Key
""")
_NOT_NAMES = frozenset({
    "The", "This", "That", "Team", "All", "Everyone", "World", "There", "Sir", "Madam", "Customer", "User",
    "Support", "Admin", "Hello", "Thanks", "Thank", "Bot", "Github", "GitHub", "Claude", "Codex", "Unknown",
    "Name", "First", "Last", "Full", "Null", "None", "True", "False", "Yes", "No", "Dependabot", "Renovate",
})


_TITLES = frozenset({"Mr", "Mrs", "Ms", "Mx", "Dr", "Prof", "Sir", "Madam", "Miss", "Sr", "Sra", "Herr", "Frau"})


def _person(value: str, text: str, start: int) -> bool:
    words = value.replace(",", " ").split()
    return (bool(words) and words[0] not in _NOT_NAMES and words[0] not in _TITLES and not value.endswith("-")
            and len(value) <= 80 and any(c.islower() for c in value) and not any(w in _STOPWORDS for w in words))


# Common given names, for the one ambiguous place: a plain ``name`` key holds a person only when its value
# starts with one (``"name": "Wind Farm"`` is a product; ``"name": "Maria Lopez"`` is a person).
_GIVEN_NAMES = _words("""
James John Robert Michael William David Richard Joseph Thomas Charles Christopher Daniel Matthew Anthony Mark
Donald Steven Paul Andrew Joshua Kenneth Kevin Brian George Timothy Ronald Edward Jason Jeffrey Ryan Jacob Gary
Nicholas Eric Jonathan Stephen Larry Justin Scott Brandon Benjamin Samuel Gregory Alexander Frank Patrick Raymond
Jack Dennis Jerry Tyler Aaron Jose Adam Nathan Henry Douglas Zachary Peter Kyle Noah Ethan Jeremy Walter Christian
Keith Roger Terry Austin Sean Gerald Carl Harold Dylan Arthur Lawrence Jordan Jesse Bryan Billy Bruce Gabriel Joe
Logan Alan Juan Albert Willie Elijah Wayne Randy Vincent Mason Roy Ralph Bobby Russell Bradley Philip Eugene
Mary Patricia Jennifer Linda Elizabeth Barbara Susan Jessica Sarah Karen Lisa Nancy Betty Sandra Margaret Ashley
Kimberly Emily Donna Michelle Carol Amanda Melissa Deborah Stephanie Dorothy Rebecca Sharon Laura Cynthia Amy
Kathleen Angela Shirley Brenda Emma Anna Pamela Nicole Samantha Katherine Christine Helen Debra Rachel Carolyn
Janet Maria Catherine Heather Diane Olivia Julie Joyce Victoria Ruth Virginia Lauren Kelly Christina Joan Evelyn
Judith Andrea Hannah Megan Cheryl Jacqueline Martha Madison Teresa Gloria Sara Janice Ann Kathryn Abigail Sophia
Frances Jean Alice Judy Isabella Julia Grace Amber Denise Danielle Marilyn Beverly Charlotte Natalie Theresa Diana
Brittany Doris Kayla Alexis Lori Marie Jane Jan Tom Tim Ben Sam Max Alex Chris Kim Lee Dana Sofia Sophie Lucas Liam
Oliver Leo Hugo Louis Jules Paul Pierre Jean Marc Luc Claire Camille Chloe Manon Lea Ines Lena Mia Hanna Lukas
Jonas Felix Moritz Finn Paul Elias Anton Greta Ida Clara Marie Johanna Katharina Stefan Andreas Thomas Klaus Jurgen
Giulia Francesca Chiara Marco Luca Giuseppe Giovanni Alessandro Matteo Lorenzo Carlos Luis Miguel Javier Diego
Pablo Sergio Jorge Alejandro Fernando Ricardo Eduardo Pedro Rafael Ana Lucia Carmen Isabel Elena Paula Marta Laura
Joao Gabriela Camila Beatriz Mariana Fernanda Larissa Bruno Thiago Rodrigo Gustavo Felipe Vinicius Mateus Aisha
Fatima Omar Ahmed Mohamed Mohammed Ali Hassan Hussein Yusuf Ibrahim Khalid Layla Noor Nour Zainab Amir Reza Sara
Priya Anjali Pooja Neha Rahul Amit Rohan Arjun Vikram Raj Sanjay Deepak Sunil Anil Ravi Kiran Lakshmi Divya Jun
Wei Li Ming Hui Xin Yan Jing Lei Hao Yu Chen Hiroshi Takashi Yuki Haruto Sakura Yui Kenji Akira Min Ji Seo Joon
Hyun Pavel Ivan Dmitri Sergei Olga Tatiana Natalia Irina Anastasia Piotr Katarzyna Agnieszka Tomasz Jakub Jan
Sven Lars Erik Ingrid Astrid Nils Karin Anders Mikael Emeka Chinedu Ngozi Kwame Amara Tunde Femi Zara Yara Noa
""")


def _person_under_name_key(value: str, text: str, start: int) -> bool:
    """Under ``name``/``customer``/``contact``: two or more words, the first a common given name."""
    words = value.split()
    return _person(value, text, start) and len(words) >= 2 and words[0] in _GIVEN_NAMES


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
    r"(?:,?\s+(?:[A-Z]{2}\s+\d{5}(?:-\d{4})?|[A-Z]{1,2}\d[A-Z\d]?\s?\d[A-Z]{2}"
    r"|(?:AB|BC|MB|NB|NL|NS|NT|NU|ON|PE|QC|SK|YT)\s+[A-Z]\d[A-Z]\s?\d[A-Z]\d"   # Canada: province, postal code
    r"|(?:NSW|VIC|QLD|WA|SA|TAS|ACT|NT)\s+\d{4}))?")                                # Australia: state, postcode
_DE = re.compile(
    rf"(?<![\w-])[{_UPPER}][{_LOWER}-]*(?:straße|strasse|str\.|weg|allee|platz|gasse|ring|damm|ufer)"
    rf"\s+\d{{1,4}}[a-z]?(?:,\s*\d{{5}}\s+[{_UPPER}][\w-]+)?")
_FR = re.compile(
    rf"(?<![\w-])\d{{1,4}}(?:\s?(?:bis|ter))?,?\s+(?:rue|avenue|boulevard|bd|place|chemin|allée|impasse|quai|route|"
    rf"cours)\s+(?:de\s+la\s+|du\s+|des\s+|de\s+l['’]|d['’]|de\s+)?[{_UPPER}][\w'’-]+(?:\s[{_UPPER}][\w'’-]+){{0,3}}"
    r"(?:,\s*\d{5}\s+[A-Z][\w-]+)?")

_NL = re.compile(   # Keizersgracht 123, 1015 CJ Amsterdam
    rf"(?<![\w-])[{_UPPER}][{_LOWER}-]*(?:straat|gracht|laan|plein|kade|singel|dijk|steeg|weg)"
    rf"\s+\d{{1,4}}(?:[-\s]?[a-zA-Z]\b)?(?:,\s*\d{{4}}\s?[A-Z]{{2}}\s+[{_UPPER}][\w-]+)?")
_ES_PT = re.compile(   # Calle Mayor 5, 28013 Madrid; Avenida de la Paz, 12; Rua Augusta 274
    rf"(?<![\w-])(?:Calle|C/|Avenida|Avda\.|Plaza|Paseo|Carrer|Passeig|Camino|Ronda|Rua|Travessa|Largo|Praça)"
    rf"\s+(?:(?:de|del|da|das|do|dos)\s+(?:(?:la|las|los)\s+)?)?[{_UPPER}][\w'’-]+(?:\s[{_UPPER}][\w'’-]+){{0,3}}"
    rf",?\s+(?:n[º°o]\.?\s*)?\d{{1,4}}[A-Za-z]?(?:,\s*\d{{5}}(?:-\d{{3}})?\s+[{_UPPER}][\w-]+)?")
_JOB_WORDS = _words("""
Senior Junior Lead Principal Staff Chief Head Engineer Engineering Developer Manager Director Officer President
Analyst Architect Consultant Specialist Administrator Coordinator Assistant Associate Intern Designer Scientist
Support Operations Sales Marketing Customer Success Department Office Desk Services Solutions Security Finance
Billing Legal Product Platform Infrastructure Owner Founder Partner Representative Agent Committee Board
""")


def _signed_name(value: str, text: str, start: int) -> bool:
    """A sign-off line holds a name, not a job title or a team (``Senior Engineer``, ``Customer Success``)."""
    return _two_words(value, text, start) and not any(w in _JOB_WORDS for w in value.split())


_SIGN_OFFS = ("regards,", "Regards,", "Thanks,", "Thanks!", "Cheers,", "Sincerely,", "Best,", "Thank you,",
              "Cordialement,", "Grüßen", "Grüße,", "Saludos,", "Atenciosamente,", "Cumprimentos,", "Groeten,",
              "wishes,")

_HOLDERS = ("titulaire", "Titulaire", "account holder", "Account holder", "Account Holder", "Kontoinhaber",
            "titular", "Titular", "card holder", "Card holder", "Cardholder", "cardholder", "rekeninghouder")

NAMES_AND_ADDRESSES: tuple[Detector, ...] = (
    Detector(D.PERSON_NAME, prefixes=_HOLDERS, regex=re.compile(   # the holder of an account or card
        rf"(?:[Tt]itulaire|[Aa]ccount [Hh]older|Kontoinhaber(?:in)?|[Tt]itular|[Cc]ard ?holder|[Cc]ard holder"
        rf"|rekeninghouder)(?:\s+(?:name|du compte|de la cuenta|da conta))?\s*[:=]?\s*[\"']?({NAME})"),
        group=1, validate=_two_words, secret=False, not_after=""),
    Detector(D.PERSON_NAME, prefixes=_SIGN_OFFS, regex=re.compile(   # a letter's sign-off: the next line is a name
        rf"(?:[Rr]egards|Thanks|Cheers|Sincerely|Best|Thank you|Cordialement|Grüßen|Grüße|Saludos|Atenciosamente"
        rf"|Cumprimentos|Groeten|wishes)[,!][ \t]*\r?\n[ \t]*({NAME})[ \t]*(?=\r?\n|$)"),
        group=1, validate=_signed_name, secret=False, not_after=""),
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
        rf"[\"']?[\w]*[\"']?\s*(?::|=|=>)\s*[\"']?({NAME})(?=[\"',\s}}]|$)"), group=1, validate=_person_under_name_key,
        secret=False, not_after=""),
    Detector(D.STREET_ADDRESS, _US_UK, secret=False, window=(90, 160), exact=True,
             context=("Street", "Avenue", "Road", "Boulevard", "Lane", "Drive", "Court", "Place", "Terrace",
                      "Parkway", "Highway", "Close", "Crescent", "Gardens", "Square", "Mews", "Grove", "St.", "St,",
                      "St\n", "Ave", "Rd", "Blvd", "Way,", "Way\n", " Way ", "Dr.", "Ln", "Ct", "Pl", "Row", "Hill",
                      "Walk", "St W", "St E", "St N", "St S")),
    Detector(D.STREET_ADDRESS, _DE, secret=False, window=(40, 60), exact=True,
             context=("straße", "strasse", "Straße", "Strasse", "str.", "Str.", "weg ", "allee", "platz", "gasse",
                      "damm ", "ufer ")),
    Detector(D.STREET_ADDRESS, _NL, secret=False, window=(40, 60), exact=True,
             context=("straat ", "gracht ", "laan ", "plein ", "kade ", "singel ", "dijk ", "steeg ")),
    Detector(D.STREET_ADDRESS, _ES_PT, secret=False, window=(0, 160), exact=True,
             context=("Calle ", "C/ ", "Avenida ", "Avda. ", "Plaza ", "Paseo ", "Carrer ", "Passeig ", "Camino ",
                      "Ronda ", "Rua ", "Travessa ", "Largo ", "Praça ")),
    Detector(D.STREET_ADDRESS, _FR, secret=False, window=(20, 160), exact=True,
             context=(" rue ", " avenue ", " boulevard ", " bd ", " place ", " chemin ", " allée ", " impasse ",
                      " quai ", " route ", " cours ")),
)
