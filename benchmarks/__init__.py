"""The benchmark suite: sansproxy against the backend, a minimal relay, nginx and others.

Run it with ``python -m benchmarks`` (``--help`` lists the options) or ``nox -s bench``;
docs/benchmarks.md explains the method and holds the latest results.
"""
