"""Broken adapter contracts raise UsageError; late reports about closed connections do not."""

from __future__ import annotations

import random

import pytest

from sansproxy.commands import Close, OpenUpstream, Send
from sansproxy.errors import UsageError
from sansproxy.events import (
    ConnectionAccepted,
    ConnectionLost,
    ConnId,
    DataReceived,
    EofReceived,
    UpstreamConnected,
    UpstreamFailed,
    Written,
)
from sansproxy.proxy import Proxy
from tests.playbook import Placeholder, Playbook

GET = b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n"
FWD_GET = b"GET /x HTTP/1.1\r\nhost: a\r\n\r\n"
UNKNOWN = ConnId(99)


@pytest.mark.parametrize(
    "event",
    [
        DataReceived(conn=UNKNOWN, data=b"x"),
        EofReceived(conn=UNKNOWN),
        ConnectionLost(conn=UNKNOWN),
        Written(conn=UNKNOWN, nbytes=1),
        UpstreamConnected(conn=UNKNOWN),
        UpstreamFailed(conn=UNKNOWN),
    ],
    ids=lambda event: type(event).__name__,
)
def test_event_for_an_unknown_connection_is_a_usage_error(kit, event) -> None:
    pb = Playbook(kit.config())
    pb.accept()
    with pytest.raises(UsageError):
        pb >> event


def test_accepting_an_id_that_was_not_allocated_is_a_usage_error(kit) -> None:
    proxy = Proxy(kit.config(), rng=random.Random(1))
    event = ConnectionAccepted(
        conn=ConnId(1), listener=0, peer=("203.0.113.7", 1), local=("192.0.2.1", 8080)
    )
    with pytest.raises(UsageError):
        proxy.handle(event, 0.0)


def test_accepting_the_same_id_twice_is_a_usage_error(kit) -> None:
    proxy = Proxy(kit.config(), rng=random.Random(1))
    event = ConnectionAccepted(
        conn=proxy.allocate_id(), listener=0, peer=("203.0.113.7", 1), local=("192.0.2.1", 8080)
    )
    assert proxy.handle(event, 0.0) == []
    with pytest.raises(UsageError):
        proxy.handle(event, 0.0)


def test_accepting_on_an_unknown_listener_is_a_usage_error(kit) -> None:
    proxy = Proxy(kit.config(), rng=random.Random(1))
    event = ConnectionAccepted(
        conn=proxy.allocate_id(), listener=1, peer=("203.0.113.7", 1), local=("192.0.2.1", 8080)
    )
    with pytest.raises(UsageError):
        proxy.handle(event, 0.0)


def test_data_after_eof_is_a_usage_error(kit) -> None:
    pb = Playbook(kit.config())
    c = pb.accept()
    # An upgrade request keeps the client open after its EOF, waiting for the answer.
    u = Placeholder(ConnId)
    assert (
        pb
        >> DataReceived(
            conn=c, data=b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n"
        )
        << OpenUpstream(conn=u, host="10.0.0.1", port=8001)
        >> EofReceived(conn=c)
    )
    with pytest.raises(UsageError):
        pb >> DataReceived(conn=c, data=b"more")


def test_eof_twice_is_a_usage_error(kit) -> None:
    pb = Playbook(kit.config())
    c = pb.accept()
    u = Placeholder(ConnId)
    assert (
        pb
        >> DataReceived(
            conn=c, data=b"GET / HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n"
        )
        << OpenUpstream(conn=u, host="10.0.0.1", port=8001)
        >> EofReceived(conn=c)
    )
    with pytest.raises(UsageError):
        pb >> EofReceived(conn=c)


def test_written_more_than_was_sent_is_a_usage_error(kit) -> None:
    pb = Playbook(kit.config())
    c = pb.accept()
    u = kit.forward(pb, c, GET, FWD_GET)
    assert pb >> Written(conn=u, nbytes=len(FWD_GET) - 1)
    with pytest.raises(UsageError):
        pb >> Written(conn=u, nbytes=2)


def test_negative_written_is_a_usage_error(kit) -> None:
    pb = Playbook(kit.config())
    c = pb.accept()
    u = kit.forward(pb, c, GET, FWD_GET)
    with pytest.raises(UsageError):
        pb >> Written(conn=u, nbytes=-1)


def test_upstream_connected_twice_is_a_usage_error(kit) -> None:
    pb = Playbook(kit.config())
    c = pb.accept()
    u = kit.forward(pb, c, GET, FWD_GET)
    with pytest.raises(UsageError):
        pb >> UpstreamConnected(conn=u)


def test_upstream_failed_after_connecting_is_a_usage_error(kit) -> None:
    pb = Playbook(kit.config())
    c = pb.accept()
    u = kit.forward(pb, c, GET, FWD_GET)
    with pytest.raises(UsageError):
        pb >> UpstreamFailed(conn=u, reason="late")


def test_upstream_data_before_connected_is_a_usage_error(kit) -> None:
    pb = Playbook(kit.config())
    c = pb.accept()
    u = Placeholder(ConnId)
    assert pb >> DataReceived(conn=c, data=GET) << OpenUpstream(conn=u, host="10.0.0.1", port=8001)
    with pytest.raises(UsageError):
        pb >> DataReceived(conn=u, data=b"HTTP/1.1 200 OK\r\n\r\n")


def test_time_going_backwards_is_a_usage_error(kit) -> None:
    proxy = Proxy(kit.config(), rng=random.Random(1))
    conn = proxy.allocate_id()
    accepted = ConnectionAccepted(
        conn=conn, listener=0, peer=("203.0.113.7", 1), local=("192.0.2.1", 8080)
    )
    proxy.handle(accepted, 5.0)
    with pytest.raises(UsageError):
        proxy.handle(DataReceived(conn=conn, data=b"G"), 4.0)
    with pytest.raises(UsageError):
        proxy.handle_timeout(4.9)
    # The same instant is fine, and a refused call left the core usable.
    assert proxy.handle(DataReceived(conn=conn, data=b"G"), 5.0) == []


def test_late_reports_about_connections_the_core_closed_are_ignored(kit) -> None:
    pb = Playbook(kit.config())
    c = pb.accept()
    u = kit.forward(pb, c, GET, FWD_GET)
    assert (
        pb
        >> DataReceived(conn=u, data=b"garbage\r\n\r\n")
        << Close(conn=u, abort=True)
        << Send(conn=c, data=kit.error(502))
        << Close(conn=c)
    )
    # The adapter may still report what happened before it processed the closes.
    assert (
        pb
        >> Written(conn=c, nbytes=10)
        >> DataReceived(conn=c, data=b"GET / HTTP/1.1\r\n")
        >> EofReceived(conn=c)
        >> ConnectionLost(conn=c)
        >> DataReceived(conn=u, data=b"more garbage")
        >> EofReceived(conn=u)
        >> ConnectionLost(conn=u)
    )
    kit.assert_clean(pb)
