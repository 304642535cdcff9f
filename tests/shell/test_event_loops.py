"""``serve --loop``: the same answers on asyncio's loop and on uvloop (the ``[fast]`` extra).

The rest of the suite's ``serve`` processes run on the default (``auto``: uvloop, which the test extra
installs) and its in-process proxies on asyncio's loop; this module runs
the request shapes whose code differs between the loops (TLS termination, tunnels, small answers
written head and body at once, streamed answers, no-body answers) on both, and checks the loop in use.
"""

from __future__ import annotations

import importlib.util
import json
import ssl
from pathlib import Path

import httpx
import pytest

CONFIG = """
[permissions.t.network]
[permissions.t.network.domains]
"*" = "allow"
[permissions.t.network.mitm.hooks.strip]
host = "upstream.test"
methods = ["GET", "HEAD"]
path_prefixes = ["/"]
action = ["strip_cookies"]
[permissions.t.network.mitm.actions.strip_cookies]
strip_request_headers = ["cookie"]
"""

LOOPS = ["asyncio", pytest.param("uvloop", marks=pytest.mark.skipif(
    importlib.util.find_spec("uvloop") is None, reason="uvloop is not installed (the [fast] extra)"))]


@pytest.fixture(scope="module", params=LOOPS)
def proxy(request, start_proxy):
    proxy = start_proxy(CONFIG, extra=["--loop", request.param])
    proxy.loop = request.param
    return proxy


def client(proxy, pki=None) -> httpx.Client:
    trust = ssl.create_default_context(cafile=str(proxy.bundle))
    if pki is not None:   # a tunnel: the client meets the upstream's own certificate
        trust.load_verify_locations(cafile=str(pki[0]))
    return httpx.Client(proxy=proxy.url, verify=trust, timeout=20)


def test_the_chosen_loop_runs(proxy):
    maps = Path(f"/proc/{proxy.process.pid}/maps")
    if not maps.exists():
        pytest.skip("no /proc")
    assert ("uvloop" in maps.read_text()) is (proxy.loop == "uvloop")


def test_intercepted_small_answer_is_whole_with_its_length(proxy, upstream):
    with client(proxy) as c:
        for i in range(3):   # keep-alive: the connection is reused for each
            response = c.get(f"https://upstream.test:{upstream.tls_port}/echo?i={i}",
                             headers={"Cookie": "secret=1", "X-Dup": "a"})
            assert response.status_code == 200
            seen = response.json()
            assert seen["query"] == f"i={i}"
            assert "cookie" not in {k.lower() for k, _ in seen["headers"]}   # the hook ran
            assert response.headers["x-upstream"] == "yes"
            assert int(response.headers["content-length"]) == len(response.content)


def test_intercepted_answer_without_body(proxy, upstream):
    with client(proxy) as c:
        response = c.get(f"https://upstream.test:{upstream.tls_port}/status/204")
        assert response.status_code == 204
        assert response.content == b""
        head = c.head(f"https://upstream.test:{upstream.tls_port}/echo")
        assert head.status_code == 200 and head.content == b""


def test_intercepted_stream_arrives_in_order(proxy, upstream):
    with client(proxy) as c, c.stream("GET", f"https://upstream.test:{upstream.tls_port}/sse?n=3&interval=0.05") as r:
        events = [json.loads(line[len("data: "):]) for line in r.iter_lines() if line.startswith("data: ")]
    assert [e["i"] for e in events] == [0, 1, 2]


def test_tunnel_and_plain_http(proxy, upstream, pki):
    with client(proxy, pki) as c:
        tunnelled = c.get(f"https://tunnel.test:{upstream.tls_port}/echo")
        assert tunnelled.status_code == 200 and tunnelled.json()["tls"] is True
        plain = c.get(f"http://tunnel.test:{upstream.plain_port}/echo")
        assert plain.status_code == 200 and plain.json()["tls"] is False
