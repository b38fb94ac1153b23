"""HTTP/2 conformance of the core, RFC 9113 §7 (error codes) and §8 (HTTP semantics).

Same conventions as ``test_http2_conformance.py``. A malformed request (§8.1.1)
is a stream error of type PROTOCOL_ERROR, and an intermediary must not forward
it: the tests check the backend never gets a complete request.
"""

from __future__ import annotations

import pytest
from hyperframe.frame import (
    GoAwayFrame,
    PushPromiseFrame,
    RstStreamFrame,
    WindowUpdateFrame,
)

from tests.core.h2frames import ErrorCode, H2Client, HeaderInput, StreamView, request

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\ntest"


@pytest.fixture
def client() -> H2Client:
    """A client past the preface, whose backend answers every request with :data:`OK`."""
    client = H2Client()
    client.handshake()
    client.answers.extend([OK] * 8)
    return client


def malformed(client: H2Client, stream_id: int = 1) -> None:
    """Assert §8.1.1: nothing complete went upstream, and a stream error PROTOCOL_ERROR."""
    not_forwarded(client)
    client.stream_error(stream_id, ErrorCode.PROTOCOL_ERROR)
    assert client.stream(stream_id).status is None


def not_forwarded(client: H2Client) -> None:
    """Assert no backend got a complete request, or anything that is not HTTP/1.1."""
    for backend in client.backends:
        assert backend.invalid is None, (backend.invalid, bytes(backend.received))
        assert not any(r.complete for r in backend.requests), bytes(backend.received)
        assert backend.closed or not backend.requests


def refused(client: H2Client, stream_id: int = 1) -> None:
    """Assert §8.1.1 where the proxy may answer first: PROTOCOL_ERROR or a 400, unforwarded."""
    not_forwarded(client)
    if client.stream(stream_id).status is None:
        malformed(client, stream_id)
    else:
        assert client.stream(stream_id).status == 400


def send_fields(client: H2Client, fields: HeaderInput, *, end_stream: bool = True) -> None:
    """A request of exactly ``fields`` (pseudo-header fields included) on stream 1."""
    client.send(client.factory.headers(1, list(fields), end_stream=end_stream))


# -- §7 error codes --------------------------------------------------------------------


def test_7_unknown_error_code_in_goaway_triggers_nothing_special(client: H2Client) -> None:
    frames = client.send(client.factory.goaway(0, 0xFF))
    assert not client.of_type(GoAwayFrame, frames)
    assert client.closed  # as for any GOAWAY from the client


def test_7_unknown_error_code_in_rst_stream_triggers_nothing_special(client: H2Client) -> None:
    client.answers.clear()
    client.send(request(client, 1, "POST", end_stream=False))
    client.send(client.factory.rst_stream(1, 0xFF))
    assert client.backend.closed
    client.alive()


# -- §8.1 HTTP message framing ---------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "HEAD", "POST", "DELETE", "OPTIONS"])
def test_8_1_request_is_answered_on_its_stream(client: H2Client, method: str) -> None:
    client.send(request(client, 1, method))
    assert client.backend.requests[0].method == method.encode()
    view = client.stream(1)
    assert view.status == 200
    assert view.ended
    assert view.data == (b"" if method == "HEAD" else b"test")


def test_8_1_request_with_body_and_trailers_is_answered(client: H2Client) -> None:
    fields = client.factory.request("POST", extra=[("trailer", "x-test")])
    client.send(client.factory.headers(1, fields, end_stream=False))
    client.send(client.factory.data(1, b"test", end_stream=False))
    client.send(client.factory.headers(1, [("x-test", "ok")]))
    origin = client.backend.requests[0]
    assert origin.body == b"test"
    assert origin.trailers == [(b"x-test", b"ok")]
    assert client.stream(1).status == 200


def test_8_1_trailers_without_end_stream_are_malformed(client: H2Client) -> None:
    client.send(request(client, 1, "POST", end_stream=False))
    client.send(client.factory.data(1, b"test", end_stream=False))
    client.send(client.factory.headers(1, [("x-test", "ok")], end_stream=False))
    malformed(client)


def test_8_1_complete_response_may_end_an_unfinished_request_with_no_error(
    client: H2Client,
) -> None:
    client.answers.clear()
    client.send(request(client, 1, "POST", end_stream=False))
    client.answer(OK)  # before the request body ended
    view = client.stream(1)
    assert view.status == 200
    assert view.ended
    assert view.reset == ErrorCode.NO_ERROR
    resets = [f for f in client.frames if isinstance(f, RstStreamFrame)]
    assert client.frames.index(resets[0]) > max(
        i for i, f in enumerate(client.frames) if f.stream_id == 1 and "END_STREAM" in f.flags
    )  # after the response, never instead of it
    client.alive()


