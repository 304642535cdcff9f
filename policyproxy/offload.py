"""Finding spans in worker processes: a large first turn is scanned on several cores, off the GIL
(processes and threads are I/O-side machinery, so this lives outside the redaction core).

Only ``find`` runs there (pure: text in, spans out); placeholders are minted in the proxy's own
vault, so no secret mapping ever lives in a worker.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

from policyproxy.config.schema import RedactionSpec
from policyproxy.redaction.detectors import Span
from policyproxy.redaction.engine import Redactor

_redactor: Redactor | None = None


def _start(spec: RedactionSpec) -> None:
    global _redactor
    _redactor = Redactor(spec)


def _find(texts: list[str]) -> list[list[Span]]:
    assert _redactor is not None
    return [_redactor.find(text) for text in texts]


def _ready() -> bool:
    return _redactor is not None


class ParallelFinder:
    def __init__(self, spec: RedactionSpec, workers: int | None = None) -> None:
        self.workers = workers or max(1, min(4, os.cpu_count() or 1))
        self.pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("forkserver"),
                                        initializer=_start, initargs=(spec,))
        self.warm = False
        self._warming = [self.pool.submit(_ready) for _ in range(self.workers)]

    @property
    def ready(self) -> bool:
        """Workers have started (the first large body after start is scanned on a thread meanwhile)."""
        if not self.warm:
            self.warm = all(f.done() and not f.exception() for f in self._warming)
        return self.warm

    async def spans(self, texts: list[str]) -> dict[str, list[Span]]:
        """``find`` for every text, the work split by size across the workers."""
        batches: list[list[str]] = [[] for _ in range(self.workers)]
        sizes = [0] * self.workers
        for text in sorted(texts, key=len, reverse=True):
            i = sizes.index(min(sizes))
            batches[i].append(text)
            sizes[i] += len(text)
        loop = asyncio.get_running_loop()
        results = await asyncio.gather(*(loop.run_in_executor(self.pool, _find, batch)
                                         for batch in batches if batch))
        return {text: spans for batch, found in zip([b for b in batches if b], results, strict=True)
                for text, spans in zip(batch, found, strict=True)}

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
