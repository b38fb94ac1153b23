"""Playbooks of TLS connections that never reach HTTP: plain HTTP to a TLS port, failed handshakes.

The adapter only looks at the first byte (not 0x16: ``ConnectionAccepted(not_tls=True)``)
or reports a handshake that failed (``TlsHandshakeFailed``); what the client is told,
what is counted and what is logged is decided here.
"""

from __future__ import annotations

import random

import pytest

from sansproxy import Proxy, TlsStatistics
from sansproxy.commands import Close, Log, Send, ShutdownComplete, ShutdownWrite
from sansproxy.errors import UsageError
from sansproxy.events import (
    ConfigReloaded,
    ConnectionAccepted,
    DataReceived,
    EofReceived,
    ShutdownRequested,
    TlsHandshakeFailed,
)
from sansproxy.handshakes import LOG_INTERVAL
from tests.playbook import Playbook

CONFIG = """
[[listeners]]
address = "192.0.2.1:8080"

[[listeners]]
address = "192.0.2.1:8443"
certificate = "cert.pem"
private_key = "key.pem"

[upstreams.app]
servers = ["http://10.0.0.1:8001"]
"""

ANSWER = (
    b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 50\r\nconnection: close\r\n\r\n"
    b"400 The plain HTTP request was sent to HTTPS port\n"
)
GET = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"
PEER = ("203.0.113.7", 50000)


def _stats(pb: Playbook) -> TlsStatistics:
    core = pb.core
    assert isinstance(core, Proxy)
    return core.tls_statistics()


def test_plain_http_to_a_tls_listener_gets_nginx_400_and_a_lingering_close(kit) -> None:
    pb = Playbook(kit.toml(CONFIG), logs=True)
    c = pb.accept(listener=1, not_tls=True)
    assert (
        pb
        << Log(
            level="debug",
            message="plain HTTP (not TLS) from 203.0.113.7:50000 on listener 1: answered 400",
            conn=c,
        )
        << Send(conn=c, data=ANSWER)
        << ShutdownWrite(conn=c)
    )
    # The request itself is read and dropped; nothing goes to a backend.
    assert pb >> DataReceived(conn=c, data=GET)
    assert pb >> EofReceived(conn=c) << Close(conn=c)
    assert _stats(pb) == TlsStatistics(handshakes_failed=0, not_tls=1)
    kit.assert_clean(pb)


def test_a_client_that_never_closes_is_closed_after_the_linger_time(kit) -> None:
    pb = Playbook(kit.toml(CONFIG))
    c = pb.accept(listener=1, not_tls=True)
    assert pb << Send(conn=c, data=ANSWER) << ShutdownWrite(conn=c)
    assert pb >> DataReceived(conn=c, data=GET)
    assert pb.advance(4.9)
    assert pb.advance(0.1) << Close(conn=c)
    kit.assert_clean(pb)


def test_shutdown_closes_a_lingering_not_tls_connection(kit) -> None:
    pb = Playbook(kit.toml(CONFIG))
    c = pb.accept(listener=1, not_tls=True)
    assert pb << Send(conn=c, data=ANSWER) << ShutdownWrite(conn=c)
    assert pb >> ShutdownRequested() << Close(conn=c) << ShutdownComplete()


def test_failed_handshakes_are_counted_and_logged_at_most_once_per_interval(kit) -> None:
    pb = Playbook(kit.toml(CONFIG), logs=True)
    first = "TLS handshake from [2001:db8::1]:4000 on listener 1 failed: wrong version number"
    assert (
        pb
        >> TlsHandshakeFailed(listener=1, peer=("2001:db8::1", 4000), reason="wrong version number")
        << Log(level="debug", message=first)
    )
    for _ in range(3):  # a burst: counted, not logged
        assert pb >> TlsHandshakeFailed(listener=1, peer=PEER, reason="timed out")
    pb.advance(LOG_INTERVAL - 0.5)
    c = pb.accept(listener=1, not_tls=True)  # the same limit covers plain HTTP
    assert pb << Send(conn=c, data=ANSWER) << ShutdownWrite(conn=c)
    pb.advance(0.5)
    assert (
        pb
        >> TlsHandshakeFailed(listener=1, peer=PEER)
        << Log(
            level="debug",
            message="TLS handshake from 203.0.113.7:50000 on listener 1 failed "
            "(4 more such connections not logged in the last while)",
        )
    )
    assert _stats(pb) == TlsStatistics(handshakes_failed=5, not_tls=1)


def test_the_counters_survive_a_reload(kit) -> None:
    pb = Playbook(kit.toml(CONFIG))
    assert pb >> TlsHandshakeFailed(listener=1, peer=PEER)
    assert pb >> ConfigReloaded(config=kit.toml(CONFIG))
    assert _stats(pb).handshakes_failed == 1


def test_adapter_mistakes_are_usage_errors(kit) -> None:
    proxy = Proxy(kit.toml(CONFIG), rng=random.Random(1))
    with pytest.raises(UsageError, match="no listener number 7"):
        proxy.handle(TlsHandshakeFailed(listener=7, peer=PEER), now=0.0)
    conn = proxy.allocate_id()
    plain = ConnectionAccepted(conn=conn, listener=0, peer=PEER, local=PEER, not_tls=True)
    with pytest.raises(UsageError, match="not_tls"):
        proxy.handle(plain, now=0.0)
