"""Downstream connections: one per client socket, owning that client's streams.

A client connection speaks HTTP/1.1 (:mod:`.http1`: one stream at a time,
pipelined requests answered in order) or HTTP/2 (:mod:`.http2`: many streams at
once). :func:`sansproxy.downstream.accept.accept` picks the protocol from the TLS
handshake's ALPN, or from the first bytes of a cleartext connection whose listener
allows HTTP/2 with prior knowledge.

An exchange only ever sees a :class:`Stream`: the part of a connection that
carries its request and response. A health probe's exchange has a stream too
(:class:`sansproxy.probes.ProbeSink`), with no client behind it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from sansproxy._flow import Side
from sansproxy._timers import TimerKind, TimerOwner

if TYPE_CHECKING:
    from sansproxy._codec import Headers
    from sansproxy._context import Context
    from sansproxy.events import ConnId, TlsInfo
    from sansproxy.exchange import Exchange
    from sansproxy.tunnel import Tunnel

__all__ = ["ClientConnection", "Downstream", "Stream", "touch_idle_timer"]


class Stream(Protocol):
    """One request and its response slot on a client connection, as an exchange sees it.

    Writes go out in the client's protocol; the stream decides the framing, adds
    what the protocol needs (``Connection: close`` on HTTP/1.1, END_STREAM on
    HTTP/2) and keeps the flow-control rules of its connection.
    """

    @property
    def conn(self) -> ConnId | None:
        """The client connection (for logs); None for a probe."""

    @property
    def peer(self) -> tuple[str, int]:
        """The client's address."""

    @property
    def tls(self) -> TlsInfo | None:
        """What the client's TLS handshake said; None for cleartext."""

    @property
    def listener(self) -> int:
        """The index of the listener the client came in on."""

    @property
    def can_respond(self) -> bool:
        """No response has started: an error response can still be sent."""

    @property
    def expects_continue(self) -> bool:
        """The client waits for ``100 Continue`` before it sends its body."""

    def send_continue(self) -> None:
        """Tell the client to go on with its body."""

    def informational(self, status: int, reason: bytes, headers: Headers) -> None:
        """Pass on a 1xx response."""

    def respond(self, status: int, reason: bytes, headers: Headers, *, head_request: bool) -> None:
        """Send the final response head."""

    def body(self, data: bytes) -> None:
        """Send a piece of the response body."""

    def end(self, trailers: Headers) -> None:
        """End the response."""

    def error(
        self, status: int, reason: bytes, headers: Headers, body: bytes, *, head_request: bool
    ) -> None:
        """Send the proxy's error response (its head, body and end)."""

    def finished(self) -> None:
        """The exchange ended with a complete response; the stream may carry on."""

    def failed(self) -> None:
        """The exchange ended with an error response the stream just sent."""

    def aborted(self) -> None:
        """The response cannot be completed: reset the stream so it never looks whole."""

    def detach(self, exchange: Exchange) -> None:
        """``exchange`` is over: let go of it."""

    def hold_request(self, reason: int) -> None:
        """Stop taking request body bytes for ``reason`` (a ``HOLD_*`` bit of ``_flow``)."""

    def release_request(self, reason: int) -> None:
        """Take request body bytes again, once no reason is left."""

    def consumed(self, credit: int) -> None:
        """Request bytes worth ``credit`` of window reached the backend (HTTP/2)."""

    def arm_body_timer(self, timeout: float) -> None:
        """The request body must keep arriving: at most ``timeout`` between pieces."""

    def cancel_body_timer(self) -> None:
        """The request body is complete."""

    def touch(self) -> None:
        """Progress: the stream's body or tunnel idle timer starts again."""

    def switch(self, reason: bytes, headers: Headers) -> bytes:
        """Accept the backend's switch of protocols; returns client bytes already read past it."""

    def tunnel_send(self, data: bytes) -> None:
        """Relay tunnelled bytes to the client."""

    def tunnel_started(self, tunnel: Tunnel) -> None:
        """The tunnel is set up (a client that has already closed ends it at once)."""

    def tunnel_ended(self) -> None:
        """The tunnel is over: close the stream after what is buffered."""


class Downstream(Protocol):
    """A client connection, as the :class:`~sansproxy.proxy.Proxy` dispatches to it."""

    conn: ConnId

    def on_data(self, data: bytes) -> None:
        """Bytes from the client."""

    def on_eof(self) -> None:
        """The client closed its sending side."""

    def on_lost(self) -> None:
        """The connection broke; it is gone."""

    def on_written(self, nbytes: int) -> None:
        """The adapter wrote ``nbytes`` to the client."""

    def on_timer(self, kind: TimerKind) -> None:
        """A timer of this connection expired."""

    def shutdown(self) -> None:
        """The proxy is stopping: take no new requests, finish the ones in flight."""

    def abort(self) -> None:
        """Cut the connection now (the shutdown drain time is over)."""


class ClientConnection(Side):
    """What every client connection keeps, whatever its protocol."""

    __slots__ = ("ctx", "eof", "listener", "open", "peer", "tls")

    def __init__(
        self,
        ctx: Context,
        conn: ConnId,
        *,
        listener: int,
        peer: tuple[str, int],
        tls: TlsInfo | None,
    ) -> None:
        super().__init__(conn)
        self.ctx = ctx
        self.listener = listener
        """Index of the listener in the configuration (which a reload may replace)."""
        self.peer = peer
        self.tls = tls
        self.eof = False
        """The client closed its sending side."""
        self.open = True
        """False once the core has let go of the connection."""

    def on_written(self, nbytes: int) -> None:
        """The adapter wrote ``nbytes`` to the client."""
        self.ctx.written(self, nbytes)

    def on_timer(self, kind: TimerKind) -> None:
        """A timer of the connection expired (each protocol says what that means)."""
        raise NotImplementedError

    def _forget(self) -> bool:
        """Let go of the connection and its timer; False if that was done already."""
        if not self.open:
            return False
        self.open = False
        ctx = self.ctx
        del ctx.clients[self.conn]
        ctx.timers.cancel(self)
        return True


def touch_idle_timer(
    ctx: Context, owner: TimerOwner, body: TimerKind, exchange: Exchange | None
) -> None:
    """Progress: ``owner``'s body timer (of kind ``body``) or tunnel idle timer starts again.

    Any other timer of the owner is left alone: progress on a body says nothing about,
    say, a keep-alive wait.
    """
    kind = ctx.timers.kind(owner)
    if kind is body:
        timeouts = ctx.settings.timeouts if exchange is None else exchange.timeouts
        ctx.timers.set(owner, kind, ctx.now + timeouts.client_body)
    elif kind is TimerKind.TUNNEL_IDLE:
        ctx.timers.set(owner, kind, ctx.now + ctx.settings.timeouts.tunnel_idle)
