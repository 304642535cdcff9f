"""decide() throughput on a large profile: 1,000 domain patterns and 200 hooks.

Run: python bench/decide_bench.py   (prints µs per decision per scenario and the ratio to the 5 µs goal)
"""

from __future__ import annotations

import random
import tempfile
import time
from pathlib import Path

from policyproxy.config import load_settings
from policyproxy.policy.compile import compile_policy
from policyproxy.policy.model import Request, Target
from policyproxy.reasons import Protocol

GOAL_US = 5.0


def big_profile() -> str:
    rng = random.Random(7)
    lines = ["[permissions.big.network]", "[permissions.big.network.domains]"]
    for i in range(1000):
        form = ("", "*.", "**.")[i % 3]
        verdict = "deny" if i % 10 == 0 else "allow"
        lines.append(f'"{form}host{i}.example{i % 37}.com" = "{verdict}"')
    for i in range(200):
        host = f"host{(i % 50) * 3}.example{((i % 50) * 3) % 37}.com"
        lines += [
            f"[permissions.big.network.mitm.hooks.h{i}]",
            f'host = "{host}"',
            f'methods = ["{rng.choice(["GET", "POST", "PUT"])}"]',
            f'path_prefixes = ["/api/v{i % 4}/", "pattern:/repos/*/r{i}/**"]',
            'action = ["strip"]',
        ]
        if i % 5 == 0:
            lines.append('query = { state = ["open", "pattern:clos*"] }')
    lines += ["[permissions.big.network.mitm.actions.strip]", 'strip_request_headers = ["authorization"]',
              "[permissions.big.network.redaction]"]
    return "\n".join(lines) + "\n"


def measure(fn, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.toml"
        path.write_text(big_profile())
        t0 = time.perf_counter()
        settings = load_settings(path, env={"POLICYPROXY_HOME": tmp})
        policy = compile_policy(settings)
        load_ms = (time.perf_counter() - t0) * 1e3
    hooked = "host3.example3.com"
    scenarios = {
        "connect, tunnelled (exact)": (Target("host1.example1.com", 443, Protocol.HTTPS_CONNECT), None),
        "connect, subdomain pattern": (Target("a.b.host2.example2.com", 443, Protocol.HTTPS_CONNECT), None),
        "connect, denied": (Target("host10.example10.com", 443, Protocol.HTTPS_CONNECT), None),
        "connect, not on allowlist": (Target("nowhere.org", 443, Protocol.HTTPS_CONNECT), None),
        "request, hook matched": (Target(hooked, 443, Protocol.HTTPS_MITM), Request("POST", "/api/v1/x/y")),
        "request, hooked no match": (Target(hooked, 443, Protocol.HTTPS_MITM), Request("DELETE", "/other/x")),
        "request, query hook": (Target("host15.example15.com", 443, Protocol.HTTPS_MITM),
                                Request("GET", "/api/v1/x", "state=open&page=2")),
        "request, redaction endpoint": (Target("api.anthropic.com", 443, Protocol.HTTPS_MITM),
                                        Request("POST", "/v1/messages", "beta=true")),
    }
    print(f"profile: {len(settings.network.domains)} domain patterns, {len(settings.network.hooks)} hooks; "
          f"load+compile {load_ms:.1f} ms")
    print(f"{'scenario':<32} {'µs/decision':>12} {'goal/actual':>12}")
    worst = 0.0
    for name, (target, request) in scenarios.items():
        def call(target=target, request=request):
            return policy.decide(target, request)
        call()
        us = min(measure(call, 20000) for _ in range(3))
        worst = max(worst, us)
        print(f"{name:<32} {us:>12.2f} {GOAL_US / us:>11.1f}x")
    print(f"worst case {worst:.2f} µs vs goal {GOAL_US} µs: {'MET' if worst < GOAL_US else 'MISSED'}")


if __name__ == "__main__":
    main()
