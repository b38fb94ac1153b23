"""Playbooks of timeouts, on the playbook's simulated clock.

Each test first lets the clock run to just before the deadline (nothing may
happen), then past it.
"""

from __future__ import annotations

from sansproxy.commands import Close, Send
from sansproxy.events import DataReceived, EofReceived
from tests.playbook import Playbook

GET = b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n"
FWD_GET = b"GET /x HTTP/1.1\r\nhost: a\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
OK_OUT = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


def test_slow_request_head_is_408_however_steadily_it_trickles(kit) -> None:
    pb = Playbook(kit.config(client_header=10))
    c = pb.accept()
    # Slowloris: a byte now and then never pushes back the deadline set at accept.
    for piece in (b"GET / HTTP/1.1\r\n", b"H", b"o", b"s", b"t"):
        assert pb >> DataReceived(conn=c, data=piece)
        assert pb.advance(1.5)
    assert pb.advance(2.4)
    pb.advance(0.1)
    kit.answered_with_error(pb, c, 408)
    kit.assert_clean(pb)


def test_idle_keep_alive_client_is_closed_silently(kit) -> None:
    pb = Playbook(kit.config(client_keepalive=30, upstream_keepalive=100))
    c = pb.accept()
    u = kit.forward(pb, c, GET, FWD_GET)
    assert pb >> DataReceived(conn=u, data=OK) << Send(conn=c, data=OK_OUT)
    assert pb.advance(29.9)
    # No 408 between requests: the client did nothing wrong (RFC 9112 §9.5).
    assert pb.advance(0.1) << Close(conn=c)
    assert pb.advance(70) << Close(conn=u)
    kit.assert_clean(pb)


def test_next_request_head_gets_the_header_timeout_from_its_first_byte(kit) -> None:
    pb = Playbook(kit.config(client_header=10, client_keepalive=30))
    c = pb.accept()
    u = kit.forward(pb, c, GET, FWD_GET)
    assert pb >> DataReceived(conn=u, data=OK) << Send(conn=c, data=OK_OUT)
    assert pb.advance(25) >> DataReceived(conn=c, data=b"GET /y HTTP/1.1\r\n")
    # Past the keep-alive deadline, inside the header deadline: still open.
    assert pb.advance(9.9)
    pb.advance(0.1)
    kit.answered_with_error(pb, c, 408)
    assert pb >> EofReceived(conn=u) << Close(conn=u)
    kit.assert_clean(pb)


def test_request_body_pause_longer_than_client_body_is_408(kit) -> None:
    pb = Playbook(kit.config(client_body=30))
    c = pb.accept()
    u = kit.forward(
        pb,
        c,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc",
        b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 10\r\n\r\nabc",
    )
    # Progress pushes the deadline back.
    assert pb.advance(20) >> DataReceived(conn=c, data=b"def") << Send(conn=u, data=b"def")
    assert pb.advance(29.9)
    pb.advance(0.1) << Close(conn=u, abort=True)
    kit.answered_with_error(pb, c, 408)
    kit.assert_clean(pb)


def test_backend_slow_to_send_the_response_head_is_504(kit) -> None:
    pb = Playbook(kit.config(upstream_header=60, client_body=30))
    c = pb.accept()
    u = kit.forward(
        pb,
        c,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\nabc",
        b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 6\r\n\r\nabc",
    )
    # The backend's clock starts when the request is complete, at t=5.
    assert pb.advance(5) >> DataReceived(conn=c, data=b"def") << Send(conn=u, data=b"def")
    assert pb.advance(59.9)
    assert (
        pb.advance(0.1)
        << Close(conn=u, abort=True)
        << Send(conn=c, data=kit.error(504))
        << Close(conn=c)
    )
    kit.assert_clean(pb)


def test_backend_pausing_mid_body_longer_than_upstream_body_aborts_the_client(kit) -> None:
    pb = Playbook(kit.config(upstream_body=60))
    c = pb.accept()
    u = kit.forward(pb, c, GET, FWD_GET)
    assert (
        pb
        >> DataReceived(conn=u, data=b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab")
        << Send(conn=c, data=b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nab")
    )
    assert pb.advance(50) >> DataReceived(conn=u, data=b"cd") << Send(conn=c, data=b"cd")
    assert pb.advance(59.9)
    # The response has started: the only honest signal left is an abort.
    assert pb.advance(0.1) << Close(conn=u, abort=True) << Close(conn=c, abort=True)
    kit.assert_clean(pb)


def test_response_timers_do_not_fire_after_a_complete_exchange(kit) -> None:
    pb = Playbook(kit.config(upstream_header=5, upstream_body=5, client_keepalive=100))
    c = pb.accept()
    u = kit.forward(pb, c, GET, FWD_GET)
    assert pb >> DataReceived(conn=u, data=OK) << Send(conn=c, data=OK_OUT)
    assert pb.advance(59.9)
    assert pb.advance(0.1) << Close(conn=u)
    assert pb.advance(40) << Close(conn=c)
    kit.assert_clean(pb)
