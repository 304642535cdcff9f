"""``Inspector``: per-client state is bounded: a scope's lock lives only while that scope is inspected."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from multidict import CIMultiDict

from policyproxy.proxy.inspector import Inspector, redactor_for
from tests.helpers import request as decide_request
from tests.helpers import settings

CONFIG = """
[permissions.t.network.domains]
"api.openai.com" = "allow"
[permissions.t.network.redaction]
enabled = true
"""


class Body:
    """A request's body as an ``Exchange`` hands it over: chunks from ``body()``."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.headers: CIMultiDict[str] = CIMultiDict({"Content-Type": "application/json"})

    async def body(self) -> Any:
        for i in range(0, len(self.data), 7):
            await asyncio.sleep(0)
            yield self.data[i:i + 7]


def test_scope_locks_are_forgotten_once_unused(tmp_path):
    s = settings(tmp_path, CONFIG)
    from policyproxy.policy.compile import compile_policy

    decision = decide_request(compile_policy(s), "POST", "api.openai.com", "/v1/chat/completions")
    assert decision.redaction is not None
    body = json.dumps({"messages": [{"role": "user", "content": "mail me at jane@example.com"}]}).encode()

    async def run() -> tuple[list[Any], int]:
        inspector = Inspector(s)
        redactor = redactor_for(s)
        assert redactor is not None

        async def one(client: str) -> Any:
            vault = inspector.vault(None, client)
            return await inspector.inspect(s, redactor, decision, Body(body), vault)  # type: ignore[arg-type]

        results = await asyncio.gather(*(one(f"10.0.{i}.1") for i in range(300)))
        inspector.close()
        return results, len(inspector._scopes)

    results, left = asyncio.run(run())
    assert all(r.decision.allowed and b"jane@example.com" not in r.body for r in results)
    assert left == 0   # 300 clients inspected, no lock kept for any of them
