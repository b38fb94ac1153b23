"""A scripted HTTP/2 client for the core: frames in, frames out, no sockets.

The HTTP/2 conformance tests (``test_http2_*.py``) drive :class:`sansproxy.Proxy`
as one client connection on a TLS listener that negotiated ``h2`` by ALPN, with
HTTP/1.1 backends behind it, all on a simulated clock:

- :class:`FrameFactory` builds the client's frames with hyperframe and its header
  blocks with one HPACK encoder (so the dynamic table carries over between blocks,
  as a real client's does); :func:`raw_frame` builds the malformed frames that
  hyperframe refuses to serialise (wrong length, wrong stream, bad padding).
- :class:`H2Client` feeds those bytes to the core as ``DataReceived``, reports
  ``Written`` for every ``Send``, answers ``OpenUpstream`` with
  ``UpstreamConnected``, and parses everything the core writes to the client back
  into hyperframe frames, decoding header blocks with one HPACK decoder.
- :class:`Backend` is one upstream connection: it parses what the core sends it
  with h11 (server side) and, when the test gave it a canned answer, replies to
  each complete request with it.

A test reads as::

    client = H2Client()
    client.handshake()
    client.send(client.factory.headers(1, client.factory.request()))
    client.answer(b"HTTP/1.1 200 OK\\r\\ncontent-length: 2\\r\\n\\r\\nhi")
    assert client.stream(1).status == 200

and asserts what RFC 9113 requires with :meth:`H2Client.connection_error` and
:meth:`H2Client.stream_error`.
"""

from __future__ import annotations

import dataclasses
import random
import struct
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import h11
import hpack
from hyperframe.exceptions import HyperframeError
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    PushPromiseFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from sansproxy.commands import (
    AccessLog,
    Close,
    Command,
    Log,
    OpenUpstream,
    PauseReading,
    ResumeReading,
    Send,
    ShutdownComplete,
    ShutdownWrite,
)
from sansproxy.config import HeaderPolicy, ProxyConfig, parse_config
from sansproxy.events import (
    ConnectionAccepted,
    DataReceived,
    EofReceived,
    Event,
    ShutdownRequested,
    TlsInfo,
    UpstreamConnected,
    UpstreamFailed,
    Written,
)
from sansproxy.proxy import Proxy

__all__ = [
    "BASE_TOML",
    "PREFACE",
    "Backend",
    "ErrorCode",
    "FrameFactory",
    "FrameType",
    "H2Client",
    "OriginRequest",
    "Setting",
    "StreamView",
    "raw_frame",
    "request",
]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
"""The client connection preface (RFC 9113 §3.4)."""

AUTHORITY = "example.com"

BASE_TOML = """
[[listeners]]
address = "192.0.2.1:8443"
certificate = "/etc/sansproxy/cert.pem"
private_key = "/etc/sansproxy/key.pem"

[upstreams.app]
servers = ["http://10.0.0.1:8001"]
"""
"""One TLS listener (the core never opens the files) and one backend."""

H2_TLS = TlsInfo(server_name=AUTHORITY, alpn="h2", version="TLSv1.3")
"""A TLS handshake that negotiated HTTP/2."""

PLAIN = HeaderPolicy(x_forwarded=False, forwarded=False, via=None)
"""Forwarding fields off, so that a forwarded request can be spelt out exactly."""

Header = tuple[bytes, bytes]
HeaderInput = Iterable[tuple[str | bytes, str | bytes]]

MAX_TIMER_FIRINGS = 10_000


class ErrorCode:
    """RFC 9113 §7 error codes."""

    NO_ERROR = 0x0
    PROTOCOL_ERROR = 0x1
    INTERNAL_ERROR = 0x2
    FLOW_CONTROL_ERROR = 0x3
    SETTINGS_TIMEOUT = 0x4
    STREAM_CLOSED = 0x5
    FRAME_SIZE_ERROR = 0x6
    REFUSED_STREAM = 0x7
    CANCEL = 0x8
    COMPRESSION_ERROR = 0x9
    CONNECT_ERROR = 0xA
    ENHANCE_YOUR_CALM = 0xB
    INADEQUATE_SECURITY = 0xC
    HTTP_1_1_REQUIRED = 0xD


