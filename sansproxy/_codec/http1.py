"""HTTP/1.1 codecs over h11 (RFC 9112): the only module that imports h11.

:class:`ServerCodec` faces a client (it parses requests and writes
responses); :class:`ClientCodec` faces a backend (it writes requests and
parses responses). Both re-serialise every message from parsed events: raw
bytes never cross the proxy, which is the first defence against request
smuggling (h11 >= 0.16 is strict about chunk syntax, GHSA-vqfr-h8mv-ghfj).

h11 exceptions never leave this module: a peer's mistake becomes a
:class:`CodecError` event with the status to answer; our own mistakes
(sending in a wrong state) are bugs and propagate.
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


class _Codec:
    """What both roles share: feeding bytes, pulling events, cycle and close state."""

    __slots__ = ("_chunked", "_conn", "_errored")

    def __init__(self, conn: h11.Connection) -> None:
        self._conn = conn
        self._errored = False
        self._chunked = False

    def receive(self, data: bytes) -> None:
        """Feed bytes read from the peer; ``b""`` means the peer sent EOF."""
        if self._errored or self._conn.their_state is h11.ERROR:
            return
        try:
            self._conn.receive_data(data)
        except RuntimeError:
            # Data after EOF: h11 refuses it; the peer has nothing more to say.
            return

    def _pull(self) -> CodecEvent | None:
        if self._errored:
            return None
        try:
            event = self._conn.next_event()
        except h11.RemoteProtocolError as exc:
            self._errored = True
            return CodecError(status_hint=exc.error_status_hint, reason=str(exc))
        if event is h11.NEED_DATA or event is h11.PAUSED:
            return None
        assert not isinstance(event, type)
        if type(event) is h11.Data:
            return Body(data=bytes(event.data))
        if type(event) is h11.EndOfMessage:
            return EndOfMessage(trailers=list(event.headers))
        if type(event) is h11.ConnectionClosed:
            return PeerClosed()
        return self._convert_head(event)

    def _convert_head(self, event: h11.Event) -> CodecEvent:
        raise NotImplementedError  # pragma: no cover

    def send_body(self, data: bytes) -> bytes:
        """Frame a body piece for the wire."""
        return self._conn.send(h11.Data(data=data)) or b""

    def send_end(self, trailers: Headers) -> bytes:
        """End the message; trailers are dropped when the framing cannot carry them."""
        if trailers and not self._chunked:
            trailers = []
        return self._conn.send(h11.EndOfMessage(headers=trailers)) or b""

    @property
    def sends_chunked(self) -> bool:
        """Whether our outgoing message uses chunked framing (and so can carry trailers)."""
        return self._chunked

    def start_next_cycle(self) -> bool:
        """Reset for the next message on a kept-alive connection; False if it must close.

        Only a cycle in which both messages ended cleanly, with keep-alive on
        both sides, can be followed by another.
        """
        conn = self._conn
        if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
            return False
        conn.start_next_cycle()
        self._chunked = False
        return True

    @property
    def their_message_complete(self) -> bool:
        return self._conn.their_state in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED)

    @property
    def trailing_data(self) -> bytes:
        """Bytes that arrived after the message that switched protocols."""
        return bytes(self._conn.trailing_data[0])


class ServerCodec(_Codec):
    """Faces a client: parses requests, writes responses.

    Two leniencies h11 lacks, both from RFC 9112: empty lines before a request
    line are ignored (§2.2), and bytes after a request that ends the connection
    are never parsed (§9.6), so they cannot spoil the response to it.
    """

    __slots__ = ("_at_start", "_max_header_bytes")

    def __init__(self, *, max_header_bytes: int) -> None:
        super().__init__(h11.Connection(h11.SERVER, max_incomplete_event_size=max_header_bytes))
        self._max_header_bytes = max_header_bytes
        self._at_start = True

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
        """Reset for the next request on a kept-alive connection; False if it must close."""
        if not super().start_next_cycle():
            return False
        leftover, closed = self._conn.trailing_data
        if not leftover:
            self._at_start = True
        elif leftover[:1] in (b"\r", b"\n"):
            # h11 cannot skip them in place: start a fresh parser on the rest.
            self._conn = h11.Connection(
                h11.SERVER, max_incomplete_event_size=self._max_header_bytes
            )
            self._at_start = True
            self.receive(bytes(leftover))
            if closed:
                self.receive(b"")
        return True

    def _convert_head(self, event: h11.Event) -> CodecEvent:
        assert type(event) is h11.Request
        return RequestHead(
            method=bytes(event.method),
            target=bytes(event.target),
            headers=list(event.headers),
            http_version=bytes(event.http_version),
        )

    @property
    def client_http_version(self) -> bytes:
        return self._conn.their_http_version or b"1.0"

    @property
    def can_respond(self) -> bool:
        """No response has started, so an error response can still be written."""
        return self._conn.our_state in (h11.IDLE, h11.SEND_RESPONSE)

    @property
    def waiting_for_100_continue(self) -> bool:
        return self._conn.they_are_waiting_for_100_continue

    def send_informational(self, status: int, headers: Headers, reason: bytes = b"") -> bytes:
        """Write a 1xx response head."""
        reason = reason or _PHRASES.get(status, b"")
        return (
            self._conn.send(
                h11.InformationalResponse(status_code=status, headers=headers, reason=reason)
            )
            or b""
        )

    def send_response(
        self, status: int, headers: Headers, *, reason: bytes = b"", head_request: bool = False
    ) -> bytes:
        """Write a response head; h11 picks chunked or close framing when no length is given."""
        self._chunked = (
            not head_request
            and status not in (204, 304)
            and self.client_http_version >= b"1.1"
            and all(name != b"content-length" for name, _ in headers)
        )
        reason = reason or _PHRASES.get(status, b"")
        return (
            self._conn.send(h11.Response(status_code=status, headers=headers, reason=reason)) or b""
        )

    def send_error(
        self, status: int, reason: bytes, body: bytes, headers: Headers, *, head_request: bool
    ) -> bytes:
        """A complete error response that ends the connection.

        An answer to HEAD carries the same headers as for GET but no body
        (RFC 9110 §9.3.2).
        """
        head = self._conn.send(
            h11.Response(
                status_code=status,
                reason=reason,
                headers=[
                    *headers,
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", b"%d" % len(body)),
                    (b"connection", b"close"),
                ],
            )
        )
        data = self._conn.send(h11.Data(data=body)) if body and not head_request else b""
        end = self._conn.send(h11.EndOfMessage())
        return (head or b"") + (data or b"") + (end or b"")


class ClientCodec(_Codec):
    """Faces a backend: writes requests, parses responses."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(h11.Connection(h11.CLIENT))

    def next_event(self) -> CodecEvent | None:
        """The next response event, or None when more bytes are needed."""
        return self._pull()

    def _convert_head(self, event: h11.Event) -> CodecEvent:
        if type(event) is h11.InformationalResponse:
            return InformationalHead(
                status=event.status_code, reason=bytes(event.reason), headers=list(event.headers)
            )
        assert type(event) is h11.Response
        return ResponseHead(
            status=event.status_code,
            reason=bytes(event.reason),
            headers=list(event.headers),
            http_version=bytes(event.http_version),
        )

    def send_request(self, method: bytes, target: bytes, headers: Headers) -> bytes:
        """Write a request head; the caller sets the framing headers it wants."""
        self._chunked = any(name == b"transfer-encoding" for name, _ in headers)
        return self._conn.send(h11.Request(method=method, target=target, headers=headers)) or b""
