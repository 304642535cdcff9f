"""Typed reads from parsed TOML that collect every error with its file, line and key path."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from policyproxy.config.source import KeyPath, TomlSource, format_key
from policyproxy.errors import ConfigError

E = TypeVar("E")
Locator = Callable[[KeyPath], tuple[TomlSource, KeyPath]]


def _toml_type(value: object) -> str:
    return {bool: "a boolean", int: "an integer", float: "a float", str: "a string",
            list: "an array", dict: "a table"}.get(type(value), type(value).__name__)


class Reader:
    """Reads values at logical key paths; ``locate`` maps a logical path to where it was written.

    Logical paths are relative to the thing being read (a profile's network table after
    ``extends`` merged several); the locator names the profile and file that really hold the key.
    """

    def __init__(self, locate: Locator) -> None:
        self.locate = locate
        self.errors: list[ConfigError] = []

    def where(self, path: KeyPath) -> tuple[str, int | None, str]:
        source, full = self.locate(path)
        return str(source.path), source.line_of(full), format_key(full)

    def error(self, path: KeyPath, message: str) -> None:
        file, line, key = self.where(path)
        self.errors.append(ConfigError(message, file=file, line=line, key=key))

    def table(self, value: object, path: KeyPath, known: Iterable[str] | None = None) -> dict[str, Any]:
        """``value`` as a table; with ``known``, every other key is reported."""
        if not isinstance(value, dict):
            self.error(path, f"must be a table, got {_toml_type(value)}")
            return {}
        if known is not None:
            known_set = set(known)
            for key in value:
                if key not in known_set:
                    self.error((*path, key), f"is not a known key (expected one of: {', '.join(sorted(known_set))})")
        return value

    def get(self, table: Mapping[str, Any], key: str, path: KeyPath, kind: type, default: Any) -> Any:
        if key not in table:
            return default
        value = table[key]
        if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
            self.error((*path, key), f"must be {_toml_type(kind())}, got {_toml_type(value)}")
            return default
        return value

    def string_list(self, table: Mapping[str, Any], key: str, path: KeyPath) -> tuple[str, ...]:
        if key not in table:
            return ()
        value = table[key]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.error((*path, key), "must be an array of strings")
            return ()
        return tuple(value)

    def choice(self, table: Mapping[str, Any], key: str, path: KeyPath, enum: Callable[[str], E],
               options: Iterable[str], default: E) -> E:
        value = self.get(table, key, path, str, None)
        if value is None:
            return default
        try:
            return enum(value)
        except ValueError:
            choices = " or ".join(f'"{o}"' for o in options)
            self.error((*path, key), f'must be {choices}, got "{value}"')
            return default

    def raise_if_any(self) -> None:
        if self.errors:
            from policyproxy.errors import ConfigErrors

            raise ConfigErrors(self.errors)
