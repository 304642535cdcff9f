"""requirements.toml: each managed rule, and the shape of a violation."""

import pytest

from policyproxy.errors import ConfigErrors, RequirementViolation
from policyproxy.reasons import Mode, RedactionAction, Source, Verdict
from tests.helpers import connect, policy, settings


def violations(tmp_path, profile, requirements):
    with pytest.raises(ConfigErrors) as info:
        settings(tmp_path, profile, requirements)
    return info.value.errors


FULL = """
[permissions.ws.network]
mode = "full"
[permissions.ws.network.domains]
"api.github.com" = "allow"
"""


def test_mode_above_the_managed_maximum_is_refused(tmp_path):
    (error,) = violations(tmp_path, FULL, '[network]\nmode = "limited"\n')
    assert isinstance(error, RequirementViolation)
    assert (error.field, error.candidate, error.allowed) == ("network.mode", '"full"', "limited or more restrictive")
    assert str(error) == (f'{tmp_path}/config.toml:3: network.mode: "full" is not allowed by requirements.toml '
                          "(limited or more restrictive) [at permissions.ws.network.mode]")


def test_mode_within_the_maximum_is_kept(tmp_path):
    s = settings(tmp_path, FULL.replace('"full"', '"limited"'), '[network]\nmode = "limited"\n')
    assert s.network.mode is Mode.LIMITED


def test_managed_false_forces_false_and_refuses_true(tmp_path):
    text = FULL.replace('mode = "full"', 'mode = "full"\nallow_local_binding = true')
    (error,) = violations(tmp_path, text, "[network]\nallow_local_binding = false\n")
    assert error.field == "network.allow_local_binding" and error.allowed == "false (disabled by managed config)"


def test_denied_domains_are_always_denied_and_attributed_to_requirements(tmp_path):
    text = FULL.replace('"api.github.com" = "allow"', '"*" = "allow"')
    p = policy(tmp_path, text, requirements='[network]\ndenied_domains = ["pastebin.com"]\n')
    decision = connect(p, "pastebin.com")
    assert (decision.verdict, decision.source) == (Verdict.DENY, Source.REQUIREMENTS)


def test_a_profile_cannot_allow_a_managed_denied_domain(tmp_path):
    text = FULL.replace('"api.github.com" = "allow"', '"pastebin.com" = "allow"')
    (error,) = violations(tmp_path, text, '[network]\ndenied_domains = ["pastebin.com"]\n')
    assert error.field == 'network.domains."pastebin.com"'


def test_allowed_domains_unset_expansion_means_subset(tmp_path):
    reqs = '[network]\nallowed_domains = ["**.github.com"]\n'
    settings(tmp_path, FULL, reqs)  # api.github.com falls inside **.github.com
    text = FULL.replace('"api.github.com" = "allow"', '"api.github.com" = "allow"\n"evil.com" = "allow"')
    (error,) = violations(tmp_path, text, reqs)
    assert error.candidate == '"evil.com"'
    assert "each allow entry must fall inside allowed_domains: **.github.com" in error.allowed


def test_global_allow_is_not_a_subset(tmp_path):
    text = FULL.replace('"api.github.com" = "allow"', '"*" = "allow"')
    (error,) = violations(tmp_path, text, '[network]\nallowed_domains = ["**.github.com"]\n')
    assert error.candidate == '"*"'


def test_allowlist_expansion_true_requires_a_superset(tmp_path):
    reqs = '[network]\nallowed_domains = ["api.github.com", "pypi.org"]\nallowlist_expansion = true\n'
    (error,) = violations(tmp_path, FULL, reqs)
    assert error.allowed == "must include every entry of allowed_domains" and '"pypi.org"' in error.candidate
    text = FULL + '"pypi.org" = "allow"\n"extra.org" = "allow"\n'
    settings(tmp_path, text, reqs)


def test_allowlist_expansion_false_requires_equality(tmp_path):
    reqs = '[network]\nallowed_domains = ["api.github.com"]\nallowlist_expansion = false\n'
    settings(tmp_path, FULL, reqs)
    (error,) = violations(tmp_path, FULL + '"extra.org" = "allow"\n', reqs)
    assert error.candidate == '"extra.org"'


def test_managed_allowed_domains_only_replaces_profile_entries(tmp_path):
    reqs = '[network]\nallowed_domains = ["pypi.org"]\nmanaged_allowed_domains_only = true\n'
    p = policy(tmp_path, FULL, requirements=reqs)
    assert connect(p, "api.github.com").verdict is Verdict.DENY
    allowed = connect(p, "pypi.org")
    assert (allowed.verdict, allowed.source) == (Verdict.ALLOW, Source.REQUIREMENTS)


