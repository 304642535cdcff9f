"""What the model was asked, for the decision event: the OpenTelemetry GenAI attributes of one call.

Pure. Names, models and token counts only, never prompt or completion text. The provider and the
operation come from the endpoint (its declared API shape, else its host and path); the request model
from the request body (or a Gemini path); the response model and usage from the answer, whole or
streamed: ``observe`` sees each JSON document (a whole body, one SSE event, one element of a JSON
array) as the restorer already parsed it, so a stream is never buffered for them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

APIS = ("anthropic", "openai", "gemini")
# Provider names of the GenAI semantic conventions, by host; other hosts use their API shape's name.
_PROVIDERS = (
    ("api.anthropic.com", "anthropic"),
    ("api.openai.com", "openai"),
    ("generativelanguage.googleapis.com", "gcp.gemini"),
    ("aiplatform.googleapis.com", "gcp.vertex_ai"),
    ("openai.azure.com", "azure.ai.openai"),
    ("api.deepseek.com", "deepseek"),
    ("api.mistral.ai", "mistral_ai"),
    ("api.groq.com", "groq"),
    ("api.x.ai", "x_ai"),
    ("api.perplexity.ai", "perplexity"),
)
_API_PROVIDER = {"anthropic": "anthropic", "openai": "openai", "gemini": "gcp.gemini"}
_GEMINI_MODEL = re.compile(r"/models/([^/:]+):")


def infer_api(host: str, path: str) -> str | None:
    """The API shape an endpoint speaks when its config does not say: by host, then by path."""
    host = host.lower().rstrip(".")
    if host == "api.anthropic.com" or host.endswith(".anthropic.com"):
        return "anthropic"
    if host.endswith("googleapis.com"):
        return "gemini"
    if host == "api.openai.com" or host.endswith(".openai.azure.com"):
        return "openai"
    lowered = path.lower()
    if "/messages" in lowered or lowered.endswith("/complete"):
        return "anthropic"
    if "generatecontent" in lowered:
        return "gemini"
    if any(part in lowered for part in ("/chat/completions", "/responses", "/completions", "/embeddings")):
        return "openai"
    return None


def provider_name(api: str | None, host: str) -> str | None:
    host = host.lower().rstrip(".")
    for suffix, name in _PROVIDERS:
        if host == suffix or host.endswith("." + suffix):
            return name
    return _API_PROVIDER.get(api or "")


def operation_name(api: str | None, path: str) -> str | None:
    lowered = path.lower()
    if "embed" in lowered:
        return "embeddings"
    if api == "gemini" or "generatecontent" in lowered:
        return "generate_content"
    if lowered.endswith("/completions") and not lowered.endswith("/chat/completions"):
        return "text_completion"
    if lowered.endswith("/complete"):
        return "text_completion"
    if api is not None or any(p in lowered for p in ("/messages", "/chat/completions", "/responses", "/realtime")):
        return "chat"
    return None


def _int(value: Any) -> int | None:
    return value if type(value) is int and value >= 0 else None


def _model(value: Any) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= 200 else None


@dataclass
class GenAI:
    """Filled in as one LLM call travels; ``attributes`` gives what is known."""

    api: str | None
    provider: str | None
    operation: str | None
    request_model: str | None = None
    response_model: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    channel: bool = False   # a WebSocket: each ``response.completed``/``response.done`` is one more response

    @classmethod
    def describe(cls, api: str | None, host: str, path: str) -> GenAI:
        api = api or infer_api(host, path)
        found = _GEMINI_MODEL.search(path)
        return cls(api, provider_name(api, host), operation_name(api, path),
                   request_model=found.group(1) if found else None)

    def request(self, body: Any) -> None:
        """The request body as forwarded (redacted): its ``model``, when it names one."""
        if isinstance(body, dict) and self.request_model is None:
            self.request_model = _model(body.get("model"))

    def observe(self, payload: Any) -> None:
        """One JSON document of the answer (whole, an SSE event, or a stream array's element)."""
        if isinstance(payload, list):
            for item in payload[:10_000]:
                self.observe(item)
            return
        if not isinstance(payload, dict):
            return
        kind = payload.get("type")
        if self.channel:   # only a finished response counts (response.created repeats a usage, if any)
            if kind in ("response.completed", "response.done", "response.incomplete", "response.failed"):
                self._add(payload.get("response"))
            return
        if kind == "message_start" and isinstance(payload.get("message"), dict):          # Anthropic stream
            payload = payload["message"]
        elif isinstance(kind, str) and kind.startswith("response.") and isinstance(payload.get("response"), dict):
            payload = payload["response"]                                                # Responses stream
        model = _model(payload.get("model")) or _model(payload.get("modelVersion"))
        if model is not None:
            self.response_model = model
        usage = payload.get("usage")
        if isinstance(usage, dict):
            # Anthropic and Responses: input/output_tokens; Chat Completions: prompt/completion_tokens.
            # Anthropic's message_delta repeats the running output count (the last one is the total).
            tokens_in = _int(usage.get("input_tokens"))
            if tokens_in is None:
                tokens_in = _int(usage.get("prompt_tokens"))
            tokens_out = _int(usage.get("output_tokens"))
            if tokens_out is None:
                tokens_out = _int(usage.get("completion_tokens"))
            if tokens_in is not None:
                self.input_tokens = tokens_in
            if tokens_out is not None:
                self.output_tokens = tokens_out
        metadata = payload.get("usageMetadata")   # Gemini: every streamed chunk carries the totals so far
        if isinstance(metadata, dict):
            tokens_in = _int(metadata.get("promptTokenCount"))
            tokens_out = _int(metadata.get("candidatesTokenCount"))
            if tokens_in is not None:
                self.input_tokens = tokens_in
            if tokens_out is not None:
                self.output_tokens = tokens_out

    def _add(self, response: Any) -> None:
        """One more response on a channel: its model, and its usage added to the channel's."""
        if not isinstance(response, dict):
            return
        model = _model(response.get("model"))
        if model is not None:
            self.response_model = model
        usage = response.get("usage")
        if isinstance(usage, dict):
            tokens_in, tokens_out = _int(usage.get("input_tokens")), _int(usage.get("output_tokens"))
            if tokens_in is not None:
                self.input_tokens = (self.input_tokens or 0) + tokens_in
            if tokens_out is not None:
                self.output_tokens = (self.output_tokens or 0) + tokens_out

    def attributes(self) -> dict[str, Any]:
        found = {
            "gen_ai.provider.name": self.provider,
            "gen_ai.operation.name": self.operation,
            "gen_ai.request.model": self.request_model,
            "gen_ai.response.model": self.response_model,
            "gen_ai.usage.input_tokens": self.input_tokens,
            "gen_ai.usage.output_tokens": self.output_tokens,
        }
        return {key: value for key, value in found.items() if value is not None}
