"""Upstream connections: one per backend socket, and the pool of idle ones.

Theory of operation
-------------------
An :class:`UpstreamConn` carries one exchange at a time (a client's, or a health
probe's) over its HTTP/1.1 :class:`~sansproxy._codec.http1.ClientCodec`. What it
reads is parsed and handed to that exchange; what the exchange writes is queued
until the connection is up. It keeps the connect timeout (and, for its exchange,
the response header and body idle timeouts); a timeout, a reset or a protocol
error is reported to :mod:`sansproxy.attempts`, which decides what the client sees.

A connection goes back to the :class:`IdlePool` only after a cycle in which both
messages ended cleanly with keep-alive on both sides, while its server is still
configured and the proxy is not shutting down; an idle connection that says
anything, or outlives ``timeouts.upstream_keepalive``, is closed.
"""

from __future__ import annotations

from enum import Enum, auto
from typing import TYPE_CHECKING

from sansproxy import attempts
from sansproxy._codec import (
    Body,
    CodecError,
    EndOfMessage,
    InformationalHead,
    PeerClosed,
    ResponseHead,
)
from sansproxy._codec.http1 import ClientCodec
from sansproxy._flow import HOLD_PEER, Side
from sansproxy._timers import TimerKind
from sansproxy.commands import Close, Send
from sansproxy.errors import UsageError

if TYPE_CHECKING:
    from sansproxy._context import Context
    from sansproxy.config import Server
    from sansproxy.events import ConnId
    from sansproxy.exchange import Exchange

__all__ = ["IdlePool", "UpstreamConn", "UpstreamState"]


class UpstreamState(Enum):
    """Where an upstream connection is."""

    CONNECTING = auto()
    ACTIVE = auto()
    IDLE = auto()
    """In the pool, waiting for the next exchange."""
    TUNNEL = auto()
    """Switched protocols: bytes are relayed as they are."""


class UpstreamConn(Side):
    """One connection to a backend server."""

    __slots__ = ("codec", "ctx", "exchange", "open", "reused", "server", "state")

    def __init__(self, ctx: Context, conn: ConnId, server: Server) -> None:
        super().__init__(conn)
        self.ctx = ctx
        self.server = server
        self.codec = ClientCodec()
        self.state = UpstreamState.CONNECTING
        self.queue = []
        self.exchange: Exchange | None = None
        self.open = True
        """False once the core has let go of the connection."""
        self.reused = False
        """Taken from the idle pool: it may have been closed by the backend meanwhile."""

    @property
    def connected(self) -> bool:
        """Whether the connection is up (writes go out at once)."""
        return self.queue is None

    # -- events ------------------------------------------------------------------------

    def on_connected(self) -> None:
        """The adapter reports the connect (TLS included) succeeded."""
        if self.state is not UpstreamState.CONNECTING:
            raise UsageError(f"connection {self.conn} reported connected twice")
        self.state = UpstreamState.ACTIVE
        exchange = self.exchange
        if exchange is None or exchange.probe is None:
            self.ctx.timers.cancel(self)
        queue = self.queue
        self.queue = None
        if queue:
            self.ctx.emit(Send(conn=self.conn, data=b"".join(queue)))
        if exchange is not None:
            exchange.connected(self)

    def on_failed(self, reason: str) -> None:
        """The adapter reports the connect failed; the connection is gone."""
        if self.state is not UpstreamState.CONNECTING:
            raise UsageError(f"connection {self.conn} failed after connecting")
        self.forget()
        attempts.connect_failed(self, reason)

    def on_data(self, data: bytes) -> None:
        """Bytes from the backend."""
        state = self.state
        if state is UpstreamState.TUNNEL:
            exchange = self.exchange
            assert exchange is not None
            assert exchange.tunnel is not None
            exchange.tunnel.down(data)
            return
        if state is UpstreamState.CONNECTING:
            raise UsageError(f"data on connection {self.conn} before UpstreamConnected")
        self.codec.receive(data)
        self._pump()

    def on_eof(self) -> None:
        """The backend closed its sending side."""
        if self.state is UpstreamState.TUNNEL:
            exchange = self.exchange
            assert exchange is not None
            assert exchange.tunnel is not None
            exchange.tunnel.end()
            return
        self.codec.receive(b"")
        self._pump()

    def on_lost(self) -> None:
        """The connection broke; it is gone."""
        if self.state is UpstreamState.TUNNEL:
            exchange = self.exchange
            assert exchange is not None
            assert exchange.tunnel is not None
            self.forget()
            exchange.tunnel.end()
            return
        attempts.upstream_broke(self, "connection lost", lost=True)

    def on_written(self, nbytes: int) -> None:
        """The adapter wrote ``nbytes`` to the backend."""
        self.ctx.written(self, nbytes)

    def on_timer(self, kind: TimerKind) -> None:
        """One of this connection's timers expired."""
        if self.open:
            attempts.upstream_timeout(self, kind)

    def _pump(self) -> None:
        codec = self.codec
        while self.open and self.state is not UpstreamState.TUNNEL:
            event = codec.next_event()
            if event is None:
                return
            exchange = self.exchange
            if exchange is None:
                # An idle pooled connection said something: it is no longer usable.
                self.close(abort=not isinstance(event, PeerClosed))
                return
            if type(event) is Body:
                exchange.response_body(event.data)
            elif type(event) is ResponseHead:
                exchange.response_head(event)
            elif type(event) is EndOfMessage:
                exchange.response_end(event.trailers)
            elif type(event) is InformationalHead:
                exchange.informational(event)
            elif type(event) is PeerClosed:
                attempts.upstream_broke(self, "closed the connection", lost=False)
                return
            elif type(event) is CodecError:
                attempts.upstream_broke(self, f"protocol error: {event.reason}", lost=False)
                return
            else:  # pragma: no cover - a client codec yields no other events
                raise AssertionError(f"unexpected response event {event!r}")

    # -- flow control ------------------------------------------------------------------

    def backlogged(self) -> None:
        """The backend is not taking the request body fast enough: hold the client's."""
        exchange = self.exchange
        if exchange is not None:
            exchange.stream.hold_request(HOLD_PEER)

    def drained(self) -> None:
        """The backend caught up: the client's request body may flow again."""
        exchange = self.exchange
        if exchange is not None:
            exchange.stream.release_request(HOLD_PEER)

    def progressed(self) -> None:
        """Request bytes reached the backend: idle timers start again, window credit returns."""
        self.touch()
        exchange = self.exchange
        if exchange is not None:
            exchange.stream.touch()
            exchange.upstream_progressed(self)

    def touch(self) -> None:
        """Progress: a running body idle timer starts again."""
        ctx = self.ctx
        if ctx.timers.kind(self) is TimerKind.UPSTREAM_BODY:
            exchange = self.exchange
            timeouts = ctx.settings.timeouts if exchange is None else exchange.timeouts
            ctx.timers.set(self, TimerKind.UPSTREAM_BODY, ctx.now + timeouts.upstream_body)

    # -- endings -----------------------------------------------------------------------

    def finished_with(self, *, reuse: bool) -> None:
        """The exchange is done with the connection: pool it if it can carry another."""
        if (
            reuse
            and not self.ctx.shutting_down
            and self.codec.start_next_cycle()
            and self.ctx.idle.put(self)
        ):
            return
        self.close(abort=False)

    def close(self, *, abort: bool) -> None:
        """Close the connection (the core no longer wants it)."""
        if self.forget():
            self.ctx.emit(Close(conn=self.conn, abort=abort))

    def forget(self) -> bool:
        """Remove every trace of the connection; False if it was already gone."""
        if not self.open:
            return False
        self.open = False
        ctx = self.ctx
        del ctx.upstreams[self.conn]
        ctx.timers.cancel(self)
        if self.state is UpstreamState.IDLE:
            ctx.idle.remove(self)
        exchange = self.exchange
        if exchange is not None and exchange.upstream is self:
            exchange.upstream = None
        return True


