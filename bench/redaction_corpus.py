"""A labelled evaluation corpus the project generates: Claude-Code- and Codex-shaped requests with
planted secrets and PII, and hard negatives that must stay untouched. Deterministic per seed."""

from __future__ import annotations

import base64
import hashlib
import json
import random
import string
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ALNUM = string.ascii_letters + string.digits


@dataclass
class Sample:
    body: dict[str, Any]
    planted: list[tuple[str, str]] = field(default_factory=list)     # (detector, value)
    negatives: list[str] = field(default_factory=list)


def _rand(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def _luhn_complete(rng: random.Random, prefix: str, length: int) -> str:
    digits = prefix + _rand(rng, string.digits, length - len(prefix) - 1)
    for check in string.digits:
        candidate = digits + check
        total = 0
        for i, ch in enumerate(reversed(candidate)):
            d = int(ch)
            if i % 2:
                d = d * 2 - 9 if d > 4 else d * 2
            total += d
        if total % 10 == 0:
            return candidate
    raise AssertionError


def _iban(rng: random.Random) -> str:
    bban = _rand(rng, string.digits, 18)
    numeric = "".join(str(int(c, 36)) for c in bban + "DE00")
    check = 98 - int(numeric) % 97
    raw = f"DE{check:02d}{bban}"
    return " ".join(raw[i:i + 4] for i in range(0, len(raw), 4)) if rng.random() < 0.5 else raw


FIRST = ["dana", "li", "omar", "sofia", "jun", "maria", "tom", "aisha", "pavel", "noor"]
LAST = ["kowalski", "chen", "haddad", "rossi", "tanaka", "garcia", "berg", "okafor", "novak", "singh"]


def secrets_and_pii(rng: random.Random) -> list[tuple[str, str, str]]:
    """(detector, value, the line it is planted in)."""
    aws = "AKIA" + _rand(rng, string.ascii_uppercase + string.digits, 16)
    aws_secret = _rand(rng, ALNUM + "/+", 40)
    gh = "ghp_" + _rand(rng, ALNUM, 36)
    gl = "glpat-" + _rand(rng, ALNUM + "_-", 20)
    slack = f"xoxb-{_rand(rng, string.digits, 12)}-{_rand(rng, string.digits, 13)}-{_rand(rng, ALNUM, 24)}"
    stripe = "sk_live_" + _rand(rng, ALNUM, 24)
    oai = "sk-proj-" + _rand(rng, ALNUM, 48)
    ant = "sk-ant-api03-" + _rand(rng, ALNUM + "_-", 93) + "AA"
    google = "AIza" + _rand(rng, ALNUM + "_-", 35)
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').decode().rstrip("=")
    claims = base64.urlsafe_b64encode(json.dumps({"sub": str(rng.randint(1, 10**9))}).encode()).decode().rstrip("=")
    jwt = f"{header}.{claims}.{_rand(rng, ALNUM + '_-', 43)}"
    db_pass = _rand(rng, ALNUM, 14) + "!9"
    app_secret = _rand(rng, ALNUM, 32)
    bearer = _rand(rng, ALNUM, 40)
    name = f"{rng.choice(FIRST)}.{rng.choice(LAST)}"
    email = f"{name}@{rng.choice(['acme-corp.io', 'example.com', 'mail.example.org', 'corp.internal.net'])}"
    phone = rng.choice([f"+1 {rng.randint(201, 989)}-{rng.randint(200, 999)}-{rng.randint(1000, 9999)}",
                        f"({rng.randint(201, 989)}) {rng.randint(200, 999)}-{rng.randint(1000, 9999)}",
                        f"+44 20 {rng.randint(7000, 7999)} {rng.randint(1000, 9999)}"])
    ssn = f"{rng.randint(100, 665):03d}-{rng.randint(10, 99):02d}-{rng.randint(1000, 9999):04d}"
    card = _luhn_complete(rng, rng.choice(["4", "51", "55", "2221", "37"]), 15 if False else 16)
    if rng.random() < 0.5:
        card = " ".join(card[i:i + 4] for i in range(0, 16, 4))
    iban = _iban(rng)
    ip = f"{rng.choice([10, 172, 192, 54, 35, 18])}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    key_body = "\n".join(_rand(rng, ALNUM + "+/", 64) for _ in range(5))
    private = f"-----BEGIN RSA PRIVATE KEY-----\n{key_body}\n-----END RSA PRIVATE KEY-----"
    return [
        ("aws_access_key", aws, f"AWS_ACCESS_KEY_ID={aws}"),
        ("aws_secret_key", aws_secret, f"aws_secret_access_key = {aws_secret}"),
        ("github_token", gh, f"export GITHUB_TOKEN={gh}" if rng.random() < 0.5 else f"using token {gh} for CI"),
        ("gitlab_token", gl, f"git remote set-url origin https://oauth2:{gl}@gitlab.com/g/p.git"),
        ("slack_token", slack, f'SLACK_BOT_TOKEN="{slack}"'),
        ("stripe_key", stripe, f"stripe.api_key = '{stripe}'"),
        ("openai_key", oai, f"OPENAI_API_KEY={oai}"),
        ("anthropic_key", ant, f"client = Anthropic(api_key=\"{ant}\")"),
        ("google_api_key", google, f"const key = '{google}';"),
        ("jwt", jwt, f"curl -H 'Cookie: session={jwt}' https://api.example.com"),
        ("url_credentials", db_pass, f"DATABASE_URL=postgres://app:{db_pass}@db.prod.internal:5432/app"),
        ("secret_assignment", app_secret, f"APP_SECRET_KEY={app_secret}"),
        ("generic_secret", bearer, f"Authorization: Bearer {bearer}"),
        ("email", email, f"Reported by {email} yesterday."),
        ("phone", phone, f"Call the customer at {phone}."),
        ("us_ssn", ssn, f"SSN on file: {ssn}."),
        ("credit_card", card, f"charged card {card} twice"),
        ("iban", iban, f"Refund to IBAN {iban}."),
        ("ip_address", ip, f"connection from {ip} refused"),
        ("private_key", private, private),
    ]


B64 = string.ascii_letters + string.digits + "+/"
STREETS = ["Maple", "Oak", "Cedar", "Elm", "Pine", "Lake", "Hill", "Park"]
CITIES = [("Springfield", "IL"), ("Portland", "OR"), ("Austin", "TX"), ("Denver", "CO")]
DE_STREETS = ["Haupt", "Bahnhof", "Garten", "Schiller", "Goethe"]
DE_CITIES = [("10115", "Berlin"), ("80331", "München"), ("50667", "Köln")]
FR_STREETS = ["de la Paix", "Victor Hugo", "des Lilas", "du Moulin"]


def _b64(rng: random.Random, n: int) -> str:
    return base64.b64encode(rng.randbytes(n)).decode()


def _cpf(rng: random.Random) -> str:
    def check(digits: str) -> str:
        total = sum(int(d) * w for d, w in zip(digits, range(len(digits) + 1, 1, -1), strict=True))
        return str(total * 10 % 11 % 10)

    base = str(rng.randint(1, 9)) + _rand(rng, string.digits, 8)
    full = base + check(base)
    full += check(full)
    return f"{full[:3]}.{full[3:6]}.{full[6:9]}-{full[9:]}"


def _sin(rng: random.Random) -> str:
    from stdnum import luhn

    base = str(rng.randint(1, 7)) + _rand(rng, string.digits, 7)
    full = base + luhn.calc_check_digit(base)
    return f"{full[:3]} {full[3:6]} {full[6:]}"


def _aadhaar(rng: random.Random) -> str:
    from stdnum import verhoeff

    base = str(rng.randint(2, 9)) + _rand(rng, string.digits, 10)
    full = base + verhoeff.calc_check_digit(base)
    return f"{full[:4]} {full[4:8]} {full[8:]}"


def coverage_classes(rng: random.Random, email: str) -> list[tuple[str, str, str]]:
    """Issue 10 section 2: what real pastes carry, as the files and outputs they come in."""
    first, last = rng.choice(FIRST).capitalize(), rng.choice(LAST).capitalize()
    person = f"{first} {last}"
    app_key = "base64:" + _b64(rng, 32)
    master = _rand(rng, "0123456789abcdef", 32)
    dd_key = _rand(rng, "0123456789abcdef", 40)
    docker = base64.b64encode(f"ci-{_rand(rng, string.ascii_lowercase, 5)}:{_rand(rng, ALNUM, 16)}".encode()).decode()
    netrc = _rand(rng, ALNUM, 20)
    curl_pass = _rand(rng, ALNUM, 10) + "#" + _rand(rng, string.digits, 2)
    client_key = _b64(rng, 90)
    account_key = _b64(rng, 64)
    django = "django-insecure-" + _rand(rng, string.ascii_lowercase + string.digits + "!@#$%^&*(-_=+)", 50)
    session = "IQoJb3JpZ2luX2Vj" + _rand(rng, ALNUM + "/+", 420)
    sendgrid = f"SG.{_rand(rng, ALNUM + '_-', 22)}.{_rand(rng, ALNUM + '_-', 43)}"
    mailgun = "key-" + _rand(rng, string.ascii_lowercase + string.digits, 32)
    sid = "AC" + _rand(rng, "0123456789abcdef", 32)
    twilio = _rand(rng, "0123456789abcdef", 32)
    discord = f"discord.com/api/webhooks/{rng.randint(10**17, 10**18)}/{_rand(rng, ALNUM + '_-', 68)}"
    sig = _rand(rng, ALNUM + "_-", 43)
    whsec = "whsec_" + _rand(rng, ALNUM, 32)
    pair_id = "AKIA" + _rand(rng, string.ascii_uppercase + "234567", 16)
    pair_secret = _rand(rng, ALNUM + "/+", 40)
    uk = f"07700 9{rng.randint(10000, 99999)}"
    de = f"+49 15{rng.randint(1, 9)} {rng.randint(1000000, 99999999)}"
    fr = f"+33 6 {rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)} {rng.randint(10, 99)}"
    br = f"(11) 9{rng.randint(1000, 9999)}-{rng.randint(1000, 9999)}"
    ssn = f"{rng.randint(100, 665):03d}{rng.randint(10, 99):02d}{rng.randint(1000, 9999):04d}"
    itin = f"9{rng.randint(0, 99):02d}-{rng.choice([70, 75, 80, 88, 92])}-{rng.randint(1000, 9999)}"
    dob = f"{rng.randint(1, 12):02d}/{rng.randint(1, 28):02d}/{rng.randint(1940, 2005)}"
    passport = rng.choice("ACEKLX") + str(rng.randint(10**7, 10**8 - 1))
    cpf, sin, aadhaar = _cpf(rng), _sin(rng), _aadhaar(rng)
    city, state = rng.choice(CITIES)
    us_addr = f"{rng.randint(10, 9999)} {rng.choice(STREETS)} Street, {city}, {state} {rng.randint(10000, 99999)}"
    zip_de, city_de = rng.choice(DE_CITIES)
    de_addr = f"{rng.choice(DE_STREETS)}straße {rng.randint(1, 150)}, {zip_de} {city_de}"
    fr_addr = f"{rng.randint(1, 120)} rue {rng.choice(FR_STREETS)}, 750{rng.randint(10, 20)} Paris"
    return [
        ("secret_assignment", app_key, f"APP_NAME=Laravel\nAPP_ENV=production\nAPP_KEY={app_key}"),
        ("secret_assignment", master, f"RAILS_MASTER_KEY={master}"),
        ("secret_assignment", dd_key, f"export DD_APP_KEY={dd_key}"),
        ("secret_assignment", docker, f'{{"auths": {{"registry.corp.example": {{"auth": "{docker}"}}}}}}'),
        ("secret_assignment", netrc, f"machine api.github.com\n  login ci-bot\n  password {netrc}"),
        ("secret_assignment", curl_pass, f"$ curl -u admin:{curl_pass} https://jenkins.corp.example/api/json"),
        ("secret_assignment", client_key, f"users:\n- name: admin\n  user:\n    client-key-data: {client_key}"),
        ("secret_assignment", account_key, f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={account_key};"
                                           "EndpointSuffix=core.windows.net"),
        ("secret_assignment", django, f"SECRET_KEY = '{django}'"),
        ("secret_assignment", session, f"aws_session_token = {session}"),
        ("vendor_token", sendgrid, f'sg = SendGridAPIClient("{sendgrid}")'),
        ("vendor_token", mailgun, f'auth=("api", "{mailgun}")'),
        ("vendor_token", twilio, f'client = Client("{sid}", "{twilio}")'),
        ("vendor_token", discord, f"webhook_url: https://{discord}"),
        ("vendor_token", sig, "POST https://prod-27.westus.logic.azure.com:443/workflows/abc/triggers/manual/paths/"
                              f"invoke?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={sig}"),
        ("stripe_key", whsec, f"> Ready! Your webhook signing secret is {whsec} (^C to quit)"),
        ("aws_secret_key", pair_secret, f"User name,Access key ID,Secret access key\ndeploy,{pair_id},{pair_secret}"),
        ("aws_access_key", pair_id, ""),   # planted on the line above
        ("phone", uk, f"Ticket #4471: customer rang from {uk} about the refund"),
        ("phone", de, f"Mit freundlichen Grüßen\nMobil: {de}"),
        ("phone", fr, f"BEGIN:VCARD\nFN:{person}\nTEL;TYPE=CELL:{fr}\nEND:VCARD"),
        ("phone", br, f"Cliente pediu retorno no celular {br}"),
        ("us_ssn", ssn, f"Applicant SSN: {ssn} (verified)"),
        ("us_ssn", itin, f"W-7 approved, ITIN {itin}"),
        ("date_of_birth", dob, f"Patient DOB: {dob}; allergies: none"),
        ("passport", passport, f"Passport No: {passport}, nationality: US"),
        ("national_id", cpf, f"Cliente: CPF {cpf}"),
        ("national_id", sin, f"Employee SIN: {sin}"),
        ("national_id", aadhaar, f"KYC: Aadhaar {aadhaar} verified"),
        ("person_name", person, f"commit {_rand(rng, '0123456789abcdef', 40)}\nAuthor: {person} <{email}>"),
        ("person_name", person, f'{{"customer": {{"full_name": "{person}", "plan": "pro"}}}}'),
        ("street_address", us_addr, f"Ship to: {us_addr}"),
        ("street_address", de_addr, f"Lieferadresse: {de_addr}"),
        ("street_address", fr_addr, f"Adresse : {fr_addr}"),
    ]


def hard_negative_classes(rng: random.Random) -> list[str]:
    """Every false-positive class issue 10 lists, as real pastes show them: none may be touched."""
    return [
        f'[assembly: AssemblyVersion("{rng.randint(1, 12)}.0.0.{rng.randint(1, 9)}")]',
        f'"version": "4.{rng.randint(0, 20)}.0.{rng.randint(1, 9)}"',
        f'"max_tokens": {rng.choice([4096, 32000, 64000, 128000])}',
        f"JWT_REFRESH_TOKEN_TTL_MS = {rng.choice([2592000000, 604800000, 86400000])}",
        f"secretName: web-tls-{_rand(rng, string.ascii_lowercase + string.digits, 5)}",
        f"arn:aws:secretsmanager:us-east-1:{rng.randint(10**11, 10**12 - 1)}:secret:prod/db-{_rand(rng, ALNUM, 6)}",
        f"SecretId=prod/api/stripe-{_rand(rng, ALNUM, 6)}",
        f"npm_package_version={rng.randint(1, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}",
        f"Order #{rng.randint(10**9, 10**10 - 1)} shipped, tracking number 1Z 999 AA1 {rng.randint(10**9, 10**10 - 1)}",
        "ANTHROPIC_API_KEY=sk-ant-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "GITHUB_TOKEN=ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "SLACK_BOT_TOKEN=xoxb-your-bot-token",
        "AWS_ACCESS_KEY_ID=AKIAXXXXXXXXXXXXXXXX",
        f"ts={rng.randint(1700000000000, 1800000000000)} pid={rng.randint(1000, 99999)}",
    ]


def hard_negatives(rng: random.Random) -> list[str]:
    sha = hashlib.sha1(str(rng.random()).encode()).hexdigest()
    sha256 = hashlib.sha256(str(rng.random()).encode()).hexdigest()
    integrity = "sha512-" + base64.b64encode(hashlib.sha512(str(rng.random()).encode()).digest()).decode()
    image = "data:image/png;base64," + base64.b64encode(rng.randbytes(300)).decode()
    return [
        sha, sha[:7], sha256, str(uuid.UUID(int=rng.getrandbits(128))), integrity, image,
        f"{rng.randint(0, 20)}.{rng.randint(0, 30)}.{rng.randint(0, 99)}",
        f"v{rng.randint(1, 9)}.{rng.randint(0, 9)}.0",
        f"2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:14:07.123Z",
        f"/home/dev/src/{rng.choice(['api', 'web', 'core'])}/internal/handlers/user_session_store.go",
        rng.choice(["getUserAccessTokenForRequest", "MAX_PASSWORD_LENGTH", "api_key_header_name",
                    "secretManagerClient"]),
        "[[EMAIL_1a2b3c4d]]", "git@github.com:acme/api.git", "lodash@4.17.21", "127.0.0.1:8080",
        f"order-{rng.randint(10**11, 10**12)}", "PASSWORD=${DB_PASSWORD}", "token: process.env.GITHUB_TOKEN",
    ]


def _claude_code(rng: random.Random, lines: list[str], negatives: list[str]) -> dict[str, Any]:
    env_file = "\n".join(lines[: len(lines) // 2])
    log = "\n".join(lines[len(lines) // 2:])
    noise = "\n".join(negatives)
    return {
        "model": "claude-sonnet-4-5", "max_tokens": 32000, "stream": True,
        "system": [{"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."}],
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "<system-reminder>\nContext for the repo:\n" + noise + "\n</system-reminder>"},
                {"type": "text", "text": "Why does the deploy fail? Here is my .env and the log."}]},
            {"role": "assistant", "content": [
                {"type": "thinking", "thinking": "Let me read the files.", "signature": "EqQBCkYIARgCIkA"},
                {"type": "tool_use", "id": "toolu_01", "name": "Read", "input": {"file_path": "/repo/.env"}}]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01", "content": env_file},
                {"type": "text", "text": "And the log:\n" + log}]},
        ],
        "tools": [{"name": "Read", "description": "Read a file", "input_schema": {"type": "object"}}],
        "metadata": {"user_id": "user_" + hashlib.sha256(b"u").hexdigest()},
    }


