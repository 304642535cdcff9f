"""The pure core stays pure: every core module is read by AST and held to these rules.

Core: ``grammar/``, ``config/``, ``policy/``, ``redaction/``, ``reasons.py``, ``responses.py``,
``errors.py``, ``telemetry/event.py`` and ``tls/clienthello.py`` (found by walking those folders, so a
new module is checked the day it is added). In each of them:

- no import of a module that does I/O, waits or runs concurrently: asyncio, socket, ssl, selectors,
  signal, sqlite3, threading, _thread, concurrent, multiprocessing, subprocess, time (the clock),
  http.client/http.server, urllib.request, socketserver, aiohttp, uvloop, httpx, requests,
  opentelemetry; nor ``__import__``/``import_module`` of one by a constant name;
- no import of the I/O shell: ``policyproxy.proxy``, ``policyproxy.cli``, ``policyproxy.tls.ca_store``,
  the telemetry sinks (``otel``, ``audit``, ``sink``, ``metrics``), ``policyproxy.stores``,
  ``policyproxy.offload`` (absolute, relative and ``from policyproxy import proxy`` forms alike);
- no clock read (``datetime.now``/``utcnow``/``today``, ``date.today``);
- no file system or environment access (``os``, ``open()``, ``io.open``, ``Path.read_text`` and the
  other ``Path`` I/O methods, ``importlib.resources``) - except in the loader, ``config/source.py``
  (reads the TOML files; secrets are read by the shell's ``secret_provider``)
  and ``config/load.py`` (finds the files: ``$POLICYPROXY_HOME``, ``~``, bundled profiles,
  ``/etc/policyproxy``). Everything else gets what they read as arguments.

And the layers point one way: ``grammar/`` imports no other ``policyproxy`` package, and
``config/`` does not import ``policy/`` (the policy compiles the config, not the reverse).

Dynamic imports by a computed name cannot be seen by an AST walk; ``redaction/inspect.py`` imports
the optional decompressors (brotli, zstandard) that way.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "policyproxy"
CORE_DIRS = ("grammar", "config", "policy", "redaction")
CORE_FILES = ("reasons.py", "responses.py", "errors.py", "telemetry/event.py", "tls/clienthello.py")
LOADERS = frozenset({"config/source.py", "config/load.py"})

FORBIDDEN_MODULES = frozenset({
    "asyncio", "socket", "ssl", "selectors", "signal", "sqlite3", "threading", "_thread", "concurrent",
    "multiprocessing", "subprocess", "time", "http.client", "http.server", "urllib.request", "socketserver",
    "aiohttp", "uvloop", "httpx", "requests", "opentelemetry",
})
SHELL_MODULES = (
    "policyproxy.proxy", "policyproxy.cli", "policyproxy.tls.ca_store", "policyproxy.telemetry.otel",
    "policyproxy.telemetry.audit", "policyproxy.telemetry.sink", "policyproxy.telemetry.metrics",
    "policyproxy.stores", "policyproxy.offload", "policyproxy.__main__",
)
LOADER_ONLY_MODULES = frozenset({"os", "io", "importlib.resources", "shutil", "tempfile", "glob"})
# Path methods that do I/O: the distinctive names are refused on any receiver (a parameter typed
# Path cannot be told apart by an AST walk), the generic ones (str.replace!) only on Path(...) exprs.
PATH_IO_ANYWHERE = frozenset({
    "read_text", "read_bytes", "write_text", "write_bytes", "iterdir", "rglob", "mkdir", "unlink",
    "chmod", "rmdir", "symlink_to", "expanduser", "is_file", "is_dir", "lstat",
})
PATH_IO = PATH_IO_ANYWHERE | {"touch", "exists", "stat", "home", "cwd", "glob", "resolve", "rename", "replace", "samefile",
                              "owner"}
CLOCK = frozenset({"now", "utcnow", "today"})

# TEMPORARY exclusions, each with the fix that deletes it; any other finding is a real defect.
TEMPORARY: dict[str, frozenset[str]] = {
}


# Sans-IO modules that live in the shell's folder (beside the I/O that drives them); held to the same
# rules, so core modules may import them (responses.py renders SOCKS5 replies with the codec).
PURE_IN_SHELL = ("proxy/socks5_codec.py", "proxy/headers.py", "proxy/target.py")
PURE_IN_SHELL_MODULES = frozenset(f"policyproxy.{f.removesuffix('.py').replace('/', '.')}" for f in PURE_IN_SHELL)


def core_modules(root: Path = PACKAGE) -> list[Path]:
    found = [p for d in CORE_DIRS for p in sorted((root / d).rglob("*.py"))]
    return found + [root / f for f in CORE_FILES]


def _module_name(relpath: str) -> str:
    parts = relpath.removesuffix(".py").split("/")
    return ".".join(["policyproxy", *parts]).removesuffix(".__init__")


def _imported(node: ast.AST, relpath: str) -> list[str]:
    """Dotted names an import statement brings in (relative imports resolved against ``relpath``)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        package = _module_name(relpath).split(".")
        if not relpath.endswith("__init__.py"):
            package = package[:-1]
        package = package[:len(package) - (node.level - 1)]
        base = ".".join([*package, base]) if base else ".".join(package)
    return [base] + [f"{base}.{alias.name}" for alias in node.names]


