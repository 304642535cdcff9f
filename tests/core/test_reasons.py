"""Every ``Reason`` has an explicit ``x-proxy-error`` entry: a value for each deny, None for each allow."""

import pytest

from policyproxy.reasons import _PROXY_ERROR, Reason

ALLOWING = {Reason.ALLOWED, Reason.HOOK_MATCHED, Reason.REDACTED}


def test_the_table_names_every_reason():
    assert set(_PROXY_ERROR) == set(Reason)


@pytest.mark.parametrize("reason", list(Reason))
def test_each_reason_has_its_answer(reason):
    if reason in ALLOWING:
        assert reason.proxy_error is None
    else:
        assert reason.proxy_error is not None and reason.proxy_error.startswith("blocked-by-")
