"""Compact JSON out, fast: orjson when it can, the standard library when it cannot (ints beyond 64 bits).

Both give the same bytes for what providers send (compact separators, UTF-8 kept as is), so a body
that is re-serialised stays byte-stable from turn to turn and provider prompt caches keep matching.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def dumps(value: Any) -> bytes:
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
