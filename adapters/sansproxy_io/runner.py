"""The backend-neutral half of an adapter: feed events to the core, carry out its commands.

Theory of operation:

- The :class:`Runner` is synchronous and knows nothing about trio or asyncio. An I/O
  backend gives it two small things: a :class:`Transport` per connection (queue bytes,
  close, pause, resume) and a :class:`Backend` (open an upstream connection, arm the one
  timer, learn that shutdown is complete). Both are plain, non-blocking method calls, so a
  future asyncio adapter reuses this module unchanged.
- Rule 1: every call into the core is one turn. :meth:`Runner.dispatch` calls
  ``core.handle(event, clock(), wall=wall_clock())`` and applies the whole command list
  before it returns; nothing awaits in between, so no other event can slip into the middle
  of a turn (mitmproxy #7027 shows what goes wrong otherwise).
- Two clocks are read at the start of every turn: the monotonic one the backend's timer
  sleeps on (``now``, for timers) and the wall clock (``wall``, Unix seconds, for HTTP
  dates). An access-log line produced in a turn is stamped with that turn's wall time, so
  the log and the core agree on when an exchange ended.
- Rule 2: after every turn the single timer is re-armed to ``core.next_deadline()`` if, and
  only if, that value changed.
- Rule 3: the ``ConnId -> Transport`` table is the truth about which connections the core
  still knows. ``Close`` removes an entry, so do ``ConnectionLost`` and ``UpstreamFailed``
  once reported. Events for a connection that is not in the table are dropped: after the
  core closed a connection it must not hear of it again.
- The last few ``(now, event)`` pairs are kept; if the core raises (an internal bug) they are
  logged, so the failure can be replayed, the connection the event was about is reset and
  the server keeps serving everyone else (STYLE.md 3.4). Later commands for that
  connection are ignored.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final, Protocol, assert_never

from sansproxy.commands import (
    AccessLog,
    Close,
    Command,
    Log,
    OpenUpstream,
    PauseReading,
    ResumeReading,
    Send,
    ShutdownComplete,
    ShutdownWrite,
)
from sansproxy.config import ProxyConfig
from sansproxy.events import (
    ConfigReloaded,
    ConnectionAccepted,
    ConnectionLost,
    ConnId,
    Event,
    TlsHandshakeFailed,
    TlsInfo,
    UpstreamFailed,
)
from sansproxy_io.accesslog import format_record

if TYPE_CHECKING:
    from sansproxy_io.record import TurnRecorder

__all__ = [
    "ACCESS_LOGGER",
    "LOGGER",
    "TLS_HANDSHAKE_RECORD",
    "Backend",
    "Core",
    "Runner",
    "Transport",
    "looks_like_tls",
]

LOGGER: Final = "sansproxy"
"""Name of the :mod:`logging` logger for the core's ``Log`` commands and adapter messages."""
ACCESS_LOGGER: Final = "sansproxy.access"
"""Name of the logger that receives one formatted line per ``AccessLog`` command."""

_LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
_RECENT_EVENTS: Final = 32

logger = logging.getLogger(LOGGER)
access_logger = logging.getLogger(ACCESS_LOGGER)


TLS_HANDSHAKE_RECORD: Final = 0x16
"""The first byte of every TLS connection a client opens: a handshake record (RFC 8446 §5.1)."""


def looks_like_tls(first: bytes) -> bool:
    """Whether a client's first byte can start a TLS handshake.

    This one byte is all an adapter looks at on a TLS listener: anything else (an ASCII
    letter from ``GET /``, most likely) is reported as ``not_tls`` and the core answers
    it. No HTTP is parsed here.
    """
    return first[:1] == bytes([TLS_HANDSHAKE_RECORD])


class Core(Protocol):
    """The part of :class:`sansproxy.Proxy` a runner drives."""

    def allocate_id(self) -> ConnId:
        """A fresh id for an accepted connection."""

    def handle(self, event: Event, now: float, *, wall: float | None = None) -> list[Command]:
        """One turn: an event in, its commands out."""

    def handle_timeout(self, now: float, *, wall: float | None = None) -> list[Command]:
        """One turn for the timers due at ``now``."""

    def next_deadline(self) -> float | None:
        """When to call :meth:`handle_timeout` next."""


class Transport(Protocol):
    """One connection as the backend carries it. Every method returns at once."""

    def send(self, data: bytes) -> None:
        """Queue ``data`` after earlier bytes; report ``Written`` once it is written."""

    def close(self, *, abort: bool) -> None:
        """Close after flushing the queue, or reset now with ``abort``. Idempotent.

        Closing a connection that is still connecting cancels the connect; no event about
        it may be reported afterwards.
        """

    def shutdown_write(self) -> None:
        """After the queued bytes, end the sending side (FIN) but keep reading."""

    def pause_reading(self) -> None:
        """Stop reading until :meth:`resume_reading`."""

    def resume_reading(self) -> None:
        """Read again."""


