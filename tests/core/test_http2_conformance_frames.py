"""HTTP/2 conformance of the core, RFC 9113 §6: the frame definitions.

Same conventions as ``test_http2_conformance.py``: one test per requirement,
named after its section; a stream error passes as RST_STREAM with the code or as
GOAWAY with the code and the close.
"""

from __future__ import annotations

import struct

import pytest
from hyperframe.frame import Frame, GoAwayFrame, PingFrame, SettingsFrame, WindowUpdateFrame

from tests.core.h2frames import ErrorCode, FrameType, H2Client, Setting, raw_frame, request

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\ntest"
LONG = b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\ntesttest"
MAX_WINDOW = 2**31 - 1


@pytest.fixture
def client() -> H2Client:
    """A client past the preface, whose backend answers every request with :data:`OK`."""
    client = H2Client()
    client.handshake()
    client.answers.extend([OK] * 8)
    return client


def settings_payload(*pairs: tuple[int, int]) -> bytes:
    """A SETTINGS payload with ``pairs`` in order (repeats allowed)."""
    return b"".join(struct.pack(">HI", ident, value) for ident, value in pairs)


# -- §6.1 DATA -------------------------------------------------------------------------


def test_6_1_data_on_stream_0_is_a_protocol_error(client: H2Client) -> None:
    client.send(raw_frame(FrameType.DATA, 0x1, 0, b"test"))
    client.connection_error(ErrorCode.PROTOCOL_ERROR)


def test_6_1_data_on_a_half_closed_remote_stream_is_a_stream_closed_error(
    client: H2Client,
) -> None:
    client.answers.clear()
    client.send(request(client, 1, "POST"))
    client.send(client.factory.data(1, b"test"))
    client.stream_error(1, ErrorCode.STREAM_CLOSED)


def test_6_1_pad_length_past_the_payload_is_a_protocol_error(client: H2Client) -> None:
    client.send(request(client, 1, "POST", end_stream=False))
    # PADDED | END_STREAM, 5 bytes of payload claiming 6 bytes of padding.
    client.send(raw_frame(FrameType.DATA, 0x9, 1, b"\x06Test"))
    client.connection_error(ErrorCode.PROTOCOL_ERROR)


def test_6_1_data_frame_is_forwarded(client: H2Client) -> None:
    client.send(request(client, 1, "POST", end_stream=False))
    client.send(client.factory.data(1, b"test"))
    assert client.backend.requests[0].body == b"test"
    assert client.stream(1).status == 200


def test_6_1_data_frames_are_forwarded_in_order(client: H2Client) -> None:
    client.send(request(client, 1, "POST", end_stream=False))
    client.send(client.factory.data(1, b"one,", end_stream=False))
    client.send(client.factory.data(1, b"two"))
    assert client.backend.requests[0].body == b"one,two"
    assert client.stream(1).status == 200


def test_6_1_padding_is_removed_from_the_body(client: H2Client) -> None:
    client.send(request(client, 1, "POST", end_stream=False))
    client.send(client.factory.data(1, b"test", pad_length=6))
    assert client.backend.requests[0].body == b"test"
    assert client.stream(1).status == 200


# -- §6.2 HEADERS ----------------------------------------------------------------------


def test_6_2_headers_on_stream_0_is_a_protocol_error(client: H2Client) -> None:
    block = client.factory.encode(client.factory.request())
    client.send(raw_frame(FrameType.HEADERS, 0x5, 0, block))
    client.connection_error(ErrorCode.PROTOCOL_ERROR)


def test_6_2_pad_length_past_the_payload_is_a_protocol_error(client: H2Client) -> None:
    block = client.factory.encode(client.factory.request())
    # PADDED | END_HEADERS | END_STREAM; the pad length exceeds what follows it.
    payload = bytes([len(block) + 2]) + block
    client.send(raw_frame(FrameType.HEADERS, 0xD, 1, payload))
    client.stream_error(1, ErrorCode.PROTOCOL_ERROR)


