"""Playbooks of plain exchanges: keep-alive, the upstream pool and pipelining."""

from __future__ import annotations

from sansproxy.commands import Close, OpenUpstream, PauseReading, ResumeReading, Send
from sansproxy.events import ConnId, DataReceived, EofReceived, UpstreamConnected, Written
from tests.playbook import Placeholder, Playbook

GET_X = b"GET /x HTTP/1.1\r\nHost: example.com\r\n\r\n"
FWD_X = b"GET /x HTTP/1.1\r\nhost: example.com\r\n\r\n"
GET_Y = b"GET /y HTTP/1.1\r\nHost: example.com\r\n\r\n"
FWD_Y = b"GET /y HTTP/1.1\r\nhost: example.com\r\n\r\n"
OK_HELLO = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
OK_HELLO_OUT = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"


def test_keep_alive_get_reuses_the_pooled_upstream_connection(kit) -> None:
    pb = Playbook(kit.config())
    c = pb.accept()
    u = kit.forward(pb, c, GET_X, FWD_X)
    assert pb >> DataReceived(conn=u, data=OK_HELLO) << Send(conn=c, data=OK_HELLO_OUT)
    # The second request goes straight to the pooled connection: no OpenUpstream.
    assert pb >> DataReceived(conn=c, data=GET_Y) << Send(conn=u, data=FWD_Y)
    assert pb >> DataReceived(conn=u, data=OK_HELLO) << Send(conn=c, data=OK_HELLO_OUT)
    assert pb >> EofReceived(conn=c) << Close(conn=c)
    assert pb.advance(60) << Close(conn=u)
    kit.assert_clean(pb)


def test_idle_pooled_connection_is_closed_after_upstream_keepalive(kit) -> None:
    pb = Playbook(kit.config(upstream_keepalive=5, client_keepalive=60))
    c = pb.accept()
    u = kit.forward(pb, c, GET_X, FWD_X)
    assert pb >> DataReceived(conn=u, data=OK_HELLO) << Send(conn=c, data=OK_HELLO_OUT)
    assert pb.advance(4.9)
    assert pb.advance(0.1) << Close(conn=u)
    # The client is still kept alive; its next request needs a new connection.
    u2 = Placeholder(ConnId)
    assert (
        pb
        >> DataReceived(conn=c, data=GET_Y)
        << OpenUpstream(conn=u2, host="10.0.0.1", port=8001)
        >> UpstreamConnected(conn=u2)
        << Send(conn=u2, data=FWD_Y)
        >> DataReceived(conn=u2, data=OK_HELLO)
        << Send(conn=c, data=OK_HELLO_OUT)
    )
    assert u2() != u()
    assert pb.advance(5) << Close(conn=u2)
    assert pb.advance(55) << Close(conn=c)
    kit.assert_clean(pb)


def test_pool_keeps_at_most_max_idle_per_server(kit) -> None:
    pb = Playbook(kit.config(max_idle_per_server=1))
    c1 = pb.accept()
    c2 = pb.accept(peer=("203.0.113.8", 40000))
    u1 = kit.forward(pb, c1, GET_X, FWD_X)
    u2 = kit.forward(pb, c2, GET_Y, FWD_Y)
    assert pb >> DataReceived(conn=u1, data=OK_HELLO) << Send(conn=c1, data=OK_HELLO_OUT)
    # The pool already holds u1: u2 is closed instead of pooled.
    assert (
        pb
        >> DataReceived(conn=u2, data=OK_HELLO)
        << Send(conn=c2, data=OK_HELLO_OUT)
        << Close(conn=u2)
    )
    assert pb >> DataReceived(conn=c2, data=GET_X) << Send(conn=u1, data=FWD_X)
    assert pb >> DataReceived(conn=u1, data=OK_HELLO) << Send(conn=c2, data=OK_HELLO_OUT)
    assert pb >> EofReceived(conn=c1) << Close(conn=c1)
    assert pb >> EofReceived(conn=c2) << Close(conn=c2)
    assert pb >> EofReceived(conn=u1) << Close(conn=u1)
    kit.assert_clean(pb)


