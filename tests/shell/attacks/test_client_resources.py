"""Resource attacks on the client side's HTTP/1.1 server (``h1_server``) through a real proxy, on
asyncio's loop and uvloop: plain HTTP over SOCKS5 to an intercepted host.

Pipelining: requests are parsed ahead of their answers, each an ``H1Exchange`` with its fields (about
1.8 KB for an 18-byte request), and llhttp parses a whole read at once: one 256 KiB write of tiny
requests held ~4,900 of them (8-12 MB) per connection. Beyond ``MAX_AHEAD`` parsed ahead the client
is answered 429 after the ones before, and the connection closes.
"""

from __future__ import annotations

import re
import tracemalloc

from policyproxy.proxy.h1_server import MAX_AHEAD
from tests.shell.attacks.test_client_heads import h, proxied, socks_plain, until_closed


def test_a_pipeline_of_thousands_of_requests_in_one_write_is_bounded(tmp_path, on_both_loops):
    async def scenario() -> tuple[list[bytes], int, int]:
        async with proxied(tmp_path) as (proxy, upstream):
            reader, writer = await socks_plain(proxy, upstream.port)
            tracemalloc.start()
            base = tracemalloc.get_traced_memory()[0]
            writer.write(f"GET /ok HTTP/1.1\r\nHost: {h(upstream.port)}\r\n\r\n".encode() * 10000)
            answer = await until_closed(reader, 20)
            peak = tracemalloc.get_traced_memory()[1] - base
            tracemalloc.stop()
            writer.close()
            return re.findall(rb"HTTP/1\.1 (\d{3}) ", answer), len(upstream.heads), peak
    statuses, sent, peak = on_both_loops(scenario())
    served = len(statuses) - 1
    assert MAX_AHEAD <= served <= 2 * MAX_AHEAD   # the ones parsed ahead (a first short read may add a few)
    assert statuses == [b"200"] * served + [b"429"]
    assert sent == served
    assert peak < 4_000_000   # the proxy's and the client's side, in one process