class FrameType:
    """RFC 9113 §6 frame type codes."""

    DATA = 0x0
    HEADERS = 0x1
    PRIORITY = 0x2
    RST_STREAM = 0x3
    SETTINGS = 0x4
    PUSH_PROMISE = 0x5
    PING = 0x6
    GOAWAY = 0x7
    WINDOW_UPDATE = 0x8
    CONTINUATION = 0x9


class Setting:
    """RFC 9113 §6.5.2 setting identifiers (and RFC 8441's)."""

    HEADER_TABLE_SIZE = 0x1
    ENABLE_PUSH = 0x2
    MAX_CONCURRENT_STREAMS = 0x3
    INITIAL_WINDOW_SIZE = 0x4
    MAX_FRAME_SIZE = 0x5
    MAX_HEADER_LIST_SIZE = 0x6
    ENABLE_CONNECT_PROTOCOL = 0x8


def _bytes(value: str | bytes) -> bytes:
    return value.encode("latin-1") if isinstance(value, str) else value


def raw_frame(
    frame_type: int, flags: int, stream_id: int, payload: bytes, *, length: int | None = None
) -> bytes:
    """A frame from its parts, whatever they are (``length`` overrides the true one)."""
    size = len(payload) if length is None else length
    return struct.pack(">I", size)[1:] + struct.pack(">BBI", frame_type, flags, stream_id) + payload


class FrameFactory:
    """Builds the client's frames; header blocks share one HPACK encoder."""

    def __init__(self) -> None:
        self.encoder = hpack.Encoder()

    def encode(self, headers: HeaderInput, *, huffman: bool = True) -> bytes:
        """An HPACK header block for ``headers`` (it changes the encoder's dynamic table)."""
        fields = [(_bytes(n), _bytes(v)) for n, v in headers]
        return bytes(self.encoder.encode(fields, huffman=huffman))

    @staticmethod
    def request(
        method: str = "GET",
        path: str = "/",
        *,
        authority: str | None = AUTHORITY,
        scheme: str = "https",
        extra: HeaderInput = (),
    ) -> list[Header]:
        """A request's fields: the four pseudo-header fields, then ``extra``."""
        fields = [(b":method", _bytes(method)), (b":scheme", _bytes(scheme))]
        fields.append((b":path", _bytes(path)))
        if authority is not None:
            fields.append((b":authority", _bytes(authority)))
        fields.extend((_bytes(n), _bytes(v)) for n, v in extra)
        return fields

    def headers(
        self,
        stream_id: int,
        headers: HeaderInput | bytes,
        *,
        end_stream: bool = True,
        end_headers: bool = True,
        pad_length: int | None = None,
        priority: tuple[int, int, bool] | None = None,
    ) -> HeadersFrame:
        """A HEADERS frame; ``headers`` is a field list or an already encoded block.

        ``priority`` is ``(depends_on, weight, exclusive)`` (the PRIORITY flag).
        """
        block = headers if isinstance(headers, bytes) else self.encode(headers)
        frame = HeadersFrame(stream_id, block)
        if end_stream:
            frame.flags.add("END_STREAM")
        if end_headers:
            frame.flags.add("END_HEADERS")
        if pad_length is not None:
            frame.flags.add("PADDED")
            frame.pad_length = pad_length
        if priority is not None:
            frame.flags.add("PRIORITY")
            frame.depends_on, frame.stream_weight, frame.exclusive = priority
        return frame

    def continuation(
        self, stream_id: int, headers: HeaderInput | bytes, *, end_headers: bool = True
    ) -> ContinuationFrame:
        """A CONTINUATION frame carrying ``headers`` (a field list or an encoded fragment)."""
        block = headers if isinstance(headers, bytes) else self.encode(headers)
        frame = ContinuationFrame(stream_id, block)
        if end_headers:
            frame.flags.add("END_HEADERS")
        return frame

    @staticmethod
    def data(
        stream_id: int, data: bytes, *, end_stream: bool = True, pad_length: int | None = None
    ) -> DataFrame:
        """A DATA frame (``pad_length`` zero bytes of padding when given)."""
        frame = DataFrame(stream_id, data)
        if end_stream:
            frame.flags.add("END_STREAM")
        if pad_length is not None:
            frame.flags.add("PADDED")
            frame.pad_length = pad_length
        return frame

    @staticmethod
    def settings(values: Mapping[int, int] | None = None, *, ack: bool = False) -> SettingsFrame:
        """A SETTINGS frame (or its acknowledgement)."""
        frame = SettingsFrame(0, dict(values or {}))
        if ack:
            frame.flags.add("ACK")
        return frame

    @staticmethod
    def ping(opaque: bytes = b"\0" * 8, *, ack: bool = False) -> PingFrame:
        """A PING frame with eight bytes of opaque data."""
        frame = PingFrame(0, opaque)
        if ack:
            frame.flags.add("ACK")
        return frame

    @staticmethod
    def priority(
        stream_id: int, *, depends_on: int = 0, weight: int = 15, exclusive: bool = False
    ) -> PriorityFrame:
        """A PRIORITY frame."""
        return PriorityFrame(
            stream_id, depends_on=depends_on, stream_weight=weight, exclusive=exclusive
        )

    @staticmethod
    def rst_stream(stream_id: int, code: int = ErrorCode.CANCEL) -> RstStreamFrame:
        """A RST_STREAM frame."""
        return RstStreamFrame(stream_id, code)

    @staticmethod
    def window_update(stream_id: int, increment: int) -> WindowUpdateFrame:
        """A WINDOW_UPDATE frame (an increment of 0 is serialised as it is)."""
        return WindowUpdateFrame(stream_id, increment)

    @staticmethod
    def goaway(last_stream: int = 0, code: int = ErrorCode.NO_ERROR, debug: bytes = b"") -> bytes:
        """A GOAWAY frame."""
        return bytes(GoAwayFrame(0, last_stream, code, debug).serialize())

    def push_promise(self, stream_id: int, promised: int, headers: HeaderInput) -> PushPromiseFrame:
        """A PUSH_PROMISE frame (which a client must never send)."""
        frame = PushPromiseFrame(stream_id, promised, self.encode(headers))
        frame.flags.add("END_HEADERS")
        return frame


