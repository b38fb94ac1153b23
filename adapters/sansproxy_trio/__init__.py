"""Run :class:`sansproxy.Proxy` on trio: the driver behind the ``sansproxy`` server script.

Public API:

- :func:`serve_trio` binds the configured listeners and serves until cancelled or until its
  ``shutdown`` event is set (then it drains gracefully and returns).
- :class:`ListenError` is raised when a listening address cannot be bound.
- :mod:`sansproxy_trio.cli` is the ``sansproxy`` command (``python -m sansproxy_trio``).

The adapter moves bytes and nothing else: every HTTP decision is the core's.
"""

from sansproxy_io.runner import ACCESS_LOGGER, LOGGER
from sansproxy_trio._serve import ListenError, serve_trio

__all__ = ["ACCESS_LOGGER", "LOGGER", "ListenError", "serve_trio"]
