"""The codecs write exactly what h11's own send path would, and keep connections alike.

``sansproxy._codec.http1`` frames and serialises outgoing messages itself
instead of calling ``h11.Connection.send``. These properties hold it to the
reference it replaced: for any request the client sends and any response the
core writes (and the other way round on the backend side), the bytes are the
ones an h11 connection in the same role writes, the parsed events are the ones
it parses, and the connection is kept for another cycle exactly when h11 would
keep it. The one documented difference, ``Host`` moved first only in
requests, is kept out of the response fields drawn here.
"""

from __future__ import annotations

from http import HTTPStatus

import h11
from hypothesis import given
from hypothesis import strategies as st

from sansproxy._codec import (
    Body,
    CodecError,
    CodecEvent,
    EndOfMessage,
    Headers,
    InformationalHead,
    PeerClosed,
    ResponseHead,
)
from sansproxy._codec.http1 import ClientCodec, ServerCodec

PHRASES = {status.value: status.phrase.encode("ascii") for status in HTTPStatus}

pieces = st.lists(st.binary(min_size=1, max_size=20), max_size=4)
plain_fields = st.lists(
    st.tuples(
        st.sampled_from([b"content-type", b"set-cookie", b"x-a", b"via", b"cache-control"]),
        st.sampled_from([b"", b"1", b"a b", b"x=1; Path=/", b"close"]),
    ),
    max_size=4,
)
connection_values = st.sampled_from(
    [b"close", b"keep-alive", b"upgrade", b"Close, Upgrade", b"x-foo, keep-alive", b", close"]
)
trailer_fields = st.lists(
    st.tuples(st.sampled_from([b"x-checksum", b"x-t", b"etag"]), st.sampled_from([b"1", b"ab"])),
    max_size=2,
)