def test_8_1_request_data_in_flight_after_the_early_response_is_ignored(
    client: H2Client,
) -> None:
    client.answers.clear()
    client.send(request(client, 1, "POST", end_stream=False))
    client.answer(OK)
    assert client.stream(1).reset == ErrorCode.NO_ERROR
    frames = client.send(client.factory.data(1, b"rest of the upload"))
    # RFC 9113 §5.1: frames on a stream the proxy reset are ignored (flow control aside).
    assert [f for f in frames if not isinstance(f, WindowUpdateFrame)] == []
    client.alive()


def test_8_1_1_content_length_above_the_data_is_malformed(client: H2Client) -> None:
    fields = client.factory.request("POST", extra=[("content-length", "4")])
    client.send(client.factory.headers(1, fields, end_stream=False))
    client.send(client.factory.data(1, b"t"))
    malformed(client)


def test_8_1_1_content_length_below_the_data_is_malformed(client: H2Client) -> None:
    fields = client.factory.request("POST", extra=[("content-length", "1")])
    client.send(client.factory.headers(1, fields, end_stream=False))
    client.send(client.factory.data(1, b"test"))
    malformed(client)


def test_8_1_1_content_length_below_the_sum_of_data_frames_is_malformed(
    client: H2Client,
) -> None:
    fields = client.factory.request("POST", extra=[("content-length", "1")])
    client.send(client.factory.headers(1, fields, end_stream=False))
    client.send(client.factory.data(1, b"test", end_stream=False))
    client.send(client.factory.data(1, b"test"))
    malformed(client)


def test_8_1_1_content_length_without_data_is_malformed(client: H2Client) -> None:
    send_fields(client, client.factory.request("POST", extra=[("content-length", "4")]))
    malformed(client)


def test_8_1_1_content_length_above_the_data_ended_by_trailers_is_malformed(
    client: H2Client,
) -> None:
    # Found by the HTTP/2 fuzz harness: h2 checks the length only when DATA ends the
    # stream, so trailers ended a short body and the HTTP/1.1 codec raised.
    fields = client.factory.request("POST", extra=[("content-length", "5")])
    client.send(client.factory.headers(1, fields, end_stream=False))
    client.send(client.factory.data(1, b"hi", end_stream=False))
    client.send(client.factory.headers(1, [("x-sum", "1")], end_stream=True))
    malformed(client)


def test_8_1_1_content_length_met_before_trailers_is_forwarded(client: H2Client) -> None:
    fields = client.factory.request("POST", extra=[("content-length", "4")])
    client.send(client.factory.headers(1, fields, end_stream=False))
    client.send(client.factory.data(1, b"test", end_stream=False))
    client.send(client.factory.headers(1, [("x-sum", "1")], end_stream=True))
    assert client.backend.requests[0].body == b"test"
    assert client.stream(1).status == 200


def test_8_1_1_matching_content_length_is_forwarded(client: H2Client) -> None:
    fields = client.factory.request("POST", extra=[("content-length", "8")])
    client.send(client.factory.headers(1, fields, end_stream=False))
    client.send(client.factory.data(1, b"test", end_stream=False), client.factory.data(1, b"test"))
    assert client.backend.requests[0].body == b"testtest"
    assert client.stream(1).status == 200


# -- §8.2 HTTP fields ------------------------------------------------------------------


def test_8_2_upper_case_field_name_is_malformed(client: H2Client) -> None:
    send_fields(client, client.factory.request(extra=[("X-TEST", "ok")]))
    malformed(client)


@pytest.mark.parametrize(
    "name",
    [b"x test", b"x:test", b"x\x00test", b"x\x7ftest", b"x-\xe9", b"x\ttest", b""],
    ids=["space", "colon", "nul", "del", "non-ascii", "tab", "empty"],
)
def test_8_2_1_field_name_with_a_forbidden_character_is_malformed(
    client: H2Client, name: bytes
) -> None:
    send_fields(client, client.factory.request(extra=[(name, b"ok")]))
    malformed(client)


