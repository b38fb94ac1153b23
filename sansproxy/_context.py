"""The run-time state every part of one core shares, and its few primitives.

A :class:`Context` is made by :class:`~sansproxy.proxy.Proxy` and handed to each
connection, exchange and probe it creates. It holds the current configuration
(replaced by a reload; an exchange keeps what it started with), the clocks of
the current turn, the injected random generator, the timer table, the tables of
connections, and the list of commands the turn is building. Its methods are the
primitives every layer needs: emit a command, send bytes with backpressure
accounting, pause or resume reading, log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from sansproxy._timers import TimerOwner, TimerTable
from sansproxy.commands import (
    Command,
    Log,
    LogLevel,
    OpenUpstream,
    PauseReading,
    ResumeReading,
    Send,
    UpstreamTls,
)
from sansproxy.errors import UsageError
from sansproxy.events import ConnId
from sansproxy.upstream import IdlePool, UpstreamConn

if TYPE_CHECKING:
    from random import Random

    from sansproxy._flow import Side
    from sansproxy._settings import Settings
    from sansproxy.compression.counters import CompressionCount
    from sansproxy.config import ProxyConfig, Server
    from sansproxy.downstream import Downstream
    from sansproxy.exchange import Exchange
    from sansproxy.health import HealthChange
    from sansproxy.pool import Pool

__all__ = ["Context", "Deferred"]


class Deferred(Protocol):
    """A connection that writes once per turn what the turn queued (HTTP/2)."""

    flush_due: bool

    def flush(self) -> None:
        """Write what is queued."""


class Context:
    """Shared state of one core; see the module docstring."""

    __slots__ = (
        "clients",
        "compression",
        "deferred",
        "exchanges",
        "idle",
        "next_id",
        "next_order",
        "now",
        "out",
        "rng",
        "settings",
        "shutting_down",
        "timers",
        "upstreams",
        "wall",
    )

    def __init__(self, settings: Settings, rng: Random) -> None:
        self.settings = settings
        self.rng = rng
        self.now = float("-inf")
        """Monotonic seconds of the current turn."""
        self.wall = 0.0
        """Wall-clock seconds (Unix time) of the current turn, for HTTP dates."""
        self.out: list[Command] = []
        self.timers: TimerTable[TimerOwner] = TimerTable()
        self.next_id = 1
        self.next_order = 0
        self.clients: dict[ConnId, Downstream] = {}
        self.upstreams: dict[ConnId, UpstreamConn] = {}
        self.idle = IdlePool()
        self.exchanges = 0
        """Exchanges begun and not yet ended (for statistics)."""
        self.compression: dict[str, CompressionCount] = {}
        """What response compression did, by coding."""
        self.shutting_down = False
        self.deferred: list[Deferred] = []

    @property
    def config(self) -> ProxyConfig:
        """The configuration new requests follow."""
        return self.settings.config

    def allocate_id(self) -> ConnId:
        """A fresh connection id."""
        conn = ConnId(self.next_id)
        self.next_id += 1
        return conn

    def internal_order(self) -> int:
        """A timer tie-break number for an owner that is not a connection.

        They count down from -1, so that such timers fire before the connections'
        when both fall due at the same instant.
        """
        self.next_order -= 1
        return self.next_order

    def known(self, conn: ConnId) -> bool:
        """Whether ``conn`` was ever allocated."""
        return 0 < conn < self.next_id

    def open_upstream(self, server: Server, tls: UpstreamTls | None) -> UpstreamConn:
        """A new connection to ``server``: registered, and asked of the adapter."""
        upstream = UpstreamConn(self, self.allocate_id(), server)
        self.upstreams[upstream.conn] = upstream
        self.out.append(
            OpenUpstream(conn=upstream.conn, host=server.host, port=server.port, tls=tls)
        )
        return upstream

    def health_changed(self, pool: Pool[Exchange], change: HealthChange) -> None:
        """Log a server of ``pool`` going up or down, with the reason."""
        state = "up" if change.healthy else "down"
        self.log(
            "info" if change.healthy else "warning",
            f"upstream {pool.upstream.name}: server {change.server} is {state}: {change.reason}",
        )

    # -- commands --------------------------------------------------------------------------

    def defer(self, target: Deferred) -> None:
        """Have ``target`` flush once, at the end of the turn (after everything it queued)."""
        if not target.flush_due:
            target.flush_due = True
            self.deferred.append(target)

    def flush_deferred(self) -> None:
        """The turn is over: every deferred target writes what it queued."""
        deferred = self.deferred
        while deferred:
            target = deferred.pop(0)
            target.flush_due = False
            target.flush()

    def emit(self, command: Command) -> None:
        """Add one command to the turn's output."""
        self.out.append(command)

    def log(self, level: LogLevel, message: str, conn: ConnId | None = None) -> None:
        """A diagnostic line for the adapter's logger."""
        self.out.append(Log(level=level, message=message, conn=conn))

    def send(self, side: Side, data: bytes) -> None:
        """Write ``data`` to ``side`` and count it as unwritten until it is reported written.

        Several writes to one connection in a row become one ``Send``: fewer system
        calls and wake-ups.
        """
        if not data:
            return
        side.unwritten += len(data)
        queue = side.queue
        if queue is not None:
            queue.append(data)
        else:
            out = self.out
            last = out[-1] if out else None
            if type(last) is Send and last.conn == side.conn:
                out[-1] = Send(conn=side.conn, data=last.data + data)
            else:
                out.append(Send(conn=side.conn, data=data))
        if side.unwritten > self.settings.limits.buffer_high_water:
            side.backlogged()

    def written(self, side: Side, nbytes: int) -> None:
        """The adapter wrote ``nbytes`` of ``side``'s bytes."""
        if nbytes < 0 or nbytes > side.unwritten:
            raise UsageError(
                f"Written({nbytes}) exceeds the {side.unwritten} bytes sent to {side.conn}"
            )
        side.unwritten -= nbytes
        side.written_total += nbytes
        side.progressed()
        if side.unwritten <= self.settings.limits.buffer_low_water:
            side.drained()

    def hold(self, side: Side, reason: int) -> None:
        """Pause reading ``side`` for ``reason`` (a ``HOLD_*`` bit)."""
        side.holds |= reason
        self.sync_reading(side)

    def release(self, side: Side, reason: int) -> None:
        """Drop the hold ``reason``; reading resumes once no hold is left."""
        side.holds &= ~reason
        self.sync_reading(side)

    def sync_reading(self, side: Side) -> None:
        """Emit Pause/ResumeReading when the holds change whether ``side`` is read."""
        want_paused = side.holds != 0
        if want_paused == side.reading_paused:
            return
        side.reading_paused = want_paused
        if want_paused:
            self.out.append(PauseReading(conn=side.conn))
        else:
            self.out.append(ResumeReading(conn=side.conn))