def _within(name: str, roots: frozenset[str] | tuple[str, ...]) -> str | None:
    for root in roots:
        if name == root or name.startswith(root + "."):
            return root
    return None


def findings(source: str, relpath: str) -> set[str]:
    """Every rule ``source`` (the text of core module ``relpath``) breaks, as short phrases."""
    found: set[str] = set()
    loader = relpath in LOADERS
    grammar = relpath.startswith("grammar/")
    aliases: dict[str, str] = {}   # local name -> module it names, for os.x / time.x / Path calls
    for node in ast.walk(ast.parse(source)):
        names = _imported(node, relpath)   # the module first, then module.name for each name taken
        hit = next((n for n in names if _within(n, FORBIDDEN_MODULES)), None)
        if hit:
            found.add(f"imports {hit}")
        # ``from policyproxy.proxy import socks5_codec`` names the package first: judge what is taken.
        taken = names[1:] if isinstance(node, ast.ImportFrom) and len(names) > 1 else names
        shell = next((root for n in taken if (root := _within(n, SHELL_MODULES))
                      and not _within(n, PURE_IN_SHELL_MODULES)), None)
        if shell:
            found.add(f"imports the I/O shell ({shell})")
        hit = next((n for n in names if _within(n, LOADER_ONLY_MODULES)), None)
        if hit and not loader:
            found.add(f"imports {hit} (file system/environment)")
        hit = next((n for n in names if n.startswith("policyproxy.") and not n.startswith("policyproxy.grammar")), None)
        if hit and grammar:
            found.add(f"grammar imports {hit}")
        hit = next((n for n in names if _within(n, ("policyproxy.policy",))), None)
        if hit and relpath.startswith("config/"):
            found.add(f"config imports {hit}")
        if isinstance(node, ast.Import):
            for alias in node.names:
                aliases[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if (isinstance(func, ast.Name) and func.id in ("__import__", "import_module")) or (
                isinstance(func, ast.Attribute) and func.attr == "import_module"):
            arg = node.args[0] if node.args else None
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and _within(arg.value, FORBIDDEN_MODULES):
                found.add(f"imports {arg.value}")
        if isinstance(func, ast.Name) and func.id == "open" and not loader:
            found.add("calls open (file system)")
        if not isinstance(func, ast.Attribute):
            continue
        module = _dotted(func.value, aliases)
        if func.attr in CLOCK and module in ("datetime.datetime", "datetime.date", "datetime"):
            found.add(f"reads the clock (datetime.{func.attr})")
        if loader:
            continue
        if module in ("os", "io", "os.path"):
            found.add(f"calls {module}.{func.attr} (file system/environment)")
        elif func.attr in PATH_IO_ANYWHERE or (func.attr in PATH_IO and (
                module == "pathlib.Path" or _is_path_expr(func.value, aliases))):
            found.add(f"calls Path.{func.attr} (file system)")
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Attribute) and not loader and node.attr in ("environ", "environb", "getenv")
                and _dotted(node.value, aliases) == "os"):
            found.add("reads the environment (os.environ)")
    return found