def test_6_2_padded_headers_are_accepted(client: H2Client) -> None:
    client.send(client.factory.headers(1, client.factory.request(), pad_length=8))
    assert client.stream(1).status == 200


def test_6_2_headers_with_priority_are_accepted(client: H2Client) -> None:
    client.send(client.factory.headers(1, client.factory.request(), priority=(0, 255, False)))
    assert client.stream(1).status == 200


# -- §6.3 PRIORITY ---------------------------------------------------------------------


def test_6_3_priority_on_stream_0_is_a_protocol_error(client: H2Client) -> None:
    client.send(raw_frame(FrameType.PRIORITY, 0, 0, b"\0\0\0\0\xff"))
    client.connection_error(ErrorCode.PROTOCOL_ERROR)


def test_6_3_priority_of_other_than_5_octets_is_a_frame_size_error(client: H2Client) -> None:
    client.answers.clear()
    client.send(request(client, 1))
    client.send(raw_frame(FrameType.PRIORITY, 0, 1, b"\x80\0\0\x01"))
    client.stream_error(1, ErrorCode.FRAME_SIZE_ERROR)


def test_6_3_priority_for_an_idle_stream_does_not_open_it(client: H2Client) -> None:
    client.send(client.factory.priority(3, weight=255))
    client.send(request(client, 1))  # lower than 3: 3 is still idle
    assert client.stream(1).status == 200
    client.still_open()


@pytest.mark.parametrize(
    ("depends_on", "weight", "exclusive"),
    [(0, 0, False), (0, 255, False), (3, 0, False), (0, 0, True)],
    ids=["weight-1", "weight-256", "dependency", "exclusive"],
)
def test_6_3_priority_frames_are_accepted(
    client: H2Client, depends_on: int, weight: int, exclusive: bool
) -> None:
    client.send(
        client.factory.priority(1, depends_on=depends_on, weight=weight, exclusive=exclusive)
    )
    client.send(request(client, 1))
    assert client.stream(1).status == 200


# -- §6.4 RST_STREAM -------------------------------------------------------------------


def test_6_4_rst_stream_on_stream_0_is_a_protocol_error(client: H2Client) -> None:
    client.send(raw_frame(FrameType.RST_STREAM, 0, 0, struct.pack(">I", ErrorCode.CANCEL)))
    client.connection_error(ErrorCode.PROTOCOL_ERROR)


def test_6_4_rst_stream_of_other_than_4_octets_is_a_frame_size_error(client: H2Client) -> None:
    client.answers.clear()
    client.send(request(client, 1))
    client.send(raw_frame(FrameType.RST_STREAM, 0, 1, b"\0\0\0"))
    client.connection_error(ErrorCode.FRAME_SIZE_ERROR)


def test_6_4_rst_stream_ends_the_stream_and_its_upstream_request(client: H2Client) -> None:
    client.answers.clear()
    client.send(request(client, 1, "POST", end_stream=False))
    assert client.backend.requests  # the request went upstream
    client.send(client.factory.rst_stream(1, ErrorCode.CANCEL))
    assert client.backend.closed
    assert client.stream(1) == type(client.stream(1))()  # nothing was sent on it
    client.alive()


# -- §6.5 SETTINGS ---------------------------------------------------------------------


def test_6_5_settings_ack_with_a_payload_is_a_frame_size_error(client: H2Client) -> None:
    client.send(raw_frame(FrameType.SETTINGS, 0x1, 0, b"\0"))
    client.connection_error(ErrorCode.FRAME_SIZE_ERROR)


def test_6_5_settings_on_a_stream_is_a_protocol_error(client: H2Client) -> None:
    payload = settings_payload((Setting.MAX_CONCURRENT_STREAMS, 100))
    client.send(raw_frame(FrameType.SETTINGS, 0, 1, payload))
    client.connection_error(ErrorCode.PROTOCOL_ERROR)


