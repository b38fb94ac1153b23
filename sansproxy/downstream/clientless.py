"""The part of a :class:`~sansproxy.downstream.Stream` that an exchange with no client shares.

A health probe and a cache refresh are exchanges whose "client" is the proxy
itself: their request is whole from the start, it has no body, no window and no
timer of its own, and it never asks to upgrade. :class:`ClientlessStream` is
those answers once; each sink adds what it does with the response.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sansproxy._codec import Headers
    from sansproxy.events import ConnId
    from sansproxy.tunnel import Tunnel

__all__ = ["ClientlessStream"]


class ClientlessStream:
    """The request side of a stream with no client; every hook does nothing."""

    __slots__ = ()

    conn: ConnId | None = None
    can_respond = True
    expects_continue = False

    def send_continue(self) -> None:
        """No body is sent."""

    def informational(self, status: int, reason: bytes, headers: Headers) -> None:
        """Interim responses mean nothing here."""

    def hold_request(self, reason: int) -> None:
        """The request is whole from the start."""

    def release_request(self, reason: int) -> None:
        """The request is whole from the start."""

    def consumed(self, credit: int) -> None:
        """No window to reopen."""

    def arm_body_timer(self, timeout: float) -> None:
        """The request has no body."""

    def cancel_body_timer(self) -> None:
        """The request has no body."""

    def touch(self) -> None:
        """Nothing to keep alive."""

    def switch(self, reason: bytes, headers: Headers) -> bytes:  # pragma: no cover
        """Such a request never asks to upgrade."""
        raise AssertionError("an exchange with no client was switched to a tunnel")

    def tunnel_send(self, data: bytes) -> None:  # pragma: no cover
        """Such a request never asks to upgrade."""
        raise AssertionError("an exchange with no client was switched to a tunnel")

    def tunnel_started(self, tunnel: Tunnel) -> None:  # pragma: no cover
        """Such a request never asks to upgrade."""
        raise AssertionError("an exchange with no client was switched to a tunnel")

    def tunnel_ended(self) -> None:  # pragma: no cover
        """Such a request never asks to upgrade."""
        raise AssertionError("an exchange with no client was switched to a tunnel")
