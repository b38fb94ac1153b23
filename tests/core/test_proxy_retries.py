"""Playbooks of resending a request and failing over (RFC 9110 §9.2.2, rule 4 of the core)."""

from __future__ import annotations

from sansproxy.commands import Close, OpenUpstream, Send
from sansproxy.events import (
    ConnectionLost,
    ConnId,
    DataReceived,
    EofReceived,
    UpstreamConnected,
    UpstreamFailed,
    Written,
)
from tests.playbook import Placeholder, Playbook

GET_X = b"GET /x HTTP/1.1\r\nHost: example.com\r\n\r\n"
FWD_X = b"GET /x HTTP/1.1\r\nhost: example.com\r\n\r\n"
GET_Y = b"GET /y HTTP/1.1\r\nHost: example.com\r\n\r\n"
FWD_Y = b"GET /y HTTP/1.1\r\nhost: example.com\r\n\r\n"
POST_Y = b"POST /y HTTP/1.1\r\nHost: example.com\r\nContent-Length: 3\r\n\r\nabc"
FWD_POST_Y = b"POST /y HTTP/1.1\r\nhost: example.com\r\ncontent-length: 3\r\n\r\nabc"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
OK_OUT = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


def _pooled(kit, pb: Playbook) -> tuple[ConnId, Placeholder[ConnId]]:
    """A client whose first exchange left an idle connection to server A in the pool."""
    c = pb.accept()
    u = kit.forward(pb, c, GET_X, FWD_X)
    assert pb >> DataReceived(conn=u, data=OK) << Send(conn=c, data=OK_OUT)
    assert pb >> Written(conn=u, nbytes=len(FWD_X)) >> Written(conn=c, nbytes=len(OK_OUT))
    return c, u


def test_get_is_resent_when_a_reused_connection_closes_before_responding(kit) -> None:
    pb = Playbook(kit.config())
    c, u = _pooled(kit, pb)
    u2 = Placeholder(ConnId)
    assert (
        pb
        >> DataReceived(conn=c, data=GET_Y)
        << Send(conn=u, data=FWD_Y)
        >> Written(conn=u, nbytes=len(FWD_Y))
        # The backend had closed the idle connection: nothing was processed, send it again.
        >> EofReceived(conn=u)
        << Close(conn=u, abort=True)
        << OpenUpstream(conn=u2, host="10.0.0.1", port=8001)
        >> UpstreamConnected(conn=u2)
        << Send(conn=u2, data=FWD_Y)
        >> DataReceived(conn=u2, data=OK)
        << Send(conn=c, data=OK_OUT)
        >> EofReceived(conn=c)
        << Close(conn=c)
        >> EofReceived(conn=u2)
        << Close(conn=u2)
    )
    kit.assert_clean(pb)


def test_get_is_resent_when_a_reused_connection_is_reset_before_responding(kit) -> None:
    pb = Playbook(kit.config())
    c, u = _pooled(kit, pb)
    u2 = Placeholder(ConnId)
    assert (
        pb
        >> DataReceived(conn=c, data=GET_Y)
        << Send(conn=u, data=FWD_Y)
        >> ConnectionLost(conn=u, reason="connection reset")
        << OpenUpstream(conn=u2, host="10.0.0.1", port=8001)
        >> UpstreamConnected(conn=u2)
        << Send(conn=u2, data=FWD_Y)
        >> DataReceived(conn=u2, data=OK)
        << Send(conn=c, data=OK_OUT)
        >> EofReceived(conn=c)
        << Close(conn=c)
        >> EofReceived(conn=u2)
        << Close(conn=u2)
    )
    kit.assert_clean(pb)


def test_post_is_resent_when_no_byte_reached_the_reused_connection(kit) -> None:
    pb = Playbook(kit.config())
    c, u = _pooled(kit, pb)
    u2 = Placeholder(ConnId)
    assert (
        pb
        >> DataReceived(conn=c, data=POST_Y)
        << Send(conn=u, data=FWD_POST_Y)
        # No Written: the request never left the proxy, so resending cannot duplicate it.
        >> EofReceived(conn=u)
        << Close(conn=u, abort=True)
        << OpenUpstream(conn=u2, host="10.0.0.1", port=8001)
        >> UpstreamConnected(conn=u2)
        << Send(conn=u2, data=FWD_POST_Y)
        >> DataReceived(conn=u2, data=OK)
        << Send(conn=c, data=OK_OUT)
        >> EofReceived(conn=c)
        << Close(conn=c)
        >> EofReceived(conn=u2)
        << Close(conn=u2)
    )
    kit.assert_clean(pb)


def test_post_is_not_resent_once_bytes_reached_the_reused_connection(kit) -> None:
    pb = Playbook(kit.config())
    c, u = _pooled(kit, pb)
    assert (
        pb
        >> DataReceived(conn=c, data=POST_Y)
        << Send(conn=u, data=FWD_POST_Y)
        >> Written(conn=u, nbytes=10)
        >> EofReceived(conn=u)
        << Close(conn=u, abort=True)
        << Send(conn=c, data=kit.error(502))
        << Close(conn=c)
    )
    kit.assert_clean(pb)


