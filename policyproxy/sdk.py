"""In-process policy for custom agents: an HTTP client whose transport runs the compiled policy, hooks,
redaction and restore, and emits the same decision events, inside the agent's process (no proxy, no CA)::

    import anthropic, policyproxy.sdk
    client = anthropic.Anthropic(http_client=policyproxy.sdk.client(config="policy.toml"))

``client`` and ``async_client`` return ``httpx2`` clients, the type the installed anthropic and openai
SDKs take as ``http_client`` (``httpx_client=`` for plain ``httpx`` callers). Each request is decided
as an intercepted one would be (``https_mitm`` on the event); a denied request gets the proxy's own 403
answer as a response, not an exception, so the SDK reports it as the API error it is.

What it does not do, by design: it does not resolve names itself, so the local-address rule on what a
name resolves to (``allow_local_binding``) applies to literal addresses and local names only; the
agent's process could open any socket anyway, so this is policy for a cooperating agent, not a sandbox.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx2

from policyproxy import responses
from policyproxy.config.load import load_settings
from policyproxy.config.schema import Settings
from policyproxy.policy.compile import compile_policy
from policyproxy.policy.decide import Policy
from policyproxy.policy.model import Decision, Request, Target
from policyproxy.proxy.headers import host_header, request_headers, response_headers
from policyproxy.proxy.inspector import redactor_for
from policyproxy.proxy.outcome import Outcome, Reporter
from policyproxy.proxy.restoring import Restore, response_scan, restorer
from policyproxy.reasons import Protocol, Reason, Verdict
from policyproxy.redaction.genai import GenAI
from policyproxy.redaction.inspect import inspect
from policyproxy.redaction.placeholders import Vaults
from policyproxy.redaction.restore import ResponseScan
from policyproxy.secret_provider import SecretProvider, SecretUnavailable

DEFAULT_PORTS = {"http": 80, "https": 443}
log = logging.getLogger("policyproxy.sdk")


class Engine:
    """The compiled config and what one agent process keeps between requests (its placeholder vault)."""

    def __init__(self, settings: Settings, audit_log: Path | None = None) -> None:
        from policyproxy.cli.serve import telemetry_sink  # the same audit log and exporter as ``serve``

        self.settings = settings
        self.policy: Policy = compile_policy(settings)
        self.secrets, _ = SecretProvider.for_settings(settings)   # a missing secret: ConfigErrors, as serve
        self.redactor = redactor_for(settings)
        spec = settings.network.redaction
        self.vaults = Vaults(ttl=spec.mapping_ttl_seconds if spec else 24 * 3600, clock=time.time)
        self.vault = self.vaults.for_scope("sdk")
        self.sink = telemetry_sink(settings, audit_log)
        self.reporter = Reporter()
        self.reporter.sinks.append(self.sink)

    def close(self) -> None:
        self.sink.close()

    def decide(self, request: httpx2.Request, body: bytes | None) -> tuple[Decision, Outcome, httpx2.Request | None,
                                                                           httpx2.Response | None]:
        """(decision, outcome, the request to send or None, the answer to give instead or None)."""
        url = request.url
        scheme = url.scheme
        port = url.port or DEFAULT_PORTS.get(scheme, 443)
        protocol = Protocol.HTTPS_MITM if scheme == "https" else Protocol.HTTP
        outcome = Outcome("in-process")
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw]
        decision = self.policy.decide(Target(url.host, port, protocol),
                                      Request(request.method, url.raw_path.decode("ascii").partition("?")[0],
                                              url.query.decode("ascii"), tuple(headers)))
        if decision.allowed and decision.redaction is not None:
            outcome.genai = GenAI.describe(decision.redaction.api, decision.host, decision.path or url.path)
            spec = self.settings.network.redaction
            if self.redactor is None or spec is None:
                return decision, outcome, None, self._answer(outcome, responses.text_answer(
                    403, "redaction is not configured for this endpoint"))
            if body:
                inspection = inspect(self.redactor, self.vault, decision, body,
                                     request.headers.get("content-encoding"), spec.max_body_bytes)
                decision, outcome.redactions = inspection.decision, inspection.counts
                if inspection.model is not None:
                    outcome.genai.request_model = outcome.genai.request_model or inspection.model
                if not decision.allowed:
                    answer = inspection.answer or responses.block_answer(decision)
                    return decision, outcome, None, self._answer(outcome, answer)
                body = inspection.body
        if not decision.allowed:
            return decision, outcome, None, self._answer(outcome, responses.block_answer(decision))
        try:
            # Secret values as read when the client was built (a rotated file or command is picked up by
            # ``serve``'s per-request refresh, which needs an event loop; here: build a new client).
            out = request_headers(headers, decision.edits, host_header(url.host, port, DEFAULT_PORTS.get(scheme, 443)),
                                  self.secrets.lookup)
        except SecretUnavailable as exc:
            decision = dataclasses.replace(decision, verdict=Verdict.DENY, reason=Reason.SECRET_UNAVAILABLE,
                                           message=f"hook {decision.hook!r} cannot inject its header: {exc}")
            return decision, outcome, None, self._answer(outcome, responses.block_answer(decision))
        if decision.redaction is not None:   # the answer must come uncompressed to be restored
            dropped = {"accept-encoding", "content-length", "content-encoding", "transfer-encoding"}
            out = [(k, v) for k, v in out if k.lower() not in dropped] + [("Accept-Encoding", "identity")]
            sent = httpx2.Request(request.method, url, headers=out, content=body or b"", extensions=request.extensions)
        else:
            sent = httpx2.Request(request.method, url, headers=out, stream=request.stream,
                                  extensions=request.extensions)
        return decision, outcome, sent, None

    @staticmethod
    def _answer(outcome: Outcome, answer: responses.Answer) -> httpx2.Response:
        outcome.status = answer.status
        return httpx2.Response(answer.status, headers=list(answer.headers), content=answer.body)

    def restoring(self, decision: Decision, outcome: Outcome, response: httpx2.Response,
                  request: httpx2.Request) -> tuple[Restore | None, ResponseScan | None]:
        outcome.status = response.status_code
        if decision.redaction is None or request.method == "HEAD" or response.status_code in (204, 304):
            return None, None
        scan = response_scan(self.settings, self.redactor, self.vault)
        observe = outcome.genai.observe if outcome.genai is not None else None
        return restorer(response, self.vault, scan, observe, request.url.path), scan

    def report(self, decision: Decision, outcome: Outcome, scan: ResponseScan | None) -> None:
        if scan is not None:
            outcome.emitted = scan.counts
        self.reporter.report(decision, outcome)


def _restored_headers(response: httpx2.Response, restore: Restore | None) -> list[tuple[str, str]]:
    raw = ((k.decode("latin-1"), v.decode("latin-1")) for k, v in response.headers.raw)
    return [(k, v) for k, v in response_headers(raw)
            if restore is None or k.lower() not in ("content-encoding", "content-length", "transfer-encoding")]


class _Stream(httpx2.SyncByteStream):
    def __init__(self, chunks: Iterator[bytes], done: Any) -> None:
        self.chunks, self.done = chunks, done

    def __iter__(self) -> Iterator[bytes]:
        yield from self.chunks

    def close(self) -> None:
        self.done()


class _AsyncStream(httpx2.AsyncByteStream):
    def __init__(self, chunks: AsyncIterator[bytes], done: Any) -> None:
        self.chunks, self.done = chunks, done

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.chunks:
            yield chunk

    async def aclose(self) -> None:
        await self.done()


class PolicyTransport(httpx2.BaseTransport):
    """Decide, inspect, send (through ``inner``), restore, report: the proxy's pipeline, in process."""

    def __init__(self, engine: Engine, inner: httpx2.BaseTransport | None = None) -> None:
        self.engine = engine
        self.inner = inner or httpx2.HTTPTransport()

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        engine = self.engine
        body = request.read() if request.method not in ("GET", "HEAD") else None
        decision, outcome, sent, answer = engine.decide(request, body)
        if answer is not None or sent is None:
            engine.report(decision, outcome, None)
            assert answer is not None
            return answer
        try:
            upstream = self.inner.handle_request(sent)
        except httpx2.TransportError:
            engine.report(decision, outcome, None)
            raise
        restore, scan = engine.restoring(decision, outcome, upstream, request)
        reported = False

        def done() -> None:
            nonlocal reported
            upstream.close()
            if not reported:
                reported = True
                engine.report(decision, outcome, scan)

        def chunks() -> Iterator[bytes]:
            if restore is not None and restore.whole:
                yield restore.whole_body(b"".join(upstream.stream))
                return
            for chunk in upstream.stream:
                out = restore.feed(chunk) if restore is not None else chunk
                if out:
                    yield out
            if restore is not None:
                tail = restore.close()
                if tail:
                    yield tail

        return httpx2.Response(upstream.status_code, headers=_restored_headers(upstream, restore),
                               stream=_Stream(chunks(), done), extensions=upstream.extensions)

    def close(self) -> None:
        self.inner.close()
        self.engine.close()


