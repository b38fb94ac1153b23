"""HTTP/1.1 codecs (RFC 9112): h11 reads, this module writes.

:class:`ServerCodec` faces a client (it parses requests and writes
responses); :class:`ClientCodec` faces a backend (it writes requests and
parses responses). This is the only module that imports h11.

Reading is h11's job: it is strict about what it accepts, which is the first
defence against request smuggling (h11 >= 0.16 is strict about chunk syntax,
GHSA-vqfr-h8mv-ghfj). Raw bytes never cross the proxy: every message is
re-serialised from parsed fields.

Writing is done here, not by ``h11.Connection.send``. Every field written is
one h11 has just parsed and validated, or one the core built from such parts
and its validated configuration, so h11's generic send path (which validates
every field again and runs its state machine for every body piece) would
spend a large share of a proxied exchange re-checking known-good bytes. The
framing of each outgoing message is decided here explicitly, by the rules
h11 applies (RFC 9112 §6): no body for a HEAD answer, 1xx, 204 and 304;
``Content-Length`` when the message has one; otherwise chunked to an
HTTP/1.1 peer and close-delimited to an HTTP/1.0 one. The bytes are the ones
h11 would write, down to its ``Transfer-Encoding`` and ``Connection: close``
spellings, with one difference: only a request gets its ``Host`` moved first.

h11's state machine still decides what the peer may send next, and how a
response is framed depends on the request it answers, so h11 has to know
what was sent:

- each request/response cycle gets a fresh ``h11.Connection``, fed the
  bytes the last one had not parsed, so h11 never has to hear how a
  message of ours ended; whether the connection may carry another cycle
  (both messages complete, neither ending the connection) is decided here;
- the server codec never tells h11 of a response: it reads the request
  alone;
- the client codec tells h11 the facts of each request that its state
  machine reads (whether the method was HEAD or CONNECT, whether the request
  asks to close or to upgrade) as a small stand-in request.

h11 exceptions never leave this module: a peer's mistake becomes a
:class:`CodecError` event with the status to answer; our own mistakes
(sending in a wrong state, a body longer than its ``Content-Length``) are
bugs and propagate.
"""

from __future__ import annotations

from http import HTTPStatus

import h11

from sansproxy._codec import (
    Body,
    CodecError,
    CodecEvent,
    EndOfMessage,
    Headers,
    InformationalHead,
    PeerClosed,
    RequestHead,
    ResponseHead,
)

__all__ = ["ClientCodec", "ServerCodec"]

_PHRASES = {status.value: status.phrase.encode("ascii") for status in HTTPStatus}
"""Standard reason phrases, for backends that send an empty one (RFC 9112 §4 allows it)."""

_FIELD_LINE = b"%s: %s\r\n".__mod__
"""One field line from a ``(name, value)`` pair."""

_CHUNKED = (b"Transfer-Encoding", b"chunked")
_CLOSE = (b"Connection", b"close")
_THEIR_MESSAGE_DONE = (h11.DONE, h11.MUST_CLOSE, h11.CLOSED)


def _fields(fields: Headers) -> bytes:
    """The field lines of a header or trailer section, in order, without the blank line."""
    return b"".join(map(_FIELD_LINE, fields))


def _fields_of(
    event: h11.Request | h11.Response | h11.InformationalResponse | h11.EndOfMessage,
) -> Headers:
    """The parsed fields of ``event`` as ``(lower-case name, value)`` pairs."""
    return [(name.lower(), value) for name, value in event.headers.raw_items()]


def _tokens(value: bytes) -> list[bytes]:
    """The lower-cased, non-empty elements of a list-valued field (RFC 9110 §5.6.1)."""
    return [token for part in value.lower().split(b",") if (token := part.strip())]


def _stand_in(method: bytes, close: bool, upgrade: bool) -> h11.Request:
    """A bodiless request that tells h11 what it needs to read the response.

    h11 frames a response by its request's method (HEAD: no body; CONNECT: a
    2xx switches protocols), and takes its keep-alive and upgrade decisions
    from the request's ``Connection`` and ``Upgrade`` fields.
    """
    fields = [(b"host", b"stand-in")]
    if close:
        fields.append((b"connection", b"close"))
    if upgrade:
        fields.append((b"upgrade", b"stand-in"))
    return h11.Request(method=method, target=b"/", headers=fields)


