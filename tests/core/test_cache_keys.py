"""Cache keys (RFC 9111 §2, §4.1): the primary key and selecting a variant by Vary."""

from __future__ import annotations

import pytest

from sansproxy.cache.keys import matches, primary_key, variant, vary_names

Headers = list[tuple[bytes, bytes]]


def test_primary_key_is_the_target_uri() -> None:
    """RFC 9111 §2: the primary cache key is the request method and target URI (GET only)."""
    key = primary_key(scheme=b"https", host=b"example.com", target=b"/a/b?q=1")
    assert key == b"https://example.com/a/b?q=1"


def test_host_is_case_insensitive_path_is_not() -> None:
    """RFC 3986 §6.2.2.1 (via RFC 9110 §4.2.3): the host is case-insensitive, the path not."""
    assert primary_key(scheme=b"http", host=b"Example.COM", target=b"/A") == b"http://example.com/A"
    assert primary_key(scheme=b"http", host=b"a", target=b"/A") != primary_key(
        scheme=b"http", host=b"a", target=b"/a"
    )


def test_scheme_and_query_are_part_of_the_key() -> None:
    """RFC 9111 §2: different target URIs are different keys."""
    keys = {
        primary_key(scheme=b"http", host=b"a", target=b"/x"),
        primary_key(scheme=b"https", host=b"a", target=b"/x"),
        primary_key(scheme=b"http", host=b"a", target=b"/x?1"),
    }
    assert len(keys) == 3


# ---------------------------------------------------------------------------------------------
# Vary's field names.


@pytest.mark.parametrize(
    ("lines", "names"),
    [
        ([], ()),
        ([b"accept-encoding"], (b"accept-encoding",)),
        ([b"Accept-Encoding, ACCEPT-LANGUAGE"], (b"accept-encoding", b"accept-language")),
        ([b"accept", b"origin"], (b"accept", b"origin")),  # several Vary lines
        ([b"accept, Accept", b"ACCEPT"], (b"accept",)),
        ([b" , accept ,, origin , "], (b"accept", b"origin")),
    ],
)
def test_vary_names(lines: list[bytes], names: tuple[bytes, ...]) -> None:
    """RFC 9110 §12.5.5: Vary is a list of case-insensitive field names, on any number of lines."""
    assert vary_names([(b"vary", line) for line in lines]) == names


# ---------------------------------------------------------------------------------------------
# Matching (RFC 9111 §4.1).


def stored_for(request: Headers, *names: bytes) -> tuple[tuple[bytes, bytes | None], ...]:
    return variant(request, names)


def test_no_vary_matches_any_request() -> None:
    """RFC 9111 §4.1: without Vary, every request for the URI selects the response."""
    assert matches(stored_for([]), [(b"accept-language", b"fr")])


def test_same_value_matches_different_value_does_not() -> None:
    """RFC 9111 §4.1: the selecting fields of the two requests must match."""
    stored = stored_for([(b"accept-language", b"en")], b"accept-language")
    assert matches(stored, [(b"accept-language", b"en")])
    assert not matches(stored, [(b"accept-language", b"fr")])


def test_absent_matches_only_absent() -> None:
    """RFC 9111 §4.1: a field absent from both requests matches; absent in one only does not."""
    stored = stored_for([], b"accept-language")
    assert stored == ((b"accept-language", None),)
    assert matches(stored, [])
    assert matches(stored, [(b"accept", b"text/html")])
    assert not matches(stored, [(b"accept-language", b"en")])
    present = stored_for([(b"accept-language", b"en")], b"accept-language")
    assert not matches(present, [])


def test_empty_value_is_not_absence() -> None:
    """RFC 9111 §4.1: a field present with an empty value differs from an absent field."""
    stored = stored_for([(b"accept-language", b"")], b"accept-language")
    assert matches(stored, [(b"accept-language", b"")])
    assert not matches(stored, [])


def test_several_field_lines_match_their_combined_value() -> None:
    """RFC 9111 §4.1: values are normalised by combining multiple field lines (RFC 9110 §5.3)."""
    stored = stored_for([(b"accept-language", b"en, fr")], b"accept-language")
    assert matches(stored, [(b"accept-language", b"en"), (b"accept-language", b"fr")])
    assert matches(stored, [(b"accept-language", b"en,fr")])
    assert matches(stored, [(b"accept-language", b" en ,  fr ")])


def test_order_of_list_members_matters_for_other_fields() -> None:
    """RFC 9111 §4.1: only normalisations known to keep the semantics are applied."""
    stored = stored_for([(b"x-variant", b"a, b")], b"x-variant")
    assert not matches(stored, [(b"x-variant", b"b, a")])
    assert not matches(stored, [(b"x-variant", b"A, B")])


def test_accept_language_is_normalised() -> None:
    """RFC 9111 §4.1 with RFC 4647 §2: language tags are case-insensitive; weights decide."""
    stored = stored_for([(b"accept-language", b"en-GB, fr;q=0.5")], b"accept-language")
    assert matches(stored, [(b"accept-language", b"fr; q=0.5, en-gb")])
    assert not matches(stored, [(b"accept-language", b"en-GB, fr;q=0.6")])


