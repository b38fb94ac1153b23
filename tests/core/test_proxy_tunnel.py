"""Playbooks of protocol upgrades (WebSocket): a 101 turns the exchange into a byte tunnel."""

from __future__ import annotations

from sansproxy.commands import Close, PauseReading, ResumeReading, Send
from sansproxy.events import ConnectionLost, DataReceived, EofReceived, Written
from tests.playbook import Playbook

UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
FWD_UPGRADE = (
    b"GET /ws HTTP/1.1\r\nhost: a\r\nupgrade: websocket\r\n"
    b"sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n"
    b"connection: upgrade\r\n\r\n"
)
SWITCH = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
)
SWITCH_OUT = (
    b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n"
    b"sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nconnection: upgrade\r\n\r\n"
)


def _tunnel(kit, pb: Playbook):
    c = pb.accept()
    u = kit.forward(pb, c, UPGRADE, FWD_UPGRADE)
    assert pb >> DataReceived(conn=u, data=SWITCH) << Send(conn=c, data=SWITCH_OUT)
    return c, u


def test_upgrade_tunnels_bytes_both_ways_and_carries_trailing_bytes(kit) -> None:
    pb = Playbook(kit.config())
    c = pb.accept()
    # The client speaks first, before the switch is confirmed: those bytes wait.
    u = kit.forward(pb, c, UPGRADE + b"\x81\x02hi", FWD_UPGRADE)
    assert (
        pb
        >> DataReceived(conn=c, data=b"\x81\x01!")
        # The 101 and the backend's first frame arrive in one read.
        >> DataReceived(conn=u, data=SWITCH + b"\x81\x05hello")
        << Send(conn=c, data=SWITCH_OUT)
        << Send(conn=u, data=b"\x81\x02hi\x81\x01!")
        << Send(conn=c, data=b"\x81\x05hello")
        >> DataReceived(conn=c, data=b"GET / HTTP/1.1\r\n\r\n")
        << Send(conn=u, data=b"GET / HTTP/1.1\r\n\r\n")
        >> DataReceived(conn=u, data=b"\x88\x00")
        << Send(conn=c, data=b"\x88\x00")
        >> EofReceived(conn=u)
        << Close(conn=u)
        << Close(conn=c)
    )
    kit.assert_clean(pb)


def test_client_eof_closes_both_sides_of_a_tunnel(kit) -> None:
    pb = Playbook(kit.config())
    c, u = _tunnel(kit, pb)
    assert pb >> EofReceived(conn=c) << Close(conn=u) << Close(conn=c)
    kit.assert_clean(pb)


def test_upstream_reset_closes_both_sides_of_a_tunnel(kit) -> None:
    pb = Playbook(kit.config())
    c, u = _tunnel(kit, pb)
    assert pb >> ConnectionLost(conn=u, reason="reset") << Close(conn=c)
    kit.assert_clean(pb)


def test_client_reset_closes_both_sides_of_a_tunnel(kit) -> None:
    pb = Playbook(kit.config())
    c, u = _tunnel(kit, pb)
    assert pb >> ConnectionLost(conn=c, reason="reset") << Close(conn=u, abort=True)
    kit.assert_clean(pb)


def test_idle_tunnel_is_closed_on_both_sides(kit) -> None:
    pb = Playbook(kit.config(tunnel_idle=300))
    c, u = _tunnel(kit, pb)
    # Traffic in either direction keeps the tunnel alive.
    assert pb.advance(200) >> DataReceived(conn=c, data=b"ping") << Send(conn=u, data=b"ping")
    assert pb.advance(200) >> DataReceived(conn=u, data=b"pong") << Send(conn=c, data=b"pong")
    assert pb.advance(299.9)
    assert pb.advance(0.1) << Close(conn=u) << Close(conn=c)
    kit.assert_clean(pb)


def test_tunnel_applies_backpressure(kit) -> None:
    pb = Playbook(kit.config(buffer_high_water=200, buffer_low_water=100))
    c, u = _tunnel(kit, pb)
    assert pb >> Written(conn=c, nbytes=len(SWITCH_OUT)) >> Written(conn=u, nbytes=len(FWD_UPGRADE))
    assert (
        pb
        >> DataReceived(conn=u, data=b"d" * 201)
        << Send(conn=c, data=b"d" * 201)
        << PauseReading(conn=u)
        >> Written(conn=c, nbytes=101)
        << ResumeReading(conn=u)
        >> DataReceived(conn=c, data=b"u" * 201)
        << Send(conn=u, data=b"u" * 201)
        << PauseReading(conn=c)
        >> Written(conn=u, nbytes=201)
        << ResumeReading(conn=c)
        >> EofReceived(conn=c)
        << Close(conn=u)
        << Close(conn=c)
    )
    kit.assert_clean(pb)


def test_unrequested_101_is_502(kit) -> None:
    pb = Playbook(kit.config())
    c = pb.accept()
    u = kit.forward(
        pb, c, b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n", b"GET /x HTTP/1.1\r\nhost: a\r\n\r\n"
    )
    assert (
        pb
        >> DataReceived(conn=u, data=SWITCH)
        << Close(conn=u, abort=True)
        << Send(conn=c, data=kit.error(502))
        << Close(conn=c)
    )
    kit.assert_clean(pb)


def test_declined_upgrade_is_an_ordinary_exchange(kit) -> None:
    pb = Playbook(kit.config())
    c = pb.accept()
    u = kit.forward(pb, c, UPGRADE, FWD_UPGRADE)
    assert (
        pb
        >> DataReceived(conn=u, data=b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\n\r\n")
        << Send(conn=c, data=b"HTTP/1.1 426 Upgrade Required\r\ncontent-length: 0\r\n\r\n")
        >> DataReceived(conn=c, data=b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
        << Send(conn=u, data=b"GET /x HTTP/1.1\r\nhost: a\r\n\r\n")
        >> DataReceived(conn=u, data=b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        << Send(conn=c, data=b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
        >> EofReceived(conn=c)
        << Close(conn=c)
        >> EofReceived(conn=u)
        << Close(conn=u)
    )
    kit.assert_clean(pb)


def test_client_eof_before_the_switch_still_delivers_its_bytes_then_closes(kit) -> None:
    pb = Playbook(kit.config())
    c = pb.accept()
    u = kit.forward(pb, c, UPGRADE + b"\x81\x02hi", FWD_UPGRADE)
    assert (
        pb
        >> EofReceived(conn=c)
        >> DataReceived(conn=u, data=SWITCH + b"\x81\x05hello")
        << Send(conn=c, data=SWITCH_OUT)
        << Send(conn=u, data=b"\x81\x02hi")
        << Send(conn=c, data=b"\x81\x05hello")
        << Close(conn=u)
        << Close(conn=c)
    )
    kit.assert_clean(pb)
