"""HTTP/2 test clients for the real-socket suite: raw frames, and a WebSocket over a stream.

:class:`FrameClient` writes and reads HTTP/2 frames (hyperframe, hpack) over a socket
with no connection state machine in the way, so a test can send what no library would
(a flood, a header block that never ends, a stream after a GOAWAY) and see every frame
the proxy answers with. What it reads is folded into :attr:`FrameClient.streams`
(status, headers, body, trailers, reset code per stream) and :attr:`FrameClient.goaway`.

:class:`H2WebSocket` is a WebSocket client over one HTTP/2 stream (RFC 8441): h2 for
the extended CONNECT and the stream, wsproto's frame-level ``Connection`` for the
WebSocket frames carried in its DATA. No published Python client speaks RFC 8441.

Both are independent of sansproxy: they judge what it sends.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import hpack
import wsproto.connection
import wsproto.events as ws_events
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

__all__ = [
    "CANCEL",
    "ENHANCE_YOUR_CALM",
    "INTERNAL_ERROR",
    "NO_ERROR",
    "PREFACE",
    "PROTOCOL_ERROR",
    "REFUSED_STREAM",
    "FrameClient",
    "H2WebSocket",
    "StreamResult",
    "h2_context",
]

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
INTERNAL_ERROR = 0x2
REFUSED_STREAM = 0x7
CANCEL = 0x8
ENHANCE_YOUR_CALM = 0xB

_RECEIVE = 65536


def h2_context(context: ssl.SSLContext) -> ssl.SSLContext:
    """``context`` offering only ``h2`` in ALPN."""
    context.set_alpn_protocols(["h2"])
    return context


def _connect(
    port: int,
    tls: ssl.SSLContext | None,
    timeout: float,
    rcvbuf: int | None = None,
    sndbuf: int | None = None,
) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if sndbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        sock.settimeout(timeout)
        sock.connect(("127.0.0.1", port))
        if tls is None:
            return sock
        wrapped = h2_context(tls).wrap_socket(sock, server_hostname="localhost")
    except BaseException:
        sock.close()
        raise
    if wrapped.selected_alpn_protocol() != "h2":
        wrapped.close()
        raise AssertionError("the proxy did not agree to h2 in ALPN")
    return wrapped


@dataclass(slots=True)
class StreamResult:
    """What one stream brought back."""

    status: int | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    informational: list[int] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    trailers: list[tuple[str, str]] = field(default_factory=list)
    ended: bool = False
    reset: int | None = None
    """The RST_STREAM error code, if the proxy reset the stream."""

    @property
    def done(self) -> bool:
        return self.ended or self.reset is not None

    def header(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name]


class FrameClient:
    """HTTP/2 client frames over a plain (h2c, prior knowledge) or TLS (ALPN h2) socket.

    Args:
        port: The proxy's port on 127.0.0.1.
        tls: A client context (its ALPN is set to ``h2``), or ``None`` for cleartext.
        preface: Send the connection preface and an empty SETTINGS frame at once.
        settings: Values for that SETTINGS frame.
        auto_window: Reopen the windows for every DATA frame read (a client that reads).
        auto_ack: Acknowledge the proxy's SETTINGS (default: when ``preface`` is sent; a
            client that sent no preface must not send anything else either).
        timeout: Socket timeout, seconds.
        rcvbuf: ``SO_RCVBUF`` before connecting (small: the kernel buffers little).
        sndbuf: ``SO_SNDBUF`` before connecting.
    """

    def __init__(
        self,
        port: int,
        *,
        tls: ssl.SSLContext | None = None,
        preface: bool = True,
        settings: dict[int, int] | None = None,
        auto_window: bool = True,
        auto_ack: bool | None = None,
        timeout: float = 10.0,
        rcvbuf: int | None = None,
        sndbuf: int | None = None,
    ) -> None:
        self.sock = _connect(port, tls, timeout, rcvbuf, sndbuf)
        self.scheme = b"https" if tls is not None else b"http"
        self.authority = f"127.0.0.1:{port}".encode()
        self.auto_window = auto_window
        self.auto_ack = preface if auto_ack is None else auto_ack
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.streams: dict[int, StreamResult] = {}
        self.goaway: GoAwayFrame | None = None
        self.frame_counts: dict[str, int] = {}
        self.server_settings: dict[int, int] = {}
        self.closed = False
        """The proxy closed (or reset) the connection."""
        self.send_failed = False
        """A write failed: the proxy had closed or reset the connection."""
        self._buffer = bytearray()
        self._next_stream = 1
        self._block: tuple[int, bytearray, bool] | None = None
        if preface:
            frame = SettingsFrame(0)
            frame.settings = dict(settings or {})
            self.send_raw(PREFACE + frame.serialize())

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> FrameClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sending -----------------------------------------------------------------------

    def send_raw(self, data: bytes) -> bool:
        """Write ``data``; ``False`` (and :attr:`send_failed`) when the proxy is gone."""
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.send_failed = True
            return False
        return True

    def send(self, *frames: Frame) -> bool:
        return self.send_raw(b"".join(frame.serialize() for frame in frames))

    def new_stream(self) -> int:
        """The next client stream id (odd, increasing)."""
        number = self._next_stream
        self._next_stream += 2
        return number

    def request_fields(
        self, path: str, method: str = "GET", extra: Iterable[tuple[str, str]] = ()
    ) -> list[tuple[bytes, bytes]]:
        return [
            (b":method", method.encode()),
            (b":scheme", self.scheme),
            (b":authority", self.authority),
            (b":path", path.encode()),
            *((name.encode(), value.encode()) for name, value in extra),
        ]

    def headers_frame(
        self,
        stream: int,
        fields: list[tuple[bytes, bytes]],
        *,
        end_stream: bool,
        end_headers: bool = True,
    ) -> HeadersFrame:
        frame = HeadersFrame(stream)
        frame.data = self.encoder.encode(fields)
        if end_stream:
            frame.flags.add("END_STREAM")
        if end_headers:
            frame.flags.add("END_HEADERS")
        return frame

    def request(
        self,
        path: str,
        *,
        method: str = "GET",
        body: bytes | None = None,
        end_stream: bool = True,
        extra: Iterable[tuple[str, str]] = (),
    ) -> int:
        """Open a stream with a request; ``body`` goes in one DATA frame. Returns its id."""
        stream = self.new_stream()
        self.streams[stream] = StreamResult()
        frames: list[Frame] = [
            self.headers_frame(
                stream,
                self.request_fields(path, method, extra),
                end_stream=end_stream and body is None,
            )
        ]
        if body is not None:
            data = DataFrame(stream)
            data.data = body
            if end_stream:
                data.flags.add("END_STREAM")
            frames.append(data)
        self.send(*frames)
        return stream

    # -- receiving ---------------------------------------------------------------------

    def _fill(self) -> bool:
        try:
            data = self.sock.recv(_RECEIVE)
        except (ConnectionResetError, ssl.SSLError):
            data = b""
        if not data:
            self.closed = True
            return False
        self._buffer += data
        return True

    def _parse(self) -> Frame | None:
        """One whole frame from what was read so far, if there is one."""
        if len(self._buffer) < 9:
            return None
        frame, length = Frame.parse_frame_header(memoryview(bytes(self._buffer[:9])))
        if len(self._buffer) < 9 + length:
            return None
        frame.parse_body(memoryview(bytes(self._buffer[9 : 9 + length])))
        del self._buffer[: 9 + length]
        self._fold(frame)
        return frame

    def read_frame(self) -> Frame | None:
        """The next frame (also folded into :attr:`streams`), or ``None`` once closed.

        Raises:
            TimeoutError: Nothing arrived within the socket timeout.
        """
        while True:
            frame = self._parse()
            if frame is not None:
                return frame
            if self.closed or not self._fill():
                return None

    def read_available(self) -> None:
        """Read and fold whatever has arrived, without waiting."""
        while not self.closed:
            pending = isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()
            if not pending and not select.select([self.sock], [], [], 0)[0]:
                break
            self._fill()
        while self._parse() is not None:
            pass

    def peer_receive_queue(self) -> int:
        """Bytes this client sent that the proxy's socket holds unread (Linux ``/proc/net/tcp``).

        A queue that stays full while the client sends nothing more means the proxy has
        stopped reading this connection.
        """
        local_port = self.sock.getsockname()[1]
        proxy_port = self.sock.getpeername()[1]
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if (
                int(fields[1].rsplit(":", 1)[1], 16) == proxy_port
                and int(fields[2].rsplit(":", 1)[1], 16) == local_port
            ):
                return int(fields[4].split(":")[1], 16)
        raise LookupError("the proxy's end of the connection is gone")

    def tcp_state(self) -> int:
        """The kernel's TCP state of this socket (Linux ``TCP_INFO``: 7 closed, 8 close-wait).

        Tells whether the proxy closed or reset the connection without reading from it.
        """
        info = self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)
        return info[0]

    def _fold(self, frame: Frame) -> None:
        name = type(frame).__name__
        self.frame_counts[name] = self.frame_counts.get(name, 0) + 1
        if isinstance(frame, SettingsFrame):
            if "ACK" not in frame.flags:
                self.server_settings.update(frame.settings)
            if "ACK" not in frame.flags and self.auto_ack:
                ack = SettingsFrame(0)
                ack.flags.add("ACK")
                self.send(ack)
        elif isinstance(frame, GoAwayFrame):
            self.goaway = frame
        elif isinstance(frame, HeadersFrame):
            self._block = (frame.stream_id, bytearray(frame.data), "END_STREAM" in frame.flags)
            if "END_HEADERS" in frame.flags:
                self._header_block()
        elif isinstance(frame, ContinuationFrame) and self._block is not None:
            self._block[1].extend(frame.data)
            if "END_HEADERS" in frame.flags:
                self._header_block()
        elif isinstance(frame, DataFrame):
            result = self.streams.setdefault(frame.stream_id, StreamResult())
            result.body += frame.data
            if "END_STREAM" in frame.flags:
                result.ended = True
            if self.auto_window and frame.flow_controlled_length:
                self._open_windows(frame.stream_id, frame.flow_controlled_length, result.ended)
        elif isinstance(frame, RstStreamFrame):
            self.streams.setdefault(frame.stream_id, StreamResult()).reset = frame.error_code

    def _header_block(self) -> None:
        assert self._block is not None
        stream, block, ended = self._block
        self._block = None
        fields = [
            (bytes(n).decode("latin-1"), bytes(v).decode("latin-1"))
            for n, v in self.decoder.decode(bytes(block), raw=True)
        ]
        result = self.streams.setdefault(stream, StreamResult())
        status = next((int(v) for n, v in fields if n == ":status"), None)
        if status is None:
            result.trailers = fields
        elif status < 200:
            result.informational.append(status)
        else:
            result.status = status
            result.headers = [(n, v) for n, v in fields if not n.startswith(":")]
        if ended:
            result.ended = True

    def _open_windows(self, stream: int, size: int, ended: bool) -> None:
        frames = []
        for number in (0,) if ended else (0, stream):
            update = WindowUpdateFrame(number)
            update.window_increment = size
            frames.append(update)
        self.send(*frames)

    def read_until(self, done: Callable[[], bool], timeout: float = 10.0) -> bool:
        """Read frames until ``done()`` holds; ``False`` if the connection closed or time is up."""
        deadline = time.monotonic() + timeout
        while not done():
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                return False
            self.sock.settimeout(left)
            try:
                if self.read_frame() is None:
                    return done()
            except TimeoutError:
                return done()
        return True

    def wait_streams(self, *streams: int, timeout: float = 10.0) -> bool:
        """Read until every stream in ``streams`` ended or was reset."""
        return self.read_until(
            lambda: all(self.streams.get(s, StreamResult()).done for s in streams), timeout
        )

    def read_to_close(self, timeout: float = 10.0) -> bool:
        """Read (and fold) everything until the proxy closes; ``False`` if it did not in time."""
        self.read_until(lambda: False, timeout)
        return self.closed

    def ping(self, payload: bytes = b"12345678") -> bool:
        frame = PingFrame(0)
        frame.opaque_data = payload
        return self.send(frame)


class H2WebSocket:
    """A WebSocket client over one HTTP/2 stream (RFC 8441).

    Connects, checks that the proxy allows extended CONNECT
    (SETTINGS_ENABLE_CONNECT_PROTOCOL = 1), sends ``CONNECT`` with
    ``:protocol websocket`` and waits for the 200. :attr:`status` and
    :attr:`response_headers` hold the answer; the messages go through
    :meth:`send` and :meth:`receive`.
    """

    def __init__(
        self, port: int, path: str, *, tls: ssl.SSLContext | None = None, timeout: float = 10.0
    ) -> None:
        self.sock = _connect(port, tls, timeout)
        self.h2 = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.h2.initiate_connection()
        self.ws = wsproto.connection.Connection(wsproto.connection.ConnectionType.CLIENT)
        self.stream = self.h2.get_next_available_stream_id()
        self.status: int | None = None
        self.response_headers: list[tuple[bytes, bytes]] = []
        self.stream_ended = False
        self.stream_reset: int | None = None
        self.close_code: int | None = None
        self._messages: list[str | bytes] = []
        self._partial: list[str | bytes] = []
        self._flush()
        self._pump_until(lambda: self.h2.remote_settings.enable_connect_protocol == 1)
        self.h2.send_headers(
            self.stream,
            [
                (b":method", b"CONNECT"),
                (b":protocol", b"websocket"),
                (b":scheme", b"https" if tls is not None else b"http"),
                (b":path", path.encode()),
                (b":authority", f"127.0.0.1:{port}".encode()),
                (b"sec-websocket-version", b"13"),
            ],
        )
        self._flush()
        self._pump_until(lambda: self.status is not None or self.stream_reset is not None)

    def close_socket(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> H2WebSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close_socket()

    def send(self, message: str | bytes) -> None:
        event: ws_events.Event = (
            ws_events.TextMessage(data=message)
            if isinstance(message, str)
            else ws_events.BytesMessage(data=message)
        )
        self._send_stream_data(self.ws.send(event))

    def receive(self) -> str | bytes:
        """The next whole message (text or binary)."""
        self._pump_until(lambda: bool(self._messages))
        return self._messages.pop(0)

    def close(self, code: int = 1000) -> None:
        """The WebSocket closing handshake, then END_STREAM; waits for the proxy's end."""
        self._send_stream_data(self.ws.send(ws_events.CloseConnection(code=code)))
        self._pump_until(lambda: self.close_code is not None)
        self.h2.end_stream(self.stream)
        self._flush()
        self._pump_until(lambda: self.stream_ended or self.stream_reset is not None)

    def _send_stream_data(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            window = min(
                self.h2.local_flow_control_window(self.stream), self.h2.max_outbound_frame_size
            )
            if window <= 0:
                self._pump_until(self._window_open)
                continue
            self.h2.send_data(self.stream, bytes(view[:window]))
            view = view[window:]
            self._flush()

    def _window_open(self) -> bool:
        return self.h2.local_flow_control_window(self.stream) > 0

    def _flush(self) -> None:
        data = self.h2.data_to_send()
        if data:
            self.sock.sendall(data)

    def _pump_until(self, done: Callable[[], bool]) -> None:
        while not done():
            data = self.sock.recv(_RECEIVE)
            if not data:
                raise ConnectionError("the proxy closed the connection")
            for event in self.h2.receive_data(data):
                self._on_h2(event)
            self._flush()

    def _on_h2(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.ResponseReceived) and event.stream_id == self.stream:
            fields = [(bytes(n), bytes(v)) for n, v in event.headers]
            self.status = int(dict(fields)[b":status"])
            self.response_headers = [(n, v) for n, v in fields if not n.startswith(b":")]
        elif isinstance(event, h2.events.DataReceived) and event.stream_id == self.stream:
            self.h2.acknowledge_received_data(event.flow_controlled_length, self.stream)
            if event.data:  # the END_STREAM that follows the closing handshake may be empty
                self.ws.receive_data(event.data)
                for ws_event in self.ws.events():
                    self._on_ws(ws_event)
        elif isinstance(event, h2.events.StreamEnded) and event.stream_id == self.stream:
            self.stream_ended = True
        elif isinstance(event, h2.events.StreamReset) and event.stream_id == self.stream:
            self.stream_reset = int(event.error_code)
        elif isinstance(event, h2.events.ConnectionTerminated):
            raise ConnectionError(f"GOAWAY {event.error_code!r}")

    def _on_ws(self, event: ws_events.Event) -> None:
        if isinstance(event, ws_events.TextMessage | ws_events.BytesMessage):
            self._partial.append(event.data if isinstance(event.data, str) else bytes(event.data))
            if event.message_finished:
                if isinstance(event, ws_events.TextMessage):
                    message: str | bytes = "".join(p for p in self._partial if isinstance(p, str))
                else:
                    message = b"".join(p for p in self._partial if isinstance(p, bytes))
                self._partial.clear()
                self._messages.append(message)
        elif isinstance(event, ws_events.Ping):
            self._send_stream_data(self.ws.send(event.response()))
        elif isinstance(event, ws_events.CloseConnection):
            self.close_code = event.code