def _dotted(node: ast.AST, aliases: dict[str, str]) -> str | None:
    """The dotted name an expression such as ``os``, ``o`` (``import os as o``) or ``datetime.datetime``
    stands for, with the module's import aliases resolved; None for anything else."""
    if isinstance(node, ast.Name):
        return aliases.get(node.id, node.id)
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value, aliases)
        return f"{base}.{node.attr}" if base else None
    return None


def _is_path_expr(node: ast.AST, aliases: dict[str, str]) -> bool:
    """``Path(...)``, ``Path(...) / x`` or a name the module bound to ``pathlib.Path``."""
    if isinstance(node, ast.BinOp):
        return _is_path_expr(node.left, aliases)
    if isinstance(node, ast.Attribute):   # Path(x).parent
        return _is_path_expr(node.value, aliases)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return aliases.get(node.func.id) == "pathlib.Path"
    return isinstance(node, ast.Name) and aliases.get(node.id) == "pathlib.Path"


def _rel(path: Path) -> str:
    return path.relative_to(PACKAGE).as_posix()


@pytest.mark.parametrize("module", core_modules() + [PACKAGE / f for f in PURE_IN_SHELL if (PACKAGE / f).exists()],
                         ids=_rel)
def test_core_module_is_pure(module):
    rel = _rel(module)
    left = findings(module.read_text(encoding="utf-8"), rel) - TEMPORARY.get(rel, frozenset())
    assert not left, f"{rel}: {sorted(left)}"


def test_the_walk_covers_every_core_package():
    walked = {_rel(p) for p in core_modules()}
    for expected in ("grammar/hosts.py", "grammar/headers.py", "config/network.py", "config/load.py",
                     "policy/decide.py", "redaction/engine.py", "reasons.py", "telemetry/event.py"):
        assert expected in walked
    assert all((PACKAGE / f).is_file() for f in CORE_FILES)


def test_temporary_exclusions_still_name_real_findings():
    """An exclusion that no longer matches anything must be deleted, not left to hide a future one."""
    for rel, excused in TEMPORARY.items():
        path = PACKAGE / rel
        if not path.exists():
            continue   # moved out: delete the entry
        stale = excused - findings(path.read_text(encoding="utf-8"), rel)
        assert not stale, f"{rel}: stale TEMPORARY entries {sorted(stale)}"


# ---- the check itself can fail -------------------------------------------------------------------

IMPURE = [
    ("import socket", "imports socket"),
    ("import socket as s", "imports socket"),
    ("from socket import socket", "imports socket"),
    ("import asyncio.streams", "imports asyncio.streams"),
    ("from concurrent.futures import ThreadPoolExecutor", "imports concurrent.futures"),
    ("import sqlite3", "imports sqlite3"),
    ("from time import monotonic", "imports time"),
    ("import ssl", "imports ssl"),
    ("import subprocess", "imports subprocess"),
    ("from aiohttp import web", "imports aiohttp"),
    ("from urllib.request import urlopen", "imports urllib.request"),
    ("x = __import__('socket')", "imports socket"),
    ("import importlib\nm = importlib.import_module('threading')", "imports threading"),
    ("from policyproxy.proxy.app import ProxyApp", "imports the I/O shell (policyproxy.proxy)"),
    ("from policyproxy import cli", "imports the I/O shell (policyproxy.cli)"),
    ("from ..proxy import forward", "imports the I/O shell (policyproxy.proxy)"),
    ("from ..telemetry.otel import Exporter", "imports the I/O shell (policyproxy.telemetry.otel)"),
    ("import policyproxy.tls.ca_store", "imports the I/O shell (policyproxy.tls.ca_store)"),
    ("from policyproxy.stores.sqlite import MappingStore", "imports the I/O shell (policyproxy.stores)"),
    ("import os\nx = os.environ['HOME']", "reads the environment (os.environ)"),
    ("import os as o\nx = o.getenv('HOME')", "reads the environment (os.environ)"),
    ("from os import environ", "imports os (file system/environment)"),
    ("def f(p):\n    return p.parent.read_text()", "calls Path.read_text (file system)"),
    ("def f(p):\n    p.mkdir(parents=True)", "calls Path.mkdir (file system)"),
    ("x = open('/etc/passwd').read()", "calls open (file system)"),
    ("from pathlib import Path\nx = Path('/etc/passwd').read_text()", "calls Path.read_text (file system)"),
    ("from pathlib import Path\nx = (Path('/') / 'etc').exists()", "calls Path.exists (file system)"),
    ("from pathlib import Path\nx = Path.home()", "calls Path.home (file system)"),
    ("from datetime import datetime\nx = datetime.now()", "reads the clock (datetime.now)"),
    ("import datetime\nx = datetime.datetime.now()", "reads the clock (datetime.now)"),
    ("import datetime as dt\nx = dt.date.today()", "reads the clock (datetime.today)"),
]


