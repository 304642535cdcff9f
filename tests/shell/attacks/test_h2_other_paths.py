"""Attack class: the other path to the same upstream. A request decides, hooks and reaches the
upstream identically whether it comes as an HTTP/1.1 request or as an HTTP/2 stream (a random table
of spellings, both ways, compared), and no redirect is followed on a stream."""

from __future__ import annotations

import asyncio
import random
import shutil
import ssl
from typing import Any

import pytest
from h2.events import DataReceived

from tests.shell.attacks.h2_client import RawClient, attack_with, ended, status_of
from tests.shell.test_differential import CONFIG, SEGMENTS

TOKEN = "ghp_DifferentialInjected000000000000001"
SKIP = {"host", "content-length", "connection", "x-probe"}


def table(seed: int, count: int) -> list[tuple[str, str, list[tuple[str, str]]]]:
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        first = rng.choice(["repos", "repos", "repos", "REPOS", "orgs", "%72epos", ".."])
        path = "/" + "/".join([first, *(rng.choice(["myorg", "myorg", *SEGMENTS]) for _ in range(rng.randint(0, 4)))])
        query = rng.choice(["", "mode=fast", "mode=slow", "mode=fast&mode=other", "mode=sl%20w", "x=1"])
        headers = [("cookie", "c=1")] if rng.random() < 0.5 else []
        if rng.random() < 0.5:
            headers.append(("x-trace", "t"))
        if rng.random() < 0.5:
            headers.append(("authorization", "Bearer agent"))
        method = rng.choice(["GET", "GET", "POST", "POST", "PATCH", "DELETE", "PUT", "HEAD"])
        rows.append((method, path + (f"?{query}" if query else ""), headers))
    # spellings HTTP/1.1 cannot carry differently either (a space or a tab is a 400 there, a 403 here)
    for odd in ("/repos/myorg/a?mode=fast#&mode=x", "/repos/myorg\\..\\other", "/repos/myorg/a;/../../other",
                "/repos/myorg/%00", "/repos/myorg/..%2f..%2fother", "/repos/myorg/%C3%A9"):
        rows += [("GET", odd, [("x-trace", "t")]), ("POST", odd, [])]
    return rows


async def over_http1(proxy_port: int, port: int, ca: str, method: str, target: str,
                     headers: list[tuple[str, str]], probe: str) -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", proxy_port)
    writer.write(f"CONNECT api.github.com:{port} HTTP/1.1\r\nHost: api.github.com:{port}\r\n\r\n".encode())
    await reader.readuntil(b"\r\n\r\n")
    context = ssl.create_default_context(cafile=ca)
    context.set_alpn_protocols(["http/1.1"])
    await writer.start_tls(context, server_hostname="api.github.com")
    body = b"body" if method in ("POST", "PATCH", "PUT") else b""
    lines = [f"{method} {target} HTTP/1.1", f"Host: api.github.com:{port}", "Connection: close",
             f"x-probe: {probe}", *(f"{k}: {v}" for k, v in headers)]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    head = await asyncio.wait_for(reader.readuntil(b"\r\n"), 10)
    writer.close()
    return head.split()[1].decode()


class TestSameRequestBothWays:
    def test_http1_and_http2_decide_and_forward_a_random_table_identically(self, tmp_path, pki, upstream):
        rows = table(20261202, 120)

        async def attack(server, proxy_port: int, port: int, ca: str) -> Any:
            results = []
            client = await RawClient.open(proxy_port, port, ca)
            for n, (method, target, headers) in enumerate(rows):
                h1 = await over_http1(proxy_port, port, ca, method, target, headers, f"h1-{n}")
                sid = client.h2.get_next_available_stream_id()
                body = b"body" if method in ("POST", "PATCH", "PUT") else b""
                extra = [("x-probe", f"h2-{n}"), *headers]
                if body:
                    extra.append(("content-length", str(len(body))))
                client.h2.send_headers(sid, client.request_headers(port, target, method, extra), end_stream=not body)
                if body:
                    client.h2.send_data(sid, body, end_stream=True)
                client.flush()
                await client.pump(ended(sid))
                results.append((h1, status_of(client, sid)))
                # every row is answered on the one connection (a broken stream would end it here)
                assert results[-1][1] is not None and client.goaway() is None, (n, method, target, results[-1])
            client.close()
            return results

        results, after, _ = attack_with(tmp_path, pki, upstream, CONFIG, attack, {"DIFF_TOKEN": TOKEN})
        assert after == 403   # a fresh client is still answered (GET /after is not a hooked path here)
        differences = []
        for n, ((h1, h2), row) in enumerate(zip(results, rows, strict=True)):
            seen = {}
            for version in ("h1", "h2"):
                reached = [r for r in upstream.requests
                           if dict((k.lower(), v) for k, v in r["headers"]).get("x-probe") == f"{version}-{n}"]
                seen[version] = [(r["method"], r["path"], r["query"], r["body"],
                                  sorted((k.lower(), v) for k, v in r["headers"] if k.lower() not in SKIP))
                                 for r in reached]
            if h1 != h2 or seen["h1"] != seen["h2"]:
                differences.append((row, h1, h2, seen))
        assert differences == []
        assert {h1 for h1, _ in results} >= {"200", "403"}   # the table reaches both answers


