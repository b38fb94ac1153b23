"""An HTTP/1.1 client connection: one stream at a time, pipelined requests in order.

Theory of operation
-------------------
The connection is its own (single) stream: it parses one request at a time with
its :class:`~sansproxy._codec.http1.ServerCodec`, hands it to a new
:class:`~sansproxy.exchange.Exchange`, and writes that exchange's response.
Pipelined requests wait in the codec's buffer and are answered in order
(RFC 9112 §9.3.2); when more than ``buffer_high_water`` bytes of them pile up, the
socket is not read until the current exchange is over.

Its states: ``WAITING`` between requests (keep-alive, or the request header
timeout once bytes arrive), ``ACTIVE`` while an exchange runs, ``TUNNEL`` once a
backend switched protocols, and ``LINGER`` after an error response that cut a
request short: the rest of the request is read and dropped until the client
closes or ``timeouts.client_linger`` passes, so that closing does not reset the
error response away (RFC 9112 §9.6). A peer's mistake becomes an error response
and a (lingering) close.
"""

from __future__ import annotations

from enum import Enum, auto
from typing import TYPE_CHECKING

from sansproxy._codec import Body, CodecError, EndOfMessage, PeerClosed, RequestHead
from sansproxy._codec.http1 import ServerCodec
from sansproxy._flow import HOLD_PIPELINE
from sansproxy._timers import TimerKind
from sansproxy.commands import Close, ShutdownWrite
from sansproxy.downstream import ClientConnection, touch_idle_timer
from sansproxy.errors import UsageError
from sansproxy.exchange import Exchange

if TYPE_CHECKING:
    from sansproxy._codec import Headers
    from sansproxy._context import Context
    from sansproxy.events import ConnId, TlsInfo
    from sansproxy.tunnel import Tunnel

__all__ = ["ClientState", "Http1Downstream"]


class ClientState(Enum):
    """Where an HTTP/1.1 client connection is."""

    WAITING = auto()
    """Between requests (or before the first one)."""
    ACTIVE = auto()
    """An exchange is in progress."""
    TUNNEL = auto()
    """Switched protocols: bytes are relayed as they are."""
    LINGER = auto()
    """An error response is out; the rest of the request is read and dropped until close."""


