"""The words a policy is written in: hosts, paths, domain patterns, matchers and forwarded headers.

Pure functions and values, below both ``config`` (which validates what an operator wrote) and
``policy`` (which matches what a client sent), so both read a host or a path the same way.
Imports neither of them.
"""
