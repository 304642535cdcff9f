"""More than one instance: two ``policyproxy serve`` processes sharing a real ``redis-server``, behind a
real HAProxy (TCP mode, round robin), driven by the official SDKs.

A conversation whose turns land on alternating instances gets every placeholder restored, streamed
and not; a placeholder one instance minted is restored by the other even when the request does not
carry it (a model with server-side state repeats it); killing one instance loses nothing; Redis
stopped -> redaction endpoints answer 503 ``store_unavailable`` while other traffic flows, and
everything recovers when Redis returns.
"""

from __future__ import annotations

import json
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.request

import httpx
import pytest

from tests.shell.proxy_process import ProxyProcess
from tests.shell.scale_env import HAProxy, RedisServer
from tests.shell.upstream import NAMES

pytestmark = [
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed (.ci/run installs it)"),
]
needs_haproxy = pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed (.ci/run installs it)")

EMAIL = "dana.kowalski@acme-corp.io"
TOKEN = "ghp_R8mK2vQ9xL4nT7wZ1pY6sB3cF5hJ0dG8aE2u"
CONFIG = """
[permissions.r.network.domains]
"*" = "allow"
[permissions.r.network.redaction]
mapping_store = "{url}"
"""


class Cluster:
    """Redis, N proxies with the same config and the same CA (each mints its own leaves), HAProxy."""

    def __init__(self, tmp, pki, upstream, instances: int = 2, balancer: bool = True, config: str = CONFIG,
                 env: dict[str, str] | None = None, redis: RedisServer | None = None) -> None:
        self.tmp = tmp
        (tmp / "redis").mkdir(exist_ok=True)
        self.redis = redis or RedisServer(tmp / "redis")
        shared = tmp / "ca"
        subprocess.run([sys.executable, "-m", "policyproxy", "ca", "init", "--ca-dir", str(shared)], check=True,
                       capture_output=True)
        pins = [f"{name}:{port}:127.0.0.1" for name in NAMES if name != "rebind.test"
                for port in (upstream.tls_port, upstream.plain_port)]
        self.proxies: list[ProxyProcess] = []
        for i in range(instances):
            home = tmp / f"instance{i}"
            home.mkdir()
            shutil.copytree(shared, home / "ca")
            self.proxies.append(ProxyProcess(home, config.format(url=self.redis.url), pki[0], pins, env,
                                             ["--admin-listen", "127.0.0.1:0"]))
        self.balancer = HAProxy(tmp, [p.http_port for p in self.proxies]) if balancer else None
        self.bundle = self.proxies[0].bundle

    def admin(self, i: int) -> str:
        line = next(line for line in self.proxies[i].output if line.startswith("admin: "))
        return line.split()[1].rstrip("/")

    def served(self, i: int) -> int:
        """How many requests instance ``i`` decided on a redaction endpoint (its audit log)."""
        log = self.proxies[i].home / "audit.jsonl"
        if not log.exists():
            return 0
        return sum(1 for line in log.read_text().splitlines() if '"/v1/' in line)

    def close(self) -> None:
        if self.balancer is not None:
            self.balancer.stop()
        for proxy in self.proxies:
            proxy.stop()
        self.redis.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, pki, upstream):
    if shutil.which("haproxy") is None:
        pytest.skip("haproxy is not installed (.ci/run installs it)")
    made = Cluster(tmp_path_factory.mktemp("cluster"), pki, upstream)
    yield made
    made.close()


def openai_client(proxy_url: str, bundle, upstream):
    """A fresh client (a fresh connection: HAProxy balances connections, so each turn may move)."""
    openai = pytest.importorskip("openai")
    http = httpx.Client(proxy=proxy_url, verify=ssl.create_default_context(cafile=str(bundle)))
    return openai.OpenAI(api_key="k", base_url=f"https://api.openai.com:{upstream.tls_port}/v1", max_retries=0,
                         http_client=http)


