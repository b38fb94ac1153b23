"""Playbooks of the lingering close after an error (RFC 9112 §9.6).

When the proxy answers with an error while the client is still sending, closing
at once would reset the connection and could destroy the response before the
client reads it. So the proxy keeps reading, discards what arrives, and closes
at the client's EOF or after ``client_linger``.
"""

from __future__ import annotations

from sansproxy.commands import Close, PauseReading, ResumeReading, Send, ShutdownWrite
from sansproxy.events import ConnectionLost, DataReceived, EofReceived, Written
from tests.playbook import BytesMatching, Playbook

TOO_BIG = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nabc"


def test_error_mid_request_discards_the_rest_until_the_client_eof(kit) -> None:
    pb = Playbook(kit.config(max_body_bytes=10))
    c = pb.accept()
    assert (
        pb
        >> DataReceived(conn=c, data=TOO_BIG)
        << Send(conn=c, data=kit.error(413))
        << ShutdownWrite(conn=c)
        # Neither parsed nor forwarded: the rest of the body, or anything else.
        >> DataReceived(conn=c, data=b"defgh")
        >> DataReceived(conn=c, data=b"GET /admin HTTP/1.1\r\nHost: a\r\n\r\n")
        >> EofReceived(conn=c)
        << Close(conn=c)
    )
    kit.assert_clean(pb)


def test_lingering_ends_after_client_linger(kit) -> None:
    pb = Playbook(kit.config(max_body_bytes=10, client_linger=5))
    c = pb.accept()
    assert (
        pb
        >> DataReceived(conn=c, data=TOO_BIG)
        << Send(conn=c, data=kit.error(413))
        << ShutdownWrite(conn=c)
    )
    # Bytes keep arriving: they do not extend the wait.
    assert pb.advance(3) >> DataReceived(conn=c, data=b"defgh")
    assert pb.advance(1.9)
    assert pb.advance(0.1) << Close(conn=c)
    kit.assert_clean(pb)


def test_client_reset_while_lingering_is_clean(kit) -> None:
    pb = Playbook(kit.config(max_body_bytes=10))
    c = pb.accept()
    assert (
        pb
        >> DataReceived(conn=c, data=TOO_BIG)
        << Send(conn=c, data=kit.error(413))
        << ShutdownWrite(conn=c)
    )
    assert pb >> Written(conn=c, nbytes=len(kit.error(413))) >> ConnectionLost(conn=c)
    kit.assert_clean(pb)


def test_a_paused_client_is_read_again_to_linger(kit) -> None:
    pb = Playbook(kit.config(buffer_high_water=100, buffer_low_water=50))
    c = pb.accept()
    head = b"POST /up HTTP/1.1\r\nhost: a\r\ncontent-length: 1000\r\n\r\n"
    u = kit.forward(pb, c, b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n", head)
    assert (
        pb
        >> DataReceived(conn=c, data=b"x" * 60)
        << Send(conn=u, data=b"x" * 60)
        << PauseReading(conn=c)
        # A fresh connection breaks before any response: 502, with the upload unfinished.
        >> EofReceived(conn=u)
        << Close(conn=u, abort=True)
        << Send(conn=c, data=kit.error(502))
        << ResumeReading(conn=c)
        << ShutdownWrite(conn=c)
        >> DataReceived(conn=c, data=b"x" * 500)
        >> EofReceived(conn=c)
        << Close(conn=c)
    )
    kit.assert_clean(pb)


def test_error_after_the_whole_request_closes_at_once(kit) -> None:
    pb = Playbook(kit.config())
    c = pb.accept()
    u = kit.forward(
        pb,
        c,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
        b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\n\r\nabc",
    )
    assert (
        pb
        >> DataReceived(conn=u, data=b"not http\r\n\r\n")
        << Close(conn=u, abort=True)
        << Send(conn=c, data=kit.error(502))
        << Close(conn=c)
    )
    kit.assert_clean(pb)


def test_backend_answering_before_the_upload_ends_does_not_cut_the_client_off(kit) -> None:
    # The backend refuses an upload early (RFC 9110 §15.5.14 allows a 413 at any
    # point). The client is still sending: closing at once would reset the response
    # away, so the rest of the body is read and discarded until the client's EOF.
    pb = Playbook(kit.config())
    c = pb.accept()
    u = kit.forward(
        pb,
        c,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nabc",
        b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 100\r\n\r\nabc",
    )
    assert (
        pb
        >> DataReceived(
            conn=u,
            data=b"HTTP/1.1 413 Too Big\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )
        << Send(
            conn=c,
            data=BytesMatching(
                rb"HTTP/1\.1 413 Too Big\r\ncontent-length: 0\r\n(connection: close\r\n)?\r\n"
            ),
        )
        << Close(conn=u)
        << ShutdownWrite(conn=c)
        >> DataReceived(conn=c, data=b"d" * 97)
        >> EofReceived(conn=c)
        << Close(conn=c)
    )
    kit.assert_clean(pb)
