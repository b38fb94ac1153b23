"""One timer slot per owner, with a lazily cleaned heap.

Theory of operation: timers belong to typed owners (a client or upstream
connection, an HTTP/2 stream, an exchange waiting for a server, a server's
probe schedule, the shutdown drain), never to invented ids. Every owner has at
most one live timer (its kind says what expiring means: header timeout, idle
timeout, ...). Owners carry an ``order`` number, unique per owner, which
breaks ties between timers due at the same instant. ``set`` only
records the deadline; the heap holds, per owner, the earliest deadline it was
scheduled for. Pushing back a deadline (the common case: an idle timer
touched on every body chunk) costs a dict write, no heap push; when the
stale heap entry comes due, ``expired`` re-schedules it at the real
deadline instead of firing. Cancelled entries are dropped as they surface.
"""

from __future__ import annotations

import heapq
from enum import Enum
from typing import Generic, Protocol, TypeVar

__all__ = ["TimerKind", "TimerOwner", "TimerTable"]


class TimerKind(Enum):
    """What a deadline means for the connection that owns it."""

    CLIENT_HEADER = "client request header"
    CLIENT_KEEPALIVE = "client keep-alive idle"
    CLIENT_BODY = "client body idle"
    UPSTREAM_CONNECT = "upstream connect"
    UPSTREAM_HEADER = "upstream response header"
    UPSTREAM_BODY = "upstream body idle"
    UPSTREAM_KEEPALIVE = "upstream keep-alive idle"
    TUNNEL_IDLE = "tunnel idle"
    CLIENT_LINGER = "lingering close"
    DRAIN = "shutdown drain"
    PROBE = "health probe due"
    PROBE_TIMEOUT = "health probe timeout"
    RETRY_BACKOFF = "retry backoff"
    QUEUE_WAIT = "waiting for a free server"
    CACHE_WAIT = "waiting for the same URI's response"
    HANDSHAKE = "HTTP/2 preface and settings"
    STREAM_BODY = "HTTP/2 request body idle"
    SEND_STALL = "HTTP/2 responses waiting on the client's window"


class TimerOwner(Protocol):
    """Anything that owns a timer: hashable, with a unique tie-breaking ``order``."""

    @property
    def order(self) -> int:
        """Orders owners whose timers fall due at the same instant."""

    def on_timer(self, kind: TimerKind) -> None:
        """The owner's timer expired (the owner may have closed meanwhile: it checks)."""


K = TypeVar("K", bound=TimerOwner)


class TimerTable(Generic[K]):
    """Deadlines keyed by owner; at most one per owner."""

    __slots__ = ("_heap", "_live", "_scheduled", "_seq")

    def __init__(self) -> None:
        self._live: dict[K, tuple[float, TimerKind]] = {}
        self._scheduled: dict[K, float] = {}
        self._heap: list[tuple[float, int, K]] = []
        """``(deadline, push number, owner)``: the push number keeps owners out of the
        comparison, which they do not support."""
        self._seq = 0

    def __len__(self) -> int:
        return len(self._live)

    def set(self, owner: K, kind: TimerKind, deadline: float) -> None:
        """Arm (or move) ``owner``'s timer."""
        self._live[owner] = (deadline, kind)
        scheduled = self._scheduled.get(owner)
        if scheduled is None or deadline < scheduled:
            self._push(owner, deadline)

    def cancel(self, owner: K) -> None:
        self._live.pop(owner, None)

    def kind(self, owner: K) -> TimerKind | None:
        entry = self._live.get(owner)
        return None if entry is None else entry[1]

    def _push(self, owner: K, deadline: float) -> None:
        self._seq += 1
        self._scheduled[owner] = deadline
        heapq.heappush(self._heap, (deadline, self._seq, owner))

    def _drop_stale_top(self) -> None:
        heap = self._heap
        while heap:
            deadline, _, owner = heap[0]
            if owner in self._live and self._scheduled.get(owner) == deadline:
                return
            heapq.heappop(heap)
            if owner not in self._live and self._scheduled.get(owner) == deadline:
                del self._scheduled[owner]

    def next_deadline(self) -> float | None:
        """The earliest scheduled deadline (possibly early for a pushed-back timer)."""
        self._drop_stale_top()
        return self._heap[0][0] if self._heap else None

    def expired(self, now: float) -> list[tuple[K, TimerKind]]:
        """Remove and return every timer whose deadline is ``<= now``.

        The order is by deadline, then by owner: it depends only on the live
        deadlines, never on the heap's history (which ``next_deadline`` calls
        change), so a replay that polls differently still fires identically.
        """
        fired: list[tuple[float, K, TimerKind]] = []
        heap = self._heap
        while True:
            self._drop_stale_top()
            if not heap or heap[0][0] > now:
                break
            _, _, owner = heapq.heappop(heap)
            del self._scheduled[owner]
            deadline, kind = self._live[owner]
            if deadline > now:
                self._push(owner, deadline)
                continue
            del self._live[owner]
            fired.append((deadline, owner, kind))
        fired.sort(key=lambda item: (item[0], item[1].order))
        return [(owner, kind) for _, owner, kind in fired]
