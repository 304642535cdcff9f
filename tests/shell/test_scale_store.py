"""``RedisMappingStore`` against a real ``redis-server``: one placeholder key for every instance, writes a
request depends on are in Redis before it goes out (also when another request carried them), bounded
waits on a dead or stalled Redis, writes kept across an outage, values sealed under the mapping key."""

from __future__ import annotations

import asyncio
import shutil
import time

import pytest

from policyproxy.stores.redis import RedisMappingStore, StoreUnavailable
from tests.shell.scale_env import RedisServer, free_port

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None,
                                reason="redis-server is not installed (.ci/run installs it)")


@pytest.fixture(scope="module")
def redis(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


def run(coro):
    return asyncio.run(coro)


def test_every_instance_gets_the_same_placeholder_key_created_once(redis):
    redis.client().delete("policyproxy:master")

    async def race() -> set[bytes]:
        stores = [RedisMappingStore(redis.url) for _ in range(8)]
        try:
            return set(await asyncio.gather(*(s.open() for s in stores)))
        finally:
            for store in stores:
                await store.aclose()

    keys = run(race())
    assert len(keys) == 1 and redis.client().get("policyproxy:master") in keys


def test_a_flush_waits_for_the_write_another_request_took_its_mappings_with(redis):
    """Request B queued a mapping; request A's flush took it along and is stalled (CLIENT PAUSE); B's own
    flush must not return (and B must not be forwarded) before the mapping is in Redis."""
    async def scenario() -> bool:
        store = RedisMappingStore(redis.url, timeout=5.0)
        await store.open()
        store.put("addr:b", "[[EMAIL_0000000b]]", "b@example.com", time.time() + 60)
        redis.client().execute_command("CLIENT", "PAUSE", "600", "WRITE")
        a = asyncio.ensure_future(store.flush(time.time()))
        await asyncio.sleep(0.05)   # A's pipeline is out, waiting on Redis
        await store.flush(time.time())   # B: nothing of its own left in the queue
        stored = redis.client().get(RedisMappingStore.key("addr:b", "[[EMAIL_0000000b]]")) is not None
        await a
        await store.aclose()
        return stored

    assert run(scenario())


def test_a_dead_store_fails_within_the_bound_naming_it_without_secrets():
    async def scenario() -> None:
        port = free_port()
        store = RedisMappingStore(f"redis://127.0.0.1:{port}/0", key=b"k" * 44, timeout=0.5)
        store.put("addr:x", "[[EMAIL_0000000c]]", "c@example.com", time.time() + 60)
        started = time.monotonic()
        with pytest.raises(StoreUnavailable) as down:
            await store.flush(time.time())
        assert time.monotonic() - started < 2
        assert f"127.0.0.1:{port}" in str(down.value) and "kkkk" not in str(down.value)
        assert await store.ping() is not None
        await store.aclose()

    run(scenario())


def test_writes_queued_during_an_outage_go_out_with_the_next_flush(redis):
    async def scenario() -> bytes | None:
        store = RedisMappingStore(redis.url, timeout=0.5)
        await store.open()
        store.put("addr:y", "[[EMAIL_0000000d]]", "d@example.com", time.time() + 60)
        redis.stop()
        with pytest.raises(StoreUnavailable):
            await store.flush(time.time())
        redis.start()
        await store.flush(time.time())
        await store.aclose()
        return redis.client().get(RedisMappingStore.key("addr:y", "[[EMAIL_0000000d]]"))

    assert run(scenario()) is not None


def test_a_stalled_store_times_out(redis):
    async def scenario() -> float:
        store = RedisMappingStore(redis.url, timeout=0.5)
        await store.open()
        redis.client().execute_command("CLIENT", "PAUSE", "2000", "ALL")
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            await store.fetch("addr:z", ["[[EMAIL_0000000e]]"], time.time())
        await store.aclose()
        return time.monotonic() - started

    assert run(scenario()) < 1.5
    time.sleep(1.6)   # let the pause end for the next test


def test_sealed_values_need_the_same_key(redis):
    async def scenario() -> tuple[object, object, bytes | None]:
        mine = RedisMappingStore(redis.url, key=b"a" * 44)
        other = RedisMappingStore(redis.url, key=b"b" * 44)
        plain = RedisMappingStore(redis.url)
        mine.put("addr:s", "[[EMAIL_0000000f]]", "f@example.com", time.time() + 60)
        await mine.flush(time.time())
        token = ["[[EMAIL_0000000f]]"]
        found = await mine.fetch("addr:s", token, time.time()), await other.fetch("addr:s", token, time.time())
        assert await plain.fetch("addr:s", token, time.time()) == {}
        for store in (mine, other, plain):
            await store.aclose()
        return found[0], found[1], redis.client().get(RedisMappingStore.key("addr:s", token[0]))

    mine, other, raw = run(scenario())
    assert mine["[[EMAIL_0000000f]]"][0] == "f@example.com"
    assert other == {} and raw is not None and b"f@example.com" not in raw
