"""``SecretProvider`` with an injected clock and real child processes: lifetimes, JSON output, messages."""

from __future__ import annotations

import asyncio
import sys
import textwrap

import pytest

from policyproxy.config.schema import SecretRef
from policyproxy.errors import ConfigErrors
from policyproxy.secret_provider import SecretFailure, SecretProvider, SecretUnavailable, parse_command_output
from tests.helpers import settings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def command(tmp_path, body: str) -> tuple[str, ...]:
    script = tmp_path / "cmd.py"
    script.write_text(textwrap.dedent(body))
    return (sys.executable, str(script))


def test_json_expires_at_shortens_the_life_and_ttl_caps_it(tmp_path):
    clock = Clock()
    wall = lambda: 1_700_000_000.0  # noqa: E731
    short = SecretRef(command=command(tmp_path, 'print(\'{"value": "v-canary", "expires_at": 1700000010}\')'),
                      ttl_seconds=300)
    provider = SecretProvider([(short, "k")], {}, clock=clock, wall=wall)
    provider._values[short] = provider._read(short)
    assert provider.lookup(short).reveal() == "v-canary"
    clock.now += 10.0
    with pytest.raises(SecretUnavailable) as info:
        provider.lookup(short)
    assert "expired" in str(info.value) and "canary" not in str(info.value)
    capped = SecretRef(command=short.command, ttl_seconds=5)
    provider = SecretProvider([(capped, "k")], {}, clock=clock, wall=wall)
    provider._values[capped] = provider._read(capped)
    clock.now += 5.0
    with pytest.raises(SecretUnavailable):
        provider.lookup(capped)


@pytest.mark.parametrize(("out", "problem"), [
    (b'{"value": 3}', 'without a string "value"'),
    (b"{not json", "invalid JSON"),
    (b'{"value": "x-canary", "expires_at": "tomorrow"}', "not RFC 3339"),
    (b'{"value": "x-canary", "expires_at": "2026-01-01T00:00:00"}', "without a time zone"),
    (b"", "is empty"),
    (b"two\nlines-canary", "line break"),
    (b"\xff\xfe", "not UTF-8"),
])
def test_bad_command_output_is_named_without_its_value(out, problem):
    with pytest.raises(SecretFailure) as info:
        parse_command_output(out, "'mint'", 0.0)
    assert problem in str(info.value) and "canary" not in str(info.value)


def test_rfc3339_expires_at_is_read():
    value, life = parse_command_output(b'{"value": "abc", "expires_at": "2026-01-01T00:01:00Z"}', "'m'",
                                       1767225600.0)   # 2026-01-01T00:00:00Z
    assert (value, life) == ("abc", 60.0)


def test_an_already_expired_value_is_refused(tmp_path):
    ref = SecretRef(command=command(tmp_path, 'print(\'{"value": "v", "expires_at": 10}\')'))
    provider = SecretProvider([(ref, "k")], {})
    with pytest.raises(SecretFailure, match="already expired"):
        provider._read(ref)


def test_a_use_in_the_last_quarter_refreshes_in_the_background(tmp_path):
    counter = tmp_path / "n"
    ref = SecretRef(command=command(tmp_path, f"""
        import pathlib
        p = pathlib.Path({str(counter)!r})
        n = int(p.read_text()) + 1 if p.exists() else 1
        p.write_text(str(n))
        print(f"tok-{{n}}")
    """), ttl_seconds=100)
    clock = Clock()
    provider = SecretProvider([(ref, "k")], {}, clock=clock)
    provider._values[ref] = provider._read(ref)

    async def use() -> str:
        await provider.prepare([ref])
        return provider.lookup(ref).reveal()

    async def scenario() -> list[str]:
        seen = [await use()]
        clock.now += 80.0            # in the refresh window: the current value serves this request
        seen.append(await use())
        await asyncio.sleep(0)
        while provider._refreshing:
            await asyncio.sleep(0.02)
        seen.append(await use())      # the background refresh landed
        return seen

    assert asyncio.run(scenario()) == ["tok-1", "tok-1", "tok-2"]


