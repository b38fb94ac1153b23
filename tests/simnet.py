"""An in-memory network that drives one :class:`sansproxy.Proxy` on a virtual clock.

Fake clients and fake backends are real ``h11.Connection`` objects (client role
and server role), so whole exchanges are checked at the event level, "the
client got ``Response(200)`` with body ``b"hi"``", instead of by exact bytes.
This is h11's ``ConnectionPair`` raised to N peers (STYLE.md section 3.6).
:class:`FakeH2Client` is the same for HTTP/2: an ``h2.connection.H2Connection``
in the client role, with many streams on one connection (:meth:`SimNet.h2_client`).

The network plays the adapter: it carries the bytes of ``Send`` to the peer
(re-chunked by a :data:`Chunker`), reports ``Written`` for the bytes the peer
took, turns ``OpenUpstream`` into a connection to a registered
:class:`FakeBackend` (``UpstreamFailed`` when none listens or it refuses),
keeps a peer's bytes in its queue while the proxy has paused reading, and
carries out ``Close``. Nothing happens by itself: :meth:`SimNet.run` moves
bytes until nothing more can move, :meth:`SimNet.advance` lets virtual time
pass (firing the proxy's timers at their exact deadlines and the backends'
delayed replies).

Example::

    net = SimNet(simple_config())
    net.add_backend("10.0.0.1", 80, ok(b"hi"))
    client = net.client()
    client.request("GET", "/")
    net.run()
    assert client.responses[0].status == 200
    assert client.responses[0].body == b"hi"
    net.check()

The same over HTTP/2, two streams at once on one connection::

    net = SimNet(protocol_config("h2"))  # a TLS listener offering h2
    net.add_backend("10.0.0.1", 80, echo)
    client = net.h2_client()
    first = client.request("POST", "/a", body=b"one")
    second = client.request("POST", "/b", body=b"two")
    net.run()
    assert client.streams[second].response.body == b"two"
    assert client.outcomes == ["response", "response"]

Contract breaches the network sees (a ``Send`` to a closed connection, a
command for an unknown one, an unwritten buffer beyond
:attr:`SimNet.buffer_bound`, or :attr:`SimNet.h2_buffer_bound` on an HTTP/2
client connection) are collected in :attr:`SimNet.violations`;
:meth:`SimNet.check` raises if there are any, or if a peer could not parse
what the proxy sent it.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import heapq
import itertools
import random
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import h11

from sansproxy import Proxy
from sansproxy.commands import (
    AccessLog,
    AccessRecord,
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
from sansproxy.config import (
    HeaderPolicy,
    Http2Settings,
    Limits,
    Listener,
    LogSettings,
    ProxyConfig,
    Server,
    Timeouts,
    Upstream,
)
from sansproxy.events import (
    ConnectionAccepted,
    ConnectionLost,
    ConnId,
    DataReceived,
    EofReceived,
    Event,
    ShutdownRequested,
    TlsInfo,
    UpstreamConnected,
    UpstreamFailed,
    Written,
)
from tests.playbook import SimClock

__all__ = [
    "FRAMING_SLACK",
    "H2_FRAME_SLACK",
    "PROTOCOLS",
    "Chunker",
    "ClientProtocol",
    "FakeBackend",
    "FakeClient",
    "FakeH2Client",
    "H2Outcome",
    "H2Stream",
    "Handler",
    "HeaderPairs",
    "ReceivedRequest",
    "ReceivedResponse",
    "Reply",
    "SimNet",
    "SimnetError",
    "bytewise",
    "cycling",
    "echo",
    "ok",
    "protocol_config",
    "simple_config",
    "websocket",
    "websocket_accept",
    "whole",
]

HeaderPairs = Sequence[tuple[bytes | str, bytes | str]]
ClientProtocol = Literal["http/1.1", "h2", "h2c"]
"""How a client talks to the proxy: HTTP/1.1; HTTP/2 over TLS (ALPN ``h2``); HTTP/2 in
cleartext with prior knowledge (``h2c``)."""
PROTOCOLS: tuple[ClientProtocol, ...] = ("http/1.1", "h2", "h2c")
Reply = tuple[int, HeaderPairs, Iterable[bytes]]
"""What a backend answers: status, headers, body pieces (each becomes one ``h11.Data``)."""
Handler = Callable[[h11.Request, bytes], Reply]
"""Computes a backend's reply from the request head and the whole request body."""
Chunker = Callable[[bytes], Sequence[bytes]]
"""Splits queued bytes into non-empty pieces (one read or one write each), in order."""

FRAMING_SLACK = 64
"""Allowance in :attr:`SimNet.buffer_bound` for chunked-framing bytes around one read."""

H2_FRAME_SLACK = 256
"""Allowance per stream in :attr:`SimNet.h2_buffer_bound` for what HTTP/2 adds to a
response head: frame headers, the fields the proxy adds, an RST_STREAM."""

MAX_STEPS = 1_000_000
"""Bound on delivery steps in one :meth:`SimNet.run` (a livelock is a harness error)."""


class SimnetError(Exception):
    """The simulation was used wrongly or could not settle (not a proxy verdict)."""


# -- chunkers and handlers --------------------------------------------------------------


def whole(data: bytes) -> Sequence[bytes]:
    """Deliver everything queued at once."""
    return [data]


def bytewise(data: bytes) -> Sequence[bytes]:
    """Deliver one byte per read (h11's fuzzing trick)."""
    return [data[i : i + 1] for i in range(len(data))]


def cycling(sizes: Sequence[int]) -> Chunker:
    """A chunker cutting pieces of ``sizes[0]``, ``sizes[1]``, ... bytes, cycling forever.

    The position in ``sizes`` carries over between calls, so one list describes
    a whole conversation's split; hypothesis can draw and shrink it.
    """
    if not sizes or any(size < 1 for size in sizes):
        raise ValueError("sizes must be positive and non-empty")
    position = itertools.cycle(sizes)

    def chunk(data: bytes) -> Sequence[bytes]:
        pieces = []
        start = 0
        while start < len(data):
            end = start + next(position)
            pieces.append(data[start:end])
            start = end
        return pieces

    return chunk


def ok(body: bytes = b"ok", status: int = 200, headers: HeaderPairs = ()) -> Handler:
    """A handler answering every request with ``status`` and ``body`` (Content-Length)."""

    def handle(request: h11.Request, request_body: bytes) -> Reply:
        head: list[tuple[bytes | str, bytes | str]] = list(headers)
        head.append(("content-length", str(len(body))))
        return status, head, [body]

    return handle


def echo(request: h11.Request, body: bytes) -> Reply:
    """A handler answering 200 with the request body (Content-Length)."""
    return 200, [("content-length", str(len(body)))], [body]


WEBSOCKET_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
"""RFC 6455 §1.3: the GUID appended to Sec-WebSocket-Key before hashing."""


def websocket_accept(key: bytes) -> bytes:
    """The Sec-WebSocket-Accept answering ``key``: base64(SHA-1(key + GUID)), RFC 6455 §1.3."""
    return base64.b64encode(hashlib.sha1(key.strip() + WEBSOCKET_GUID).digest())


def websocket(request: h11.Request, body: bytes) -> Reply:
    """A handler accepting a WebSocket upgrade with 101 (then the connection echoes bytes).

    A request that does not ask for a WebSocket gets 400.
    """
    headers = {bytes(name).lower(): bytes(value) for name, value in request.headers}
    key = headers.get(b"sec-websocket-key")
    if key is None or headers.get(b"upgrade", b"").lower() != b"websocket":
        return 400, [("content-length", "0")], []
    return (
        101,
        [
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("sec-websocket-accept", websocket_accept(key)),
        ],
        [],
    )


# -- what the peers received -------------------------------------------------------------


@dataclass(slots=True)
class ReceivedRequest:
    """A request as a fake backend parsed it (header names lower case).

    ``tunnel`` collects the bytes received after the backend switched protocols (101).
    """

    method: bytes
    target: bytes
    headers: list[tuple[bytes, bytes]]
    http_version: bytes
    body: bytes = b""
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)
    complete: bool = False
    tunnel: bytes = b""

    def header(self, name: bytes) -> bytes | None:
        """The first value of header ``name`` (lower case), or None."""
        return next((v for n, v in self.headers if n == name), None)