def test_every_vary_field_must_match() -> None:
    """RFC 9111 §4.1: all of the selecting fields match, not just one."""
    request = [(b"accept-language", b"en"), (b"origin", b"https://a")]
    stored = stored_for(request, b"accept-language", b"origin")
    assert matches(stored, request)
    assert not matches(stored, [(b"accept-language", b"en"), (b"origin", b"https://b")])
    assert not matches(stored, [(b"accept-language", b"en")])


def test_vary_field_names_are_matched_case_insensitively() -> None:
    """RFC 9110 §5.1: field names are case-insensitive (requests arrive lower-cased)."""
    response = [(b"vary", b"Accept-Language")]
    stored = variant([(b"accept-language", b"en")], vary_names(response))
    assert matches(stored, [(b"accept-language", b"en")])
    assert not matches(stored, [(b"accept-language", b"de")])


@pytest.mark.parametrize(
    "other",
    [
        [(b"accept-encoding", b"br, gzip")],
        [(b"accept-encoding", b"GZIP, BR")],
        [(b"accept-encoding", b"gzip,br")],
        [(b"accept-encoding", b"br"), (b"accept-encoding", b"gzip")],
        [(b"accept-encoding", b"gzip, br, gzip")],
        [(b"accept-encoding", b", gzip,, br")],
    ],
)
def test_accept_encoding_is_normalised(other: Headers) -> None:
    """RFC 9111 §4.1: codings are case-insensitive (RFC 9110 §8.4.1) and unordered."""
    stored = stored_for([(b"accept-encoding", b"gzip, br")], b"accept-encoding")
    assert matches(stored, other)


def test_accept_encoding_qvalue_whitespace_is_normalised() -> None:
    """RFC 9110 §12.4.2: ``gzip;q=0.5`` and ``gzip ; q=0.5`` are the same weight."""
    stored = stored_for([(b"accept-encoding", b"gzip;q=0.5, br")], b"accept-encoding")
    assert matches(stored, [(b"accept-encoding", b"br, gzip ; q=0.5")])


@pytest.mark.parametrize(
    "other",
    [
        [(b"accept-encoding", b"gzip")],
        [(b"accept-encoding", b"gzip, br, zstd")],
        [(b"accept-encoding", b"gzip;q=0.5, br")],
        [],
    ],
)
def test_different_accept_encoding_does_not_match(other: Headers) -> None:
    """RFC 9111 §4.1: a different set of codings (or weights) is a different variant."""
    stored = stored_for([(b"accept-encoding", b"gzip, br")], b"accept-encoding")
    assert not matches(stored, other)


# ---------------------------------------------------------------------------------------------
# The route's extra key parts: request fields and cookies.


def test_key_header_is_part_of_the_variant() -> None:
    """RFC 9111 §2: a cache may add parts to the key (here a request header)."""
    stored = variant([(b"x-tenant", b"a")], (), key_headers=(b"x-tenant",))
    assert matches(stored, [(b"x-tenant", b"a")])
    assert not matches(stored, [(b"x-tenant", b"b")])
    assert not matches(stored, [])


def test_key_header_does_not_collide_with_a_vary_field() -> None:
    """RFC 9111 §4.1: a key part is kept apart from the Vary field of the same name."""
    stored = variant(
        [(b"accept-language", b"en")], (b"accept-language",), key_headers=(b"accept-language",)
    )
    assert len(stored) == 2
    assert stored[0][0] != stored[1][0]
    assert matches(stored, [(b"accept-language", b"en")])


def test_key_cookie() -> None:
    """RFC 9111 §2: a cookie's value can be a key part; other cookies do not matter."""
    stored = variant([(b"cookie", b"session=abc; theme=dark")], (), key_cookies=(b"theme",))
    assert matches(stored, [(b"cookie", b"theme=dark")])
    assert matches(stored, [(b"cookie", b"a=1; theme=dark; session=zzz")])
    assert matches(stored, [(b"cookie", b"a=1"), (b"cookie", b"theme=dark")])
    assert not matches(stored, [(b"cookie", b"theme=light")])
    assert not matches(stored, [(b"cookie", b"session=abc")])
    assert not matches(stored, [])


def test_absent_key_cookie_matches_absent() -> None:
    """RFC 9111 §4.1 (by analogy): an absent part matches only an absent part."""
    stored = variant([(b"cookie", b"a=1")], (), key_cookies=(b"theme",))
    assert matches(stored, [])
    assert matches(stored, [(b"cookie", b"b=2")])
    assert not matches(stored, [(b"cookie", b"theme=x")])


def test_cookie_name_must_match_exactly() -> None:
    """RFC 6265 §5.4: cookie names are compared exactly; ``xtheme`` is not ``theme``."""
    stored = variant([(b"cookie", b"theme=dark")], (), key_cookies=(b"theme",))
    assert not matches(stored, [(b"cookie", b"xtheme=dark")])
