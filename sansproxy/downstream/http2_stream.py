"""One HTTP/2 stream: the :class:`~sansproxy.downstream.Stream` of one exchange.

The stream writes its exchange's response through its connection's codec and
gives the client's window credit back as request bytes reach the backend. An
extended CONNECT for a WebSocket (RFC 8441) becomes the HTTP/1.1 Upgrade request
its backend understands (with a ``Sec-WebSocket-Key`` from the core's generator);
the backend's 101, once its ``Sec-WebSocket-Accept`` is checked (RFC 6455 §1.3),
becomes a 200 on the stream, whose DATA frames then carry the tunnel's bytes.
"""

from __future__ import annotations

import base64
import hashlib
from typing import TYPE_CHECKING

from sansproxy._codec import RequestHead
from sansproxy._codec.http2 import INTERNAL_ERROR, NO_ERROR
from sansproxy._exchange_states import State
from sansproxy._timers import TimerKind
from sansproxy.downstream import touch_idle_timer

if TYPE_CHECKING:
    from sansproxy._codec import Headers
    from sansproxy.downstream.http2 import Http2Downstream
    from sansproxy.events import ConnId, TlsInfo
    from sansproxy.exchange import Exchange
    from sansproxy.tunnel import Tunnel

__all__ = ["Http2Stream"]

_WEBSOCKET_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
"""RFC 6455 §1.3: the accept value is base64(SHA-1(key + this))."""

_TUNNEL_FIELDS = frozenset({b"sec-websocket-accept", b"upgrade", b"connection"})
"""Fields of the backend's 101 that an HTTP/2 client's 200 does not carry (RFC 8441 §5)."""


