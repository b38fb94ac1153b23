"""HTTP/2 requests to HTTP/1.1 backends and back, and the server preface's SETTINGS.

RFC 9113 §8 says what an HTTP/2 message means; these tests check the core's
translation to and from HTTP/1.1 (RFC 9112) keeps that meaning: ``:authority``
becomes Host, cookie fields are joined, bodies without a length go chunked,
trailers travel both ways, responses without content end on their HEADERS
frame, informational responses pass through, and connection-specific fields
never cross. Forwarding fields (Via, X-Forwarded-*) are off, so each forwarded
request is spelt out byte for byte.
"""

from __future__ import annotations

import base64
import hashlib

import pytest
from hyperframe.frame import ContinuationFrame, DataFrame, HeadersFrame, WindowUpdateFrame

from sansproxy.config import parse_config
from tests.core.h2frames import ErrorCode, H2Client, HeaderInput, Setting

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\ntest"
KIB = 1024


@pytest.fixture
def client() -> H2Client:
    """A client past the preface, with the default configuration."""
    client = H2Client()
    client.handshake()
    return client


def post(
    client: H2Client, stream_id: int = 1, path: str = "/upload", extra: HeaderInput = ()
) -> None:
    """Open a POST on ``stream_id`` whose body follows in DATA frames."""
    fields = client.factory.request("POST", path, extra=extra)
    client.send(client.factory.headers(stream_id, fields, end_stream=False))


# -- the server preface ([http2]) -----------------------------------------------------


def test_preface_advertises_the_default_settings() -> None:
    client = H2Client()
    assert client.settings_sent() == {
        Setting.HEADER_TABLE_SIZE: 4096,
        Setting.ENABLE_PUSH: 0,  # RFC 9113 §6.5.2: a server never sets it to 1
        Setting.MAX_CONCURRENT_STREAMS: 100,
        Setting.INITIAL_WINDOW_SIZE: 256 * KIB,
        Setting.MAX_FRAME_SIZE: 16 * KIB,
        Setting.MAX_HEADER_LIST_SIZE: 64 * KIB,
        Setting.ENABLE_CONNECT_PROTOCOL: 1,  # RFC 8441
    }
    updates = client.of_type(WindowUpdateFrame)
    assert len(updates) == 1
    assert isinstance(updates[0], WindowUpdateFrame)
    assert updates[0].stream_id == 0
    assert updates[0].window_increment == 1024 * KIB - 65535  # to connection_window_size


def test_preface_advertises_the_configured_settings() -> None:
    client = H2Client(
        "[http2]\n"
        "max_concurrent_streams = 7\n"
        "initial_window_size = 100000\n"
        "connection_window_size = 65535\n"
        "max_frame_size = 32768\n"
        "max_header_list_size = 10000\n"
        "header_table_size = 1024\n"
    )
    settings = client.settings_sent()
    assert settings[Setting.MAX_CONCURRENT_STREAMS] == 7
    assert settings[Setting.INITIAL_WINDOW_SIZE] == 100000
    assert settings[Setting.MAX_FRAME_SIZE] == 32768
    assert settings[Setting.MAX_HEADER_LIST_SIZE] == 10000
    assert settings[Setting.HEADER_TABLE_SIZE] == 1024
    assert not client.of_type(WindowUpdateFrame)  # the connection window is the default


def test_configured_max_frame_size_is_the_limit_once_acknowledged() -> None:
    client = H2Client("[http2]\nmax_frame_size = 32768\n")
    client.handshake()
    client.answers.append(OK)
    post(client)
    client.send(client.factory.data(1, b"x" * 32768))
    assert client.stream(1).status == 200
    post(client, 3)
    client.send(client.factory.data(3, b"x" * 32769))
    client.stream_error(3, ErrorCode.FRAME_SIZE_ERROR)


def test_configured_initial_window_size_is_each_streams_window() -> None:
    client = H2Client("[http2]\ninitial_window_size = 16384\n", auto_connect=False)
    client.handshake()
    post(client)
    client.send(client.factory.data(1, b"x" * 16384, end_stream=False))
    client.still_open()
    client.send(client.factory.data(1, b"x", end_stream=False))
    client.stream_error(1, ErrorCode.FLOW_CONTROL_ERROR)