def anthropic_client(upstream):
    """The Anthropic SDK reads HTTPS_PROXY and SSL_CERT_FILE (set by the test); a new client, a new pool."""
    anthropic = pytest.importorskip("anthropic")
    return anthropic.Anthropic(api_key="k", base_url=f"https://api.anthropic.com:{upstream.tls_port}", max_retries=0)


def chat_turn(client, messages, stream: bool, emit: str | None = None) -> str:
    headers = {"x-test-chunk": "3", **({"x-test-emit": emit} if emit else {})}
    if not stream:
        reply = client.chat.completions.create(model="gpt-x", messages=messages, extra_headers=headers)
        return reply.choices[0].message.content
    text = ""
    for event in client.chat.completions.create(model="gpt-x", messages=messages, stream=True, extra_headers=headers):
        if event.choices:
            text += event.choices[0].delta.content or ""
    return text


def sent_placeholder(upstream, prefix: str) -> str:
    body = upstream.last()["body"]
    start = body.index(f"[[{prefix}_")
    return body[start:body.index("]]", start) + 2]


@needs_haproxy
class TestTwoInstancesBehindHAProxy:
    @pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
    def test_openai_turns_alternating_between_instances_are_all_restored(self, cluster, upstream, stream):
        before = (cluster.served(0), cluster.served(1))
        messages: list[dict[str, str]] = []
        for turn in range(4):
            prompt = f"turn {turn}: mail {EMAIL} with token {TOKEN}"
            messages.append({"role": "user", "content": prompt})
            text = chat_turn(openai_client(cluster.balancer.url, cluster.bundle, upstream), messages, stream)
            assert text == prompt
            assert EMAIL not in upstream.last()["body"] and TOKEN not in upstream.last()["body"]
            messages.append({"role": "assistant", "content": text})
        time.sleep(0.3)   # the audit writer is a thread
        after = (cluster.served(0), cluster.served(1))
        assert after[0] > before[0] and after[1] > before[1], (before, after)   # both instances served turns

    def test_anthropic_streamed_turns_alternating_between_instances(self, cluster, upstream, monkeypatch):
        monkeypatch.setenv("HTTPS_PROXY", cluster.balancer.url)
        monkeypatch.setenv("SSL_CERT_FILE", str(cluster.bundle))
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("ALL_PROXY", raising=False)
        messages: list[dict[str, str]] = []
        for turn in range(4):
            prompt = f"turn {turn}: I am {EMAIL}"
            messages.append({"role": "user", "content": prompt})
            client = anthropic_client(upstream)
            with client.messages.stream(model="claude-x", max_tokens=100, messages=messages,
                                        extra_headers={"x-test-chunk": "2"}) as events:
                text = "".join(events.text_stream)
                final = events.get_final_message()
            assert text == prompt and final.content[1].input == {"echo": prompt}
            messages.append({"role": "assistant", "content": text})

    @pytest.mark.parametrize("stream", [True, False], ids=["streamed", "whole"])
    def test_a_placeholder_minted_elsewhere_and_absent_from_the_request_is_restored(self, cluster, upstream,
                                                                                       stream):
        """Turn 1 on instance 0 masks the address; turn 2 goes to instance 1 without it, and the "model"
        (server-side state, ``previous_response_id``) repeats the placeholder instance 0 minted."""
        address = f"only-once-{stream}@example.org"
        first = openai_client(cluster.proxies[0].url, cluster.bundle, upstream)
        assert chat_turn(first, [{"role": "user", "content": f"remember {address}"}], stream) == f"remember {address}"
        placeholder = sent_placeholder(upstream, "EMAIL")
        second = openai_client(cluster.proxies[1].url, cluster.bundle, upstream)
        text = chat_turn(second, [{"role": "user", "content": "who was it?"}], stream, emit=f"It was {placeholder}.")
        assert text == f"who was it? It was {address}."
        assert address not in upstream.last()["body"]

    def test_keys_are_namespaced_by_scope_and_expire(self, cluster, upstream):
        """Every mapping lives under its scope's hash (the client identity: here the balancer's address,
        127.0.0.1, since HAProxy in TCP mode hides the client's) with the mapping TTL as its expiry."""
        from policyproxy.stores.redis import RedisMappingStore

        chat_turn(openai_client(cluster.balancer.url, cluster.bundle, upstream),
                  [{"role": "user", "content": f"hello {EMAIL}"}], False)
        redis = cluster.redis.client()
        keys = [k.decode() for k in redis.scan_iter("policyproxy:m:*")]
        scope = RedisMappingStore.key("addr:127.0.0.1", "")
        assert keys and all(k.startswith(scope) for k in keys)
        assert not any(EMAIL in k for k in keys)
        assert all(0 < redis.ttl(k) <= 24 * 3600 for k in keys)
        assert len(redis.get("policyproxy:master")) == 32   # created once, shared


