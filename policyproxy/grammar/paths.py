"""One canonical path per request, so that no encoding can slip past a path prefix.

``normalize_path`` is what the proxy matches *and* what it forwards upstream, so the upstream sees
exactly the path that was checked: unreserved characters percent-decoded, other escapes upper-cased,
``.``/``..`` segments resolved (RFC 3986 5.2.4), runs of ``/`` collapsed. A path whose meaning
depends on the server is refused instead (None): raw control, space, backslash, ``#`` or non-ASCII,
a broken escape, an encoded NUL, a ``.``/``..`` hidden behind an encoded ``/`` or ``\\``, or a
segment that is empty, ``.`` or ``..`` once its path parameters are cut off (``..;x``, ``.;``,
``%2e%2e%3b``, ``;x``): servlet containers (Tomcat, Jetty, Spring) drop ``;`` parameters before
resolving dot-segments, so ``/repos/myorg/..;/other`` reaches ``/repos/other`` there. A segment of
three or more dots only (``...``) is refused too: servers that trim trailing dots read it as ``..``. Parameters on
ordinary segments (``/repos;x/myorg``) are kept as written: a literal prefix does not match them, so
they cannot widen what a hook allows. The function is idempotent.
"""

from __future__ import annotations

import re
from functools import lru_cache

_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_FORBIDDEN = re.compile(r"[\x00-\x20\x7f\\#?]|[^\x00-\x7f]")
_HIDDEN_SEPARATOR = re.compile(r"%(2F|5C)", re.IGNORECASE)
_PARAMETER = re.compile(r";|%3B", re.IGNORECASE)   # escapes are upper-cased by then; IGNORECASE for safety


@lru_cache(maxsize=8192)
def normalize_path(raw: str) -> str | None:
    if not raw.startswith("/") or _FORBIDDEN.search(raw):
        return None
    if "%" in raw:
        if raw.count("%") != len(_ESCAPE.findall(raw)):
            return None  # a '%' not followed by two hex digits
        decoded = _ESCAPE.sub(_decode_unreserved, raw)
        if "%00" in decoded:
            return None
    else:
        decoded = raw
    segments = decoded.split("/")
    out: list[str] = []
    for segment in segments[1:]:
        if segment in ("", "."):
            continue
        if segment == "..":
            if out:
                out.pop()
            continue
        if "%" in segment and any(p in (".", "..") for p in _HIDDEN_SEPARATOR.split(segment)[::2]):
            return None
        head = _PARAMETER.split(segment, 1)[0] if ";" in segment or "%3B" in segment else segment
        if head in ("", ".", "..") and head != segment:
            return None   # "..;x": a dot-segment once the parameters are cut
        if head.startswith("...") and not head.strip("."):
            return None   # dots only: servers that trim trailing dots (Windows, IIS) read it as ".."
        out.append(segment)
    path = "/" + "/".join(out)
    last = segments[-1]
    if out and (last in ("", ".", "..")):
        path += "/"
    return path


def _decode_unreserved(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return char if char in _UNRESERVED else "%" + match.group(1).upper()


_SEPARATOR_ESCAPE = re.compile(r"%(?:2F|5C)", re.IGNORECASE)


def lenient_path(path: str) -> str:
    """``path`` (normalised) as the most lenient server would route it, for matching only.

    Where missing a match leaks rather than denies (a redaction endpoint: an unmatched path goes out
    uninspected), the path must also be read the way some server could: Starlette/uvicorn (vLLM,
    LiteLLM) decode ``%2F`` before routing, IIS reads ``%5C`` as ``/``, servlet containers cut
    ``;params`` off each segment. ``/v1%2Fmessages`` and ``/v1;x/messages`` give ``/v1/messages``.
    """
    if "%" not in path and ";" not in path:
        return path
    decoded = _SEPARATOR_ESCAPE.sub("/", path)
    cut = "/".join(_PARAMETER.split(segment, 1)[0] for segment in decoded.split("/"))
    return normalize_path(cut) or cut