@dataclass(slots=True)
class ReceivedResponse:
    """A response as a fake client parsed it (header names lower case).

    ``complete`` is False when the connection ended before the body did. After
    a switch of protocols (a 101 on HTTP/1.1, a 200 to an extended CONNECT on
    HTTP/2) ``body`` collects the tunnelled bytes. ``http_version`` is ``b"2"``
    for an HTTP/2 response, whose ``reason`` is always empty.
    """

    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    http_version: bytes
    informational: list[int] = field(default_factory=list)
    body: bytes = b""
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)
    complete: bool = False

    def header(self, name: bytes) -> bytes | None:
        """The first value of header ``name`` (lower case), or None."""
        return next((v for n, v in self.headers if n == name), None)


# -- connections -------------------------------------------------------------------------


class _Peer(Protocol):
    """What the network needs of the peer at the far end of a link."""

    @property
    def reading(self) -> bool:
        """Whether the peer takes bytes now (False: a slow reader)."""
        ...

    def _receive(self, data: bytes) -> None: ...

    def _receive_eof(self) -> None: ...

    def _receive_half_close(self) -> None:
        """The proxy shut its sending side (``ShutdownWrite``) but still reads."""
        ...

    def _receive_reset(self) -> None: ...


class _FrameLedger:
    """Which of an HTTP/2 link's unwritten bytes belong to DATA frames (headers included).

    The proxy's bytes to an HTTP/2 client are a sequence of frames; this follows
    their boundaries as they are sent, so that :attr:`data` counts the unwritten
    bytes of DATA frames, the only ones the proxy's output cap limits.
    """

    def __init__(self) -> None:
        self.runs: deque[list[int]] = deque()  # [is DATA (0/1), unwritten bytes], in order
        self.data = 0
        self.max_data = 0
        self._head = bytearray()  # a frame header not complete yet
        self._left = 0  # payload bytes of the current frame still to come
        self._is_data = 0

    def sent(self, data: bytes) -> None:
        """The proxy sent ``data`` (appended after everything unwritten)."""
        i = 0
        while i < len(data):
            if self._left:
                take = min(self._left, len(data) - i)
                self._add(self._is_data, take)
                self._left -= take
                i += take
                continue
            chunk = data[i : i + 9 - len(self._head)]
            i += len(chunk)
            self._head += chunk
            if len(self._head) < 9:
                self._add(0, len(chunk))  # split header bytes count as not DATA
                break
            self._is_data = int(self._head[3] == 0)
            self._left = int.from_bytes(self._head[:3], "big")
            self._add(self._is_data, len(chunk))
            self._head.clear()
        self.max_data = max(self.max_data, self.data)

    def taken(self, count: int) -> None:
        """The peer took the first ``count`` unwritten bytes."""
        runs = self.runs
        while count:
            run = runs[0]
            step = min(count, run[1])
            run[1] -= step
            count -= step
            if run[0]:
                self.data -= step
            if not run[1]:
                runs.popleft()

    def clear(self) -> None:
        """Every unwritten byte was dropped (a reset)."""
        self.runs.clear()
        self.data = 0

    def _add(self, is_data: int, count: int) -> None:
        if self.runs and self.runs[-1][0] == is_data:
            self.runs[-1][1] += count
        else:
            self.runs.append([is_data, count])
        if is_data:
            self.data += count


class _Link:
    """One connection as the network sees it: the proxy at one end, a peer at the other."""

    def __init__(
        self,
        conn: ConnId,
        kind: Literal["client", "upstream"],
        chunker: Chunker,
        *,
        http2: bool = False,
    ) -> None:
        self.conn = conn
        self.kind = kind
        self.chunker = chunker
        self.http2 = http2  # an HTTP/2 client connection (its own buffer bounds)
        self.frames = _FrameLedger() if http2 else None
        self.peer: _Peer | None = None
        self.to_proxy = bytearray()  # written by the peer, not yet read by the proxy
        self.peer_eof = False  # the peer closed its side: EOF after to_proxy
        self.eof_reported = False
        self.peer_reset = False  # the peer reset: ConnectionLost after to_proxy
        self.to_peer = bytearray()  # sent by the proxy, not yet taken by the peer
        self.paused = False
        self.connected = kind == "client"
        self.proxy_closed = False  # the proxy issued Close
        self.lost = False  # the proxy was told ConnectionLost / UpstreamFailed
        self.abandoned = False  # the peer is gone: bytes to it vanish
        self.eof_to_peer = False  # graceful Close: the peer gets EOF after to_peer
        self.half_close_to_peer = False  # ShutdownWrite: EOF after to_peer, still readable
        self.max_unwritten = 0

    def gone(self) -> bool:
        """The proxy must hear nothing more about this connection."""
        return self.proxy_closed or self.lost

    def took(self, count: int) -> None:
        """The peer took the first ``count`` bytes the proxy sent."""
        del self.to_peer[:count]
        if self.frames is not None:
            self.frames.taken(count)

    def drop_unwritten(self) -> None:
        """The connection was reset: what the proxy sent and the peer did not take is lost."""
        self.to_peer.clear()
        if self.frames is not None:
            self.frames.clear()


