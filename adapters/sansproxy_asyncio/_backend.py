"""asyncio primitives behind the runner: one Protocol per connection, connects, the timer.

Theory of operation:

- An :class:`AsyncioConnection` is both the :class:`asyncio.Protocol` of one client or
  upstream connection and its :class:`~sansproxy_io.runner.Transport` for the runner.
  asyncio calls it back (``data_received``, ``eof_received``, ``connection_lost``, the
  write-flow callbacks); it reports those as events through :meth:`Runner.dispatch`,
  which drops events about connections the core already closed.
- Reading: ``data_received`` → ``DataReceived``; ``eof_received`` → ``EofReceived`` and
  stay open, so the response can still be written (TCP half-close). ``PauseReading`` and
  ``ResumeReading`` are the transport's ``pause_reading`` / ``resume_reading``.
- Writing and ``Written``: the core must only hear ``Written`` for bytes that have left
  asyncio's buffer. Otherwise a client that reads slowly would let that buffer grow
  without bound while the core believes everything was delivered and keeps reading the
  other side. So ``Send`` queues the bytes here, and they are handed to
  ``transport.write`` one piece (:data:`WRITE_PIECE`) at a time, only while
  ``get_write_buffer_size()`` is 0; what asyncio cannot send at once stays in its buffer
  and the rest waits here. The write-buffer limits are ``high=0, low=0``: asyncio calls
  ``pause_writing`` as soon as anything stays buffered and ``resume_writing`` once the
  buffer is empty again, so every drain is noticed (with the usual 64 KiB / 16 KiB marks
  asyncio stays silent while the last bytes drain, and they would never be reported).
- The report: bytes sent by the core minus those queued here minus
  ``get_write_buffer_size()`` have left (the buffer holds the newest bytes). It runs from
  ``loop.call_soon`` after a ``Send`` and after each ``resume_writing``, never inside
  ``send``, because a report is an event and ``send`` runs inside a turn. The pause itself
  needs no action: the core stops reading the other side when its unwritten count passes
  ``limits.buffer_high_water``, and that count includes everything held here or in
  asyncio, so a slow peer costs at most about that much memory.
- Over TLS, asyncio's buffer size is the plaintext not yet encrypted plus the ciphertext
  not yet passed to the socket transport below. Ciphertext is never shorter than its
  plaintext, so the report can only err low until the buffer is empty. Bytes count as
  written once encrypted into that socket transport; asyncio's TLS layer stops feeding it
  above its own 64 KiB high-water mark, so with one piece at a time what the core cannot
  see stays below about 128 KiB per connection, however large a ``Send``.
- ``ShutdownWrite`` is ``write_eof`` (after the queued bytes) where the transport can
  half-close; TLS cannot, so nothing happens there. ``Close`` closes after flushing,
  bounded by ``close_timeout`` (the core has forgotten the connection, so nothing else
  would ever end a peer that stops reading); an abort sets SO_LINGER 0 and aborts, so
  the peer sees a reset. ``Close`` of an upstream still connecting cancels the connect.
- An upstream connection reports ``UpstreamConnected`` from ``connection_made`` (after
  the TLS handshake), before any data of it can arrive, and ``UpstreamFailed`` when
  ``create_connection`` raises. The connect timeout is the core's.
- :class:`AsyncioBackend` is the runner's :class:`~sansproxy_io.runner.Backend`: it
  opens upstreams, keeps the one timer (``loop.call_at`` on ``loop.time()``, cancelled and
  re-armed) and tracks live connections so a graceful shutdown can wait for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
from collections import deque
from collections.abc import MutableMapping
from typing import Any, Final, cast

from sansproxy.commands import OpenUpstream
from sansproxy.events import (
    ConnectionLost,
    ConnId,
    DataReceived,
    EofReceived,
    TlsInfo,
    UpstreamConnected,
    UpstreamFailed,
    Written,
)
from sansproxy_io.listen import socket_address
from sansproxy_io.runner import Runner
from sansproxy_io.tls import ClientContexts, tls_info

__all__ = ["WRITE_PIECE", "AsyncioBackend", "AsyncioConnection", "describe"]

_RESET_ON_CLOSE: Final = struct.pack("ii", 1, 0)
WRITE_PIECE: Final = 64 * 1024
"""Most bytes handed to asyncio in one ``write`` (see :meth:`AsyncioConnection._pump`)."""


def describe(exc: BaseException) -> str:
    """``Type: message`` for an exception, as the core's logs show a failure reason."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _setsockopt(transport: asyncio.BaseTransport, level: int, option: int, value: Any) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # OSError: already closed or reset by the peer, nothing left to set. ValueError:
        # uvloop's pseudo-socket of a transport that is closing has file descriptor -1.
        with contextlib.suppress(OSError, ValueError):
            sock.setsockopt(level, option, value)


