"""An HTTP/2 client connection: many streams at once, each one exchange.

Theory of operation
-------------------
The connection owns its :class:`~sansproxy._codec.http2.ServerCodec` and a table of
:class:`Http2Stream` objects; each request stream becomes an
:class:`~sansproxy.exchange.Exchange`, forwarded over the same HTTP/1.1 upstream
pools as any other. A bad stream is answered or reset on that stream alone; a
connection error ends the connection with GOAWAY.

Flow control ties into backpressure end to end:

- request bytes are forwarded as they come, and their window credit goes back to
  the client only once the backend has them (``Stream.consumed``), so a slow backend
  slows the client's upload on that stream and nothing else;
- response bytes wait in the codec while the client's windows are closed; past
  ``http2.stream_buffer`` for a stream, that stream's backend is not read until the
  client opens the window again;
- the codec frames no more DATA while ``limits.buffer_high_water`` bytes of its
  output are unwritten, and a client that does not read even what the connection
  itself must answer (SETTINGS and PING acknowledgements) is not read any more
  either, so memory per connection stays bounded whatever the peer does.

Defences (``[http2]`` in the configuration): SETTINGS_MAX_CONCURRENT_STREAMS,
header list and HPACK table sizes and the frame size are advertised and enforced;
control frames (SETTINGS, PING, PRIORITY, WINDOW_UPDATE, empty DATA, unknown types)
and streams the client resets before their response is complete (rapid reset,
CVE-2023-44487) each draw from a token bucket, and a client that empties one gets
GOAWAY(ENHANCE_YOUR_CALM); h2 caps CONTINUATION frames (CVE-2024-27316). The
preface must arrive within ``timeouts.client_header``, and a connection without a
stream for ``timeouts.client_keepalive`` is closed with GOAWAY(NO_ERROR).

On shutdown the connection sends GOAWAY(NO_ERROR) with the last stream it took,
refuses newer streams with REFUSED_STREAM (safe to retry elsewhere), and closes
once the streams in flight are done. A GOAWAY from the client ends the connection
at once: h2 refuses to write anything after receiving one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sansproxy._codec import (
    Body,
    CodecError,
    EndOfMessage,
    GoAway,
    PeerClosed,
    RequestHead,
    StreamReset,
    WindowOpened,
)
from sansproxy._codec.http2 import (
    CANCEL,
    ENHANCE_YOUR_CALM,
    NO_ERROR,
    REFUSED_STREAM,
    ServerCodec,
)
from sansproxy._exchange_states import State
from sansproxy._flow import HOLD_OUTPUT
from sansproxy._timers import TimerKind
from sansproxy.commands import Close, ShutdownWrite
from sansproxy.downstream import ClientConnection
from sansproxy.downstream.http2_stream import Http2Stream
from sansproxy.errors import UsageError
from sansproxy.exchange import Exchange

if TYPE_CHECKING:
    from sansproxy._context import Context
    from sansproxy.events import ConnId, TlsInfo

__all__ = ["Http2Downstream"]

_SLICE = 16 * 1024
"""Bytes of a read fed to h2 at a time."""


class Http2Downstream(ClientConnection):
    """One HTTP/2 client connection."""

    __slots__ = (
        "_bucket_at",
        "_control_seen",
        "_control_tokens",
        "_data_seen",
        "_reset_tokens",
        "codec",
        "draining",
        "flush_due",
        "goaway_received",
        "goaway_sent",
        "held",
        "last_stream",
        "lingering",
        "streams",
    )

    def __init__(
        self,
        ctx: Context,
        conn: ConnId,
        *,
        listener: int,
        peer: tuple[str, int],
        tls: TlsInfo | None,
        early: bytes = b"",
    ) -> None:
        super().__init__(ctx, conn, listener=listener, peer=peer, tls=tls)
        http2 = ctx.settings.config.http2
        self.codec = ServerCodec(
            max_concurrent_streams=http2.max_concurrent_streams,
            initial_window_size=http2.initial_window_size,
            connection_window_size=http2.connection_window_size,
            max_frame_size=http2.max_frame_size,
            max_header_list_size=http2.max_header_list_size,
            header_table_size=http2.header_table_size,
            output_cap=ctx.settings.limits.buffer_high_water,
        )
        self.streams: dict[int, Http2Stream] = {}
        """Streams with an exchange (or a tunnel) running."""
        self.draining: dict[int, Http2Stream] = {}
        self.held: dict[int, Http2Stream] = {}
        """Streams whose backend is not read while their response waits on the window."""
        """Streams whose exchange is over but whose response bytes still wait on the window."""
        self.goaway_sent = False
        self.goaway_received = False
        self.last_stream = 0
        """The highest stream the proxy took up (what a GOAWAY names: RFC 9113 §6.8)."""
        self.lingering = False
        """GOAWAY is out and the sending side shut: what arrives is read and dropped."""
        self.flush_due = False
        """A flush is deferred to the end of the turn (see ``Context.defer``)."""
        self._control_tokens = float(http2.control_frame_burst)
        self._reset_tokens = float(http2.reset_burst)
        self._bucket_at = ctx.now
        self._control_seen = 0
        self._data_seen = 0
        ctx.timers.set(self, TimerKind.HANDSHAKE, ctx.now + ctx.settings.timeouts.client_header)
        self.flush()
        if early:
            self.on_data(early)

    # -- events ------------------------------------------------------------------------

    def on_data(self, data: bytes) -> None:
        """Bytes from the client."""
        if self.eof:
            raise UsageError(f"data after EOF on connection {self.conn}")
        if self.lingering:
            return
        codec = self.codec
        # In slices, with the flood check between them: a read full of control frames
        # costs h2 at most one slice of work before the connection is ended.
        for start in range(0, len(data), _SLICE):
            handshaking = not codec.settings_received
            codec.receive(data[start : start + _SLICE] if len(data) > _SLICE else data)
            if handshaking and codec.settings_received and self.open:
                self._idle_if_quiet()
            self._refill()
            if self._control_tokens < 0:
                self._flood("control frames")  # before the slice's streams start
                return
            self._pump()
            if not self.open or self.lingering:
                return
        self.ctx.defer(self)

    def on_eof(self) -> None:
        """The client closed its side: HTTP/2 has no half-close, the connection is over."""
        if self.eof:
            raise UsageError(f"EOF reported twice on connection {self.conn}")
        self.eof = True
        if self.lingering:
            self._release()
            return
        self.codec.receive(b"")
        self._pump()

    def on_lost(self) -> None:
        """The connection broke: forget it and every stream on it."""
        if self._forget():
            self._cancel_streams()

    def on_written(self, nbytes: int) -> None:
        """The adapter wrote ``nbytes``: more response bytes may be framed now."""
        super().on_written(nbytes)
        if not self.open:
            return
        self.codec.written(nbytes)
        self.flush()

    def on_timer(self, kind: TimerKind) -> None:
        """No preface in time, idle too long, or finished responses the client never takes."""
        if not self.open:
            return
        ctx = self.ctx
        if kind is TimerKind.CLIENT_LINGER:
            self._release()
        elif kind is TimerKind.HANDSHAKE:
            ctx.log("info", "HTTP/2 client sent no preface in time", self.conn)
            self.close()
        elif kind is TimerKind.SEND_STALL:
            ctx.log("info", "HTTP/2 client did not open its window in time", self.conn)
            for number in list(self.draining):
                self.codec.reset(number, CANCEL)  # cut short: never a graceful end
            self.draining.clear()
            ctx.defer(self)
            self._idle_if_quiet()
        else:
            self.goaway(NO_ERROR)
            self.close()

    def shutdown(self) -> None:
        """GOAWAY: finish the streams in flight, refuse new ones, then close."""
        if self.lingering:
            return
        if not self.goaway_sent:
            self.goaway(NO_ERROR)
        self._idle_if_quiet()  # closes now unless a response is still on its way

    def abort(self) -> None:
        """Cut the connection now."""
        self._cancel_streams()
        self.close(abort=True)

    def _pump(self) -> None:
        codec = self.codec
        while self.open:
            event = codec.next_event()
            if event is None:
                return
            kind = type(event)
            if kind is Body:
                assert isinstance(event, Body)
                stream = self.streams.get(event.stream)
                if stream is None:
                    codec.acknowledge(event.stream, event.credit)  # a stream already over
                else:
                    stream.request_data(event.data, event.credit)
            elif kind is RequestHead:
                assert isinstance(event, RequestHead)
                self._open_stream(event)
            elif kind is EndOfMessage:
                assert isinstance(event, EndOfMessage)
                stream = self.streams.get(event.stream)
                if stream is not None:
                    stream.request_ended(event.trailers)
            elif kind is StreamReset:
                assert isinstance(event, StreamReset)
                self._reset_by_client(event.stream)
            elif kind is WindowOpened:
                self.ctx.defer(self)
            elif kind is GoAway:
                assert isinstance(event, GoAway)
                self._goaway_received(event.code)
            elif kind is PeerClosed:
                self._cancel_streams()
                self.close()
            elif kind is CodecError:
                assert isinstance(event, CodecError)
                self._codec_error(event)
            else:  # pragma: no cover - a server codec yields no other events
                raise AssertionError(f"unexpected request event {event!r}")

    def _open_stream(self, head: RequestHead) -> None:
        number = head.stream
        codec = self.codec
        if self.goaway_sent:
            codec.reset(number, REFUSED_STREAM)
            self.ctx.defer(self)
            return
        stream = Http2Stream(self, number, head)
        self.streams[number] = stream
        self.last_stream = number
        timers = self.ctx.timers
        if timers.kind(self) is TimerKind.CLIENT_KEEPALIVE:
            timers.cancel(self)
        if head.method == b"CONNECT" and head.protocol.lower() == b"websocket":
            head = stream.websocket_request(head)
        exchange = Exchange(self.ctx, stream, head)
        stream.exchange = exchange
        exchange.begin(head)
        if stream.tunnel_request and exchange.state is not State.DONE:
            exchange.request_end([])

    def _goaway_received(self, code: int) -> None:
        """The client is going away: its streams in flight finish (RFC 9113 §6.8).

        Unless its GOAWAY says something went wrong: then they end at once.
        """
        if code != NO_ERROR:
            self.ctx.log("info", f"HTTP/2 client sent GOAWAY with error code {code}", self.conn)
            self._cancel_streams()
            self.close()
            return
        self.goaway_received = True
        self._idle_if_quiet()

    def _reset_by_client(self, number: int) -> None:
        stream = self.streams.pop(number, None) or self.draining.pop(number, None)
        if stream is None:
            return
        self.held.pop(number, None)
        self.codec.forget(number)
        self.ctx.timers.cancel(stream)
        exchange = stream.exchange
        if exchange is not None and exchange.state is not State.DONE:
            exchange.cancel()
            self._reset_tokens -= 1  # reset before its response was complete
            if self._reset_tokens < 0:
                # At once, not after the read: a read full of HEADERS and RST_STREAM
                # pairs must not start thousands of exchanges first.
                self._flood("streams reset before their response (rapid reset)")
                return
        self._idle_if_quiet()

    def _codec_error(self, error: CodecError) -> None:
        ctx = self.ctx
        number = error.stream
        if number is None:
            ctx.log("info", f"HTTP/2 client broke the protocol: {error.reason}", self.conn)
            self._cancel_streams()
            self.close()
            return
        ctx.log("info", f"HTTP/2 stream {number} refused: {error.reason}", self.conn)
        self.codec.forget(number)
        self.held.pop(number, None)
        stream = self.streams.pop(number, None)
        if stream is not None:
            self.ctx.timers.cancel(stream)
            exchange = stream.exchange
            if exchange is not None:
                exchange.cancel()
        self._idle_if_quiet()

    def _refill(self) -> None:
        """Bring both token buckets up to date, and charge the control frames just read."""
        ctx = self.ctx
        http2 = ctx.settings.config.http2
        codec = self.codec
        elapsed = ctx.now - self._bucket_at
        self._bucket_at = ctx.now
        data_sent = codec.data_frames_sent - self._data_seen
        self._data_seen = codec.data_frames_sent
        control = codec.control_frames - self._control_seen
        self._control_seen = codec.control_frames
        self._control_tokens = (
            min(
                http2.control_frame_burst,
                self._control_tokens + elapsed * http2.control_frame_rate + data_sent,
            )
            - control
        )
        self._reset_tokens = min(http2.reset_burst, self._reset_tokens + elapsed * http2.reset_rate)

    def _flood(self, what: str) -> None:
        self.ctx.log("warning", f"HTTP/2 client flooded the proxy with {what}", self.conn)
        self.goaway(ENHANCE_YOUR_CALM)
        self._cancel_streams()
        self.close(linger=False)  # no more of its bytes are read, not even to drop them

    # -- output and flow control -------------------------------------------------------

    def flush(self) -> None:
        """Write what the codec has framed; let streams that drained go on."""
        if not self.open or self.lingering:
            return
        codec = self.codec
        data = codec.data_to_send()
        if self.held:
            low = self.ctx.settings.config.http2.stream_buffer // 2
            for number, stream in list(self.held.items()):
                if codec.pending(number) <= low:
                    del self.held[number]
                    stream.held = False
                    exchange = stream.exchange
                    if exchange is not None:
                        exchange.client_drained()
        if self.draining:
            drained = False
            for number, stream in list(self.draining.items()):
                if not codec.unsent(number):
                    del self.draining[number]
                    stream.drained()
                    drained = True
            data += codec.data_to_send()
            if drained:
                self.ctx.send(self, data)
                self._idle_if_quiet()
                return
        self.ctx.send(self, data)

    def queued(self, stream: Http2Stream) -> None:
        """``stream`` queued frames: write them at the end of the turn.

        Its backend is held while the client's window keeps too much of its response back.
        """
        self.ctx.defer(self)
        if not stream.held:
            pending = self.codec.pending(stream.number)
            if pending > self.ctx.settings.config.http2.stream_buffer:
                stream.held = True
                self.held[stream.number] = stream
                exchange = stream.exchange
                if exchange is not None:
                    exchange.client_backlogged()

    def backlogged(self) -> None:
        """The client does not read even the connection's own frames: stop reading it."""
        if self.lingering:
            return  # reading on is what the linger is for
        limits = self.ctx.settings.limits
        if self.unwritten > 2 * limits.buffer_high_water and not self.holds & HOLD_OUTPUT:
            self.ctx.hold(self, HOLD_OUTPUT)

    def drained(self) -> None:
        """The client caught up: read it again."""
        if self.holds & HOLD_OUTPUT:
            self.ctx.release(self, HOLD_OUTPUT)

    def progressed(self) -> None:
        """The client took bytes: the body idle timers of the streams it reads start again."""
        for stream in self.streams.values():
            exchange = stream.exchange
            if exchange is not None:
                exchange.client_progressed()
        ctx = self.ctx
        if ctx.timers.kind(self) is TimerKind.SEND_STALL:
            ctx.timers.set(
                self, TimerKind.SEND_STALL, ctx.now + ctx.settings.timeouts.upstream_body
            )

    # -- streams ending ----------------------------------------------------------------

    def stream_done(self, stream: Http2Stream) -> None:
        """``stream`` needs nothing more from the connection but its pending bytes."""
        number = stream.number
        if self.streams.pop(number, None) is None:
            return
        self.held.pop(number, None)
        self.ctx.timers.cancel(stream)
        if self.codec.unsent(number):
            self.draining[number] = stream
        else:
            stream.drained()
        self._idle_if_quiet()

    def _idle_if_quiet(self) -> None:
        """No stream is running: wait for what is still to be sent, then idle or close.

        Finished responses still waiting on the client's window get
        ``timeouts.upstream_body`` without progress (the same as a response still
        coming from its backend); after that, or with nothing to send, an idle
        connection closes after ``timeouts.client_keepalive``, at once when it said
        GOAWAY.
        """
        if self.streams or not self.open:
            return
        ctx = self.ctx
        timers = ctx.timers
        if self.draining:
            if timers.kind(self) is not TimerKind.SEND_STALL:
                timers.set(
                    self, TimerKind.SEND_STALL, ctx.now + ctx.settings.timeouts.upstream_body
                )
            return
        if self.goaway_sent or self.goaway_received or ctx.shutting_down:
            self.close()
            return
        if self.codec.settings_received:
            timers.set(
                self, TimerKind.CLIENT_KEEPALIVE, ctx.now + ctx.settings.timeouts.client_keepalive
            )

    def goaway(self, code: int) -> None:
        """Tell the client no new stream will be served."""
        self.goaway_sent = True
        self.codec.goaway(code, last_stream=self.last_stream)
        self.ctx.defer(self)

    def _cancel_streams(self) -> None:
        streams = list(self.streams.values())
        self.streams.clear()
        self.draining.clear()
        self.held.clear()
        for stream in streams:
            self.ctx.timers.cancel(stream)
            exchange = stream.exchange
            if exchange is not None:
                exchange.cancel()

    def close(self, *, abort: bool = False, linger: bool = True) -> None:
        """End the connection and every stream on it.

        A graceful close writes what is queued (its GOAWAY last), shuts the sending
        side and keeps reading, dropping what arrives, until the client closes too or
        ``timeouts.client_linger`` passes: closing a socket with unread input resets it,
        and the reset could destroy the GOAWAY before the client reads it (as for
        HTTP/1.1, RFC 9112 §9.6). A client that does not read is closed at once, and so
        is one that flooded the proxy (``linger=False``).
        """
        if not self.open:
            return
        unread = self.unwritten > self.ctx.settings.limits.buffer_high_water
        if abort or self.eof or self.lingering or unread or not linger:
            # A client that does not read what it is sent would not read a GOAWAY either.
            if not abort:
                self.flush()
            self._cancel_streams()
            self._release(abort=abort)
            return
        self.flush()
        self._cancel_streams()
        self.codec.stop_reading()
        self.lingering = True
        ctx = self.ctx
        self.holds = 0
        ctx.sync_reading(self)
        ctx.emit(ShutdownWrite(conn=self.conn))
        ctx.timers.set(self, TimerKind.CLIENT_LINGER, ctx.now + ctx.settings.timeouts.client_linger)

    def _release(self, *, abort: bool = False) -> None:
        """Let go of the connection for good."""
        if self._forget():
            self.ctx.emit(Close(conn=self.conn, abort=abort))

    def _forget(self) -> bool:
        if not super()._forget():
            return False
        for stream in self.streams.values():
            self.ctx.timers.cancel(stream)
        return True