@pytest.mark.parametrize(("source", "finding"), IMPURE)
def test_a_synthetic_impure_module_is_caught(source, finding):
    assert finding in findings(source, "policy/planted.py")


def test_clock_reads_through_the_class_are_caught():
    assert "reads the clock (datetime.today)" in findings("from datetime import date\nx = date.today()", "policy/x.py")
    assert "reads the clock (datetime.utcnow)" in findings(
        "from datetime import datetime as D\nx = D.utcnow()", "policy/x.py")


def test_grammar_may_not_import_config_or_policy():
    assert "grammar imports policyproxy.config.schema" in findings(
        "from policyproxy.config.schema import Settings", "grammar/planted.py")
    assert "grammar imports policyproxy.policy" in findings("from ..policy import model", "grammar/planted.py")
    assert not findings("from policyproxy.grammar.hosts import normalize_host", "grammar/planted.py")
    assert "config imports policyproxy.policy.model" in findings(
        "from policyproxy.policy.model import Secret", "config/planted.py")


def test_the_loader_may_read_files_and_the_environment_but_nothing_else():
    source = "import os\nfrom pathlib import Path\nx = os.environ.get('A')\ny = Path('a').read_text()\nopen('b')"
    assert not findings(source, "config/source.py")
    assert findings(source, "config/network.py") >= {"reads the environment (os.environ)",
                                                      "calls Path.read_text (file system)", "calls open (file system)"}
    assert "imports socket" in findings("import socket", "config/load.py")


def test_a_pure_module_has_no_findings():
    source = ("import re, ipaddress, json\nfrom pathlib import Path\nfrom dataclasses import dataclass\n"
              "from policyproxy.grammar.paths import normalize_path\nP = Path('/etc/policyproxy/x.toml')\n"
              "def f(s: str) -> str:\n    return re.sub('a', 'b', s).strip()\n")
    assert findings(source, "policy/pure.py") == set()


def test_a_planted_module_on_disk_is_walked_and_caught(tmp_path):
    """End to end: a file dropped into a core sub-folder is found by the walk and refused."""
    fake = tmp_path / "policyproxy"
    (fake / "redaction" / "walkers").mkdir(parents=True)
    (fake / "redaction" / "walkers" / "planted.py").write_text("import socket\n", encoding="utf-8")
    modules = [p for p in core_modules(fake) if p.exists()]
    caught = {p.relative_to(fake).as_posix(): findings(p.read_text(), p.relative_to(fake).as_posix()) for p in modules}
    assert caught == {"redaction/walkers/planted.py": {"imports socket"}}


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
    from tests.helpers import provider, settings

    decision = request(policy(tmp_path, text, env={"KEY": "canary-7f3a"}), "GET", "api.x.com", "/")
    secrets = provider(settings(tmp_path, text), {"KEY": "canary-7f3a"})
    # The decision holds a reference only; the shell's provider holds the value and never prints it.
    assert decision.edits.inject[0][1].secret.describe() == "env:KEY"
    assert secrets.lookup(decision.edits.inject[0][1].secret).reveal() == "canary-7f3a"
    assert "canary" not in repr(decision) and "canary" not in str(decision)
    assert "canary" not in repr(secrets.lookup(decision.edits.inject[0][1].secret))
