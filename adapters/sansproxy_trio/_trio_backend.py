"""Trio primitives behind the runner: one connection's reader and writer, connects, the timer.

Theory of operation:

- A :class:`TrioConnection` is the :class:`~sansproxy_io.runner.Transport` of one client
  or upstream connection. Everything it does runs inside its own cancel scope, so an abort,
  a ``Close`` while connecting, or the server going away all stop it at once.
- Its reader reads up to 64 KiB at a time while reading is not paused and reports
  ``DataReceived``, ``EofReceived`` (empty read; the reader then stops) or ``ConnectionLost``.
- Its writer waits for queued bytes, writes them all with one ``send_all`` and reports
  ``Written``. After a graceful ``Close`` it stops the reader, flushes the queue and closes
  the stream (TLS: with close_notify; a peer closing without one counts as EOF). The flush
  and close are bounded by ``close_timeout``: the core has forgotten the connection by then,
  so nothing else would ever end a peer that stops reading. An abort sets SO_LINGER 0 so
  closing sends a reset.
- On plain TCP both go straight to the stream's trio socket (``recv``, ``send``): the same
  system calls and checkpoints, without the stream layer's per-call wrappers, which cost
  as much as the calls on a busy proxy. TLS streams are read and written as streams.
- Events go through :meth:`Runner.dispatch`, which drops those about connections the core
  already closed.
- :class:`TrioTimer` is the one timer: a task asleep in a cancel scope whose deadline is the
  armed deadline (``inf`` when disarmed); re-arming just moves that deadline.
"""

from __future__ import annotations

import contextlib
import math
import socket
import ssl
import struct
from collections.abc import Awaitable, Callable

import trio

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
from sansproxy_io.runner import Runner
from sansproxy_io.tls import ClientContexts, tls_info

__all__ = ["TrioBackend", "TrioConnection", "TrioTimer", "set_nodelay"]

RECEIVE_SIZE = 65536
_STREAM_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


def set_nodelay(stream: trio.SocketStream) -> None:
    """Turn off Nagle's algorithm: proxied HTTP is request/response, latency matters.

    trio sets it too on TCP streams; setting it here keeps that a decision of ours.
    """
    stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)


def _set_reset_on_close(stream: trio.SocketStream) -> None:
    # OSError: already closed or reset by the peer, nothing left to reset.
    with contextlib.suppress(OSError):
        stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _is_ragged_eof(exc: trio.BrokenResourceError) -> bool:
    """The TLS peer closed TCP without close_notify.

    Many HTTP clients and servers do; like Python's ``ssl`` module (``suppress_ragged_eofs``)
    and trio's ``https_compatible`` mode, that counts as end of stream. (It is only a
    truncation risk for close-delimited bodies, which the core sees as such.)
    """
    cause = exc.__cause__
    return isinstance(cause, ssl.SSLEOFError) or "UNEXPECTED_EOF" in str(cause)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _receiver(stream: trio.abc.Stream) -> Callable[[int], Awaitable[bytes | bytearray]]:
    """How to read from ``stream``: its socket's ``recv`` for plain TCP."""
    if isinstance(stream, trio.SocketStream):
        return stream.socket.recv
    return stream.receive_some


def _sender(stream: trio.abc.Stream) -> Callable[[bytes], Awaitable[None]]:
    """How to write all of some bytes to ``stream``: its socket's ``send`` for plain TCP."""
    if not isinstance(stream, trio.SocketStream):
        return stream.send_all
    sock = stream.socket

    async def send_all(data: bytes) -> None:
        sent = await sock.send(data)
        if sent < len(data):
            with memoryview(data) as view:
                while sent < len(view):
                    sent += await sock.send(view[sent:])

    return send_all


async def _send_eof(stream: trio.abc.Stream) -> None:
    """Half-close a TCP stream; TLS has no half-close, so it stays open until the close."""
    if isinstance(stream, trio.abc.HalfCloseableStream):
        with contextlib.suppress(*_STREAM_ERRORS):
            await stream.send_eof()


