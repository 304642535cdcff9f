"""The optional placeholder explainer (``redaction.explain_placeholders``): a short system note that
placeholders are opaque and must be echoed verbatim, so the model uses them instead of guessing.

It is added to every request on the endpoint (not only those with placeholders), always the same
text in the same place, and AFTER the client's own system text: what the client marked for prompt
caching (Anthropic ``cache_control`` on tools or system blocks, OpenAI's automatic prefix caching of
leading system messages and ``instructions``) keeps its exact prefix, and later turns keep matching
the first. Prepending to the first system block (anon-proxy's way) would move every cached prefix.
"""

from __future__ import annotations

from typing import Any

EXPLAINER = ("Some values in this conversation were replaced by placeholders such as [[EMAIL_1a2b3c4d]]. "
             "Placeholders are opaque: do not guess, expand or alter them; when you refer to such a value, "
             "write its placeholder exactly as it appears.")


def add_explainer(body: Any, path: str) -> Any:
    """``body`` with the note added for Anthropic Messages, OpenAI Chat Completions and Responses;
    any other shape unchanged."""
    if not isinstance(body, dict):
        return body
    path = path.lower()
    if "/messages" in path and isinstance(body.get("messages"), list):
        return _anthropic(body)
    if path.endswith("/chat/completions") and isinstance(body.get("messages"), list):
        return _chat(body)
    if path.endswith("/responses") and "input" in body:
        return _responses(body)
    return body


def _anthropic(body: dict[str, Any]) -> dict[str, Any]:
    system = body.get("system")
    if system is None or system == "":
        return {**body, "system": EXPLAINER}
    if isinstance(system, str):
        return body if system.endswith(EXPLAINER) else {**body, "system": f"{system}\n\n{EXPLAINER}"}
    if isinstance(system, list):
        last = system[-1] if system else None
        if isinstance(last, dict) and last.get("text") == EXPLAINER:
            return body
        return {**body, "system": [*system, {"type": "text", "text": EXPLAINER}]}   # no cache_control of ours
    return body


def _chat(body: dict[str, Any]) -> dict[str, Any]:
    messages = body["messages"]
    lead = 0
    while lead < len(messages) and isinstance(messages[lead], dict) and \
            messages[lead].get("role") in ("system", "developer"):
        lead += 1
    if lead and messages[lead - 1].get("content") == EXPLAINER:
        return body
    role = messages[lead - 1]["role"] if lead else "system"
    return {**body, "messages": [*messages[:lead], {"role": role, "content": EXPLAINER}, *messages[lead:]]}


def _responses(body: dict[str, Any]) -> dict[str, Any]:
    instructions = body.get("instructions")
    if not instructions:
        return {**body, "instructions": EXPLAINER}
    if isinstance(instructions, str) and not instructions.endswith(EXPLAINER):
        return {**body, "instructions": f"{instructions}\n\n{EXPLAINER}"}
    return body