def test_field_section_over_max_header_list_size_ends_the_connection() -> None:
    client = H2Client("[http2]\nmax_header_list_size = 4096\n")
    client.handshake()
    fields = client.factory.request(extra=[("x-big", "x" * 5000)])
    client.send(client.factory.headers(1, fields))
    # RFC 9113 §10.5.1 lets it be malformed; §10.5 lets a suspicious peer be calmed.
    client.connection_error(ErrorCode.ENHANCE_YOUR_CALM)
    assert not client.backends


def test_field_section_over_max_header_bytes_gets_431(client: H2Client) -> None:
    block = client.factory.encode(client.factory.request(extra=[("x-big", "x" * 20000)]))
    client.send(
        client.factory.headers(1, block[:16000], end_headers=False),
        client.factory.continuation(1, block[16000:]),
    )
    assert client.stream(1).status == 431
    assert not client.backends
    client.alive()


# -- requests ---------------------------------------------------------------------------


def test_authority_becomes_the_host_field(client: H2Client) -> None:
    fields = client.factory.request(path="/a/b?q=1", authority="example.com:8443")
    client.send(client.factory.headers(1, fields))
    assert bytes(client.backend.received) == (
        b"GET /a/b?q=1 HTTP/1.1\r\nhost: example.com:8443\r\n\r\n"
    )


def test_host_field_stands_in_for_a_missing_authority(client: H2Client) -> None:
    fields = client.factory.request(authority=None, extra=[("host", "example.org")])
    client.send(client.factory.headers(1, fields))
    assert bytes(client.backend.received) == b"GET / HTTP/1.1\r\nhost: example.org\r\n\r\n"


def test_host_field_equal_to_authority_is_sent_once(client: H2Client) -> None:
    fields = client.factory.request(extra=[("host", "EXAMPLE.com")])
    client.send(client.factory.headers(1, fields))
    assert bytes(client.backend.received) == b"GET / HTTP/1.1\r\nhost: example.com\r\n\r\n"


def test_cookie_fields_are_joined_into_one(client: H2Client) -> None:
    # RFC 9113 §8.2.3: an HTTP/1.1 hop gets one cookie field, joined with "; ".
    extra = [("cookie", "a=1"), ("accept", "*/*"), ("cookie", "b=2"), ("cookie", "c=3")]
    client.send(client.factory.headers(1, client.factory.request(extra=extra)))
    assert bytes(client.backend.received) == (
        b"GET / HTTP/1.1\r\nhost: example.com\r\naccept: */*\r\ncookie: a=1; b=2; c=3\r\n\r\n"
    )


def test_request_without_body_has_no_body_framing(client: H2Client) -> None:
    client.send(client.factory.headers(1, client.factory.request("DELETE", "/item/7")))
    assert bytes(client.backend.received) == (
        b"DELETE /item/7 HTTP/1.1\r\nhost: example.com\r\n\r\n"
    )


def test_body_without_content_length_goes_upstream_chunked(client: H2Client) -> None:
    post(client)
    client.send(client.factory.data(1, b"test", end_stream=False))
    client.send(client.factory.data(1, b"more"))
    assert bytes(client.backend.received) == (
        b"POST /upload HTTP/1.1\r\nhost: example.com\r\ntransfer-encoding: chunked\r\n\r\n"
        b"4\r\ntest\r\n4\r\nmore\r\n0\r\n\r\n"
    )


def test_body_with_content_length_goes_upstream_with_it(client: H2Client) -> None:
    post(client, extra=[("content-length", "8")])
    client.send(client.factory.data(1, b"test", end_stream=False))
    client.send(client.factory.data(1, b"more"))
    assert bytes(client.backend.received) == (
        b"POST /upload HTTP/1.1\r\nhost: example.com\r\ncontent-length: 8\r\n\r\ntestmore"
    )


def test_request_trailers_go_upstream_as_chunked_trailers(client: H2Client) -> None:
    post(client, extra=[("te", "trailers"), ("trailer", "x-checksum")])
    client.send(client.factory.data(1, b"test", end_stream=False))
    client.send(client.factory.headers(1, [("x-checksum", "abc")]))
    received = bytes(client.backend.received)
    assert received.startswith(b"POST /upload HTTP/1.1\r\n")
    assert b"transfer-encoding: chunked\r\n" in received
    assert received.endswith(b"\r\n\r\n4\r\ntest\r\n0\r\nx-checksum: abc\r\n\r\n")
    assert client.backend.requests[0].trailers == [(b"x-checksum", b"abc")]