class TrioConnection:
    """One connection's queue, reader and writer; the runner's transport for it."""

    def __init__(
        self, runner: Runner, close_timeout: float, raw: trio.SocketStream | None = None
    ) -> None:
        self.conn: ConnId | None = None
        self._runner = runner
        self._close_timeout = close_timeout
        self._outbox: list[bytes] = []
        self._outbox_changed = trio.Event()
        self._reading_allowed = trio.Event()
        self._reading_allowed.set()
        self._closing = False
        self._eof_after_flush = False
        self._aborted = False
        self._scope = trio.CancelScope()
        self._reader_scope = trio.CancelScope()
        self._flush_scope = trio.CancelScope()
        self._raw = raw

    # -- Transport -------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self._outbox.append(data)
        self._outbox_changed.set()

    def close(self, *, abort: bool) -> None:
        if abort:
            self._aborted = True
            if self._raw is not None:
                _set_reset_on_close(self._raw)
            self._scope.cancel()
        else:
            # Stop reading; give the writer close_timeout to flush what is queued.
            self._reader_scope.cancel()
            self._flush_scope.deadline = trio.current_time() + self._close_timeout
        self._closing = True
        self._outbox_changed.set()

    def shutdown_write(self) -> None:
        self._eof_after_flush = True
        self._outbox_changed.set()

    def pause_reading(self) -> None:
        if self._reading_allowed.is_set():
            self._reading_allowed = trio.Event()

    def resume_reading(self) -> None:
        self._reading_allowed.set()

    # -- tasks -----------------------------------------------------------------------------

    async def serve_client(self, stream: trio.abc.Stream) -> None:
        """Read and write an accepted connection (``self.conn`` set) until it is closed.

        ``stream`` is the socket given to the constructor, or the TLS stream over it.
        """
        try:
            with self._scope:
                await self._serve(stream)
        finally:
            await self._release(stream)

    async def serve_upstream(self, command: OpenUpstream, contexts: ClientContexts) -> None:
        """Connect as ``command`` asks, report the outcome, then serve the connection."""
        self.conn = command.conn
        stream: trio.abc.Stream | None = None
        try:
            with self._scope:
                try:
                    raw = await trio.open_tcp_stream(command.host, command.port)
                    self._raw = raw
                    set_nodelay(raw)
                    stream = raw
                    tls: TlsInfo | None = None
                    if command.tls is not None:
                        ssl_stream = trio.SSLStream(
                            raw,
                            contexts.get(command.tls),
                            server_hostname=command.tls.server_name,
                        )
                        await ssl_stream.do_handshake()
                        stream = ssl_stream
                        tls = tls_info(ssl_stream, command.tls.server_name)
                except Exception as exc:  # noqa: BLE001 - every way a connect can fail is reported
                    self._aborted = True
                    self._runner.dispatch(UpstreamFailed(conn=command.conn, reason=_describe(exc)))
                    return
                self._runner.dispatch(UpstreamConnected(conn=command.conn, tls=tls))
                await self._serve(stream)
        finally:
            await self._release(stream)

    async def _serve(self, stream: trio.abc.Stream) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._read, stream)
            with self._flush_scope:
                await self._write(stream)
            if self._flush_scope.cancelled_caught:
                self.close(abort=True)  # the peer would not take the last bytes in time
            nursery.cancel_scope.cancel()

    async def _read(self, stream: trio.abc.Stream) -> None:
        conn = self._id()
        receive = _receiver(stream)
        with self._reader_scope:
            while True:
                if not self._reading_allowed.is_set():
                    # Only when paused: waiting on a set event would cost a trip through
                    # the scheduler for every read (a read is a checkpoint anyway).
                    await self._reading_allowed.wait()
                try:
                    data = await receive(RECEIVE_SIZE)
                except trio.BrokenResourceError as exc:
                    if not _is_ragged_eof(exc):
                        self._lost(f"read failed: {_describe(exc.__cause__ or exc)}")
                        return
                    data = b""
                except _STREAM_ERRORS as exc:
                    self._lost(f"read failed: {_describe(exc)}")
                    return
                if not data:
                    self._runner.dispatch(EofReceived(conn=conn))
                    return
                self._runner.dispatch(DataReceived(conn=conn, data=bytes(data)))

    async def _write(self, stream: trio.abc.Stream) -> None:
        conn = self._id()
        send_all = _sender(stream)
        while True:
            if not self._outbox:
                if self._closing:
                    return
                if self._eof_after_flush:
                    self._eof_after_flush = False
                    await _send_eof(stream)
                    continue
                await self._outbox_changed.wait()
                self._outbox_changed = trio.Event()
                continue
            data = b"".join(self._outbox)
            self._outbox.clear()
            try:
                await send_all(data)
            except _STREAM_ERRORS as exc:
                self._lost(f"write failed: {_describe(exc)}")
                return
            self._runner.dispatch(Written(conn=conn, nbytes=len(data)))

    async def _release(self, stream: trio.abc.Stream | None) -> None:
        if self._raw is None:
            return
        if self._aborted:
            _set_reset_on_close(self._raw)
        elif stream is not None and self._closing:
            with trio.move_on_after(self._close_timeout):
                # TLS sends close_notify. If the peer went away first, the socket is
                # closed either way.
                with contextlib.suppress(*_STREAM_ERRORS):
                    await stream.aclose()
        # Reset, lost, or the server going away: no goodbye. Closing twice is harmless.
        await trio.aclose_forcefully(self._raw)

    def _lost(self, reason: str) -> None:
        self._aborted = True
        self._runner.dispatch(ConnectionLost(conn=self._id(), reason=reason))
        self._scope.cancel()

    def _id(self) -> ConnId:
        if self.conn is None:
            raise RuntimeError("connection served before the core named it")
        return self.conn