class AsyncPolicyTransport(httpx2.AsyncBaseTransport):
    """``PolicyTransport`` for ``httpx2.AsyncClient`` (the SDKs' ``Async*`` clients)."""

    def __init__(self, engine: Engine, inner: httpx2.AsyncBaseTransport | None = None) -> None:
        self.engine = engine
        self.inner = inner or httpx2.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        engine = self.engine
        body = await request.aread() if request.method not in ("GET", "HEAD") else None
        decision, outcome, sent, answer = engine.decide(request, body)
        if answer is not None or sent is None:
            engine.report(decision, outcome, None)
            assert answer is not None
            return answer
        try:
            upstream = await self.inner.handle_async_request(sent)
        except httpx2.TransportError:
            engine.report(decision, outcome, None)
            raise
        restore, scan = engine.restoring(decision, outcome, upstream, request)
        reported = False

        async def done() -> None:
            nonlocal reported
            await upstream.aclose()
            if not reported:
                reported = True
                engine.report(decision, outcome, scan)

        async def chunks() -> AsyncIterator[bytes]:
            stream = upstream.stream
            assert isinstance(stream, httpx2.AsyncByteStream)
            if restore is not None and restore.whole:
                yield restore.whole_body(b"".join([chunk async for chunk in stream]))
                return
            async for chunk in stream:
                out = restore.feed(chunk) if restore is not None else chunk
                if out:
                    yield out
            if restore is not None:
                tail = restore.close()
                if tail:
                    yield tail

        return httpx2.Response(upstream.status_code, headers=_restored_headers(upstream, restore),
                               stream=_AsyncStream(chunks(), done), extensions=upstream.extensions)

    async def aclose(self) -> None:
        await self.inner.aclose()
        self.engine.close()