@needs_haproxy
def test_killing_one_instance_mid_conversation_loses_nothing(tmp_path, pki, upstream):
    cluster = Cluster(tmp_path, pki, upstream)
    try:
        messages = [{"role": "user", "content": f"I am {EMAIL}"}]
        assert chat_turn(openai_client(cluster.balancer.url, cluster.bundle, upstream), messages, True) == \
            f"I am {EMAIL}"
        placeholder = sent_placeholder(upstream, "EMAIL")
        messages.append({"role": "assistant", "content": f"I am {EMAIL}"})
        time.sleep(0.3)   # the audit writer is a thread
        minted_by = 0 if cluster.served(0) else 1   # the instance that minted the placeholder goes away
        assert cluster.served(1 - minted_by) == 0
        cluster.proxies[minted_by].process.send_signal(signal.SIGKILL)   # no drain, no goodbye
        cluster.proxies[minted_by].process.wait(10)
        for turn in range(4):
            # Server-side state (previous_response_id): the later turns do not carry the address.
            stream = turn % 2 == 0
            text = chat_turn(openai_client(cluster.balancer.url, cluster.bundle, upstream),
                             [{"role": "user", "content": f"turn {turn}"}], stream, emit=f"you are {placeholder}")
            assert text == f"turn {turn} you are {EMAIL}"
    finally:
        cluster.close()


def _readyz(admin: str) -> tuple[int, dict]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"{admin}/readyz", timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_redis_stopped_fails_closed_then_recovers(tmp_path, pki, upstream):
    cluster = Cluster(tmp_path, pki, upstream, instances=1, balancer=False)
    proxy = cluster.proxies[0]
    openai = pytest.importorskip("openai")
    try:
        client = openai_client(proxy.url, cluster.bundle, upstream)
        assert chat_turn(client, [{"role": "user", "content": f"hi {EMAIL}"}], False) == f"hi {EMAIL}"
        assert _readyz(cluster.admin(0))[0] == 200
        cluster.redis.stop()
        seen = len(upstream.requests)
        started = time.monotonic()
        with pytest.raises(openai.APIStatusError) as refused:
            chat_turn(openai_client(proxy.url, cluster.bundle, upstream),
                      [{"role": "user", "content": "new value: zed@example.net"}], False)
        assert time.monotonic() - started < 5   # bounded timeouts, no hanging
        assert refused.value.status_code == 503
        assert refused.value.response.headers["x-proxy-error"] == "blocked-by-policy"
        assert "store_unavailable" in refused.value.response.text or "mapping store" in refused.value.response.text
        # A turn with nothing new to store is refused too while the store is down.
        with pytest.raises(openai.APIStatusError):
            chat_turn(openai_client(proxy.url, cluster.bundle, upstream), [{"role": "user", "content": "hello"}],
                      True)
        assert len(upstream.requests) == seen   # nothing reached the provider
        # Other traffic is unaffected.
        with httpx.Client(proxy=proxy.url, verify=ssl.create_default_context(cafile=str(pki[0]))) as plain:   # tunnelled
            assert plain.get(f"https://api.github.com:{upstream.tls_port}/repos/x").status_code == 200
        status, body = _readyz(cluster.admin(0))
        assert status == 503 and any(r.startswith("mapping_store:") for r in body["reasons"])
        assert "redis://127.0.0.1" in " ".join(body["reasons"])
        cluster.redis.start()   # same data (append-only file): the mappings and the key are back
        assert chat_turn(openai_client(proxy.url, cluster.bundle, upstream),
                         [{"role": "user", "content": f"again {EMAIL}"}], True) == f"again {EMAIL}"
        assert _readyz(cluster.admin(0))[0] == 200
        events = [json.loads(line) for line in (proxy.home / "audit.jsonl").read_text().splitlines()]
        assert any(e.get("network.policy.reason") == "store_unavailable" for e in events)
    finally:
        cluster.close()


