"""Vendor token formats with no key around them (the formats gitleaks' rule set lists, written as
prefix- or context-gated rules): each starts with a literal found in the one Aho-Corasick pass, or
is looked for only near a word that must be there (``twilio``, ``discord``, ``vault``), so a rule costs
nothing on text that does not mention its vendor.
"""

from __future__ import annotations

import re

from policyproxy.reasons import DetectorName as D
from policyproxy.redaction.detectors.base import Detector, entropy, looks_like_reference, random_letters

# Prefixes distinctive enough to need no secret-named key; what follows is random (checked by _vendor).
VENDOR_PREFIXES = (
    "hf_", "api_org_", "pplx-", "pscale_pw_", "pscale_tkn_", "pscale_oauth_", "glc_", "glsa_", "sntrys_",
    "sntryu_", "dop_v1_", "doo_v1_", "dor_v1_", "shpat_", "shpss_", "shpca_", "shppa_", "pypi-AgE",
    "dckr_pat_", "lin_api_", "ATATT", "PMAK-", "pul-", "AGE-SECRET-KEY-1", "ops_ey", "fo1_", "fm1a_", "fm1r_",
    "fm2_", "HRKU-", "sq0atp-", "sq0csp-", "EZAK", "EZTK", "CLOJARS_", "shippo_live_", "shippo_test_", "sgp_",
    "hvs.", "hvb.", "dp.pt.", "dp.st.", "xapp-", "sk_prod_", "rk_prod_", "dapi", "bedrock-api-key-", "sat.",
    "pat.", "t1.", "NRAK-", "NRJS-", "NRII-", "FLWSECK", "FLWPUBK", "sha256~", "ntn_", "LTAI", "p8e-", "AKCp",
    "cmVmd", "ABSK", "s-s4t2ud-", "s-s4t2af-", "dt0c01.", "duffel_test_", "duffel_live_", "rdme_", "rubygems_", "pnu_",
    "tfp_", "sm_pat_", "sm_aat_", "sm_sat_", "fio-u-", "dnkey-", "tk-us-", "access-sandbox-",
    "access-production-", "access-development-", "xkeysib-", "SG.",
)


def _vendor(value: str, text: str, start: int) -> bool:
    body = value.split("_", 1)[-1] if "_" in value[:16] else value
    if looks_like_reference(value) or entropy(body) < 3.0:
        return False
    return any(c.isdigit() for c in body) or random_letters(body)


def _hex_token(value: str, text: str, start: int) -> bool:
    return len(set(value)) > 6 and any(c.isalpha() for c in value) and any(c.isdigit() for c in value)


def _random(value: str, text: str, start: int) -> bool:
    return not looks_like_reference(value) and entropy(value) >= 3.0