def test_6_5_settings_of_other_than_a_multiple_of_6_octets_is_a_frame_size_error(
    client: H2Client,
) -> None:
    payload = settings_payload((Setting.MAX_CONCURRENT_STREAMS, 100)) + b"\0\x02"
    client.send(raw_frame(FrameType.SETTINGS, 0, 0, payload))
    client.connection_error(ErrorCode.FRAME_SIZE_ERROR)


def test_6_5_settings_with_every_parameter_are_acknowledged(client: H2Client) -> None:
    values = {
        Setting.HEADER_TABLE_SIZE: 4096,
        Setting.ENABLE_PUSH: 1,
        Setting.MAX_CONCURRENT_STREAMS: 100,
        Setting.INITIAL_WINDOW_SIZE: 65535,
        Setting.MAX_FRAME_SIZE: 16384,
        Setting.MAX_HEADER_LIST_SIZE: 100,
    }
    frames = client.send(client.factory.settings(values))
    assert len(frames) == 1
    assert isinstance(frames[0], SettingsFrame)
    assert "ACK" in frames[0].flags


# -- §6.5.2 defined settings -----------------------------------------------------------


def test_6_5_2_enable_push_other_than_0_or_1_is_a_protocol_error(client: H2Client) -> None:
    client.send(client.factory.settings({Setting.ENABLE_PUSH: 2}))
    client.connection_error(ErrorCode.PROTOCOL_ERROR)


def test_6_5_2_initial_window_size_above_2_31_minus_1_is_a_flow_control_error(
    client: H2Client,
) -> None:
    client.send(client.factory.settings({Setting.INITIAL_WINDOW_SIZE: 2**31}))
    client.connection_error(ErrorCode.FLOW_CONTROL_ERROR)


@pytest.mark.parametrize("size", [16383, 2**24], ids=["below-2^14", "above-2^24-1"])
def test_6_5_2_max_frame_size_out_of_range_is_a_protocol_error(client: H2Client, size: int) -> None:
    client.send(client.factory.settings({Setting.MAX_FRAME_SIZE: size}))
    client.connection_error(ErrorCode.PROTOCOL_ERROR)


def test_6_5_2_unknown_setting_is_ignored(client: H2Client) -> None:
    frames = client.send(raw_frame(FrameType.SETTINGS, 0, 0, settings_payload((0xFF, 1))))
    assert len(frames) == 1
    assert "ACK" in frames[0].flags
    client.alive()


# -- §6.5.3 settings synchronisation ---------------------------------------------------


def test_6_5_3_values_are_processed_in_order(client: H2Client) -> None:
    payload = settings_payload((Setting.INITIAL_WINDOW_SIZE, 100), (Setting.INITIAL_WINDOW_SIZE, 1))
    client.send(raw_frame(FrameType.SETTINGS, 0, 0, payload))
    client.send(request(client, 1))
    assert client.stream(1).data_frames == [1]  # the last value, 1, is the window


def test_6_5_3_settings_are_acknowledged_at_once(client: H2Client) -> None:
    frames = client.send(client.factory.settings({Setting.ENABLE_PUSH: 0}))
    assert len(frames) == 1
    assert isinstance(frames[0], SettingsFrame)
    assert "ACK" in frames[0].flags
    assert frames[0].settings == {}


# -- §6.7 PING -------------------------------------------------------------------------


def test_6_7_ping_is_answered_with_an_ack_of_the_same_payload(client: H2Client) -> None:
    frames = client.send(client.factory.ping(b"h2-test!"))
    assert len(frames) == 1
    assert isinstance(frames[0], PingFrame)
    assert "ACK" in frames[0].flags
    assert frames[0].opaque_data == b"h2-test!"


def test_6_7_ping_ack_is_not_answered(client: H2Client) -> None:
    assert client.send(client.factory.ping(b"unasked!", ack=True)) == []
    client.alive()


def test_6_7_ping_on_a_stream_is_a_protocol_error(client: H2Client) -> None:
    client.send(raw_frame(FrameType.PING, 0, 1, b"\0" * 8))
    client.connection_error(ErrorCode.PROTOCOL_ERROR)