def test_fresh_connection_closing_before_the_response_is_502_with_no_other_server(kit) -> None:
    pb = Playbook(kit.config(servers=1))
    c = pb.accept()
    u = kit.forward(pb, c, GET_X, FWD_X)
    # Not a stale pooled connection: the backend saw the request and gave up on it.
    assert (
        pb
        >> EofReceived(conn=u)
        << Close(conn=u, abort=True)
        << Send(conn=c, data=kit.error(502))
        << Close(conn=c)
    )
    kit.assert_clean(pb)


def test_second_failure_after_a_resend_is_502(kit) -> None:
    pb = Playbook(kit.config())
    c, u = _pooled(kit, pb)
    u2 = Placeholder(ConnId)
    assert (
        pb
        >> DataReceived(conn=c, data=GET_Y)
        << Send(conn=u, data=FWD_Y)
        >> EofReceived(conn=u)
        << Close(conn=u, abort=True)
        << OpenUpstream(conn=u2, host="10.0.0.1", port=8001)
        >> UpstreamConnected(conn=u2)
        << Send(conn=u2, data=FWD_Y)
        >> EofReceived(conn=u2)
        << Close(conn=u2, abort=True)
        << Send(conn=c, data=kit.error(502))
        << Close(conn=c)
    )
    kit.assert_clean(pb)


def test_connect_failure_falls_over_to_the_next_server(kit) -> None:
    pb = Playbook(kit.config(servers=2))
    c = pb.accept()
    ua = Placeholder(ConnId)
    ub = Placeholder(ConnId)
    assert (
        pb
        >> DataReceived(conn=c, data=POST_Y)
        << OpenUpstream(conn=ua, host="10.0.0.1", port=8001)
        >> UpstreamFailed(conn=ua, reason="connection refused")
        << OpenUpstream(conn=ub, host="10.0.0.2", port=8002)
        >> UpstreamConnected(conn=ub)
        << Send(conn=ub, data=FWD_POST_Y)
        >> DataReceived(conn=ub, data=OK)
        << Send(conn=c, data=OK_OUT)
        >> EofReceived(conn=c)
        << Close(conn=c)
        >> EofReceived(conn=ub)
        << Close(conn=ub)
    )
    kit.assert_clean(pb)


def test_connect_failure_on_every_server_is_502(kit) -> None:
    pb = Playbook(kit.config(servers=2))
    c = pb.accept()
    ua = Placeholder(ConnId)
    ub = Placeholder(ConnId)
    assert (
        pb
        >> DataReceived(conn=c, data=GET_X)
        << OpenUpstream(conn=ua, host="10.0.0.1", port=8001)
        >> UpstreamFailed(conn=ua, reason="connection refused")
        << OpenUpstream(conn=ub, host="10.0.0.2", port=8002)
        >> UpstreamFailed(conn=ub, reason="no route to host")
        << Send(conn=c, data=kit.error(502))
        << Close(conn=c)
    )
    kit.assert_clean(pb)


def test_connect_timeout_on_every_server_is_504(kit) -> None:
    pb = Playbook(kit.config(servers=2, upstream_connect=5))
    c = pb.accept()
    ua = Placeholder(ConnId)
    ub = Placeholder(ConnId)
    assert (
        pb >> DataReceived(conn=c, data=GET_X) << OpenUpstream(conn=ua, host="10.0.0.1", port=8001)
    )
    assert pb.advance(4.9)
    assert (
        pb.advance(0.1)
        << Close(conn=ua, abort=True)
        << OpenUpstream(conn=ub, host="10.0.0.2", port=8002)
    )
    assert (
        pb.advance(5)
        << Close(conn=ub, abort=True)
        << Send(conn=c, data=kit.error(504))
        << Close(conn=c)
    )
    kit.assert_clean(pb)


def test_body_too_big_to_replay_is_not_sent_to_the_next_server(kit) -> None:
    pb = Playbook(kit.config(servers=2, retry_buffer_bytes=4))
    c = pb.accept()
    ua = Placeholder(ConnId)
    assert (
        pb
        >> DataReceived(
            conn=c, data=b"POST /y HTTP/1.1\r\nHost: example.com\r\nContent-Length: 6\r\n\r\n"
        )
        << OpenUpstream(conn=ua, host="10.0.0.1", port=8001)
        >> DataReceived(conn=c, data=b"abcdef")
        # The body is gone from the proxy's memory: another server cannot get it whole.
        >> UpstreamFailed(conn=ua, reason="connection refused")
        << Send(conn=c, data=kit.error(502))
        << Close(conn=c)
    )
    kit.assert_clean(pb)