@st.composite
def client_requests(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """Bytes of one request as a client sends it, and its method."""
    version = draw(st.sampled_from([b"1.0", b"1.1"]))
    method = draw(st.sampled_from([b"GET", b"HEAD", b"POST", b"OPTIONS"]))
    lines = [b"%s /p HTTP/%s" % (method, version), b"Host: example.com"]
    for value in draw(st.lists(connection_values, max_size=2)):
        lines.append(b"Connection: " + value)
    if draw(st.booleans()):
        lines.append(b"Upgrade: websocket")
    if draw(st.booleans()):
        lines.append(b"Expect: 100-continue")
    body = b"".join(draw(pieces))
    if version == b"1.1" and draw(st.booleans()):
        lines.append(b"Transfer-Encoding: chunked")
        framed = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
    else:
        lines.append(b"Content-Length: %d" % len(body))
        framed = body
    return b"\r\n".join(lines) + b"\r\n\r\n" + framed, method


def _converted(event: h11.Event) -> CodecEvent:
    if type(event) is h11.Data:
        return Body(stream=1, data=bytes(event.data))
    if type(event) is h11.EndOfMessage:
        return EndOfMessage(stream=1, trailers=list(event.headers))
    if type(event) is h11.ConnectionClosed:
        return PeerClosed()
    if type(event) is h11.InformationalResponse:
        return InformationalHead(
            stream=1,
            status=event.status_code,
            reason=bytes(event.reason),
            headers=list(event.headers),
        )
    assert type(event) is h11.Response
    return ResponseHead(
        stream=1,
        status=event.status_code,
        reason=bytes(event.reason),
        headers=list(event.headers),
        http_version=bytes(event.http_version),
    )


def _reference_events(conn: h11.Connection) -> list[CodecEvent]:
    out: list[CodecEvent] = []
    while conn.their_state is not h11.ERROR:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            out.append(CodecError(status_hint=exc.error_status_hint, reason=str(exc)))
            break
        if event is h11.NEED_DATA or event is h11.PAUSED:
            return out
        assert not isinstance(event, type)
        if type(event) is h11.Request:
            continue  # compared through what the request makes us write
        out.append(_converted(event))
        if type(event) is h11.ConnectionClosed:
            break
    return out


@given(
    request=client_requests(),
    informational=st.booleans(),
    status=st.sampled_from([200, 201, 204, 206, 299, 301, 304, 400, 404, 426, 500, 599]),
    reason=st.sampled_from([b"", b"Fine", b"Not So Fine"]),
    fields=plain_fields,
    connection=st.lists(connection_values, max_size=2),
    with_length=st.booleans(),
    body=pieces,
    trailers=trailer_fields,
)
def test_server_codec_writes_what_h11_writes(
    *,
    request: tuple[bytes, bytes],
    informational: bool,
    status: int,
    reason: bytes,
    fields: Headers,
    connection: list[bytes],
    with_length: bool,
    body: list[bytes],
    trailers: Headers,
) -> None:
    data, method = request
    reference = h11.Connection(h11.SERVER)
    reference.receive_data(data)
    _reference_events(reference)
    codec = ServerCodec(max_header_bytes=65536)
    codec.receive(data)
    while codec.next_event() is not None:
        pass
    assert codec.waiting_for_100_continue is reference.they_are_waiting_for_100_continue

    if informational:
        interim = codec.send_informational(1, 103, [(b"link", b"</a>")])
        if reference.their_http_version == b"1.0":
            assert interim == b""  # RFC 9110 §15.2: no 1xx to an HTTP/1.0 client
        else:
            assert interim == reference.send(
                h11.InformationalResponse(status_code=103, headers=[(b"link", b"</a>")], reason=b"")
            ).replace(b"103 \r\n", b"103 Early Hints\r\n")

    if status in (204, 304) or method == b"HEAD":
        body = []
    headers = [*fields, *((b"connection", value) for value in connection)]
    if with_length:
        headers.append((b"content-length", b"%d" % sum(map(len, body))))
    head = codec.send_response(1, status, headers, reason=reason, head_request=method == b"HEAD")
    expected = reference.send(
        h11.Response(status_code=status, headers=headers, reason=reason or PHRASES.get(status, b""))
    )
    assert head == expected
    for piece in body:
        assert codec.send_body(1, piece) == reference.send(h11.Data(data=piece))
    if not codec.sends_chunked:
        trailers = []
    assert codec.send_end(1, trailers) == reference.send(h11.EndOfMessage(headers=trailers))
    assert codec.their_message_complete
    kept = reference.our_state is h11.DONE and reference.their_state is h11.DONE
    assert codec.start_next_cycle() is kept


@st.composite
def backend_responses(draw: st.DrawFn) -> bytes:
    """Bytes of a response (maybe after a 1xx) as a backend sends it, then maybe EOF."""
    version = draw(st.sampled_from([b"1.0", b"1.1"]))
    status = draw(st.sampled_from([200, 204, 304, 404]))
    lines = [b"HTTP/%s %d %s" % (version, status, draw(st.sampled_from([b"", b"OK"])))]
    lines.extend(b"Connection: " + value for value in draw(st.lists(connection_values, max_size=1)))
    body = b"".join(draw(pieces))
    framing = draw(st.sampled_from(["length", "chunked", "close"]))
    if framing == "length":
        lines.append(b"Content-Length: %d" % len(body))
        framed = body
    elif framing == "chunked" and version == b"1.1":
        lines.append(b"Transfer-Encoding: chunked")
        framed = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + b"0\r\nX-T: 1\r\n\r\n"
    else:
        framed = body
    early = b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" if draw(st.booleans()) else b""
    return early + b"\r\n".join(lines) + b"\r\n\r\n" + framed


@given(
    method=st.sampled_from([b"GET", b"HEAD", b"POST", b"DELETE"]),
    host_at=st.integers(min_value=0, max_value=3),
    fields=plain_fields,
    upgrade=st.booleans(),
    framing=st.sampled_from(["none", "length", "chunked"]),
    body=pieces,
    trailers=trailer_fields,
    response=backend_responses(),
    split=st.integers(min_value=0, max_value=200),
    eof=st.booleans(),
)
def test_client_codec_writes_and_reads_as_h11(
    *,
    method: bytes,
    host_at: int,
    fields: Headers,
    upgrade: bool,
    framing: str,
    body: list[bytes],
    trailers: Headers,
    response: bytes,
    split: int,
    eof: bool,
) -> None:
    headers = list(fields)
    headers.insert(min(host_at, len(headers)), (b"host", b"backend:8080"))
    if upgrade:
        headers += [(b"upgrade", b"websocket"), (b"connection", b"upgrade")]
    # The codec chooses the framing: it keeps a Content-Length and adds chunked itself.
    sent = headers
    length: int | None = None
    if framing == "length":
        length = sum(map(len, body))
        headers.append((b"content-length", b"%d" % length))
    elif framing == "chunked":
        sent = [*headers, (b"transfer-encoding", b"chunked")]
    else:
        body = []
    reference = h11.Connection(h11.CLIENT)
    codec = ClientCodec()
    written = codec.send_request(
        method, b"/x?y=1", headers, body_length=length, has_body=framing != "none"
    )
    assert written == reference.send(h11.Request(method=method, target=b"/x?y=1", headers=sent))
    for piece in body:
        assert codec.send_body(piece) == reference.send(h11.Data(data=piece))
    if framing != "chunked":
        trailers = []
    assert codec.send_end(trailers) == reference.send(h11.EndOfMessage(headers=trailers))

    got: list[CodecEvent] = []
    expected: list[CodecEvent] = []
    for part in (response[:split], response[split:], b"" if eof else None):
        if part is None or (part == b"" and not eof):
            continue
        if reference.their_state is not h11.ERROR:
            reference.receive_data(part)
        codec.receive(part)
        expected += _reference_events(reference)
        while (event := codec.next_event()) is not None:
            got.append(event)
            if type(event) is PeerClosed:
                break
    assert got == expected
    assert codec.their_message_complete is (
        reference.their_state in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED)
    )
    kept = reference.our_state is h11.DONE and reference.their_state is h11.DONE
    assert codec.start_next_cycle() is kept