def engine(config: str | Path | None = None, profile: str | None = None, audit_log: str | Path | None = None) -> Engine:
    """The config as ``serve`` would load it (``--config``, ``$POLICYPROXY_HOME``, the bundled default)."""
    settings = load_settings(Path(config) if config is not None else None, profile=profile)
    return Engine(settings, Path(audit_log) if audit_log is not None else None)


def client(config: str | Path | None = None, profile: str | None = None, *, audit_log: str | Path | None = None,
           transport: httpx2.BaseTransport | None = None, **kwargs: Any) -> httpx2.Client:
    """An ``httpx2.Client`` whose every request goes through the policy (``transport``: what sends,
    e.g. one with a custom CA; other arguments go to ``httpx2.Client``)."""
    kwargs.setdefault("timeout", httpx2.Timeout(600, connect=10))
    return httpx2.Client(transport=PolicyTransport(engine(config, profile, audit_log), transport),
                         follow_redirects=False, **kwargs)


def async_client(config: str | Path | None = None, profile: str | None = None, *,
                 audit_log: str | Path | None = None, transport: httpx2.AsyncBaseTransport | None = None,
                 **kwargs: Any) -> httpx2.AsyncClient:
    """``client`` for asyncio agents (``AsyncAnthropic``, ``AsyncOpenAI``)."""
    kwargs.setdefault("timeout", httpx2.Timeout(600, connect=10))
    return httpx2.AsyncClient(transport=AsyncPolicyTransport(engine(config, profile, audit_log), transport),
                              follow_redirects=False, **kwargs)
