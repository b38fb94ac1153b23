"""HTTP/2 server codec (RFC 9113, RFC 7541): h2 frames, this module maps.

:class:`ServerCodec` faces an HTTP/2 client. It is the only module that imports
h2 (and h2's own hpack and hyperframe). h2 keeps the connection's and the
streams' state machines, HPACK and the flow-control windows; this module turns
h2's events into the stream-scoped events of :mod:`sansproxy._codec`, checks each
request head against RFC 9113 §8.2 and §8.3 itself (so that a malformed request
is an error of its stream, not of the connection), maps it to HTTP/1.1 semantics
(``:authority`` becomes Host, RFC 9113 §8.3.1; several ``cookie`` fields become
one, §8.2.3), and keeps the response body that the client's windows do not allow
yet.

Flow control, both ways:

- Request bytes arrive as :class:`~sansproxy._codec.Body` with their ``credit``
  (the flow-controlled length, padding included); the client's windows reopen only
  when the caller hands that credit back with :meth:`ServerCodec.acknowledge`,
  which it does once the bytes reached the backend.
- Response bytes are framed only as far as the stream's window, the connection's
  window and the output cap allow; the rest waits per stream
  (:meth:`ServerCodec.pending`) and goes out when a WINDOW_UPDATE or SETTINGS
  frame opens the windows, or when :meth:`ServerCodec.written` says the socket
  drained. ``output_cap`` bounds the bytes handed out and not yet written, so a
  client that opens huge windows but reads slowly cannot make the proxy buffer
  without end.

h2 refuses some stream errors as connection errors (a Content-Length that does
not match the DATA, trailers without END_STREAM, more streams than
SETTINGS_MAX_CONCURRENT_STREAMS): RFC 9113 §5.4.1 allows that, and those end the
connection with GOAWAY. A GOAWAY for a graceful shutdown is written here without
telling h2, because h2 refuses to send anything after its own GOAWAY.

h2 exceptions never leave this module: a peer's mistake becomes a
:class:`~sansproxy._codec.CodecError`; an undocumented exception from h2 is
caught the same way unless :data:`STRICT` is set (the fuzz harnesses set it, so
that library bugs surface).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.frame_buffer
import h2.settings
import hpack
from hyperframe.exceptions import InvalidDataError
from hyperframe.frame import GoAwayFrame, SettingsFrame

from sansproxy._codec import (
    Body,
    CodecError,
    CodecEvent,
    EndOfMessage,
    GoAway,
    Headers,
    PeerClosed,
    StreamReset,
    WindowOpened,
)
from sansproxy._codec._h2fields import (
    request_head,
    response_fields,
    trailers,
)
from sansproxy._codec._h2scan import GoawayFinder

__all__ = [
    "CANCEL",
    "ENHANCE_YOUR_CALM",
    "INTERNAL_ERROR",
    "NO_ERROR",
    "PREFACE",
    "PROTOCOL_ERROR",
    "REFUSED_STREAM",
    "SETTINGS_TIMEOUT",
    "STRICT",
    "ServerCodec",
    "refusal",
]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
"""The client connection preface (RFC 9113 §3.4)."""

NO_ERROR = int(h2.errors.ErrorCodes.NO_ERROR)
PROTOCOL_ERROR = int(h2.errors.ErrorCodes.PROTOCOL_ERROR)
INTERNAL_ERROR = int(h2.errors.ErrorCodes.INTERNAL_ERROR)
SETTINGS_TIMEOUT = int(h2.errors.ErrorCodes.SETTINGS_TIMEOUT)
REFUSED_STREAM = int(h2.errors.ErrorCodes.REFUSED_STREAM)
CANCEL = int(h2.errors.ErrorCodes.CANCEL)
ENHANCE_YOUR_CALM = int(h2.errors.ErrorCodes.ENHANCE_YOUR_CALM)
COMPRESSION_ERROR = int(h2.errors.ErrorCodes.COMPRESSION_ERROR)
FRAME_SIZE_ERROR = int(h2.errors.ErrorCodes.FRAME_SIZE_ERROR)
_RST_STREAM = 0x3
_RESET_MEMORY = 4096
"""Streams the codec reset itself that it remembers, to ignore what the client still sends."""

STRICT = False
"""Let unexpected exceptions from h2 propagate instead of ending the connection."""


class ServerCodec:
    """Faces an HTTP/2 client: parses its requests, writes the responses.

    Args:
        max_concurrent_streams, initial_window_size, connection_window_size,
        max_frame_size, max_header_list_size, header_table_size: the SETTINGS the
            proxy advertises (and the connection window it opens at once).
        output_cap: framed bytes handed out and not yet reported written above
            which no more DATA is framed.
    """

    __slots__ = (
        "_closed_streams",
        "_conn",
        "_end_pending",
        "_errored",
        "_events",
        "_goaways",
        "_out",
        "_pending",
        "_pending_bytes",
        "_reset_here",
        "_trailers",
        "_unread",
        "_unwritten",
        "control_frames",
        "data_frames_sent",
        "output_cap",
        "settings_received",
    )

    def __init__(
        self,
        *,
        max_concurrent_streams: int,
        initial_window_size: int,
        connection_window_size: int,
        max_frame_size: int,
        max_header_list_size: int,
        header_table_size: int,
        output_cap: int,
    ) -> None:
        config = h2.config.H2Configuration(
            client_side=False,
            header_encoding=None,
            validate_inbound_headers=False,  # checked here, so that errors stay per stream
            normalize_inbound_headers=False,
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
            split_outbound_cookies=False,
        )
        conn = h2.connection.H2Connection(config=config)
        conn.initiate_connection()
        codes = h2.settings.SettingCodes
        conn.update_settings(
            {
                codes.ENABLE_PUSH: 0,
                codes.MAX_CONCURRENT_STREAMS: max_concurrent_streams,
                codes.INITIAL_WINDOW_SIZE: initial_window_size,
                codes.MAX_FRAME_SIZE: max_frame_size,
                codes.MAX_HEADER_LIST_SIZE: max_header_list_size,
                codes.HEADER_TABLE_SIZE: header_table_size,
                codes.ENABLE_CONNECT_PROTOCOL: 1,
            }
        )
        if connection_window_size > 65535:
            conn.increment_flow_control_window(connection_window_size - 65535)
        self._conn = conn
        self._events: deque[CodecEvent] = deque()
        self._pending: dict[int, deque[bytes]] = {}
        self._pending_bytes: dict[int, int] = {}
        """Response bytes per stream that the windows or the output cap hold back."""
        self._end_pending: dict[int, Headers | None] = {}
        """Streams whose end (with trailers, or None) waits behind their pending bytes."""
        self._trailers: dict[int, Headers] = {}
        self._unread: dict[int, int] = {}
        """Body bytes a request's ``content-length`` still promises, by stream."""
        self._closed_streams: set[int] = set()
        self._reset_here: dict[int, None] = {}
        """Streams the codec reset itself, oldest first (at most ``_RESET_MEMORY``)."""
        self._out = bytearray(conn.data_to_send())
        self._goaways = GoawayFinder()
        self._unwritten = 0
        self._errored = False
        self.output_cap = output_cap
        self.control_frames = 0
        """Frames received that carry no request: SETTINGS, PING, PRIORITY, WINDOW_UPDATE,
        empty DATA without END_STREAM, unknown types (for flood defences)."""
        self.data_frames_sent = 0
        self.settings_received = False
        """The client's first SETTINGS frame arrived (the preface is complete)."""

    # -- receiving ---------------------------------------------------------------------

    def receive(self, data: bytes) -> None:
        """Feed bytes read from the client; ``b""`` is its EOF."""
        if self._errored:
            return
        if not data:
            self._events.append(PeerClosed())
            return
        for piece in self._goaways.split(data):
            if isinstance(piece, GoAway):
                self._events.append(piece)
            elif not self._receive(piece):
                return
        self._flush()

    def stop_reading(self) -> None:
        """The connection only lingers now: let go of everything held for its input.

        An unfinished header block (up to 64 CONTINUATION frames in h2's buffer),
        unparsed bytes, events not taken and responses still waiting on a window:
        a closing connection keeps none of it while it waits for the client to go.
        """
        self._errored = True
        self._conn.incoming_buffer = h2.frame_buffer.FrameBuffer(server=True)
        self._events.clear()
        self._pending.clear()
        self._pending_bytes.clear()
        self._end_pending.clear()
        self._trailers.clear()
        self._unread.clear()
        self._out = bytearray()

    def _receive(self, data: bytes) -> bool:
        """Feed h2 one piece; False after a connection error."""
        conn = self._conn
        self._out += conn.data_to_send()  # what was queued before: never filtered below
        try:
            events = conn.receive_data(data)
        except h2.exceptions.ProtocolError as exc:
            self._fail(exc)
            return False
        except Exception as exc:  # the firewall around h2 (see STRICT)
            if STRICT:
                raise
            self._fail(exc, code=INTERNAL_ERROR)
            return False
        if (
            not self.settings_received
            and events
            and not isinstance(events[0], h2.events.RemoteSettingsChanged)
        ):
            # RFC 9113 §3.4: the preface ends with a SETTINGS frame. h2 does not check.
            conn.clear_outbound_data_buffer()
            self._errored = True
            self._out += _goaway(0, PROTOCOL_ERROR)
            self._events.append(CodecError(status_hint=400, reason="preface without SETTINGS"))
            return False
        if self._reset_here:
            self._out += self._ignore_closed(conn.data_to_send())
        request: h2.events.Event | None = None
        for event in events:
            self._translate(event, request)
            request = event if isinstance(event, h2.events.RequestReceived) else None
        return True

    def _ignore_closed(self, data: bytes) -> bytes:
        """``data`` without h2's RST_STREAM for frames on streams the codec reset itself.

        h2 answers any frame on a stream it considers closed with RST_STREAM, but after
        sending RST_STREAM an endpoint MUST ignore what the peer still sends on that
        stream (RFC 9113 §5.1, "closed").
        """
        out = bytearray()
        start = 0
        while start + 9 <= len(data):
            end = start + 9 + int.from_bytes(data[start : start + 3], "big")
            stream = int.from_bytes(data[start + 5 : start + 9], "big") & 0x7FFFFFFF
            if data[start + 3] != _RST_STREAM or stream not in self._reset_here:
                out += data[start:end]
            start = end
        out += data[start:]
        return bytes(out)

    def _fail(self, exc: Exception, *, code: int | None = None) -> None:
        """A connection error: h2 queued its GOAWAY, or one is written with ``code``.

        Where h2 picks PROTOCOL_ERROR but the RFC asks for another code, the GOAWAY
        h2 queued is replaced by one with the right code.
        """
        self._errored = True
        conn = self._conn
        queued = conn.data_to_send()
        last = conn.highest_inbound_stream_id
        if code is None:
            wanted = _error_code(exc)
            h2_goaway = _goaway(last, PROTOCOL_ERROR)
            if wanted != PROTOCOL_ERROR and queued.endswith(h2_goaway):
                queued = queued[: -len(h2_goaway)] + _goaway(last, wanted)
            self._out += queued
            reason = f"{type(exc).__name__}: {exc}"
        else:
            self._out += queued + _goaway(last, code)
            reason = f"h2 failed: {type(exc).__name__}: {exc}"
        self._events.append(CodecError(status_hint=400, reason=reason))

    def _translate(self, event: h2.events.Event, request: h2.events.Event | None) -> None:
        events = self._events
        if isinstance(event, h2.events.RequestReceived):
            stream = event.stream_id
            head = request_head(stream, event.headers, ended=event.stream_ended is not None)
            if isinstance(head, str):
                self._closed_streams.add(stream)
                self._reset(stream, PROTOCOL_ERROR)
                events.append(CodecError(status_hint=400, reason=head, stream=stream))
            else:
                if head.body_length is not None and event.stream_ended is None:
                    self._unread[stream] = head.body_length
                events.append(head)
        elif isinstance(event, h2.events.DataReceived):
            stream = event.stream_id
            data = event.data
            if stream in self._closed_streams:
                self._acknowledge(stream, event.flow_controlled_length)
            else:
                if stream in self._unread:
                    self._unread[stream] -= len(data)
                events.append(Body(stream=stream, data=data, credit=event.flow_controlled_length))
            if not data and event.stream_ended is None:
                self.control_frames += 1
        elif isinstance(event, h2.events.TrailersReceived):
            checked = trailers(event.headers)
            if checked is None:
                stream = event.stream_id
                self._closed_streams.add(stream)
                self._reset(stream, PROTOCOL_ERROR)
                events.append(CodecError(status_hint=400, reason="bad trailers", stream=stream))
            else:
                self._trailers[event.stream_id] = checked
        elif isinstance(event, h2.events.StreamEnded):
            stream = event.stream_id
            ended = self._trailers.pop(stream, [])
            if stream in self._closed_streams:
                return
            if self._unread.pop(stream, 0):
                # RFC 9113 §8.1.1. h2 checks this when DATA ends the stream, not when
                # trailers do.
                self._closed_streams.add(stream)
                self._reset(stream, PROTOCOL_ERROR)
                reason = "the DATA frames do not add up to the content-length"
                events.append(CodecError(status_hint=400, reason=reason, stream=stream))
            else:
                events.append(EndOfMessage(stream=stream, trailers=ended))
        elif isinstance(event, h2.events.StreamReset):
            stream = event.stream_id
            self._forget(stream)
            if event.remote_reset:
                events.append(StreamReset(stream=stream, code=int(event.error_code)))
        elif isinstance(event, h2.events.WindowUpdated):
            self.control_frames += 1
            events.append(WindowOpened())
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            self.control_frames += 1
            self.settings_received = True
            events.append(WindowOpened())  # INITIAL_WINDOW_SIZE may have grown
        elif isinstance(event, h2.events.ConnectionTerminated):  # pragma: no cover
            # GOAWAY frames are taken out before h2 sees them (see _GoawayFinder).
            raise AssertionError("h2 saw a GOAWAY frame")
        elif isinstance(event, h2.events.PriorityUpdated):
            if not (
                isinstance(request, h2.events.RequestReceived) and request.priority_updated is event
            ):
                self.control_frames += 1  # a PRIORITY frame, not a HEADERS frame's priority
        elif isinstance(
            event,
            h2.events.PingReceived
            | h2.events.UnknownFrameReceived
            | h2.events.AlternativeServiceAvailable,
        ):
            self.control_frames += 1
        # SettingsAcknowledged and PingAckReceived need nothing.

    def next_event(self) -> CodecEvent | None:
        """The next event, or None when more bytes are needed."""
        events = self._events
        return events.popleft() if events else None

    def acknowledge(self, stream: int, credit: int) -> None:
        """``credit`` of request bytes on ``stream`` went on: reopen the windows for it."""
        if credit and not self._errored:
            self._acknowledge(stream, credit)
            self._out += self._conn.data_to_send()

    def _acknowledge(self, stream: int, credit: int) -> None:
        # h2 reopens the connection's window even when the stream is gone.
        self._conn.acknowledge_received_data(credit, stream)

    # -- sending -----------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Everything there is to write: control frames, and DATA as far as windows allow.

        The ``send_*`` methods only queue (they return ``b""``): the caller collects what
        a whole turn queued in one call, so that a response's head, body and end go out
        in as few frames and writes as possible.
        """
        if not self._errored:
            self._flush()
        out = self._out
        if not out:
            return b""
        self._out = bytearray()
        data = bytes(out)
        self._unwritten += len(data)
        return data

    def written(self, nbytes: int) -> None:
        """``nbytes`` of what was handed out reached the socket (more DATA may be framed)."""
        self._unwritten = max(0, self._unwritten - nbytes)

    def pending(self, stream: int) -> int:
        """Response bytes of ``stream`` the windows (or the output cap) still hold back."""
        return self._pending_bytes.get(stream, 0)

    def unsent(self, stream: int) -> bool:
        """Whether anything of ``stream`` (bytes, or its end) is still to be framed."""
        return stream in self._pending or stream in self._end_pending

    def send_informational(
        self, stream: int, status: int, headers: Headers, reason: bytes = b""
    ) -> bytes:
        """A 1xx response (RFC 9113 §8.1: a HEADERS frame without END_STREAM)."""
        fields = [(b":status", b"%d" % status), *response_fields(headers)]
        self._call(stream, self._conn.send_headers, stream, fields)
        return b""

    def send_response(
        self,
        stream: int,
        status: int,
        headers: Headers,
        *,
        reason: bytes = b"",
        head_request: bool = False,
    ) -> bytes:
        """The final response head; it ends the stream when no body can follow."""
        fields = [(b":status", b"%d" % status), *response_fields(headers)]
        bodiless = head_request or status in (204, 304)
        self._call(stream, self._conn.send_headers, stream, fields, bodiless)
        if bodiless:
            self._end_pending.pop(stream, None)
            self._closed_streams.add(stream)
        return b""

    def send_body(self, stream: int, data: bytes) -> bytes:
        """A piece of the response body, framed as far as the windows allow."""
        if data and stream not in self._closed_streams:
            queue = self._pending.get(stream)
            if queue is None:
                self._pending[stream] = deque((data,))
                self._pending_bytes[stream] = len(data)
            else:
                queue.append(data)
                self._pending_bytes[stream] += len(data)
        return b""

    def send_end(self, stream: int, trailers: Headers) -> bytes:
        """End the response (with trailers), after whatever is still held back."""
        if stream not in self._closed_streams:
            self._closed_streams.add(stream)
            self._end_pending[stream] = response_fields(trailers) or None
        return b""

    def reset(self, stream: int, code: int) -> bytes:
        """Reset ``stream`` with ``code`` (RST_STREAM); what it had queued is dropped."""
        self._closed_streams.add(stream)
        self._reset(stream, code)
        return b""

    def _reset(self, stream: int, code: int) -> None:
        self._forget(stream)
        self._call(stream, self._conn.reset_stream, stream, code)
        # Out of h2's buffer at once, so that the filter of what h2 answers to the
        # client's next frames (``_ignore_closed``) can never take this RST_STREAM.
        self._out += self._conn.data_to_send()
        reset = self._reset_here
        reset[stream] = None
        if len(reset) > _RESET_MEMORY:
            del reset[next(iter(reset))]

    def forget(self, stream: int) -> None:
        """The stream is over for the caller: drop what the codec kept for it."""
        self._forget(stream)
        self._closed_streams.discard(stream)

    def _forget(self, stream: int) -> None:
        self._pending.pop(stream, None)
        self._pending_bytes.pop(stream, None)
        self._end_pending.pop(stream, None)
        self._trailers.pop(stream, None)
        self._unread.pop(stream, None)

    def goaway(self, code: int, *, last_stream: int | None = None, debug: bytes = b"") -> bytes:
        """A GOAWAY frame: no stream above ``last_stream`` (default: the last opened) is served.

        For a graceful GOAWAY the connection goes on for the streams below it, so
        h2 is not told (it would refuse to send anything more).
        """
        if last_stream is None:
            last_stream = self._conn.highest_inbound_stream_id
        self._out += _goaway(last_stream, code, debug)
        return b""

    @property
    def last_stream(self) -> int:
        """The highest stream id the client has opened."""
        return self._conn.highest_inbound_stream_id

    def _call(self, stream: int, method: Callable[..., None], *args: object) -> None:
        """Call an h2 send method; a stream h2 already considers closed is let go.

        That happens when the client reset the stream in the same read that the
        backend's bytes for it arrived in; nothing is lost that anyone will read.
        """
        try:
            method(*args)
        except h2.exceptions.ProtocolError:  # StreamClosedError included
            self._closed_streams.add(stream)
            self._forget(stream)

    def _flush(self) -> None:
        """Frame held-back response bytes as far as windows and the output cap allow."""
        conn = self._conn
        out = self._out
        out += conn.data_to_send()
        if self._pending or self._end_pending:
            budget = self.output_cap - self._unwritten - len(out)
            for stream in list(self._pending):
                if budget <= 0:
                    break
                budget = self._flush_stream(stream, budget)
            for stream in list(self._end_pending):
                if stream not in self._pending:
                    trailers = self._end_pending.pop(stream)
                    if trailers is None:
                        self._call(stream, conn.end_stream, stream)
                    else:
                        self._call(stream, conn.send_headers, stream, trailers, True)
            out += conn.data_to_send()

    def _flush_stream(self, stream: int, budget: int) -> int:
        conn = self._conn
        queue = self._pending[stream]
        frame_size = conn.max_outbound_frame_size
        while queue and budget > 0:
            try:
                window = conn.local_flow_control_window(stream)
            except h2.exceptions.StreamClosedError:
                self._forget(stream)
                return budget
            if window <= 0:
                return budget
            room = min(window, frame_size, budget)
            piece = queue.popleft()
            # Small pieces queued in one turn share a frame.
            while queue and len(piece) < room:
                piece += queue.popleft()
            if len(piece) > room:
                queue.appendleft(piece[room:])
                piece = piece[:room]
            size = len(piece)
            self._pending_bytes[stream] -= size
            # The last piece of a response that has ended carries END_STREAM itself.
            last = not queue and stream in self._end_pending and self._end_pending[stream] is None
            if last:
                del self._end_pending[stream]
            self._call(stream, conn.send_data, stream, piece, last)
            self.data_frames_sent += 1
            budget -= size + 9
            if stream not in self._pending:
                return budget  # h2 found the stream closed: it was forgotten
        if not queue:
            del self._pending[stream]
            del self._pending_bytes[stream]
        return budget


def refusal() -> bytes:
    """What a connection turned away before any stream gets: SETTINGS, then GOAWAY."""
    return SettingsFrame(0).serialize() + _goaway(0, REFUSED_STREAM, b"connection limit reached")


def _goaway(last_stream: int, code: int, debug: bytes = b"") -> bytes:
    frame = GoAwayFrame(0)
    frame.last_stream_id = last_stream
    frame.error_code = code
    frame.additional_data = debug
    return bytes(frame.serialize())


def _error_code(exc: Exception) -> int:
    """The error code RFC 9113 asks for where h2 says PROTOCOL_ERROR for everything.

    A field block that does not decode is a COMPRESSION_ERROR (RFC 9113 §4.3); a
    SETTINGS acknowledgement with a payload is a FRAME_SIZE_ERROR (§6.5).
    """
    cause = exc.__cause__
    if isinstance(cause, hpack.HPACKError | IndexError | TypeError | UnicodeDecodeError) and (
        not isinstance(cause, hpack.OversizedHeaderListError)
    ):
        return COMPRESSION_ERROR
    if isinstance(cause, InvalidDataError) and "SETTINGS ack" in str(cause):
        return FRAME_SIZE_ERROR
    code = getattr(exc, "error_code", None)
    return PROTOCOL_ERROR if code is None else int(code)
