"""TLS handshakes that gave no connection: their counts, and a debug log that cannot flood.

An adapter reports a failed or timed-out handshake with
:class:`~sansproxy.events.TlsHandshakeFailed`, and plain HTTP on a TLS listener with
``ConnectionAccepted(not_tls=True)``. Both are counted here, for
:meth:`sansproxy.Proxy.tls_statistics`, and logged at debug level: a port scanner or a
misconfigured client can cause thousands a second, so at most one line is written per
:data:`LOG_INTERVAL` seconds (of the core's clock), and the next line says how many were
left out meanwhile.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["LOG_INTERVAL", "HandshakeLog", "TlsStatistics"]

LOG_INTERVAL = 10.0
"""Seconds between two debug lines about failed handshakes."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsStatistics:
    """TLS connections that never reached HTTP, since the proxy started (reloads keep them)."""

    handshakes_failed: int = 0
    """Handshakes that failed or timed out (``TlsHandshakeFailed``)."""
    not_tls: int = 0
    """Connections to a TLS listener that did not start with a TLS handshake (plain HTTP)."""


class HandshakeLog:
    """The counts, and the rate limit of their log lines."""

    __slots__ = ("_last_line", "_left_out", "failed", "not_tls")

    def __init__(self) -> None:
        self.failed = 0
        self.not_tls = 0
        self._last_line = -math.inf
        self._left_out = 0

    def handshake_failed(self, what: str, now: float) -> str | None:
        """Count a failed handshake; the debug line to write now, if any.

        ``what`` describes it, e.g. ``TLS handshake from 192.0.2.7:50000 on listener 1
        failed: wrong version number``.
        """
        self.failed += 1
        return self._line(what, now)

    def plain_on_tls(self, what: str, now: float) -> str | None:
        """Count a connection that is not TLS on a TLS listener; the line to write, if any."""
        self.not_tls += 1
        return self._line(what, now)

    def statistics(self) -> TlsStatistics:
        """The counts so far."""
        return TlsStatistics(handshakes_failed=self.failed, not_tls=self.not_tls)

    def _line(self, what: str, now: float) -> str | None:
        if now - self._last_line < LOG_INTERVAL:
            self._left_out += 1
            return None
        self._last_line = now
        left_out, self._left_out = self._left_out, 0
        if left_out:
            return f"{what} ({left_out} more such connections not logged in the last while)"
        return what
