"""Playbooks of backpressure (rule 5 of the core): unwritten bytes pause the other side.

The configurations use a high-water mark of 100 bytes and a low-water mark of 50,
so a few small writes are enough to cross them.
"""

from __future__ import annotations

from sansproxy.commands import Close, OpenUpstream, PauseReading, ResumeReading, Send
from sansproxy.events import ConnId, DataReceived, EofReceived, UpstreamConnected, Written
from tests.playbook import Placeholder, Playbook

GET = b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n"
FWD_GET = b"GET /big HTTP/1.1\r\nhost: a\r\n\r\n"
PIECE = b"x" * 30


def _config(kit):
    return kit.config(buffer_high_water=100, buffer_low_water=50)


def test_slow_client_pauses_the_upstream_until_written_drains_to_low_water(kit) -> None:
    pb = Playbook(_config(kit))
    c = pb.accept()
    u = kit.forward(pb, c, GET, FWD_GET)
    head = b"HTTP/1.1 200 OK\r\ncontent-length: 120\r\n\r\n"
    assert len(head) == 40
    assert (
        pb
        >> DataReceived(conn=u, data=b"HTTP/1.1 200 OK\r\nContent-Length: 120\r\n\r\n")
        << Send(conn=c, data=head)
        >> DataReceived(conn=u, data=PIECE)
        << Send(conn=c, data=PIECE)
        # Exactly 100 unwritten bytes is not past the mark.
        >> DataReceived(conn=u, data=PIECE)
        << Send(conn=c, data=PIECE)
        >> DataReceived(conn=u, data=PIECE)
        << Send(conn=c, data=PIECE)
        << PauseReading(conn=u)
        # Draining to 51 is not enough; to 50 it is.
        >> Written(conn=c, nbytes=79)
        >> Written(conn=c, nbytes=1)
        << ResumeReading(conn=u)
        >> DataReceived(conn=u, data=PIECE)
        << Send(conn=c, data=PIECE)
        >> Written(conn=c, nbytes=80)
        >> EofReceived(conn=c)
        << Close(conn=c)
        >> EofReceived(conn=u)
        << Close(conn=u)
    )
    kit.assert_clean(pb)


def test_upload_pauses_the_client_while_the_upstream_is_connecting(kit) -> None:
    pb = Playbook(_config(kit))
    c = pb.accept()
    u = Placeholder(ConnId)
    head = b"POST /up HTTP/1.1\r\nhost: a\r\ncontent-length: 90\r\n\r\n"
    assert len(head) == 50
    assert (
        pb
        >> DataReceived(conn=c, data=b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 90\r\n\r\n")
        << OpenUpstream(conn=u, host="10.0.0.1", port=8001)
        >> DataReceived(conn=c, data=PIECE)
        # Bytes queued for a connection that is not open yet count as unwritten: 110.
        >> DataReceived(conn=c, data=PIECE)
        << PauseReading(conn=c)
        >> UpstreamConnected(conn=u)
        << Send(conn=u, data=head + PIECE + PIECE)
        >> Written(conn=u, nbytes=len(head) + 60)
        << ResumeReading(conn=c)
        >> DataReceived(conn=c, data=PIECE)
        << Send(conn=u, data=PIECE)
        >> Written(conn=u, nbytes=30)
        >> DataReceived(conn=u, data=b"HTTP/1.1 204 No Content\r\n\r\n")
        << Send(conn=c, data=b"HTTP/1.1 204 No Content\r\n\r\n")
        >> EofReceived(conn=c)
        << Close(conn=c)
        >> EofReceived(conn=u)
        << Close(conn=u)
    )
    kit.assert_clean(pb)


def test_upload_to_a_slow_upstream_pauses_the_client_until_written(kit) -> None:
    pb = Playbook(_config(kit))
    c = pb.accept()
    head = b"POST /up HTTP/1.1\r\nhost: a\r\ncontent-length: 150\r\n\r\n"
    u = kit.forward(pb, c, b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 150\r\n\r\n", head)
    assert pb >> Written(conn=u, nbytes=len(head))
    for _ in range(3):
        assert pb >> DataReceived(conn=c, data=PIECE) << Send(conn=u, data=PIECE)
    assert (
        pb
        >> DataReceived(conn=c, data=PIECE)
        << Send(conn=u, data=PIECE)
        << PauseReading(conn=c)
        >> Written(conn=u, nbytes=69)
        >> Written(conn=u, nbytes=1)
        << ResumeReading(conn=c)
        >> DataReceived(conn=c, data=PIECE)
        << Send(conn=u, data=PIECE)
        >> Written(conn=u, nbytes=80)
        >> DataReceived(conn=u, data=b"HTTP/1.1 204 No Content\r\n\r\n")
        << Send(conn=c, data=b"HTTP/1.1 204 No Content\r\n\r\n")
        >> EofReceived(conn=c)
        << Close(conn=c)
        >> EofReceived(conn=u)
        << Close(conn=u)
    )
    kit.assert_clean(pb)


def test_a_paused_upstream_is_read_again_once_its_response_ended(kit) -> None:
    pb = Playbook(_config(kit))
    c = pb.accept()
    u = kit.forward(pb, c, GET, FWD_GET)
    body = b"y" * 120
    # The last body bytes cross the high-water mark as the response ends: the pooled
    # connection must still be read, or a close by the backend would go unnoticed.
    assert (
        pb
        >> DataReceived(conn=u, data=b"HTTP/1.1 200 OK\r\nContent-Length: 120\r\n\r\n" + body)
        << Send(conn=c, data=b"HTTP/1.1 200 OK\r\ncontent-length: 120\r\n\r\n" + body)
        << PauseReading(conn=u)
        << ResumeReading(conn=u)
        >> EofReceived(conn=u)
        << Close(conn=u)
        >> EofReceived(conn=c)
        << Close(conn=c)
    )
    kit.assert_clean(pb)
