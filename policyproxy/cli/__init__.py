"""The ``policyproxy`` command line."""

from policyproxy.cli.main import main

__all__ = ["main"]
