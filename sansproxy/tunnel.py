"""Tunnels: an exchange whose backend switched protocols (101), relayed as raw bytes.

Theory of operation: once a backend accepts an upgrade the request asked for
(``Connection: upgrade`` with ``Upgrade``, or an HTTP/2 extended CONNECT mapped to
one), the exchange becomes a :class:`Tunnel`: bytes from the client go to the
upstream socket as they are, and bytes from the upstream go to the client's
stream (an HTTP/1.1 connection, or the DATA frames of an HTTP/2 stream). The
same backpressure as for bodies applies both ways, and ``timeouts.tunnel_idle``
ends a tunnel in which nothing moves. When either side closes, what is buffered
is flushed and both are closed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sansproxy._exchange_states import Trigger
from sansproxy.upstream import UpstreamState

if TYPE_CHECKING:
    from sansproxy._codec import InformationalHead
    from sansproxy.exchange import Exchange
    from sansproxy.upstream import UpstreamConn

__all__ = ["Tunnel", "start_tunnel"]


class Tunnel:
    """The relay of one switched exchange."""

    __slots__ = ("exchange", "upstream")

    def __init__(self, exchange: Exchange, upstream: UpstreamConn) -> None:
        self.exchange = exchange
        self.upstream = upstream

    def up(self, data: bytes, credit: int = 0) -> None:
        """Bytes from the client."""
        exchange = self.exchange
        exchange.request_bytes += len(data)
        exchange.stream.touch()
        upstream = self.upstream
        exchange.ctx.send(upstream, data)
        if credit:
            exchange.owe(upstream, credit)

    def down(self, data: bytes) -> None:
        """Bytes from the backend."""
        exchange = self.exchange
        exchange.response_bytes += len(data)
        stream = exchange.stream
        stream.touch()
        stream.tunnel_send(data)

    def touch(self) -> None:
        """Progress either way keeps the tunnel's idle timer from firing."""
        self.exchange.stream.touch()

    def end(self) -> None:
        """Either side closed: flush what is buffered and close both."""
        exchange = self.exchange
        self.upstream.close(abort=False)
        exchange.end(Trigger.FINISH)
        exchange.stream.tunnel_ended()


def start_tunnel(exchange: Exchange, upstream: UpstreamConn, head: InformationalHead) -> None:
    """The backend switched protocols: tell the client and start relaying."""
    ctx = exchange.ctx
    exchange.status = 101
    exchange.move(Trigger.SWITCH)
    headers = exchange.settings.rules.client_response(
        head.headers, http_version=b"1.1", upgrade=True
    )
    upstream.state = UpstreamState.TUNNEL
    ctx.timers.cancel(upstream)
    tunnel = exchange.tunnel = Tunnel(exchange, upstream)
    stream = exchange.stream
    early = stream.switch(head.reason, headers)
    ctx.send(upstream, early)
    stream.tunnel_send(upstream.codec.trailing_data)
    stream.tunnel_started(tunnel)