def test_6_7_ping_of_other_than_8_octets_is_a_frame_size_error(client: H2Client) -> None:
    client.send(raw_frame(FrameType.PING, 0, 0, b"\0" * 6))
    client.connection_error(ErrorCode.FRAME_SIZE_ERROR)


# -- §6.8 GOAWAY -----------------------------------------------------------------------


def test_6_8_goaway_on_a_stream_is_a_protocol_error(client: H2Client) -> None:
    client.send(raw_frame(FrameType.GOAWAY, 0, 1, b"\0" * 8))
    client.connection_error(ErrorCode.PROTOCOL_ERROR)


def test_6_8_client_goaway_ends_the_connection(client: H2Client) -> None:
    frames = client.send(client.factory.goaway(0, ErrorCode.NO_ERROR, b"bye"))
    assert not client.of_type(GoAwayFrame, frames)
    assert client.closed


def test_6_8_graceful_shutdown_finishes_streams_up_to_the_last_stream_id(
    client: H2Client,
) -> None:
    client.answers.clear()
    client.send(request(client, 1))
    frames = client.shutdown()
    goaways = client.of_type(GoAwayFrame, frames)
    assert len(goaways) == 1
    assert isinstance(goaways[0], GoAwayFrame)
    assert goaways[0].error_code == ErrorCode.NO_ERROR
    assert goaways[0].last_stream_id == 1
    assert not client.closed
    client.send(request(client, 3))  # above the last stream id: not processed
    assert client.stream(3).reset == ErrorCode.REFUSED_STREAM
    assert len(client.backends) == 1
    client.answer(OK)
    assert client.stream(1).status == 200
    assert client.stream(1).ended
    assert client.closed


# -- §6.9 WINDOW_UPDATE ----------------------------------------------------------------


def test_6_9_zero_increment_on_the_connection_is_a_protocol_error(client: H2Client) -> None:
    client.send(client.factory.window_update(0, 0))
    client.connection_error(ErrorCode.PROTOCOL_ERROR)


def test_6_9_zero_increment_on_a_stream_is_a_protocol_error(client: H2Client) -> None:
    client.send(request(client, 1, "POST", end_stream=False))
    client.send(client.factory.window_update(1, 0))
    client.stream_error(1, ErrorCode.PROTOCOL_ERROR)


def test_6_9_window_update_of_other_than_4_octets_is_a_frame_size_error(
    client: H2Client,
) -> None:
    client.send(raw_frame(FrameType.WINDOW_UPDATE, 0, 0, b"\0\0\x01"))
    client.connection_error(ErrorCode.FRAME_SIZE_ERROR)


def test_6_9_window_update_on_the_connection_is_accepted(client: H2Client) -> None:
    assert client.send(client.factory.window_update(0, 1)) == []
    client.alive()


def test_6_9_window_update_on_a_stream_is_accepted(client: H2Client) -> None:
    client.answers.clear()
    client.send(request(client, 1))
    assert client.send(client.factory.window_update(1, 1)) == []
    client.answer(OK)
    assert client.stream(1).status == 200


def test_6_9_window_reopens_once_the_backend_has_the_bytes() -> None:
    client = H2Client(
        "[http2]\ninitial_window_size = 32768\nconnection_window_size = 65535\n",
        auto_connect=False,
    )
    client.handshake()
    client.send(request(client, 1, "POST", end_stream=False))
    frames = client.send(
        client.factory.data(1, b"x" * 16384, end_stream=False),
        client.factory.data(1, b"x" * 16384, end_stream=False),
    )
    assert not client.of_type(WindowUpdateFrame, frames)  # the backend has nothing yet
    frames = client.connect()
    credit = {0: 0, 1: 0}
    for update in client.of_type(WindowUpdateFrame, frames):
        assert isinstance(update, WindowUpdateFrame)
        credit[update.stream_id] += update.window_increment
    assert credit == {0: 32768, 1: 32768}
    assert client.backend.requests[0].body == b"x" * 32768


