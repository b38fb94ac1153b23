"""The route's body limit, applied to the length a request declares before any body is read."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sansproxy.filters import Answer

if TYPE_CHECKING:
    from sansproxy.exchange import Exchange

__all__ = ["BodyLimit"]


class BodyLimit:
    """413 for a request whose Content-Length is over the limit (0 means no limit).

    A body that grows past the limit without declaring it is cut off by the
    exchange as it arrives.
    """

    __slots__ = ()

    def on_request(self, exchange: Exchange) -> Answer | None:
        """413 when the declared body is too large, else None."""
        limit = exchange.max_body
        length = exchange.body_length
        if limit and length is not None and length > limit:
            return Answer(status=413, error=True)
        return None
