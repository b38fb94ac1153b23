"""The exceptions the core raises: only for callers that break a contract.

Misbehaving peers never raise: they become HTTP errors or closes.
"""

from __future__ import annotations

__all__ = ["ConfigError", "SansproxyError", "UsageError"]


class SansproxyError(Exception):
    """Base class of every exception sansproxy raises on purpose."""


class UsageError(SansproxyError):
    """The adapter broke the contract of :class:`~sansproxy.Proxy`.

    For example: an event for a connection the core does not know, data after
    EOF, or ``now`` going backwards.
    """


class ConfigError(SansproxyError):
    """A configuration is invalid.

    ``str(error)`` is one line naming the source, the key path and the problem,
    for example ``proxy.toml: timeouts.client_header: must be a positive number``.
    """

    def __init__(self, source: str, key: str, problem: str) -> None:
        self.source = source
        self.key = key
        self.problem = problem
        super().__init__(f"{source}: {key}: {problem}" if key else f"{source}: {problem}")