VENDORS: tuple[Detector, ...] = (
    # prefix + a random body: most of gitleaks' fixed-prefix rules
    Detector(D.VENDOR_TOKEN, prefixes=VENDOR_PREFIXES, regex=re.compile(
        "(?:" + "|".join(re.escape(p) for p in VENDOR_PREFIXES) +
        r")[A-Za-z0-9_.~+/-]{16,512}={0,3}(?![A-Za-z0-9_=.~+/-])"), validate=_vendor, not_after="_"),
    Detector(D.VENDOR_TOKEN, prefixes=("npm_",), regex=re.compile(r"npm_[A-Za-z0-9]{36}(?![A-Za-z0-9_])"),
             validate=_vendor, not_after=""),
    Detector(D.VENDOR_TOKEN, prefixes=("key-", "pubkey-"), regex=re.compile(   # Mailgun
        r"(?:pub)?key-[0-9a-zA-Z]{32}(?![\w-])"), validate=_vendor, not_after=""),
    Detector(D.VENDOR_TOKEN, prefixes=("YC", "AQVN"), regex=re.compile(   # Yandex
        r"(?:YC[A-Za-z0-9_-]{38}|AQVN[A-Za-z0-9_-]{35,38})(?![\w-])"), validate=_vendor, not_after=""),
    Detector(D.VENDOR_TOKEN, prefixes=("A3-",), regex=re.compile(   # 1Password secret key
        r"A3-[A-Z0-9]{6}-(?:[A-Z0-9]{11}|[A-Z0-9]{6}-[A-Z0-9]{5})-[A-Z0-9]{5}-[A-Z0-9]{5}-[A-Z0-9]{5}"), not_after=""),
    Detector(D.VENDOR_TOKEN, prefixes=("v1.0-",), regex=re.compile(r"v1\.0-[a-f0-9]{24}-[a-f0-9]{146}")),
    Detector(D.VENDOR_TOKEN, prefixes=("EAA",), regex=re.compile(r"EAA[A-Za-z0-9]{100,}"), validate=_random,
             not_after=""),   # Facebook page tokens
    Detector(D.VENDOR_TOKEN, prefixes=("pk.", "sk."), regex=re.compile(   # Mapbox
        r"[ps]k\.(?:eyJ[A-Za-z0-9_-]{20,}|[a-z0-9]{60})\.[A-Za-z0-9_-]{20,}"), not_after=""),
    Detector(D.VENDOR_TOKEN, prefixes=("SK",), regex=re.compile(r"SK[0-9a-fA-F]{32}(?![0-9A-Za-z])"),
             validate=_hex_token, not_after=""),   # Twilio API key
    # Twilio: an auth token (32 hex) after the account SID it belongs to
    Detector(D.VENDOR_TOKEN, prefixes=("AC",), regex=re.compile(
        r"AC[0-9a-f]{32}(?![0-9a-zA-Z])[\s\S]{1,300}?(?<![0-9a-zA-Z])([0-9a-f]{32})(?![0-9a-zA-Z])"),
        group=1, validate=_hex_token, not_after=""),
    # webhooks: Discord, Microsoft Teams / Office connectors, Power Automate and Azure SAS signatures
    Detector(D.VENDOR_TOKEN, prefixes=("discord.com/api/webhooks/", "discordapp.com/api/webhooks/"),
             regex=re.compile(r"discord(?:app)?\.com/api/webhooks/\d{5,20}/[A-Za-z0-9_-]{20,100}")),
    Detector(D.VENDOR_TOKEN, prefixes=("webhook.office.com/", "outlook.office.com/webhook"), regex=re.compile(
        r"(?:webhook\.office\.com/webhookb2|outlook\.office\.com/webhook)/[^\s\"'<>]{40,400}")),
    Detector(D.VENDOR_TOKEN, prefixes=("sig=",), regex=re.compile(r"sig=([A-Za-z0-9%+/_=-]{20,200})"),
             group=1, validate=_random),
    Detector(D.VENDOR_TOKEN, re.compile(r"(?<![\w:])\d{8,10}:AA[A-Za-z0-9_-]{32,33}(?![\w-])"),
             context=(":AA",), exact=True, window=(12, 40)),   # Telegram bot token: the bot's id, then its secret
    Detector(D.VENDOR_TOKEN, context=("-us",), window=(40, 10), regex=re.compile(
        r"(?<![0-9a-f])[0-9a-f]{32}-us\d{1,2}(?![\w-])"), validate=_hex_token),   # Mailchimp
    # context-gated: the vendor's name must be near
    Detector(D.VENDOR_TOKEN, context=("discord",), regex=re.compile(
        r"(?<![\w.-])[MN][A-Za-z0-9]{23,25}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,38}(?![\w-])"), validate=_random),
    Detector(D.VENDOR_TOKEN, context=("mailgun",), regex=re.compile(
        r"(?<![0-9a-z])[a-h0-9]{32}-[a-h0-9]{8}-[a-h0-9]{8}(?![0-9a-z])"), validate=_hex_token),
    Detector(D.VENDOR_TOKEN, context=("vault",), regex=re.compile(r"(?<![\w.])s\.[A-Za-z0-9]{24}(?![\w.])"),
             validate=_random),
    Detector(D.VENDOR_TOKEN, context=("atlasv1",), window=(20, 100), regex=re.compile(
        r"[a-z0-9]{14}\.atlasv1\.[A-Za-z0-9_=-]{60,70}")),
    Detector(D.VENDOR_TOKEN, context=("contribsys",), regex=re.compile(
        r"(?<![0-9a-f])[0-9a-f]{8}:[0-9a-f]{8}(?![0-9a-f])")),   # Sidekiq Enterprise credentials
    Detector(D.VENDOR_TOKEN, context=("facebook",), regex=re.compile(
        r"(?<!\d)\d{15,16}(?:\||%7C)[0-9A-Za-z_-]{27,40}(?![\w-])")),
)
