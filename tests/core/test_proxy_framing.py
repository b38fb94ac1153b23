"""Playbooks of framing defences: what could smuggle a request or split a response.

Every message is re-serialised, so a test can check that what reaches the other
side is either a clean rewrite or nothing at all (an error and a close).
"""

from __future__ import annotations

from sansproxy.commands import Close, OpenUpstream, Send
from sansproxy.events import ConnId, DataReceived, EofReceived, UpstreamConnected
from tests.playbook import Placeholder, Playbook


def _refused(kit, request: bytes, status: int, *, http10: bool = False) -> None:
    """``request`` in one read gets ``status`` and a close; no backend is contacted."""
    pb = Playbook(kit.config())
    c = pb.accept()
    pb >> DataReceived(conn=c, data=request)
    kit.answered_with_error(pb, c, status, http10=http10)
    kit.assert_clean(pb)


def test_content_length_with_transfer_encoding_is_400(kit) -> None:
    # RFC 9112 §6.3 item 3: the classic CL.TE / TE.CL smuggling shape.
    _refused(
        kit,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\nGET /admin HTTP/1.1\r\nHost: a\r\n\r\n",
        400,
    )


def test_differing_duplicate_content_lengths_are_400(kit) -> None:
    # RFC 9112 §6.3 item 5.
    _refused(
        kit,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        400,
    )


def test_content_length_with_a_sign_is_400(kit) -> None:
    _refused(kit, b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc", 400)


def test_transfer_encoding_other_than_chunked_is_501(kit) -> None:
    # RFC 9112 §6.1: a transfer coding the server does not understand.
    _refused(kit, b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501)


def test_chunked_not_last_is_refused(kit) -> None:
    _refused(kit, b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 501)


def test_whitespace_before_the_colon_is_400(kit) -> None:
    # RFC 9112 §5.1: MUST reject, because proxies disagree on what the field name is.
    _refused(kit, b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400)


def test_two_host_fields_are_400(kit) -> None:
    # RFC 9112 §3.2.
    _refused(kit, b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400)


def test_http11_request_without_host_is_400(kit) -> None:
    _refused(kit, b"GET / HTTP/1.1\r\n\r\n", 400)


def test_transfer_encoding_in_an_http10_request_is_400(kit) -> None:
    # RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing
    # (an HTTP/1.0 hop before the proxy would have read the body differently);
    # §6.3: a request with faulty framing gets 400 and a close.
    _refused(
        kit,
        b"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        400,
        http10=True,
    )


def test_identical_duplicate_content_lengths_are_forwarded_once(kit) -> None:
    pb = Playbook(kit.config())
    c = pb.accept()
    u = kit.forward(
        pb,
        c,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
        b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\n\r\nabc",
    )
    assert (
        pb
        >> DataReceived(conn=u, data=b"HTTP/1.1 204 No Content\r\n\r\n")
        << Send(conn=c, data=b"HTTP/1.1 204 No Content\r\n\r\n")
        >> EofReceived(conn=c)
        << Close(conn=c)
        >> EofReceived(conn=u)
        << Close(conn=u)
    )
    kit.assert_clean(pb)


def test_bad_chunk_syntax_is_400_and_aborts_the_upstream(kit) -> None:
    pb = Playbook(kit.config())
    c = pb.accept()
    u = kit.forward(
        pb,
        c,
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
        b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n",
    )
    # A chunk size that is not hex: nothing after it reaches the backend, whose
    # half-sent request is cut off rather than completed.
    (
        pb
        >> DataReceived(conn=c, data=b"zz\r\nGET /admin HTTP/1.1\r\n\r\n")
        << Close(conn=u, abort=True)
    )
    kit.answered_with_error(pb, c, 400)
    kit.assert_clean(pb)


def test_chunk_data_without_its_crlf_is_400(kit) -> None:
    # GHSA-vqfr-h8mv-ghfj: h11 before 0.16 accepted any two bytes after chunk data.
    # The codec checks chunk framing as it arrives, so a body that came with its
    # head is refused before any backend is chosen.
    _refused(
        kit,
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXX0\r\n\r\n",
        400,
    )


def test_obs_fold_is_unfolded_never_forwarded_raw(kit) -> None:
    # RFC 9112 §5.2: a proxy either rejects obs-fold or replaces it with spaces.
    pb = Playbook(kit.config())
    c = pb.accept()
    request = b"GET / HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n two\r\n\r\n"
    u = Placeholder(ConnId)
    pb >> DataReceived(conn=c, data=request)
    if not isinstance(pb.actual()[-1], OpenUpstream):
        kit.answered_with_error(pb, c, 400)
    else:
        assert (
            pb
            << OpenUpstream(conn=u, host="10.0.0.1", port=8001)
            >> UpstreamConnected(conn=u)
            << Send(conn=u, data=b"GET / HTTP/1.1\r\nhost: a\r\nx-folded: one two\r\n\r\n")
            >> DataReceived(conn=u, data=b"HTTP/1.1 204 No Content\r\n\r\n")
            << Send(conn=c, data=b"HTTP/1.1 204 No Content\r\n\r\n")
            >> EofReceived(conn=c)
            << Close(conn=c)
            >> EofReceived(conn=u)
            << Close(conn=u)
        )
    kit.assert_clean(pb)


def test_bare_lf_line_endings_are_rewritten_as_crlf(kit) -> None:
    # RFC 9112 §2.2: a recipient MAY accept a bare LF; what is sent on uses CRLF.
    pb = Playbook(kit.config())
    c = pb.accept()
    u = kit.forward(
        pb,
        c,
        b"GET / HTTP/1.1\nHost: a\nX-B: 1\n\n",
        b"GET / HTTP/1.1\r\nhost: a\r\nx-b: 1\r\n\r\n",
    )
    assert (
        pb
        >> DataReceived(conn=u, data=b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok")
        << Send(conn=c, data=b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        >> EofReceived(conn=c)
        << Close(conn=c)
        >> EofReceived(conn=u)
        << Close(conn=u)
    )
    kit.assert_clean(pb)


def test_response_with_content_length_and_chunked_is_not_forwarded_with_both(kit) -> None:
    # RFC 9112 §6.3 item 3: Transfer-Encoding overrides Content-Length; such a
    # response "ought to be handled as an error", and an intermediary that forwards
    # it anyway MUST remove the Content-Length first. Either is accepted here; an
    # exception out of the core, or the stale length reaching the client, is not.
    pb = Playbook(kit.config())
    c = pb.accept()
    u = kit.forward(
        pb, c, b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", b"GET / HTTP/1.1\r\nhost: a\r\n\r\n"
    )
    pb >> DataReceived(
        conn=u,
        data=b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n",
    )
    to_client = [x for x in pb.actual() if isinstance(x, Send) and x.conn == c]
    if to_client == [Send(conn=c, data=kit.error(502))]:
        assert pb << Close(conn=u, abort=True) << Send(conn=c, data=kit.error(502)) << Close(conn=c)
    else:
        assert (
            pb
            << Send(
                conn=c,
                data=b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\nhello\r\n0\r\n\r\n",
            )
            << Close(conn=u)
            >> EofReceived(conn=c)
            << Close(conn=c)
        )
    kit.assert_clean(pb)