class Backend(Protocol):
    """The I/O world's primitives the runner needs besides transports."""

    def open_upstream(self, command: OpenUpstream) -> Transport:
        """Start connecting; later report ``UpstreamConnected`` or ``UpstreamFailed``."""

    def arm_timer(self, deadline: float | None) -> None:
        """Call :meth:`Runner.on_timer` once the clock reaches ``deadline`` (``None``: never).

        Replaces any earlier deadline.
        """

    def shutdown_complete(self) -> None:
        """The core has closed everything after ``ShutdownRequested``."""


class _Discard:
    """The transport of a connection already reset after a core failure: ignores everything."""

    def send(self, data: bytes) -> None:
        """Drop ``data``."""

    def close(self, *, abort: bool) -> None:
        """Nothing left to close."""

    def shutdown_write(self) -> None:
        """Nothing left to shut down."""

    def pause_reading(self) -> None:
        """Nothing is read."""

    def resume_reading(self) -> None:
        """Nothing is read."""


_DISCARD: Final = _Discard()


class Runner:
    """Drives one core for one backend: the connection table, command dispatch, the timer.

    Args:
        core: The :class:`sansproxy.Proxy` (or anything with its driving methods).
        clock: Monotonic seconds, the same clock the backend's timer sleeps on.
        backend: The I/O primitives.
        access_log_format: ``"combined"``, ``"extended"``, ``"json"``, or ``None`` to drop
            access records.
        wall_clock: Wall-clock seconds since the Unix epoch, passed to the core on every
            turn (``wall=``) and printed, in the local time zone, on access-log lines.
        recorder: Receives every ``allocate_id`` result and every turn (both times, event,
            commands) for a replayable recording (see ``sansproxy_io.record``).
    """

    def __init__(
        self,
        core: Core,
        clock: Callable[[], float],
        backend: Backend,
        *,
        access_log_format: str | None = "combined",
        wall_clock: Callable[[], float] = time.time,
        recorder: TurnRecorder | None = None,
    ) -> None:
        self._core = core
        self._clock = clock
        self._backend = backend
        self._access_log_format = access_log_format
        self._wall_clock = wall_clock
        self._wall: float | None = None
        """The wall time of the current (or latest) turn; ``None`` before the first."""
        self._recorder = recorder
        self._transports: dict[ConnId, Transport] = {}
        self._armed: float | None = None
        self._busy = False
        self._recent: deque[tuple[float, Event | None]] = deque(maxlen=_RECENT_EVENTS)
        self._failed: set[ConnId] = set()
        """Connections reset after the core raised on them; its commands for them are moot."""

    @property
    def recorder(self) -> TurnRecorder | None:
        """The recorder given at construction, if any."""
        return self._recorder

    @property
    def open_connections(self) -> int:
        """How many connections (client and upstream) the core still knows."""
        return len(self._transports)

    def is_open(self, conn: ConnId) -> bool:
        """Whether events about ``conn`` would still reach the core."""
        return conn in self._transports

    def accept(
        self,
        transport: Transport,
        *,
        listener: int,
        peer: tuple[str, int],
        local: tuple[str, int],
        tls: TlsInfo | None = None,
        not_tls: bool = False,
    ) -> ConnId:
        """Register a newly accepted client connection and tell the core about it.

        ``not_tls``: the connection came to a TLS listener but its first byte is not a TLS
        handshake record (see :func:`looks_like_tls`); the core answers it.

        Returns:
            The id the core gave the connection; the transport reports its events with it.
        """
        conn = self._core.allocate_id()
        if self._recorder is not None:
            self._recorder.allocated(conn)
        self._transports[conn] = transport
        self.dispatch(
            ConnectionAccepted(
                conn=conn, listener=listener, peer=peer, local=local, tls=tls, not_tls=not_tls
            )
        )
        return conn

    def handshake_failed(self, *, listener: int, peer: tuple[str, int], reason: str) -> None:
        """A client's TLS handshake failed or timed out: the core counts and logs it."""
        self.dispatch(TlsHandshakeFailed(listener=listener, peer=peer, reason=reason))

    def dispatch(self, event: Event) -> None:
        """Give ``event`` to the core and carry out the commands it returns.

        Events about a connection the core has already closed are dropped.

        Raises:
            RuntimeError: Called again from inside a turn (a backend bug), or the core
                named a connection it never opened.
        """
        conn: ConnId | None = getattr(event, "conn", None)
        if conn is not None and conn not in self._transports:
            return
        self._turn(event)
        if type(event) is ConnectionLost or type(event) is UpstreamFailed:
            # The core forgets such a connection; make sure the backend lets go of it too.
            transport = self._transports.pop(event.conn, None)
            if transport is not None:
                transport.close(abort=True)

    def reload(self, config: ProxyConfig, *, text: str | None = None, source: str = "") -> None:
        """Apply a new configuration to the running core, between two turns.

        The core gets ``ConfigReloaded``: new requests follow ``config``, exchanges and
        tunnels in flight finish as they began. The access-log settings follow it too. The
        caller has checked that the listeners are unchanged (see ``sansproxy_io.reload``);
        the core refuses a different number of them.

        Args:
            config: The validated new configuration.
            text: Its TOML text, for a recording of the run.
            source: Its file name, for the same.
        """
        self._access_log_format = (
            config.logging.access_log_format if config.logging.access_log else None
        )
        if self._recorder is not None and text is not None:
            self._recorder.record_reload(config, text=text, source=source)
        self.dispatch(ConfigReloaded(config=config))

    def start(self) -> None:
        """Give the core a first turn, before any traffic, so it can arm its timers.

        Health probes start here: without a first turn an idle proxy would never
        be woken to send them.
        """
        self._turn(None)

    def on_timer(self) -> None:
        """The backend's timer reached the armed deadline."""
        self._armed = None
        self._turn(None)

    def apply(self, commands: Iterable[Command]) -> None:
        """Carry out ``commands`` in order; never blocks.

        Access-log lines are stamped with the wall time of the latest turn.

        Raises:
            RuntimeError: A command names a connection that is not open.
        """
        for command in commands:
            match command:
                case Send():
                    self._transport(command.conn, command).send(command.data)
                case OpenUpstream():
                    if command.conn in self._transports:
                        raise RuntimeError(f"core reused open connection id: {command!r}")
                    self._transports[command.conn] = self._backend.open_upstream(command)
                case Close():
                    self._failed.discard(command.conn)
                    transport = self._transports.pop(command.conn, None)
                    if transport is not None:
                        transport.close(abort=command.abort)
                case ShutdownWrite():
                    self._transport(command.conn, command).shutdown_write()
                case PauseReading():
                    self._transport(command.conn, command).pause_reading()
                case ResumeReading():
                    self._transport(command.conn, command).resume_reading()
                case Log():
                    level = _LEVELS.get(command.level, logging.INFO)
                    if command.conn is None:
                        logger.log(level, "%s", command.message)
                    else:
                        logger.log(level, "conn %d: %s", command.conn, command.message)
                case AccessLog():
                    if self._access_log_format is not None and access_logger.isEnabledFor(
                        logging.INFO
                    ):
                        wall = self._wall_clock() if self._wall is None else self._wall
                        when = datetime.fromtimestamp(wall, UTC).astimezone()
                        line = format_record(command.record, when, self._access_log_format)
                        # One line per exchange: skip Logger.info's search of the stack
                        # for a caller, which an access line has no use for.
                        access_logger.handle(
                            access_logger.makeRecord(
                                ACCESS_LOGGER, logging.INFO, "", 0, line, (), None
                            )
                        )
                case ShutdownComplete():
                    self._backend.shutdown_complete()
                case _:
                    assert_never(command)

    def _transport(self, conn: ConnId, command: Command) -> Transport:
        try:
            return self._transports[conn]
        except KeyError:
            if conn in self._failed:
                return _DISCARD
            raise RuntimeError(
                f"core sent a command for a closed connection: {command!r}"
            ) from None

    def _turn(self, event: Event | None) -> None:
        if self._busy:
            raise RuntimeError("Runner re-entered: a backend reported an event during a turn")
        self._busy = True
        try:
            now = self._clock()
            wall = self._wall = self._wall_clock()
            self._recent.append((now, event))
            try:
                if event is None:
                    commands = self._core.handle_timeout(now, wall=wall)
                else:
                    commands = self._core.handle(event, now, wall=wall)
            except Exception as error:
                if self._recorder is not None:
                    self._recorder.turn(now, event, [], wall=wall, raised=error)
                # A bug in the core. One connection's misfortune must not take the
                # server down: log the flight recorder so the run can be replayed,
                # reset the connection the event was about, and keep serving.
                logger.exception(
                    "the core raised; last events (now, event; None is a timeout):\n%s",
                    "\n".join(f"  {at!r} {seen!r}" for at, seen in self._recent),
                )
                conn: ConnId | None = getattr(event, "conn", None)
                transport = self._transports.pop(conn, None) if conn is not None else None
                if conn is not None and transport is not None:
                    self._failed.add(conn)
                    transport.close(abort=True)
                commands = []
            else:
                if self._recorder is not None:
                    self._recorder.turn(now, event, commands, wall=wall)
            self.apply(commands)
        finally:
            self._busy = False
        deadline = self._core.next_deadline()
        if deadline != self._armed:
            self._armed = deadline
            self._backend.arm_timer(deadline)
