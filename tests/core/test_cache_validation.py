"""Validation (RFC 9111 §4.3; RFC 9110 §13): validators, 304 merging, clients' conditionals."""

from __future__ import annotations

import email.utils

import pytest

from sansproxy.cache.validation import (
    NOT_STORED,
    client_not_modified,
    not_modified_headers,
    storable_headers,
    updated_headers,
    validators,
)

T = 1_000_000_000
Headers = list[tuple[bytes, bytes]]


def http_date(seconds: int) -> bytes:
    return email.utils.formatdate(seconds, usegmt=True).encode()


# ---------------------------------------------------------------------------------------------
# The conditional request a cache sends (RFC 9111 §4.3.1).


def test_validator_from_etag() -> None:
    """RFC 9111 §4.3.1: an entity tag is sent back in If-None-Match."""
    assert validators([(b"etag", b'"v1"')]) == [(b"if-none-match", b'"v1"')]


def test_weak_etag_is_sent_as_is() -> None:
    """RFC 9110 §13.1.2: If-None-Match uses weak comparison, so a weak tag validates too."""
    assert validators([(b"etag", b'W/"v1"')]) == [(b"if-none-match", b'W/"v1"')]


def test_validator_from_last_modified() -> None:
    """RFC 9111 §4.3.1: Last-Modified is sent back in If-Modified-Since."""
    stored = [(b"last-modified", http_date(T))]
    assert validators(stored) == [(b"if-modified-since", http_date(T))]


def test_both_validators() -> None:
    """RFC 9111 §4.3.1: both validators are sent (the recipient applies its precedence)."""
    stored = [(b"date", http_date(T)), (b"etag", b'"v1"'), (b"last-modified", http_date(T - 9))]
    assert validators(stored) == [
        (b"if-none-match", b'"v1"'),
        (b"if-modified-since", http_date(T - 9)),
    ]


def test_no_validators() -> None:
    """RFC 9111 §4.3.1: without ETag or Last-Modified there is nothing to validate with."""
    assert validators([(b"date", http_date(T))]) == []


def test_invalid_last_modified_is_not_sent() -> None:
    """RFC 9110 §13.1.3: an invalid HTTP-date in If-Modified-Since is ignored; send none."""
    assert validators([(b"last-modified", b"yesterday")]) == []


# ---------------------------------------------------------------------------------------------
# What a cache stores (RFC 9111 §3.1).


def test_storable_headers_drop_hop_by_hop_and_connection_listed_fields() -> None:
    """RFC 9111 §3.1: not stored: Connection, the fields it lists, and hop-by-hop fields."""
    headers = [
        (b"content-type", b"text/plain"),
        (b"connection", b"X-Hop, close"),
        (b"x-hop", b"1"),
        (b"keep-alive", b"timeout=5"),
        (b"transfer-encoding", b"chunked"),
        (b"proxy-connection", b"keep-alive"),
        (b"te", b"trailers"),
        (b"upgrade", b"h2c"),
        (b"proxy-authenticate", b"Basic"),
        (b"proxy-authentication-info", b"x"),
        (b"trailer", b"x-checksum"),
        (b"age", b"5"),
        (b"etag", b'"a"'),
    ]
    assert storable_headers(headers) == [(b"content-type", b"text/plain"), (b"etag", b'"a"')]


def test_storable_headers_leave_out_private_field_names() -> None:
    """RFC 9111 §5.2.2.7: with ``private="x-user"`` a shared cache stores the rest."""
    headers = [(b"x-user", b"alice"), (b"etag", b'"a"')]
    assert storable_headers(headers, leave_out=frozenset({b"x-user"})) == [(b"etag", b'"a"')]


def test_hop_by_hop_list() -> None:
    """RFC 9110 §7.6.1 and RFC 9111 §3.1: the fields a cache never stores."""
    assert {b"connection", b"keep-alive", b"te", b"transfer-encoding", b"upgrade"} <= NOT_STORED
    assert {b"proxy-connection", b"proxy-authenticate", b"proxy-authentication-info"} <= NOT_STORED


# ---------------------------------------------------------------------------------------------
# Merging a 304 into the stored response (RFC 9111 §3.2, §4.3.4).

STORED = [
    (b"date", http_date(T)),
    (b"etag", b'"v1"'),
    (b"content-type", b"text/html"),
    (b"content-length", b"5"),
    (b"content-encoding", b"gzip"),
    (b"content-range", b"bytes 0-4/5"),
    (b"cache-control", b"max-age=10"),
    (b"link", b"</a>; rel=preload"),
    (b"link", b"</b>; rel=preload"),
    (b"x-old", b"kept"),
]