_STAND_INS = {
    (method, close, upgrade): _stand_in(method, close, upgrade)
    for method in (b"GET", b"HEAD", b"CONNECT")
    for close in (False, True)
    for upgrade in (False, True)
}
"""Every stand-in request there can be (h11 events are immutable, so they are shared)."""


class _Codec:
    """What both roles share: feeding bytes, pulling events, framing outgoing bodies.

    An outgoing body is chunked (``_chunked``), or counted down from its
    ``Content-Length`` (``_remaining``; 0 for a message that has no body), or
    delimited by the close of the connection (``_remaining`` is None).
    """

    __slots__ = (
        "_chunked",
        "_conn",
        "_ended",
        "_errored",
        "_received_end",
        "_remaining",
        "_starved",
    )

    def __init__(self, conn: h11.Connection) -> None:
        self._conn = conn
        self._errored = False
        self._starved = False
        """h11 needs more bytes, and none (nor EOF) came since it said so."""
        self._chunked = False
        self._remaining: int | None = 0
        self._ended = False
        """Our message of this cycle is complete."""
        self._received_end = False
        """The peer's message of this cycle is complete."""

    def receive(self, data: bytes) -> None:
        """Feed bytes read from the peer; ``b""`` means the peer sent EOF."""
        if self._errored or self._conn.their_state is h11.ERROR:
            return
        self._starved = False
        try:
            self._conn.receive_data(data)
        except RuntimeError:
            # Data after EOF: h11 refuses it; the peer has nothing more to say.
            return

    def _next_parser(self, conn: h11.Connection) -> None:
        """Start a new cycle on ``conn``, fed what the last parser had not parsed."""
        leftover, closed = self._conn.trailing_data
        self._conn = conn
        self._ended = self._received_end = False
        self._starved = not (leftover or closed)
        if leftover:
            self.receive(leftover)
        if closed:
            self.receive(b"")

    def _pull(self) -> CodecEvent | None:
        if self._errored or self._starved:
            return None
        try:
            event = self._conn.next_event()
        except h11.RemoteProtocolError as exc:
            self._errored = True
            return CodecError(status_hint=exc.error_status_hint, reason=str(exc))
        if event is h11.NEED_DATA:
            self._starved = True
            return None
        if event is h11.PAUSED:
            return None
        assert not isinstance(event, type)
        if type(event) is h11.Data:
            return Body(data=bytes(event.data))
        if type(event) is h11.EndOfMessage:
            self._received_end = True
            return EndOfMessage(trailers=_fields_of(event))
        if type(event) is h11.ConnectionClosed:
            return PeerClosed()
        return self._convert_head(event)

    def _convert_head(self, event: h11.Event) -> CodecEvent:
        raise NotImplementedError  # pragma: no cover

    def send_body(self, data: bytes) -> bytes:
        """Frame a body piece for the wire."""
        if self._chunked:
            return b"%x\r\n%s\r\n" % (len(data), data) if data else b""
        if self._remaining is not None:
            self._remaining -= len(data)
            if self._remaining < 0:
                raise RuntimeError("body longer than the framing of its message allows")
        return data

    def send_end(self, trailers: Headers) -> bytes:
        """End the message; trailers are dropped when the framing cannot carry them."""
        self._ended = True
        if self._chunked:
            self._chunked = False
            return b"0\r\n" + _fields(trailers) + b"\r\n"
        if self._remaining:
            raise RuntimeError(f"message ended {self._remaining} bytes short of its length")
        return b""

    @property
    def sends_chunked(self) -> bool:
        """Whether our outgoing message uses chunked framing (and so can carry trailers)."""
        return self._chunked

    @property
    def their_message_complete(self) -> bool:
        return self._conn.their_state in _THEIR_MESSAGE_DONE

    @property
    def trailing_data(self) -> bytes:
        """Bytes that arrived after the message that switched protocols."""
        return self._conn.trailing_data[0]


