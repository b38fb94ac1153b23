"""Playbooks of errors: bad requests, limits, failing backends.

Every error the proxy answers itself carries ``connection: close`` (``kit.error``
spells the exact response) and is followed by a ``Close`` of the client, at once
or after lingering until the client's EOF (``kit.answered_with_error``). No
backend address ever appears in what the client receives.
"""

from __future__ import annotations

from sansproxy.commands import Close, OpenUpstream, Send
from sansproxy.events import (
    ConnectionLost,
    ConnId,
    DataReceived,
    EofReceived,
    UpstreamFailed,
    Written,
)
from tests.playbook import Placeholder, Playbook

GET = b"GET /x HTTP/1.1\r\nHost: example.com\r\n\r\n"
FWD_GET = b"GET /x HTTP/1.1\r\nhost: example.com\r\n\r\n"


def test_malformed_request_line_is_400(kit) -> None:
    pb = Playbook(kit.config())
    c = pb.accept()
    pb >> DataReceived(conn=c, data=b"GARBAGE\r\n\r\n")
    kit.answered_with_error(pb, c, 400)
    kit.assert_clean(pb)


def test_header_section_too_large_over_several_reads_is_431(kit) -> None:
    pb = Playbook(kit.config(max_header_bytes=200))
    c = pb.accept()
    assert pb >> DataReceived(conn=c, data=b"GET / HTTP/1.1\r\nHost: a\r\nX-Pad: " + b"p" * 100)
    pb >> DataReceived(conn=c, data=b"p" * 100)
    kit.answered_with_error(pb, c, 431)
    kit.assert_clean(pb)


def test_header_section_too_large_in_a_single_read_is_431(kit) -> None:
    pb = Playbook(kit.config(max_header_bytes=200))
    c = pb.accept()
    head = b"GET / HTTP/1.1\r\nHost: a\r\nX-Pad: " + b"p" * 300 + b"\r\n\r\n"
    pb >> DataReceived(conn=c, data=head)
    kit.answered_with_error(pb, c, 431)
    kit.assert_clean(pb)