def _codex(rng: random.Random, lines: list[str], negatives: list[str]) -> dict[str, Any]:
    return {
        "model": "gpt-5-codex", "instructions": "You are Codex.", "stream": True,
        "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "\n".join(negatives)}]},
            {"type": "function_call", "call_id": "call_1", "name": "shell",
             "arguments": json.dumps({"command": ["cat", ".env"]})},
            {"type": "function_call_output", "call_id": "call_1", "output": "\n".join(lines[::2])},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "\n".join(lines[1::2])}]},
        ],
        "tools": [{"type": "function", "name": "shell", "parameters": {"type": "object"}}],
    }


def generate(count: int = 200, seed: int = 7) -> list[Sample]:
    rng = random.Random(seed)
    samples = []
    for i in range(count):
        planted = secrets_and_pii(rng)
        email = next(v for d, v, _ in planted if d == "email")
        planted += coverage_classes(rng, email)
        rng.shuffle(planted)
        lines = [line for _, _, line in planted if line]
        negatives = hard_negatives(rng) + hard_negative_classes(rng)
        body = (_claude_code if i % 2 == 0 else _codex)(rng, lines, negatives)
        samples.append(Sample(body, [(d, v) for d, v, _ in planted], negatives))
    return samples


def realistic_claude_code_request(size: int, seed: int = 1) -> dict[str, Any]:
    """A Claude-Code-shaped request of about ``size`` bytes: a system prompt, tools, and turns whose tool
    results are real source files (aiohttp's, which every install has) with a few planted secrets."""
    import aiohttp

    rng = random.Random(seed)
    files = sorted(Path(aiohttp.__file__).parent.glob("*.py"))
    messages: list[dict[str, Any]] = []
    total = 0
    for i, path in enumerate(files * 4):
        if total >= size:
            break
        code = path.read_text(encoding="utf-8", errors="replace")
        planted = secrets_and_pii(rng)
        rng.shuffle(planted)
        content = code + "\n# .env excerpt\n" + "\n".join(line for _, _, line in planted[:2])
        messages.append({"role": "assistant", "content": [
            {"type": "tool_use", "id": f"toolu_{i}", "name": "Read", "input": {"file_path": str(path.name)}}]})
        messages.append({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": f"toolu_{i}", "content": content},
            {"type": "text", "text": "<system-reminder>Keep going; summarise what you found.</system-reminder>"}]})
        total += len(content) + 300
    return {"model": "claude-sonnet-4-5", "max_tokens": 32000, "stream": True,
            "system": [{"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."}],
            "tools": [{"name": "Read", "description": "Read a file", "input_schema": {"type": "object"}}],
            "messages": messages}


def claude_code_request(size: int, seed: int = 1) -> dict[str, Any]:
    """A dense stress request of about ``size`` bytes: every line has a UUID and numbers, every turn
    four planted values (far denser than real traffic)."""
    rng = random.Random(seed)
    messages: list[dict[str, Any]] = []
    total = 0
    while total < size:
        planted = secrets_and_pii(rng)
        code = "\n".join(f"    {rng.choice(['return', 'let', 'const', 'if'])} {_rand(rng, string.ascii_lowercase, 8)}"
                         f"({rng.randint(0, 99)}) // {uuid.UUID(int=rng.getrandbits(128))}" for _ in range(60))
        text = code + "\n" + "\n".join(line for _, _, line in planted[:4])
        messages.append({"role": "user", "content": [{"type": "tool_result", "tool_use_id": f"t{len(messages)}",
                                                      "content": text}]})
        messages.append({"role": "assistant", "content": [{"type": "text", "text": "Looking at it. " * 20}]})
        total += len(text) + 400
    return {"model": "claude-sonnet-4-5", "max_tokens": 32000, "messages": messages}