def test_expect_100_continue_is_answered_before_the_body(client: H2Client) -> None:
    post(client, extra=[("expect", "100-continue")])
    view = client.stream(1)
    assert view.informational == [[(b":status", b"100")]]
    assert view.headers is None
    assert not view.ended
    client.answers.append(OK)
    client.send(client.factory.data(1, b"test"))
    assert client.backend.requests[0].body == b"test"
    assert client.stream(1).status == 200


def test_complete_response_to_a_pending_upload_keeps_the_connection(client: H2Client) -> None:
    post(client)
    client.answer(b"HTTP/1.1 413 Content Too Large\r\ncontent-length: 0\r\n\r\n")
    assert client.stream(1).status == 413
    client.answers.append(OK)
    client.send(client.factory.headers(3, client.factory.request()))
    assert client.stream(3).status == 200


# -- responses --------------------------------------------------------------------------


def test_response_fields_lose_connection_specific_fields_and_capitals(client: H2Client) -> None:
    client.send(client.factory.headers(1, client.factory.request()))
    client.answer(
        b"HTTP/1.1 200 OK\r\n"
        b"Connection: keep-alive, X-Hop\r\n"
        b"Keep-Alive: timeout=5\r\n"
        b"X-Hop: 1\r\n"
        b"Proxy-Connection: keep-alive\r\n"
        b"Upgrade: h2c\r\n"
        b"X-Custom: Value\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
        b"4\r\ntest\r\n0\r\n\r\n"
    )
    view = client.stream(1)
    assert view.headers == [(b":status", b"200"), (b"x-custom", b"Value")]
    assert view.data == b"test"
    assert view.ended


def test_response_trailers_end_the_stream_on_a_headers_frame(client: H2Client) -> None:
    client.send(client.factory.headers(1, client.factory.request(extra=[("te", "trailers")])))
    client.answer(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-sum\r\n\r\n"
        b"4\r\ntest\r\n0\r\nx-sum: 42\r\n\r\n"
    )
    view = client.stream(1)
    assert view.data == b"test"
    assert view.trailers == [(b"x-sum", b"42")]
    assert view.ended
    last = [f for f in client.frames if f.stream_id == 1][-1]
    assert isinstance(last, HeadersFrame)  # RFC 9113 §8.1: trailers carry END_STREAM
    assert "END_STREAM" in last.flags