@pytest.mark.parametrize(
    "value",
    [b"a\x00b", b"a\nb", b"a\rb", b" ok", b"ok ", b"\tok", b"ok\t"],
    ids=["nul", "lf", "cr", "leading-space", "trailing-space", "leading-tab", "trailing-tab"],
)
def test_8_2_1_field_value_with_a_forbidden_character_is_malformed(
    client: H2Client, value: bytes
) -> None:
    send_fields(client, client.factory.request(extra=[(b"x-test", value)]))
    malformed(client)


INJECTION = "\r\nx-injected: 1"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        pytest.param(
            ":method",
            "GET /x HTTP/1.1" + INJECTION + "\r\n\r\nGET",
            id="method-crlf",
        ),
        pytest.param(
            ":method",
            "GE\x00T",
            id="method-nul",
        ),
        pytest.param(
            ":scheme",
            "https" + INJECTION,
            id="scheme-crlf",
        ),
        pytest.param(":path", "/a" + INJECTION, id="path-crlf"),
        pytest.param(":path", "/a\x00b", id="path-nul"),
        pytest.param(":authority", "example.com" + INJECTION, id="authority-crlf"),
        pytest.param(":authority", "exam\x00ple.com", id="authority-nul"),
    ],
)
def test_8_2_1_pseudo_header_value_with_cr_lf_or_nul_is_malformed(
    client: H2Client, name: str, value: str
) -> None:
    fields = [(n, value.encode() if n == name.encode() else v) for n, v in client.factory.request()]
    send_fields(client, fields)
    refused(client)
    assert all(b"x-injected" not in backend.received for backend in client.backends)


def test_8_2_1_trailer_field_with_a_forbidden_value_is_malformed(client: H2Client) -> None:
    client.send(request(client, 1, "POST", end_stream=False))
    client.send(client.factory.data(1, b"test", end_stream=False))
    client.send(client.factory.headers(1, [("x-test", "a\r\nb")]))
    malformed(client)


def test_8_2_1_field_value_with_inner_whitespace_and_obs_text_is_forwarded(
    client: H2Client,
) -> None:
    send_fields(client, client.factory.request(extra=[(b"x-test", b"a b\tc\x80\xff")]))
    assert (b"x-test", b"a b\tc\x80\xff") in client.backend.requests[0].headers
    assert client.stream(1).status == 200


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("connection", "keep-alive"),
        ("keep-alive", "timeout=5"),
        ("proxy-connection", "keep-alive"),
        ("transfer-encoding", "chunked"),
        ("upgrade", "h2c"),
    ],
)
def test_8_2_2_connection_specific_field_is_malformed(
    client: H2Client, name: str, value: str
) -> None:
    send_fields(client, client.factory.request(extra=[(name, value)]))
    malformed(client)


def test_8_2_2_te_other_than_trailers_is_malformed(client: H2Client) -> None:
    extra = [("trailers", "test"), ("te", "trailers, deflate")]
    send_fields(client, client.factory.request(extra=extra))
    malformed(client)


def test_8_2_2_connection_specific_trailer_field_is_malformed(client: H2Client) -> None:
    client.send(request(client, 1, "POST", end_stream=False))
    client.send(client.factory.data(1, b"test", end_stream=False))
    client.send(client.factory.headers(1, [("connection", "close")]))
    malformed(client)


def test_8_2_2_te_trailers_is_accepted(client: H2Client) -> None:
    send_fields(client, client.factory.request(extra=[("te", "trailers")]))
    assert client.stream(1).status == 200


# -- §8.3 HTTP control data (pseudo-header fields) -------------------------------------


def test_8_3_unknown_pseudo_header_field_is_malformed(client: H2Client) -> None:
    send_fields(client, client.factory.request(extra=[(":test", "ok")]))
    malformed(client)


def test_8_3_response_pseudo_header_field_in_a_request_is_malformed(client: H2Client) -> None:
    send_fields(client, client.factory.request(extra=[(":status", "200")]))
    malformed(client)


def test_8_3_pseudo_header_field_in_trailers_is_malformed(client: H2Client) -> None:
    client.send(request(client, 1, "POST", end_stream=False))
    client.send(client.factory.data(1, b"test", end_stream=False))
    client.send(client.factory.headers(1, [(":method", "POST")]))
    malformed(client)


def test_8_3_pseudo_header_field_after_a_regular_field_is_malformed(client: H2Client) -> None:
    send_fields(client, [("x-test", "ok"), *client.factory.request()])
    malformed(client)


# -- §8.3.1 request pseudo-header fields -----------------------------------------------


def test_8_3_1_empty_path_is_malformed(client: H2Client) -> None:
    send_fields(client, client.factory.request(path=""))
    malformed(client)


