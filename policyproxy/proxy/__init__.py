"""The I/O shell: listeners, tunnels, interception and upstream forwarding.

It moves bytes and asks the compiled policy; ``server.ProxyServer`` is the composition root (only
the CLI imports it), every answer is rendered by ``responses`` and every decision is reported once
through ``outcome.Reporter``. The README's layout section lists the walk of a request module by module.
"""