def test_check_no_secrets_turns_missing_sources_into_warnings(tmp_path):
    text = """
    [permissions.ws.network.domains]
    "api.x.com" = "allow"
    [permissions.ws.network.mitm.hooks.h]
    host = "api.x.com"
    methods = ["GET"]
    path_prefixes = ["/"]
    action = ["a"]
    [permissions.ws.network.mitm.actions.a]
    [[permissions.ws.network.mitm.actions.a.inject_request_headers]]
    name = "x-one"
    secret_env_var = "ABSENT_TOKEN"
    [[permissions.ws.network.mitm.actions.a.inject_request_headers]]
    name = "x-two"
    secret_file = "/nonexistent/token"
    [[permissions.ws.network.mitm.actions.a.inject_request_headers]]
    name = "x-three"
    secret_command = ["no-such-minting-tool"]
    """
    s = settings(tmp_path, text)
    with pytest.raises(ConfigErrors):
        SecretProvider.for_settings(s, {})
    _, warnings = SecretProvider.for_settings(s, {}, missing_ok=True)
    assert [w.key.rsplit(".", 1)[1] for w in warnings] == ["secret_env_var", "secret_file", "secret_command"]
    assert "ABSENT_TOKEN" in str(warnings[0]) and "/nonexistent/token" in str(warnings[1])
    assert "no-such-minting-tool" in str(warnings[2])


COUNTING = """
    import pathlib, time
    p = pathlib.Path({counter!r})
    n = int(p.read_text()) + 1 if p.exists() else 1
    p.write_text(str(n))
    time.sleep(0.2)
    print(f"tok-{{n}}")
"""


def test_many_requests_at_expiry_run_the_command_once(tmp_path):
    counter = tmp_path / "n"
    ref = SecretRef(command=command(tmp_path, COUNTING.format(counter=str(counter))), ttl_seconds=10)
    clock = Clock()
    provider = SecretProvider([(ref, "k")], {}, clock=clock)
    provider._values[ref] = provider._read(ref)
    clock.now += 11.0

    async def use() -> str:
        await provider.prepare([ref])
        return provider.lookup(ref).reveal()

    async def burst() -> list[str]:
        return list(await asyncio.gather(*(use() for _ in range(20))))

    assert asyncio.run(burst()) == ["tok-2"] * 20
    assert counter.read_text() == "2"


def test_a_reload_keeps_an_unexpired_command_value_and_rereads_the_rest(tmp_path):
    counter = tmp_path / "n"
    argv = command(tmp_path, COUNTING.format(counter=str(counter)))
    text = f"""
    [permissions.ws.network.domains]
    "api.x.com" = "allow"
    [permissions.ws.network.mitm.hooks.h]
    host = "api.x.com"
    methods = ["GET"]
    path_prefixes = ["/"]
    action = ["a"]
    [permissions.ws.network.mitm.actions.a]
    [[permissions.ws.network.mitm.actions.a.inject_request_headers]]
    name = "x-one"
    secret_command = {list(argv)!r}
    """.replace("'", '"')
    s = settings(tmp_path, text)
    clock = Clock()
    first, _ = SecretProvider.for_settings(s, {}, clock=clock)
    second, _ = SecretProvider.for_settings(s, {}, previous=first, clock=clock)
    (ref,) = [r for r in first._refs]
    assert second.lookup(ref).reveal() == "tok-1" and counter.read_text() == "1"
    clock.now += 301.0   # expired: a reload mints a new one
    third, _ = SecretProvider.for_settings(s, {}, previous=second, clock=clock)
    assert third.lookup(ref).reveal() == "tok-2"


@pytest.mark.parametrize("body", ["import sys\nwhile True: sys.stdout.write('x' * 65536)",
                                  "import time\nprint('late', flush=True)\ntime.sleep(30)"])
def test_a_runaway_command_is_killed_at_start_and_on_refresh(tmp_path, monkeypatch, body):
    import policyproxy.secret_provider as module

    monkeypatch.setattr(module, "COMMAND_TIMEOUT", 2.0)
    ref = SecretRef(command=command(tmp_path, body), ttl_seconds=10)
    provider = SecretProvider([(ref, "k")], {})
    with pytest.raises(SecretFailure, match=r"printed more than 64 KiB|did not finish within 2 s"):
        provider._read(ref)

    async def refresh() -> None:
        await provider._refresh(ref)

    asyncio.run(asyncio.wait_for(refresh(), 30))
    with pytest.raises(SecretUnavailable):
        provider.lookup(ref)
