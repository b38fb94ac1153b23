"""Backpressure: the counters every socket keeps, and why its reading may be paused.

Theory of operation
-------------------
Every socket the core talks to (a client connection, an upstream connection) is a
:class:`Side`. ``unwritten`` counts the bytes handed out in ``Send`` (or queued
before an upstream has connected) that the adapter has not yet reported
``Written``. Body bytes flow from a *source* (where they are read) to a *sink*
(where they are written):

- when a sink's ``unwritten`` passes ``limits.buffer_high_water``, its
  :meth:`Side.backlogged` hook asks the source to stop (a socket pauses reading;
  an HTTP/2 stream simply stops reopening its window);
- when it falls to ``limits.buffer_low_water`` again, :meth:`Side.drained` lets
  the source go on.

Reading a socket is paused while any *hold* is set; the holds say why, so that
releasing one reason never resumes a socket another reason still holds:

- ``HOLD_PEER``: the sink this socket feeds is backlogged;
- ``HOLD_WAIT``: the exchange whose request this socket carries is waiting for a
  server (a queue or a retry's backoff), so its body is not read meanwhile;
- ``HOLD_PIPELINE``: an HTTP/1.1 client sent more pipelined requests than the
  proxy buffers;
- ``HOLD_OUTPUT``: an HTTP/2 client is not reading what the connection itself
  must write (ACKs of its PINGs and SETTINGS): it is not read until it does.

The core emits ``PauseReading``/``ResumeReading`` only when the paused state
flips, so the two always alternate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sansproxy.events import ConnId

__all__ = ["HOLD_OUTPUT", "HOLD_PEER", "HOLD_PIPELINE", "HOLD_WAIT", "Side"]

HOLD_PEER = 1
HOLD_WAIT = 2
HOLD_PIPELINE = 4
HOLD_OUTPUT = 8


class Side:
    """One socket's flow-control counters and reading holds."""

    __slots__ = ("conn", "holds", "queue", "reading_paused", "unwritten", "written_total")

    def __init__(self, conn: ConnId) -> None:
        self.conn = conn
        self.queue: list[bytes] | None = None
        """Bytes kept until the socket exists (an upstream still connecting), else None."""
        self.unwritten = 0
        self.written_total = 0
        """Every byte reported ``Written`` on this socket (for the current use of it)."""
        self.reading_paused = False
        self.holds = 0
        """Why reading is paused: a bit set of ``HOLD_*``."""

    @property
    def order(self) -> int:
        """Timer tie-break: connections fire in the order of their ids."""
        return self.conn

    def backlogged(self) -> None:
        """``unwritten`` is above high water: ask whoever feeds this socket to stop."""

    def drained(self) -> None:
        """``unwritten`` fell to low water: whoever feeds this socket may go on."""

    def progressed(self) -> None:
        """Some bytes were written: an idle timer watching this socket starts again."""