class IdlePool:
    """Idle keep-alive connections per server, newest last (reused first)."""

    __slots__ = ("_by_server",)

    def __init__(self) -> None:
        self._by_server: dict[Server, list[UpstreamConn]] = {}

    def __len__(self) -> int:
        return sum(len(idle) for idle in self._by_server.values())

    def take(self, server: Server) -> UpstreamConn | None:
        """An idle connection to ``server``, now active, or None."""
        idle = self._by_server.get(server)
        if not idle:
            return None
        upstream = idle.pop()
        if not idle:
            del self._by_server[server]
        upstream.ctx.timers.cancel(upstream)
        upstream.state = UpstreamState.ACTIVE
        return upstream

    def put(self, upstream: UpstreamConn) -> bool:
        """Keep ``upstream`` for reuse; False when its server is gone or has enough idle."""
        ctx = upstream.ctx
        if upstream.server not in ctx.settings.servers:  # removed by a reload
            return False
        idle = self._by_server.setdefault(upstream.server, [])
        if len(idle) >= ctx.settings.limits.max_idle_per_server:
            return False
        upstream.state = UpstreamState.IDLE
        upstream.reused = True
        idle.append(upstream)
        ctx.timers.set(
            upstream,
            TimerKind.UPSTREAM_KEEPALIVE,
            ctx.now + ctx.settings.timeouts.upstream_keepalive,
        )
        return True

    def remove(self, upstream: UpstreamConn) -> None:
        """Take ``upstream`` out (it is being closed)."""
        idle = self._by_server.get(upstream.server)
        if idle is not None and upstream in idle:
            idle.remove(upstream)
            if not idle:
                del self._by_server[upstream.server]

    def close_all(self, keep: frozenset[Server] | None = None) -> None:
        """Close every idle connection (only those to servers outside ``keep``, if given)."""
        for server, idle in list(self._by_server.items()):
            if keep is not None and server in keep:
                continue
            for upstream in list(idle):
                upstream.close(abort=False)
