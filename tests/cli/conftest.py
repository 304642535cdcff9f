from tests.shell.conftest import pki, start_proxy, upstream  # noqa: F401 - fixtures shared with the shell tests
