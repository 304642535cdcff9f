"""A parsed TOML document that remembers on which line each key was written; the loader's reads.

``tomllib`` gives values but no positions; error messages must name the line, so a small scanner
walks the text once and records the line of every key path (table headers, dotted keys, keys inside
inline tables, and array-of-tables entries by index).

With ``load.py`` (which finds the files), this is the only part of the pure core that reads the file
system or the environment: the TOML files, secret files and the process environment that the policy
compiler receives as injectable defaults (``read_secret_file``, ``process_environment``).
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from policyproxy.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

KeyPath = tuple[str | int, ...]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_TOML_LINE = re.compile(r"\(at line (\d+), column \d+\)")


def format_key(path: KeyPath) -> str:
    """``("permissions", "ws", "domains", "a.b", 0)`` -> ``permissions.ws.domains."a.b"[0]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        text = part if _BARE_KEY.fullmatch(part) else '"' + part.replace('"', '\\"') + '"'
        out += f".{text}" if out else text
    return out


@dataclass(frozen=True)
class TomlSource:
    """One TOML file: its data and the line of each key path written in it."""

    path: Path
    data: Mapping[str, Any]
    lines: Mapping[KeyPath, int] = field(repr=False)

    def line_of(self, path: KeyPath) -> int | None:
        """The line of ``path``, or of its nearest written ancestor."""
        for end in range(len(path), 0, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return None

    def error(self, path: KeyPath, message: str) -> ConfigError:
        return ConfigError(message, file=self.path, line=self.line_of(path), key=format_key(path))


def read_secret_file(path: str) -> str:
    """A secret file's text, trimmed; the default reader of ``compile_policy``."""
    return Path(path).read_text(encoding="utf-8").strip()


def process_environment() -> Mapping[str, str]:
    """This process's environment; the default of ``compile_policy``'s ``env``."""
    return os.environ


def load_toml(path: Path) -> TomlSource:
    """Read and parse ``path``; a syntax error names the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot be read: {exc.strerror or exc}", file=path) from None
    except UnicodeDecodeError:
        raise ConfigError("is not valid UTF-8", file=path) from None
    return parse_toml(text, path)


def parse_toml(text: str, path: Path) -> TomlSource:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = _TOML_LINE.search(str(exc))
        line = int(match.group(1)) if match else None
        detail = _TOML_LINE.sub("", str(exc)).strip()
        raise ConfigError(f"is not valid TOML: {detail}", file=path, line=line) from None
    return TomlSource(path=path, data=data, lines=_scan_key_lines(text))


def _scan_key_lines(text: str) -> dict[KeyPath, int]:
    """Map each key path to the line it is written on (1-based). Best effort, never raises."""
    lines: dict[KeyPath, int] = {}
    array_counts: dict[KeyPath, int] = {}
    table: KeyPath = ()
    # Stack of open containers inside a value: ("{", path) for inline tables, ("[", path) for arrays.
    stack: list[tuple[str, KeyPath]] = []
    expect_key = True
    i, n, line_no = 0, len(text), 1

    def read_key(pos: int) -> tuple[list[str], int]:
        parts: list[str] = []
        while pos < n:
            while pos < n and text[pos] in " \t":
                pos += 1
            if pos >= n:
                break
            ch = text[pos]
            if ch in "\"'":
                end = text.find(ch, pos + 1)
                if end < 0:
                    return parts, n
                raw = text[pos + 1:end]
                parts.append(raw if ch == "'" else _unescape_basic(raw))
                pos = end + 1
            else:
                m = _BARE_KEY.match(text, pos)
                if not m:
                    break
                parts.append(m.group(0))
                pos = m.end()
            while pos < n and text[pos] in " \t":
                pos += 1
            if pos < n and text[pos] == ".":
                pos += 1
                continue
            break
        return parts, pos

    while i < n:
        ch = text[i]
        if ch == "\n":
            line_no += 1
            i += 1
            if not stack:
                expect_key = True
            continue
        if ch in " \t\r":
            i += 1
            continue
        if ch == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        if not stack and expect_key and ch == "[":
            is_array = text.startswith("[[", i)
            parts, pos = read_key(i + (2 if is_array else 1))
            table = tuple(parts)
            if is_array:
                index = array_counts.get(table, 0)
                array_counts[table] = index + 1
                lines.setdefault(table, line_no)
                table = (*table, index)
            lines.setdefault(table, line_no)
            end = text.find("\n", pos)
            i = n if end < 0 else end
            continue
        if expect_key and (not stack or stack[-1][0] == "{"):
            parts, pos = read_key(i)
            if parts and pos < n and text[pos] == "=":
                base = stack[-1][1] if stack else table
                key_path = (*base, *parts)
                lines.setdefault(key_path, line_no)
                expect_key = False
                i = pos + 1
                current_value_path = key_path
                # Remember where a container opened by this value lives.
                j = i
                while j < n and text[j] in " \t":
                    j += 1
                if j < n and text[j] in "{[":
                    stack.append((text[j], current_value_path))
                    expect_key = text[j] == "{"
                    i = j + 1
                continue
            expect_key = False
        if ch in "\"'":
            end = _skip_string(text, i)
            line_no += text.count("\n", i, end)
            i = end
            continue
        if ch in "{[":
            parent = stack[-1][1] if stack else table
            stack.append((ch, parent))
            expect_key = ch == "{"
        elif ch in "}]":
            if stack:
                stack.pop()
        elif ch == "," and stack and stack[-1][0] == "{":
            expect_key = True
        i += 1
    return lines


def _skip_string(text: str, i: int) -> int:
    """Index just past the string literal that starts at ``i``."""
    quote = text[i]
    if text.startswith(quote * 3, i):
        end = text.find(quote * 3, i + 3)
        if end < 0:
            return len(text)
        end += 3
        while end < len(text) and text[end] == quote:  # up to two quotes may close the content
            end += 1
        return end
    j = i + 1
    while j < len(text) and text[j] not in "\n":
        if quote == '"' and text[j] == "\\":
            j += 2
            continue
        if text[j] == quote:
            return j + 1
        j += 1
    return j


def _unescape_basic(raw: str) -> str:
    if "\\" not in raw:
        return raw
    try:
        return str(tomllib.loads(f'k = "{raw}"')["k"])
    except tomllib.TOMLDecodeError:
        return raw
