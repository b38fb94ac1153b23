"""A client that sent something other than a TLS handshake to a TLS listener.

It is almost always plain HTTP to an ``https`` port (``curl http://host:443/``). The
core answers, as nginx does, with a plain-text ``400 The plain HTTP request was sent to
HTTPS port`` and ``Connection: close``, written at once, without reading the request
(nothing in it would change the answer) and without routing it anywhere. Then it
lingers: what the client still sends is read and dropped until it closes, or until
``timeouts.client_linger``, because closing with unread input would reset the connection
and could destroy the answer before the client reads it (RFC 9112 §9.6).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sansproxy._codec.http1 import not_tls_response
from sansproxy._timers import TimerKind
from sansproxy.commands import Close, ShutdownWrite
from sansproxy.downstream import ClientConnection

if TYPE_CHECKING:
    from sansproxy._context import Context
    from sansproxy.events import ConnId

__all__ = ["NotTlsConnection"]


class NotTlsConnection(ClientConnection):
    """Answers the 400, drains the rest, closes."""

    __slots__ = ()

    def __init__(self, ctx: Context, conn: ConnId, *, listener: int, peer: tuple[str, int]) -> None:
        super().__init__(ctx, conn, listener=listener, peer=peer, tls=None)
        ctx.send(self, not_tls_response())
        ctx.emit(ShutdownWrite(conn=conn))
        ctx.timers.set(self, TimerKind.CLIENT_LINGER, ctx.now + ctx.settings.timeouts.client_linger)

    def on_data(self, data: bytes) -> None:
        """The request we already answered, or more of it: dropped."""

    def on_eof(self) -> None:
        """The client is done sending: nothing more to wait for."""
        self._close()

    def on_lost(self) -> None:
        """The connection broke."""
        self._forget()

    def on_timer(self, kind: TimerKind) -> None:
        """The linger time is over."""
        self._close()

    def shutdown(self) -> None:
        """The proxy is stopping: the answer is out, close."""
        self._close()

    def abort(self) -> None:
        """Cut the connection."""
        self._close(abort=True)

    def _close(self, *, abort: bool = False) -> None:
        if self._forget():
            self.ctx.emit(Close(conn=self.conn, abort=abort))