class ServerCodec(_Codec):
    """Faces a client: parses requests, writes responses.

    Two leniencies h11 lacks, both from RFC 9112: empty lines before a request
    line are ignored (§2.2), and bytes after a request that ends the connection
    are never parsed (§9.6), so they cannot spoil the response to it.
    """

    __slots__ = (
        "_at_start",
        "_client_version",
        "_keep_alive",
        "_max_header_bytes",
        "_method",
        "_response_started",
    )

    def __init__(self, *, max_header_bytes: int) -> None:
        super().__init__(h11.Connection(h11.SERVER, max_incomplete_event_size=max_header_bytes))
        self._max_header_bytes = max_header_bytes
        self._at_start = True
        self._client_version: bytes | None = None
        """The HTTP version of the client's last request; it outlives the cycle."""
        self._method: bytes | None = None
        """This cycle's request method, once its head is parsed."""
        self._keep_alive = True
        """Neither the request nor the response of this cycle ends the connection."""
        self._response_started = False

    def receive(self, data: bytes) -> None:
        """Feed bytes read from the client; ``b""`` means the client sent EOF."""
        if data and self._at_start:
            data = data.lstrip(b"\r\n")
            if not data:
                return
            self._at_start = False
        super().receive(data)

    def next_event(self) -> CodecEvent | None:
        """The next request event, or None when more bytes are needed or a response is due."""
        if self._conn.their_state in (h11.DONE, h11.MUST_CLOSE):
            return None
        return self._pull()

    def start_next_cycle(self) -> bool:
        """Reset for the next request on a kept-alive connection; False if it must close.

        Only a cycle in which both messages ended cleanly, neither of them
        ending the connection, can be followed by another.
        """
        if not (self._ended and self._received_end and self._keep_alive):
            return False
        self._at_start = True
        self._method = None
        self._response_started = False
        self._next_parser(
            h11.Connection(h11.SERVER, max_incomplete_event_size=self._max_header_bytes)
        )
        return True

    @property
    def their_message_complete(self) -> bool:
        """The request has been read to its end (or the client has closed).

        h11 holds a request that asked to upgrade in MIGHT_SWITCH_PROTOCOL,
        since it never hears of the response that refused the switch.
        """
        return self._received_end or self._conn.their_state in _THEIR_MESSAGE_DONE

    def _convert_head(self, event: h11.Event) -> CodecEvent:
        assert type(event) is h11.Request
        headers = _fields_of(event)
        version = bytes(event.http_version)
        self._client_version = version
        self._method = method = bytes(event.method)
        # h11's rule (RFC 9112 §9.3): an HTTP/1.0 client, or a Connection: close, ends it.
        if version < b"1.1":
            self._keep_alive = False
        for name, value in headers:
            if name == b"connection" and b"close" in _tokens(value):
                self._keep_alive = False
        return RequestHead(
            method=method, target=bytes(event.target), headers=headers, http_version=version
        )

    @property
    def client_http_version(self) -> bytes:
        return self._client_version or b"1.0"

    @property
    def can_respond(self) -> bool:
        """No response has started, so an error response can still be written."""
        return not self._response_started

    @property
    def waiting_for_100_continue(self) -> bool:
        return self._conn.they_are_waiting_for_100_continue

    def send_informational(self, status: int, headers: Headers, reason: bytes = b"") -> bytes:
        """Write a 1xx response head."""
        reason = reason or _PHRASES.get(status, b"")
        return b"HTTP/1.1 %d %s\r\n%s\r\n" % (status, reason, _fields(headers))

    def send_response(
        self, status: int, headers: Headers, *, reason: bytes = b"", head_request: bool = False
    ) -> bytes:
        """Write a response head, framed as the codec decides.

        ``headers`` carry no ``Transfer-Encoding``: without a ``Content-Length``
        the body is chunked for an HTTP/1.1 client and close-delimited for an
        HTTP/1.0 one. An answer to HEAD gets the framing fields an answer to
        GET would have (RFC 9110 §9.3.2) and no body. ``Connection: close``
        is added when the request or the framing ends the connection.
        ``head_request`` must agree with the parsed request; it is kept for
        callers that answer before a request was parsed.
        """
        method = self._method
        no_body = head_request or method == b"HEAD"
        length: bytes | None = None
        response_closes = False
        for name, value in headers:
            if name == b"content-length":
                length = value
            elif name == b"connection":
                response_closes = response_closes or b"close" in _tokens(value)
            elif name == b"transfer-encoding":
                raise ValueError("the codec frames responses: pass no Transfer-Encoding")
        must_close = not self._keep_alive
        if status in (204, 304) or (method == b"CONNECT" and 200 <= status < 300):
            self._remaining = 0
        elif length is not None:
            self._remaining = 0 if no_body else int(length)
        elif self.client_http_version >= b"1.1":
            headers = [*headers, _CHUNKED]
            self._chunked = not no_body
            self._remaining = 0 if no_body else None
        else:
            self._remaining = 0 if no_body else None
            must_close = must_close or not no_body
        if must_close:
            headers = _with_close(headers)
            response_closes = True
        if response_closes:
            self._keep_alive = False
        self._response_started = True
        reason = reason or _PHRASES.get(status, b"")
        return b"HTTP/1.1 %d %s\r\n%s\r\n" % (status, reason, _fields(headers))

    def send_error(
        self, status: int, reason: bytes, body: bytes, headers: Headers, *, head_request: bool
    ) -> bytes:
        """A complete error response that ends the connection.

        An answer to HEAD carries the same headers as for GET but no body
        (RFC 9110 §9.3.2).
        """
        head = self.send_response(
            status,
            [
                *headers,
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", b"%d" % len(body)),
                (b"connection", b"close"),
            ],
            reason=reason,
            head_request=head_request,
        )
        data = self.send_body(body) if not head_request else b""
        return head + data + self.send_end([])