def test_6_9_window_taken_by_a_reset_stream_is_given_back() -> None:
    client = H2Client(
        "[http2]\ninitial_window_size = 65535\nconnection_window_size = 65535\n",
        auto_connect=False,
    )
    client.handshake()
    client.send(request(client, 1, "POST", end_stream=False))
    for _ in range(3):
        client.send(client.factory.data(1, b"x" * 16384, end_stream=False))
    client.send(client.factory.rst_stream(1))
    # Were those 48 KiB lost to the connection window, the second frame would overflow it.
    client.send(request(client, 3, "POST", end_stream=False))
    client.send(client.factory.data(3, b"x" * 16384, end_stream=False))
    client.send(client.factory.data(3, b"x" * 16384, end_stream=False))
    client.still_open()


# -- §6.9.1 the flow-control window ----------------------------------------------------


def test_6_9_1_data_never_exceeds_the_stream_window(client: H2Client) -> None:
    client.send(client.factory.settings({Setting.INITIAL_WINDOW_SIZE: 1}))
    client.send(request(client, 1))
    assert client.stream(1).data_frames == [1]


def test_6_9_1_data_never_exceeds_the_connection_window(client: H2Client) -> None:
    client.answers.clear()
    body = b"x" * 70000
    client.send(client.factory.settings({Setting.INITIAL_WINDOW_SIZE: MAX_WINDOW}))
    client.send(request(client, 1))
    client.answer(b"HTTP/1.1 200 OK\r\ncontent-length: 70000\r\n\r\n" + body)
    assert len(client.stream(1).data) == 65535  # the connection window of the preface
    assert not client.stream(1).ended
    client.send(client.factory.window_update(0, 10000))
    assert client.stream(1).data == body
    assert client.stream(1).ended


def test_6_9_1_connection_window_above_2_31_minus_1_is_a_flow_control_error(
    client: H2Client,
) -> None:
    client.send(
        client.factory.window_update(0, MAX_WINDOW), client.factory.window_update(0, MAX_WINDOW)
    )
    client.connection_error(ErrorCode.FLOW_CONTROL_ERROR)


def test_6_9_1_stream_window_above_2_31_minus_1_resets_the_stream(client: H2Client) -> None:
    client.answers.clear()
    client.send(request(client, 1, "POST", end_stream=False))
    client.send(
        client.factory.window_update(1, MAX_WINDOW), client.factory.window_update(1, MAX_WINDOW)
    )
    assert client.stream(1).reset == ErrorCode.FLOW_CONTROL_ERROR  # RST_STREAM, not GOAWAY
    client.alive()


def test_6_9_1_client_data_beyond_the_advertised_window_is_a_flow_control_error() -> None:
    client = H2Client("[http2]\ninitial_window_size = 16384\n", auto_connect=False)
    client.handshake()
    client.send(request(client, 1, "POST", end_stream=False))
    client.send(client.factory.data(1, b"x" * 16384, end_stream=False))  # the whole window
    client.send(client.factory.data(1, b"x", end_stream=False))
    client.stream_error(1, ErrorCode.FLOW_CONTROL_ERROR)


# -- §6.9.2 initial flow-control window size -------------------------------------------


def test_6_9_2_new_initial_window_size_adjusts_open_streams(client: H2Client) -> None:
    client.send(client.factory.settings({Setting.INITIAL_WINDOW_SIZE: 0}))
    client.send(request(client, 1))
    assert client.stream(1).data_frames == []
    client.send(client.factory.settings({Setting.INITIAL_WINDOW_SIZE: 1}))
    assert client.stream(1).data_frames == [1]


def test_6_9_2_negative_window_is_tracked(client: H2Client) -> None:
    client.answers.clear()
    client.send(client.factory.settings({Setting.INITIAL_WINDOW_SIZE: 3}))
    client.send(request(client, 1))
    client.answer(LONG)
    assert client.stream(1).data_frames == [3]
    client.send(client.factory.settings({Setting.INITIAL_WINDOW_SIZE: 2}))  # window: -1
    client.send(client.factory.window_update(1, 2))  # window: 1
    assert client.stream(1).data_frames == [3, 1]