@dataclass
class OriginRequest:
    """One request as a backend parsed it."""

    method: bytes
    target: bytes
    headers: list[Header]
    body: bytes = b""
    trailers: list[Header] = field(default_factory=list)
    complete: bool = False


class Backend:
    """One upstream connection the core opened, and the HTTP/1.1 server on it."""

    def __init__(self, open_command: OpenUpstream) -> None:
        self.conn = open_command.conn
        self.host = open_command.host
        self.port = open_command.port
        self.connected = False
        self.closed = False
        self.paused = False
        self.received = bytearray()
        """Every byte the core wrote to this backend."""
        self.requests: list[OriginRequest] = []
        self.tunnel = False
        """An Upgrade request went by: the bytes after it are not HTTP/1.1 any more."""
        self.invalid: str | None = None
        """Why the bytes the core wrote are not valid HTTP/1.1 (parsing stops there)."""
        self._parser = h11.Connection(h11.SERVER)

    def receive(self, data: bytes) -> list[OriginRequest]:
        """Parse bytes from the core; returns the requests this completed."""
        self.received += data
        if self.tunnel or self.invalid is not None:
            return []
        self._parser.receive_data(data)
        completed: list[OriginRequest] = []
        while True:
            try:
                event = self._parser.next_event()
            except h11.RemoteProtocolError as exc:
                self.invalid = str(exc)
                break
            if event is h11.NEED_DATA or event is h11.PAUSED:
                break
            if isinstance(event, h11.Request):
                self.requests.append(
                    OriginRequest(
                        method=bytes(event.method),
                        target=bytes(event.target),
                        headers=[(bytes(n), bytes(v)) for n, v in event.headers.raw_items()],
                    )
                )
            elif isinstance(event, h11.Data):
                self.requests[-1].body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                request = self.requests[-1]
                request.trailers = [(bytes(n), bytes(v)) for n, v in event.headers.raw_items()]
                request.complete = True
                completed.append(request)
                if any(name.lower() == b"upgrade" for name, _ in request.headers):
                    self.tunnel = True
                    break
                # A fresh parser for the next request on a kept-alive connection.
                rest = self._parser.trailing_data[0]
                self._parser = h11.Connection(h11.SERVER)
                if rest:
                    self._parser.receive_data(rest)
            else:  # pragma: no cover - ConnectionClosed: the core never half-closes
                break
        return completed


