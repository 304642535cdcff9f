"""Personal data as real pastes carry it (issue 10 section 2): international phones, national
identifiers, SSNs by context, dates of birth, passports, names and street addresses; and the
look-alikes (order numbers, versions in IP shape, timestamps) that must stay untouched."""

import dataclasses

import pytest

from policyproxy.config.schema import RedactionSpec
from policyproxy.redaction.engine import Redactor


@pytest.fixture(scope="module")
def redactor():
    return Redactor(RedactionSpec())


def found(redactor, text):
    return [(s.detector, text[s.start:s.end]) for s in redactor.find(text)]


class TestInternationalPhones:
    CASES = (
        ("UK mobile in a support ticket", "Customer called back from 07700 900123 about the refund.", "07700 900123"),
        ("DE mobile in a signature", "Mit freundlichen Grüßen\nJonas\nMobil: +49 151 23456789", "+49 151 23456789"),
        ("FR vCard", "BEGIN:VCARD\nVERSION:3.0\nFN:Claire Martin\nTEL;TYPE=CELL:+33 6 12 34 56 78\nEND:VCARD",
         "+33 6 12 34 56 78"),
        ("FR vCard compact", "TEL;TYPE=CELL:+33612345678", "+33612345678"),
        ("FR dotted national", "Tél. 06.12.34.56.78 (portable)", "06.12.34.56.78"),
        ("BR celular with area code", "Cliente: Ana Souza, celular (11) 98765-4321", "(11) 98765-4321"),
        ("BR celular local", "WhatsApp 98765-4321 depois das 18h", "98765-4321"),
        ("US with extension", "Fax: +1 (415) 555-0132 ext. 204", "+1 (415) 555-0132 ext. 204"),
        ("label glued by a dash", "082 490 1693-Office, +41 44 668 18 00-Fax", "082 490 1693"),
        ("IN mobile", "Contact Mr. Rao on +91 98765 43210 for delivery", "+91 98765 43210"),
    )

    @pytest.mark.parametrize(("text", "value"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
    def test_found(self, redactor, text, value):
        assert ("phone", value) in found(redactor, text)

    def test_regions_are_a_config_key(self):
        """Without libphonenumber's regions a bare national number is not recognised."""
        text = "WhatsApp 98765-4321 depois das 18h"
        off = Redactor(dataclasses.replace(RedactionSpec(), phone_regions=()))
        assert found(off, text) == []
        assert found(Redactor(dataclasses.replace(RedactionSpec(), phone_regions=("BR",))), text) == [
            ("phone", "98765-4321")]


class TestNotPhones:
    @pytest.mark.parametrize("text", [
        "Order #1234567890 shipped. Tracking number: 1Z 999 AA1 0123456784",
        "Invoice no. 2024-118273-44 is overdue; order ID: 4417 8823 9901 2235",
        "2024-01-15T10:30:45.123Z pid=48211 took 1700000000000 ns, build 20240115.3, ts 1705314645",
        "see RFCs 2045-2047 and pages 1200-1210",
        "localhost 127.0.0.1 0.0.0.0 ::1 port 8080 pid 12345 ts 1700000000000",
        "shipment AWB 176-12345675 via parcel 0034 5678 9012 3456 7890",
        "elapsed 1234567 ms, 2592000000 bytes, 1048576 entries",
        "request 09411513-9764-edef-00e5-80f504cfb8fc failed",
        "XOxE-RROAmw, Home and Garden, 5:24, 20120323",
        "    smooth_relations = [\n        (2455024, 637, 8),",
        "            mpf('0.6666259765625') and nint_distance(mpf(5.00000001))",
        '"Slots": "5462-10922", Sci Rep 9, 5233 (2019). https://doi.org/10.1038',
        'uses version strings like "2.20-2014.11"; RFC 2373 2.5.2. and array([[0.70710678-0.j',
        'print(numlist.parse_string("0 123 321"))',
        "0.5.4\n=====\n\n*(2026-09-15)*\n\nPackaging updates",
        # Codex CLI 0.171's exec_command tool description, in every request it sends
        "Wait before yielding output. Defaults to 10000 ms; effective range is 250-30000 ms.",
        "between 250-30000 bytes, 120-8000 tokens or 250-30000%",
    ])
    def test_left(self, redactor, text):
        assert [d for d, _ in found(redactor, text) if d == "phone"] == []

    def test_local_numbers_are_not_ranges(self, redactor):
        assert ("phone", "555-1234") in found(redactor, "Call 555-1234 now")
        assert ("phone", "0961-7596216") in found(redactor, "my registered 0961-7596216. Could you")


class TestPercentEncoding:
    def test_an_encoded_email_in_a_url_is_found(self, redactor):
        text = '127.0.0.1 - - "GET /api/users?email=jane.doe%40example.com&page=2 HTTP/1.1" 200'
        assert ("email", "jane.doe%40example.com") in found(redactor, text)


class TestOtherDigitSpellings:
    """Full-width and Arabic-Indic digits are digits to the model: the checks must read them too."""

    @pytest.mark.parametrize(("text", "detector", "value"), [
        ("card ４１１１ １１１１ １１１１ １１１１ on file", "credit_card", "４１１１ １１１１ １１１１ １１１１"),
        ("SSN: ٠٧٨-٠٥-١١٢٠", "us_ssn", "٠٧٨-٠٥-١١٢٠"),
        ("call +４４ ２０ ７９４６ ０９５８", "phone", "+４４ ２０ ７９４６ ０９５８"),
    ])
    def test_found(self, redactor, text, detector, value):
        assert (detector, value) in found(redactor, text)


class TestNotCards:
    def test_decimals_are_not_cards(self, redactor):
        assert found(redactor, "0.437620923709297 and lgamma 1e-309 -> 711.49879373516012") == []

    def test_digits_inside_a_hex_token_are_not_a_card(self, redactor):
        text = '<img src="./assets/vipul-f0eb1acf0da84c06a50c5b2c59932001997786b176dec02bd16128ee9ea83">'
        assert found(redactor, text) == []


class TestNationalIds:
    CASES = (
        ("UK NINO in an HR export", "Employee record: NI number AB 12 34 56 C, start date 2023-04-01", "AB 12 34 56 C"),
        ("UK NINO compact", "National Insurance No: JG103759A", "JG103759A"),
        ("Canadian SIN", "Please update my SIN: 130 692 544 on the T4 slip", "130 692 544"),
        ("Aadhaar", "KYC: Aadhaar 4991 1866 5246 verified", "4991 1866 5246"),
        ("PAN", "PAN: AFZPK7190K (income tax)", "AFZPK7190K"),
        ("CPF formatted", "Cliente: CPF 529.982.247-25, pedido 88123", "529.982.247-25"),
        ("CPF bare", "cpf=52998224725", "52998224725"),
        ("ES DNI", "DNI 12345678Z", "12345678Z"),
        ("IT codice fiscale", "codice fiscale RSSMRA85T10A562S", "RSSMRA85T10A562S"),
        ("NL BSN", "BSN: 111222333", "111222333"),
        ("PL PESEL", "PESEL 44051401359", "44051401359"),
        ("DE Steuer-ID", "Steuer-ID: 36574261809", "36574261809"),
        ("FI HETU", "henkilötunnus 131052-308T", "131052-308T"),
        ("SE personnummer", "personnummer 811228-9874", "811228-9874"),
        ("FR NIR", "numéro de sécurité sociale (NIR) 2 55 08 14 168 025 38", "2 55 08 14 168 025 38"),
    )

    @pytest.mark.parametrize(("text", "value"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
    def test_found(self, redactor, text, value):
        assert ("national_id", value) in found(redactor, text)

    def test_a_bad_check_digit_is_not_an_id(self, redactor):
        assert found(redactor, "cpf=52998224726 and BSN: 111222334") == []


class TestUsSsnByContext:
    @pytest.mark.parametrize(("text", "value"), [
        ("Customer SSN: 078051120 (verified)", "078051120"),
        ("social security number 078 05 1120 on the form", "078 05 1120"),
        ("ITIN: 912-78-1234", "912-78-1234"),
        ("SSN 987-65-4320", "987-65-4320"),
        ("Social Security Number 219 09 9999", "219 09 9999"),
    ])
    def test_found(self, redactor, text, value):
        assert ("us_ssn", value) in found(redactor, text)

    def test_undashed_nine_digits_need_the_word(self, redactor):
        assert found(redactor, "request 078051120 took 912 ms") == []


class TestBirthDatesAndPassports:
    @pytest.mark.parametrize(("text", "detector", "value"), [
        ("Patient DOB: 03/14/1985, allergies none", "date_of_birth", "03/14/1985"),
        ("Date of birth: 14 March 1985", "date_of_birth", "14 March 1985"),
        ("She was born on July 4, 1976 in Ohio", "date_of_birth", "July 4, 1976"),
        ("birthdate: 1985-03-14", "date_of_birth", "1985-03-14"),
        ("Passport No: X12345678, expires 2031", "passport", "X12345678"),
        ("passport number 533380006", "passport", "533380006"),
    ])
    def test_found(self, redactor, text, detector, value):
        assert (detector, value) in found(redactor, text)

    def test_dates_without_the_words_are_left(self, redactor):
        assert found(redactor, "released 2024-01-15, build 03/14/1985 tag") == []


class TestPersonNames:
    CASES = (
        ("email display name", "From: Jane Doe <jane.doe@acme-corp.io>", "Jane Doe"),
        ("quoted last, first", 'To: "Kowalski, Dana" <dana@example.org>', "Kowalski, Dana"),
        ("git Author", "commit 3f9a2b1c\nAuthor: María José García <mjgarcia@example.com>\nDate:   Tue Mar 12",
         "María José García"),
        ("Co-authored-by", "    Fix login redirect\n\n    Co-authored-by: Pavel Novak <pavel.novak@example.com>",
         "Pavel Novak"),
        ("Signed-off-by", "Signed-off-by: Noor Singh <noor@example.com>", "Noor Singh"),
        ("full_name key", '{"customer": {"full_name": "Aisha Okafor", "plan": "pro"}}', "Aisha Okafor"),
        ("first_name key", "first_name: Aisha\nlast_name: Okafor", "Aisha"),
        ("customer key", "customer: Tom Berg\nplan: enterprise", "Tom Berg"),
        ("contact key", '"contact": "Li Chen",', "Li Chen"),
        ("salutation", "Hi Sofia, thanks for reaching out.", "Sofia"),
        ("title", "Dear Mr. Tanaka,\nyour order shipped.", "Tanaka"),
        ("my name is", "My name is Jun Rossi and I need help with my account.", "Jun Rossi"),
    )

    @pytest.mark.parametrize(("text", "value"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
    def test_found(self, redactor, text, value):
        assert ("person_name", value) in found(redactor, text)

    @pytest.mark.parametrize("text", [
        'tools: [{"name": "Read"}, {"name": "Bash"}], name: build-and-test',
        "Hi team, thanks for the review. Dear Sir or Madam,",
        "Author: dependabot[bot]",
        "class HttpClient:\n    def __init__(self, name: str) -> None:\n        self.name = name",
        "    name = 'Typographic Number Theory'\n    \"name\": \"Wind Farm\",",
        "preserving_proto_field_name: If True, use the original",
        "#    print _('Hello World')",
    ])
    def test_left(self, redactor, text):
        assert [d for d, _ in found(redactor, text) if d == "person_name"] == []

    def test_a_plain_name_key_holds_a_person_when_it_starts_with_a_given_name(self, redactor):
        assert ("person_name", "Maria Lopez") in found(redactor, '{"name": "Maria Lopez", "role": "admin"}')


class TestStreetAddresses:
    CASES = (
        ("US with city, state, ZIP", "Ship to: 1600 Pennsylvania Avenue NW, Washington, DC 20500",
         "1600 Pennsylvania Avenue NW, Washington, DC 20500"),
        ("US abbreviated", "Billing: 742 Evergreen Terrace, Springfield, IL 62704",
         "742 Evergreen Terrace, Springfield, IL 62704"),
        ("UK with postcode", "UK office: 10 Downing Street, London SW1A 2AA", "10 Downing Street, London SW1A 2AA"),
        ("DE", "Lieferadresse: Hauptstraße 5, 10115 Berlin", "Hauptstraße 5, 10115 Berlin"),
        ("FR", "Adresse : 12 rue de la Paix, 75002 Paris", "12 rue de la Paix, 75002 Paris"),
    )

    @pytest.mark.parametrize(("text", "value"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
    def test_found(self, redactor, text, value):
        assert ("street_address", value) in found(redactor, text)

    @pytest.mark.parametrize("text", [
        "for i in range(10): place(i)\nreturn 3 Close",
        "result = string.replace('a', 'b') if true else 200 OK",
    ])
    def test_left(self, redactor, text):
        assert [d for d, _ in found(redactor, text) if d == "street_address"] == []


class TestVersionsInIpShape:
    @pytest.mark.parametrize("text", [
        '[assembly: AssemblyVersion("10.0.0.1")]\n[assembly: AssemblyFileVersion("4.12.0.1")]',
        '{"name": "my-lib", "version": "4.12.0.1"}',
        "<Version>10.0.19041.1</Version> FileVersion: 6.1.7601.2",
        "see https://datatracker.ietf.org/doc/html/rfc7231#section-7.1.1.1",
        "Requires-Dist: brotlicffi>=1.2.0.0; pkg==1.2.3.4",
        "status unpacked alsa-topology-conf:all 1.2.5.1-2",
    ])
    def test_left(self, redactor, text):
        assert [d for d, _ in found(redactor, text) if d == "ip_address"] == []

    def test_an_address_is_still_found(self, redactor):
        assert ("ip_address", "203.0.113.77") in found(redactor, "connect to 203.0.113.77 failed")
        assert ("ip_address", "10.1.2.3") in found(redactor, "retrying host=10.1.2.3 port=5432")
