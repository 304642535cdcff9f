"""Imports inside ``policyproxy/proxy/`` point one way: the module graph (read with ``ast``) has no cycle,
and only the CLI imports the composition root."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "policyproxy"
PROXY = PACKAGE / "proxy"


def imports_of(path: Path, prefix: str) -> set[str]:
    """Modules under ``prefix`` that ``path`` imports, at any level (TYPE_CHECKING and local imports too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == prefix:
                found |= {f"{prefix}.{alias.name}" for alias in node.names}
            elif node.module.startswith(prefix + "."):
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith(prefix + ".")}
    return found


def graph() -> dict[str, set[str]]:
    modules = {f"policyproxy.proxy.{p.stem}": p for p in PROXY.glob("*.py") if p.stem != "__init__"}
    return {name: imports_of(path, "policyproxy.proxy") & modules.keys() for name, path in modules.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_proxy_imports_have_no_cycle():
    edges = graph()
    assert len(edges) > 10 and any(edges.values())   # the walk saw the package
    assert find_cycle(edges) is None


def test_only_the_cli_imports_the_composition_root():
    importers = [p.relative_to(PACKAGE) for p in PACKAGE.rglob("*.py")
                 if "policyproxy.proxy.server" in imports_of(p, "policyproxy.proxy")]
    assert importers == [Path("cli/serve.py")]