@dataclass
class StreamView:
    """Everything the client received on one stream, decoded."""

    informational: list[list[Header]] = field(default_factory=list)
    """1xx header blocks, in order."""
    headers: list[Header] | None = None
    """The final response's fields (``:status`` first)."""
    data: bytes = b""
    data_frames: list[int] = field(default_factory=list)
    """The length of each DATA frame."""
    trailers: list[Header] | None = None
    ended: bool = False
    """END_STREAM arrived."""
    reset: int | None = None
    """The code of a RST_STREAM the proxy sent on the stream."""
    ended_on_headers: bool = False
    """END_STREAM was set on the final response's HEADERS frame."""

    @property
    def status(self) -> int | None:
        """The final status, or None when no final response arrived."""
        if self.headers is None:
            return None
        return int(dict(self.headers)[b":status"])


def request(
    client: H2Client,
    stream_id: int,
    method: str = "GET",
    *,
    end_stream: bool = True,
    end_headers: bool = True,
    priority: tuple[int, int, bool] | None = None,
) -> HeadersFrame:
    """A HEADERS frame with a plain request (``method`` on ``/``) on ``stream_id``."""
    return client.factory.headers(
        stream_id,
        client.factory.request(method),
        end_stream=end_stream,
        end_headers=end_headers,
        priority=priority,
    )


