"""WebSocket redaction cost per message (the pure part the proxy adds to each message).

Run: python bench/ws_bench.py   (prints µs per server event message restored - a Responses text delta,
with and without a placeholder in it - and µs per client ``response.create`` redacted, first time and
cached, at several input sizes)
"""

from __future__ import annotations

import json
import time

from policyproxy.config.schema import RedactionSpec
from policyproxy.redaction.engine import Redactor
from policyproxy.redaction.placeholders import Vaults
from policyproxy.redaction.wsmessages import ClientMessages, ServerMessages


def per_call(fn, count: int) -> float:
    start = time.perf_counter()
    for i in range(count):
        fn(i)
    return (time.perf_counter() - start) / count * 1e6


def main() -> None:
    vault = Vaults().for_scope("bench")
    token = vault.placeholder("email", "dana.kowalski@acme-corp.io")
    server = ServerMessages(vault)
    plain = json.dumps({"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0,
                        "content_index": 0, "delta": "the quick brown "})
    with_token = json.dumps({"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0,
                             "content_index": 0, "delta": f"mail {token} now "})
    n = 20_000
    print(f"server delta, no placeholder:   {per_call(lambda i: server.text(plain), n):7.1f} µs/message")
    print(f"server delta, one placeholder:  {per_call(lambda i: server.text(with_token), n):7.1f} µs/message")
    redactor = Redactor(RedactionSpec())
    for size in (1_000, 10_000, 100_000):
        turn = ("Deploy notes: ask dana.kowalski@acme-corp.io about build 42. " * (size // 60))[:size]
        message = json.dumps({"type": "response.create", "model": "gpt-5-codex",
                              "input": [{"type": "message", "role": "user", "content": turn}]})
        fresh = per_call(lambda i, m=message: ClientMessages(redactor, Vaults().for_scope(f"s{i}"), 1 << 25).text(m),
                         20)
        client = ClientMessages(redactor, vault, 1 << 25)
        client.text(message)
        cached = per_call(lambda i, c=client, m=message: c.text(m), 200)
        print(f"response.create {size:>7} chars: {fresh:9.1f} µs first, {cached:8.1f} µs re-sent (cached)")


if __name__ == "__main__":
    main()