def test_global_pattern_is_rejected_in_requirements(tmp_path):
    (error,) = violations(tmp_path, FULL, '[network]\nallowed_domains = ["*"]\n')
    assert str(error).endswith('network.allowed_domains[0] must not be the global "*" pattern in requirements.toml')


MANAGED_HOOK = """
[network.mitm.hooks.audit_github]
host = "api.github.com"
methods = ["DELETE"]
path_prefixes = ["/"]
action = ["strip_auth"]
[network.mitm.actions.strip_auth]
strip_request_headers = ["authorization"]
"""


def test_managed_hooks_come_first(tmp_path):
    text = FULL + """
    [permissions.ws.network.mitm.hooks.mine]
    host = "api.github.com"
    methods = ["GET", "DELETE"]
    path_prefixes = ["/"]
    action = ["strip_auth"]
    """.replace("    ", "")
    s = settings(tmp_path, text, MANAGED_HOOK)
    assert [(h.name, h.source) for h in s.network.hooks] == [("audit_github", Source.REQUIREMENTS),
                                                             ("mine", Source.PROFILE)]


def test_a_profile_cannot_redefine_a_managed_hook_or_action(tmp_path):
    text = FULL + """
    [permissions.ws.network.mitm.hooks.audit_github]
    host = "api.github.com"
    methods = ["GET"]
    path_prefixes = ["/"]
    action = ["strip_auth"]
    [permissions.ws.network.mitm.actions.strip_auth]
    strip_request_headers = ["cookie"]
    """.replace("    ", "")
    errors = violations(tmp_path, text, MANAGED_HOOK)
    assert {e.field for e in errors} == {"network.mitm.hooks.audit_github", "network.mitm.actions.strip_auth"}


def test_redaction_required_adds_redaction_and_refuses_disabling(tmp_path):
    s = settings(tmp_path, FULL, "[redaction]\nrequired = true\n")
    assert s.network.redaction is not None and s.network.redaction.enabled
    text = FULL + "[permissions.ws.network.redaction]\nenabled = false\n"
    (error,) = violations(tmp_path, text, "[redaction]\nrequired = true\n")
    assert error.field == "redaction.enabled"


def test_detector_floors_raise_unset_and_refuse_weaker(tmp_path):
    reqs = '[redaction]\nrequired = true\n[redaction.detectors]\nprivate_key = "block"\n'
    s = settings(tmp_path, FULL, reqs)
    assert dict(s.network.redaction.detectors)["private_key"] is RedactionAction.BLOCK
    text = FULL + '[permissions.ws.network.redaction.detectors]\nprivate_key = "mask"\n'
    (error,) = violations(tmp_path, text, reqs)
    assert (error.field, error.candidate, error.allowed) == ("redaction.detectors.private_key", '"mask"',
                                                             "block or stricter")


def test_managed_otel_cannot_be_redirected(tmp_path):
    reqs = '[otel]\nexporter = "otlp-grpc"\nendpoint = "http://collector.internal:4317"\n'
    s = settings(tmp_path, FULL, reqs)
    assert (s.otel.exporter, s.otel.endpoint, s.otel.source) == ("otlp-grpc", "http://collector.internal:4317",
                                                                Source.REQUIREMENTS)
    text = FULL + '[otel]\nexporter = "otlp-http"\nendpoint = "http://elsewhere:4318"\n'
    (error,) = violations(tmp_path, text, reqs)
    assert error.field == "otel.exporter"
    (error,) = violations(tmp_path, FULL + '[otel]\nexporter = "none"\n', reqs)
    assert error.field == "otel.exporter"


def test_unknown_requirements_key_is_an_error(tmp_path):
    with pytest.raises(ConfigErrors) as info:
        settings(tmp_path, FULL, "[network]\nmodee = 'limited'\n")
    assert "requirements.toml:2: network.modee is not a known key" in str(info.value)


def test_local_denials_are_attributed_to_requirements_only_when_it_forced_them(tmp_path):
    text = FULL.replace('"api.github.com" = "allow"', '"*" = "allow"')
    forced = policy(tmp_path, text, requirements="[network]\nallow_local_binding = false\n")
    assert connect(forced, "127.0.0.1").source is Source.REQUIREMENTS
    unrelated = policy(tmp_path, text, requirements='[network]\ndenied_domains = ["x.org"]\n')
    assert connect(unrelated, "127.0.0.1").source is Source.DEFAULT
