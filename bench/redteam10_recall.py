# ruff: noqa: E501  (templates are pastes, kept one per line)
"""Recall of the detectors on pastes written by an outside tester (not tuned to, not from the corpora).

Each template marks planted values as ``{{detector|value}}``; values are generated per run (seeded)
with valid check digits where the format has them. The texts go through ``policyproxy scan --jsonl``
(the stable interface), and a planted value counts as found when one finding covers all of it: by the
detector named (``exact``) and by any detector (``covered``: what matters for a leak).

    python bench/redteam10_recall.py [--seed N] [--repeat N] [--misses]
"""

from __future__ import annotations

import argparse
import json
import random
import re
import string
import subprocess
import sys
from collections import defaultdict

MARK = re.compile(r"\{\{([a-z_]+)\|(.*?)\}\}", re.DOTALL)


def _rand(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


AN = string.ascii_letters + string.digits
UP = string.ascii_uppercase + string.digits
HEX = "0123456789abcdef"
B64 = string.ascii_letters + string.digits + "+/"


def _b64url(text: str) -> str:
    import base64

    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def luhn_complete(prefix: str, length: int, rng: random.Random) -> str:
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            d -= 9 if d > 9 else 0
        total += d
    return body + str((10 - total % 10) % 10)


def iban(country: str, bban: str) -> str:
    moved = bban + country + "00"
    digits = "".join(str(int(c, 36)) for c in moved)
    check = 98 - int(digits) % 97
    return f"{country}{check:02d}{bban}"


def values(rng: random.Random) -> dict[str, str]:
    card = luhn_complete("4", 16, rng)
    amex = luhn_complete("37", 15, rng)
    mc = luhn_complete("51", 16, rng)
    de_iban = iban("DE", "".join(rng.choice(string.digits) for _ in range(18)))
    gb_iban = iban("GB", "NWBK" + "".join(rng.choice(string.digits) for _ in range(14)))
    area = rng.choice([123, 212, 318, 401, 555, 678])
    return {
        "aws_id": "AKIA" + _rand(rng, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16),
        "asia_id": "ASIA" + _rand(rng, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16),
        "aws_secret": _rand(rng, AN + "+/", 40),
        "ghp": "ghp_" + _rand(rng, AN, 36),
        "ghpat": "github_pat_11" + _rand(rng, UP, 20) + "_" + _rand(rng, AN, 59),
        "glpat": "glpat-" + _rand(rng, AN + "-_", 20),
        "xoxb": f"xoxb-{rng.randint(10**10, 10**11)}-{rng.randint(10**12, 10**13)}-{_rand(rng, AN, 24)}",
        "slack_hook": f"https://hooks.slack.com/services/T{_rand(rng, UP, 10)}/B{_rand(rng, UP, 10)}/{_rand(rng, AN, 24)}",
        "stripe": "sk_live_" + _rand(rng, AN, 24),
        "rk": "rk_live_" + _rand(rng, AN, 24),
        "openai": "sk-proj-" + _rand(rng, AN + "-_", 48) + "T3BlbkFJ" + _rand(rng, AN + "-_", 48),
        "anthropic": "sk-ant-api03-" + _rand(rng, AN + "-_", 93) + "AA",
        "google": "AIza" + _rand(rng, AN + "-_", 35),
        "jwt": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9." + _b64url(json.dumps(
            {"sub": str(rng.randint(1, 10**6)), "iat": rng.randint(1.6e9, 1.8e9), "scope": "read write"}))
        + "." + _rand(rng, AN + "-_", 43),
        "dbpass": _rand(rng, AN, 14) + "!",
        "password": rng.choice(["Tr0ub4dor&3x", "hunter2-Prod-77", "S3cure!Passw0rd", "winter2024#Ops"]),
        "sendgrid": "SG." + _rand(rng, AN + "-_", 22) + "." + _rand(rng, AN + "-_", 43),
        "hf": "hf_" + _rand(rng, string.ascii_letters, 34),
        "npm": "npm_" + _rand(rng, AN, 36),
        "generic_hex": _rand(rng, HEX, 40),
        "bearer": _rand(rng, AN, 32),
        "email": rng.choice(["oliver.grant", "m.schulz", "priya_n", "j.dupont", "ana-lima"]) + str(rng.randint(1, 99))
        + "@" + rng.choice(["northwind.co.uk", "beispiel-gmbh.de", "exemple.fr", "empresa.com.br", "contoso.com"]),
        "us_phone": f"({rng.randint(201, 989)}) {rng.randint(200, 999)}-{rng.randint(1000, 9999)}",
        "uk_phone": f"07700 900{rng.randint(100, 999)}",
        "de_phone": f"+49 151 {rng.randint(1000, 9999)} {rng.randint(1000, 9999)}",
        "fr_phone": f"06 {rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)}",
        "br_phone": f"(11) 9{rng.randint(1000, 9999)}-{rng.randint(1000, 9999)}",
        "in_phone": f"+91 98{rng.randint(100, 999)} {rng.randint(10000, 99999)}",
        "au_phone": f"04{rng.randint(10, 99)} {rng.randint(100, 999)} {rng.randint(100, 999)}",
        "ssn": f"{area}-{rng.randint(10, 99)}-{rng.randint(1000, 9999)}",
        "card": " ".join(card[i:i + 4] for i in range(0, 16, 4)),
        "amex": amex,
        "mc": "-".join(mc[i:i + 4] for i in range(0, 16, 4)),
        "de_iban": de_iban,
        "gb_iban": " ".join(gb_iban[i:i + 4] for i in range(0, len(gb_iban), 4)),
        "ipv4": f"{rng.choice([34, 52, 81, 185, 203])}.{rng.randint(1, 254)}.{rng.randint(1, 254)}.{rng.randint(1, 254)}",
        "ipv6": f"2a01:4f8:{rng.randint(1, 0xfff):x}:{rng.randint(1, 0xffff):x}::{rng.randint(2, 0xff):x}",
        "name1": rng.choice(["Margaret Okafor", "Henrik Larsson", "Sofia Marquez", "Takeshi Yamamoto", "Aisha Rahman"]),
        "name2": rng.choice(["Luca Bianchi", "Emily Chen", "Rafael Souza", "Fatima Zahra", "Dmitri Volkov"]),
        "us_addr": f"{rng.randint(10, 9999)} {rng.choice(['Maple', 'Oak', 'Cedar', 'Elm'])} "
        f"{rng.choice(['Street', 'Avenue', 'Blvd', 'Drive'])}, {rng.choice(['Springfield, IL 62704', 'Austin, TX 78701', 'Portland, OR 97205'])}",
        "uk_addr": f"{rng.randint(1, 200)} {rng.choice(['Victoria', 'Church', 'Station'])} Road, "
        f"{rng.choice(['Leeds LS1 4AP', 'Bristol BS1 5TR', 'London SW1A 1AA'])}",
        "de_addr": f"{rng.choice(['Lindenstraße', 'Bahnhofstraße', 'Goethestraße'])} {rng.randint(1, 99)}, "
        f"{rng.choice(['10115 Berlin', '80331 München', '50667 Köln'])}",
        "dob": rng.choice(["1984-07-19", "03/22/1979", "14 March 1991", "July 4, 1968"]),
        "nino": f"{rng.choice(['AB', 'CE', 'JG', 'PR'])}{rng.randint(100000, 999999)}{rng.choice('ABCD')}",
        "passport": f"{rng.choice(['C', 'X', 'P'])}{rng.randint(10000000, 99999999)}",
        "intl_phone": rng.choice(["+44 20 7946 0958", "+33 1 42 68 53 00", "+81 3-1234-5678", "+34 612 34 56 78",
                                  "+52 55 1234 5678", "+61 2 9374 4000", "+39 06 6982 1234", "+31 20 794 0000"]),
        "de_landline": f"030 {rng.randint(1000000, 9999999)}",
        "ca_addr": f"{rng.randint(10, 999)} {rng.choice(['King', 'Queen', 'Bloor'])} St W, Toronto, ON M5V 2T6",
        "au_addr": f"{rng.randint(1, 300)} George St, Sydney NSW 2000",
        "nl_addr": f"Keizersgracht {rng.randint(1, 600)}, 1015 CJ Amsterdam",
        "es_addr": f"Calle Mayor {rng.randint(1, 90)}, 28013 Madrid",
        "fr_iban": iban("FR", "".join(rng.choice(string.digits) for _ in range(23))),
        "azure_key": _rand(rng, AN + "+/", 86) + "==",
        "basic": __import__("base64").b64encode(f"deploy:{_rand(rng, AN, 16)}".encode()).decode(),
        "mysqlpw": _rand(rng, AN, 12),
        "name3": rng.choice(["Priya Natarajan", "Olusegun Adeyemi", "Charlotte Dubois", "Mateus Oliveira"]),
        "pem": "-----BEGIN RSA PRIVATE KEY-----\n" + "\n".join(_rand(rng, B64, 64) for _ in range(6)) + "\n-----END RSA PRIVATE KEY-----",
    }


