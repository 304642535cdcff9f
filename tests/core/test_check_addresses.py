"""``Policy.check_addresses``: the local-address rule on what an allowed name resolved to."""

from __future__ import annotations

import ipaddress

from policyproxy.reasons import Reason
from tests.helpers import connect, policy

CONFIG = '[permissions.t.network.domains]\n"a.test" = "allow"\n"127.0.0.1" = "allow"\n'
LOCAL = (ipaddress.ip_address("127.0.0.1"),)
PUBLIC = (ipaddress.ip_address("93.184.216.34"),)


def test_a_name_is_decided_without_addresses_then_checked(tmp_path):
    p = policy(tmp_path, CONFIG)
    decision = connect(p, "a.test")
    assert decision.allowed
    assert p.check_addresses(decision, PUBLIC) is decision
    checked = p.check_addresses(decision, PUBLIC + LOCAL)
    assert checked.reason is Reason.NOT_ALLOWED_LOCAL and not checked.allowed and "127.0.0.1" in checked.message


def test_trusted_local_binding_and_literals_pass(tmp_path):
    p = policy(tmp_path, CONFIG)
    assert p.check_addresses(connect(p, "a.test"), LOCAL, trusted=True).allowed
    assert p.check_addresses(connect(p, "127.0.0.1"), LOCAL).allowed   # allowed by an exact literal
    local = policy(tmp_path, CONFIG.replace("[permissions.t.network.domains]",
                                            "[permissions.t.network]\nallow_local_binding = true\n"
                                            "[permissions.t.network.domains]"))
    assert local.check_addresses(connect(local, "a.test"), LOCAL).allowed


def test_a_deny_stays_a_deny(tmp_path):
    p = policy(tmp_path, CONFIG)
    denied = connect(p, "b.test")
    assert p.check_addresses(denied, PUBLIC) is denied