class Http1Downstream(ClientConnection):
    """One HTTP/1.1 client connection, and the stream of its current exchange."""

    __slots__ = ("codec", "exchange", "pipelined_bytes", "state")

    def __init__(
        self,
        ctx: Context,
        conn: ConnId,
        *,
        listener: int,
        peer: tuple[str, int],
        tls: TlsInfo | None,
    ) -> None:
        super().__init__(ctx, conn, listener=listener, peer=peer, tls=tls)
        self.codec = ServerCodec(max_header_bytes=ctx.settings.limits.max_header_bytes)
        self.state = ClientState.WAITING
        self.exchange: Exchange | None = None
        self.pipelined_bytes = 0
        ctx.timers.set(self, TimerKind.CLIENT_HEADER, ctx.now + ctx.settings.timeouts.client_header)

    # -- events ------------------------------------------------------------------------

    def on_data(self, data: bytes) -> None:
        """Bytes from the client."""
        if self.eof:
            raise UsageError(f"data after EOF on connection {self.conn}")
        state = self.state
        if state is ClientState.LINGER:
            return
        if state is ClientState.TUNNEL:
            exchange = self.exchange
            assert exchange is not None
            assert exchange.tunnel is not None
            exchange.tunnel.up(data)
            return
        ctx = self.ctx
        if state is ClientState.WAITING and ctx.timers.kind(self) is TimerKind.CLIENT_KEEPALIVE:
            ctx.timers.set(
                self, TimerKind.CLIENT_HEADER, ctx.now + ctx.settings.timeouts.client_header
            )
        exchange = self.exchange
        if exchange is not None and exchange.request_complete:
            self.pipelined_bytes += len(data)
            if (
                self.pipelined_bytes > ctx.settings.limits.buffer_high_water
                and not self.holds & HOLD_PIPELINE
            ):
                ctx.hold(self, HOLD_PIPELINE)
        self.codec.receive(data)
        self._pump()

    def on_eof(self) -> None:
        """The client closed its sending side."""
        if self.eof:
            raise UsageError(f"EOF reported twice on connection {self.conn}")
        self.eof = True
        if self.state is ClientState.TUNNEL:
            exchange = self.exchange
            assert exchange is not None
            assert exchange.tunnel is not None
            exchange.tunnel.end()
            return
        if self.state is ClientState.LINGER:
            self.close()
            return
        self.codec.receive(b"")
        self._pump()

    def on_lost(self) -> None:
        """The connection broke: forget it and whatever it was doing."""
        self._forget()
        exchange = self.exchange
        if exchange is not None:
            exchange.cancel()

    def on_timer(self, kind: TimerKind) -> None:
        """A timer of this connection expired."""
        if not self.open:
            return
        ctx = self.ctx
        if kind is TimerKind.CLIENT_HEADER:
            ctx.log("info", "client request header timeout", self.conn)
            self.fail(408)
        elif kind is TimerKind.CLIENT_BODY:
            ctx.log("info", "client body timeout", self.conn)
            self.fail(408)
        elif kind is TimerKind.TUNNEL_IDLE:
            exchange = self.exchange
            assert exchange is not None
            assert exchange.tunnel is not None
            exchange.tunnel.end()
        else:
            self.close()

    def shutdown(self) -> None:
        """The proxy is stopping: an idle connection closes now, a busy one after its response."""
        if self.state is ClientState.WAITING and self.exchange is None:
            self.close()

    def abort(self) -> None:
        """Cut the connection now."""
        exchange = self.exchange
        if exchange is not None:
            exchange.cancel()
        self.close(abort=True)

    def _pump(self) -> None:
        codec = self.codec
        # Bytes from the client are HTTP messages only while WAITING or ACTIVE.
        while self.open and (self.state is ClientState.WAITING or self.state is ClientState.ACTIVE):
            event = codec.next_event()
            if event is None:
                return
            if type(event) is Body:
                exchange = self.exchange
                assert exchange is not None
                exchange.request_body(event.data, 0)
            elif type(event) is RequestHead:
                self._request(event)
            elif type(event) is EndOfMessage:
                exchange = self.exchange
                assert exchange is not None
                exchange.request_end(event.trailers)
            elif type(event) is PeerClosed:
                self._closed_by_client()
                return
            elif type(event) is CodecError:
                self._protocol_error(event)
                return
            else:  # pragma: no cover - a server codec yields no other events
                raise AssertionError(f"unexpected request event {event!r}")

    def _request(self, head: RequestHead) -> None:
        self.ctx.timers.cancel(self)
        exchange = Exchange(self.ctx, self, head)
        self.exchange = exchange
        self.state = ClientState.ACTIVE
        exchange.begin(head)

    def _closed_by_client(self) -> None:
        """The client closed its sending side.

        With a whole request in hand, a half-closed client still gets its response
        (``nc -N`` and scripted clients do this); the connection closes after it.
        Between requests, nothing is lost by closing.
        """
        exchange = self.exchange
        if exchange is not None and exchange.request_complete:
            return
        self.close()

    def _protocol_error(self, error: CodecError) -> None:
        if self.eof:
            # The client went away mid-message: nobody is left to read an answer.
            self.close()
            return
        self.ctx.log("info", f"bad request from client: {error.reason}", self.conn)
        self.fail(error.status_hint)

    def fail(self, status: int) -> None:
        """Answer with the proxy's error page for ``status`` and end the connection."""
        exchange = self.exchange
        if exchange is None:
            # Refused before a request could be parsed: record it all the same.
            exchange = Exchange(self.ctx, self, _unparsed(self.codec.client_http_version))
        exchange.fail(status)

    # -- flow control ------------------------------------------------------------------

    def backlogged(self) -> None:
        """The client is not reading the response fast enough."""
        exchange = self.exchange
        if exchange is not None:
            exchange.client_backlogged()

    def drained(self) -> None:
        """The client caught up."""
        exchange = self.exchange
        if exchange is not None:
            exchange.client_drained()

    def progressed(self) -> None:
        """The client took bytes: idle timers on both sides start again."""
        self.touch()
        exchange = self.exchange
        if exchange is not None:
            exchange.client_progressed()

    # -- the stream of the current exchange --------------------------------------------

    @property
    def can_respond(self) -> bool:
        """No response has started on this request."""
        return self.codec.can_respond

    @property
    def expects_continue(self) -> bool:
        """The client sent ``Expect: 100-continue`` and waits."""
        return self.codec.waiting_for_100_continue

    def send_continue(self) -> None:
        """Write ``100 Continue``."""
        codec = self.codec
        self.ctx.send(self, codec.send_informational(codec.stream, 100, [], b"Continue"))

    def informational(self, status: int, reason: bytes, headers: Headers) -> None:
        """Write a 1xx response (none to an HTTP/1.0 client)."""
        codec = self.codec
        self.ctx.send(self, codec.send_informational(codec.stream, status, headers, reason))

    def respond(self, status: int, reason: bytes, headers: Headers, *, head_request: bool) -> None:
        """Write the response head; ``Connection: close`` when the connection ends after it."""
        ctx = self.ctx
        if ctx.shutting_down or self.eof:
            headers.append((b"connection", b"close"))
        codec = self.codec
        ctx.send(
            self,
            codec.send_response(
                codec.stream, status, headers, reason=reason, head_request=head_request
            ),
        )

    def body(self, data: bytes) -> None:
        """Write a piece of the response body."""
        codec = self.codec
        self.ctx.send(self, codec.send_body(codec.stream, data))

    def end(self, trailers: Headers) -> None:
        """End the response."""
        codec = self.codec
        self.ctx.send(self, codec.send_end(codec.stream, trailers))

    def error(
        self, status: int, reason: bytes, headers: Headers, body: bytes, *, head_request: bool
    ) -> None:
        """Write a whole error response; the connection ends after it."""
        codec = self.codec
        self.ctx.send(
            self,
            codec.send_error(
                codec.stream, status, reason, headers, body, head_request=head_request
            ),
        )

    def finished(self) -> None:
        """The response is complete: keep the connection for the next request or close it."""
        self.exchange = None
        self.pipelined_bytes = 0
        ctx = self.ctx
        self.holds = 0
        ctx.sync_reading(self)
        codec = self.codec
        if ctx.shutting_down or not codec.start_next_cycle():
            if self.eof or codec.their_message_complete:
                self.close()
            else:
                self._linger()  # The backend answered before the upload ended.
            return
        self.state = ClientState.WAITING
        ctx.timers.set(
            self, TimerKind.CLIENT_KEEPALIVE, ctx.now + ctx.settings.timeouts.client_keepalive
        )
        self._pump()

    def failed(self) -> None:
        """An error response is out: close, or first drain what the client still sends."""
        if self.eof or self.codec.their_message_complete:
            self.close()
        else:
            self._linger()

    def aborted(self) -> None:
        """Reset the connection: the response it was carrying is incomplete."""
        self.close(abort=True)

    def detach(self, exchange: Exchange) -> None:
        """``exchange`` is over."""
        if self.exchange is exchange:
            self.exchange = None

    def hold_request(self, reason: int) -> None:
        """Stop reading the socket."""
        if self.open and not self.holds & reason:
            self.ctx.hold(self, reason)

    def release_request(self, reason: int) -> None:
        """Read the socket again, once nothing else holds it."""
        if self.open and self.holds & reason:
            self.ctx.release(self, reason)

    def consumed(self, credit: int) -> None:
        """HTTP/1.1 has no flow-control windows."""

    def arm_body_timer(self, timeout: float) -> None:
        """The request body must keep arriving."""
        ctx = self.ctx
        ctx.timers.set(self, TimerKind.CLIENT_BODY, ctx.now + timeout)

    def cancel_body_timer(self) -> None:
        """The request body is complete."""
        timers = self.ctx.timers
        if timers.kind(self) is TimerKind.CLIENT_BODY:
            timers.cancel(self)

    def touch(self) -> None:
        """Progress: a running body or tunnel idle timer starts again."""
        touch_idle_timer(self.ctx, self, TimerKind.CLIENT_BODY, self.exchange)

    def switch(self, reason: bytes, headers: Headers) -> bytes:
        """Write the 101 and become a tunnel; returns the bytes the client sent past the request."""
        ctx = self.ctx
        codec = self.codec
        ctx.send(self, codec.send_informational(codec.stream, 101, headers, reason))
        self.state = ClientState.TUNNEL
        ctx.timers.set(self, TimerKind.TUNNEL_IDLE, ctx.now + ctx.settings.timeouts.tunnel_idle)
        return codec.trailing_data

    def tunnel_send(self, data: bytes) -> None:
        """Relay tunnelled bytes."""
        self.ctx.send(self, data)

    def tunnel_started(self, tunnel: Tunnel) -> None:
        """A client that already closed ends its tunnel at once."""
        if self.eof:
            tunnel.end()

    def tunnel_ended(self) -> None:
        """Close after what is buffered."""
        self.close()

    # -- endings -----------------------------------------------------------------------

    def _linger(self) -> None:
        """Drain what the client is still sending before closing (RFC 9112 §9.6).

        Closing a socket with unread input resets it, and a reset can destroy the
        error response before the client reads it.
        """
        self.state = ClientState.LINGER
        ctx = self.ctx
        self.holds = 0
        ctx.sync_reading(self)
        ctx.emit(ShutdownWrite(conn=self.conn))
        ctx.timers.set(self, TimerKind.CLIENT_LINGER, ctx.now + ctx.settings.timeouts.client_linger)

    def close(self, *, abort: bool = False) -> None:
        """Close the connection, ending an exchange still on it."""
        if not self._forget():
            return
        exchange = self.exchange
        if exchange is not None:
            exchange.cancel()
        self.ctx.emit(Close(conn=self.conn, abort=abort))


def _unparsed(http_version: bytes) -> RequestHead:
    """The stand-in head of a request refused before it could be parsed (logged as ``-``)."""
    return RequestHead(
        stream=0, method=b"-", target=b"-", path=b"-", headers=[], http_version=http_version
    )