def merged(fresh: Headers, leave_out: frozenset[bytes] = frozenset()) -> dict[bytes, list[bytes]]:
    result: dict[bytes, list[bytes]] = {}
    for name, value in updated_headers(STORED, fresh, leave_out=leave_out):
        result.setdefault(name, []).append(value)
    return result


def test_304_replaces_stored_fields() -> None:
    """RFC 9111 §3.2: add each field of the 304, replacing the stored values."""
    result = merged([(b"date", http_date(T + 5)), (b"cache-control", b"max-age=20")])
    assert result[b"date"] == [http_date(T + 5)]
    assert result[b"cache-control"] == [b"max-age=20"]


def test_304_keeps_fields_it_does_not_carry() -> None:
    """RFC 9111 §3.2: fields absent from the 304 stay as stored."""
    result = merged([(b"date", http_date(T + 5))])
    assert result[b"x-old"] == [b"kept"]
    assert result[b"content-type"] == [b"text/html"]
    assert result[b"etag"] == [b'"v1"']


def test_304_adds_new_fields() -> None:
    """RFC 9111 §3.2: a field of the 304 not yet stored is added."""
    assert merged([(b"x-new", b"1")])[b"x-new"] == [b"1"]


def test_304_replaces_every_line_of_a_field() -> None:
    """RFC 9111 §3.2: a field in the 304 replaces all the stored lines of that field."""
    assert merged([(b"link", b"</c>; rel=preload")])[b"link"] == [b"</c>; rel=preload"]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        (b"content-length", b"0"),
        (b"content-encoding", b"br"),
        (b"content-range", b"bytes 0-0/1"),
    ],
)
def test_304_does_not_change_what_the_stored_body_depends_on(name: bytes, value: bytes) -> None:
    """RFC 9111 §3.2: Content-Length is never updated, nor fields the stored body depends on."""
    assert merged([(name, value)])[name] == [dict(STORED)[name]]


def test_304_hop_by_hop_fields_are_not_merged() -> None:
    """RFC 9111 §3.2: the exceptions to storage of §3.1 apply to updates too."""
    result = merged(
        [
            (b"connection", b"x-hop"),
            (b"x-hop", b"1"),
            (b"keep-alive", b"timeout=5"),
            (b"transfer-encoding", b"chunked"),
            (b"age", b"3"),
        ]
    )
    for name in (b"connection", b"x-hop", b"keep-alive", b"transfer-encoding", b"age"):
        assert name not in result


def test_304_connection_listed_field_does_not_replace_a_stored_one() -> None:
    """RFC 9110 §7.6.1: a field listed in the 304's Connection is for that hop only."""
    result = merged([(b"connection", b"X-Old"), (b"x-old", b"hop-only")])
    assert result[b"x-old"] == [b"kept"]


def test_304_private_fields_are_left_out() -> None:
    """RFC 9111 §5.2.2.7: ``private`` field names are not stored from the 304 either."""
    result = merged([(b"x-user", b"alice")], leave_out=frozenset({b"x-user"}))
    assert b"x-user" not in result


def test_304_new_etag_replaces_the_stored_one() -> None:
    """RFC 9111 §3.2: ETag is not excepted, so a 304's ETag replaces the stored one."""
    assert merged([(b"etag", b'W/"v1"')])[b"etag"] == [b'W/"v1"']


# ---------------------------------------------------------------------------------------------
# Answering a client's conditional GET (RFC 9111 §4.3.2, RFC 9110 §13.1, §13.2.2).


def not_modified(request: Headers, stored: Headers, stored_date: int = T) -> bool:
    return client_not_modified(request, stored, stored_date=stored_date)


@pytest.mark.parametrize(
    ("if_none_match", "etag"),
    [
        (b'"v1"', b'"v1"'),
        (b'W/"v1"', b'"v1"'),  # weak comparison: the W/ prefix does not matter
        (b'"v1"', b'W/"v1"'),
        (b'W/"v1"', b'W/"v1"'),
        (b'"x", "v1"', b'"v1"'),
        (b'"x",W/"v1"', b'"v1"'),
        (b' "x" ,  "v1" ', b'"v1"'),
        (b'"a,b"', b'"a,b"'),  # a comma inside an entity tag
    ],
)
def test_if_none_match_weak_comparison(if_none_match: bytes, etag: bytes) -> None:
    """RFC 9110 §13.1.2: a recipient MUST use the weak comparison function (§8.8.3.2)."""
    assert not_modified([(b"if-none-match", if_none_match)], [(b"etag", etag)])


