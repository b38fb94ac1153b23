"""Codecs: the only place a wire protocol library is touched.

Each codec wraps one library (``http1`` wraps h11, ``http2`` wraps h2) behind the
same small vocabulary of normalised, stream-scoped events, so nothing outside this
package ever sees a library type. Header names are lower-case bytes, values are
stripped bytes.

A **server codec** faces a client: it parses requests and writes responses. A
**client codec** faces a backend: it writes requests and parses responses. Both are
fed with :meth:`receive` (``b""`` is the peer's EOF) and pulled with
:meth:`next_event`; what they write comes back as bytes from each ``send_*`` call,
plus :meth:`data_to_send` for what receiving made them want to say (HTTP/2 answers
PING and SETTINGS, reopens windows and flushes data its flow control held back).

Grammar of the events of one stream::

    InformationalHead* (RequestHead | ResponseHead) Body* EndOfMessage
    StreamReset may end a stream at any point (HTTP/2 only).

and of the connection: ``WindowOpened`` and ``GoAway`` between any two events,
``PeerClosed`` or ``CodecError`` as the last one. HTTP/1.1 numbers its exchanges
1, 2, 3, ... on a connection, one at a time; HTTP/2 uses its stream ids. A
``CodecError`` with a ``stream`` ends that stream only; without one it ends the
connection.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "Body",
    "ClientCodec",
    "CodecError",
    "CodecEvent",
    "EndOfMessage",
    "GoAway",
    "Headers",
    "InformationalHead",
    "PeerClosed",
    "RequestHead",
    "ResponseHead",
    "ServerCodec",
    "StreamReset",
    "WindowOpened",
]

Headers = list[tuple[bytes, bytes]]


@dataclass(slots=True)
class RequestHead:
    """A request head, validated by the codec and mapped to HTTP/1.1 semantics.

    ``target`` is the request target as the client sent it (for the access log);
    ``path`` is the origin-form path and query the proxy routes and forwards (or
    ``*``). ``authority`` is the host the request is for: HTTP/2's ``:authority``,
    an HTTP/1.1 absolute-form target's authority, else the ``Host`` field (empty
    when there is none). ``headers`` hold it as a ``host`` field whenever the
    request named one, as RFC 9112 §3.2.2 and RFC 9113 §8.3.1 require.
    """

    stream: int
    method: bytes
    target: bytes
    path: bytes
    headers: Headers
    http_version: bytes
    """``1.0``, ``1.1`` or ``2.0``."""
    authority: bytes = b""
    scheme: bytes = b""
    """HTTP/2's ``:scheme``; empty for HTTP/1."""
    protocol: bytes = b""
    """The ``:protocol`` of an extended CONNECT (RFC 8441), else empty."""
    body_length: int | None = None
    """The request's Content-Length, when it has one."""
    has_body: bool = False
    """Whether body bytes may follow (a length above 0, chunked, or no END_STREAM)."""


@dataclass(slots=True)
class ResponseHead:
    """A final (status >= 200) response head."""

    stream: int
    status: int
    reason: bytes
    headers: Headers
    http_version: bytes


@dataclass(slots=True)
class InformationalHead:
    """A 1xx interim response head."""

    stream: int
    status: int
    reason: bytes
    headers: Headers


@dataclass(slots=True)
class Body:
    """A piece of a message body, de-framed.

    ``credit`` is what the piece cost the peer's flow-control window (HTTP/2 counts
    padding too); give it back with the codec's ``acknowledge`` once the piece has
    gone on. HTTP/1 has no windows: its credit is 0.
    """

    stream: int
    data: bytes
    credit: int = 0


@dataclass(slots=True)
class EndOfMessage:
    """The message ended cleanly; ``trailers`` only where the framing carries them."""

    stream: int
    trailers: Headers


@dataclass(slots=True)
class StreamReset:
    """The peer cancelled one stream (HTTP/2 RST_STREAM) with ``code``."""

    stream: int
    code: int


@dataclass(slots=True)
class WindowOpened:
    """The peer gave flow-control credit: held-back data may have gone out."""


@dataclass(slots=True)
class GoAway:
    """The peer is closing the connection: no stream above ``last_stream`` will be served."""

    last_stream: int
    code: int


@dataclass(slots=True)
class PeerClosed:
    """The peer closed its side between messages (or ended a close-delimited body)."""


@dataclass(slots=True)
class CodecError:
    """The peer broke the protocol.

    With ``stream`` set, only that stream is bad: it is answered with
    ``status_hint`` (or reset) and its siblings carry on. Without it, the connection
    is over; an HTTP/2 codec has already queued its GOAWAY.
    """

    status_hint: int
    reason: str
    stream: int | None = None


CodecEvent = (
    RequestHead
    | ResponseHead
    | InformationalHead
    | Body
    | EndOfMessage
    | StreamReset
    | WindowOpened
    | GoAway
    | PeerClosed
    | CodecError
)


class ServerCodec(Protocol):
    """What every codec facing a client offers (``http1.ServerCodec``, ``http2.ServerCodec``).

    Every ``send_*`` returns the bytes to write now. The HTTP/2 codec returns none:
    it queues, and hands out everything a turn queued (as far as the peer's windows
    allow) through :meth:`data_to_send`.
    """

    def receive(self, data: bytes) -> None:
        """Feed bytes read from the client; ``b""`` is its EOF."""

    def next_event(self) -> CodecEvent | None:
        """The next event, or None when more bytes are needed (or a response is due)."""

    def data_to_send(self) -> bytes:
        """Bytes the codec wants written that no ``send_*`` call returned."""

    def send_informational(
        self, stream: int, status: int, headers: Headers, reason: bytes = b""
    ) -> bytes:
        """A 1xx response head (nothing, where the client's protocol has no 1xx)."""

    def send_response(
        self,
        stream: int,
        status: int,
        headers: Headers,
        *,
        reason: bytes = b"",
        head_request: bool = False,
    ) -> bytes:
        """A final response head; the codec frames the body that follows."""

    def send_body(self, stream: int, data: bytes) -> bytes:
        """A piece of the response body."""

    def send_end(self, stream: int, trailers: Headers) -> bytes:
        """The end of the response, with trailers where the framing carries them."""


class ClientCodec(Protocol):
    """What every codec facing a backend offers (``http1.ClientCodec`` today)."""

    def receive(self, data: bytes) -> None:
        """Feed bytes read from the backend; ``b""`` is its EOF."""

    def next_event(self) -> CodecEvent | None:
        """The next response event, or None when more bytes are needed."""

    def send_request(
        self,
        method: bytes,
        target: bytes,
        headers: Headers,
        *,
        body_length: int | None,
        has_body: bool,
    ) -> bytes:
        """A request head; the codec chooses the framing from ``body_length`` and ``has_body``."""

    def send_body(self, data: bytes) -> bytes:
        """A piece of the request body."""

    def send_end(self, trailers: Headers) -> bytes:
        """The end of the request."""

    def start_next_cycle(self) -> bool:
        """Get ready for the next request; False when the connection cannot carry one."""