class FakeClient:
    """An HTTP/1.1 client (an ``h11.Connection`` in the client role) talking to the proxy.

    It sends one request at a time (:meth:`request`); each request ends in one
    entry of :attr:`outcomes`: ``"response"`` for a complete final response,
    ``"closed"`` when the connection ended first. A ``raw`` client sends
    arbitrary bytes (:meth:`send_raw`) and parses what comes back as responses
    to ``GET`` requests; it keeps no outcomes.

    A request that asks to upgrade (``Upgrade`` and ``Connection: upgrade``)
    and gets ``101`` ends with outcome ``"response"`` (status 101); from then
    on the connection is a tunnel: :meth:`send_tunnel` writes raw bytes, and
    what comes back is appended to that response's ``body``.

    Attributes:
        responses: every response received, in order.
        outcomes: one entry per finished request.
        reading: set to False to stop taking bytes (a slow client).
        closed: the connection is over (closed or reset by the proxy, or aborted).
        reset: the proxy aborted the connection.
        switched: a 101 turned the connection into a tunnel.
        protocol_errors: what h11 could not parse in the proxy's output.
    """

    def __init__(self, net: SimNet, link: _Link, *, raw: bool) -> None:
        self.conn = link.conn
        self.raw = raw
        self.responses: list[ReceivedResponse] = []
        self.outcomes: list[Literal["response", "closed"]] = []
        self.requests_sent = 0
        self.received = bytearray()
        self.reading = True
        self.closed = False
        self.reset = False
        self.switched = False
        self.protocol_errors: list[str] = []
        self._net = net
        self._link = link
        self._h11 = h11.Connection(h11.CLIENT)
        self._informational: list[int] = []
        self._half_closed = False
        self._broken = False
        if raw:
            self._prime()

    @property
    def idle(self) -> bool:
        """True when a new request can be sent now."""
        return (
            not self.raw
            and not self.closed
            and not self._half_closed
            and self._h11.our_state is h11.IDLE
            and self._h11.their_state is h11.IDLE
        )

    @property
    def waiting(self) -> bool:
        """A request was sent and has no outcome yet."""
        return self.requests_sent > len(self.outcomes)

    def request(
        self,
        method: str = "GET",
        target: str = "/",
        headers: HeaderPairs = (),
        body: bytes | Sequence[bytes] = b"",
        *,
        chunked: bool = False,
        host: str | None = "example.com",
    ) -> None:
        """Send a whole request; framing headers are added unless ``headers`` has them.

        ``body`` may be a list of pieces (one chunk each when ``chunked``).
        """
        if not self.idle:
            raise SimnetError(f"client {self.conn} cannot send a request now")
        pieces = [body] if isinstance(body, bytes) else list(body)
        total = sum(len(p) for p in pieces)
        names = {_lower(name) for name, _ in headers}
        head: list[tuple[bytes | str, bytes | str]] = []
        if host is not None and b"host" not in names:
            head.append(("host", host))
        head.extend(headers)
        if b"content-length" not in names and b"transfer-encoding" not in names:
            if chunked:
                head.append(("transfer-encoding", "chunked"))
            elif total or method in ("POST", "PUT", "PATCH"):
                head.append(("content-length", str(total)))
        out = _send(self._h11, h11.Request(method=method, target=target, headers=_bytes(head)))
        for piece in pieces:
            if piece:
                out += _send(self._h11, h11.Data(data=piece))
        out += _send(self._h11, h11.EndOfMessage())
        self.requests_sent += 1
        self._net._peer_write(self._link, out)

    def send_raw(self, data: bytes) -> None:
        """Write arbitrary bytes to the proxy (a ``raw`` client only)."""
        if not self.raw:
            raise SimnetError("send_raw needs net.client(raw=True)")
        self._net._peer_write(self._link, data)

    def send_tunnel(self, data: bytes) -> None:
        """Write bytes into the tunnel a 101 opened."""
        if not self.switched:
            raise SimnetError(f"client {self.conn} has no tunnel")
        self._net._peer_write(self._link, data)

    def close(self) -> None:
        """Close the sending side cleanly: the proxy reads EOF after the queued bytes."""
        self._half_closed = True
        self._net._peer_eof(self._link)

    def abort(self) -> None:
        """Reset the connection: the proxy gets ``ConnectionLost``; queued bytes are lost."""
        self._net._peer_abort(self._link)
        self._ended()

    # -- called by the network --

    def _receive(self, data: bytes) -> None:
        self.received += data
        if self.switched:
            self.responses[-1].body += data
            return
        if self._broken:
            return
        try:
            self._h11.receive_data(data)
            self._drain()
        except h11.RemoteProtocolError as error:
            self.protocol_errors.append(f"{error} after {bytes(self.received[-200:])!r}")
            self._broken = True
            self.close()

    def _receive_eof(self) -> None:
        if not self._broken and not self.switched:
            try:
                self._h11.receive_data(b"")
                self._drain()
            except h11.RemoteProtocolError:
                pass  # the connection ended mid-response: the response stays incomplete
        self._ended()

    def _receive_half_close(self) -> None:
        # An HTTP/1.1 client goes on with what it was sending; the proxy's lingering
        # close reads it (its FIN follows the response, which the client has).
        pass

    def _receive_reset(self) -> None:
        self.reset = True
        self._ended()

    def _ended(self) -> None:
        self.closed = True
        self._half_closed = True
        if not self.raw and self.waiting:
            self.outcomes.append("closed")

    def _prime(self) -> None:
        # A raw client's bytes bypass h11; a dummy request lets h11 parse the answers.
        _send(self._h11, h11.Request(method="GET", target="/", headers=[("host", "x")]))
        _send(self._h11, h11.EndOfMessage())

    def _drain(self) -> None:
        while True:
            event = self._h11.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.InformationalResponse):
                if event.status_code == 101 and self._h11.their_state is h11.SWITCHED_PROTOCOL:
                    self._switch(event)
                    return
                self._informational.append(event.status_code)
            elif isinstance(event, h11.Response):
                self.responses.append(
                    ReceivedResponse(
                        status=event.status_code,
                        reason=bytes(event.reason),
                        headers=list(event.headers),
                        http_version=bytes(event.http_version),
                        informational=self._informational,
                    )
                )
                self._informational = []
            elif isinstance(event, h11.Data):
                self.responses[-1].body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                response = self.responses[-1]
                response.complete = True
                response.trailers = list(event.headers)
                if not self.raw:
                    self.outcomes.append("response")
                self._next_cycle()
            elif isinstance(event, h11.ConnectionClosed):
                return

    def _switch(self, event: h11.InformationalResponse) -> None:
        trailing, _ = self._h11.trailing_data
        self.responses.append(
            ReceivedResponse(
                status=101,
                reason=bytes(event.reason),
                headers=list(event.headers),
                http_version=bytes(event.http_version),
                informational=self._informational,
                body=bytes(trailing),
                complete=True,
            )
        )
        self._informational = []
        self.switched = True
        if not self.raw:
            self.outcomes.append("response")

    def _next_cycle(self) -> None:
        conn = self._h11
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
            if self.raw:
                self._prime()
        elif h11.MUST_CLOSE in (conn.our_state, conn.their_state) and not self._half_closed:
            self.close()  # "Connection: close": a real client closes its socket


H2Outcome = Literal["response", "reset", "refused", "cancelled", "closed"]
"""How an HTTP/2 stream ended: ``"response"`` complete; ``"reset"`` by the proxy's
RST_STREAM (see :attr:`H2Stream.reset_code`); ``"refused"``, above the last stream
of a GOAWAY, so never served; ``"cancelled"`` by the client's own RST_STREAM;
``"closed"``, the connection ended first."""

CANCEL = int(h2.errors.ErrorCodes.CANCEL)
NO_ERROR = int(h2.errors.ErrorCodes.NO_ERROR)
_GOAWAY = 0x7  # frame type (RFC 9113 §6.8)


@dataclass(slots=True)
class H2Stream:
    """One request stream of a :class:`FakeH2Client` and what came back on it."""

    stream_id: int
    method: bytes
    target: bytes
    response: ReceivedResponse | None = None
    informational: list[int] = field(default_factory=list)
    reset_code: int | None = None
    """The error code of the proxy's RST_STREAM, if it sent one."""
    outcome: H2Outcome | None = None
    ended: bool = False
    """The client queued its END_STREAM (or reset the stream)."""


@dataclass(frozen=True, slots=True)
class _Out:
    """Something the client still has to send on a stream, in order."""

    stream: int
    data: bytes = b""
    end: bool = False
    trailers: tuple[tuple[bytes, bytes], ...] | None = None


