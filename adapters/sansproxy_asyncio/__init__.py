"""Run :class:`sansproxy.Proxy` on asyncio (and on uvloop): Protocols and Transports.

Public API:

- :func:`serve_asyncio` binds the configured listeners and serves on the running asyncio
  loop, next to the application's own tasks, until cancelled or until its ``shutdown``
  event is set (then it drains gracefully and returns).
- :class:`ListenError` is raised when a listening address cannot be bound.
- ``python -m sansproxy_asyncio ARGS`` is the ``sansproxy`` command with ``--loop asyncio``
  unless ``ARGS`` choose a loop themselves (``sansproxy --loop uvloop`` for uvloop).

The adapter moves bytes and nothing else: every HTTP decision is the core's, and the
backend-neutral half (the connection table, dispatch, the timer) is
:class:`sansproxy_io.runner.Runner`, shared with the trio adapter.
"""

from sansproxy_asyncio._serve import serve_asyncio
from sansproxy_io.listen import ListenError
from sansproxy_io.runner import ACCESS_LOGGER, LOGGER

__all__ = ["ACCESS_LOGGER", "LOGGER", "ListenError", "serve_asyncio"]