def _with_close(headers: Headers) -> Headers:
    """``headers`` with their ``Connection`` options plus ``close``, as h11 writes them.

    ``keep-alive`` goes (it would contradict ``close``); the options end the
    section, one ``Connection`` line each, in sorted order.
    """
    options = {b"close"}
    kept: Headers = []
    for field in headers:
        if field[0] == b"connection":
            options.update(_tokens(field[1]))
        else:
            kept.append(field)
    options.discard(b"keep-alive")
    if options == {b"close"}:
        kept.append(_CLOSE)
    else:
        kept.extend((b"Connection", option) for option in sorted(options))
    return kept


class ClientCodec(_Codec):
    """Faces a backend: writes requests, parses responses."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(h11.Connection(h11.CLIENT))

    def next_event(self) -> CodecEvent | None:
        """The next response event, or None when more bytes are needed."""
        return self._pull()

    def start_next_cycle(self) -> bool:
        """Reset for the next request on a kept-alive connection; False if it must close.

        Only a cycle in which both messages ended cleanly, neither of them
        ending the connection, can be followed by another: h11 reports the
        response DONE (not MUST_CLOSE) only then.
        """
        if not self._ended or self._conn.their_state is not h11.DONE:
            return False
        self._next_parser(h11.Connection(h11.CLIENT))
        return True

    def _convert_head(self, event: h11.Event) -> CodecEvent:
        if type(event) is h11.InformationalResponse:
            return InformationalHead(
                status=event.status_code, reason=bytes(event.reason), headers=_fields_of(event)
            )
        assert type(event) is h11.Response
        return ResponseHead(
            status=event.status_code,
            reason=bytes(event.reason),
            headers=_fields_of(event),
            http_version=bytes(event.http_version),
        )

    def send_request(self, method: bytes, target: bytes, headers: Headers) -> bytes:
        """Write a request head; the caller sets the framing headers it wants.

        The body is chunked when ``headers`` say ``Transfer-Encoding: chunked``,
        else as long as their ``Content-Length``, else empty.
        """
        self._chunked = False
        self._remaining = 0
        close = upgrade = False
        for name, value in headers:
            if name == b"content-length":
                self._remaining = int(value)
            elif name == b"transfer-encoding":
                self._chunked = True
            elif name == b"connection":
                close = close or b"close" in _tokens(value)
            elif name == b"upgrade":
                upgrade = upgrade or bool(_tokens(value))
        if self._chunked:
            self._remaining = None
        self._conn.send(
            _STAND_INS[method if method in (b"HEAD", b"CONNECT") else b"GET", close, upgrade]
        )
        if headers and headers[0][0] != b"host":
            # RFC 9110 §7.2: a client SHOULD send Host first.
            hosts = [field for field in headers if field[0] == b"host"]
            if hosts:
                headers = hosts + [field for field in headers if field[0] != b"host"]
        return b"%s %s HTTP/1.1\r\n%s\r\n" % (method, target, _fields(headers))