def test_values_are_encrypted_at_rest_with_a_mapping_key(tmp_path, pki, upstream):
    """With ``mapping_key_env`` the key never enters Redis and values are sealed; without it (the other
    tests) Redis holds the key and the values, as the README says."""
    config = CONFIG + 'mapping_key_env = "PP_MAPPING_KEY"\n'
    cluster = Cluster(tmp_path, pki, upstream, instances=2, balancer=False, config=config,
                      env={"PP_MAPPING_KEY": "k" * 44})
    try:
        first = openai_client(cluster.proxies[0].url, cluster.bundle, upstream)
        chat_turn(first, [{"role": "user", "content": f"note {EMAIL}"}], False)
        placeholder = sent_placeholder(upstream, "EMAIL")
        second = openai_client(cluster.proxies[1].url, cluster.bundle, upstream)
        assert chat_turn(second, [{"role": "user", "content": "x"}], True, emit=placeholder) == f"x {EMAIL}"
        redis = cluster.redis.client()
        assert redis.get("policyproxy:master") is None
        values = [redis.get(k) for k in redis.scan_iter("policyproxy:m:*")]
        assert values and not any(EMAIL.encode() in v for v in values)
        assert all(0 < redis.ttl(k) <= 24 * 3600 for k in redis.scan_iter("policyproxy:m:*"))
    finally:
        cluster.close()


@pytest.mark.parametrize("password, works", [("s3cret-acl-password", True), ("wrong-password-value", False)])
def test_rediss_with_an_acl_user_a_private_ca_and_the_password_from_env(tmp_path, pki, upstream, password, works):
    """TLS to Redis verified against ``mapping_store_ca_file``, ACL user in the URL, password from env;
    a wrong password fails closed like an outage, and the password shows up nowhere."""
    openai = pytest.importorskip("openai")
    (tmp_path / "redis").mkdir()
    server = RedisServer(tmp_path / "redis", tls=pki, user=("ppuser", "s3cret-acl-password"))
    config = CONFIG + f'mapping_store_password_env = "PP_REDIS_PW"\nmapping_store_ca_file = "{pki[0]}"\n'
    cluster = Cluster(tmp_path, pki, upstream, instances=1, balancer=False, config=config,
                      env={"PP_REDIS_PW": password}, redis=server)
    proxy = cluster.proxies[0]
    try:
        assert server.url.startswith("rediss://ppuser@")
        client = openai_client(proxy.url, cluster.bundle, upstream)
        if works:
            assert chat_turn(client, [{"role": "user", "content": f"hi {EMAIL}"}], True) == f"hi {EMAIL}"
            assert list(server.client().scan_iter("policyproxy:m:*"))
            assert _readyz(cluster.admin(0))[0] == 200
        else:
            with pytest.raises(openai.APIStatusError) as refused:
                chat_turn(client, [{"role": "user", "content": f"hi {EMAIL}"}], False)
            assert refused.value.status_code == 503
            status, body = _readyz(cluster.admin(0))
            assert status == 503 and "rediss://127.0.0.1" in json.dumps(body)
            seen = json.dumps(body) + refused.value.response.text + proxy.logs() + "".join(proxy.output)
            time.sleep(0.3)
            seen += (proxy.home / "audit.jsonl").read_text()
            assert password not in seen and "ppuser@" not in json.dumps(body)
    finally:
        cluster.close()
