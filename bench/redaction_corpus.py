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
        rng.shuffle(planted)
        lines = [line for _, _, line in planted]
        negatives = hard_negatives(rng)
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