def test_pooled_connection_closed_by_backend_while_idle_is_dropped(kit) -> None:
    pb = Playbook(kit.config())
    c = pb.accept()
    u = kit.forward(pb, c, GET_X, FWD_X)
    assert pb >> DataReceived(conn=u, data=OK_HELLO) << Send(conn=c, data=OK_HELLO_OUT)
    assert pb >> EofReceived(conn=u) << Close(conn=u)
    u2 = Placeholder(ConnId)
    assert (
        pb
        >> DataReceived(conn=c, data=GET_Y)
        << OpenUpstream(conn=u2, host="10.0.0.1", port=8001)
        >> UpstreamConnected(conn=u2)
        << Send(conn=u2, data=FWD_Y)
        >> DataReceived(conn=u2, data=OK_HELLO)
        << Send(conn=c, data=OK_HELLO_OUT)
        >> EofReceived(conn=c)
        << Close(conn=c)
        >> EofReceived(conn=u2)
        << Close(conn=u2)
    )
    kit.assert_clean(pb)


def test_pooled_connection_that_talks_while_idle_is_aborted(kit) -> None:
    pb = Playbook(kit.config())
    c = pb.accept()
    u = kit.forward(pb, c, GET_X, FWD_X)
    assert pb >> DataReceived(conn=u, data=OK_HELLO) << Send(conn=c, data=OK_HELLO_OUT)
    # An unsolicited response cannot belong to any request: the connection is unusable.
    assert pb >> DataReceived(conn=u, data=OK_HELLO) << Close(conn=u, abort=True)
    assert pb >> EofReceived(conn=c) << Close(conn=c)
    kit.assert_clean(pb)


