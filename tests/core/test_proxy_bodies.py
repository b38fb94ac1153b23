"""Playbooks of message bodies: streaming, chunked framing, trailers, bodiless responses, 1xx."""

from __future__ import annotations

from sansproxy.commands import Close, OpenUpstream, Send
from sansproxy.events import ConnId, DataReceived, EofReceived, UpstreamConnected
from tests.playbook import Placeholder, Playbook

GET = b"GET /x HTTP/1.1\r\nHost: example.com\r\n\r\n"
FWD_GET = b"GET /x HTTP/1.1\r\nhost: example.com\r\n\r\n"


def test_content_length_request_body_is_streamed_piecewise(kit) -> None:
    pb = Playbook(kit.config())
    c = pb.accept()
    u = Placeholder(ConnId)
    assert (
        pb
        >> DataReceived(
            conn=c, data=b"POST /up HTTP/1.1\r\nHost: example.com\r\nContent-Length: 10\r\n\r\nhel"
        )
        << OpenUpstream(conn=u, host="10.0.0.1", port=8001)
        >> DataReceived(conn=c, data=b"lo")
        # Pieces that arrive while connecting are sent once connected.
        >> UpstreamConnected(conn=u)
        << Send(
            conn=u,
            data=b"POST /up HTTP/1.1\r\nhost: example.com\r\ncontent-length: 10\r\n\r\nhello",
        )
        >> DataReceived(conn=c, data=b"wor")
        << Send(conn=u, data=b"wor")
        >> DataReceived(conn=c, data=b"ld")
        << Send(conn=u, data=b"ld")
        >> DataReceived(conn=u, data=b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
        << Send(conn=c, data=b"HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n")
        >> EofReceived(conn=c)
        << Close(conn=c)
        >> EofReceived(conn=u)
        << Close(conn=u)
    )
    kit.assert_clean(pb)


def test_chunked_request_body_is_streamed_piecewise_with_its_trailers(kit) -> None:
    pb = Playbook(kit.config())
    c = pb.accept()
    head = b"POST /up HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
    u = kit.forward(
        pb,
        c,
        head,
        b"POST /up HTTP/1.1\r\nhost: example.com\r\ntransfer-encoding: chunked\r\n\r\n",
    )
    assert (
        pb
        >> DataReceived(conn=c, data=b"5\r\nhel")
        << Send(conn=u, data=b"3\r\nhel\r\n")
        >> DataReceived(conn=c, data=b"lo\r\n6;ext=1\r\n world\r\n")
        << Send(conn=u, data=b"2\r\nlo\r\n6\r\n world\r\n")
        >> DataReceived(conn=c, data=b"0\r\nX-Checksum: abc\r\n\r\n")
        << Send(conn=u, data=b"0\r\nx-checksum: abc\r\n\r\n")
        >> DataReceived(conn=u, data=b"HTTP/1.1 204 No Content\r\n\r\n")
        << Send(conn=c, data=b"HTTP/1.1 204 No Content\r\n\r\n")
        >> EofReceived(conn=c)
        << Close(conn=c)
        >> EofReceived(conn=u)
        << Close(conn=u)
    )
    kit.assert_clean(pb)


def test_content_length_response_is_streamed_piecewise(kit) -> None:
    pb = Playbook(kit.config())
    c = pb.accept()
    u = kit.forward(pb, c, GET, FWD_GET)
    assert (
        pb
        >> DataReceived(conn=u, data=b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhel")
        << Send(conn=c, data=b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\nhel")
        >> DataReceived(conn=u, data=b"lo ")
        << Send(conn=c, data=b"lo ")
        >> DataReceived(conn=u, data=b"world")
        << Send(conn=c, data=b"world")
        >> EofReceived(conn=c)
        << Close(conn=c)
        >> EofReceived(conn=u)
        << Close(conn=u)
    )
    kit.assert_clean(pb)


def test_chunked_response_is_streamed_piecewise_with_its_trailers(kit) -> None:
    pb = Playbook(kit.config())
    c = pb.accept()
    u = kit.forward(
        pb,
        c,
        b"GET /x HTTP/1.1\r\nHost: example.com\r\nTE: trailers\r\n\r\n",
        b"GET /x HTTP/1.1\r\nhost: example.com\r\nte: trailers\r\n\r\n",
    )
    assert (
        pb
        >> DataReceived(
            conn=u,
            data=b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: grpc-status\r\n\r\n",
        )
        << Send(
            conn=c,
            data=b"HTTP/1.1 200 OK\r\ntrailer: grpc-status\r\nTransfer-Encoding: chunked\r\n\r\n",
        )
        >> DataReceived(conn=u, data=b"4\r\nda")
        << Send(conn=c, data=b"2\r\nda\r\n")
        >> DataReceived(conn=u, data=b"ta\r\n")
        << Send(conn=c, data=b"2\r\nta\r\n")
        >> DataReceived(conn=u, data=b"0\r\ngrpc-status: 0\r\n\r\n")
        << Send(conn=c, data=b"0\r\ngrpc-status: 0\r\n\r\n")
        >> EofReceived(conn=c)
        << Close(conn=c)
        >> EofReceived(conn=u)
        << Close(conn=u)
    )
    kit.assert_clean(pb)


def test_close_delimited_response_ends_at_backend_eof(kit) -> None:
    pb = Playbook(kit.config())
    c = pb.accept()
    u = kit.forward(pb, c, GET, FWD_GET)
    # No Content-Length, no Transfer-Encoding, HTTP/1.0: the body runs until EOF
    # (RFC 9112 §6.3 item 8); the HTTP/1.1 client gets it chunked and stays connected.
    assert (
        pb
        >> DataReceived(conn=u, data=b"HTTP/1.0 200 OK\r\n\r\nabc")
        << Send(conn=c, data=b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        >> DataReceived(conn=u, data=b"de")
        << Send(conn=c, data=b"2\r\nde\r\n")
        >> EofReceived(conn=u)
        << Send(conn=c, data=b"0\r\n\r\n")
        << Close(conn=u)
    )
    assert pb.advance(60) << Close(conn=c)
    kit.assert_clean(pb)


def test_head_response_has_no_body_and_keeps_both_connections(kit) -> None:
    pb = Playbook(kit.config())
    c = pb.accept()
    u = kit.forward(
        pb,
        c,
        b"HEAD /x HTTP/1.1\r\nHost: example.com\r\n\r\n",
        b"HEAD /x HTTP/1.1\r\nhost: example.com\r\n\r\n",
    )
    assert (
        pb
        >> DataReceived(conn=u, data=b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
        << Send(conn=c, data=b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n")
        # Still reusable: the next request goes to the same connection.
        >> DataReceived(conn=c, data=GET)
        << Send(conn=u, data=FWD_GET)
        >> DataReceived(conn=u, data=b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
        << Send(conn=c, data=b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello")
        >> EofReceived(conn=c)
        << Close(conn=c)
        >> EofReceived(conn=u)
        << Close(conn=u)
    )
    kit.assert_clean(pb)


def test_head_response_announcing_chunked_has_no_body(kit) -> None:
    pb = Playbook(kit.config())
    c = pb.accept()
    u = kit.forward(
        pb,
        c,
        b"HEAD /x HTTP/1.1\r\nHost: example.com\r\n\r\n",
        b"HEAD /x HTTP/1.1\r\nhost: example.com\r\n\r\n",
    )
    assert (
        pb
        >> DataReceived(conn=u, data=b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        << Send(conn=c, data=b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        >> EofReceived(conn=c)
        << Close(conn=c)
        >> EofReceived(conn=u)
        << Close(conn=u)
    )
    kit.assert_clean(pb)


def test_204_and_304_responses_have_no_body(kit) -> None:
    pb = Playbook(kit.config())
    c = pb.accept()
    u = kit.forward(pb, c, GET, FWD_GET)
    assert (
        pb
        >> DataReceived(conn=u, data=b"HTTP/1.1 204 No Content\r\n\r\n")
        << Send(conn=c, data=b"HTTP/1.1 204 No Content\r\n\r\n")
        >> DataReceived(
            conn=c, data=b'GET /x HTTP/1.1\r\nHost: example.com\r\nIf-None-Match: "e"\r\n\r\n'
        )
        << Send(conn=u, data=b'GET /x HTTP/1.1\r\nhost: example.com\r\nif-none-match: "e"\r\n\r\n')
        >> DataReceived(
            conn=u, data=b'HTTP/1.1 304 Not Modified\r\nETag: "e"\r\nContent-Length: 5\r\n\r\n'
        )
        << Send(conn=c, data=b'HTTP/1.1 304 Not Modified\r\netag: "e"\r\ncontent-length: 5\r\n\r\n')
        # Both ended without a body: the connections carry on.
        >> DataReceived(conn=c, data=GET)
        << Send(conn=u, data=FWD_GET)
        >> DataReceived(conn=u, data=b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        << Send(conn=c, data=b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        >> EofReceived(conn=c)
        << Close(conn=c)
        >> EofReceived(conn=u)
        << Close(conn=u)
    )
    kit.assert_clean(pb)


EARLY_HINTS = b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"


def test_103_early_hints_reach_an_http11_client(kit) -> None:
    pb = Playbook(kit.config())
    c = pb.accept()
    u = kit.forward(pb, c, GET, FWD_GET)
    assert (
        pb
        >> DataReceived(conn=u, data=EARLY_HINTS)
        << Send(conn=c, data=b"HTTP/1.1 103 Early Hints\r\nlink: </s.css>; rel=preload\r\n\r\n")
        >> DataReceived(conn=u, data=b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        << Send(conn=c, data=b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        >> EofReceived(conn=c)
        << Close(conn=c)
        >> EofReceived(conn=u)
        << Close(conn=u)
    )
    kit.assert_clean(pb)


def test_103_early_hints_are_not_sent_to_an_http10_client(kit) -> None:
    # RFC 9110 §15.2: a server must not send a 1xx response to an HTTP/1.0 client.
    pb = Playbook(kit.config())
    c = pb.accept()
    u = kit.forward(
        pb,
        c,
        b"GET /x HTTP/1.0\r\nHost: example.com\r\n\r\n",
        FWD_GET,
    )
    assert (
        pb
        >> DataReceived(conn=u, data=EARLY_HINTS)
        >> DataReceived(conn=u, data=b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        << Send(conn=c, data=b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nConnection: close\r\n\r\nok")
        << Close(conn=c)
        >> EofReceived(conn=u)
        << Close(conn=u)
    )
    kit.assert_clean(pb)


def test_expect_100_continue_is_answered_by_the_proxy_and_not_forwarded(kit) -> None:
    pb = Playbook(kit.config())
    c = pb.accept()
    u = Placeholder(ConnId)
    assert (
        pb
        >> DataReceived(
            conn=c,
            data=b"PUT /f HTTP/1.1\r\nHost: example.com\r\nExpect: 100-continue\r\n"
            b"Content-Length: 3\r\n\r\n",
        )
        << Send(conn=c, data=b"HTTP/1.1 100 Continue\r\n\r\n")
        << OpenUpstream(conn=u, host="10.0.0.1", port=8001)
        >> UpstreamConnected(conn=u)
        << Send(conn=u, data=b"PUT /f HTTP/1.1\r\nhost: example.com\r\ncontent-length: 3\r\n\r\n")
        >> DataReceived(conn=c, data=b"abc")
        << Send(conn=u, data=b"abc")
        # A backend's own 100 Continue is not passed on: the client already had one.
        >> DataReceived(conn=u, data=b"HTTP/1.1 100 Continue\r\n\r\n")
        >> DataReceived(conn=u, data=b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        << Send(conn=c, data=b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
        >> EofReceived(conn=c)
        << Close(conn=c)
        >> EofReceived(conn=u)
        << Close(conn=u)
    )
    kit.assert_clean(pb)


def test_http10_client_gets_a_close_delimited_response_and_the_connection_closes(kit) -> None:
    pb = Playbook(kit.config())
    c = pb.accept()
    # No Host: an HTTP/1.0 request may omit it; the backend gets the server's authority.
    u = kit.forward(
        pb, c, b"GET /old HTTP/1.0\r\n\r\n", b"GET /old HTTP/1.1\r\nhost: 10.0.0.1:8001\r\n\r\n"
    )
    assert (
        pb
        >> DataReceived(conn=u, data=b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        << Send(conn=c, data=b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
        >> DataReceived(conn=u, data=b"3\r\nabc\r\n")
        << Send(conn=c, data=b"abc")
        >> DataReceived(conn=u, data=b"0\r\nX-Late: 1\r\n\r\n")
        << Close(conn=c)
    )
    # The upstream side was a clean HTTP/1.1 cycle: it stays pooled.
    assert pb.advance(60) << Close(conn=u)
    kit.assert_clean(pb)