class FakeH2Client:
    """An HTTP/2 client (an h2 ``H2Connection`` in the client role) talking to the proxy.

    Requests go out on streams of one connection, as many at once as the test
    likes: :meth:`request` sends a whole one; :meth:`open_stream`,
    :meth:`send_body`, :meth:`send_trailers` and :meth:`end_stream` let a test
    interleave HEADERS, DATA and END_STREAM across streams in any order. Body
    bytes wait in the client while the proxy's windows are closed and go out
    (in the order they were queued) as WINDOW_UPDATE or SETTINGS frames open
    them; each piece is at least one DATA frame of its own.

    Each stream ends in one :data:`H2Outcome`. The client reopens its receive
    windows as it takes DATA, unless :attr:`acknowledge` is False. GOAWAY
    frames are recorded in :attr:`goaways` and not shown to h2, because h2
    refuses every frame after a GOAWAY, while a graceful one lets the streams
    below its last stream id finish (RFC 9113 §6.8).

    Attributes:
        streams: every stream opened, by id (in the order they were opened).
        outcomes: one entry per finished stream, in the order they finished.
        goaways: ``(last_stream_id, error_code, debug)`` of each GOAWAY received.
        reading: set to False to stop taking bytes (a slow client).
        closed: the connection is over (closed or reset by the proxy, or aborted).
        reset: the proxy aborted the connection.
        settings_acked: SETTINGS ACKs received.
        pings_acked: PING ACKs received.
        protocol_errors: what h2 could not accept in the proxy's output.
    """

    def __init__(self, net: SimNet, link: _Link, *, settings: dict[int, int] | None = None) -> None:
        self.conn = link.conn
        self.streams: dict[int, H2Stream] = {}
        self.outcomes: list[H2Outcome] = []
        self.goaways: list[tuple[int, int, bytes]] = []
        self.received = bytearray()
        self.reading = True
        self.closed = False
        self.reset = False
        self.settings_acked = 0
        self.pings_acked = 0
        self.protocol_errors: list[str] = []
        self._net = net
        self._link = link
        config = h2.config.H2Configuration(
            client_side=True,
            header_encoding=None,
            # Tests may send what a real client would not; the proxy's output is checked.
            validate_outbound_headers=False,
            normalize_outbound_headers=False,
            validate_inbound_headers=True,
        )
        self._h2 = h2.connection.H2Connection(config=config)
        self._h2.initiate_connection()
        if settings:
            self._h2.update_settings(settings)
        self._inbound = bytearray()  # bytes of a frame not complete yet
        self._outbox: deque[_Out] = deque()
        self._unacknowledged: list[tuple[int, int]] = []
        self._acknowledge = True
        self._half_closed = False
        self._quiet = False  # sent GOAWAY or broke: h2 is fed nothing more
        self._pings = itertools.count()
        self._flush()

    # -- state --

    @property
    def idle(self) -> bool:
        """True when a new stream can be opened now."""
        conn = self._h2
        return (
            not self.closed
            and not self._half_closed
            and not self._quiet
            and not self.goaways
            and conn.open_outbound_streams < conn.remote_settings.max_concurrent_streams
        )

    @property
    def waiting(self) -> bool:
        """Some stream has no outcome yet."""
        return any(stream.outcome is None for stream in self.streams.values())

    @property
    def requests_sent(self) -> int:
        """Streams opened so far."""
        return len(self.streams)

    @property
    def responses(self) -> list[ReceivedResponse]:
        """The response of every stream that got one, in the order of the streams."""
        return [s.response for s in self.streams.values() if s.response is not None]

    @property
    def acknowledge(self) -> bool:
        """Whether received DATA reopens the windows (False: the client never sends
        WINDOW_UPDATE, so the proxy's response bytes stay behind the windows)."""
        return self._acknowledge

    @acknowledge.setter
    def acknowledge(self, value: bool) -> None:
        self._acknowledge = value
        if value and self._unacknowledged:
            owed, self._unacknowledged = self._unacknowledged, []
            for stream, size in owed:
                self._h2.acknowledge_received_data(size, stream)
            self._flush()

    # -- sending --

    def request(
        self,
        method: str = "GET",
        target: str = "/",
        headers: HeaderPairs = (),
        body: bytes | Sequence[bytes] = b"",
        *,
        trailers: HeaderPairs = (),
        chunked: bool = False,
        host: str | None = "example.com",
        end: bool = True,
    ) -> int:
        """Send a whole request on a new stream (or all but its end, when ``end`` is False).

        ``content-length`` is added as :meth:`FakeClient.request` adds it, unless
        ``chunked`` (a body of unknown length) or ``headers`` has one. Each body
        piece becomes one or more DATA frames. Returns the stream id.
        """
        pieces = [body] if isinstance(body, bytes) else list(body)
        pieces = [p for p in pieces if p]
        total = sum(len(p) for p in pieces)
        names = {_lower(name) for name, _ in headers}
        head: list[tuple[bytes | str, bytes | str]] = list(headers)
        sized = total or method in ("POST", "PUT", "PATCH")
        if sized and not chunked and b"content-length" not in names:
            head.append(("content-length", str(total)))
        bodyless = not pieces and not trailers
        stream = self.open_stream(method, target, head, host=host, end=end and bodyless)
        for index, piece in enumerate(pieces):
            last = index == len(pieces) - 1
            self.send_body(stream, piece, end=end and last and not trailers)
        if end and trailers:
            self.send_trailers(stream, trailers)
        return stream

    def open_stream(
        self,
        method: str = "GET",
        target: str = "/",
        headers: HeaderPairs = (),
        *,
        host: str | None = "example.com",
        scheme: str = "https",
        protocol: str | None = None,
        end: bool = False,
    ) -> int:
        """Open a stream with a HEADERS frame (END_STREAM too when ``end``); returns its id.

        A CONNECT without ``protocol`` has only ``:method`` and ``:authority``
        (RFC 9113 §8.5); with ``protocol`` it is an extended CONNECT (RFC 8441 §4).
        """
        if not self.idle:
            raise SimnetError(f"HTTP/2 client {self.conn} cannot open a stream now")
        conn = self._h2
        stream = conn.get_next_available_stream_id()
        fields: list[tuple[bytes, bytes]] = [(b":method", method.encode())]
        if method != "CONNECT" or protocol is not None:
            fields.append((b":scheme", scheme.encode()))
        if host is not None:
            fields.append((b":authority", host.encode()))
        if method != "CONNECT" or protocol is not None:
            fields.append((b":path", target.encode()))
        if protocol is not None:
            fields.append((b":protocol", protocol.encode()))
        fields.extend(_bytes(headers))
        self.streams[stream] = H2Stream(
            stream_id=stream, method=method.encode(), target=target.encode(), ended=end
        )
        conn.send_headers(stream, fields, end_stream=end)
        self._pump()
        return stream

    def send_body(self, stream: int, data: bytes, *, end: bool = False) -> None:
        """Queue ``data`` (then END_STREAM when ``end``) on ``stream``."""
        self._queue(_Out(stream, data, end))

    def send_trailers(self, stream: int, trailers: HeaderPairs) -> None:
        """Queue trailers on ``stream``: a HEADERS frame with END_STREAM."""
        self._queue(_Out(stream, trailers=tuple(_bytes(trailers)), end=True))

    def end_stream(self, stream: int) -> None:
        """Queue END_STREAM on ``stream`` (an empty DATA frame)."""
        self._queue(_Out(stream, end=True))

    def reset_stream(self, stream: int, code: int = CANCEL) -> None:
        """RST_STREAM: the client gives up on ``stream`` (what it queued is dropped)."""
        record = self.streams[stream]
        record.ended = True
        self._outbox = deque(item for item in self._outbox if item.stream != stream)
        if self._quiet or self.closed:
            return
        with contextlib.suppress(h2.exceptions.StreamClosedError):  # over on both sides
            self._h2.reset_stream(stream, code)
        self._finish(record, "cancelled")
        self._flush()

    def goaway(self, code: int = NO_ERROR, *, keep_reading: bool = False) -> None:
        """Send GOAWAY (last stream 0: the client accepts no pushed stream).

        By default the client then reads nothing more, as h2 allows. With
        ``keep_reading`` the frame is written by hand, so that h2 does not
        know and the client goes on reading the responses to its own streams,
        which a GOAWAY from the client does not concern (RFC 9113 §6.8).
        """
        if self._quiet or self.closed:
            return
        if keep_reading:
            payload = (0).to_bytes(4, "big") + code.to_bytes(4, "big")
            header = len(payload).to_bytes(3, "big") + bytes([_GOAWAY, 0]) + bytes(4)
            self._flush()
            self._net._peer_write(self._link, header + payload)
            return
        self._h2.close_connection(error_code=code)
        self._flush()
        self._quiet = True

    def open_window(self, increment: int) -> None:
        """WINDOW_UPDATE on the connection: let the proxy send ``increment`` bytes more."""
        if not self._quiet and not self.closed:
            self._h2.increment_flow_control_window(increment)
            self._flush()

    def ping(self) -> None:
        """Send a PING (the proxy must ACK it)."""
        if not self._quiet and not self.closed:
            self._h2.ping(next(self._pings).to_bytes(8, "big"))
            self._flush()

    def send_raw(self, data: bytes) -> None:
        """Write bytes that bypass h2 (a hand-made frame, say)."""
        self._net._peer_write(self._link, data)

    def close(self) -> None:
        """Close the sending side: the proxy reads EOF after the queued bytes."""
        self._half_closed = True
        self._net._peer_eof(self._link)

    def abort(self) -> None:
        """Vanish: the proxy gets ``ConnectionLost``; queued bytes are lost."""
        self._net._peer_abort(self._link)
        self._ended()

    def _queue(self, item: _Out) -> None:
        record = self.streams[item.stream]
        if item.end:
            record.ended = True
        self._outbox.append(item)
        self._pump()

    def _pump(self) -> None:
        """Send what the windows allow, in the order it was queued, stream by stream."""
        if self._quiet or self.closed:
            return
        blocked: set[int] = set()
        left: deque[_Out] = deque()
        while self._outbox:
            item = self._outbox.popleft()
            if item.stream in blocked:
                left.append(item)
                continue
            try:
                rest = self._send(item)
            except h2.exceptions.ProtocolError:
                # The proxy reset or finished the stream: what is left will never go.
                blocked.add(item.stream)
                left = deque(i for i in left if i.stream != item.stream)
                self._outbox = deque(i for i in self._outbox if i.stream != item.stream)
                continue
            if rest is not None:
                left.append(rest)
                blocked.add(item.stream)
        self._outbox = left
        self._flush()

    def _send(self, item: _Out) -> _Out | None:
        """Send ``item`` as far as the windows allow; what is left over, or None."""
        conn = self._h2
        stream = item.stream
        if item.trailers is not None:
            conn.send_headers(stream, list(item.trailers), end_stream=True)
            return None
        data = item.data
        if not data:
            if item.end:
                conn.end_stream(stream)
            return None
        while data:
            room = min(conn.local_flow_control_window(stream), conn.max_outbound_frame_size)
            if room <= 0:
                return _Out(stream, data, item.end)
            conn.send_data(stream, data[:room], end_stream=item.end and room >= len(data))
            data = data[room:]
        return None

    def _flush(self) -> None:
        data = self._h2.data_to_send()
        if data:
            self._net._peer_write(self._link, data)

    # -- called by the network --

    def _receive(self, data: bytes) -> None:
        self.received += data
        if self._quiet:
            return
        inbound = self._inbound
        inbound += data
        while len(inbound) >= 9:
            size = 9 + int.from_bytes(inbound[:3], "big")
            if len(inbound) < size:
                break
            frame = bytes(inbound[:size])
            del inbound[:size]
            if frame[3] == _GOAWAY:
                self._goaway(frame[9:])
                continue
            try:
                events = self._h2.receive_data(frame)
            except h2.exceptions.ProtocolError as error:
                self.protocol_errors.append(f"{type(error).__name__}: {error}")
                self._quiet = True
                self.close()
                return
            for event in events:
                self._event(event)
        self._pump()

    def _goaway(self, payload: bytes) -> None:
        last = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
        code = int.from_bytes(payload[4:8], "big")
        self.goaways.append((last, code, payload[8:]))
        for number, stream in self.streams.items():
            if number > last:
                self._finish(stream, "refused")

    def _event(self, event: h2.events.Event) -> None:
        if isinstance(event, h2.events.ResponseReceived):
            stream = self.streams[event.stream_id]
            status = 0
            headers: list[tuple[bytes, bytes]] = []
            for name, value in event.headers:
                if _b(name) == b":status":
                    status = int(_b(value))
                elif not _b(name).startswith(b":"):
                    headers.append((_b(name), _b(value)))
            stream.response = ReceivedResponse(
                status=status,
                reason=b"",
                headers=headers,
                http_version=b"2",
                informational=stream.informational,
            )
        elif isinstance(event, h2.events.InformationalResponseReceived):
            status = next(int(_b(v)) for n, v in event.headers if _b(n) == b":status")
            self.streams[event.stream_id].informational.append(status)
        elif isinstance(event, h2.events.DataReceived):
            response = self.streams[event.stream_id].response
            if response is not None:  # h2 refuses DATA before a response head
                response.body += event.data
            owed = (event.stream_id, event.flow_controlled_length)
            if self._acknowledge:
                self._h2.acknowledge_received_data(owed[1], owed[0])
            else:
                self._unacknowledged.append(owed)
        elif isinstance(event, h2.events.TrailersReceived):
            response = self.streams[event.stream_id].response
            if response is not None:
                response.trailers = [(_b(n), _b(v)) for n, v in event.headers]
        elif isinstance(event, h2.events.StreamEnded):
            stream = self.streams[event.stream_id]
            if stream.response is not None:
                stream.response.complete = True
            self._finish(stream, "response")
        elif isinstance(event, h2.events.StreamReset):
            stream = self.streams[event.stream_id]
            stream.reset_code = int(event.error_code)
            stream.ended = True
            self._outbox = deque(i for i in self._outbox if i.stream != event.stream_id)
            self._finish(stream, "reset")
        elif isinstance(event, h2.events.SettingsAcknowledged):
            self.settings_acked += 1
        elif isinstance(event, h2.events.PingAckReceived):
            self.pings_acked += 1
        # WindowUpdated and RemoteSettingsChanged need nothing: _receive pumps after.

    def _finish(self, stream: H2Stream, outcome: H2Outcome) -> None:
        if stream.outcome is None:
            stream.outcome = outcome
            self.outcomes.append(outcome)

    def _receive_eof(self) -> None:
        self._ended()

    def _receive_half_close(self) -> None:
        # After the proxy's GOAWAY and FIN nothing more will come: close this side too,
        # as a client does, so that the proxy's lingering close ends.
        if not self._half_closed:
            self.close()
        self._ended()

    def _receive_reset(self) -> None:
        self.reset = True
        self._ended()

    def _ended(self) -> None:
        self.closed = True
        self._half_closed = True
        self._outbox.clear()
        for stream in self.streams.values():
            self._finish(stream, "closed")