@pytest.mark.parametrize(
    ("method", "response"),
    [
        ("HEAD", b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n"),
        ("GET", b"HTTP/1.1 204 No Content\r\n\r\n"),
        ("GET", b'HTTP/1.1 304 Not Modified\r\netag: "a"\r\ncontent-length: 10\r\n\r\n'),
    ],
    ids=["HEAD", "204", "304"],
)
def test_response_without_content_ends_the_stream_on_headers(
    client: H2Client, method: str, response: bytes
) -> None:
    client.send(client.factory.headers(1, client.factory.request(method)))
    client.answer(response)
    view = client.stream(1)
    assert view.status in (200, 204, 304)
    assert view.ended_on_headers
    assert view.data_frames == []


def test_early_hints_are_forwarded_before_the_final_response(client: H2Client) -> None:
    client.send(client.factory.headers(1, client.factory.request()))
    client.answer(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
    view = client.stream(1)
    assert view.informational == [[(b":status", b"103"), (b"link", b"</style.css>; rel=preload")]]
    assert view.headers is None
    client.answer(OK)
    view = client.stream(1)
    assert view.status == 200
    assert view.data == b"test"
    first = next(f for f in client.frames if isinstance(f, HeadersFrame) and f.stream_id == 1)
    assert "END_STREAM" not in first.flags  # RFC 9113 §8.1: a 1xx never ends the stream


def test_response_body_is_framed_within_the_clients_max_frame_size(client: H2Client) -> None:
    client.send(client.factory.settings({Setting.INITIAL_WINDOW_SIZE: 2**31 - 1}))
    client.send(client.factory.window_update(0, 2**30))
    client.send(client.factory.headers(1, client.factory.request()))
    body = bytes(range(256)) * 160  # 40 KiB
    client.answer(b"HTTP/1.1 200 OK\r\ncontent-length: 40960\r\n\r\n" + body)
    view = client.stream(1)
    assert view.data == body
    assert max(view.data_frames) <= 16384  # RFC 9113 §4.2: the client's SETTINGS_MAX_FRAME_SIZE
    assert all(len(f.data) <= 16384 for f in client.frames if isinstance(f, DataFrame))


def test_large_response_field_section_is_split_into_continuation_frames(client: H2Client) -> None:
    client.send(client.factory.headers(1, client.factory.request()))
    big = bytes(range(0x21, 0x7F)) * 220  # about 20 KiB that Huffman coding cannot shrink
    client.answer(b"HTTP/1.1 200 OK\r\nx-big: " + big + b"\r\ncontent-length: 0\r\n\r\n")
    frames = [f for f in client.frames if f.stream_id == 1]
    assert isinstance(frames[0], HeadersFrame)
    assert isinstance(frames[1], ContinuationFrame)  # RFC 9113 §4.3: no frame in between
    assert all(  # §4.2: within the client's SETTINGS_MAX_FRAME_SIZE
        len(f.data) <= 16384 for f in frames if isinstance(f, HeadersFrame | ContinuationFrame)
    )
    assert (b"x-big", big) in (client.stream(1).headers or [])


def test_101_from_the_backend_is_never_forwarded(client: H2Client) -> None:
    # RFC 9113 §8.6: HTTP/2 has no 101 (Switching Protocols).
    client.send(client.factory.headers(1, client.factory.request()))
    client.answer(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\nconnection: upgrade\r\n\r\n")
    view = client.stream(1)
    assert view.informational == []
    assert view.status == 502
    client.alive()


def test_backend_that_cannot_be_reached_gets_502_on_the_stream() -> None:
    client = H2Client(auto_connect=False)
    client.handshake()
    client.send(client.factory.headers(1, client.factory.request()))
    client.connect_failed()
    assert client.stream(1).status == 502
    assert client.stream(1).ended
    client.alive()


def test_truncated_response_resets_the_stream_instead_of_ending_it(client: H2Client) -> None:
    client.send(client.factory.headers(1, client.factory.request()))
    client.answer(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
    client.backend_eof()
    view = client.stream(1)
    assert view.data == b"abc"
    assert not view.ended  # the client must not take 3 bytes for the whole body
    assert view.reset == ErrorCode.INTERNAL_ERROR
    client.alive()


# -- timers (on the simulated clock) ----------------------------------------------------


def test_idle_connection_gets_goaway_before_it_is_closed(client: H2Client) -> None:
    frames = client.advance(client.config.timeouts.client_keepalive)
    assert client.closed
    client.connection_error(ErrorCode.NO_ERROR, last_stream=0)  # RFC 9113 §6.8: GOAWAY first
    assert len(frames) == 1


def test_stalled_request_body_gets_408_on_its_stream_only(client: H2Client) -> None:
    post(client)
    client.send(client.factory.data(1, b"te", end_stream=False))
    client.advance(client.config.timeouts.client_body)
    view = client.stream(1)
    assert view.status == 408
    assert view.ended
    assert client.backend.closed  # the half-sent request is abandoned upstream
    client.alive()


def test_response_the_client_makes_no_room_for_is_reset_after_upstream_body() -> None:
    client = H2Client("[timeouts]\nclient_keepalive = 300\n")
    client.handshake({Setting.INITIAL_WINDOW_SIZE: 0})
    client.send(client.factory.headers(1, client.factory.request()))
    client.answer(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nte")
    client.advance(client.config.timeouts.upstream_body)
    assert client.stream(1).reset == ErrorCode.INTERNAL_ERROR
    client.alive()


def test_keepalive_timer_never_cuts_a_response_short() -> None:
    client = H2Client()
    client.handshake({Setting.INITIAL_WINDOW_SIZE: 0})
    client.send(client.factory.headers(1, client.factory.request()))
    client.answer(OK)  # complete upstream; all 4 bytes wait for the window
    client.advance(client.config.timeouts.client_keepalive)
    view = client.stream(1)
    # Either the response is still on its way, or it was reset: never a graceful close.
    assert view.reset is not None or not client.closed


# -- cleartext HTTP/2 with prior knowledge (RFC 9113 §3.3) ----------------------------


def test_h2c_listener_serves_a_client_that_opens_with_the_preface() -> None:
    config = parse_config(
        '[[listeners]]\naddress = "192.0.2.1:8080"\nprotocols = ["http/1.1", "h2c"]\n'
        '[upstreams.app]\nservers = ["http://10.0.0.1:8001"]\n',
        "test.toml",
    )
    client = H2Client(config=config, tls=None)
    assert client.frames == []  # HTTP/1.1 or HTTP/2: the first bytes will tell
    client.handshake()
    assert client.settings_sent()[Setting.MAX_CONCURRENT_STREAMS] == 100
    client.answers.append(OK)
    client.send(client.factory.headers(1, client.factory.request(scheme="http")))
    assert client.stream(1).status == 200
    assert bytes(client.backend.received) == b"GET / HTTP/1.1\r\nhost: example.com\r\n\r\n"


# -- RFC 8441: WebSocket over extended CONNECT ------------------------------------------


def test_extended_connect_websocket_becomes_an_http_1_1_upgrade(client: H2Client) -> None:
    fields = [
        (":method", "CONNECT"),
        (":protocol", "websocket"),
        (":scheme", "https"),
        (":path", "/chat"),
        (":authority", "example.com"),
        ("sec-websocket-version", "13"),
    ]
    client.send(client.factory.headers(1, fields, end_stream=False))
    origin = client.backend.requests[0]
    assert (origin.method, origin.target) == (b"GET", b"/chat")
    headers = dict(origin.headers)
    assert headers[b"upgrade"] == b"websocket"
    assert headers[b"connection"].lower() == b"upgrade"
    key = headers[b"sec-websocket-key"]
    accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
    client.answer(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n"
    )
    view = client.stream(1)
    assert view.status == 200  # RFC 8441 §5: a 2xx opens the tunnel
    assert not view.ended
    start = len(client.backend.received)
    client.send(client.factory.data(1, b"\x81\x05hello", end_stream=False))
    assert bytes(client.backend.received[start:]) == b"\x81\x05hello"
    client.answer(b"\x81\x05world")
    assert client.stream(1).data == b"\x81\x05world"


WEBSOCKET_CONNECT = [
    (":method", "CONNECT"),
    (":protocol", "websocket"),
    (":scheme", "https"),
    (":path", "/chat"),
    (":authority", "example.com"),
]
"""An extended CONNECT (RFC 8441) for a WebSocket, without END_STREAM."""


def _connection_credit(client: H2Client) -> int:
    """Connection-window credit the proxy has given back so far."""
    updates = [f for f in client.of_type(WindowUpdateFrame) if f.stream_id == 0]
    return sum(f.window_increment for f in updates)


@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: d3Jvbmc=\r\n\r\n",
            id="wrong-accept-502",
        ),
        pytest.param(OK, id="no-upgrade-200"),
    ],
)
def test_early_tunnel_data_gets_its_credit_back_when_no_tunnel_starts(answer: bytes) -> None:
    """Found by the HTTP/2 fuzz harness: DATA sent on an extended CONNECT before the
    backend answered waited for a tunnel that never came, and its connection-window
    credit was never returned: a few such streams closed the client's window for good."""
    client = H2Client("[http2]\nconnection_window_size = 65535\n")
    client.handshake()
    client.send(client.factory.headers(1, WEBSOCKET_CONNECT, end_stream=False))
    for _ in range(3):
        client.send(client.factory.data(1, b"x" * 16 * KIB, end_stream=False))
    assert _connection_credit(client) == 0  # held while the upgrade is undecided
    client.answer(answer)
    assert client.stream(1).status in (200, 502)
    # h2 gives credit back in batches, once half the connection window is used up.
    assert _connection_credit(client) >= 32 * KIB


def test_early_tunnel_data_gets_its_credit_back_when_the_client_resets_the_stream() -> None:
    client = H2Client("[http2]\nconnection_window_size = 65535\n")
    client.handshake()
    client.send(client.factory.headers(1, WEBSOCKET_CONNECT, end_stream=False))
    for _ in range(3):
        client.send(client.factory.data(1, b"x" * 16 * KIB, end_stream=False))
    assert _connection_credit(client) == 0
    client.send(client.factory.rst_stream(1, ErrorCode.CANCEL))
    assert _connection_credit(client) >= 32 * KIB