def test_6_9_2_initial_window_size_pushing_a_stream_window_over_the_maximum_is_an_error(
    client: H2Client,
) -> None:
    client.answers.clear()
    client.send(request(client, 1, "POST", end_stream=False))
    client.send(client.factory.window_update(1, MAX_WINDOW - 65535))  # window: 2^31 - 1
    client.still_open()
    client.send(client.factory.settings({Setting.INITIAL_WINDOW_SIZE: 65536}))
    client.connection_error(ErrorCode.FLOW_CONTROL_ERROR)


# -- §6.10 CONTINUATION ----------------------------------------------------------------


def test_6_10_field_block_split_over_continuation_frames_is_accepted(client: H2Client) -> None:
    block = client.factory.encode(client.factory.request())
    client.send(
        client.factory.headers(1, block[:5], end_headers=False),
        client.factory.continuation(1, block[5:10], end_headers=False),
        client.factory.continuation(1, block[10:]),
    )
    assert client.stream(1).status == 200


def test_6_10_continuation_frames_carrying_more_fields_are_accepted(client: H2Client) -> None:
    dummy = [("x-dummy0", "x" * 4000)]
    client.send(
        request(client, 1, end_headers=False),
        client.factory.continuation(1, dummy, end_headers=False),
        client.factory.continuation(1, dummy),
    )
    assert client.stream(1).status == 200


def test_6_10_other_frame_after_continuation_without_end_headers_is_a_protocol_error(
    client: H2Client,
) -> None:
    client.send(
        request(client, 1, "POST", end_stream=False, end_headers=False),
        client.factory.continuation(1, [("x-dummy0", "x")], end_headers=False),
        client.factory.data(1, b"test"),
    )
    client.connection_error(ErrorCode.PROTOCOL_ERROR)


def test_6_10_continuation_on_stream_0_is_a_protocol_error(client: H2Client) -> None:
    fragment = client.factory.encode([("x-dummy0", "x")])
    client.send(
        request(client, 1, end_headers=False), raw_frame(FrameType.CONTINUATION, 0x4, 0, fragment)
    )
    client.connection_error(ErrorCode.PROTOCOL_ERROR)


def test_6_10_continuation_after_headers_with_end_headers_is_a_protocol_error(
    client: H2Client,
) -> None:
    client.send(request(client, 1), client.factory.continuation(1, [("x-dummy0", "x")]))
    client.connection_error(ErrorCode.PROTOCOL_ERROR)


def test_6_10_continuation_after_continuation_with_end_headers_is_a_protocol_error(
    client: H2Client,
) -> None:
    client.send(
        request(client, 1, end_headers=False),
        client.factory.continuation(1, [("x-dummy0", "x")]),
        client.factory.continuation(1, [("x-dummy1", "x")]),
    )
    client.connection_error(ErrorCode.PROTOCOL_ERROR)


def test_6_10_continuation_after_data_is_a_protocol_error(client: H2Client) -> None:
    client.send(
        request(client, 1, "POST", end_stream=False),
        client.factory.data(1, b"test"),
        client.factory.continuation(1, [("x-dummy0", "x")]),
    )
    client.connection_error(ErrorCode.PROTOCOL_ERROR)


def test_6_10_endless_continuation_frames_end_the_connection(client: H2Client) -> None:
    # Not a frame rule but its defence (CVE-2024-27316): the block may not grow forever.
    frames: list[Frame] = [request(client, 1, end_headers=False)]
    frames += [client.factory.continuation(1, b"", end_headers=False) for _ in range(1000)]
    client.send(*frames)
    client.connection_error((ErrorCode.PROTOCOL_ERROR, ErrorCode.ENHANCE_YOUR_CALM))
    assert not client.backends
