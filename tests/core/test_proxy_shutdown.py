"""Playbooks of graceful shutdown: close what is idle, drain what is busy, then report."""

from __future__ import annotations

from sansproxy.commands import Close, Send, ShutdownComplete
from sansproxy.events import DataReceived, EofReceived, ShutdownRequested
from tests.playbook import Playbook

GET = b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n"
FWD_GET = b"GET /x HTTP/1.1\r\nhost: a\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
OK_OUT = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


def test_shutdown_with_nothing_open_completes_at_once(kit) -> None:
    pb = Playbook(kit.config())
    assert pb >> ShutdownRequested() << ShutdownComplete()
    kit.assert_clean(pb)


def test_shutdown_closes_idle_clients_and_pooled_upstreams(kit) -> None:
    pb = Playbook(kit.config())
    c1 = pb.accept()
    u = kit.forward(pb, c1, GET, FWD_GET)
    assert pb >> DataReceived(conn=u, data=OK) << Send(conn=c1, data=OK_OUT)
    c2 = pb.accept(peer=("203.0.113.8", 40000))
    assert (
        pb
        >> ShutdownRequested()
        << Close(conn=c1)
        << Close(conn=c2)
        << Close(conn=u)
        << ShutdownComplete()
    )
    kit.assert_clean(pb)


def test_in_flight_exchange_finishes_with_connection_close_before_shutdown_completes(kit) -> None:
    pb = Playbook(kit.config())
    c = pb.accept()
    u = kit.forward(pb, c, GET, FWD_GET)
    assert pb >> ShutdownRequested()
    assert (
        pb
        >> DataReceived(conn=u, data=OK)
        << Send(conn=c, data=b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
        << Close(conn=u)
        << Close(conn=c)
        << ShutdownComplete()
    )
    kit.assert_clean(pb)


def test_response_already_streaming_at_shutdown_finishes_then_closes(kit) -> None:
    pb = Playbook(kit.config())
    c = pb.accept()
    u = kit.forward(pb, c, GET, FWD_GET)
    assert (
        pb
        >> DataReceived(conn=u, data=b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")
        << Send(conn=c, data=b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nab")
        >> ShutdownRequested()
        >> DataReceived(conn=u, data=b"cd")
        << Send(conn=c, data=b"cd")
        << Close(conn=u)
        << Close(conn=c)
        << ShutdownComplete()
    )
    kit.assert_clean(pb)


def test_new_connections_during_the_drain_get_503(kit) -> None:
    pb = Playbook(kit.config())
    c = pb.accept()
    u = kit.forward(pb, c, GET, FWD_GET)
    assert pb >> ShutdownRequested()
    late = pb.accept(peer=("203.0.113.8", 40000))
    assert pb << Send(conn=late, data=kit.error(503)) << Close(conn=late)
    # A second request for shutdown changes nothing.
    assert pb >> ShutdownRequested()
    assert (
        pb
        >> DataReceived(conn=u, data=OK)
        << Send(conn=c, data=b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
        << Close(conn=u)
        << Close(conn=c)
        << ShutdownComplete()
    )
    kit.assert_clean(pb)


def test_drain_deadline_aborts_what_is_left(kit) -> None:
    pb = Playbook(kit.config(drain=10))
    c1 = pb.accept()
    u1 = kit.forward(pb, c1, GET, FWD_GET)
    c2 = pb.accept(peer=("203.0.113.8", 40000))
    u2 = kit.forward(pb, c2, GET, FWD_GET)
    assert (
        pb
        >> DataReceived(conn=u2, data=b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab")
        << Send(conn=c2, data=b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nab")
    )
    # The drain time given with the request overrides the configured one.
    assert pb >> ShutdownRequested(drain_timeout=3)
    assert pb.advance(2.9)
    assert (
        pb.advance(0.1)
        << Close(conn=u1, abort=True)
        << Close(conn=c1, abort=True)
        << Close(conn=u2, abort=True)
        << Close(conn=c2, abort=True)
        << ShutdownComplete()
    )
    # Late reports about the closed connections are harmless.
    assert pb >> EofReceived(conn=u1) >> DataReceived(conn=u2, data=b"cd")
    kit.assert_clean(pb)
