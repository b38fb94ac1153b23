"""What compression did, per coding: pure numbers for the metrics an adapter serves."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CompressionCount"]


@dataclass(slots=True)
class CompressionCount:
    """One coding's totals since the proxy started (reloads do not reset them)."""

    responses: int = 0
    """Responses encoded in this coding (counted when their head goes out)."""
    bytes_in: int = 0
    """Body bytes the backends sent for them."""
    bytes_out: int = 0
    """Encoded body bytes sent on to the clients."""
