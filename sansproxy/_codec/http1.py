"""HTTP/1.1 codecs (RFC 9112): h11 reads, this module writes.

:class:`ServerCodec` faces a client (it parses requests and writes
responses); :class:`ClientCodec` faces a backend (it writes requests and
parses responses). This is the only module that imports h11.

Reading is h11's job: it is strict about what it accepts, which is the first
defence against request smuggling (h11 >= 0.16 is strict about chunk syntax,
GHSA-vqfr-h8mv-ghfj). For requests the server codec is stricter still: the
scanners of :mod:`._h1scan` check the raw bytes of each head and of chunked
framing before h11 parses them, and the parsed head's ``Host`` and target
authority are checked here (see :class:`ServerCodec`). Raw bytes never cross
the proxy: every message is re-serialised from parsed fields.

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

import re

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
from sansproxy._codec._authority import valid_authority
from sansproxy._codec._h1response import ResponseHeads
from sansproxy._codec._h1scan import ChunkScanner, HeadScanner, Refusal
from sansproxy._codec._h1write import (
    CHUNKED,
    PHRASES,
    field_lines,
    not_tls_response,
    refusal,
    split_absolute,
    tokens,
    with_close,
)

__all__ = ["ClientCodec", "ServerCodec", "not_tls_response", "refusal"]

_THEIR_MESSAGE_DONE = (h11.DONE, h11.MUST_CLOSE, h11.CLOSED)
_ABSOLUTE_FORM = re.compile(rb"[A-Za-z][A-Za-z0-9+\-.]*://([^/?]*)")
"""The scheme and authority of an absolute-form target (RFC 3986 §3; a ``#`` is no end)."""


def _fields_of(
    event: h11.Request | h11.Response | h11.InformationalResponse | h11.EndOfMessage,
) -> Headers:
    """The parsed fields of ``event`` as ``(lower-case name, value)`` pairs."""
    return [(name.lower(), value) for name, value in event.headers.raw_items()]


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


_HEAD_LIMIT = 16 * 1024
"""The most bytes a backend's response head may take: h11's own default limit."""

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
        "stream",
    )

    def __init__(self, conn: h11.Connection) -> None:
        self._conn = conn
        self.stream = 1
        """The number of this cycle's exchange on the connection: 1, 2, 3, ..."""
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
        self.stream += 1
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
            return Body(stream=self.stream, data=bytes(event.data))
        if type(event) is h11.EndOfMessage:
            self._received_end = True
            return EndOfMessage(stream=self.stream, trailers=_fields_of(event))
        if type(event) is h11.ConnectionClosed:
            return PeerClosed()
        return self._convert_head(event)

    def _convert_head(self, event: h11.Event) -> CodecEvent:
        raise NotImplementedError  # pragma: no cover

    def _frame_body(self, data: bytes) -> bytes:
        """Frame a body piece for the wire."""
        if self._chunked:
            return b"%x\r\n%s\r\n" % (len(data), data) if data else b""
        if self._remaining is not None:
            self._remaining -= len(data)
            if self._remaining < 0:
                raise RuntimeError("body longer than the framing of its message allows")
        return data

    def _frame_end(self, trailers: Headers) -> bytes:
        """End the message; trailers are dropped when the framing cannot carry them."""
        self._ended = True
        if self._chunked:
            self._chunked = False
            return b"0\r\n" + field_lines(trailers) + b"\r\n"
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

    What h11 accepts, the codec narrows to RFC 9112 and RFC 9110 before a
    request is handed on (each refusal is a :class:`CodecError`):

    - the head is checked byte by byte first (:class:`~._h1scan.HeadScanner`):
      empty lines before the request line are ignored (§2.2) but a bare CR is
      not; the request line must be ``method SP target SP HTTP/1.0|1.1``
      (another ``HTTP/d.d`` version: 505); no bare CR and no control
      character but HTAB in the head; at most ``max_header_bytes`` bytes;
    - h11 parses the head only when it is complete and checked, and at once,
      so that the framing lines of a chunked body
      (:class:`~._h1scan.ChunkScanner`) are checked as they arrive too;
    - the parsed head needs a valid ``Host`` (RFC 9110 §7.2; h11 already
      refuses two of them, and none in HTTP/1.1) and a valid authority in an
      absolute-form target.

    Bytes after a request that ends the connection are never parsed (§9.6),
    so they cannot spoil the response to it.
    """

    __slots__ = (
        "_chunks",
        "_client_version",
        "_head",
        "_keep_alive",
        "_max_header_bytes",
        "_method",
        "_pending",
        "_response_started",
    )

    def __init__(self, *, max_header_bytes: int) -> None:
        super().__init__(h11.Connection(h11.SERVER, max_incomplete_event_size=max_header_bytes))
        self._max_header_bytes = max_header_bytes
        self._head: HeadScanner | None = HeadScanner(max_header_bytes)
        """Scans this cycle's request head; None once it is complete."""
        self._chunks: ChunkScanner | None = None
        """Scans this cycle's chunked request body, if it has one."""
        self._pending: CodecEvent | None = None
        """The request head (or the refusal) found by :meth:`receive`, not yet pulled."""
        self._client_version: bytes | None = None
        """The HTTP version of the client's last request; it outlives the cycle."""
        self._method: bytes | None = None
        """This cycle's request method, once its head is parsed."""
        self._keep_alive = True
        """Neither the request nor the response of this cycle ends the connection."""
        self._response_started = False

    def receive(self, data: bytes) -> None:
        """Feed bytes read from the client; ``b""`` means the client sent EOF.

        A head reaches h11 only once it is complete and checked, and the
        framing lines of a chunked body only once they are checked. A refusal
        is the next event, before anything not yet pulled.
        """
        if self._errored:
            return
        head = self._head
        if not data:
            if head is not None and (held := head.pending()):
                super().receive(held)  # h11 refuses an incomplete head at EOF
            super().receive(b"")
            return
        try:
            if head is not None:
                used = head.feed(data)
                if used < 0:
                    return
                # Complete and checked: h11 parses the head now, so that how the
                # bytes after it are framed is known before they are fed to it.
                self._head = None
                super().receive(head.head)
                self._pending = self._pull()
                assert self._pending is not None, "h11 reads a complete head at once"
                data = data[used:]
                if not data or self._errored:
                    return
            if self._chunks is not None and not self._chunks.done:
                self._chunks.feed(data)
        except Refusal as refusal:
            self._refuse(refusal.status, refusal.reason)
            return
        super().receive(data)

    def _refuse(self, status: int, reason: str) -> None:
        """Refuse the request: nothing more is parsed, a pending head is dropped.

        A dropped head was never seen by the caller, so its method is forgotten
        too: the error is written as for a request that was never parsed.
        """
        self._errored = True
        if self._pending is not None:
            self._method = None
        self._pending = CodecError(status_hint=status, reason=reason)

    def next_event(self) -> CodecEvent | None:
        """The next request event, or None when more bytes are needed or a response is due."""
        pending = self._pending
        if pending is not None:
            self._pending = None
            return pending
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
        self._head = HeadScanner(self._max_header_bytes)
        self._chunks = None
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
        # h11's rule (RFC 9112 §9.3): an HTTP/1.0 client, or a Connection: close, ends it.
        closes = version < b"1.1"
        chunked = False
        length: bytes | None = None
        authority = b""
        for name, value in headers:
            if name == b"connection":
                closes = closes or b"close" in tokens(value)
            elif name == b"host":
                if not valid_authority(value):
                    # RFC 9112 §3.2: MUST answer 400 (h11 refuses a second Host, and none
                    # in HTTP/1.1).
                    return self._error(400, f"invalid Host: {value!r}")
                authority = value
            elif name == b"transfer-encoding":
                chunked = True  # h11 accepts no transfer coding but chunked (it answers 501)
            elif name == b"content-length":
                length = value
        target = bytes(event.target)
        if target[:1] != b"/" and b"://" in target:
            # Absolute form (RFC 9112 §3.2.2): its authority stands in for Host, so it
            # must be valid too; no empty host, no userinfo (RFC 9110 §4.2.1, §4.2.4).
            absolute = _ABSOLUTE_FORM.match(target)
            if absolute is None or not valid_authority(absolute[1], empty_host=False):
                return self._error(400, f"invalid authority in {target!r}")
        self._client_version = version
        self._method = method = bytes(event.method)
        if closes:
            self._keep_alive = False
        if chunked and (length is not None or version < b"1.1"):
            # RFC 9112 §6.3 item 3 and §6.1: ambiguous framing (both lengths, or
            # chunked from an HTTP/1.0 peer) is a smuggling vector; refuse it.
            return self._error(400, "both Transfer-Encoding and Content-Length, or chunked 1.0")
        path = target
        if not target.startswith(b"/") and target != b"*" and method != b"CONNECT":
            if b"://" not in target:
                return self._error(400, "request target is neither origin nor absolute form")
            # RFC 9112 §3.2.2: an absolute-form target's authority replaces Host, and the
            # request goes on in origin form.
            authority, path = split_absolute(target)
            headers = [field for field in headers if field[0] != b"host"]
            headers.append((b"host", authority))
        if chunked:
            self._chunks = ChunkScanner(self._max_header_bytes)
        return RequestHead(
            stream=self.stream,
            method=method,
            target=target,
            path=path,
            headers=headers,
            http_version=version,
            authority=authority,
            body_length=None if length is None else int(length),
            has_body=chunked or (length is not None and length != b"0"),
        )

    def _error(self, status: int, reason: str) -> CodecError:
        self._errored = True
        return CodecError(status_hint=status, reason=reason)

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

    def data_to_send(self) -> bytes:
        """Nothing: HTTP/1.1 only ever writes what a ``send_*`` call returned."""
        return b""

    def send_informational(
        self, stream: int, status: int, headers: Headers, reason: bytes = b""
    ) -> bytes:
        """Write a 1xx response head; an HTTP/1.0 client gets none (RFC 9110 §15.2)."""
        if self.client_http_version < b"1.1":
            return b""
        reason = reason or PHRASES.get(status, b"")
        return b"HTTP/1.1 %d %s\r\n%s\r\n" % (status, reason, field_lines(headers))

    def send_response(
        self,
        stream: int,
        status: int,
        headers: Headers,
        *,
        reason: bytes = b"",
        head_request: bool = False,
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
                response_closes = response_closes or b"close" in tokens(value)
            elif name == b"transfer-encoding":
                raise ValueError("the codec frames responses: pass no Transfer-Encoding")
        must_close = not self._keep_alive
        if status in (204, 304) or (method == b"CONNECT" and 200 <= status < 300):
            self._remaining = 0
        elif length is not None:
            self._remaining = 0 if no_body else int(length)
        elif self.client_http_version >= b"1.1":
            headers = [*headers, CHUNKED]
            self._chunked = not no_body
            self._remaining = 0 if no_body else None
        else:
            self._remaining = 0 if no_body else None
            must_close = must_close or not no_body
        if must_close:
            headers = with_close(headers)
            response_closes = True
        if response_closes:
            self._keep_alive = False
        self._response_started = True
        reason = reason or PHRASES.get(status, b"")
        return b"HTTP/1.1 %d %s\r\n%s\r\n" % (status, reason, field_lines(headers))

    def send_body(self, stream: int, data: bytes) -> bytes:
        """Frame a piece of the response body."""
        return self._frame_body(data)

    def send_end(self, stream: int, trailers: Headers) -> bytes:
        """End the response; trailers only go out on a chunked one."""
        return self._frame_end(trailers)

    def send_error(
        self,
        stream: int,
        status: int,
        reason: bytes,
        headers: Headers,
        body: bytes,
        *,
        head_request: bool,
    ) -> bytes:
        """A complete error response that ends the connection.

        ``headers`` carry the page's own fields (its type and length); the
        connection closes after it. An answer to HEAD carries the same headers as
        for GET but no body (RFC 9110 §9.3.2).
        """
        head_request = head_request or self._method == b"HEAD"
        head = self.send_response(
            stream,
            status,
            [*headers, (b"connection", b"close")],
            reason=reason,
            head_request=head_request,
        )
        data = self._frame_body(body) if not head_request else b""
        return head + data + self._frame_end([])


class ClientCodec(_Codec):
    """Faces a backend: writes requests, parses responses."""

    __slots__ = ("_heads", "_untrusted")

    def __init__(self) -> None:
        super().__init__(h11.Connection(h11.CLIENT))
        self._untrusted = False
        """The backend framed a response both ways, or to its close: no reuse."""
        self._heads: ResponseHeads | None = ResponseHeads(_HEAD_LIMIT)

    def receive(self, data: bytes) -> None:
        """Feed bytes read from the backend (``b""``: EOF), reframing a head h11 cannot."""
        heads = self._heads
        if heads is not None:
            passed = heads.feed(data) if data else heads.flush()
            if heads.done:
                self._heads = None
                if heads.rewrote:
                    self._untrusted = True
            if passed:
                super().receive(passed)
            if data:
                return
        super().receive(data)

    def next_event(self) -> CodecEvent | None:
        """The next response event, or None when more bytes are needed."""
        return self._pull()

    def start_next_cycle(self) -> bool:
        """Reset for the next request on a kept-alive connection; False if it must close.

        Only a cycle in which both messages ended cleanly, neither of them
        ending the connection, can be followed by another: h11 reports the
        response DONE (not MUST_CLOSE) only then.
        """
        if not self._ended or self._conn.their_state is not h11.DONE or self._untrusted:
            return False
        self._heads = ResponseHeads(_HEAD_LIMIT)
        self._next_parser(h11.Connection(h11.CLIENT))
        return True

    def _convert_head(self, event: h11.Event) -> CodecEvent:
        if type(event) is h11.InformationalResponse:
            return InformationalHead(
                stream=self.stream,
                status=event.status_code,
                reason=bytes(event.reason),
                headers=_fields_of(event),
            )
        assert type(event) is h11.Response
        headers = _fields_of(event)
        names = {name for name, _ in headers}
        if b"transfer-encoding" in names and b"content-length" in names:
            # Transfer-Encoding overrides Content-Length; a proxy must drop the latter
            # rather than pass on a length that is not the framing, and such a response
            # smells of smuggling: its connection is never reused (RFC 9112 §6.3 item 3).
            headers = [field for field in headers if field[0] != b"content-length"]
            self._untrusted = True
        return ResponseHead(
            stream=self.stream,
            status=event.status_code,
            reason=bytes(event.reason),
            headers=headers,
            http_version=bytes(event.http_version),
        )

    def send_request(
        self,
        method: bytes,
        target: bytes,
        headers: Headers,
        *,
        body_length: int | None,
        has_body: bool,
    ) -> bytes:
        """Write a request head, framed by the codec (RFC 9112 §6).

        A body of known length keeps the ``Content-Length`` that ``headers``
        carry; any other body is chunked (``Transfer-Encoding: chunked`` is
        added last); no body, no framing field. ``headers`` carry no
        ``Transfer-Encoding`` of their own.
        """
        self._chunked = has_body and body_length is None
        self._remaining = None if self._chunked else (body_length or 0)
        close = upgrade = False
        for name, value in headers:
            if name == b"connection":
                close = close or b"close" in tokens(value)
            elif name == b"upgrade":
                upgrade = upgrade or bool(tokens(value))
        if self._chunked:
            headers = [*headers, (b"transfer-encoding", b"chunked")]
        self._conn.send(
            _STAND_INS[method if method in (b"HEAD", b"CONNECT") else b"GET", close, upgrade]
        )
        if headers and headers[0][0] != b"host":
            # RFC 9110 §7.2: a client SHOULD send Host first.
            hosts = [field for field in headers if field[0] == b"host"]
            if hosts:
                headers = hosts + [field for field in headers if field[0] != b"host"]
        return b"%s %s HTTP/1.1\r\n%s\r\n" % (method, target, field_lines(headers))

    def send_body(self, data: bytes) -> bytes:
        """Frame a piece of the request body."""
        return self._frame_body(data)

    def send_end(self, trailers: Headers) -> bytes:
        """End the request; trailers only go out on a chunked one."""
        return self._frame_end(trailers)