@pytest.mark.parametrize(
    ("if_none_match", "etag"),
    [
        (b'"v2"', b'"v1"'),
        (b'"V1"', b'"v1"'),  # opaque-tags are case-sensitive
        (b'"a"', b'"a,b"'),
        (b'"b"', b'"a,b"'),
        (b'"v1 "', b'"v1"'),
    ],
)
def test_if_none_match_different_tags(if_none_match: bytes, etag: bytes) -> None:
    """RFC 9110 §8.8.3.2: weak comparison still compares the opaque-tags octet for octet."""
    assert not not_modified([(b"if-none-match", if_none_match)], [(b"etag", etag)])


def test_if_none_match_over_several_lines() -> None:
    """RFC 9110 §5.3: If-None-Match is a list, and may be split across field lines."""
    request = [(b"if-none-match", b'"x"'), (b"if-none-match", b'"v1"')]
    assert not_modified(request, [(b"etag", b'"v1"')])


def test_if_none_match_star() -> None:
    """RFC 9110 §13.1.2: "*" is false (so 304) whenever a current representation exists."""
    assert not_modified([(b"if-none-match", b"*")], [(b"etag", b'"v1"')])


def test_if_none_match_star_without_an_etag() -> None:
    """RFC 9110 §13.1.2: "*" needs no entity tag: the stored response is a representation."""
    assert not_modified([(b"if-none-match", b"*")], [(b"date", http_date(T))])


def test_if_none_match_without_a_stored_etag() -> None:
    """RFC 9110 §13.1.2: a listed tag cannot match a response without ETag."""
    assert not not_modified([(b"if-none-match", b'"v1"')], [(b"date", http_date(T))])


def test_if_none_match_takes_precedence_over_if_modified_since() -> None:
    """RFC 9110 §13.1.3: a recipient MUST ignore If-Modified-Since with If-None-Match."""
    stored = [(b"etag", b'"v1"'), (b"last-modified", http_date(T - 100))]
    no_match_but_old = [(b"if-none-match", b'"v2"'), (b"if-modified-since", http_date(T))]
    assert not not_modified(no_match_but_old, stored)
    match_but_too_early = [(b"if-none-match", b'"v1"'), (b"if-modified-since", http_date(0))]
    assert not_modified(match_but_too_early, stored)


@pytest.mark.parametrize(
    ("since", "expected"),
    [(T - 100, True), (T, True), (T - 101, False), (T - 1000, False)],
)
def test_if_modified_since_against_last_modified(since: int, expected: bool) -> None:
    """RFC 9111 §4.3.2 (1): 304 when Last-Modified is earlier than or equal to the date."""
    stored = [(b"date", http_date(T)), (b"last-modified", http_date(T - 100))]
    assert not_modified([(b"if-modified-since", http_date(since))], stored) is expected


@pytest.mark.parametrize(("since", "expected"), [(T, True), (T + 5, True), (T - 1, False)])
def test_if_modified_since_falls_back_to_date(since: int, expected: bool) -> None:
    """RFC 9111 §4.3.2 (2): without Last-Modified, compare the stored Date."""
    stored = [(b"date", http_date(T))]
    request = [(b"if-modified-since", http_date(since))]
    assert not_modified(request, stored, stored_date=T) is expected


def test_invalid_last_modified_falls_back_to_date() -> None:
    """RFC 9111 §4.3.2: an unusable Last-Modified is treated like an absent one."""
    stored = [(b"date", http_date(T)), (b"last-modified", b"nonsense")]
    assert not_modified([(b"if-modified-since", http_date(T))], stored, stored_date=T)


@pytest.mark.parametrize(
    "request_fields",
    [
        [(b"if-modified-since", b"yesterday")],
        [(b"if-modified-since", http_date(T)), (b"if-modified-since", http_date(T + 1))],
        [],
    ],
)
def test_unusable_if_modified_since_is_ignored(request_fields: Headers) -> None:
    """RFC 9110 §13.1.3: ignore an invalid date or more than one member; then no 304."""
    stored = [(b"date", http_date(T)), (b"last-modified", http_date(T - 100))]
    assert not not_modified(request_fields, stored)


# ---------------------------------------------------------------------------------------------
# The 304 a cache sends (RFC 9110 §15.4.5).


def test_not_modified_headers() -> None:
    """RFC 9110 §15.4.5: Cache-Control, Content-Location, Date, ETag, Expires and Vary."""
    stored = [
        (b"date", http_date(T)),
        (b"etag", b'"v1"'),
        (b"cache-control", b"max-age=60"),
        (b"expires", http_date(T + 60)),
        (b"vary", b"accept-encoding"),
        (b"content-location", b"/a.html"),
        (b"content-type", b"text/html"),
        (b"content-length", b"5"),
        (b"set-cookie", b"id=1"),
        (b"last-modified", http_date(T - 100)),
    ]
    assert not_modified_headers(stored) == stored[:6]
