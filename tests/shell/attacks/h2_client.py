"""A hostile HTTP/2 client harness for the ``test_h2_*`` attack files: the in-process proxy with a
given profile, ``RawClient`` (from ``test_h2_hostile``) against it, and a well-behaved client after."""

from __future__ import annotations

import asyncio
from typing import Any

from h2.events import ResponseReceived, StreamEnded, StreamReset

from tests.proxy.harness import pins, running
from tests.shell.test_h2_hostile import RawClient, still_serving

__all__ = ["RawClient", "attack_with", "ended", "status_of"]


def attack_with(tmp_path, pki, upstream, config: str, attack: Any, env: dict[str, str] | None = None,
                **options: Any) -> Any:
    """Run ``attack(server, proxy_port, upstream_port, ca)`` against a proxy for ``config``; returns
    (result, status of a fresh h2 client afterwards, [(reason, status, outcome)] reported)."""
    async def run() -> Any:
        async with running(tmp_path, config, env, upstream_cas=(pki[0],),
                           pins=pins(("api.github.com", "upstream.test"), upstream.tls_port), **options) as server:
            events: list[tuple[str, int | None, Any]] = []
            server.sinks.append(lambda d, o: events.append((d.reason.value, o.status, o)))
            port = server.addresses["http"][1]
            ca = str(tmp_path / "ca" / "ca.pem")
            result = await attack(server, port, upstream.tls_port, ca)
            after = await still_serving(port, upstream.tls_port, ca)
            return result, after, events

    return asyncio.run(run())


def status_of(client: RawClient, sid: int) -> str | None:
    return next((dict(e.headers)[":status"] for e in client.events
                 if isinstance(e, ResponseReceived) and e.stream_id == sid), None)


def ended(*sids: int) -> Any:
    """A ``pump`` condition: each of ``sids`` ended or was reset."""
    def done(events: list[Any]) -> bool:
        return all(any(isinstance(e, (StreamEnded, StreamReset)) and e.stream_id == sid for e in events)
                   for sid in sids)
    return done
