"""``on_both_loops``: a test that drives transports runs on asyncio's loop and on uvloop (``--loop auto``
picks uvloop; their transports, TLS layers included, differ, the behaviour must not)."""

from __future__ import annotations

import asyncio
import importlib.util

import pytest

LOOPS = ["asyncio", pytest.param("uvloop", marks=pytest.mark.skipif(
    importlib.util.find_spec("uvloop") is None, reason="uvloop is not installed"))]


@pytest.fixture(params=LOOPS)
def on_both_loops(request):
    """A runner for a coroutine on a fresh loop of the parameter's kind."""
    def factory() -> asyncio.AbstractEventLoop:
        if request.param == "uvloop":
            import uvloop
            return uvloop.new_event_loop()
        return asyncio.new_event_loop()

    def runner(coro):
        with asyncio.Runner(loop_factory=factory) as r:
            return r.run(coro)
    return runner
