"""The core stays pure: no module of config/, policy/ or the vocabularies imports I/O frameworks."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "policyproxy"
CORE = [*sorted((PACKAGE / "policy").glob("*.py")), PACKAGE / "reasons.py", PACKAGE / "responses.py",
        PACKAGE / "telemetry" / "event.py", PACKAGE / "proxy" / "socks5_codec.py", PACKAGE / "proxy" / "headers.py"]
FORBIDDEN = {"asyncio", "aiohttp", "socket.socket", "ssl", "subprocess", "threading"}


@pytest.mark.parametrize("module", CORE, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_core_module_imports_no_io(module):
    tree = ast.parse(module.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & FORBIDDEN


def test_a_decision_never_shows_an_injected_secret(tmp_path):
    from tests.helpers import policy, request

    text = """
    [permissions.ws.network.domains]
    "api.x.com" = "allow"
    [permissions.ws.network.mitm.hooks.h]
    host = "api.x.com"
    methods = ["GET"]
    path_prefixes = ["/"]
    action = ["inject"]
    [permissions.ws.network.mitm.actions.inject]
    [[permissions.ws.network.mitm.actions.inject.inject_request_headers]]
    name = "x-api-key"
    secret_env_var = "KEY"
    """
    decision = request(policy(tmp_path, text, env={"KEY": "canary-7f3a"}), "GET", "api.x.com", "/")
    assert decision.edits.inject[0][1].reveal() == "canary-7f3a"
    assert "canary" not in repr(decision) and "canary" not in str(decision)