def test_backend_connection_close_keeps_the_client_but_not_the_upstream(kit) -> None:
    pb = Playbook(kit.config())
    c = pb.accept()
    u = kit.forward(pb, c, GET_X, FWD_X)
    assert (
        pb
        >> DataReceived(
            conn=u, data=b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi"
        )
        << Send(conn=c, data=b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi")
        << Close(conn=u)
    )
    assert pb.advance(60) << Close(conn=c)
    kit.assert_clean(pb)


def test_client_connection_close_closes_after_the_response_and_pools_the_upstream(kit) -> None:
    pb = Playbook(kit.config())
    c = pb.accept()
    u = kit.forward(
        pb, c, b"GET /x HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n", FWD_X
    )
    assert (
        pb
        >> DataReceived(conn=u, data=OK_HELLO)
        << Send(
            conn=c, data=b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nConnection: close\r\n\r\nhello"
        )
        << Close(conn=c)
    )
    assert pb.advance(60) << Close(conn=u)
    kit.assert_clean(pb)


def test_pipelined_requests_are_answered_in_order(kit) -> None:
    pb = Playbook(kit.config())
    c = pb.accept()
    u = kit.forward(pb, c, GET_X + GET_Y, FWD_X)
    # The second request waits until the first response is complete.
    assert (
        pb
        >> DataReceived(conn=u, data=b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n1")
        << Send(conn=c, data=b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\n1")
        << Send(conn=u, data=FWD_Y)
        >> DataReceived(conn=u, data=b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n2")
        << Send(conn=c, data=b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\n\r\n2")
        >> EofReceived(conn=c)
        << Close(conn=c)
        >> EofReceived(conn=u)
        << Close(conn=u)
    )
    kit.assert_clean(pb)


def test_pipelined_bytes_beyond_high_water_pause_client_reading(kit) -> None:
    pb = Playbook(kit.config(buffer_high_water=100, buffer_low_water=50))
    c = pb.accept()
    u = kit.forward(pb, c, GET_X, FWD_X)
    assert pb >> Written(conn=u, nbytes=len(FWD_X))
    # Requests keep arriving while the first one is being answered: they are buffered
    # until more than 100 bytes wait, then the client is no longer read.
    assert pb >> DataReceived(conn=c, data=GET_Y + GET_Y)
    assert pb >> DataReceived(conn=c, data=GET_Y) << PauseReading(conn=c)
    assert (
        pb
        >> DataReceived(conn=u, data=OK_HELLO)
        << Send(conn=c, data=OK_HELLO_OUT)
        << ResumeReading(conn=c)
        << Send(conn=u, data=FWD_Y)
    )
    for _ in range(2):
        assert (
            pb
            >> Written(conn=c, nbytes=len(OK_HELLO_OUT))
            >> Written(conn=u, nbytes=len(FWD_Y))
            >> DataReceived(conn=u, data=OK_HELLO)
            << Send(conn=c, data=OK_HELLO_OUT)
            << Send(conn=u, data=FWD_Y)
        )
    assert (
        pb
        >> Written(conn=c, nbytes=len(OK_HELLO_OUT))
        >> Written(conn=u, nbytes=len(FWD_Y))
        >> DataReceived(conn=u, data=OK_HELLO)
        << Send(conn=c, data=OK_HELLO_OUT)
        >> EofReceived(conn=c)
        << Close(conn=c)
        >> EofReceived(conn=u)
        << Close(conn=u)
    )
    kit.assert_clean(pb)


def test_half_closed_client_still_gets_its_response(kit) -> None:
    pb = Playbook(kit.config())
    c = pb.accept()
    u = kit.forward(pb, c, GET_X, FWD_X)
    # `nc -N` and scripted clients shut down their sending side after the request.
    assert pb >> EofReceived(conn=c)
    assert (
        pb
        >> DataReceived(conn=u, data=OK_HELLO)
        << Send(
            conn=c, data=b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello"
        )
        << Close(conn=c)
    )
    assert pb.advance(60) << Close(conn=u)
    kit.assert_clean(pb)


def test_half_closed_client_gets_an_error_and_is_closed_at_once(kit) -> None:
    pb = Playbook(kit.config())
    c = pb.accept()
    u = kit.forward(pb, c, GET_X, FWD_X)
    assert pb >> EofReceived(conn=c)
    assert (
        pb
        >> EofReceived(conn=u)
        << Close(conn=u, abort=True)
        << Send(conn=c, data=kit.error(502))
        << Close(conn=c)
    )
    kit.assert_clean(pb)


def test_requests_pipelined_after_connection_close_are_ignored(kit) -> None:
    # RFC 9112 §9.6: a server must not process requests after one that said close.
    pb = Playbook(kit.config())
    c = pb.accept()
    u = kit.forward(
        pb, c, b"GET /x HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n" + GET_Y, FWD_X
    )
    assert (
        pb
        >> DataReceived(conn=u, data=OK_HELLO)
        << Send(
            conn=c, data=b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nConnection: close\r\n\r\nhello"
        )
        << Close(conn=c)
    )
    assert pb.advance(60) << Close(conn=u)
    kit.assert_clean(pb)


def test_extra_crlf_after_an_http10_post_is_ignored(kit) -> None:
    # RFC 9112 §2.2: old HTTP/1.0 clients send a CRLF after a POST body; the request
    # still gets its answer.
    pb = Playbook(kit.config())
    c = pb.accept()
    u = kit.forward(
        pb,
        c,
        b"POST /form HTTP/1.0\r\nHost: example.com\r\nContent-Length: 3\r\n\r\nabc",
        b"POST /form HTTP/1.1\r\nhost: example.com\r\ncontent-length: 3\r\n\r\nabc",
    )
    assert (
        pb
        >> DataReceived(conn=c, data=b"\r\n")
        >> DataReceived(conn=u, data=OK_HELLO)
        << Send(
            conn=c, data=b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nConnection: close\r\n\r\nhello"
        )
        << Close(conn=c)
    )
    assert pb.advance(60) << Close(conn=u)
    kit.assert_clean(pb)


def test_empty_line_before_the_next_request_line_is_ignored(kit) -> None:
    # RFC 9112 §2.2: a server SHOULD ignore at least one empty line before a
    # request-line (clients that send CRLF after a POST body rely on it).
    pb = Playbook(kit.config())
    c = pb.accept()
    u = kit.forward(
        pb,
        c,
        b"POST /form HTTP/1.1\r\nHost: example.com\r\nContent-Length: 3\r\n\r\nabc\r\n",
        b"POST /form HTTP/1.1\r\nhost: example.com\r\ncontent-length: 3\r\n\r\nabc",
    )
    assert (
        pb
        >> DataReceived(conn=u, data=OK_HELLO)
        << Send(conn=c, data=OK_HELLO_OUT)
        >> DataReceived(conn=c, data=GET_Y)
        << Send(conn=u, data=FWD_Y)
        >> DataReceived(conn=u, data=OK_HELLO)
        << Send(conn=c, data=OK_HELLO_OUT)
        >> EofReceived(conn=c)
        << Close(conn=c)
        >> EofReceived(conn=u)
        << Close(conn=u)
    )
    kit.assert_clean(pb)