def test_too_many_header_fields_is_431(kit) -> None:
    pb = Playbook(kit.config(max_header_count=3))
    c = pb.accept()
    pb >> DataReceived(conn=c, data=b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n")
    kit.answered_with_error(pb, c, 431)
    kit.assert_clean(pb)


def test_as_many_header_fields_as_allowed_are_forwarded(kit) -> None:
    pb = Playbook(kit.config(max_header_count=3))
    c = pb.accept()
    u = kit.forward(
        pb,
        c,
        b"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n",
        b"GET / HTTP/1.1\r\nhost: a\r\na: 1\r\nb: 2\r\n\r\n",
    )
    assert pb >> ConnectionLost(conn=c) << Close(conn=u, abort=True)
    kit.assert_clean(pb)


def test_uri_too_long_is_414(kit) -> None:
    pb = Playbook(kit.config(max_uri_bytes=16))
    c = pb.accept()
    pb >> DataReceived(conn=c, data=b"GET /" + b"a" * 16 + b" HTTP/1.1\r\nHost: a\r\n\r\n")
    kit.answered_with_error(pb, c, 414)
    kit.assert_clean(pb)


def test_declared_body_over_the_limit_is_413_before_any_backend_is_contacted(kit) -> None:
    pb = Playbook(kit.config(max_body_bytes=10))
    c = pb.accept()
    pb >> DataReceived(conn=c, data=b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n")
    kit.answered_with_error(pb, c, 413)
    kit.assert_clean(pb)


def test_chunked_body_crossing_the_limit_mid_stream_is_413_and_aborts_the_upstream(kit) -> None:
    pb = Playbook(kit.config(max_body_bytes=10))
    c = pb.accept()
    u = kit.forward(
        pb,
        c,
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n",
        b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n6\r\nabcdef\r\n",
    )
    (
        pb
        >> DataReceived(conn=c, data=b"4\r\nghij\r\n")
        << Send(conn=u, data=b"4\r\nghij\r\n")
        >> DataReceived(conn=c, data=b"1\r\nk\r\n")
        << Close(conn=u, abort=True)
    )
    kit.answered_with_error(pb, c, 413)
    kit.assert_clean(pb)


def test_connect_method_is_405(kit) -> None:
    pb = Playbook(kit.config())
    c = pb.accept()
    pb >> DataReceived(conn=c, data=b"CONNECT example.com:443 HTTP/1.1\r\nHost: a\r\n\r\n")
    kit.answered_with_error(pb, c, 405)
    kit.assert_clean(pb)


def test_connections_over_max_client_connections_get_503_and_close(kit) -> None:
    pb = Playbook(kit.config(max_client_connections=1))
    c1 = pb.accept()
    c2 = pb.accept(peer=("203.0.113.8", 40000))
    assert pb << Send(conn=c2, data=kit.error(503)) << Close(conn=c2)
    # A late report about the refused connection is harmless.
    assert pb >> Written(conn=c2, nbytes=len(kit.error(503))) >> ConnectionLost(conn=c2)
    assert pb >> EofReceived(conn=c1) << Close(conn=c1)
    # With the first one gone there is room again.
    c3 = pb.accept(peer=("203.0.113.9", 40000))
    assert pb >> EofReceived(conn=c3) << Close(conn=c3)
    kit.assert_clean(pb)


def test_error_responses_never_name_the_backend(kit) -> None:
    pb = Playbook(kit.config(servers=2))
    c = pb.accept()
    ua = Placeholder(ConnId)
    ub = Placeholder(ConnId)
    assert (
        pb
        >> DataReceived(conn=c, data=GET)
        << OpenUpstream(conn=ua, host="10.0.0.1", port=8001)
        >> UpstreamFailed(conn=ua, reason="connection refused by 10.0.0.1:8001")
        << OpenUpstream(conn=ub, host="10.0.0.2", port=8002)
        >> UpstreamFailed(conn=ub, reason="connection refused by 10.0.0.2:8002")
        << Send(conn=c, data=kit.error(502))
        << Close(conn=c)
    )
    for entry in pb.actual():
        if isinstance(entry, Send) and entry.conn == c:
            for secret in (b"10.0.0", b"8001", b"8002", b"refused"):
                assert secret not in entry.data
    kit.assert_clean(pb)


def test_backend_dying_mid_response_aborts_the_client(kit) -> None:
    pb = Playbook(kit.config())
    c = pb.accept()
    u = kit.forward(pb, c, GET, FWD_GET)
    # A clean close of the client would present the truncated body as complete.
    assert (
        pb
        >> DataReceived(conn=u, data=b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345")
        << Send(conn=c, data=b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n12345")
        >> EofReceived(conn=u)
        << Close(conn=u, abort=True)
        << Close(conn=c, abort=True)
    )
    kit.assert_clean(pb)


def test_backend_reset_mid_chunked_response_aborts_the_client(kit) -> None:
    pb = Playbook(kit.config())
    c = pb.accept()
    u = kit.forward(pb, c, GET, FWD_GET)
    assert (
        pb
        >> DataReceived(
            conn=u, data=b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
        )
        << Send(conn=c, data=b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
        >> ConnectionLost(conn=u, reason="connection reset")
        << Close(conn=c, abort=True)
    )
    kit.assert_clean(pb)


def test_backend_garbage_before_the_response_is_502(kit) -> None:
    pb = Playbook(kit.config())
    c = pb.accept()
    u = kit.forward(pb, c, GET, FWD_GET)
    assert (
        pb
        >> DataReceived(conn=u, data=b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        << Close(conn=u, abort=True)
        << Send(conn=c, data=kit.error(502))
        << Close(conn=c)
    )
    kit.assert_clean(pb)


def test_backend_bad_chunk_mid_response_aborts_the_client(kit) -> None:
    pb = Playbook(kit.config())
    c = pb.accept()
    u = kit.forward(pb, c, GET, FWD_GET)
    assert (
        pb
        >> DataReceived(conn=u, data=b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        << Send(conn=c, data=b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        >> DataReceived(conn=u, data=b"xyz\r\n")
        << Close(conn=u, abort=True)
        << Close(conn=c, abort=True)
    )
    kit.assert_clean(pb)


def test_client_leaving_mid_request_aborts_the_upstream(kit) -> None:
    pb = Playbook(kit.config())
    c = pb.accept()
    u = kit.forward(
        pb,
        c,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc",
        b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 10\r\n\r\nabc",
    )
    # Nobody is left to answer: no error response, just closes.
    assert pb >> EofReceived(conn=c) << Close(conn=u, abort=True) << Close(conn=c)
    kit.assert_clean(pb)