TEMPLATES: list[str] = [
    # .env files
    "# production .env\nNODE_ENV=production\nDATABASE_URL=postgres://app:{{url_credentials|%(dbpass)s}}@db.internal:5432/app\n"
    "STRIPE_SECRET_KEY={{stripe_key|%(stripe)s}}\nSENDGRID_API_KEY={{vendor_token|%(sendgrid)s}}\n"
    "OPENAI_API_KEY={{openai_key|%(openai)s}}\nSESSION_SECRET={{secret_assignment|%(generic_hex)s}}\nPORT=3000\n",
    "export AWS_ACCESS_KEY_ID={{aws_access_key|%(aws_id)s}}\nexport AWS_SECRET_ACCESS_KEY={{aws_secret_key|%(aws_secret)s}}\n"
    "export AWS_DEFAULT_REGION=eu-west-1\n",
    # CI output
    "Run actions/checkout@v4\n  with:\n    token: ***\n+ git remote set-url origin https://x-access-token:{{github_token|%(ghp)s}}@github.com/acme/api.git\n"
    "+ npm config set //registry.npmjs.org/:_authToken {{vendor_token|%(npm)s}}\nnpm ERR! 403 Forbidden\n",
    "Step 7/12 : RUN pip install -r requirements.txt\n ---> Running in 3f2a\nWARNING: HF token {{vendor_token|%(hf)s}} used from env\n"
    "Successfully built 9c1e77\n[deploy] curl -s -H 'Authorization: Bearer {{generic_secret|%(bearer)s}}' https://deploy.acme.io/hook\n",
    # kubeconfig / k8s
    "apiVersion: v1\nkind: Secret\nmetadata:\n  name: api-creds\ntype: Opaque\nstringData:\n  DB_PASSWORD: {{secret_assignment|%(password)s}}\n"
    "  GITLAB_TOKEN: {{gitlab_token|%(glpat)s}}\n",
    # stack traces with emails and IPs
    "Traceback (most recent call last):\n  File \"/srv/app/billing.py\", line 88, in charge\n    customer = lookup('{{email|%(email)s}}')\n"
    "smtplib.SMTPRecipientsRefused: {'{{email|%(email)s}}': (550, b'5.1.1 user unknown')}\n"
    "ConnectionRefusedError: [Errno 111] Connection refused to {{ip_address|%(ipv4)s}}:6379\n",
    "2024-11-03T10:22:41Z ERROR request_id=7f3a client={{ip_address|%(ipv6)s}} user={{email|%(email)s}} msg=\"token expired\" "
    "jwt={{jwt|%(jwt)s}}\n",
    # support tickets, several countries
    "Ticket #48213 - from {{person_name|%(name1)s}} <{{email|%(email)s}}>\nHi team, my card {{credit_card|%(card)s}} was charged twice. "
    "Please call me back on {{phone|%(us_phone)s}}. Ship the replacement to {{street_address|%(us_addr)s}}.\n",
    "Subject: Refund\nDear support,\nmy name is {{person_name|%(name2)s}}; you can reach me at {{phone|%(uk_phone)s}} "
    "or at home: {{street_address|%(uk_addr)s}}. My NI number is {{national_id|%(nino)s}}.\nIBAN for the refund: {{iban|%(gb_iban)s}}\n",
    "Kundenanfrage: Bitte überweisen Sie auf IBAN {{iban|%(de_iban)s}}. Rückruf unter {{phone|%(de_phone)s}}. "
    "Adresse: {{street_address|%(de_addr)s}}\n",
    "Bonjour, je suis joignable au {{phone|%(fr_phone)s}} pour la livraison.\n",
    "Olá, meu celular é {{phone|%(br_phone)s}}, pode ligar depois das 18h.\n",
    "Customer callback: mobile {{phone|%(in_phone)s}} (Bangalore office)\nAU contact mobile: {{phone|%(au_phone)s}}\n",
    "HR form: SSN {{us_ssn|%(ssn)s}}, DOB: {{date_of_birth|%(dob)s}}, passport no. {{passport|%(passport)s}}\n",
    "Order 55120 paid with Amex {{credit_card|%(amex)s}} and Mastercard {{credit_card|%(mc)s}}\n",
    # code pastes
    "const slack = new WebClient('{{slack_token|%(xoxb)s}}');\nawait fetch('{{slack_token|%(slack_hook)s}}', {method: 'POST'});\n",
    "client = anthropic.Anthropic(api_key=\"{{anthropic_key|%(anthropic)s}}\")\ngenai.configure(api_key='{{google_api_key|%(google)s}}')\n",
    "stripe.api_key = \"{{stripe_key|%(rk)s}}\"\nheaders = {'Authorization': f'token {{github_token|%(ghpat)s}}'}\n",
    "$ cat ~/.ssh/id_rsa\n{{private_key|%(pem)s}}\n",
    "git log -3\ncommit 1a2b3c\nAuthor: {{person_name|%(name1)s}} <{{email|%(email)s}}>\nDate:   Mon Nov 4 10:00 2024\n\n    fix billing\n\n"
    "    Co-authored-by: {{person_name|%(name2)s}} <{{email|%(email)s}}>\n",
    '{"user": {"full_name": "{{person_name|%(name2)s}}", "email": "{{email|%(email)s}}", "phone": "{{phone|%(us_phone)s}}"}}\n',
    # harder: other countries' formats, other places names sit, credentials in commands
    "Escalation: customer called from {{phone|%(intl_phone)s}}; landline Tel. {{phone|%(de_landline)s}}\n",
    "Shipping label\nShip to: {{street_address|%(ca_addr)s}}\nAlt: {{street_address|%(au_addr)s}}\n",
    "Lieferadresse: {{street_address|%(nl_addr)s}} / Dirección: {{street_address|%(es_addr)s}}\n",
    "Virement: IBAN {{iban|%(fr_iban)s}} (titulaire {{person_name|%(name3)s}})\n",
    "Thanks for your help!\n\nBest regards,\n{{person_name|%(name3)s}}\nSenior Engineer\n",
    "DefaultEndpointsProtocol=https;AccountName=acmeprod;AccountKey={{secret_assignment|%(azure_key)s}};EndpointSuffix=core.windows.net\n",
    "> GET /api/v2/builds HTTP/1.1\n> Host: ci.acme.io\n> Authorization: Basic {{generic_secret|%(basic)s}}\n> Accept: */*\n",
    "$ mysql -h db.prod -u root -p{{secret_assignment|%(mysqlpw)s}} billing < dump.sql\nERROR 1045 (28000): Access denied\n",
    "$ PGPASSWORD={{secret_assignment|%(mysqlpw)s}} psql -h 10.1.2.3 -U app\n",
    "resource \"aws_db_instance\" \"main\" {\n  username = \"admin\"\n  password = \"{{secret_assignment|%(password)s}}\"\n}\n",
    "[database]\nhost = \"10.0.3.7\"\nuser = \"svc\"\npassword = \"{{secret_assignment|%(password)s}}\"\n",
]