class FakeBackend:
    """A scripted backend server listening at ``host:port`` in the network.

    Attributes (change them at any time):
        handler: computes each reply; the body is dropped where HTTP forbids
            one (HEAD, 1xx, 204, 304). A 101 to a request that asked to upgrade
            switches the connection to a tunnel (see :func:`websocket`).
        tunnel: what the backend answers each piece of tunnelled bytes with
            (default: the same bytes, an echo; ``b""`` answers nothing).
        trailers: the trailer section of every chunked reply.
        delay: seconds of virtual time before each reply.
        connect_delay: seconds before a connection attempt succeeds.
        refuse: connection attempts fail.
        die_after: reset each connection after writing this many bytes of a reply.
        hold: keep completed requests in :attr:`held` until :meth:`release`.
        reading: set to False to stop taking request bytes (a slow backend).
        raw_reply: answer every request with these exact bytes instead of the handler.
        raw_close: after a ``raw_reply``, close the connection.
        chunker: split of this backend's connections (default: the network's).
        requests: every request received (complete or not), in order.
        protocol_errors: what h11 could not parse in the proxy's requests.
    """

    def __init__(self, net: SimNet, host: str, port: int, handler: Handler) -> None:
        self.host = host
        self.port = port
        self.handler = handler
        self.delay = 0.0
        self.connect_delay = 0.0
        self.refuse = False
        self.die_after: int | None = None
        self.hold = False
        self.reading = True
        self.raw_reply: bytes | None = None
        self.raw_close = True
        self.tunnel: Callable[[bytes], bytes] = bytes
        self.trailers: HeaderPairs = ()
        self.chunker: Chunker | None = None
        self.requests: list[ReceivedRequest] = []
        self.held: list[tuple[_BackendConn, ReceivedRequest, h11.Request]] = []
        self.protocol_errors: list[str] = []
        self.connections: list[_BackendConn] = []
        self._net = net

    def release(
        self, index: int = 0, reply: Reply | None = None, *, die_after: int | None = None
    ) -> None:
        """Answer held request ``index`` now, with ``reply`` or the handler's."""
        conn, received, head = self.held.pop(index)
        if reply is None:
            reply = self.handler(head, received.body)
        conn._reply(received, head, reply, die_after if die_after is not None else self.die_after)

    def kill(self) -> None:
        """Reset every open connection at once (unread bytes are lost)."""
        for conn in self.connections:
            conn.kill()

    @property
    def open_connections(self) -> list[_BackendConn]:
        """Connections the backend still has open."""
        return [c for c in self.connections if not c.closed]


