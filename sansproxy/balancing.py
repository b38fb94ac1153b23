"""Choosing a backend server of an upstream.

For now every upstream uses its servers in turn (simple round robin); the
order in which a failed request tries the others follows the same rotation.
"""

from __future__ import annotations

from sansproxy.config import Server, Upstream

__all__ = ["RoundRobin"]


class RoundRobin:
    """Hands out the servers of one upstream in turn."""

    __slots__ = ("_next", "_servers")

    def __init__(self, upstream: Upstream) -> None:
        self._servers = upstream.servers
        self._next = 0

    def pick(self, exclude: frozenset[Server] = frozenset()) -> Server | None:
        """The next server not in ``exclude``, or None when every one is excluded."""
        servers = self._servers
        for _ in range(len(servers)):
            server = servers[self._next % len(servers)]
            self._next = (self._next + 1) % len(servers)
            if server not in exclude:
                return server
        return None