@pytest.mark.parametrize("name", [b":method", b":scheme", b":path"])
def test_8_3_1_missing_pseudo_header_field_is_malformed(client: H2Client, name: bytes) -> None:
    send_fields(client, [f for f in client.factory.request() if f[0] != name])
    malformed(client)


@pytest.mark.parametrize(
    ("name", "value"), [(":method", "GET"), (":scheme", "https"), (":path", "/other")]
)
def test_8_3_1_duplicated_pseudo_header_field_is_malformed(
    client: H2Client, name: str, value: str
) -> None:
    fields = client.factory.request()
    fields.insert(3, (name.encode(), value.encode()))  # still before the regular fields
    send_fields(client, fields)
    malformed(client)


def test_8_3_1_duplicated_authority_is_malformed(client: H2Client) -> None:
    fields = client.factory.request()
    fields.insert(3, (b":authority", b"other.example"))
    send_fields(client, fields)
    malformed(client)


def test_8_3_1_authority_with_userinfo_is_malformed(client: H2Client) -> None:
    send_fields(client, client.factory.request(authority="user:pass@example.com"))
    malformed(client)


def test_8_3_1_host_differing_from_authority_is_malformed(client: H2Client) -> None:
    send_fields(client, client.factory.request(extra=[("host", "other.example")]))
    malformed(client)


def test_8_3_1_path_that_is_not_absolute_is_malformed(client: H2Client) -> None:
    send_fields(client, client.factory.request(path="index.html"))
    malformed(client)


def test_8_3_1_method_that_is_not_a_token_is_malformed(client: H2Client) -> None:
    send_fields(client, [(":method", "G T"), *client.factory.request()[1:]])
    refused(client)


def test_8_3_1_asterisk_path_outside_options_is_malformed(client: H2Client) -> None:
    send_fields(client, client.factory.request("GET", path="*"))
    malformed(client)


def test_8_3_1_asterisk_path_of_options_is_forwarded(client: H2Client) -> None:
    send_fields(client, client.factory.request("OPTIONS", path="*"))
    origin = client.backend.requests[0]
    assert (origin.method, origin.target) == (b"OPTIONS", b"*")
    assert client.stream(1).status == 200


def test_8_3_1_protocol_without_connect_is_malformed(client: H2Client) -> None:
    send_fields(client, client.factory.request(extra=[(":protocol", "websocket")]))
    malformed(client)


# -- §8.4 server push ------------------------------------------------------------------


def test_8_4_push_promise_from_a_client_is_a_protocol_error(client: H2Client) -> None:
    client.answers.clear()
    client.send(request(client, 1))
    client.send(client.factory.push_promise(1, 2, client.factory.request()))
    client.connection_error(ErrorCode.PROTOCOL_ERROR)


def test_8_4_proxy_never_pushes(client: H2Client) -> None:
    client.send(request(client, 1))
    assert client.stream(1).status == 200
    assert not client.of_type(PushPromiseFrame)


# -- §8.5 the CONNECT method -----------------------------------------------------------


def test_8_5_connect_with_scheme_is_malformed(client: H2Client) -> None:
    send_fields(
        client,
        [(":method", "CONNECT"), (":scheme", "https"), (":authority", "example.com:443")],
        end_stream=False,
    )
    malformed(client)


def test_8_5_connect_with_path_is_malformed(client: H2Client) -> None:
    send_fields(
        client,
        [(":method", "CONNECT"), (":path", "/"), (":authority", "example.com:443")],
        end_stream=False,
    )
    malformed(client)


def test_8_5_connect_without_authority_is_malformed(client: H2Client) -> None:
    send_fields(client, [(":method", "CONNECT")], end_stream=False)
    malformed(client)


def test_8_5_well_formed_connect_is_refused_by_the_reverse_proxy(client: H2Client) -> None:
    send_fields(client, [(":method", "CONNECT"), (":authority", "example.com:443")])
    assert client.stream(1).status == 405
    assert not client.backends
    client.alive()


# -- §8.7 request reliability ----------------------------------------------------------


def test_8_7_refused_stream_means_not_processed(client: H2Client) -> None:
    client.answers.clear()
    client.send(request(client, 1))
    client.shutdown()
    client.send(request(client, 3))
    assert client.stream(3) == StreamView(reset=ErrorCode.REFUSED_STREAM)
    assert len(client.backends) == 1  # stream 3 reached no backend: safe to retry