class AsyncioConnection(asyncio.Protocol):
    """One connection: asyncio's protocol for it and the runner's transport for it.

    Args:
        backend: The backend that owns it.
        listener: For an accepted client, the index of its listener in the config.
        server_names: For a TLS listener, where its SNI callback leaves the names.
        not_tls: An accepted client of a TLS listener that did not start a handshake.
    """

    def __init__(
        self,
        backend: AsyncioBackend,
        *,
        listener: int | None = None,
        server_names: MutableMapping[ssl.SSLObject, str] | None = None,
        not_tls: bool = False,
    ) -> None:
        self.conn: ConnId | None = None
        self._not_tls = not_tls
        self._backend = backend
        self._runner = backend.runner
        self._loop = backend.loop
        self._listener = listener
        self._server_names = server_names
        self._transport: asyncio.Transport | None = None
        self._tls = False
        self._outbox: deque[bytes | memoryview] = deque()
        self._queued = 0
        """Bytes in ``_outbox``: sent by the core, not yet handed to asyncio."""
        self._unreported = 0
        """Bytes sent by the core and not yet reported ``Written``."""
        self._tick_pending = False
        self._finished = False
        """The core closed it, or it was reported lost or failed: report nothing more."""
        self._lost = False
        self._eof_seen = False
        self._eof_wanted = False
        self._eof_written = False
        self._close_wanted = False
        self._paused = False
        self._held: deque[bytes] = deque()
        self._eof_held = False
        self._connect_task: asyncio.Task[None] | None = None
        self._server_name: str | None = None
        self._close_timer: asyncio.TimerHandle | None = None

    @property
    def held(self) -> int:
        """Bytes the core sent that have not left asyncio: queued here or in its buffer."""
        transport = self._transport
        buffered = 0 if transport is None else transport.get_write_buffer_size()
        return self._queued + buffered

    @property
    def unreported(self) -> int:
        """Bytes the core sent that were not yet reported ``Written``."""
        return self._unreported

    # -- runner Transport ------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Queue ``data``; ``Written`` follows once it has left asyncio's buffer."""
        if self._finished or self._lost or self._eof_wanted:
            return  # the core sends nothing after Close or ShutdownWrite
        self._unreported += len(data)
        transport = self._transport
        if (
            not self._outbox
            and transport is not None
            and len(data) <= WRITE_PIECE
            and not transport.get_write_buffer_size()
            and not transport.is_closing()
        ):
            transport.write(data)  # the usual case: what _pump would do, without the queue
        else:
            self._outbox.append(data)
            self._queued += len(data)
            self._pump()
        self._schedule_tick()

    def close(self, *, abort: bool) -> None:
        """Flush and close (bounded by ``close_timeout``), or reset at once."""
        self._finished = True
        transport = self._transport
        if transport is None:
            if self._connect_task is not None:
                self._connect_task.cancel()
            return
        if self._lost:
            return
        if abort:
            self._abort()
            return
        # Like the trio adapter: stop reading, flush what is queued, then close.
        if not self._eof_seen and not transport.is_closing():
            transport.pause_reading()
        self._close_wanted = True
        self._pump()
        if self._close_timer is None:
            self._close_timer = self._loop.call_later(self._backend.close_timeout, self._abort)

    def shutdown_write(self) -> None:
        """After the queued bytes send FIN; TLS cannot half-close, so it does nothing."""
        self._eof_wanted = True
        self._pump()

    def pause_reading(self) -> None:
        """Stop ``data_received`` until :meth:`resume_reading`."""
        self._paused = True
        transport = self._transport
        if transport is not None and not self._eof_seen and not transport.is_closing():
            transport.pause_reading()

    def resume_reading(self) -> None:
        """Deliver data again."""
        self._paused = False
        if self._held or self._eof_held:
            self._loop.call_soon(self._release_held)  # events, so not inside this turn
            return
        transport = self._transport
        if transport is not None and not self._eof_seen and not transport.is_closing():
            transport.resume_reading()

    # -- asyncio Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Accepted (after the TLS handshake) or connected: tell the core."""
        # A stream transport; uvloop's do not inherit from asyncio's classes.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        self._backend.track(self)
        _setsockopt(transport, socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # pause_writing as soon as anything stays buffered, resume_writing once it is empty.
        transport.set_write_buffer_limits(high=0, low=0)
        ssl_object = transport.get_extra_info("ssl_object")
        self._tls = ssl_object is not None
        if self._listener is not None:
            self._accepted(transport, ssl_object)
        else:
            self._connected(transport, ssl_object)

    def data_received(self, data: bytes) -> None:
        """Bytes from the peer."""
        if self.conn is None or self._finished:
            return
        if self._paused or self._held:
            # uvloop starts reading after connection_made even when it paused reading:
            # keep what comes too early until the core asks for it.
            self._held.append(data)
            if self._transport is not None and not self._transport.is_closing():
                self._transport.pause_reading()
            return
        self._runner.dispatch(DataReceived(conn=self.conn, data=data))

    def eof_received(self) -> bool:
        """The peer finished sending; keep the connection open so the answer can be sent."""
        first = not self._eof_seen
        self._eof_seen = True
        if first and self.conn is not None and not self._finished:
            if self._paused or self._held:
                self._eof_held = True
            else:
                self._runner.dispatch(EofReceived(conn=self.conn))
        # asyncio's TLS transports always close on EOF and warn when asked not to.
        return not self._tls

    def connection_lost(self, exc: Exception | None) -> None:
        """The transport is gone: closed by us, by the peer, or broken."""
        self._lost = True
        self._outbox.clear()
        self._queued = 0
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        self._backend.untrack(self)
        if self.conn is None or self._finished:
            self._finished = True
            return
        self._finished = True
        reason = "connection closed" if exc is None else f"connection lost: {describe(exc)}"
        self._runner.dispatch(ConnectionLost(conn=self.conn, reason=reason))

    def pause_writing(self) -> None:
        """Bytes stay buffered; :meth:`resume_writing` follows once they have all gone."""

    def resume_writing(self) -> None:
        """The buffer is empty again: hand asyncio more, report what left it."""
        self._schedule_tick()

    # -- connecting ------------------------------------------------------------------------

    def start_connect(self, command: OpenUpstream, contexts: ClientContexts) -> asyncio.Task[None]:
        """Start :meth:`connect` in a task, which a ``Close`` before it connects cancels."""
        self._connect_task = self._loop.create_task(self.connect(command, contexts))
        return self._connect_task

    async def connect(self, command: OpenUpstream, contexts: ClientContexts) -> None:
        """Open the connection ``command`` asks for; report a failure (success: see above)."""
        self.conn = command.conn
        self._server_name = None if command.tls is None else command.tls.server_name
        try:
            if command.tls is None:
                await self._loop.create_connection(lambda: self, command.host, command.port)
            else:
                await self._loop.create_connection(
                    lambda: self,
                    command.host,
                    command.port,
                    ssl=contexts.get(command.tls),
                    server_hostname=command.tls.server_name,
                    ssl_shutdown_timeout=self._backend.close_timeout,
                )
        except Exception as exc:  # noqa: BLE001 - every way a connect can fail is reported
            failed = self._transport is None and not self._finished
            self._finished = self._finished or failed
            self._connect_task = None
            if failed:
                self._runner.dispatch(UpstreamFailed(conn=command.conn, reason=describe(exc)))
        else:
            self._connect_task = None

    # -- internals -------------------------------------------------------------------------

    def _accepted(self, transport: asyncio.Transport, ssl_object: ssl.SSLObject | None) -> None:
        if not self._backend.accepting:
            self._finished = True
            self._abort()
            return
        try:
            peer = socket_address(transport.get_extra_info("peername"))
            local = socket_address(transport.get_extra_info("sockname"))
        except OSError:
            self._finished = True
            self._abort()  # gone before we looked at it
            return
        tls: TlsInfo | None = None
        if ssl_object is not None:
            names = self._server_names or {}
            tls = tls_info(ssl_object, names.pop(ssl_object, None))
        if self._listener is None:
            raise RuntimeError("accepted connection without a listener")
        self.conn = self._runner.accept(
            self, listener=self._listener, peer=peer, local=local, tls=tls, not_tls=self._not_tls
        )

    def _connected(self, transport: asyncio.Transport, ssl_object: ssl.SSLObject | None) -> None:
        if self.conn is None or self._finished:
            self._abort()
            # Closed while connecting, so the connect task was cancelled as well; uvloop
            # then never calls connection_lost for this transport, and shutdown would wait
            # for it until close_timeout. Nothing needs it any more: stop tracking it now.
            self.connection_lost(None)
            return
        tls: TlsInfo | None = None
        if ssl_object is not None:
            tls = tls_info(ssl_object, self._server_name)
        if self._paused:
            transport.pause_reading()
        self._runner.dispatch(UpstreamConnected(conn=self.conn, tls=tls))
        self._pump()  # anything sent while connecting
        self._schedule_tick()

    def _release_held(self) -> None:
        """After ``ResumeReading``: deliver what came while paused, then read again."""
        while self._held and not self._paused and not self._finished and self.conn is not None:
            self._runner.dispatch(DataReceived(conn=self.conn, data=self._held.popleft()))
        if self._paused or self._finished or self.conn is None:
            return
        if self._eof_held:
            self._eof_held = False
            self._runner.dispatch(EofReceived(conn=self.conn))
            return
        transport = self._transport
        if transport is not None and not self._eof_seen and not transport.is_closing():
            transport.resume_reading()

    def _pump(self) -> None:
        """Hand queued bytes to asyncio, one piece at a time, while its buffer is empty.

        So asyncio never holds more than one piece beyond what it could not send at once,
        and over TLS the socket transport under the TLS layer never gets more than its own
        high-water mark plus one piece that is not counted in ``get_write_buffer_size``.
        """
        transport = self._transport
        if transport is None or self._lost:
            return
        outbox = self._outbox
        while outbox and not transport.get_write_buffer_size() and not transport.is_closing():
            first = outbox[0]
            if len(first) <= WRITE_PIECE:
                outbox.popleft()
                piece = first
            else:
                view = memoryview(first)
                piece, outbox[0] = view[:WRITE_PIECE], view[WRITE_PIECE:]
            self._queued -= len(piece)
            transport.write(piece)
        if outbox or transport.is_closing():
            return
        if self._eof_wanted and not self._eof_written and transport.can_write_eof():
            self._eof_written = True
            transport.write_eof()  # asyncio sends FIN once its buffer is empty
        if self._close_wanted:
            transport.close()  # likewise flushes first

    def _schedule_tick(self) -> None:
        if not self._tick_pending:
            self._tick_pending = True
            self._loop.call_soon(self._tick)

    def _tick(self) -> None:
        """Outside any turn: hand over more bytes, then report those that left asyncio."""
        self._tick_pending = False
        self._pump()
        transport = self._transport
        if self._finished or self._lost or transport is None or self.conn is None:
            return
        # asyncio's buffer holds the newest bytes it was handed, so all older ones are gone.
        # Over TLS it counts ciphertext, never shorter than its plaintext: this only errs low,
        # until the buffer is empty and resume_writing brings us back here.
        gone = self._unreported - self._queued - transport.get_write_buffer_size()
        if gone > 0:
            self._unreported -= gone
            self._runner.dispatch(Written(conn=self.conn, nbytes=gone))

    def _abort(self) -> None:
        self._outbox.clear()
        self._queued = 0
        transport = self._transport
        if transport is None or self._lost:
            return
        _setsockopt(transport, socket.SOL_SOCKET, socket.SO_LINGER, _RESET_ON_CLOSE)
        transport.abort()


class AsyncioBackend:
    """The runner's :class:`~sansproxy_io.runner.Backend` on an asyncio event loop.

    Args:
        loop: The running loop.
        contexts: Client TLS contexts for upstreams.
        close_timeout: Bound on flushing and closing a connection after ``Close``.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, contexts: ClientContexts, close_timeout: float
    ) -> None:
        self.loop = loop
        self.close_timeout = close_timeout
        self.accepting = True
        self.shutdown_done = asyncio.Event()
        self._contexts = contexts
        self._runner: Runner | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._live: set[AsyncioConnection] = set()
        self._connecting: dict[AsyncioConnection, asyncio.Task[None]] = {}
        self._idle = asyncio.Event()
        self._idle.set()

    def attach(self, runner: Runner) -> None:
        """Connect the runner (the two refer to each other)."""
        self._runner = runner

    @property
    def runner(self) -> Runner:
        """The runner this backend serves."""
        if self._runner is None:
            raise RuntimeError("AsyncioBackend used before attach()")
        return self._runner

    def client_protocol(
        self,
        listener: int,
        server_names: MutableMapping[ssl.SSLObject, str] | None,
        *,
        not_tls: bool = False,
    ) -> AsyncioConnection:
        """A protocol for a connection accepted on listener number ``listener``.

        ``not_tls``: a TLS listener's client whose first byte is not a TLS handshake,
        connected without TLS (``sansproxy_asyncio._tls_accept``).
        """
        return AsyncioConnection(
            self, listener=listener, server_names=server_names, not_tls=not_tls
        )

    # -- live connections ------------------------------------------------------------------

    def track(self, connection: AsyncioConnection) -> None:
        """``connection`` has a transport now; shutdown waits until it is lost."""
        self._live.add(connection)
        self._idle.clear()

    def untrack(self, connection: AsyncioConnection) -> None:
        """``connection``'s transport is gone."""
        self._live.discard(connection)
        self._check_idle()

    def connect_ended(self, connection: AsyncioConnection) -> None:
        """``connection``'s connect attempt is over (connected, failed or cancelled)."""
        self._connecting.pop(connection, None)
        self._check_idle()

    async def wait_idle(self) -> None:
        """Return once no connection is open or connecting."""
        await self._idle.wait()

    def abort_all(self) -> None:
        """Reset every connection and cancel every connect: the server is going away."""
        for task in list(self._connecting.values()):
            task.cancel()
        for connection in list(self._live):
            connection.close(abort=True)
        self.arm_timer(None)

    def _check_idle(self) -> None:
        if not self._live and not self._connecting:
            self._idle.set()

    # -- Backend ---------------------------------------------------------------------------

    def open_upstream(self, command: OpenUpstream) -> AsyncioConnection:
        """Start connecting in a task; the connection reports how it went."""
        connection = AsyncioConnection(self)
        task = connection.start_connect(command, self._contexts)
        self._connecting[connection] = task
        # Also when a Close cancels it before it ever ran (then no finally clause would run).
        task.add_done_callback(lambda _: self.connect_ended(connection))
        self._idle.clear()
        return connection

    def arm_timer(self, deadline: float | None) -> None:
        """Call :meth:`Runner.on_timer` at ``deadline`` on ``loop.time()`` (``None``: never)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if deadline is not None:
            self._timer = self.loop.call_at(deadline, self._fire)

    def shutdown_complete(self) -> None:
        """The core has closed everything after ``ShutdownRequested``."""
        self.shutdown_done.set()

    def _fire(self) -> None:
        self._timer = None
        self.runner.on_timer()
