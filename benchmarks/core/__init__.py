"""The in-process benchmark of the core: ``python -m benchmarks core``.

It drives :class:`sansproxy.Proxy` directly with prepared events, no sockets, and reports
exchanges per second and CPU time per exchange, split into time inside h11 (or h2) and
the rest. :mod:`~benchmarks.core.wire` holds the client protocols,
:mod:`~benchmarks.core.driver` the in-process adapter and backends,
:mod:`~benchmarks.core.measure` the timing and the split, :mod:`~benchmarks.core.cli` the
command line. docs/benchmarks.md explains the method.
"""

from benchmarks.core.cli import main

__all__ = ["main"]
