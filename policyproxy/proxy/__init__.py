"""The I/O shell: listeners, tunnels, interception and upstream forwarding.

It moves bytes and asks the compiled policy; every decision is rendered by ``responses`` and
reported through ``ProxyApp.report``.
"""
