"""An in-memory network that drives one :class:`sansproxy.Proxy` on a virtual clock.

Fake clients and fake backends are real ``h11.Connection`` objects (client role
and server role), so whole exchanges are checked at the event level, "the
client got ``Response(200)`` with body ``b"hi"``", instead of by exact bytes.
This is h11's ``ConnectionPair`` raised to N peers (STYLE.md section 3.6).

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

Contract breaches the network sees (a ``Send`` to a closed connection, a
command for an unknown one, an unwritten buffer beyond
:attr:`SimNet.buffer_bound`) are collected in :attr:`SimNet.violations`;
:meth:`SimNet.check` raises if there are any, or if a peer could not parse
what the proxy sent it.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

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
)
from sansproxy.config import (
    HeaderPolicy,
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
    "Chunker",
    "FakeBackend",
    "FakeClient",
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
    "simple_config",
    "whole",
]

HeaderPairs = Sequence[tuple[bytes | str, bytes | str]]
Reply = tuple[int, HeaderPairs, Iterable[bytes]]
"""What a backend answers: status, headers, body pieces (each becomes one ``h11.Data``)."""
Handler = Callable[[h11.Request, bytes], Reply]
"""Computes a backend's reply from the request head and the whole request body."""
Chunker = Callable[[bytes], Sequence[bytes]]
"""Splits queued bytes into non-empty pieces (one read or one write each), in order."""

FRAMING_SLACK = 64
"""Allowance in :attr:`SimNet.buffer_bound` for chunked-framing bytes around one read."""

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


# -- what the peers received -------------------------------------------------------------


@dataclass(slots=True)
class ReceivedRequest:
    """A request as a fake backend parsed it (header names lower case)."""

    method: bytes
    target: bytes
    headers: list[tuple[bytes, bytes]]
    http_version: bytes
    body: bytes = b""
    trailers: list[tuple[bytes, bytes]] = field(default_factory=list)
    complete: bool = False

    def header(self, name: bytes) -> bytes | None:
        """The first value of header ``name`` (lower case), or None."""
        return next((v for n, v in self.headers if n == name), None)


@dataclass(slots=True)
class ReceivedResponse:
    """A response as a fake client parsed it (header names lower case).

    ``complete`` is False when the connection ended before the body did.
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


class _Link:
    """One connection as the network sees it: the proxy at one end, a peer at the other."""

    def __init__(self, conn: ConnId, kind: Literal["client", "upstream"], chunker: Chunker) -> None:
        self.conn = conn
        self.kind = kind
        self.chunker = chunker
        self.peer: FakeClient | _BackendConn | None = None
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
        self.max_unwritten = 0

    def gone(self) -> bool:
        """The proxy must hear nothing more about this connection."""
        return self.proxy_closed or self.lost


class FakeClient:
    """An HTTP/1.1 client (an ``h11.Connection`` in the client role) talking to the proxy.

    It sends one request at a time (:meth:`request`); each request ends in one
    entry of :attr:`outcomes`: ``"response"`` for a complete final response,
    ``"closed"`` when the connection ended first. A ``raw`` client sends
    arbitrary bytes (:meth:`send_raw`) and parses what comes back as responses
    to ``GET`` requests; it keeps no outcomes.

    Attributes:
        responses: every response received, in order.
        outcomes: one entry per finished request.
        reading: set to False to stop taking bytes (a slow client).
        closed: the connection is over (closed or reset by the proxy, or aborted).
        reset: the proxy aborted the connection.
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
        if not self._broken:
            try:
                self._h11.receive_data(b"")
                self._drain()
            except h11.RemoteProtocolError:
                pass  # the connection ended mid-response: the response stays incomplete
        self._ended()

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

    def _next_cycle(self) -> None:
        conn = self._h11
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
            if self.raw:
                self._prime()
        elif h11.MUST_CLOSE in (conn.our_state, conn.their_state) and not self._half_closed:
            self.close()  # "Connection: close": a real client closes its socket


class FakeBackend:
    """A scripted backend server listening at ``host:port`` in the network.

    Attributes (change them at any time):
        handler: computes each reply; the body is dropped where HTTP forbids
            one (HEAD, 1xx, 204, 304).
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
        self._h11.receive_data(data)
        self._drain()

    def _receive_eof(self) -> None:
        self.closed = True

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
        out = _send(self._h11, h11.Response(status_code=status, headers=_bytes(headers)))
        bodyless = head.method == b"HEAD" or status in (204, 304)
        for piece in pieces:
            if piece and not bodyless:
                out += _send(self._h11, h11.Data(data=piece))
        out += _send(self._h11, h11.EndOfMessage())
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
        self.trace: list[tuple[float, str, object]] = []
        self.violations: list[str] = []
        self.access_logs: list[AccessRecord] = []
        self.logs: list[Log] = []
        self.shutdown_complete = False
        self.crashed: Exception | None = None
        self.clients: list[FakeClient] = []
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
        tls = TlsInfo(alpn="http/1.1") if spec.tls else None
        self._handle(
            ConnectionAccepted(
                conn=conn, listener=listener, peer=peer, local=(spec.host, spec.port), tls=tls
            )
        )
        self.run()
        return client

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

    def max_unwritten(self) -> int:
        """The largest unwritten buffer seen on any connection so far."""
        return max((link.max_unwritten for link in self._links.values()), default=0)

    def problems(self) -> list[str]:
        """Violations plus anything a (non-raw) peer could not parse."""
        found = list(self.violations)
        for client in self.clients:
            if not client.raw:
                found.extend(f"client {client.conn}: {e}" for e in client.protocol_errors)
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

    def _command_link(self, command: Send | Close | PauseReading | ResumeReading) -> _Link | None:
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
        size = len(link.to_peer)
        if size > link.max_unwritten:
            link.max_unwritten = size
            if size > self.buffer_bound:
                self.violations.append(
                    f"{link.kind} connection {link.conn}: {size} unwritten bytes "
                    f"> bound {self.buffer_bound}"
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
            link.to_peer.clear()
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
        link.to_peer.clear()

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
                del link.to_peer[: len(piece)]
                peer._receive(piece)
                if not link.gone():
                    self._handle(Written(conn=link.conn, nbytes=len(piece)))
        if link.eof_to_peer and not link.to_peer and not link.abandoned:
            link.eof_to_peer = False
            link.abandoned = True
            peer._receive_eof()
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


def _blocked(link: _Link, peer: FakeClient | _BackendConn) -> bool:
    return link.abandoned or not peer.reading


def _paused_or_gone(link: _Link) -> bool:
    return link.paused or link.gone()


def _short(command: Send | Close | PauseReading | ResumeReading) -> str:
    if isinstance(command, Send):
        return f"Send(conn={command.conn}, {len(command.data)} bytes)"
    return repr(command)


def simple_config(
    servers: Sequence[tuple[str, int]] = (("10.0.0.1", 80),),
    *,
    limits: Limits | None = None,
    timeouts: Timeouts | None = None,
    headers: HeaderPolicy | None = None,
) -> ProxyConfig:
    """One plain listener (``127.0.0.1:8080``) forwarding to one upstream ``app``."""
    return ProxyConfig(
        listeners=(Listener(host="127.0.0.1", port=8080, upstream="app"),),
        upstreams={
            "app": Upstream(name="app", servers=tuple(Server(host=h, port=p) for h, p in servers))
        },
        limits=limits if limits is not None else Limits(),
        timeouts=timeouts if timeouts is not None else Timeouts(),
        headers=headers if headers is not None else HeaderPolicy(),
        logging=LogSettings(),
    )
