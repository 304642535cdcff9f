"""Issue 9.10: every place an operator writes a host refuses a URL, a port, a path, user info or a query.

Before, ``"https://pastebin.com" = "deny"`` loaded as a deny of the host ``https`` and
``host = "api.x:8443"`` silently lost its port: the rule did nothing. Each case must be an error
naming the file, the line, the key and the host that was probably meant.
"""

import pytest

from tests.core.test_config_load import only_error

WRITTEN = [  # (as written, what the message suggests)
    ("https://pastebin.com", "pastebin.com"),
    ("http://pastebin.com/", "pastebin.com"),
    ("https:/pastebin.com", "pastebin.com"),
    ("pastebin.com:443", "pastebin.com"),
    ("pastebin.com/paste", "pastebin.com"),
    ("me@pastebin.com", "pastebin.com"),
    ("pastebin.com?x=1", "pastebin.com"),
    ("HTTPS://PASTEBIN.COM:8443/x?y#z", "pastebin.com"),
    ("[::1]:8443", "::1"),
]


def _located(message, tmp_path, line, key):
    assert message.startswith(f"{tmp_path}/config.toml:{line}: {key} "), message


@pytest.mark.parametrize(("text", "meant"), WRITTEN)
@pytest.mark.parametrize("verdict", ["allow", "deny"])
def test_domains_table(tmp_path, text, meant, verdict):
    message = only_error(tmp_path, f'[permissions.ws.network.domains]\n"ok.com" = "allow"\n"{text}" = "{verdict}"\n')
    _located(message, tmp_path, 3, f'permissions.ws.network.domains."{text}"')
    assert f'did you mean "{meant}"?' in message


@pytest.mark.parametrize(("text", "meant"), [("*.pastebin.com:443", "*.pastebin.com"),
                                             ("https://**.pastebin.com", "**.pastebin.com")])
def test_wildcard_prefix_is_kept_in_the_suggestion(tmp_path, text, meant):
    message = only_error(tmp_path, f'[permissions.ws.network.domains]\n"{text}" = "deny"\n')
    assert f'did you mean "{meant}"?' in message


@pytest.mark.parametrize(("text", "meant"), WRITTEN)
@pytest.mark.parametrize("key", ["allowed_domains", "denied_domains"])
def test_codex_domain_lists(tmp_path, key, text, meant):
    message = only_error(tmp_path, f'[permissions.ws.network]\n{key} = ["ok.com", "{text}"]\n')
    _located(message, tmp_path, 2, f"permissions.ws.network.{key}[1]")
    assert f'did you mean "{meant}"?' in message


HOOK = """[permissions.ws.network.domains]
"api.x.com" = "allow"
[permissions.ws.network.mitm.hooks.h]
host = "{host}"
methods = ["GET"]
path_prefixes = ["/"]
action = ["a"]
[permissions.ws.network.mitm.actions.a]
strip_request_headers = ["cookie"]
"""


@pytest.mark.parametrize(("text", "meant"), [(t.replace("pastebin.com", "api.x.com").replace("PASTEBIN.COM", "API.X.COM"), m.replace("pastebin.com", "api.x.com"))
                                             for t, m in WRITTEN])
def test_hook_host(tmp_path, text, meant):
    message = only_error(tmp_path, HOOK.format(host=text))
    _located(message, tmp_path, 4, "permissions.ws.network.mitm.hooks.h.host")
    assert f'did you mean "{meant}"?' in message


@pytest.mark.parametrize(("endpoint", "meant"), [
    ("https://api.openai.com/v1/responses", "api.openai.com/v1/responses"),
    ("https:/api.openai.com/v1/responses", "api.openai.com/v1/responses"),
    ("api.openai.com:443/v1/responses", "api.openai.com/v1/responses"),
    ("key@api.openai.com/v1/responses", "api.openai.com/v1/responses"),
])
def test_redaction_endpoints(tmp_path, endpoint, meant):
    text = f'[permissions.ws.network.redaction]\nendpoints = ["api.anthropic.com/v1/messages", "{endpoint}"]\n'
    message = only_error(tmp_path, text)
    _located(message, tmp_path, 2, "permissions.ws.network.redaction.endpoints[1]")
    assert f'did you mean "{meant}"?' in message


@pytest.mark.parametrize("endpoint", ["https://", "api.openai.com/v1/x?y=1", "*.openai.com/v1"])
def test_redaction_endpoints_without_a_suggestion(tmp_path, endpoint):
    text = f'[permissions.ws.network.redaction]\nendpoints = ["{endpoint}"]\n'
    _located(only_error(tmp_path, text), tmp_path, 2, "permissions.ws.network.redaction.endpoints[0]")


REQUIREMENTS_LISTS = {
    "allowed_domains": '[network]\nallowed_domains = ["ok.com", "{text}"]\n',
    "denied_domains": '[network]\ndenied_domains = ["ok.com", "{text}"]\n',
}


@pytest.mark.parametrize(("text", "meant"), WRITTEN)
@pytest.mark.parametrize("key", REQUIREMENTS_LISTS)
def test_requirements_domain_lists(tmp_path, key, text, meant):
    message = only_error(tmp_path, '[permissions.ws.network.domains]\n"ok.com" = "allow"\n',
                         requirements=REQUIREMENTS_LISTS[key].format(text=text))
    assert message.startswith(f"{tmp_path}/requirements.toml:2: network.{key}[1] "), message
    assert f'did you mean "{meant}"?' in message


def test_requirements_redaction_endpoints(tmp_path):
    message = only_error(tmp_path, '[permissions.ws.network.domains]\n"ok.com" = "allow"\n',
                         requirements='[redaction]\nendpoints = ["https://llm.corp/v1/chat"]\n')
    assert message.startswith(f"{tmp_path}/requirements.toml:2: redaction.endpoints[0] "), message
    assert 'did you mean "llm.corp/v1/chat"?' in message


def test_requirements_hook_host(tmp_path):
    requirements = """[network.mitm.hooks.h]
host = "https://api.x.com"
methods = ["GET"]
path_prefixes = ["/"]
action = ["a"]
[network.mitm.actions.a]
strip_request_headers = ["cookie"]
"""
    message = only_error(tmp_path, '[permissions.ws.network.domains]\n"api.x.com" = "allow"\n',
                         requirements=requirements)
    assert message.startswith(f"{tmp_path}/requirements.toml:2: network.mitm.hooks.h.host "), message
    assert 'did you mean "api.x.com"?' in message


@pytest.mark.parametrize("text", ["api.x.com", "API.X.COM.", "*.x.com", "**.x.com", "10.0.0.5", "::1", "[::1]",
                                  "bücher.de"])
def test_bare_hosts_still_load(tmp_path, text):
    from tests.helpers import settings

    assert settings(tmp_path, f'[permissions.ws.network.domains]\n"{text}" = "deny"\n').network.domains
