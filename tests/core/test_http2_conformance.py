"""HTTP/2 conformance of the core, RFC 9113 §3.4 (preface), §4 (frames), §5 (streams).

One test per requirement, named after its section. Each drives a fresh core as
one client on a TLS listener that negotiated ``h2`` (see ``h2frames.py``) and
asserts what the RFC asks for: the frame type and error code, or the response.
A stream error passes as RST_STREAM with the code or, since §5.4.1 lets an
endpoint escalate, as GOAWAY with the code and the close.

Sections §6 to §8 are in ``test_http2_conformance_frames.py`` and
``test_http2_conformance_http.py``, RFC 7541 in ``test_http2_conformance_hpack.py``.
"""

from __future__ import annotations

import pytest
from hyperframe.frame import (
    GoAwayFrame,
    PingFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from tests.core.h2frames import PREFACE, ErrorCode, FrameType, H2Client, Setting, raw_frame, request

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\ntest"
"""The backend's answer where a test needs a response."""


@pytest.fixture
def client() -> H2Client:
    """A client past the preface, whose backend answers every request with :data:`OK`."""
    client = H2Client()
    client.handshake()
    client.answers.extend([OK] * 8)
    return client


# -- §3.4 HTTP/2 connection preface -----------------------------------------------------


def test_3_4_server_preface_is_a_settings_frame_sent_first() -> None:
    client = H2Client()  # nothing sent yet: the server may send its preface at once
    assert client.frames, "no server preface"
    first = client.frames[0]
    assert isinstance(first, SettingsFrame)
    assert "ACK" not in first.flags


def test_3_4_client_settings_are_acknowledged() -> None:
    client = H2Client()
    frames = client.send(PREFACE, client.factory.settings({Setting.INITIAL_WINDOW_SIZE: 65535}))
    assert [f for f in frames if isinstance(f, SettingsFrame)] == frames[:1]
    assert "ACK" in frames[0].flags
    client.alive()


def test_3_4_preface_may_arrive_in_pieces() -> None:
    client = H2Client()
    for byte in PREFACE:
        assert client.send(bytes([byte])) == []
    frames = client.send(client.factory.settings())
    assert len(frames) == 1
    assert isinstance(frames[0], SettingsFrame)
    assert "ACK" in frames[0].flags


def test_3_4_invalid_preface_ends_the_connection() -> None:
    client = H2Client()
    client.send(b"INVALID CONNECTION PREFACE\r\n\r\n")
    assert client.closed
    for goaway in client.of_type(GoAwayFrame):
        assert isinstance(goaway, GoAwayFrame)
        assert goaway.error_code == ErrorCode.PROTOCOL_ERROR


def test_3_4_preface_must_arrive_in_time() -> None:
    client = H2Client()
    client.advance(client.config.timeouts.client_header - 0.001)
    assert not client.closed
    client.advance(0.001)
    assert client.closed


def test_3_4_first_client_frame_must_be_settings() -> None:
    client = H2Client()
    client.send(PREFACE, client.factory.ping())
    client.connection_error(ErrorCode.PROTOCOL_ERROR)


# -- §4.1 frame format ------------------------------------------------------------------


def test_4_1_frame_of_unknown_type_is_ignored(client: H2Client) -> None:
    assert client.send(raw_frame(0xFA, 0, 0, b"\0" * 8)) == []
    client.alive()


def test_4_1_undefined_flags_are_ignored(client: H2Client) -> None:
    frames = client.send(raw_frame(FrameType.PING, 0xFE, 0, b"flagged!"))
    assert len(frames) == 1
    assert isinstance(frames[0], PingFrame)
    assert "ACK" in frames[0].flags
    assert frames[0].opaque_data == b"flagged!"


def test_4_1_reserved_bit_is_ignored(client: H2Client) -> None:
    frames = client.send(raw_frame(FrameType.PING, 0, 0x8000_0000, b"reserved"))
    assert len(frames) == 1
    assert isinstance(frames[0], PingFrame)
    assert frames[0].opaque_data == b"reserved"


def test_4_1_reserved_bit_in_a_stream_identifier_is_ignored(client: H2Client) -> None:
    block = client.factory.encode(client.factory.request())
    client.send(raw_frame(FrameType.HEADERS, 0x5, 0x8000_0001, block))
    assert client.stream(1).status == 200


# -- §4.2 frame size ------------------------------------------------------------------


def test_4_2_data_frame_of_2_14_octets_is_accepted(client: H2Client) -> None:
    client.send(request(client, 1, "POST", end_stream=False))
    client.send(client.factory.data(1, b"x" * 16384))
    assert client.backend.requests[0].body == b"x" * 16384
    assert client.stream(1).status == 200


def test_4_2_data_frame_above_max_frame_size_is_a_frame_size_error(client: H2Client) -> None:
    client.send(request(client, 1, "POST", end_stream=False))
    client.send(client.factory.data(1, b"x" * 16385))
    client.stream_error(1, ErrorCode.FRAME_SIZE_ERROR)


def test_4_2_headers_frame_above_max_frame_size_is_a_connection_error(client: H2Client) -> None:
    fields = client.factory.request(extra=[(f"x-dummy{i}", "x" * 4000) for i in range(5)])
    block = client.factory.encode(fields, huffman=False)
    assert len(block) > 16384
    client.send(client.factory.headers(1, block))
    client.connection_error(ErrorCode.FRAME_SIZE_ERROR)


# -- §4.3 field section compression and decompression ---------------------------------


def test_4_3_undecodable_field_block_is_a_compression_error(client: H2Client) -> None:
    # A literal with incremental indexing and a new name, cut off before its length.
    client.send(client.factory.headers(1, b"\x40"))
    client.connection_error(ErrorCode.COMPRESSION_ERROR)


def test_4_3_priority_frame_inside_a_field_block_is_a_protocol_error(client: H2Client) -> None:
    client.send(
        request(client, 1, end_headers=False),
        client.factory.priority(1),
        client.factory.continuation(1, [("x-dummy", "x")]),
    )
    client.connection_error(ErrorCode.PROTOCOL_ERROR)


def test_4_3_headers_of_another_stream_inside_a_field_block_is_a_protocol_error(
    client: H2Client,
) -> None:
    client.send(
        request(client, 1, end_headers=False),
        request(client, 3),
        client.factory.continuation(1, [("x-dummy", "x")]),
    )
    client.connection_error(ErrorCode.PROTOCOL_ERROR)


def test_4_3_field_block_of_a_refused_request_still_updates_the_table(client: H2Client) -> None:
    # The malformed request's fields enter the client's dynamic table; the proxy
    # must decode them too, or the next request would be misread.
    extra = [("x-trace", "first"), ("X-Upper", "bad")]
    client.send(client.factory.headers(1, client.factory.request(extra=extra)))
    client.stream_error(1, ErrorCode.PROTOCOL_ERROR)
    client.send(client.factory.headers(3, client.factory.request(extra=extra[:1])))
    assert client.stream(3).status == 200
    assert (b"x-trace", b"first") in client.backend.requests[0].headers


# -- §5.1 stream states ---------------------------------------------------------------


def test_5_1_idle_data_is_a_protocol_error(client: H2Client) -> None:
    client.send(client.factory.data(1, b"test"))
    client.connection_error(ErrorCode.PROTOCOL_ERROR)


def test_5_1_idle_rst_stream_is_a_protocol_error(client: H2Client) -> None:
    client.send(client.factory.rst_stream(1))
    client.connection_error(ErrorCode.PROTOCOL_ERROR)


def test_5_1_idle_window_update_is_a_protocol_error(client: H2Client) -> None:
    client.send(client.factory.window_update(1, 100))
    client.connection_error(ErrorCode.PROTOCOL_ERROR)


def test_5_1_idle_continuation_is_a_protocol_error(client: H2Client) -> None:
    client.send(client.factory.continuation(1, client.factory.request()))
    client.connection_error(ErrorCode.PROTOCOL_ERROR)


def test_5_1_idle_priority_is_accepted(client: H2Client) -> None:
    client.send(client.factory.priority(1, weight=255))
    client.alive()
    client.send(request(client, 1))
    assert client.stream(1).status == 200


def test_5_1_half_closed_remote_data_is_a_stream_closed_error(client: H2Client) -> None:
    client.answers.clear()  # the stream stays half-closed (remote)
    client.send(request(client, 1))
    client.send(client.factory.data(1, b"test"))
    client.stream_error(1, ErrorCode.STREAM_CLOSED)


def test_5_1_half_closed_remote_headers_is_a_stream_closed_error(client: H2Client) -> None:
    client.answers.clear()
    client.send(request(client, 1))
    client.send(request(client, 1))
    client.stream_error(1, ErrorCode.STREAM_CLOSED)


def test_5_1_half_closed_remote_continuation_is_an_error(client: H2Client) -> None:
    client.answers.clear()
    client.send(request(client, 1))
    client.send(client.factory.continuation(1, [("x-dummy", "x")]))
    client.stream_error(1, (ErrorCode.STREAM_CLOSED, ErrorCode.PROTOCOL_ERROR))


def test_5_1_half_closed_remote_window_update_is_accepted(client: H2Client) -> None:
    client.send(client.factory.settings({Setting.INITIAL_WINDOW_SIZE: 0}))
    client.send(request(client, 1))
    assert client.stream(1).status == 200
    assert client.stream(1).data == b""
    client.send(client.factory.window_update(1, 1))
    assert client.stream(1).data_frames == [1]


def test_5_1_half_closed_remote_priority_is_accepted(client: H2Client) -> None:
    client.send(client.factory.settings({Setting.INITIAL_WINDOW_SIZE: 0}))
    client.send(request(client, 1))
    client.send(client.factory.priority(1, weight=255))
    client.send(client.factory.window_update(1, 1))
    assert client.stream(1).data_frames == [1]
    client.still_open()


def test_5_1_half_closed_remote_rst_stream_is_accepted(client: H2Client) -> None:
    client.answers.clear()
    client.send(request(client, 1))
    client.send(client.factory.rst_stream(1))
    assert client.backend.closed  # the request is abandoned upstream too
    client.alive()


def test_5_1_closed_by_rst_stream_data_is_a_stream_closed_error(client: H2Client) -> None:
    client.send(request(client, 1, "POST", end_stream=False))
    client.send(client.factory.rst_stream(1))
    client.send(client.factory.data(1, b"test"))
    client.stream_error(1, ErrorCode.STREAM_CLOSED)


def test_5_1_closed_by_rst_stream_headers_is_a_stream_closed_error(client: H2Client) -> None:
    client.send(request(client, 1, "POST", end_stream=False))
    client.send(client.factory.rst_stream(1))
    client.send(request(client, 1))
    client.stream_error(1, ErrorCode.STREAM_CLOSED)


def test_5_1_closed_by_rst_stream_continuation_is_an_error(client: H2Client) -> None:
    client.send(request(client, 1, "POST", end_stream=False))
    client.send(client.factory.rst_stream(1))
    client.send(client.factory.continuation(1, [("x-dummy", "x")]))
    client.stream_error(1, (ErrorCode.STREAM_CLOSED, ErrorCode.PROTOCOL_ERROR))


def test_5_1_closed_by_rst_stream_priority_is_accepted(client: H2Client) -> None:
    client.send(request(client, 1, "POST", end_stream=False))
    client.send(client.factory.rst_stream(1))
    client.send(client.factory.priority(1))
    client.alive()


def test_5_1_closed_data_is_a_stream_closed_error(client: H2Client) -> None:
    client.send(request(client, 1))
    assert client.stream(1).ended
    client.send(client.factory.data(1, b"test"))
    # §6.1 asks for this stream error; h2spec (5.1 "closed: Sends a DATA frame")
    # wants the connection error that §5.1 only permits.
    client.stream_error(1, ErrorCode.STREAM_CLOSED)


def test_5_1_closed_headers_is_a_stream_closed_error(client: H2Client) -> None:
    client.send(request(client, 1))
    assert client.stream(1).ended
    client.send(request(client, 1))
    # A connection error, as §5.1 permits (and h2spec expects).
    assert client.stream_error(1, ErrorCode.STREAM_CLOSED) == "connection"


def test_5_1_closed_continuation_is_an_error(client: H2Client) -> None:
    client.send(request(client, 1))
    assert client.stream(1).ended
    client.send(client.factory.continuation(1, [("x-dummy", "x")]))
    client.connection_error((ErrorCode.STREAM_CLOSED, ErrorCode.PROTOCOL_ERROR))


def test_5_1_closed_priority_is_accepted(client: H2Client) -> None:
    client.send(request(client, 1))
    assert client.stream(1).ended
    client.send(client.factory.priority(1, weight=255))
    client.alive()


def test_5_1_closed_window_update_is_ignored(client: H2Client) -> None:
    client.send(request(client, 1))
    assert client.stream(1).ended
    assert client.send(client.factory.window_update(1, 100)) == []
    client.alive()


def test_5_1_closed_rst_stream_is_ignored(client: H2Client) -> None:
    client.send(request(client, 1))
    assert client.stream(1).ended
    assert client.send(client.factory.rst_stream(1)) == []  # §5.4.2: no RST_STREAM for it
    client.alive()


def test_5_1_data_after_the_proxys_rst_stream_is_ignored(client: H2Client) -> None:
    client.send(
        client.factory.headers(1, client.factory.request(extra=[("X-Up", "1")]), end_stream=False)
    )
    assert client.stream_error(1, ErrorCode.PROTOCOL_ERROR) == "stream"
    frames = client.send(client.factory.data(1, b"in flight"))  # sent before the RST arrived
    assert [f for f in frames if not isinstance(f, WindowUpdateFrame)] == []
    client.alive()


def test_5_4_2_rst_stream_is_never_answered_with_rst_stream(client: H2Client) -> None:
    client.send(
        client.factory.headers(1, client.factory.request(extra=[("X-Up", "1")]), end_stream=False)
    )
    assert client.stream_error(1, ErrorCode.PROTOCOL_ERROR) == "stream"
    assert client.send(client.factory.rst_stream(1)) == []
    client.alive()


# -- §5.1.1 stream identifiers --------------------------------------------------------


def test_5_1_1_even_stream_identifier_is_a_protocol_error(client: H2Client) -> None:
    client.send(request(client, 2))
    client.connection_error(ErrorCode.PROTOCOL_ERROR)


def test_5_1_1_decreasing_stream_identifier_is_a_protocol_error(client: H2Client) -> None:
    client.send(request(client, 5))
    client.send(request(client, 3))
    client.connection_error(ErrorCode.PROTOCOL_ERROR)


def test_5_1_1_new_headers_on_a_half_closed_stream_is_a_stream_closed_error(
    client: H2Client,
) -> None:
    client.answers.clear()
    client.send(request(client, 5), request(client, 5))
    client.stream_error(5, ErrorCode.STREAM_CLOSED)


def test_5_1_1_skipped_identifiers_are_closed_implicitly(client: H2Client) -> None:
    client.send(request(client, 5))
    assert client.stream(5).status == 200
    client.send(request(client, 3))  # 3 went from idle to closed when 5 opened
    client.connection_error(ErrorCode.PROTOCOL_ERROR)


# -- §5.1.2 stream concurrency --------------------------------------------------------


def test_5_1_2_streams_above_max_concurrent_streams_are_refused() -> None:
    client = H2Client("[http2]\nmax_concurrent_streams = 2\n")
    client.handshake({Setting.INITIAL_WINDOW_SIZE: 0})
    client.send(request(client, 1), request(client, 3))
    client.send(request(client, 5))
    client.stream_error(5, (ErrorCode.PROTOCOL_ERROR, ErrorCode.REFUSED_STREAM))
    assert len(client.backends) == 2  # streams 1 and 3 went upstream, 5 did not


def test_5_1_2_closed_streams_free_their_place() -> None:
    client = H2Client("[http2]\nmax_concurrent_streams = 1\n")
    client.handshake()
    client.answers.extend([OK] * 3)
    for stream_id in (1, 3, 5):
        client.send(request(client, stream_id))
        assert client.stream(stream_id).status == 200
    client.still_open()


# -- §5.3.1 stream dependencies (RFC 7540; the priority scheme RFC 9113 deprecates) ----


def test_5_3_1_headers_depending_on_itself_is_a_protocol_error(client: H2Client) -> None:
    client.send(request(client, 1, priority=(1, 255, False)))
    client.stream_error(1, ErrorCode.PROTOCOL_ERROR)


def test_5_3_1_priority_depending_on_itself_is_a_protocol_error(client: H2Client) -> None:
    client.send(client.factory.priority(1, depends_on=1, weight=255))
    client.stream_error(1, ErrorCode.PROTOCOL_ERROR)


# -- §5.4 error handling --------------------------------------------------------------


def test_5_4_1_connection_error_sends_goaway_with_last_stream_then_closes(
    client: H2Client,
) -> None:
    client.send(request(client, 1))
    assert client.stream(1).status == 200
    client.send(raw_frame(FrameType.PING, 0, 3, b"\0" * 8))  # PING on a stream
    client.connection_error(ErrorCode.PROTOCOL_ERROR, last_stream=1)


def test_5_4_2_stream_error_leaves_the_other_streams_alone(client: H2Client) -> None:
    client.answers.clear()
    client.send(request(client, 1))
    client.send(client.factory.headers(3, client.factory.request(extra=[("X-Upper", "v")])))
    assert client.stream_error(3, ErrorCode.PROTOCOL_ERROR) == "stream"
    client.answer(OK, client.backends[0])
    assert client.stream(1).status == 200
    assert client.stream(1).data == b"test"
    client.alive()


# -- §5.5 extending HTTP/2 ------------------------------------------------------------


def test_5_5_unknown_extension_frame_on_a_stream_is_ignored(client: H2Client) -> None:
    client.send(request(client, 1, "POST", end_stream=False))
    client.send(raw_frame(0xFA, 0xFF, 1, b"extension"))
    client.send(client.factory.data(1, b"test"))
    assert client.backend.requests[0].body == b"test"
    assert client.stream(1).status == 200
    client.alive()


def test_5_5_unknown_extension_frame_inside_a_field_block_is_a_protocol_error(
    client: H2Client,
) -> None:
    client.send(request(client, 1, end_headers=False), raw_frame(0xFA, 0, 0, b"\0" * 8))
    client.connection_error(ErrorCode.PROTOCOL_ERROR)
