import pytest

from tests.shell.proxy_process import ProxyProcess
from tests.shell.upstream import NAMES, Upstream, make_test_pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    return make_test_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def upstream(pki):
    server = Upstream(pki[1], pki[2])
    yield server
    server.close()


@pytest.fixture(scope="session")
def start_proxy(tmp_path_factory, pki, upstream):
    started: list[ProxyProcess] = []

    def start(config: str, env: dict[str, str] | None = None, extra: list[str] | None = None,
              pin: bool = True, trust_upstream: bool = True) -> ProxyProcess:
        pins = [f"{name}:{port}:127.0.0.1" for name in NAMES if name != "rebind.test"
                for port in (upstream.tls_port, upstream.plain_port)] if pin else []
        proxy = ProxyProcess(tmp_path_factory.mktemp("proxy"), config, pki[0] if trust_upstream else None, pins,
                             env, extra)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:   # all drain at once, not one after the other
        proxy.signal_stop()
    for proxy in started:
        proxy.stop()
