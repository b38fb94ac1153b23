"""Playbooks of HTTP/1.1 request strictness (RFC 9112, RFC 9110) and of the request limits.

Each refusal is checked with the exact answer (``kit.answered_with_error``) and,
because a playbook compares the complete list of commands, with nothing else:
no ``OpenUpstream``, so no byte reaches a backend. Where a case is accepted,
the exact bytes forwarded are spelled out.

Rules, in the order of the sections below:

1. only HTTP/1.0 and HTTP/1.1 request lines (another ``HTTP/d.d``: 505; not a
   request line at all, HTTP/0.9 included: 400);
2. no bare CR (a CR not followed by LF) in the head or in chunked framing,
   while the data of a body may hold any byte;
3. exactly one valid ``Host`` (RFC 9110 §7.2), and a valid authority in an
   absolute-form target;
4. no control character but HTAB in a field value (obs-text stays allowed);

then one boundary test (at the limit: accepted; one past it: refused) per
request limit of ``Limits``.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sansproxy.commands import Close, OpenUpstream, Send
from sansproxy.events import ConnectionLost, ConnId, DataReceived, EofReceived, UpstreamConnected
from tests.playbook import Placeholder, Playbook

CHUNKED_HEAD = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
FWD_CHUNKED_HEAD = b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n"


def _refused(kit, *reads: bytes, status: int, http10: bool = False, **limits: int) -> None:
    """``reads`` (one event each) get the error ``status`` and a close, and nothing else.

    Reads stop at the first one answered: a refusal may come before the last.
    """
    pb = Playbook(kit.config(**limits))
    c = pb.accept()
    for data in reads:
        pb >> DataReceived(conn=c, data=data)
        if not isinstance(pb.actual()[-1], DataReceived):
            break
    kit.answered_with_error(pb, c, status, http10=http10)
    kit.assert_clean(pb)


def _forwarded(kit, *reads: bytes, forwarded: bytes, **limits: int) -> None:
    """``reads`` complete a request with the last one; server A gets it as ``forwarded``."""
    pb = Playbook(kit.config(**limits))
    c = pb.accept()
    for data in reads[:-1]:
        assert pb >> DataReceived(conn=c, data=data)
    u = Placeholder(ConnId)
    assert (
        pb
        >> DataReceived(conn=c, data=reads[-1])
        << OpenUpstream(conn=u, host="10.0.0.1", port=8001)
        >> UpstreamConnected(conn=u)
        << Send(conn=u, data=forwarded)
    )
    assert pb >> ConnectionLost(conn=c) << Close(conn=u, abort=True)
    kit.assert_clean(pb)


def _bytes_of(data: bytes) -> list[bytes]:
    """``data`` as one read per byte."""
    return [data[i : i + 1] for i in range(len(data))]


# -- 1. the HTTP version -------------------------------------------------------------------


def test_http09_request_line_is_400_at_once(kit) -> None:
    # HTTP/0.9 has no version and no header section: h11 would wait for a blank line
    # until the header timeout; the codec judges the request line when it ends.
    _refused(kit, b"GET /\r\n", status=400)


@pytest.mark.parametrize(
    "version", [b"HTTP/0.9", b"HTTP/1.2", b"HTTP/2.0", b"HTTP/3.0", b"HTTP/9.9"]
)
def test_well_formed_request_line_of_another_version_is_505(kit, version: bytes) -> None:
    # RFC 9110 §15.6.6; h11 itself accepts any HTTP/d.d.
    _refused(kit, b"GET / " + version + b"\r\nHost: a\r\n\r\n", status=505)


@pytest.mark.parametrize(
    "version", [b"http/1.1", b"Http/1.1", b"HTTP/1", b"HTTP/11", b"HTTP/1.1.1", b"HTTP/1.x"]
)
def test_version_that_is_not_http_version_syntax_is_400(kit, version: bytes) -> None:
    # RFC 9112 §2.3: HTTP-name is case-sensitive, then DIGIT "." DIGIT.
    _refused(kit, b"GET / " + version + b"\r\nHost: a\r\n\r\n", status=400)


def test_505_comes_as_soon_as_the_request_line_ends(kit) -> None:
    _refused(kit, b"GET / HTTP/2.0\r\n", status=505)


def test_http10_request_is_forwarded(kit) -> None:
    _forwarded(
        kit,
        b"GET / HTTP/1.0\r\nHost: a\r\n\r\n",
        forwarded=b"GET / HTTP/1.1\r\nhost: a\r\n\r\n",
    )


def test_tls_handshake_on_a_plain_port_is_400_at_once(kit) -> None:
    # A first byte that cannot start a method is refused without waiting for a line end.
    _refused(kit, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", status=400)


def test_eof_inside_a_head_closes_without_an_answer(kit) -> None:
    pb = Playbook(kit.config())
    c = pb.accept()
    assert pb >> DataReceived(conn=c, data=b"GET / HTTP/1.1\r\nHo")
    assert pb >> EofReceived(conn=c) << Close(conn=c)
    kit.assert_clean(pb)


def test_eof_after_a_cr_before_the_request_line_closes_without_an_answer(kit) -> None:
    pb = Playbook(kit.config())
    c = pb.accept()
    assert pb >> DataReceived(conn=c, data=b"\r\n\r")
    assert pb >> EofReceived(conn=c) << Close(conn=c)
    kit.assert_clean(pb)


# -- 2. bare CR ----------------------------------------------------------------------------

GET = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"
FWD_GET = b"GET / HTTP/1.1\r\nhost: a\r\n\r\n"


def test_empty_lines_before_the_request_line_are_ignored(kit) -> None:
    # RFC 9112 §2.2: CRLF, or a lone LF (§2.2 lets a recipient take LF as a line end).
    _forwarded(kit, b"\r\n\n\r\n" + GET, forwarded=FWD_GET)


def test_crlf_split_across_reads_before_the_request_line_is_an_empty_line(kit) -> None:
    _forwarded(kit, b"\r\n\r", b"\n" + GET, forwarded=FWD_GET)


def test_bare_cr_before_the_request_line_is_400(kit) -> None:
    # The codec used to lstrip(b"\r\n"), which ate a bare CR as well.
    _refused(kit, b"\r" + GET, status=400)


def test_bare_cr_in_an_empty_line_before_the_request_line_is_400(kit) -> None:
    _refused(kit, b"\r\r\n" + GET, status=400)


def test_bare_cr_at_the_end_of_a_read_before_the_request_line_is_400(kit) -> None:
    _refused(kit, b"\r\n\r", GET, status=400)


def test_bare_cr_inside_the_request_line_is_400(kit) -> None:
    _refused(kit, b"GET /a\rb HTTP/1.1\r\nHost: a\r\n\r\n", status=400)


def test_bare_cr_before_the_crlf_of_the_request_line_is_400(kit) -> None:
    _refused(kit, b"GET / HTTP/1.1\r\r\nHost: a\r\n\r\n", status=400)


def test_bare_cr_inside_a_field_value_is_400(kit) -> None:
    _refused(kit, b"GET / HTTP/1.1\r\nHost: a\r\nX-A: one\rtwo\r\n\r\n", status=400)


def test_bare_cr_before_the_crlf_of_a_field_line_is_400(kit) -> None:
    _refused(kit, b"GET / HTTP/1.1\r\nHost: a\r\nX-A: one\r\r\n\r\n", status=400)


def test_bare_cr_starting_a_field_line_is_400(kit) -> None:
    _refused(kit, b"GET / HTTP/1.1\r\nHost: a\r\n\rX-A: one\r\n\r\n", status=400)


def test_bare_cr_in_the_empty_line_ending_the_head_is_400(kit) -> None:
    _refused(kit, b"GET / HTTP/1.1\r\nHost: a\r\n\r\r\n", status=400)


def test_bare_cr_in_a_chunk_extension_is_400(kit) -> None:
    # h11's chunk-line pattern lets `.` match a CR inside the extension.
    _refused(kit, CHUNKED_HEAD + b"1;ext\rx\r\na\r\n0\r\n\r\n", status=400)


def test_bare_cr_in_a_chunk_size_line_is_400(kit) -> None:
    _refused(kit, CHUNKED_HEAD + b"1\r\r\na\r\n0\r\n\r\n", status=400)


def test_bare_cr_in_the_last_chunk_line_is_400(kit) -> None:
    _refused(kit, CHUNKED_HEAD + b"1\r\na\r\n0;x\ry\r\n\r\n", status=400)


def test_bare_cr_in_a_trailer_line_is_400(kit) -> None:
    _refused(kit, CHUNKED_HEAD + b"1\r\na\r\n0\r\nX-T: one\rtwo\r\n\r\n", status=400)


def test_bare_cr_in_the_empty_line_ending_the_trailers_is_400(kit) -> None:
    _refused(kit, CHUNKED_HEAD + b"1\r\na\r\n0\r\n\r\r\n", status=400)


def test_bare_cr_in_a_chunk_extension_after_the_head_went_up_is_400_and_aborts(kit) -> None:
    # A body that arrives after its head was forwarded is refused as it arrives:
    # the backend's half-sent request is cut off, never completed.
    pb = Playbook(kit.config())
    c = pb.accept()
    u = kit.forward(pb, c, CHUNKED_HEAD, FWD_CHUNKED_HEAD)
    pb >> DataReceived(conn=c, data=b"1;ext\rx\r\na\r\n") << Close(conn=u, abort=True)
    kit.answered_with_error(pb, c, 400)
    kit.assert_clean(pb)


def test_bad_pipelined_request_is_refused_in_its_turn(kit) -> None:
    # A bare CR in the second of two pipelined requests spoils neither the first
    # request nor its response: the second is judged when its turn comes.
    pb = Playbook(kit.config())
    c = pb.accept()
    u = kit.forward(pb, c, GET + b"GET /\rx HTTP/1.1\r\nHost: a\r\n\r\n", FWD_GET)
    (
        pb
        >> DataReceived(conn=u, data=b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        << Send(conn=c, data=b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
    )
    kit.answered_with_error(pb, c, 400)
    assert pb.advance(60) << Close(conn=u)
    kit.assert_clean(pb)


def test_bytes_after_a_chunked_body_are_the_next_request(kit) -> None:
    # The chunk scanner stops at the end of the body; what follows is the next head.
    pb = Playbook(kit.config())
    c = pb.accept()
    body = b"1\r\na\r\n0\r\n\r\n"
    u = kit.forward(pb, c, CHUNKED_HEAD + body + GET, FWD_CHUNKED_HEAD + body)
    assert (
        pb
        >> DataReceived(conn=u, data=b"HTTP/1.1 204 No Content\r\n\r\n")
        << Send(conn=c, data=b"HTTP/1.1 204 No Content\r\n\r\n")
        << Send(conn=u, data=FWD_GET)
    )
    assert pb >> ConnectionLost(conn=c) << Close(conn=u, abort=True)
    kit.assert_clean(pb)


def test_cr_in_content_length_body_data_is_forwarded(kit) -> None:
    body = b"\ra\r\rb\r"
    _forwarded(
        kit,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\n" + body,
        forwarded=b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 6\r\n\r\n" + body,
    )


def test_cr_in_chunk_data_is_forwarded(kit) -> None:
    # Chunk data that looks like framing (a bare CR, a CRLF, a last chunk) is data.
    data = b"\ra\rb\r\n0\r\n\r\n"
    _forwarded(
        kit,
        CHUNKED_HEAD + b"b\r\n" + data + b"\r\n0\r\n\r\n",
        forwarded=FWD_CHUNKED_HEAD + b"b\r\n" + data + b"\r\n0\r\n\r\n",
    )


def test_cr_in_chunk_data_split_byte_by_byte_is_forwarded(kit) -> None:
    # A CR that ends a read inside chunk data is data: it is forwarded at once.
    pb = Playbook(kit.config())
    c = pb.accept()
    u = kit.forward(pb, c, CHUNKED_HEAD + b"3\r\n", FWD_CHUNKED_HEAD)
    for _ in range(3):
        assert pb >> DataReceived(conn=c, data=b"\r") << Send(conn=u, data=b"1\r\n\r\r\n")
    for piece in _bytes_of(b"\r\n0\r\n\r"):
        assert pb >> DataReceived(conn=c, data=piece)
    assert pb >> DataReceived(conn=c, data=b"\n") << Send(conn=u, data=b"0\r\n\r\n")
    assert pb >> ConnectionLost(conn=c) << Close(conn=u, abort=True)
    kit.assert_clean(pb)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=60)
@given(
    fields=st.lists(
        st.tuples(
            st.from_regex(r"X-[A-Za-z0-9]{1,6}", fullmatch=True),
            st.from_regex(r"[!-~]([ \t!-~]{0,10}[!-~])?", fullmatch=True),
        ),
        max_size=3,
    ),
    data=st.data(),
)
def test_a_bare_cr_anywhere_in_a_valid_head_is_400(kit, fields, data) -> None:
    # Property: insert a CR before any byte but an LF (which would make a CRLF),
    # send the result in random pieces: always 400, never a backend.
    head = b"GET /p HTTP/1.1\r\nHost: a\r\n"
    head += b"".join(b"%s: %s\r\n" % (n.encode(), v.encode()) for n, v in fields) + b"\r\n"
    spots = [i for i in range(len(head)) if head[i : i + 1] != b"\n"]
    at = data.draw(st.sampled_from(spots), label="CR before byte")
    bad = head[:at] + b"\r" + head[at:]
    cuts = sorted(data.draw(st.sets(st.integers(1, len(bad) - 1), max_size=4), label="cuts"))
    reads = [bad[a:b] for a, b in zip([0, *cuts], [*cuts, len(bad)], strict=True)]
    _refused(kit, *reads, status=400)


# -- 3. Host and the authority -------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        b"a b",  # no spaces
        b"a\tb",
        b"user@a.example",  # no userinfo (RFC 9110 §4.2.4)
        b"@a.example",
        b"a.example/path",  # no path
        b"a.example?q",
        b"a.example#f",
        b"a.example:8x",  # port digits only
        b"a.example:-1",
        b"a.example:80:80",
        b"a.example, b.example",
        b"[::1",  # an IP-literal in full
        b"[::1]x",
        b"[::g]",
        b"[1:2:3:4:5:6:7:8:9]",
        b"[fe80::1%25eth0]",  # zone ids are RFC 6874, not RFC 3986
        b"::1",
        b"a%zz.example",  # a pct-encoded octet is % HEXDIG HEXDIG
        b"\xc3\xa9.example",  # obs-text is no reg-name
    ],
)
def test_invalid_host_is_400(kit, host: bytes) -> None:
    # RFC 9112 §3.2: MUST respond 400 to a Host with an invalid value.
    _refused(kit, b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n", status=400)


@pytest.mark.parametrize(
    "host",
    [
        b"a.example",
        b"a.example:8080",
        b"A-1.example.:1",
        b"127.0.0.1:80",
        b"999.1.1.1",  # not an IPv4address, so a reg-name (RFC 3986 §3.2.2)
        b"[::1]:8080",
        b"[2001:db8::7]",
        b"[::ffff:192.0.2.1]",
        b"[v1.fe:x]",  # IPvFuture
        b"xn--bcher-kva.example",
        b"%41.example",
        b"a.example:",  # port = *DIGIT
        b"",  # RFC 9110 §7.2: empty when the target has no authority
    ],
)
def test_valid_host_is_forwarded(kit, host: bytes) -> None:
    request = b"GET / HTTP/1.1\r\nHost: " + host + b"\r\n\r\n"
    _forwarded(kit, request, forwarded=b"GET / HTTP/1.1\r\nhost: " + host + b"\r\n\r\n")


def test_two_host_lines_are_400(kit) -> None:
    # RFC 9112 §3.2 (h11 refuses this already).
    _refused(kit, b"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", status=400)


def test_two_host_lines_in_http10_are_400(kit) -> None:
    _refused(kit, b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", status=400)


def test_http11_request_without_host_is_400(kit) -> None:
    # RFC 9112 §3.2 (h11 refuses this already).
    _refused(kit, b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", status=400)


def test_http11_absolute_form_request_without_host_is_400(kit) -> None:
    # The MUST covers every HTTP/1.1 request, whatever the form of its target.
    _refused(kit, b"GET http://a.example/ HTTP/1.1\r\n\r\n", status=400)


def test_http10_request_without_host_gets_one_from_the_proxy(kit) -> None:
    _forwarded(
        kit,
        b"GET / HTTP/1.0\r\n\r\n",
        forwarded=b"GET / HTTP/1.1\r\nhost: 10.0.0.1:8001\r\n\r\n",
    )


def test_invalid_host_in_http10_is_400(kit) -> None:
    _refused(kit, b"GET / HTTP/1.0\r\nHost: a/b\r\n\r\n", status=400)


def test_invalid_host_in_a_head_request_is_400(kit) -> None:
    # Found by the client fuzz harness: this used to crash handle(). A head the
    # codec refuses is answered like one h11 refuses, with the error's body.
    _refused(kit, b"HEAD ! HTTP/1.0\nHost:! !\n\n", status=400)


def test_bare_cr_in_the_chunk_extension_of_a_head_request_is_400(kit) -> None:
    request = b"HEAD / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n1;a\rb\r\n"
    _refused(kit, request, status=400)


def test_absolute_form_with_an_invalid_host_is_400(kit) -> None:
    # The target's authority replaces Host (RFC 9112 §3.2.2), but an invalid
    # Host is refused all the same (§3.2).
    _refused(kit, b"GET http://a.example/ HTTP/1.1\r\nHost: a b\r\n\r\n", status=400)


@pytest.mark.parametrize(
    "target",
    [
        b"http://user@a.example/",  # userinfo (RFC 9110 §4.2.4)
        b"http://user:pw@a.example/",
        b"http://a.example:x/",
        b"http:///x",  # an empty host (RFC 9110 §4.2.1)
        b"http://:80/",
        b"http://[::1/",
        b"http://a.example#frag/",
        b"http://a%zz/",
        b"1http://a.example/",  # a scheme starts with a letter
        b"ht&tp://a.example/",
    ],
)
def test_absolute_form_with_an_invalid_authority_is_400(kit, target: bytes) -> None:
    _refused(kit, b"GET " + target + b" HTTP/1.1\r\nHost: a.example\r\n\r\n", status=400)


def test_absolute_form_with_a_valid_authority_is_forwarded_in_origin_form(kit) -> None:
    _forwarded(
        kit,
        b"GET http://b.example:8080/p?q HTTP/1.1\r\nHost: a.example\r\n\r\n",
        forwarded=b"GET /p?q HTTP/1.1\r\nhost: b.example:8080\r\n\r\n",
    )


# -- 4. control characters in field values -------------------------------------------------

CONTROLS = [*range(0x09), *range(0x0A, 0x20), 0x7F]


@pytest.mark.parametrize("byte", CONTROLS, ids=[f"0x{b:02x}" for b in CONTROLS])
def test_control_character_in_a_field_value_is_400(kit, byte: int) -> None:
    # RFC 9110 §5.5. h11 refuses NUL, VT, FF and CR itself and lets the others
    # through. A LF ends the line (RFC 9112 §2.2), leaving "b" as a field line
    # without a colon, which h11 refuses.
    control = bytes([byte])
    _refused(kit, b"GET / HTTP/1.1\r\nHost: a\r\nX-A: a" + control + b"b\r\n\r\n", status=400)


@pytest.mark.parametrize("byte", [0x01, 0x1F, 0x7F], ids=["0x01", "0x1f", "0x7f"])
def test_control_character_in_a_trailer_value_is_400(kit, byte: int) -> None:
    control = bytes([byte])
    _refused(kit, CHUNKED_HEAD + b"1\r\na\r\n0\r\nX-T: a" + control + b"b\r\n\r\n", status=400)


def test_htab_and_obs_text_in_a_field_value_are_forwarded(kit) -> None:
    value = b"a\tb \x80\xff"
    _forwarded(
        kit,
        b"GET / HTTP/1.1\r\nHost: a\r\nX-A: " + value + b"\r\n\r\n",
        forwarded=b"GET / HTTP/1.1\r\nhost: a\r\nx-a: " + value + b"\r\n\r\n",
    )


# -- limits: max_header_bytes (431) --------------------------------------------------------

LIMIT = 200


def _head_of(size: int, *, eol: bytes = b"\r\n") -> bytes:
    """A valid request head of exactly ``size`` bytes, padded in one field."""
    start = b"GET / HTTP/1.1" + eol + b"Host: a" + eol + b"X-Pad: "
    end = eol + eol
    head = start + b"p" * (size - len(start) - len(end)) + end
    assert len(head) == size
    return head


def _lowered(head: bytes) -> bytes:
    """``head`` as forwarded: the same bytes with lower-case field names, CRLF line ends."""
    return (
        head.replace(b"\r\n", b"\n")
        .replace(b"\n", b"\r\n")
        .replace(b"Host:", b"host:")
        .replace(b"X-Pad:", b"x-pad:")
    )


def test_head_of_exactly_max_header_bytes_is_forwarded(kit) -> None:
    head = _head_of(LIMIT)
    _forwarded(kit, head, forwarded=_lowered(head), max_header_bytes=LIMIT)


def test_head_one_byte_over_max_header_bytes_is_431(kit) -> None:
    _refused(kit, _head_of(LIMIT + 1), status=431, max_header_bytes=LIMIT)


def test_head_of_exactly_max_header_bytes_byte_by_byte_is_forwarded(kit) -> None:
    head = _head_of(LIMIT)
    _forwarded(
        kit,
        *_bytes_of(head),
        forwarded=_lowered(head),
        max_header_bytes=LIMIT,
    )


def test_head_one_byte_over_max_header_bytes_byte_by_byte_is_431(kit) -> None:
    _refused(kit, *_bytes_of(_head_of(LIMIT + 1)), status=431, max_header_bytes=LIMIT)


def test_head_with_lf_line_ends_of_exactly_max_header_bytes_is_forwarded(kit) -> None:
    # The bytes received are counted: LF line ends count one byte each, as sent.
    head = _head_of(LIMIT, eol=b"\n")
    _forwarded(kit, head, forwarded=_lowered(head), max_header_bytes=LIMIT)


def test_head_with_lf_line_ends_one_byte_over_max_header_bytes_is_431(kit) -> None:
    _refused(kit, _head_of(LIMIT + 1, eol=b"\n"), status=431, max_header_bytes=LIMIT)


def test_empty_lines_before_the_request_line_are_not_counted(kit) -> None:
    head = _head_of(LIMIT)
    _forwarded(
        kit,
        b"\r\n" * LIMIT + head,
        forwarded=_lowered(head),
        max_header_bytes=LIMIT,
    )


def test_head_over_max_header_bytes_is_431_before_it_ends(kit) -> None:
    # One byte past the limit is enough to refuse; the head need not end.
    _refused(kit, _head_of(LIMIT + 1)[: LIMIT + 1 - 4], b"pppp", status=431, max_header_bytes=LIMIT)


def test_request_line_longer_than_max_header_bytes_is_431(kit) -> None:
    _refused(
        kit, b"GET /" + b"a" * LIMIT, status=431, max_header_bytes=LIMIT, max_uri_bytes=LIMIT * 2
    )


def _trailers_of(size: int) -> bytes:
    """A trailer section of exactly ``size`` bytes (its field line and the final CRLF)."""
    start, end = b"X-T: ", b"\r\n\r\n"
    return start + b"t" * (size - len(start) - len(end)) + end


def test_trailer_section_of_exactly_max_header_bytes_is_forwarded(kit) -> None:
    # The trailer section is bounded by the same number, counted the same way.
    trailers = _trailers_of(LIMIT)
    pb = Playbook(kit.config(max_header_bytes=LIMIT))
    c = pb.accept()
    u = kit.forward(pb, c, CHUNKED_HEAD + b"1\r\na\r\n0\r\n", FWD_CHUNKED_HEAD + b"1\r\na\r\n")
    for piece in _bytes_of(trailers):
        pb >> DataReceived(conn=c, data=piece)
    assert pb << Send(conn=u, data=b"0\r\nx-t: " + trailers[5:])
    assert pb >> ConnectionLost(conn=c) << Close(conn=u, abort=True)
    kit.assert_clean(pb)


def test_trailer_section_one_byte_over_max_header_bytes_is_431(kit) -> None:
    request = CHUNKED_HEAD + b"1\r\na\r\n0\r\n" + _trailers_of(LIMIT + 1)
    _refused(kit, request, status=431, max_header_bytes=LIMIT)


def test_chunk_size_line_of_exactly_max_header_bytes_is_forwarded(kit) -> None:
    line = b"1;x=" + b"e" * (LIMIT - 6) + b"\r\n"
    assert len(line) == LIMIT
    _forwarded(
        kit,
        CHUNKED_HEAD + line + b"a\r\n",
        forwarded=FWD_CHUNKED_HEAD + b"1\r\na\r\n",
        max_header_bytes=LIMIT,
    )


def test_chunk_size_line_one_byte_over_max_header_bytes_is_431(kit) -> None:
    line = b"1;x=" + b"e" * (LIMIT - 5) + b"\r\n"
    _refused(kit, CHUNKED_HEAD + line + b"a\r\n", status=431, max_header_bytes=LIMIT)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=40)
@given(size=st.integers(60, 120), limit=st.integers(60, 120), data=st.data())
def test_head_limit_is_the_same_in_any_split(kit, size: int, limit: int, data) -> None:
    # Property: a head of `size` bytes is refused exactly when size > limit,
    # however it is cut into reads.
    head = _head_of(size)
    cuts = sorted(data.draw(st.sets(st.integers(1, size - 1), max_size=6), label="cuts"))
    reads = [head[a:b] for a, b in zip([0, *cuts], [*cuts, size], strict=True)]
    if size > limit:
        _refused(kit, *reads, status=431, max_header_bytes=limit)
    else:
        _forwarded(kit, *reads, forwarded=_lowered(head), max_header_bytes=limit)


# -- limits: max_header_count (431), max_uri_bytes (414) -----------------------------------


def _fields(count: int) -> bytes:
    return b"Host: a\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(count - 1))


def test_max_header_count_fields_are_forwarded(kit) -> None:
    _forwarded(
        kit,
        b"GET / HTTP/1.1\r\n" + _fields(5) + b"\r\n",
        forwarded=b"GET / HTTP/1.1\r\n"
        + _fields(5).replace(b"Host", b"host").replace(b"X-", b"x-")
        + b"\r\n",
        max_header_count=5,
    )


def test_one_field_over_max_header_count_is_431(kit) -> None:
    _refused(kit, b"GET / HTTP/1.1\r\n" + _fields(6) + b"\r\n", status=431, max_header_count=5)


def test_target_of_exactly_max_uri_bytes_is_forwarded(kit) -> None:
    target = b"/" + b"a" * 31
    _forwarded(
        kit,
        b"GET " + target + b" HTTP/1.1\r\nHost: a\r\n\r\n",
        forwarded=b"GET " + target + b" HTTP/1.1\r\nhost: a\r\n\r\n",
        max_uri_bytes=32,
    )


def test_target_one_byte_over_max_uri_bytes_is_414(kit) -> None:
    target = b"/" + b"a" * 32
    _refused(kit, b"GET " + target + b" HTTP/1.1\r\nHost: a\r\n\r\n", status=414, max_uri_bytes=32)


# -- limits: max_body_bytes (413) ----------------------------------------------------------


def test_content_length_of_exactly_max_body_bytes_is_forwarded(kit) -> None:
    _forwarded(
        kit,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n0123456789",
        forwarded=b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 10\r\n\r\n0123456789",
        max_body_bytes=10,
    )


def test_content_length_one_over_max_body_bytes_is_413(kit) -> None:
    _refused(
        kit,
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n01234567890",
        status=413,
        max_body_bytes=10,
    )


def test_chunked_body_of_exactly_max_body_bytes_is_forwarded(kit) -> None:
    pb = Playbook(kit.config(max_body_bytes=10))
    c = pb.accept()
    u = kit.forward(
        pb,
        c,
        CHUNKED_HEAD + b"6\r\nabcdef\r\n4\r\nghij\r\n0\r\n\r\n",
        FWD_CHUNKED_HEAD + b"6\r\nabcdef\r\n4\r\nghij\r\n0\r\n\r\n",
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


def test_chunked_body_one_over_max_body_bytes_is_413(kit) -> None:
    # The body is counted as it streams; with the whole of it in one read the
    # backend was chosen but had nothing sent to it when the limit was crossed.
    pb = Playbook(kit.config(max_body_bytes=10))
    c = pb.accept()
    u = Placeholder(ConnId)
    (
        pb
        >> DataReceived(conn=c, data=CHUNKED_HEAD + b"6\r\nabcdef\r\n5\r\nghijk\r\n0\r\n\r\n")
        << OpenUpstream(conn=u, host="10.0.0.1", port=8001)
        << Close(conn=u, abort=True)
    )
    kit.answered_with_error(pb, c, 413)
    kit.assert_clean(pb)


# -- limits: max_client_connections (503) --------------------------------------------------


def test_max_client_connections_are_served_and_one_more_gets_503(kit) -> None:
    pb = Playbook(kit.config(max_client_connections=2))
    c1 = pb.accept()
    c2 = pb.accept(peer=("203.0.113.8", 40000))
    u = Placeholder(ConnId)
    assert pb >> DataReceived(conn=c2, data=GET) << OpenUpstream(conn=u, host="10.0.0.1", port=8001)
    c3 = pb.accept(peer=("203.0.113.9", 40000))
    assert pb << Send(conn=c3, data=kit.error(503)) << Close(conn=c3)
    assert (
        pb
        >> ConnectionLost(conn=c2)
        << Close(conn=u, abort=True)
        >> EofReceived(conn=c1)
        << Close(conn=c1)
    )
    kit.assert_clean(pb)
