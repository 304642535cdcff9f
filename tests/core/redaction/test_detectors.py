"""Detectors: what each finds, and the hard negatives none may touch."""

import pytest

from policyproxy.config.schema import RedactionSpec
from policyproxy.reasons import RedactionAction
from policyproxy.redaction.engine import Redactor
from policyproxy.redaction.placeholders import Vaults


@pytest.fixture(scope="module")
def redactor():
    return Redactor(RedactionSpec())


def found(redactor, text):
    return [(s.detector, text[s.start:s.end]) for s in redactor.find(text)]


POSITIVES = [
    ("private_key", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU=\n-----END OPENSSH PRIVATE KEY-----",
     None),
    ("aws_access_key", "key AKIAIOSFODNN7EXAMPLE here", "AKIAIOSFODNN7EXAMPLE"),
    ("aws_secret_key", "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
     "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    ("github_token", "ghp_16C7e42F292c6912E7710c838347Ae178B4a", None),
    ("github_token", "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRS", None),
    ("gitlab_token", "glpat-xJ9kLm2nPq4rSt6vWy8z", None),
    ("slack_token", "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", None),
    ("slack_token", "https://hooks.slack.com/services/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", None),
    ("stripe_key", "sk_live_4eC39HqLyjWDarjtT1zdp7dc", None),
    ("anthropic_key", "sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123456789ABCD-EFG", None),
    ("openai_key", "sk-proj-abc123DEF456ghi789JKL012mno345", None),
    ("google_api_key", "AIzaSyDaGmWKa4JsXZ-HjGw7ISLn_3namBGewQe", None),
    ("jwt", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U", None),
    ("url_credentials", "redis://default:Zx9pQ2mLk7@cache.internal:6379", "Zx9pQ2mLk7"),
    ("secret_assignment", "DB_PASSWORD=Tr0ub4dor&3xyz", "Tr0ub4dor&3xyz"),
    ("secret_assignment", '"client_secret": "9f8e7d6c5b4a39281706"', "9f8e7d6c5b4a39281706"),
    ("generic_secret", "Authorization: Bearer 7fK2pQ9xL4nT7wZ1pY6sB3cF5hJ0dG8a", "7fK2pQ9xL4nT7wZ1pY6sB3cF5hJ0dG8a"),
    ("email", "write to jane.doe+tag@example.co.uk today", "jane.doe+tag@example.co.uk"),
    ("phone", "call +44 20 7946 0958.", "+44 20 7946 0958"),
    ("phone", "call (415) 555-0132 now", "(415) 555-0132"),
    ("us_ssn", "SSN 078-05-1120.", "078-05-1120"),
    ("credit_card", "card 4111-1111-1111-1111", "4111-1111-1111-1111"),
    ("credit_card", "amex 378282246310005", "378282246310005"),
    ("iban", "IBAN GB82 WEST 1234 5698 7654 32", "GB82 WEST 1234 5698 7654 32"),
    ("ip_address", "host 203.0.113.77 answered", "203.0.113.77"),
    ("ip_address", "v6 2001:db8:85a3::8a2e:370:7334 up", "2001:db8:85a3::8a2e:370:7334"),
]


@pytest.mark.parametrize(("detector", "text", "value"), POSITIVES, ids=[f"{p[0]}-{i}" for i, p in enumerate(POSITIVES)])
def test_detector_finds(redactor, detector, text, value):
    assert (detector, value or text) in found(redactor, text)


HARD_NEGATIVES = [
    "commit 9fceb02d0ae598e95dc970b74767f19372d61af8 and 9fceb02",
    "id 123e4567-e89b-12d3-a456-426614174000",
    "sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    '"integrity": "sha512-9Qvm2nTf+6q0Hh0K5b4d0nWQkZ4pEzM4c7J0w1RXjdKp0X8b8cZ9oP3X/8xHcYw=="',
    "version 1.2.3, v10.4.15.2 and version 4.0.0.0 released 2024-01-15T10:30:45Z",
    "path /usr/local/lib/python3.11/site-packages/aiohttp/web.py:123",
    "getUserAccessTokenForRequest MAX_RETRY_COUNT api_key_header_name",
    "PASSWORD=${DB_PASSWORD} token: process.env.GITHUB_TOKEN api_key=<your-key>",
    "img data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==",
    "placeholder [[EMAIL_1a2b3c4d]] and [[GITHUB_TOKEN_deadbeef]]",
    "std::vector<int> a::b::c 12:30:45 00:1a:2b:3c:4d:5e",
    "localhost 127.0.0.1 0.0.0.0 ::1 port 8080 pid 12345 ts 1700000000000",
    "git@github.com:openai/codex.git",
    "npm install @types/node@20.11.5 lodash@4.17.21",
    "order 1234567890123456 timeout 300000 bytes 1048576",
]


@pytest.mark.parametrize("text", HARD_NEGATIVES)
def test_hard_negatives_are_untouched(redactor, text):
    assert found(redactor, text) == []


def test_custom_patterns_allowlists_and_actions():
    import hashlib

    spec = RedactionSpec(
        default_action=RedactionAction.REDACT,
        detectors=(("email", RedactionAction.OFF), ("aws_access_key", RedactionAction.MASK)),
        patterns=(__import__("policyproxy.config.schema", fromlist=["CustomPattern"]).CustomPattern(
            "employee_id", r"EMP-[0-9]{6}", RedactionAction.MASK),),
        allow_values=("AKIAIOSFODNN7EXAMPLE",),
        allow_sha256=(hashlib.sha256(b"ghp_16C7e42F292c6912E7710c838347Ae178B4a").hexdigest(),),
    )
    r = Redactor(spec)
    vault = Vaults(b"k" * 32).for_scope("x")
    text = ("me@x.io EMP-123456 AKIAIOSFODNN7EXAMPLE AKIAZ7PQ3LXRN4TW2KJD ghp_16C7e42F292c6912E7710c838347Ae178B4a "
            "sk_live_4eC39HqLyjWDarjtT1zdp7dc")
    out = r.redact_text(text, vault).text
    assert out.startswith("me@x.io [[EMPLOYEE_ID_")
    assert "AKIAIOSFODNN7EXAMPLE" in out and "[[AWS_ACCESS_KEY_" in out
    assert "ghp_16C7e42F292c6912E7710c838347Ae178B4a" in out
    assert out.endswith("[REDACTED:stripe_key]")


@pytest.mark.parametrize("token", [
    "hf_EctZyWEigYTTnZXnUndqFBBYGCEAnZ1BRB", "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",
    "dop_v1_4a1b2c3d4e5f60718293a4b5c6d7e8f90123456789abcdef0123456789abcdef", "npm_a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",
    "glc_eyJvIjoiNzQ0NTg3IiwibiI6InN0YWNrLTEyMzQ1LWhtLXJlYWQtZXhhbXBsZSIsImsiOiJhYmMxMjMifQ==",
])
def test_vendor_tokens_are_found_without_a_secret_named_key(redactor, token):
    assert found(redactor, f"value {token} here") == [("vendor_token", token)]


@pytest.mark.parametrize("text", ["npm_config_registry npm_package_json", "hf_hub_download(repo_id)",
                                  "t1.start() and pat.match(x)"])
def test_vendor_prefixes_in_ordinary_code_are_not_tokens(redactor, text):
    assert found(redactor, text) == []


def test_every_detector_name_has_a_detector_and_a_readme_row():
    """The vocabulary is closed: each DetectorName is built, each built detector is named by it, and the
    README's detector table lists exactly these names."""
    import re
    from pathlib import Path

    from policyproxy.reasons import DetectorName
    from policyproxy.redaction.detectors import builtin_detectors

    built = {d.name for d in builtin_detectors()}
    assert built == {d.value for d in DetectorName}
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    table = readme.split("### Detectors", 1)[1].split("\n\n`python bench", 1)[0]
    rows = set(re.findall(r"^\| `([a-z_0-9]+)` \|", table, re.M))
    assert rows == built


def test_config_names_detectors_by_the_enum_and_does_not_import_redaction(tmp_path):
    """config validates detector names from reasons.DetectorName; no config module imports redaction."""
    import ast
    from pathlib import Path

    from policyproxy.config import load_settings
    from policyproxy.errors import ConfigErrors
    from policyproxy.reasons import DetectorName

    package = Path(__file__).resolve().parents[3] / "policyproxy" / "config"
    for module in package.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert not node.module.startswith("policyproxy.redaction"), module.name
    config = tmp_path / "c.toml"
    config.write_text('[permissions.p.network.redaction.detectors]\nperson_name = "off"\nnational_id = "block"\n')
    spec = load_settings(config, env={"POLICYPROXY_HOME": str(tmp_path)}).network.redaction
    assert dict(spec.detectors) == {DetectorName.PERSON_NAME: RedactionAction.OFF,
                                    DetectorName.NATIONAL_ID: RedactionAction.BLOCK}
    assert all(type(name) is DetectorName for name, _ in spec.detectors)
    config.write_text('[permissions.p.network.redaction]\nphone_regions = ["GB", "XX"]\n')
    with pytest.raises(ConfigErrors, match=r"redaction.phone_regions\[1\] is not a region"):
        load_settings(config, env={"POLICYPROXY_HOME": str(tmp_path)})


def test_rules_compile_actions_and_drop_off_detectors():
    from policyproxy.redaction.rules import RedactionRules

    rules = RedactionRules.compile(RedactionSpec(detectors=(("email", RedactionAction.OFF),
                                                            ("person_name", RedactionAction.BLOCK))))
    assert "email" not in rules.actions and rules.actions["person_name"] is RedactionAction.BLOCK
    assert all(d.name != "email" for d in rules.detectors)
    text = "mail jane@x.io, from Jane Doe <jane@x.io>"
    assert [(s.detector, text[s.start:s.end]) for s in rules.find(text)] == [("person_name", "Jane Doe")]


@pytest.mark.parametrize("text", ["ssn 123-45-6789", "my id is 123-45-6789", "SSN: 078-05-1120"])
def test_the_ssn_shape_is_never_a_phone_even_with_us_ssn_off(text):
    from policyproxy.config.schema import RedactionSpec
    from policyproxy.reasons import RedactionAction
    from policyproxy.redaction.engine import Redactor

    lax = Redactor(RedactionSpec(detectors=(("us_ssn", RedactionAction.OFF),)))
    assert [span.detector for span in lax.find(text)] == []
