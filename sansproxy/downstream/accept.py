"""Which protocol a new client connection speaks, and the connection object for it.

TLS connections follow ALPN: ``h2`` is HTTP/2, anything else HTTP/1.1 (a handshake
without ALPN speaks HTTP/1.1 where the listener offers it, else HTTP/2). A
cleartext connection is HTTP/1.1, unless its listener allows ``h2c``: then one that
opens with the HTTP/2 preface (RFC 9113 §3.3, prior knowledge) is HTTP/2, and a
listener that offers nothing else treats every connection as HTTP/2. Until enough
bytes have arrived to tell, a :class:`PrefaceSniffer` holds them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sansproxy._codec.http1 import refusal as http1_refusal
from sansproxy._codec.http2 import PREFACE
from sansproxy._codec.http2 import refusal as http2_refusal
from sansproxy._timers import TimerKind
from sansproxy.commands import Close
from sansproxy.downstream.http1 import Http1Downstream
from sansproxy.downstream.http2 import Http2Downstream
from sansproxy.errors import UsageError

if TYPE_CHECKING:
    from sansproxy._context import Context
    from sansproxy.config import Listener
    from sansproxy.downstream import Downstream
    from sansproxy.events import ConnectionAccepted, ConnId, TlsInfo

__all__ = ["PrefaceSniffer", "accept", "refusal"]


def _speaks_http2(listener: Listener, tls: TlsInfo | None) -> bool | None:
    """True or False when the protocol is known at accept; None when the bytes must tell."""
    if listener.tls:
        if tls is not None and tls.alpn is not None:
            return tls.alpn == "h2"
        return "http/1.1" not in listener.speaks
    if not listener.h2c:
        return False
    return None if "http/1.1" in listener.speaks else True


def accept(ctx: Context, event: ConnectionAccepted) -> Downstream:
    """The connection object for a client connection the core just accepted."""
    listener = ctx.config.listeners[event.listener]
    http2 = _speaks_http2(listener, event.tls)
    if http2 is None:
        return PrefaceSniffer(ctx, event.conn, listener=event.listener, peer=event.peer)
    kind = Http2Downstream if http2 else Http1Downstream
    return kind(ctx, event.conn, listener=event.listener, peer=event.peer, tls=event.tls)


def refusal(ctx: Context, event: ConnectionAccepted) -> bytes:
    """What a connection turned away (the proxy is full or stopping) is told, in its protocol."""
    listener = ctx.config.listeners[event.listener]
    return http2_refusal() if _speaks_http2(listener, event.tls) else http1_refusal()


class PrefaceSniffer:
    """A cleartext connection that may open with the HTTP/2 preface: wait for enough bytes."""

    __slots__ = ("buffer", "conn", "ctx", "listener", "open", "peer")

    @property
    def order(self) -> int:
        """Timer tie-break: the connection's id."""
        return self.conn

    def __init__(self, ctx: Context, conn: ConnId, *, listener: int, peer: tuple[str, int]) -> None:
        self.ctx = ctx
        self.conn = conn
        self.listener = listener
        self.peer = peer
        self.buffer = b""
        self.open = True
        ctx.timers.set(self, TimerKind.CLIENT_HEADER, ctx.now + ctx.settings.timeouts.client_header)

    def on_data(self, data: bytes) -> None:
        """Bytes from the client: hand them on once they show the protocol."""
        buffer = self.buffer + data
        if len(buffer) < len(PREFACE) and PREFACE.startswith(buffer):
            self.buffer = buffer
            return
        self._hand_over(http2=buffer.startswith(PREFACE), early=buffer)

    def _hand_over(self, *, http2: bool, early: bytes) -> None:
        ctx = self.ctx
        ctx.timers.cancel(self)
        self.open = False
        kind = Http2Downstream if http2 else Http1Downstream
        successor = kind(ctx, self.conn, listener=self.listener, peer=self.peer, tls=None)
        ctx.clients[self.conn] = successor
        if early:
            successor.on_data(early)

    def on_eof(self) -> None:
        """The client left before it said anything that shows a protocol."""
        self._close()

    def on_lost(self) -> None:
        """The connection broke."""
        self.open = False
        del self.ctx.clients[self.conn]
        self.ctx.timers.cancel(self)

    def on_written(self, nbytes: int) -> None:
        """Nothing was sent: a Written here is the adapter's mistake."""
        raise UsageError(f"Written({nbytes}) exceeds the 0 bytes sent to {self.conn}")

    def on_timer(self, kind: TimerKind) -> None:
        """Too slow to tell its protocol: it is taken for HTTP/1.1, which answers 408."""
        if self.open:
            self._hand_over(http2=False, early=self.buffer)
            successor = self.ctx.clients.get(self.conn)
            if isinstance(successor, Http1Downstream):
                successor.on_timer(kind)

    def shutdown(self) -> None:
        """Nothing in flight: close."""
        self._close()

    def abort(self) -> None:
        """Cut the connection."""
        self._close(abort=True)

    def _close(self, *, abort: bool = False) -> None:
        if not self.open:
            return
        self.on_lost()
        self.ctx.emit(Close(conn=self.conn, abort=abort))