class _BackendConn:
    """One accepted connection of a :class:`FakeBackend` (an ``h11.Connection`` server)."""

    def __init__(self, backend: FakeBackend, net: SimNet, link: _Link) -> None:
        self.backend = backend
        self.conn = link.conn
        self.closed = False
        self._net = net
        self._link = link
        self._h11 = h11.Connection(h11.SERVER)
        self._current: tuple[ReceivedRequest, h11.Request] | None = None
        self._busy = False  # a reply is pending for the current request
        self._tunnel: ReceivedRequest | None = None  # switched protocols for this request

    @property
    def reading(self) -> bool:
        return self.backend.reading

    def kill(self) -> None:
        """Reset this connection now."""
        if not self.closed:
            self.closed = True
            self._net._peer_abort(self._link)

    def _receive(self, data: bytes) -> None:
        if self.closed:
            return
        if self._tunnel is not None:
            self._tunnelled(data)
            return
        self._h11.receive_data(data)
        self._drain()

    def _tunnelled(self, data: bytes) -> None:
        assert self._tunnel is not None
        self._tunnel.tunnel += data
        answer = self.backend.tunnel(data)
        if answer:
            self._write(answer)

    def _receive_eof(self) -> None:
        self.closed = True

    def _receive_half_close(self) -> None:
        pass  # the proxy never half-closes a backend connection

    def _receive_reset(self) -> None:
        self.closed = True

    def _drain(self) -> None:
        while not self.closed and not self._busy:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as error:
                self.backend.protocol_errors.append(str(error))
                self._bad_request()
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Request):
                received = ReceivedRequest(
                    method=bytes(event.method),
                    target=bytes(event.target),
                    headers=list(event.headers),
                    http_version=bytes(event.http_version),
                )
                self.backend.requests.append(received)
                self._current = (received, event)
                if self._h11.they_are_waiting_for_100_continue:
                    self._write(
                        _send(self._h11, h11.InformationalResponse(status_code=100, headers=[]))
                    )
            elif isinstance(event, h11.Data):
                assert self._current is not None
                self._current[0].body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                assert self._current is not None
                received, head = self._current
                received.complete = True
                received.trailers = list(event.headers)
                self._busy = True
                self._answer(received, head)
            elif isinstance(event, h11.ConnectionClosed):
                return

    def _answer(self, received: ReceivedRequest, head: h11.Request) -> None:
        backend = self.backend
        if backend.raw_reply is not None:
            self._write(backend.raw_reply)
            if backend.raw_close:
                self.closed = True
                self._net._peer_eof(self._link)
            return
        if backend.hold:
            backend.held.append((self, received, head))
            return
        if backend.delay > 0:
            die_after = backend.die_after

            def later() -> None:
                self._reply(received, head, backend.handler(head, received.body), die_after)

            self._net._schedule(backend.delay, later)
            return
        self._reply(received, head, backend.handler(head, received.body), backend.die_after)

    def _reply(
        self, received: ReceivedRequest, head: h11.Request, reply: Reply, die_after: int | None
    ) -> None:
        if self.closed:
            return
        status, headers, pieces = reply
        if status == 101:
            self._switch(received, headers)
            return
        out = _send(self._h11, h11.Response(status_code=status, headers=_bytes(headers)))
        bodyless = head.method == b"HEAD" or status in (204, 304)
        for piece in pieces:
            if piece and not bodyless:
                out += _send(self._h11, h11.Data(data=piece))
        chunked = any(
            _lower(name) == b"transfer-encoding" and _lower(value) == b"chunked"
            for name, value in headers
        )
        trailers = _bytes(self.backend.trailers) if chunked and not bodyless else []
        out += _send(self._h11, h11.EndOfMessage(headers=trailers))
        if die_after is not None and die_after < len(out):
            self._write(out[:die_after])
            self.closed = True
            self._net._peer_abort(self._link, after_data=True)
            return
        self._write(out)
        self._busy = False
        conn = self._h11
        if conn.our_state is h11.MUST_CLOSE or conn.their_state in (h11.MUST_CLOSE, h11.CLOSED):
            self.closed = True
            self._net._peer_eof(self._link)
        elif conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
            self._drain()

    def _switch(self, received: ReceivedRequest, headers: HeaderPairs) -> None:
        """Accept the upgrade: 101, then every byte either way is the tunnel's."""
        head = h11.InformationalResponse(status_code=101, headers=_bytes(headers))
        self._write(_send(self._h11, head))
        self._tunnel = received
        trailing, _ = self._h11.trailing_data
        if trailing:
            self._tunnelled(bytes(trailing))

    def _bad_request(self) -> None:
        if self._h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
            head = h11.Response(status_code=400, headers=[("content-length", "0")])
            self._write(_send(self._h11, head) + _send(self._h11, h11.EndOfMessage()))
        self.closed = True
        self._net._peer_eof(self._link)

    def _write(self, data: bytes) -> None:
        self._net._peer_write(self._link, data)


def _send(conn: h11.Connection, event: h11.Event) -> bytes:
    data = conn.send(event)
    return b"" if data is None else data


def _b(value: bytes | str) -> bytes:
    return value.encode("latin-1") if isinstance(value, str) else value


def _lower(name: bytes | str) -> bytes:
    return _b(name).lower()


def _bytes(headers: HeaderPairs) -> list[tuple[bytes, bytes]]:
    return [(_b(name), _b(value)) for name, value in headers]


# -- the network ----------------------------------------------------------------------------