class Http2Stream:
    """One HTTP/2 stream, and the :class:`~sansproxy.downstream.Stream` of its exchange."""

    __slots__ = (
        "connection",
        "early",
        "exchange",
        "expects_continue",
        "held",
        "number",
        "order",
        "request_complete",
        "reset_when_drained",
        "responded",
        "tunnel",
        "tunnel_request",
        "websocket_key",
    )

    def __init__(self, connection: Http2Downstream, number: int, head: RequestHead) -> None:
        self.connection = connection
        self.number = number
        self.order = connection.ctx.internal_order()
        self.exchange: Exchange | None = None
        self.responded = False
        self.request_complete = not head.has_body
        self.held = False
        """Its backend is not read while the client's window holds its bytes back."""
        self.expects_continue = any(
            name == b"expect" and value.lower() == b"100-continue" for name, value in head.headers
        )
        self.tunnel_request = False
        """An extended CONNECT (RFC 8441): DATA frames are the tunnel's bytes."""
        self.tunnel: Tunnel | None = None
        self.early: list[tuple[bytes, int]] = []
        """Tunnel bytes the client sent before the backend accepted the upgrade."""
        self.websocket_key = b""
        self.reset_when_drained = False

    @property
    def conn(self) -> ConnId:
        """The client connection."""
        return self.connection.conn

    @property
    def peer(self) -> tuple[str, int]:
        """The client's address."""
        return self.connection.peer

    @property
    def tls(self) -> TlsInfo | None:
        """The client connection's TLS facts."""
        return self.connection.tls

    @property
    def listener(self) -> int:
        """The listener the client connected to."""
        return self.connection.listener

    # -- from the client ---------------------------------------------------------------

    def websocket_request(self, head: RequestHead) -> RequestHead:
        """The HTTP/1.1 Upgrade request an extended CONNECT for a WebSocket becomes."""
        self.tunnel_request = True
        ctx = self.connection.ctx
        self.websocket_key = base64.b64encode(ctx.rng.getrandbits(128).to_bytes(16, "big"))
        headers = [
            *head.headers,
            (b"upgrade", b"websocket"),
            (b"connection", b"upgrade"),
            (b"sec-websocket-key", self.websocket_key),
        ]
        return RequestHead(
            stream=head.stream,
            method=b"GET",
            target=head.target,
            path=head.path,
            headers=headers,
            http_version=head.http_version,
            authority=head.authority,
            scheme=head.scheme,
        )

    def request_data(self, data: bytes, credit: int) -> None:
        """A DATA frame from the client."""
        tunnel = self.tunnel
        if tunnel is not None:
            tunnel.up(data, credit)
            return
        exchange = self.exchange
        if self.tunnel_request and exchange is not None and exchange.state is not State.DONE:
            self.early.append((data, credit))
            return
        if exchange is None or exchange.state is State.DONE:
            self.connection.codec.acknowledge(self.number, credit)
            return
        exchange.request_body(data, credit)

    def request_ended(self, trailers: Headers) -> None:
        """END_STREAM from the client."""
        self.request_complete = True
        tunnel = self.tunnel
        if tunnel is not None:
            tunnel.end()
            return
        exchange = self.exchange
        if exchange is not None and not self.tunnel_request and exchange.state is not State.DONE:
            exchange.request_end(trailers)

    def on_timer(self, kind: TimerKind) -> None:
        """The request body stalled, or the tunnel sat idle."""
        if self.connection.streams.get(self.number) is not self:
            return
        if kind is TimerKind.TUNNEL_IDLE:
            if self.tunnel is not None:
                self.tunnel.end()
            return
        exchange = self.exchange
        if exchange is not None:
            self.connection.ctx.log("info", "client body timeout", self.conn)
            exchange.fail(408)

    # -- the Stream an exchange writes to ----------------------------------------------

    def _queued(self) -> None:
        self.connection.queued(self)

    @property
    def can_respond(self) -> bool:
        """No response head went out yet."""
        return not self.responded

    def send_continue(self) -> None:
        """``100 Continue``: the client may send its body."""
        self.expects_continue = False
        self.connection.codec.send_informational(self.number, 100, [])
        self._queued()

    def informational(self, status: int, reason: bytes, headers: Headers) -> None:
        """Pass on a 1xx (103 Early Hints and the like)."""
        self.connection.codec.send_informational(self.number, status, headers)
        self._queued()

    def respond(self, status: int, reason: bytes, headers: Headers, *, head_request: bool) -> None:
        """The final response head."""
        self.responded = True
        codec = self.connection.codec
        codec.send_response(self.number, status, headers, head_request=head_request)
        self._queued()

    def body(self, data: bytes) -> None:
        """A piece of the response body."""
        self.connection.codec.send_body(self.number, data)
        self._queued()

    def end(self, trailers: Headers) -> None:
        """The end of the response."""
        self.connection.codec.send_end(self.number, trailers)
        self._queued()

    def error(
        self, status: int, reason: bytes, headers: Headers, body: bytes, *, head_request: bool
    ) -> None:
        """The proxy's error response, on this stream only."""
        self.respond(status, reason, headers, head_request=head_request)
        if body and not head_request:
            self.body(body)
        self.end([])

    def finished(self) -> None:
        """The response is complete: the stream is done once its bytes are out."""
        if not self.request_complete:
            # RFC 9113 §8.1: a complete response may end an upload the response did
            # not need, with RST_STREAM(NO_ERROR), once the response is out.
            self.reset_when_drained = True
        self.connection.stream_done(self)

    def failed(self) -> None:
        """An error response went out on this stream."""
        self.finished()

    def aborted(self) -> None:
        """The response cannot be completed: reset the stream."""
        connection = self.connection
        connection.codec.reset(self.number, INTERNAL_ERROR)
        connection.ctx.defer(connection)
        connection.stream_done(self)

    def drained(self) -> None:
        """Every byte of the stream is out: forget it (after RST_STREAM(NO_ERROR) if due)."""
        connection = self.connection
        codec = connection.codec
        if self.reset_when_drained:
            codec.reset(self.number, NO_ERROR)
        codec.forget(self.number)

    def detach(self, exchange: Exchange) -> None:
        """``exchange`` is over (the stream ends through ``finished`` and its kin).

        However it ended (answered, refused, reset, cut off), no tunnel will carry the
        bytes the client sent early: their window credit goes back, as the exchange's own
        credit does.
        """
        if self.exchange is exchange:
            self.exchange = None
        self._return_early()

    def hold_request(self, reason: int) -> None:
        """Nothing to pause: the window credit simply is not returned meanwhile."""

    def release_request(self, reason: int) -> None:
        """Nothing to resume: credit returns as the backend takes the bytes."""

    def consumed(self, credit: int) -> None:
        """Request bytes reached the backend: reopen the client's window for them."""
        connection = self.connection
        if connection.open:
            connection.codec.acknowledge(self.number, credit)
            connection.ctx.defer(connection)

    def arm_body_timer(self, timeout: float) -> None:
        """The request body must keep arriving."""
        ctx = self.connection.ctx
        ctx.timers.set(self, TimerKind.STREAM_BODY, ctx.now + timeout)

    def cancel_body_timer(self) -> None:
        """The request body is complete."""
        timers = self.connection.ctx.timers
        if timers.kind(self) is TimerKind.STREAM_BODY:
            timers.cancel(self)

    def touch(self) -> None:
        """Progress: a running body or tunnel idle timer starts again."""
        touch_idle_timer(self.connection.ctx, self, TimerKind.STREAM_BODY, self.exchange)

    def switch(self, reason: bytes, headers: Headers) -> bytes:
        """The backend accepted the WebSocket: answer the extended CONNECT with 200."""
        accept = next((v for n, v in headers if n == b"sec-websocket-accept"), b"")
        expected = base64.b64encode(hashlib.sha1(self.websocket_key + _WEBSOCKET_GUID).digest())
        fields = [(n, v) for n, v in headers if n not in _TUNNEL_FIELDS]
        if accept != expected:
            # A backend that did not do the handshake it claims: the client is told
            # nothing of it, only that the tunnel failed.
            self.connection.ctx.log("warning", "backend's Sec-WebSocket-Accept is wrong", self.conn)
            if self.exchange is not None:
                self.exchange.status = 502
            self.respond(502, b"", [(b"content-length", b"0")], head_request=False)
            self.end([])
            self.tunnel_request = False
            return b""
        self.respond(200, b"", fields, head_request=False)
        ctx = self.connection.ctx
        ctx.timers.set(self, TimerKind.TUNNEL_IDLE, ctx.now + ctx.settings.timeouts.tunnel_idle)
        return b""

    def _return_early(self) -> None:
        """No tunnel will carry the early bytes: give the client its window back for them."""
        early, self.early = self.early, []
        if early and self.connection.open:
            codec = self.connection.codec
            for _, credit in early:
                codec.acknowledge(self.number, credit)
            self.connection.ctx.defer(self.connection)

    def tunnel_send(self, data: bytes) -> None:
        """Tunnelled bytes from the backend, as DATA frames."""
        if data:
            self.body(data)

    def tunnel_started(self, tunnel: Tunnel) -> None:
        """Relay what the client sent early; a client that already ended ends the tunnel."""
        if not self.tunnel_request:
            tunnel.end()  # the handshake was refused above
            return
        self.tunnel = tunnel
        early, self.early = self.early, []
        for data, credit in early:
            tunnel.up(data, credit)
        if self.request_complete:
            tunnel.end()

    def tunnel_ended(self) -> None:
        """The tunnel is over: END_STREAM after what is buffered."""
        self.tunnel = None
        if self.responded:
            self.end([])
        self.connection.stream_done(self)