class TrioTimer:
    """The single timer of a runner, as a task sleeping until the armed deadline."""

    def __init__(self) -> None:
        self._deadline = math.inf
        self._scope: trio.CancelScope | None = None

    def arm(self, deadline: float | None) -> None:
        """Move the deadline (``None`` disarms); the running task picks it up at once."""
        self._deadline = math.inf if deadline is None else deadline
        if self._scope is not None:
            self._scope.deadline = self._deadline

    async def run(self, fire: Callable[[], None]) -> None:
        """Call ``fire`` each time the clock reaches the armed deadline; runs until cancelled."""
        while True:
            with trio.CancelScope(deadline=self._deadline) as scope:
                self._scope = scope
                await trio.sleep_forever()
            self._scope = None
            self._deadline = math.inf  # fired: disarmed until re-armed
            fire()


class TrioBackend:
    """The runner's :class:`~sansproxy_io.runner.Backend` on trio.

    Args:
        nursery: Where connect and connection tasks run.
        contexts: Client TLS contexts for upstreams.
        close_timeout: Bound on flushing and closing a connection after ``Close``.
    """

    def __init__(
        self, nursery: trio.Nursery, contexts: ClientContexts, close_timeout: float
    ) -> None:
        self._nursery = nursery
        self._contexts = contexts
        self.close_timeout = close_timeout
        self.timer = TrioTimer()
        self.shutdown_done = trio.Event()
        self._runner: Runner | None = None
        self._live = 0
        self._idle = trio.Event()
        self._idle.set()

    def attach(self, runner: Runner) -> None:
        """Connect the runner (the two refer to each other)."""
        self._runner = runner

    @property
    def runner(self) -> Runner:
        if self._runner is None:
            raise RuntimeError("TrioBackend used before attach()")
        return self._runner

    def new_connection(self, raw: trio.SocketStream) -> TrioConnection:
        """A transport for the accepted socket ``raw``, to register with ``Runner.accept``."""
        return TrioConnection(self.runner, self.close_timeout, raw)

    async def track(self, connection_task: Callable[[], Awaitable[None]]) -> None:
        """Count a connection task as live while ``connection_task()`` runs."""
        self._live += 1
        if self._live == 1:
            self._idle = trio.Event()
        try:
            await connection_task()
        finally:
            self._live -= 1
            if self._live == 0:
                self._idle.set()

    async def wait_idle(self) -> None:
        """Return once no connection task (client, upstream, connect) is running."""
        await self._idle.wait()

    # -- Backend ---------------------------------------------------------------------------

    def open_upstream(self, command: OpenUpstream) -> TrioConnection:
        connection = TrioConnection(self.runner, self.close_timeout)
        self._nursery.start_soon(
            self.track, lambda: connection.serve_upstream(command, self._contexts)
        )
        return connection

    def arm_timer(self, deadline: float | None) -> None:
        self.timer.arm(deadline)

    def shutdown_complete(self) -> None:
        self.shutdown_done.set()