def build(seed: int, repeat: int) -> list[tuple[str, list[tuple[str, int, int]]]]:
    rng = random.Random(seed)
    cases = []
    for _ in range(repeat):
        for template in TEMPLATES:
            filled = template % values(rng)
            text, labels, cursor = "", [], 0
            for m in MARK.finditer(filled):
                text += filled[cursor:m.start()]
                labels.append((m.group(1), len(text), len(text) + len(m.group(2))))
                text += m.group(2)
                cursor = m.end()
            text += filled[cursor:]
            cases.append((text, labels))
    return cases


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--misses", action="store_true", help="print the values missed (test data only)")
    args = parser.parse_args()
    cases = build(args.seed, args.repeat)
    feed = "\n".join(json.dumps(text) for text, _ in cases) + "\n"
    out = subprocess.run([sys.executable, "-m", "policyproxy", "scan", "--jsonl"], input=feed, capture_output=True,
                         text=True, check=False)
    if out.returncode not in (0, 1):
        print(out.stderr, file=sys.stderr)
        return 2
    found = [json.loads(line) for line in out.stdout.splitlines()]
    stats: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])   # planted, exact, covered
    missed: list[tuple[str, str, list]] = []
    for (text, labels), spans in zip(cases, found, strict=True):
        for detector, start, end in labels:
            row = stats[detector]
            row[0] += 1
            covering = [s for s in spans if s["start"] <= start and s["end"] >= end]
            row[1] += any(s["detector"] == detector for s in covering)
            row[2] += bool(covering)
            if not covering:
                near = [(s["detector"], text[s["start"]:s["end"]]) for s in spans if s["end"] > start and s["start"] < end]
                missed.append((detector, text[start:end], near))
    print(f"{'detector':18} {'planted':>7} {'exact':>7} {'covered':>7}")
    for detector in sorted(stats):
        n, exact, covered = stats[detector]
        print(f"{detector:18} {n:7d} {exact / n:7.3f} {covered / n:7.3f}")
    total = [sum(r[i] for r in stats.values()) for i in range(3)]
    print(f"{'ALL':18} {total[0]:7d} {total[1] / total[0]:7.3f} {total[2] / total[0]:7.3f}")
    if args.misses:
        for detector, value, near in missed:
            print("MISS", detector, repr(value), "partial:", near)
    return 0


if __name__ == "__main__":
    sys.exit(main())