class H2Client:
    """One HTTP/2 client connection to a fresh :class:`Proxy`, on a simulated clock.

    Args:
        toml: configuration appended to :data:`BASE_TOML` (an ``[http2]`` table,
            ``[limits]`` and the like).
        config: a complete configuration instead of ``toml``.
        plain: no forwarding fields (Via, X-Forwarded-*, Forwarded) on requests.
        seed: the core's random seed.
        auto_connect: answer every ``OpenUpstream`` with ``UpstreamConnected``.
        auto_written: report every ``Send`` as written at once.
        tls: the handshake's facts (ALPN ``h2`` by default); None for a cleartext
            listener (then give a ``config`` with an ``h2c`` listener).
    """

    def __init__(
        self,
        toml: str = "",
        *,
        config: ProxyConfig | None = None,
        plain: bool = True,
        seed: int = 1,
        auto_connect: bool = True,
        auto_written: bool = True,
        tls: TlsInfo | None = H2_TLS,
    ) -> None:
        if config is None:
            config = parse_config(BASE_TOML + toml, "test.toml")
        if plain:
            config = dataclasses.replace(config, headers=PLAIN)
        self.config = config
        self.proxy = Proxy(config, rng=random.Random(seed))
        self.now = 0.0
        self.auto_connect = auto_connect
        self.auto_written = auto_written
        self.factory = FrameFactory()
        self.decoder = hpack.Decoder()
        self.decoder.max_header_list_size = 1 << 24
        self.commands: list[Command] = []
        """Every command the core returned, in order (logs included)."""
        self.frames: list[Frame] = []
        """Every frame the core wrote to the client, in order."""
        self.blocks: list[tuple[int, list[Header]]] = []
        """Every header block the client received, decoded: ``(stream, fields)``."""
        self.closed = False
        """The core ended its side of the client connection (ShutdownWrite or Close)."""
        self.released = False
        """The core let go of the client connection (Close)."""
        self.paused = False
        """The core paused reading the client connection."""
        self.backends: list[Backend] = []
        self.answers: deque[bytes] = deque()
        """Canned backend responses: the next complete request gets the first one."""
        self._inbox = bytearray()
        self._block: tuple[HeadersFrame | ContinuationFrame, bytearray] | None = None
        self._events: deque[Event] = deque()
        listener = config.listeners[0]
        self.conn = self.proxy.allocate_id()
        self._handle(
            ConnectionAccepted(
                conn=self.conn,
                listener=0,
                peer=("203.0.113.7", 50000),
                local=(listener.host, listener.port),
                tls=tls,
            )
        )

    # -- driving the core --------------------------------------------------------------

    def send(self, *items: Frame | bytes) -> list[Frame]:
        """Send frames (or raw bytes) in one read; returns the frames the client got back."""
        data = b"".join(item if isinstance(item, bytes) else item.serialize() for item in items)
        return self._handle(DataReceived(conn=self.conn, data=data))

    def handshake(self, settings: Mapping[int, int] | None = None) -> list[Frame]:
        """Preface and SETTINGS, then acknowledge every SETTINGS frame the proxy sent."""
        frames = self.send(PREFACE, self.factory.settings(settings))
        acks = [
            self.factory.settings(ack=True)
            for frame in self.frames
            if isinstance(frame, SettingsFrame) and "ACK" not in frame.flags
        ]
        return frames + self.send(*acks)

    def eof(self) -> list[Frame]:
        """The client closes its side."""
        return self._handle(EofReceived(conn=self.conn))

    def shutdown(self, drain_timeout: float | None = None) -> list[Frame]:
        """The adapter asks the proxy to stop."""
        return self._handle(ShutdownRequested(drain_timeout=drain_timeout))

    def written(self, nbytes: int) -> list[Frame]:
        """Report ``nbytes`` written to the client (when ``auto_written`` is off)."""
        return self._handle(Written(conn=self.conn, nbytes=nbytes))

    def advance(self, seconds: float) -> list[Frame]:
        """Let ``seconds`` pass, firing each timer at its exact deadline."""
        until = self.now + seconds
        start = len(self.frames)
        for _ in range(MAX_TIMER_FIRINGS):
            deadline = self.proxy.next_deadline()
            if deadline is None or deadline > until:
                break
            self.now = max(self.now, deadline)
            self._apply(self.proxy.handle_timeout(self.now))
            self._drain()
        else:  # pragma: no cover - a timer that keeps re-arming itself at once
            raise AssertionError("timers keep firing")
        self.now = until
        return self.frames[start:]

    # -- backends ----------------------------------------------------------------------

    @property
    def backend(self) -> Backend:
        """The latest upstream connection the core opened."""
        assert self.backends, "the proxy opened no upstream connection"
        return self.backends[-1]

    def answer(self, response: bytes, backend: Backend | None = None) -> list[Frame]:
        """Bytes from a backend (the latest one unless named)."""
        backend = self.backend if backend is None else backend
        return self._handle(DataReceived(conn=backend.conn, data=response))

    def backend_eof(self, backend: Backend | None = None) -> list[Frame]:
        """A backend closes its side."""
        backend = self.backend if backend is None else backend
        return self._handle(EofReceived(conn=backend.conn))

    def connect(self, backend: Backend | None = None) -> list[Frame]:
        """A backend's connection is up (when ``auto_connect`` is off)."""
        backend = self.backend if backend is None else backend
        backend.connected = True
        return self._handle(UpstreamConnected(conn=backend.conn))

    def connect_failed(self, backend: Backend | None = None) -> list[Frame]:
        """A backend's connection could not be made (when ``auto_connect`` is off)."""
        backend = self.backend if backend is None else backend
        backend.closed = True
        return self._handle(UpstreamFailed(conn=backend.conn, reason="refused"))

    # -- what the client saw -----------------------------------------------------------

    def stream(self, stream_id: int) -> StreamView:
        """Everything received on ``stream_id``, decoded."""
        view = StreamView()
        blocks = iter(fields for number, fields in self.blocks if number == stream_id)
        ending = False  # END_STREAM came on the HEADERS frame of the block being read
        for frame in self.frames:
            if frame.stream_id != stream_id:
                continue
            if isinstance(frame, HeadersFrame | ContinuationFrame):
                if isinstance(frame, HeadersFrame):
                    ending = "END_STREAM" in frame.flags
                if "END_HEADERS" in frame.flags:
                    fields = next(blocks)
                    final = view.headers is None and not self._informational(fields)
                    self._place_block(view, fields)
                    if ending:
                        view.ended = True
                        view.ended_on_headers = final
            elif isinstance(frame, DataFrame):
                view.data += frame.data
                view.data_frames.append(len(frame.data))
                if "END_STREAM" in frame.flags:
                    view.ended = True
            elif isinstance(frame, RstStreamFrame):
                view.reset = frame.error_code
        return view

    @staticmethod
    def _informational(fields: list[Header]) -> bool:
        return dict(fields).get(b":status", b"").startswith(b"1")

    @classmethod
    def _place_block(cls, view: StreamView, fields: list[Header]) -> None:
        if view.headers is None:
            if cls._informational(fields):
                view.informational.append(fields)
            else:
                view.headers = fields
        else:
            view.trailers = fields

    def of_type(self, kind: type[Frame], frames: Sequence[Frame] | None = None) -> list[Frame]:
        """The received frames (or those of ``frames``) of one hyperframe class."""
        return [f for f in (self.frames if frames is None else frames) if isinstance(f, kind)]

    def settings_sent(self) -> dict[int, int]:
        """The proxy's settings: every non-ACK SETTINGS frame applied in order."""
        values: dict[int, int] = {}
        for frame in self.of_type(SettingsFrame):
            assert isinstance(frame, SettingsFrame)
            if "ACK" not in frame.flags:
                values.update(frame.settings)
        return values

    def logs(self) -> list[str]:
        """The core's log messages."""
        return [c.message for c in self.commands if isinstance(c, Log)]

    def connection_error(
        self, code: int | Sequence[int], *, last_stream: int | None = None
    ) -> None:
        """Assert RFC 9113 §5.4.1: GOAWAY with ``code`` was the last frame, then the close."""
        codes = (code,) if isinstance(code, int) else tuple(code)
        assert self.frames, "the proxy sent nothing"
        last = self.frames[-1]
        assert isinstance(last, GoAwayFrame), (
            f"expected GOAWAY{codes} as the last frame, got {last!r}; logs: {self.logs()}"
        )
        assert last.error_code in codes, f"GOAWAY code {last.error_code}, expected {codes}"
        if last_stream is not None:
            assert last.last_stream_id == last_stream
        assert self.closed, "the proxy did not close the connection after its GOAWAY"
        stats = self.proxy.statistics()
        assert (stats.client_connections, stats.exchanges) == (0, 0), stats

    def stream_error(self, stream_id: int, code: int | Sequence[int]) -> str:
        """Assert RFC 9113 §5.4.2: RST_STREAM(``code``) on ``stream_id``.

        §5.4.1 lets an endpoint treat a stream error as a connection error, so
        GOAWAY(``code``) and the close pass as well. Returns ``"stream"`` or
        ``"connection"``: which of the two the proxy chose.
        """
        codes = (code,) if isinstance(code, int) else tuple(code)
        for frame in self.frames:
            if isinstance(frame, RstStreamFrame) and frame.stream_id == stream_id:
                assert frame.error_code in codes, (
                    f"RST_STREAM code {frame.error_code} on stream {stream_id}, expected {codes}"
                )
                return "stream"
        if self.frames and isinstance(self.frames[-1], GoAwayFrame):
            self.connection_error(codes)
            return "connection"
        raise AssertionError(
            f"no RST_STREAM{codes} on stream {stream_id} and no GOAWAY; last frames: "
            f"{self.frames[-4:]}; closed={self.closed}; "
            f"logs: {self.logs()}"
        )

    def alive(self) -> None:
        """Assert the connection still works: a PING is answered with its payload."""
        opaque = b"alive?%02d" % (len(self.frames) % 100)
        frames = self.send(self.factory.ping(opaque))
        acks = [f for f in frames if isinstance(f, PingFrame) and "ACK" in f.flags]
        assert [f.opaque_data for f in acks] == [opaque], (
            f"PING not answered: {frames}; closed={self.closed}; logs: {self.logs()}"
        )
        self.still_open()

    def still_open(self) -> None:
        """Assert the connection goes on: no GOAWAY, no close."""
        goaways = self.of_type(GoAwayFrame)
        assert not goaways, f"unexpected {goaways}; logs: {self.logs()}"
        assert not self.closed, "the proxy closed the connection"

    # -- machinery ---------------------------------------------------------------------

    def _handle(self, event: Event) -> list[Frame]:
        start = len(self.frames)
        self._apply(self.proxy.handle(event, self.now))
        self._drain()
        return self.frames[start:]

    def _drain(self) -> None:
        """Feed the follow-up events (writes done, connects, canned answers) in order."""
        while self._events:
            self._apply(self.proxy.handle(self._events.popleft(), self.now))

    def _apply(self, commands: list[Command]) -> None:
        """Carry out commands the way an adapter would; follow-up events wait their turn."""
        backends = {backend.conn: backend for backend in self.backends}
        for command in commands:
            self.commands.append(command)
            if isinstance(command, Send):
                if command.conn == self.conn:
                    assert not self.closed, "Send after Close"
                    self._receive(command.data)
                else:
                    self._to_backend(backends[command.conn], command.data)
                if self.auto_written:
                    self._events.append(Written(conn=command.conn, nbytes=len(command.data)))
            elif isinstance(command, OpenUpstream):
                backend = Backend(command)
                self.backends.append(backend)
                backends[backend.conn] = backend
                if self.auto_connect:
                    backend.connected = True
                    self._events.append(UpstreamConnected(conn=backend.conn))
            elif isinstance(command, ShutdownWrite):
                assert command.conn == self.conn, command
                self.closed = True
                # A well-behaved client reads the GOAWAY and closes its side too.
                self._events.append(EofReceived(conn=self.conn))
            elif isinstance(command, Close):
                if command.conn == self.conn:
                    self.closed = self.released = True
                else:
                    backends[command.conn].closed = True
            elif isinstance(command, PauseReading | ResumeReading):
                paused = isinstance(command, PauseReading)
                if command.conn == self.conn:
                    self.paused = paused
                else:
                    backends[command.conn].paused = paused
            else:
                assert isinstance(command, Log | AccessLog | ShutdownComplete), command
        # Events for connections that are gone are dropped, as an adapter would.
        gone = {b.conn for b in self.backends if b.closed}
        if self.released:
            gone.add(self.conn)
        self._events = deque(e for e in self._events if getattr(e, "conn", None) not in gone)

    def _to_backend(self, backend: Backend, data: bytes) -> None:
        for _ in backend.receive(data):
            if self.answers:
                self._events.append(DataReceived(conn=backend.conn, data=self.answers.popleft()))

    def _receive(self, data: bytes) -> None:
        inbox = self._inbox
        inbox += data
        while len(inbox) >= 9:
            try:
                frame, length = Frame.parse_frame_header(memoryview(inbox[:9]))
                if len(inbox) < 9 + length:
                    return
                frame.parse_body(memoryview(inbox[9 : 9 + length]))
            except HyperframeError as exc:
                raise AssertionError(f"the proxy sent a malformed frame: {exc}") from exc
            del inbox[: 9 + length]
            self.frames.append(frame)
            self._header_block(frame)

    def _header_block(self, frame: Frame) -> None:
        """Decode header blocks in arrival order (HPACK state depends on it)."""
        if isinstance(frame, HeadersFrame):
            assert self._block is None, "HEADERS inside another header block"
            self._block = (frame, bytearray(frame.data))
        elif isinstance(frame, ContinuationFrame):
            assert self._block is not None, "CONTINUATION outside a header block"
            assert self._block[0].stream_id == frame.stream_id
            self._block[1].extend(frame.data)
        else:
            assert self._block is None, f"{frame!r} inside a header block"
            return
        if "END_HEADERS" in frame.flags:
            first, block = self._block
            self._block = None
            fields = self.decoder.decode(bytes(block), raw=True)
            self.blocks.append((first.stream_id, [(bytes(n), bytes(v)) for n, v in fields]))