class SimNet:
    """Drives one proxy and its peers; the only clock is :attr:`clock`.

    Args:
        config: the proxy's configuration (its limits give :attr:`buffer_bound`).
        seed: seeds the ``random.Random`` handed to the proxy.
        chunker: default split of every delivery (peers may have their own).
        read_size: the most bytes one ``DataReceived`` carries (an adapter's read size).
        start: initial monotonic time.
        proxy: use this core instead of building one from ``config`` and ``seed``.

    Attributes:
        buffer_bound: the most unwritten bytes a connection may have (not an
            HTTP/2 client's): high water, plus one read, plus one head, plus
            a little chunked framing.
        h2_data_bound: the most unwritten bytes of DATA frames an HTTP/2
            client connection may have: ``limits.buffer_high_water + 9 x (1 +
            max_concurrent_streams)``. The codec frames DATA only while fewer
            than ``buffer_high_water`` of its bytes are handed out and
            unwritten, and a frame at most fills the gap, plus its 9-byte
            header; a stream whose body is all out ends with an empty DATA
            frame (END_STREAM, 9 bytes) that the cap does not hold back.
        h2_buffer_bound: the most unwritten bytes of any kind an HTTP/2 client
            connection may have: ``2 x buffer_high_water``, above which the
            proxy reads no more of the client, plus one read, for which the
            proxy may owe as many bytes again (SETTINGS and PING ACKs,
            RST_STREAM, WINDOW_UPDATE, GOAWAY are no larger than the frames
            that call for them), plus, for each of ``max_concurrent_streams``
            streams, a response head and a trailer block of at most
            ``max_header_bytes`` each and :data:`H2_FRAME_SLACK`: HEADERS are
            not flow-controlled and the DATA cap does not hold them back.
        trace: every ``(now, "event" | "timeout" | "command", value)`` in order,
            for comparing two runs.
        violations: contract breaches seen (see the module docstring).
        access_logs: every access record the proxy emitted.
        logs: every ``Log`` command.
        shutdown_complete: the proxy said ``ShutdownComplete``.
        crashed: what the proxy raised, if it did (it propagates too; after
            that the network is in no defined state).
    """

    def __init__(
        self,
        config: ProxyConfig,
        *,
        seed: int = 0,
        chunker: Chunker = whole,
        read_size: int = 65536,
        start: float = 0.0,
        proxy: Proxy | None = None,
    ) -> None:
        if read_size < 1:
            raise ValueError("read_size must be positive")
        self.config = config
        self.clock = SimClock(start)
        self.proxy = proxy if proxy is not None else Proxy(config, rng=random.Random(seed))
        self.chunker = chunker
        self.read_size = read_size
        limits = config.limits
        self.buffer_bound = (
            limits.buffer_high_water + read_size + limits.max_header_bytes + FRAMING_SLACK
        )
        # HTTP/2 client connections (see the class docstring for the reasoning).
        http2 = config.http2
        self.h2_data_bound = limits.buffer_high_water + 9 * (1 + http2.max_concurrent_streams)
        self.h2_buffer_bound = (
            2 * limits.buffer_high_water
            + read_size
            + http2.max_concurrent_streams * (2 * limits.max_header_bytes + H2_FRAME_SLACK)
        )
        self.trace: list[tuple[float, str, object]] = []
        self.violations: list[str] = []
        self.access_logs: list[AccessRecord] = []
        self.logs: list[Log] = []
        self.shutdown_complete = False
        self.crashed: Exception | None = None
        self.clients: list[FakeClient] = []
        self.h2_clients: list[FakeH2Client] = []
        self.backends: dict[tuple[str, int], FakeBackend] = {}
        self._links: dict[ConnId, _Link] = {}
        self._active: dict[ConnId, _Link] = {}  # links on which something may still move
        self._actions: deque[Callable[[], None]] = deque()
        self._scheduled: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._peer_ports = itertools.count(50000)

    # -- building the world --

    def add_backend(self, host: str, port: int, handler: Handler | None = None) -> FakeBackend:
        """Start a backend at ``host:port`` (default handler: ``ok()``)."""
        backend = FakeBackend(self, host, port, handler if handler is not None else ok())
        self.backends[(host, port)] = backend
        return backend

    def client(
        self,
        listener: int = 0,
        *,
        peer: tuple[str, int] | None = None,
        raw: bool = False,
        chunker: Chunker | None = None,
    ) -> FakeClient:
        """Connect a new client to listener number ``listener``."""
        spec = self.config.listeners[listener]
        conn = self.proxy.allocate_id()
        link = _Link(conn, "client", chunker if chunker is not None else self.chunker)
        client = FakeClient(self, link, raw=raw)
        link.peer = client
        self._links[conn] = link
        self._active[conn] = link
        self.clients.append(client)
        if peer is None:
            peer = ("203.0.113.7", next(self._peer_ports))
        if spec.tls and "http/1.1" not in spec.alpn:
            raise SimnetError(f"listener {listener} does not offer http/1.1")
        tls = TlsInfo(alpn="http/1.1") if spec.tls else None
        self._handle(
            ConnectionAccepted(
                conn=conn, listener=listener, peer=peer, local=(spec.host, spec.port), tls=tls
            )
        )
        self.run()
        return client

    def h2_client(
        self,
        listener: int = 0,
        *,
        peer: tuple[str, int] | None = None,
        chunker: Chunker | None = None,
        settings: dict[int, int] | None = None,
    ) -> FakeH2Client:
        """Connect a new HTTP/2 client to listener number ``listener``.

        A TLS listener must offer ``h2`` (the handshake reports ALPN ``h2``); a
        cleartext one must allow ``h2c`` (the client starts with the preface,
        prior knowledge). ``settings`` go out in a second SETTINGS frame after
        the preface (``h2.settings.SettingCodes`` keys).
        """
        spec = self.config.listeners[listener]
        if spec.tls:
            if "h2" not in spec.alpn:
                raise SimnetError(f"listener {listener} does not offer h2")
            tls: TlsInfo | None = TlsInfo(alpn="h2")
        elif spec.h2c:
            tls = None
        else:
            raise SimnetError(f"listener {listener} speaks no HTTP/2 (no tls, no h2c)")
        conn = self.proxy.allocate_id()
        link = _Link(conn, "client", chunker if chunker is not None else self.chunker, http2=True)
        client = FakeH2Client(self, link, settings=settings)
        link.peer = client
        self._links[conn] = link
        self._active[conn] = link
        self.h2_clients.append(client)
        if peer is None:
            peer = ("203.0.113.7", next(self._peer_ports))
        self._handle(
            ConnectionAccepted(
                conn=conn, listener=listener, peer=peer, local=(spec.host, spec.port), tls=tls
            )
        )
        self.run()
        return client

    def connect(
        self, protocol: ClientProtocol, listener: int = 0, *, chunker: Chunker | None = None
    ) -> FakeClient | FakeH2Client:
        """A new client speaking ``protocol`` (the listener must offer it)."""
        if protocol == "http/1.1":
            return self.client(listener, chunker=chunker)
        spec = self.config.listeners[listener]
        if spec.tls != (protocol == "h2"):
            raise SimnetError(f"listener {listener} does not take {protocol} clients")
        return self.h2_client(listener, chunker=chunker)

    def shutdown(self, drain_timeout: float | None = None) -> None:
        """Ask the proxy to shut down (then :meth:`advance` to let it drain)."""
        self._handle(ShutdownRequested(drain_timeout=drain_timeout))
        self.run()

    # -- running --

    def run(self) -> None:
        """Move bytes and pending connects until nothing more can happen without time."""
        for _ in range(MAX_STEPS):
            if self._actions:
                self._actions.popleft()()
            elif not self._deliver_round():
                return
        raise SimnetError(f"the network did not settle in {MAX_STEPS} steps")

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` of virtual time pass, in order of every deadline on the way."""
        if seconds < 0:
            raise ValueError("time does not go back")
        until = self.clock.now + seconds
        self.run()
        for _ in range(MAX_STEPS):
            when = self._next_time()
            if when is None or when > until:
                break
            self.clock.advance_to(max(when, self.clock.now))
            now = self.clock.now
            while self._scheduled and self._scheduled[0][0] <= now:
                heapq.heappop(self._scheduled)[2]()
                self.run()
            deadline = self.proxy.next_deadline()
            if deadline is not None and deadline <= now:
                self.trace.append((now, "timeout", now))
                try:
                    commands = self.proxy.handle_timeout(now)
                except Exception as error:
                    self.crashed = error
                    raise
                self._apply(commands)
            self.run()
        else:
            raise SimnetError(f"more than {MAX_STEPS} wake-ups before {until}")
        self.clock.advance_to(until)
        self.run()

    def quiesce(self, horizon: float | None = None) -> None:
        """Advance until the proxy has no timer and no delayed reply is pending.

        ``horizon`` bounds the virtual time spent (default: ten times the sum of
        all configured timeouts); :class:`SimnetError` if it does not quiesce.
        """
        if horizon is None:
            t = self.config.timeouts
            horizon = 10 * sum(
                (
                    t.client_header,
                    t.client_keepalive,
                    t.client_body,
                    t.upstream_connect,
                    t.upstream_header,
                    t.upstream_body,
                    t.upstream_keepalive,
                    t.tunnel_idle,
                    t.drain,
                )
            )
        limit = self.clock.now + horizon
        self.run()
        while (when := self._next_time()) is not None:
            if when > limit:
                raise SimnetError(f"still busy at {limit}: next wake-up at {when}")
            self.advance(max(0.0, when - self.clock.now))

    # -- observing --

    def open_connections(self) -> list[ConnId]:
        """Connections the proxy has neither closed nor been told are lost."""
        return [conn for conn, link in self._links.items() if not link.gone()]

    def unwritten(self, conn: ConnId) -> int:
        """Bytes sent by the proxy to ``conn`` that the peer has not taken yet."""
        return len(self._links[conn].to_peer)

    def max_unwritten_data(self) -> int:
        """The most unwritten DATA-frame bytes seen on any HTTP/2 client connection."""
        return max(
            (link.frames.max_data for link in self._links.values() if link.frames is not None),
            default=0,
        )

    def max_unwritten(self, *, http2: bool | None = None) -> int:
        """The largest unwritten buffer seen so far on any connection (``http2``: only on
        HTTP/2 client connections when True, only on the others when False)."""
        links = [link for link in self._links.values() if http2 is None or link.http2 == http2]
        return max((link.max_unwritten for link in links), default=0)

    def problems(self) -> list[str]:
        """Violations plus anything a (non-raw) peer could not parse."""
        found = list(self.violations)
        for client in self.clients:
            if not client.raw:
                found.extend(f"client {client.conn}: {e}" for e in client.protocol_errors)
        for h2_client in self.h2_clients:
            found.extend(f"HTTP/2 client {h2_client.conn}: {e}" for e in h2_client.protocol_errors)
        for backend in self.backends.values():
            if backend.raw_reply is None:
                found.extend(
                    f"backend {backend.host}:{backend.port}: {e}" for e in backend.protocol_errors
                )
        return found

    def check(self) -> None:
        """Raise ``AssertionError`` listing :meth:`problems`, if any."""
        found = self.problems()
        if found:
            raise AssertionError("simnet saw problems:\n" + "\n".join(found))

    # -- the adapter's half --

    def _handle(self, event: Event) -> None:
        self.trace.append((self.clock.now, "event", event))
        try:
            commands = self.proxy.handle(event, self.clock.now)
        except Exception as error:
            self.crashed = error
            raise
        self._apply(commands)

    def _apply(self, commands: list[Command]) -> None:
        for command in commands:
            self.trace.append((self.clock.now, "command", command))
            if isinstance(command, Send):
                self._on_send(command)
            elif isinstance(command, Close):
                self._on_close(command)
            elif isinstance(command, ShutdownWrite):
                link = self._command_link(command)
                if link is not None:
                    link.half_close_to_peer = True
            elif isinstance(command, OpenUpstream):
                self._on_open(command)
            elif isinstance(command, PauseReading | ResumeReading):
                link = self._command_link(command)
                if link is not None:
                    link.paused = isinstance(command, PauseReading)
            elif isinstance(command, Log):
                self.logs.append(command)
            elif isinstance(command, AccessLog):
                self.access_logs.append(command.record)
            elif isinstance(command, ShutdownComplete):
                self.shutdown_complete = True

    def _command_link(
        self, command: Send | Close | ShutdownWrite | PauseReading | ResumeReading
    ) -> _Link | None:
        """The live link a command is for, recording a violation if there is none."""
        link = self._links.get(command.conn)
        if link is None:
            self.violations.append(f"{command!r}: unknown connection")
            return None
        if link.proxy_closed:
            self.violations.append(f"{_short(command)} after Close")
            return None
        if link.lost:
            if isinstance(command, Send):
                self.violations.append(f"{_short(command)} after the connection was lost")
            return None
        return link

    def _on_send(self, command: Send) -> None:
        link = self._command_link(command)
        if link is None or not command.data:
            if link is not None:
                self.violations.append(f"{_short(command)}: empty Send")
            return
        if not link.connected:
            self.violations.append(f"{_short(command)} before UpstreamConnected")
        if link.abandoned:
            return  # the peer reset; the proxy will hear of it
        link.to_peer += command.data
        frames = link.frames
        if frames is not None:
            frames.sent(command.data)
            if frames.data > self.h2_data_bound:
                self.violations.append(
                    f"HTTP/2 client connection {link.conn}: {frames.data} unwritten DATA bytes "
                    f"> bound {self.h2_data_bound}"
                )
        size = len(link.to_peer)
        if size > link.max_unwritten:
            link.max_unwritten = size
            bound = self.h2_buffer_bound if link.http2 else self.buffer_bound
            if size > bound:
                self.violations.append(
                    f"{link.kind} connection {link.conn}: {size} unwritten bytes > bound {bound}"
                )

    def _on_close(self, command: Close) -> None:
        link = self._links.get(command.conn)
        if link is None:
            self.violations.append(f"{command!r}: unknown connection")
            return
        if link.proxy_closed:
            self.violations.append(f"{command!r}: closed twice")
            return
        link.proxy_closed = True
        link.to_proxy.clear()
        peer = link.peer
        if peer is None or link.abandoned:
            return
        if command.abort:
            link.drop_unwritten()
            link.abandoned = True
            peer._receive_reset()
        else:
            link.eof_to_peer = True

    def _on_open(self, command: OpenUpstream) -> None:
        if command.conn in self._links:
            self.violations.append(f"{command!r}: connection id already in use")
            return
        backend = self.backends.get((command.host, command.port))
        chunker = backend.chunker if backend is not None and backend.chunker else self.chunker
        link = _Link(command.conn, "upstream", chunker)
        self._links[command.conn] = link
        self._active[command.conn] = link
        if backend is None or backend.refuse:

            def fail() -> None:
                if not link.gone():
                    link.lost = True
                    self._handle(UpstreamFailed(conn=link.conn, reason="connection refused"))

            self._actions.append(fail)
            return

        def connect() -> None:
            if link.gone():
                return  # the proxy gave up first (connect timeout)
            conn = _BackendConn(backend, self, link)
            backend.connections.append(conn)
            link.peer = conn
            link.connected = True
            tls = TlsInfo(alpn="http/1.1") if command.tls is not None else None
            self._handle(UpstreamConnected(conn=link.conn, tls=tls))

        if backend.connect_delay > 0:
            self._schedule(backend.connect_delay, connect)
        else:
            self._actions.append(connect)

    # -- the peers' half --

    def _peer_write(self, link: _Link, data: bytes) -> None:
        if data and not link.gone() and not link.peer_eof and not link.peer_reset:
            link.to_proxy += data

    def _peer_eof(self, link: _Link) -> None:
        link.peer_eof = True

    def _peer_abort(self, link: _Link, *, after_data: bool = False) -> None:
        if not after_data:
            link.to_proxy.clear()
        link.peer_reset = True
        link.abandoned = True
        link.drop_unwritten()

    def _schedule(self, delay: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._scheduled, (self.clock.now + delay, next(self._seq), action))

    def _next_time(self) -> float | None:
        times = [self._scheduled[0][0]] if self._scheduled else []
        deadline = self.proxy.next_deadline()
        if deadline is not None:
            times.append(deadline)
        return min(times, default=None)

    # -- moving bytes --

    def _deliver_round(self) -> bool:
        moved = False
        for conn, link in list(self._active.items()):
            moved = self._to_peer(link) or moved
            moved = self._to_proxy(link) or moved
            if link.gone() and (link.abandoned or link.peer is None):
                del self._active[conn]  # nothing can move on it any more
        return moved

    def _to_peer(self, link: _Link) -> bool:
        peer = link.peer
        if peer is None or link.abandoned:
            return False
        moved = False
        if link.to_peer and peer.reading:
            moved = True
            for piece in self._pieces(link, bytes(link.to_peer)):
                if _blocked(link, peer):  # a callback may have changed either
                    break
                link.took(len(piece))
                peer._receive(piece)
                if not link.gone():
                    self._handle(Written(conn=link.conn, nbytes=len(piece)))
        if link.eof_to_peer and not link.to_peer and not link.abandoned:
            link.eof_to_peer = False
            link.abandoned = True
            peer._receive_eof()
            moved = True
        elif link.half_close_to_peer and not link.to_peer and not link.abandoned:
            link.half_close_to_peer = False  # the peer reads EOF; the proxy still reads it
            peer._receive_half_close()
            moved = True
        return moved

    def _to_proxy(self, link: _Link) -> bool:
        if link.gone():
            return False
        moved = False
        if link.to_proxy and not link.paused:
            moved = True
            for piece in self._pieces(link, bytes(link.to_proxy)):
                for start in range(0, len(piece), self.read_size):
                    if _paused_or_gone(link):  # the last event may have changed it
                        return True
                    read = piece[start : start + self.read_size]
                    del link.to_proxy[: len(read)]
                    self._handle(DataReceived(conn=link.conn, data=read))
        if link.gone() or link.to_proxy:
            return moved
        if link.peer_reset:
            link.lost = True
            self._handle(ConnectionLost(conn=link.conn, reason="connection reset by peer"))
            return True
        if link.peer_eof and not link.eof_reported and not link.paused:
            link.eof_reported = True
            self._handle(EofReceived(conn=link.conn))
            return True
        return moved

    def _pieces(self, link: _Link, data: bytes) -> Sequence[bytes]:
        pieces = list(link.chunker(data))
        if not pieces or any(not p for p in pieces) or b"".join(pieces) != data:
            raise SimnetError(f"chunker {link.chunker!r} did not split {len(data)} bytes exactly")
        return pieces


def _blocked(link: _Link, peer: _Peer) -> bool:
    return link.abandoned or not peer.reading


def _paused_or_gone(link: _Link) -> bool:
    return link.paused or link.gone()


def _short(command: Send | Close | ShutdownWrite | PauseReading | ResumeReading) -> str:
    if isinstance(command, Send):
        return f"Send(conn={command.conn}, {len(command.data)} bytes)"
    return repr(command)


def simple_config(
    servers: Sequence[tuple[str, int]] = (("10.0.0.1", 80),),
    *,
    limits: Limits | None = None,
    timeouts: Timeouts | None = None,
    headers: HeaderPolicy | None = None,
    tls: bool = False,
    protocols: Sequence[str] = (),
    http2: Http2Settings | None = None,
) -> ProxyConfig:
    """One listener (``127.0.0.1:8080``) forwarding to one upstream ``app``.

    The listener is plain unless ``tls`` (the core only learns that it is TLS:
    the certificate paths are never read); ``protocols`` is its
    :attr:`~sansproxy.config.Listener.protocols` (``("h2c", "http/1.1")`` lets
    cleartext clients speak HTTP/2 with prior knowledge).
    """
    listener = Listener(
        host="127.0.0.1",
        port=8080,
        upstream="app",
        certificate="cert.pem" if tls else None,
        private_key="key.pem" if tls else None,
        protocols=tuple(protocols),
    )
    return ProxyConfig(
        listeners=(listener,),
        upstreams={
            "app": Upstream(name="app", servers=tuple(Server(host=h, port=p) for h, p in servers))
        },
        limits=limits if limits is not None else Limits(),
        timeouts=timeouts if timeouts is not None else Timeouts(),
        headers=headers if headers is not None else HeaderPolicy(),
        http2=http2 if http2 is not None else Http2Settings(),
        logging=LogSettings(),
    )


def protocol_config(
    protocol: ClientProtocol,
    servers: Sequence[tuple[str, int]] = (("10.0.0.1", 80),),
    *,
    limits: Limits | None = None,
    timeouts: Timeouts | None = None,
    headers: HeaderPolicy | None = None,
    http2: Http2Settings | None = None,
) -> ProxyConfig:
    """:func:`simple_config` with a listener for ``protocol`` clients.

    HTTP/1.1 clients get the plain listener; ``h2`` a TLS one (which offers
    ``h2`` and ``http/1.1``); ``h2c`` a cleartext one with ``h2c`` and
    ``http/1.1``, so that the core tells them apart by the preface.
    """
    return simple_config(
        servers,
        limits=limits,
        timeouts=timeouts,
        headers=headers,
        tls=protocol == "h2",
        protocols=("h2c", "http/1.1") if protocol == "h2c" else (),
        http2=http2,
    )
