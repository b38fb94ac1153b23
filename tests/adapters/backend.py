"""Test peers for the real-socket suite: a backend HTTP/1.1 server and a raw client.

:class:`Backend` is a threaded HTTP/1.1 server (one thread per connection,
h11 for the protocol, wsproto for ``/ws``) that the tests start on
``127.0.0.1:0``, optionally over TLS. It is deliberately independent of
sansproxy: it judges what the proxy forwards, so it shares no code with it.

Endpoints (every response carries ``Server: secret-backend/1.0`` and
``X-Powered-By: secret`` so tests can check that the proxy hides them, plus
``X-Backend-Id`` and ``X-Backend-Conn``, a per-TCP-connection number, so tests
can see upstream connection reuse):

``/``                      small text naming the backend id
``/echo``                  echoes the request body (``?digest=1``: streams it
                           into sha256 and answers ``{"bytes", "sha256"}``;
                           ``pause=S``: waits S seconds before reading it)
``/headers``               the request as JSON: method, target, version,
                           header list, body size and digest, request trailers
``/bytes?n=N&chunked=0|1`` N bytes of :func:`pattern` (``tag=T`` records
                           progress in :attr:`Backend.progress`)
``/trailers``              a chunked body followed by trailer fields
``/slow?delay=S``          answers after S seconds
``/die?after=N``           promises more than it sends, sends N bytes, resets
                           (``chunked=1``: a chunked body, never finished)
``/status?code=N``         answers status N (``cl=L`` adds Content-Length L to
                           a 304)
``/raw?case=NAME``         sends a response from :data:`RAW_RESPONSES` (broken)
                           or :data:`VALID_RAW_RESPONSES` (odd but valid)
``/early-hints``           a 103 informational response, then 200
``/stall?after=N``         like ``/die`` but then hangs until the backend stops
``/ws``                    WebSocket echo (text and binary)
``/text?n=N``              N bytes of JSON text (:func:`json_text`), with
                           Content-Length (``chunked=1``: chunked)
``/events?count=K``        a ``text/event-stream`` of K events; after each one it
                           waits (10 s at most) for :attr:`Backend.next_event`,
                           else records ``progress["events-unseen"]`` and ends
``/cached/NAME``           a cacheable answer, ``NAME response N`` where N counts
                           the requests to this path (the first is 1), so a test
                           sees which response a cache served;
                           ``max_age=S`` and ``swr=S`` (``stale-while-revalidate``)
                           go in Cache-Control, ``later_max_age=S`` replaces
                           max-age from the second response on, ``cc=TEXT`` adds
                           directives; ``etag=X`` sends ETag ``"X"`` (and
                           ``later_etag=Y`` ETag ``"Y"`` from the second on),
                           ``last_modified=EPOCH`` a Last-Modified; a matching
                           If-None-Match (or, without one, an If-Modified-Since
                           at or after Last-Modified) is answered 304;
                           ``delay=S`` waits S seconds before answering request
                           ``delay_from`` (default 1) and later ones.
                           :meth:`Backend.count` says how many arrived.

Any endpoint takes ``hop=1`` to add hop-by-hop response headers
(``Connection: x-backend-hop``, ``X-Backend-Hop``, ``Keep-Alive``) that must
not reach the client, and ``close=1`` to close the connection right after the
response without announcing it (a keep-alive connection going stale).

:class:`RawClient` speaks HTTP/1.1 over a plain socket, for what httpx and
curl will not do: pipelining, malformed requests, not reading.
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import itertools
import json
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import h11
import wsproto
import wsproto.events as ws_events

__all__ = [
    "PATTERN_PERIOD",
    "RAW_RESPONSES",
    "VALID_RAW_RESPONSES",
    "Backend",
    "RawClient",
    "RawResponse",
    "ReceivedRequest",
    "assert_clean_error_body",
    "json_text",
    "pattern",
    "pattern_pieces",
    "pattern_sha256",
]

PATTERN_PERIOD = 65521
"""Length of the repeating block of :func:`pattern`; prime, so it never lines
up with power-of-two buffer sizes and a lost or repeated buffer shows."""

_BLOCK = bytes((i * 7 + (i >> 8) * 13 + (i >> 16)) & 0xFF for i in range(PATTERN_PERIOD)) * 2

_PIECE = 64 * 1024


def pattern(offset: int, length: int) -> bytes:
    """Bytes ``offset`` .. ``offset + length`` of the deterministic test stream."""
    out = bytearray()
    while length > 0:
        start = offset % PATTERN_PERIOD
        take = min(length, PATTERN_PERIOD)
        out += _BLOCK[start : start + take]
        offset += take
        length -= take
    return bytes(out)


def json_text(length: int) -> bytes:
    """``length`` bytes of JSON-like text: compressible, as a real API's answers are."""
    item = b'{"id": %d, "name": "item number %d", "tags": ["alpha", "beta"]}, '
    text = b"".join(item % (i, i * 7) for i in range(length // 40 + 1))
    return text[:length]


def pattern_pieces(total: int, piece: int = _PIECE) -> Iterator[bytes]:
    """The first ``total`` bytes of the test stream in pieces of ``piece`` bytes."""
    offset = 0
    while offset < total:
        size = min(piece, total - offset)
        yield pattern(offset, size)
        offset += size


def pattern_sha256(total: int) -> str:
    """Hex sha256 of the first ``total`` bytes of the test stream."""
    digest = hashlib.sha256()
    for piece in pattern_pieces(total, 1024 * 1024):
        digest.update(piece)
    return digest.hexdigest()


BACKEND_HEADERS = [("Server", "secret-backend/1.0"), ("X-Powered-By", "secret")]
RAW_RESPONSES = {
    "garbage": b"NOT HTTP AT ALL\r\n\r\n",
    "two-lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
    "length-and-chunked": (
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n"
    ),
    "bad-chunk": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n",
    "bad-status": b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
    "bad-header": b"HTTP/1.1 200 OK\r\nBad Header: x\r\nContent-Length: 0\r\n\r\n",
    "nothing": b"",
}
"""Broken responses for ``/raw?case=NAME``: a proxy must not pass any of them on as valid."""

VALID_RAW_RESPONSES = {
    "close-delimited": b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nhello world",
    "http10": b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nold school",
    "two-cookies": (
        b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1; Path=/\r\nSet-Cookie: b=2, c=3\r\n"
        b"Content-Length: 2\r\n\r\nok"
    ),
}
"""Unusual but valid responses for ``/raw?case=NAME`` that must reach the client intact."""

HOP_HEADERS = [
    ("Connection", "x-backend-hop"),
    ("X-Backend-Hop", "must-not-cross"),
    ("Keep-Alive", "timeout=99"),
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ReceivedRequest:
    """What the backend saw of one request head."""

    conn_id: int
    method: str
    target: str
    http_version: str
    headers: tuple[tuple[str, str], ...]

    def header(self, name: str) -> list[str]:
        """Every value of header ``name`` (case-insensitive), in order."""
        name = name.lower()
        return [value for key, value in self.headers if key == name]


class _Abort(Exception):
    """Stop serving this connection at once."""


class Backend:
    """A threaded HTTP/1.1 test server on ``127.0.0.1:0``.

    Args:
        backend_id: Name returned by ``/`` and in ``X-Backend-Id``.
        tls_context: Server-side SSL context; ``None`` serves plain TCP.
    """

    def __init__(self, backend_id: str = "a", *, tls_context: ssl.SSLContext | None = None):
        self.backend_id = backend_id
        self.tls_context = tls_context
        self.requests: list[ReceivedRequest] = []
        self.progress: dict[str, int] = {}
        self.connections_accepted = 0
        self.connections_closed = 0
        self.sent_100_continue = 0
        self.request_seen = threading.Event()
        """Set whenever a ``/slow`` request head arrives (tests clear it)."""
        self.release = threading.Event()
        """Lets ``/stall`` responses finish; set by :meth:`stop`."""
        self.next_event = threading.Semaphore(0)
        """Released by a test once it has seen an ``/events`` event: the next may go."""
        self._lock = threading.Lock()
        self._conn_ids = itertools.count(1)
        self._listener: socket.socket | None = None
        self._live: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []
        self._stopping = False

    # -- lifecycle ---------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._listener is not None
        return int(self._listener.getsockname()[1])

    @property
    def url(self) -> str:
        """The address to put in ``upstreams.*.servers``."""
        scheme = "https" if self.tls_context else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def start(self) -> Backend:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        listener.settimeout(0.2)
        self._listener = listener
        thread = threading.Thread(target=self._accept_loop, name="backend-accept", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stopping = True
        self.release.set()
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            live = list(self._live)
        for sock in live:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> Backend:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def requests_to(self, path: str) -> list[ReceivedRequest]:
        """The received requests whose path (without query) is ``path``."""
        with self._lock:
            return [r for r in self.requests if urlsplit(r.target).path == path]

    def count(self, path: str) -> int:
        """How many request heads for ``path`` (without query) have arrived so far."""
        return len(self.requests_to(path))

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping:
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections_accepted += 1
                conn_id = next(self._conn_ids)
            thread = threading.Thread(
                target=self._serve, args=(sock, conn_id), name=f"backend-{conn_id}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    # -- one connection ----------------------------------------------------

    def _serve(self, raw: socket.socket, conn_id: int) -> None:
        raw.settimeout(60)
        sock: socket.socket = raw
        with self._lock:
            self._live.add(raw)
        try:
            if self.tls_context is not None:
                # wrap_socket takes over the file descriptor: track the new object instead.
                with self._lock:
                    self._live.discard(raw)
                    sock = self.tls_context.wrap_socket(
                        raw, server_side=True, do_handshake_on_connect=False
                    )
                    self._live.add(sock)
                assert isinstance(sock, ssl.SSLSocket)
                sock.do_handshake()
            _Session(self, sock, conn_id).run()
        except (OSError, _Abort, h11.ProtocolError, ssl.SSLError):
            pass
        finally:
            with self._lock:
                self._live.discard(raw)
                self._live.discard(sock)
                self.connections_closed += 1
            with contextlib.suppress(OSError):
                sock.close()


class _Session:
    """Serves the requests of one backend connection, in order."""

    def __init__(self, backend: Backend, sock: socket.socket, conn_id: int):
        self.backend = backend
        self.sock = sock
        self.conn_id = conn_id
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=64 * 1024)

    def run(self) -> None:
        while True:
            event = self._next_event()
            if isinstance(event, h11.ConnectionClosed):
                return
            if not isinstance(event, h11.Request):
                raise _Abort
            self._dispatch(event)
            if self.query.get("close") == "1":
                return  # close silently, as a backend whose keep-alive timer fired would
            if self.h11.our_state is h11.MUST_CLOSE or self.h11.their_state is h11.MUST_CLOSE:
                return
            if self.h11.our_state is h11.SWITCHED_PROTOCOL:
                return
            self.h11.start_next_cycle()

    # -- h11 plumbing ------------------------------------------------------

    def _next_event(self) -> h11.Event | type[h11.PAUSED]:
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            if self.h11.they_are_waiting_for_100_continue:
                self._send(h11.InformationalResponse(status_code=100, headers=[]))
                self.backend.sent_100_continue += 1
            data = self.sock.recv(_PIECE)
            self.h11.receive_data(data)

    def _send(self, event: h11.Event) -> None:
        data = self.h11.send(event)
        if data:
            self.sock.sendall(data)

    def _body(self) -> Iterator[bytes]:
        """The request body in pieces; leaves the trailers in ``self.trailers``."""
        self.trailers: list[tuple[bytes, bytes]] = []
        while True:
            event = self._next_event()
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self.trailers = list(event.headers)
                return
            else:
                raise _Abort

    def _respond(
        self,
        status: int,
        body: bytes = b"",
        *,
        headers: list[tuple[str, str]] | None = None,
        length: bool = True,
    ) -> None:
        all_headers = [*self._common_headers(), *(headers or [])]
        if length:
            all_headers.append(("Content-Length", str(len(body))))
        self._send(h11.Response(status_code=status, headers=all_headers))
        if body:
            self._send(h11.Data(data=body))
        self._send(h11.EndOfMessage())

    def _common_headers(self) -> list[tuple[str, str]]:
        headers = [
            *BACKEND_HEADERS,
            ("X-Backend-Id", self.backend.backend_id),
            ("X-Backend-Conn", str(self.conn_id)),
        ]
        if self.query.get("hop") == "1":
            headers += HOP_HEADERS
        return headers

    # -- endpoints ---------------------------------------------------------

    def _dispatch(self, request: h11.Request) -> None:
        target = request.target.decode("latin-1")
        parts = urlsplit(target)
        self.query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        received = ReceivedRequest(
            conn_id=self.conn_id,
            method=request.method.decode("ascii"),
            target=target,
            http_version=request.http_version.decode("ascii"),
            headers=tuple(
                (name.decode("latin-1"), value.decode("latin-1")) for name, value in request.headers
            ),
        )
        with self.backend._lock:
            self.backend.requests.append(received)
        handler: Callable[[ReceivedRequest], None] = {
            "/": self._index,
            "/echo": self._echo,
            "/headers": self._headers,
            "/bytes": self._bytes,
            "/trailers": self._trailers,
            "/slow": self._slow,
            "/die": self._die,
            "/status": self._status,
            "/raw": self._raw,
            "/early-hints": self._early_hints,
            "/stall": self._stall,
            "/ws": self._websocket,
            "/text": self._text,
            "/events": self._events,
        }.get(parts.path, self._not_found)
        if parts.path.startswith("/cached/"):
            handler = self._cached
        handler(received)

    def _drain(self) -> int:
        return sum(len(piece) for piece in self._body())

    def _index(self, request: ReceivedRequest) -> None:
        self._drain()
        body = b"" if request.method == "HEAD" else f"backend {self.backend.backend_id}\n".encode()
        self._send(
            h11.Response(
                status_code=200,
                headers=[
                    *self._common_headers(),
                    ("Content-Type", "text/plain"),
                    ("Content-Length", str(len(f"backend {self.backend.backend_id}\n"))),
                ],
            )
        )
        if body:
            self._send(h11.Data(data=body))
        self._send(h11.EndOfMessage())

    def _not_found(self, request: ReceivedRequest) -> None:
        self._drain()
        self._respond(404, b"not found\n")

    def _echo(self, request: ReceivedRequest) -> None:
        if "pause" in self.query:
            self.backend.request_seen.set()
            time.sleep(float(self.query["pause"]))
        if self.query.get("digest") == "1":
            digest = hashlib.sha256()
            count = 0
            for piece in self._body():
                digest.update(piece)
                count += len(piece)
            body = json.dumps({"bytes": count, "sha256": digest.hexdigest()}).encode()
            self._respond(200, body, headers=[("Content-Type", "application/json")])
            return
        data = bytearray()
        for piece in self._body():
            data += piece
            if len(data) > 16 * 1024 * 1024:
                raise _Abort
        content_type = request.header("content-type") or ["application/octet-stream"]
        self._respond(200, bytes(data), headers=[("Content-Type", content_type[0])])

    def _headers(self, request: ReceivedRequest) -> None:
        digest = hashlib.sha256()
        count = 0
        for piece in self._body():
            digest.update(piece)
            count += len(piece)
        document = {
            "method": request.method,
            "target": request.target,
            "http_version": request.http_version,
            "headers": [list(pair) for pair in request.headers],
            "body_bytes": count,
            "body_sha256": digest.hexdigest(),
            "trailers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in self.trailers],
            "conn": self.conn_id,
        }
        body = json.dumps(document).encode()
        self._respond(200, body, headers=[("Content-Type", "application/json")])

    def _bytes(self, request: ReceivedRequest) -> None:
        self._drain()
        total = int(self.query.get("n", "0"))
        chunked = self.query.get("chunked") == "1"
        tag = self.query.get("tag")
        headers = [*self._common_headers(), ("Content-Type", "application/octet-stream")]
        headers.append(
            ("Transfer-Encoding", "chunked") if chunked else ("Content-Length", str(total))
        )
        self._send(h11.Response(status_code=200, headers=headers))
        if request.method != "HEAD":
            for piece in pattern_pieces(total):
                self._send(h11.Data(data=piece))
                if tag is not None:
                    with self.backend._lock:
                        self.backend.progress[tag] = self.backend.progress.get(tag, 0) + len(piece)
        self._send(h11.EndOfMessage())

    def _text(self, request: ReceivedRequest) -> None:
        self._drain()
        body = json_text(int(self.query.get("n", "1000")))
        framing = (
            ("Transfer-Encoding", "chunked")
            if self.query.get("chunked") == "1"
            else ("Content-Length", str(len(body)))
        )
        headers = [*self._common_headers(), ("Content-Type", "application/json"), framing]
        self._send(h11.Response(status_code=200, headers=headers))
        if request.method != "HEAD":
            for start in range(0, len(body), 16384):
                self._send(h11.Data(data=body[start : start + 16384]))
        self._send(h11.EndOfMessage())

    def _events(self, request: ReceivedRequest) -> None:
        self._drain()
        headers = [
            *self._common_headers(),
            ("Content-Type", "text/event-stream"),
            ("Cache-Control", "no-cache"),
            ("Transfer-Encoding", "chunked"),
        ]
        self._send(h11.Response(status_code=200, headers=headers))
        for number in range(int(self.query.get("count", "3"))):
            self._send(h11.Data(data=b"id: %d\ndata: event %d\n\n" % (number, number)))
            if not self.backend.next_event.acquire(timeout=10):
                with self.backend._lock:  # the client never saw it (in time)
                    self.backend.progress["events-unseen"] = number + 1
                break
        self._send(h11.EndOfMessage())

    def _trailers(self, request: ReceivedRequest) -> None:
        self._drain()
        body = pattern(0, 100_000)
        headers = [
            *self._common_headers(),
            ("Content-Type", "application/octet-stream"),
            ("Transfer-Encoding", "chunked"),
            ("Trailer", "X-Body-Sha256, X-Trailer-Note"),
        ]
        self._send(h11.Response(status_code=200, headers=headers))
        for start in range(0, len(body), 30_000):
            self._send(h11.Data(data=body[start : start + 30_000]))
        self._send(
            h11.EndOfMessage(
                headers=[
                    ("X-Body-Sha256", hashlib.sha256(body).hexdigest()),
                    ("X-Trailer-Note", "end"),
                ]
            )
        )

    def _slow(self, request: ReceivedRequest) -> None:
        self._drain()
        self.backend.request_seen.set()
        time.sleep(float(self.query.get("delay", "1")))
        self._respond(200, b"slow done\n")

    def _die(self, request: ReceivedRequest) -> None:
        self._drain()
        after = int(self.query.get("after", "0"))
        if self.query.get("chunked") == "1":
            headers = [*self._common_headers(), ("Transfer-Encoding", "chunked")]
            self._send(h11.Response(status_code=200, headers=headers))
            if after:
                self._send(h11.Data(data=pattern(0, after)))
        else:
            headers = [*self._common_headers(), ("Content-Length", str(after + 100_000))]
            self._send(h11.Response(status_code=200, headers=headers))
            if after:
                self.sock.sendall(pattern(0, after))
        time.sleep(0.1)
        self._reset()

    def _reset(self) -> None:
        # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()
        raise _Abort

    def _stall(self, request: ReceivedRequest) -> None:
        """Send the head and ``after`` body bytes, then nothing until :attr:`Backend.release`."""
        self._drain()
        after = int(self.query.get("after", "0"))
        headers = [*self._common_headers(), ("Content-Length", str(after + 100_000))]
        self._send(h11.Response(status_code=200, headers=headers))
        if after:
            self.sock.sendall(pattern(0, after))
        self.backend.release.wait(30)
        self.sock.close()
        raise _Abort

    def _raw(self, request: ReceivedRequest) -> None:
        """Send one of :data:`RAW_RESPONSES` or :data:`VALID_RAW_RESPONSES` verbatim, then close."""
        self._drain()
        case = self.query["case"]
        self.sock.sendall(
            RAW_RESPONSES[case] if case in RAW_RESPONSES else VALID_RAW_RESPONSES[case]
        )
        time.sleep(0.2)
        self.sock.close()
        raise _Abort

    def _early_hints(self, request: ReceivedRequest) -> None:
        self._drain()
        self._send(
            h11.InformationalResponse(
                status_code=103, headers=[("Link", "</style.css>; rel=preload")]
            )
        )
        self._respond(200, b"after hints\n")

    def _status(self, request: ReceivedRequest) -> None:
        self._drain()
        code = int(self.query.get("code", "200"))
        if code in (204, 304) or request.method == "HEAD":
            headers = [("ETag", '"v1"')] if code == 304 else []
            if code == 304 and "cl" in self.query:
                headers.append(("Content-Length", self.query["cl"]))
            self._respond(code, headers=headers, length=False)
        else:
            self._respond(code, f"status {code}\n".encode())

    def _cached(self, request: ReceivedRequest) -> None:
        """``/cached/NAME``: numbered, cacheable answers with validators (see the module docs)."""
        self._drain()
        path = urlsplit(request.target).path
        number = self.backend.count(path)  # this request included
        query = self.query
        max_age = query.get("max_age")
        if number > 1 and "later_max_age" in query:
            max_age = query["later_max_age"]
        directives = [] if max_age is None else [f"max-age={max_age}"]
        if "swr" in query:
            directives.append(f"stale-while-revalidate={query['swr']}")
        if "cc" in query:
            directives.append(query["cc"])
        headers = [("Cache-Control", ", ".join(directives))] if directives else []
        etag = query.get("etag")
        if number > 1 and "later_etag" in query:
            etag = query["later_etag"]
        if etag is not None:
            headers.append(("ETag", f'"{etag}"'))
        modified = query.get("last_modified")
        if modified is not None:
            headers.append(("Last-Modified", email.utils.formatdate(int(modified), usegmt=True)))
        if "delay" in query and number >= int(query.get("delay_from", "1")):
            time.sleep(float(query["delay"]))
        if _not_modified(request, etag, None if modified is None else int(modified)):
            self._respond(304, headers=headers, length=False)
            return
        body = f"{path.removeprefix('/cached/')} response {number}\n".encode()
        headers.append(("Content-Type", "text/plain"))
        if request.method == "HEAD":
            headers.append(("Content-Length", str(len(body))))
            self._respond(200, headers=headers, length=False)
        else:
            self._respond(200, body, headers=headers)

    def _websocket(self, request: ReceivedRequest) -> None:
        event = self._next_event()
        if not isinstance(event, h11.EndOfMessage):
            raise _Abort
        if self.h11.their_state is not h11.MIGHT_SWITCH_PROTOCOL:
            self._respond(400, b"not a websocket upgrade\n")
            return
        # Give wsproto the request head again: it does its own handshake.
        head = f"{request.method} {request.target} HTTP/{request.http_version}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in request.headers) + "\r\n"
        leftover, _ = self.h11.trailing_data
        ws = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
        ws.receive_data(head.encode("latin-1") + leftover)
        pending: list[bytes | str] = []
        while True:
            for ws_event in ws.events():
                if isinstance(ws_event, ws_events.Request):
                    headers = [(n.encode(), v.encode()) for n, v in self._common_headers()]
                    self.sock.sendall(ws.send(ws_events.AcceptConnection(extra_headers=headers)))
                elif isinstance(ws_event, ws_events.TextMessage | ws_events.BytesMessage):
                    pending.append(ws_event.data)
                    if ws_event.message_finished:
                        message = (
                            "".join(p for p in pending if isinstance(p, str))
                            if isinstance(ws_event, ws_events.TextMessage)
                            else b"".join(p for p in pending if isinstance(p, bytes))
                        )
                        pending.clear()
                        self.sock.sendall(ws.send(ws_events.Message(data=message)))
                elif isinstance(ws_event, ws_events.Ping):
                    self.sock.sendall(ws.send(ws_event.response()))
                elif isinstance(ws_event, ws_events.CloseConnection):
                    self.sock.sendall(ws.send(ws_event.response()))
                    raise _Abort
            data = self.sock.recv(_PIECE)
            ws.receive_data(data or None)
            if not data:
                raise _Abort


def _not_modified(request: ReceivedRequest, etag: str | None, modified: int | None) -> bool:
    """Whether the request's condition holds for ``/cached`` (RFC 9110 §13.1.2, §13.1.3).

    If-None-Match compares weakly and, when present, decides alone; If-Modified-Since
    counts only without it.
    """
    match = request.header("if-none-match")
    if match:
        if etag is None:
            return False
        tags = [tag.strip().removeprefix("W/") for value in match for tag in value.split(",")]
        return "*" in tags or f'"{etag}"' in tags
    since = request.header("if-modified-since")
    if since and modified is not None:
        try:
            when = email.utils.parsedate_to_datetime(since[0]).timestamp()
        except (TypeError, ValueError):
            return False
        return modified <= when
    return False


# -- raw client --------------------------------------------------------------


@dataclass(slots=True, kw_only=True)
class RawResponse:
    """One response as a raw client read it."""

    status: int
    reason: str
    http_version: str
    headers: list[tuple[str, str]]
    body: bytes
    trailers: list[tuple[str, str]] = field(default_factory=list)
    informational: list[int] = field(default_factory=list)
    body_bytes: int = 0
    """Body size, also when the body went to a sink instead of :attr:`body`."""

    def header(self, name: str) -> list[str]:
        name = name.lower()
        return [value for key, value in self.headers if key == name]


class RawClient:
    """HTTP/1.1 over a plain (or TLS) socket, one byte string at a time.

    Responses are parsed with a fresh h11 client per response, fed what is
    left over from the previous one, so pipelined responses parse in order.

    Args:
        port: Proxy port on 127.0.0.1.
        timeout: Socket timeout for every operation, in seconds.
        rcvbuf: ``SO_RCVBUF`` set before connecting (a small one makes a slow reader).
    """

    def __init__(
        self,
        port: int,
        *,
        host: str = "127.0.0.1",
        timeout: float = 10.0,
        rcvbuf: int | None = None,
    ):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.host = f"{host}:{port}"
        self.leftover = b""
        self.eof = False

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request_bytes(
        self,
        method: str = "GET",
        target: str = "/",
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> bytes:
        """A serialised request; adds Host and, for a body, Content-Length."""
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self.host}"]
        given = {name.lower() for name, _ in headers or []}
        lines += [f"{name}: {value}" for name, value in headers or []]
        if body and "content-length" not in given and "transfer-encoding" not in given:
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    def request(
        self,
        method: str = "GET",
        target: str = "/",
        headers: list[tuple[str, str]] | None = None,
        body: bytes = b"",
    ) -> RawResponse:
        self.send(self.request_bytes(method, target, headers, body))
        return self.read_response(method)

    def read_response(
        self, method: str = "GET", *, sink: Callable[[bytes], None] | None = None
    ) -> RawResponse:
        """Read one complete response to a ``method`` request.

        Raises:
            h11.RemoteProtocolError: the response is malformed or ends early
                (a close before the end of the body included).
            ConnectionError: the connection was reset.
        """
        parser = h11.Connection(h11.CLIENT, max_incomplete_event_size=1024 * 1024)
        # h11 needs to know the request (HEAD has no response body); it is not sent.
        parser.send(h11.Request(method=method, target="/", headers=[("Host", "x")]))
        parser.send(h11.EndOfMessage())
        if self.leftover:
            parser.receive_data(self.leftover)
        if self.eof:
            parser.receive_data(b"")
        informational: list[int] = []
        response: RawResponse | None = None
        body = bytearray()
        while True:
            event = parser.next_event()
            if event is h11.NEED_DATA:
                data = self.sock.recv(_PIECE)
                if not data:
                    self.eof = True
                parser.receive_data(data)
                continue
            if isinstance(event, h11.InformationalResponse):
                informational.append(event.status_code)
            elif isinstance(event, h11.Response):
                response = RawResponse(
                    status=event.status_code,
                    reason=event.reason.decode("latin-1"),
                    http_version=event.http_version.decode("ascii"),
                    headers=[(n.decode("latin-1"), v.decode("latin-1")) for n, v in event.headers],
                    body=b"",
                    informational=informational,
                )
            elif isinstance(event, h11.Data):
                assert response is not None
                response.body_bytes += len(event.data)
                if sink is not None:
                    sink(bytes(event.data))
                else:
                    body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert response is not None
                response.body = bytes(body)
                response.trailers = [
                    (n.decode("latin-1"), v.decode("latin-1")) for n, v in event.headers
                ]
                self.leftover = parser.trailing_data[0]
                return response
            elif isinstance(event, h11.ConnectionClosed):
                raise h11.RemoteProtocolError("connection closed before a response")
            else:
                raise AssertionError(f"unexpected h11 event {event!r}")

    def read_to_eof(self, limit: int = 1024 * 1024) -> bytes:
        """Everything until the peer closes (a reset counts as a close)."""
        data = bytearray(self.leftover)
        self.leftover = b""
        while len(data) < limit:
            try:
                piece = self.sock.recv(_PIECE)
            except ConnectionResetError:
                break
            if not piece:
                break
            data += piece
        self.eof = True
        return bytes(data)

    def is_closed_by_peer(self, wait: float = 5.0) -> bool:
        """Whether the peer closes (EOF or reset) within ``wait`` seconds, sending nothing."""
        self.sock.settimeout(wait)
        try:
            data = self.sock.recv(1)
        except TimeoutError:
            return False
        except ConnectionResetError:
            return True
        return data == b""


# -- checks --------------------------------------------------------------------

_LEAKS = (
    "traceback",
    "exception",
    "error:",
    "errno",
    "refused",
    "reset by peer",
    "ssl",
    "certificate",
    "verify failed",
    "timed out",
    "timeouterror",
    "oserror",
    "h11",
    "trio",
    "sansproxy/",
    ".py",
    "secret",
)


def assert_clean_error_body(body: bytes, *backend_ports: int) -> None:
    """An error made by the proxy names no backend address and no exception text."""
    text = body.decode("latin-1").lower()
    for port in backend_ports:
        assert f":{port}" not in text, f"error body names the backend port {port}: {body!r}"
        assert str(port) not in text, f"error body names the backend port {port}: {body!r}"
    for leak in _LEAKS:
        assert leak not in text, f"error body contains {leak!r}: {body!r}"
