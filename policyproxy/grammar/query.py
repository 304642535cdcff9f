"""Query strings as hook matchers read them, and the keys a server may read as another key.

``parse_query`` form-decodes ``&``-separated pairs (as ``parse_qsl(keep_blank_values=True)``).
Servers do not all stop there: some fold case (``State``), PHP and Rails read ``state[]`` and
``state[0]`` as ``state``, C code stops at a NUL (``state%00``, ``state%00x``), frameworks trim
spaces (``state+``, ``state%20``), Windows "best fit" and NFKC fold fullwidth letters
(``ｓｔａｔｅ``), PHP turns ``.`` into ``_``, and older stacks split on ``;`` too
(``a=1;state=all``). ``key_skeleton`` folds all of these to one spelling; a hook never matches a
request in which a key other than its own has the skeleton of one of its query keys, or in which
``;`` changes what one of its keys holds (``ambiguous_key``).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from urllib.parse import unquote_plus

_SEPARATORS = re.compile(r"[&;]")


def parse_query(raw: str, *, semicolons: bool = False) -> dict[str, list[str]]:
    """Form-decode a query string into key -> values; ``semicolons`` also splits on ``;``."""
    out: dict[str, list[str]] = {}
    decode = "%" in raw or "+" in raw   # most queries need no decoding: one scan instead of one per pair
    for part in _SEPARATORS.split(raw) if semicolons else raw.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        if decode and ("%" in part or "+" in part):
            key, value = unquote_plus(key), unquote_plus(value)
        values = out.get(key)
        if values is None:
            out[key] = [value]
        else:
            values.append(value)
    return out


@lru_cache(maxsize=4096)
def key_skeleton(key: str) -> str:
    """``key`` folded as lenient servers fold it: cut at a NUL (C strings) or ``[`` (PHP and Rails
    arrays: ``state[0]`` is ``state``), compatibility-decomposed, case-folded, ASCII letters and
    digits only (accents, spaces, dots, underscores dropped)."""
    head = key.split("\x00", 1)[0].split("[", 1)[0]
    folded = "".join(c for c in unicodedata.normalize("NFKD", head).casefold() if c.isascii() and c.isalnum())
    return folded or key


def ambiguous_key(raw: str, parsed: dict[str, list[str]], keys: frozenset[str],
                  skeletons: frozenset[str] | None = None) -> str | None:
    """The first request key a server may read as one of ``keys`` though it is not one, else None.

    ``parsed`` is ``parse_query(raw)``; ``skeletons`` those of ``keys``, when the caller keeps them.
    Also reports a key of ``keys`` whose values change when ``;`` separates pairs as well.
    """
    if skeletons is None:
        skeletons = frozenset(key_skeleton(k) for k in keys)
    for key in parsed:
        if key not in keys and key_skeleton(key) in skeletons:
            return key
    if ";" in raw:
        for key, values in parse_query(raw, semicolons=True).items():
            if key_skeleton(key) in skeletons and (key not in keys or parsed.get(key) != values):
                return key
    return None
