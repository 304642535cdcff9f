"""The I/O side of redaction: the SQLite mapping store and the worker-process span finder."""

from policyproxy.config.schema import RedactionSpec
from policyproxy.redaction.engine import Redactor
from policyproxy.redaction.placeholders import Vaults


def test_mappings_persist_across_a_restart_in_a_private_file(tmp_path):
    import stat
    import time

    from policyproxy.stores.sqlite import SqliteMappingStore

    path = tmp_path / "state" / "mappings.sqlite"
    first = Vaults(store=SqliteMappingStore(path), clock=time.time)   # as the proxy builds it
    token = first.for_scope("127.0.0.1").placeholder("email", "dana@acme.io")
    first.store.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = Vaults(store=SqliteMappingStore(path), clock=time.time)
    vault = again.for_scope("127.0.0.1")
    assert vault.value(token) == "dana@acme.io"
    assert vault.placeholder("email", "dana@acme.io") == token   # same master key: same placeholder


def test_parallel_finder_agrees_with_the_in_process_scan():
    import asyncio

    from policyproxy.offload import ParallelFinder

    spec = RedactionSpec()
    texts = [f"user{i}@corp.io key AKIAZ7PQ3LXRN4TW2K{i:02d} card 4111 1111 1111 1111 " * 50 for i in range(12)]
    finder = ParallelFinder(spec, workers=2)
    try:
        found = asyncio.run(finder.spans(texts))
    finally:
        finder.close()
    redactor = Redactor(spec)
    assert found == {text: redactor.find(text) for text in texts}