HEAD_CONFIG = """
[permissions.t.network.domains]
"*" = "allow"
[permissions.t.network.mitm.hooks.gh]
host = "api.github.com"
methods = ["GET", "HEAD"]
path_prefixes = ["/repos/"]
action = ["strip"]
[permissions.t.network.mitm.actions.strip]
strip_request_headers = ["cookie"]
"""


class TestHeadRequests:
    """A HEAD answer carries no body: on HTTP/2 a DATA frame after it is a PROTOCOL_ERROR (curl exit
    92, httpx InvalidBodyLengthError), so a denied HEAD looked like a broken proxy, not a 403."""

    def test_a_denied_head_is_a_403_without_data_frames(self, tmp_path, pki, upstream):
        async def attack(server, proxy_port: int, port: int, ca: str) -> Any:
            client = await RawClient.open(proxy_port, port, ca)
            client.h2.send_headers(1, client.request_headers(port, "/elsewhere", "HEAD"), end_stream=True)
            client.h2.send_headers(3, client.request_headers(port, "/repos/x", "HEAD"), end_stream=True)
            client.flush()
            await client.pump(ended(1, 3))
            data = [e.stream_id for e in client.events if isinstance(e, DataReceived) and e.data]
            client.close()
            return status_of(client, 1), status_of(client, 3), data

        (denied, allowed, data), after, _ = attack_with(tmp_path, pki, upstream, HEAD_CONFIG, attack)
        assert (denied, allowed, data, after) == ("403", "200", [], 403)   # /after: not hooked

    @pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
    def test_curl_http2_head_gets_the_403_and_its_length(self, tmp_path, pki, upstream):
        async def attack(server, proxy_port: int, port: int, ca: str) -> Any:
            curl = await asyncio.create_subprocess_exec(
                "curl", "-sS", "--http2", "-I", "-x", f"http://127.0.0.1:{proxy_port}", "--cacert", ca,
                f"https://api.github.com:{port}/elsewhere", stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE)
            out, err = await curl.communicate()
            return curl.returncode, out.decode(), err.decode()

        (code, out, err), after, _ = attack_with(tmp_path, pki, upstream, HEAD_CONFIG, attack)
        assert code == 0, err
        assert "\r\nHTTP/2 403 " in out and "content-length: " in out.lower() and after == 403

    @pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
    @pytest.mark.parametrize("version", ["--http1.1", "--http2"])
    def test_an_allowed_head_keeps_the_upstreams_content_length(self, tmp_path, pki, upstream, version):
        """RFC 9110 section 8.6: a HEAD's answer says the length its GET would have; it was dropped."""
        async def attack(server, proxy_port: int, port: int, ca: str) -> Any:
            heads = []
            for method in ("-I", "-i"):   # HEAD, then the GET it stands for
                curl = await asyncio.create_subprocess_exec(
                    "curl", "-sS", version, method, "-x", f"http://127.0.0.1:{proxy_port}", "--cacert", ca,
                    f"https://api.github.com:{port}/repos/x/head", stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE)
                out, err = await curl.communicate()
                assert curl.returncode == 0, err
                heads.append(out.decode().split("\r\n\r\n")[1].lower())   # after the CONNECT answer
            return heads

        (head, get), _, _ = attack_with(tmp_path, pki, upstream, HEAD_CONFIG, attack)
        lengths = [[int(line.split(":")[1]) for line in h.split("\r\n") if line.startswith("content-length:")]
                   for h in (head, get)]
        # The upstream's echo names the method in its JSON body: HEAD's would be one byte longer.
        assert lengths[0] == [lengths[1][0] + 1], (head, get)


class TestRedirects:
    def test_a_redirect_is_relayed_to_the_stream_not_followed(self, tmp_path, pki, upstream):
        async def attack(server, proxy_port: int, port: int, ca: str) -> Any:
            client = await RawClient.open(proxy_port, port, ca)
            before = len(upstream.requests)
            for sid, code in ((1, 302), (3, 307), (5, 308)):
                client.h2.send_headers(sid, client.request_headers(port, f"/status/{code}"), end_stream=True)
            client.flush()
            await client.pump(ended(1, 3, 5))
            client.close()
            body = b"".join(e.data for e in client.events if isinstance(e, DataReceived))
            return [status_of(client, sid) for sid in (1, 3, 5)], len(upstream.requests) - before, body

        config = HEAD_CONFIG.replace('["/repos/"]', '["/"]')
        (statuses, reached, _), after, _ = attack_with(tmp_path, pki, upstream, config, attack)
        assert statuses == ["302", "307", "308"] and reached == 3 and after == 200
