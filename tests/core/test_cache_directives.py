"""Cache-Control (RFC 9111 §5.2) and Pragma (§5.4) as the cache reads them."""

from __future__ import annotations

import pytest

from sansproxy.cache.directives import (
    INVALID,
    MAX_DELTA,
    CacheControl,
    cache_control,
    parse_delta,
    pragma_no_cache,
)


def cc(*values: bytes) -> CacheControl:
    """The directives of one Cache-Control field line per value."""
    return cache_control([(b"cache-control", value) for value in values])


# ---------------------------------------------------------------------------------------------
# Names and the list syntax.


@pytest.mark.parametrize("value", [b"max-age=60", b"MAX-AGE=60", b"Max-Age=60", b"mAx-AgE=60"])
def test_directive_names_are_case_insensitive(value: bytes) -> None:
    """RFC 9111 §5.2: directives are tokens "compared case-insensitively"."""
    directives = cc(value)
    assert "max-age" in directives
    assert directives.seconds("max-age") == 60


def test_names_are_reported_lower_case_in_order() -> None:
    """RFC 9111 §5.2: a Cache-Control value is a list of directives (RFC 9110 §5.6.1)."""
    assert cc(b"No-Store, PUBLIC, max-age=5").names() == ["no-store", "public", "max-age"]


@pytest.mark.parametrize(
    "value",
    [b", ,max-age=5,,", b",max-age=5", b"max-age=5,", b" , max-age=5 , , "],
)
def test_empty_list_members_are_ignored(value: bytes) -> None:
    """RFC 9110 §5.6.1: a recipient MUST accept and ignore empty list elements."""
    directives = cc(value)
    assert directives.names() == ["max-age"]
    assert directives.seconds("max-age") == 5


@pytest.mark.parametrize(
    "value",
    [
        b"  max-age=5 ,  public  ",
        b"max-age=5,public",
        b"\tmax-age=5\t,\tpublic\t",
        b"max-age =5, public",
        b"max-age= 5, public",
    ],
)
def test_whitespace_around_members_is_ignored(value: bytes) -> None:
    """RFC 9110 §5.6.1: optional whitespace (OWS) surrounds list members."""
    directives = cc(value)
    assert directives.seconds("max-age") == 5
    assert "public" in directives


def test_directives_from_several_field_lines_are_combined() -> None:
    """RFC 9110 §5.3: several field lines are one comma-separated list."""
    directives = cc(b"public", b"max-age=30")
    assert directives.names() == ["public", "max-age"]
    assert directives.seconds("max-age") == 30


def test_only_cache_control_lines_are_read() -> None:
    """RFC 9111 §5.2: the directives are those of the Cache-Control field."""
    directives = cache_control([(b"x-cache-control", b"no-store"), (b"cache-control", b"public")])
    assert directives.names() == ["public"]


def test_no_directives_is_falsy() -> None:
    """RFC 9111 §5.4: whether Cache-Control is present decides whether Pragma counts."""
    assert not cache_control([])
    assert not cc(b"")
    assert not cc(b" , ,")
    assert cc(b"public")


def test_unknown_extensions_are_kept_and_ignored() -> None:
    """RFC 9111 §5.2.3: unrecognised directives are ignored, and do not break parsing."""
    directives = cc(b'community="UCI", x-ext, max-age=7')
    assert directives.argument("community") == b"UCI"
    assert "x-ext" in directives
    assert directives.seconds("max-age") == 7


# ---------------------------------------------------------------------------------------------
# Arguments: tokens and quoted strings.


def test_quoted_argument_is_unquoted() -> None:
    """RFC 9111 §5.2: arguments may use token or quoted-string syntax (RFC 9110 §5.6.4)."""
    assert cc(b'x-ext="hello world"').argument("x-ext") == b"hello world"


@pytest.mark.parametrize(
    ("value", "argument"),
    [
        (b'x-ext="a\\"b"', b'a"b'),
        (b'x-ext="a\\\\b"', b"a\\b"),
        (b'x-ext="\\a\\b"', b"ab"),
    ],
)
def test_quoted_pair_escapes(value: bytes, argument: bytes) -> None:
    """RFC 9110 §5.6.4: a backslash quotes the next octet inside a quoted-string."""
    assert cc(value).argument("x-ext") == argument


def test_commas_inside_quotes_do_not_split_members() -> None:
    """RFC 9110 §5.6.1: a list separator inside a quoted-string is part of the string."""
    directives = cc(b'no-cache="set-cookie, x-foo", max-age=5')
    assert directives.names() == ["no-cache", "max-age"]
    assert directives.argument("no-cache") == b"set-cookie, x-foo"
    assert directives.seconds("max-age") == 5


def test_escaped_quote_does_not_end_the_string() -> None:
    """RFC 9110 §5.6.4: ``\\"`` inside a quoted-string is a quote character, not its end."""
    directives = cc(b'x-ext="a\\", b", max-age=5')
    assert directives.argument("x-ext") == b'a", b'
    assert directives.seconds("max-age") == 5


@pytest.mark.parametrize("value", [b'max-age="60"', b"max-age=60", b'MAX-AGE = "60"'])
def test_delta_seconds_accepted_in_both_forms(value: bytes) -> None:
    """RFC 9111 §5.2: recipients ought to accept both the token and the quoted form."""
    assert cc(value).seconds("max-age") == 60


def test_directive_without_argument() -> None:
    """RFC 9111 §5.2: the argument is optional; ``argument`` is None without one."""
    directives = cc(b"no-cache")
    assert "no-cache" in directives
    assert directives.argument("no-cache") is None
    assert directives.argument("absent") is None


# ---------------------------------------------------------------------------------------------
# delta-seconds (RFC 9111 §1.2.2).


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (b"0", 0),
        (b"1", 1),
        (b"007", 7),
        (b"2147483647", 2**31 - 1),
        (b"2147483648", MAX_DELTA),
        (b"2147483649", MAX_DELTA),
        (b"9999999999", MAX_DELTA),
        (b"99999999999999999999999999", MAX_DELTA),
    ],
)
def test_delta_seconds_capped_at_2_pow_31(value: bytes, seconds: int) -> None:
    """RFC 9111 §1.2.2: a value too large to represent MUST be taken as 2147483648."""
    assert parse_delta(value) == seconds
    assert cc(b"max-age=" + value).seconds("max-age") == seconds
    assert MAX_DELTA == 2147483648


@pytest.mark.parametrize(
    "value",
    [b"max-age", b"max-age=", b"max-age=-1", b"max-age=1.5", b"max-age=abc", b"max-age=5s",
     b"max-age=0x10", b"max-age=+5", b"max-age=1 2", b'max-age=""'],
)  # fmt: skip
def test_invalid_delta_seconds_are_invalid(value: bytes) -> None:
    """RFC 9111 §1.2.2, §4.2.1: delta-seconds is 1*DIGIT; anything else is unusable."""
    assert cc(value).seconds("max-age") == INVALID


def test_parse_delta_rejects_non_ascii_digits() -> None:
    """RFC 9111 §1.2.2: DIGIT is ASCII 0-9 only (RFC 5234 Appendix B.1)."""
    assert parse_delta("٣".encode()) == INVALID
    assert parse_delta(b"") == INVALID


def test_absent_delta_directive_is_none() -> None:
    """RFC 9111 §5.2: an absent directive is distinct from an invalid one."""
    assert cc(b"public").seconds("max-age") is None


# ---------------------------------------------------------------------------------------------
# Duplicates (RFC 9111 §4.2.1: the first occurrence, or stale; conflicts, most restrictive).


@pytest.mark.parametrize(
    "lines",
    [(b"max-age=5, max-age=5",), (b"max-age=5", b"max-age=5"), (b"max-age=5", b'MAX-AGE="5"')],
)
def test_identical_duplicates_are_harmless(lines: tuple[bytes, ...]) -> None:
    """RFC 9111 §4.2.1: the same directive twice with the same value means that value."""
    assert cc(*lines).seconds("max-age") == 5


@pytest.mark.parametrize(
    "lines",
    [(b"max-age=5, max-age=6",), (b"max-age=5", b"max-age=6"), (b"max-age=5, max-age",)],
)
def test_conflicting_duplicates_are_invalid(lines: tuple[bytes, ...]) -> None:
    """RFC 9111 §4.2.1: with several values, either the first is used or the response is stale.

    The cache takes the second choice, the more restrictive one.
    """
    assert cc(*lines).seconds("max-age") == INVALID


def test_duplicate_flags_are_one_flag() -> None:
    """RFC 9111 §5.2: a directive without argument given twice is still present once."""
    directives = cc(b"no-store, no-store", b"no-store")
    assert directives.names() == ["no-store"]
    assert "no-store" in directives


# ---------------------------------------------------------------------------------------------
# Field-name lists of no-cache and private (RFC 9111 §5.2.2.4, §5.2.2.7).


@pytest.mark.parametrize(
    ("value", "names"),
    [
        (b'no-cache="set-cookie"', {b"set-cookie"}),
        (b'no-cache="a, b"', {b"a", b"b"}),
        (b'no-cache="A,B , c"', {b"a", b"b", b"c"}),
        (b"no-cache=x-foo", {b"x-foo"}),
        (b'no-cache=", a,,"', {b"a"}),
    ],
)
def test_qualified_no_cache_lists_field_names(value: bytes, names: set[bytes]) -> None:
    """RFC 9111 §5.2.2.4: the qualified form lists field names (case-insensitive)."""
    assert cc(value).field_names("no-cache") == frozenset(names)


@pytest.mark.parametrize(
    ("value", "names"),
    [(b'private="x"', {b"x"}), (b'private="Set-Cookie, X-User"', {b"set-cookie", b"x-user"})],
)
def test_qualified_private_lists_field_names(value: bytes, names: set[bytes]) -> None:
    """RFC 9111 §5.2.2.7: ``private`` with field names limits only those fields."""
    assert cc(value).field_names("private") == frozenset(names)


@pytest.mark.parametrize("value", [b"private", b'private=""', b'private=" , "'])
def test_unqualified_or_empty_list_reads_as_unqualified(value: bytes) -> None:
    """RFC 9111 §5.2.2.7: the unqualified form applies to the whole response.

    An empty list names no field: read as unqualified, the more restrictive reading.
    """
    assert cc(value).field_names("private") is None


def test_field_names_of_an_absent_directive() -> None:
    """RFC 9111 §5.2.2.4: without the directive there is nothing to list."""
    assert cc(b"public").field_names("no-cache") is None


@pytest.mark.parametrize(
    "lines",
    [
        (b'private="set-cookie", private',),
        (b"private", b'private="set-cookie"'),
        (b'private="a"', b'private="b"'),
    ],
)
def test_conflicting_private_reads_as_unqualified(lines: tuple[bytes, ...]) -> None:
    """RFC 9111 §4.2.1, §5.2.2.7: an unqualified ``private`` anywhere forbids shared storage.

    Conflicting duplicates are honoured in their most restrictive reading.
    """
    assert cc(*lines).field_names("private") is None


def test_conflicting_no_cache_reads_as_unqualified() -> None:
    """RFC 9111 §4.2.1, §5.2.2.4: ``no-cache="x"`` with ``no-cache`` means revalidate always."""
    assert cc(b'no-cache="x", no-cache').field_names("no-cache") is None


# ---------------------------------------------------------------------------------------------
# Pragma (RFC 9111 §5.4).


@pytest.mark.parametrize(
    "headers",
    [
        [(b"pragma", b"no-cache")],
        [(b"pragma", b"NO-CACHE")],
        [(b"pragma", b"x-foo, no-cache")],
        [(b"pragma", b"x-foo"), (b"pragma", b" no-cache ")],
    ],
)
def test_pragma_no_cache(headers: list[tuple[bytes, bytes]]) -> None:
    """RFC 9111 §5.4: ``Pragma: no-cache`` means what request ``no-cache`` means."""
    assert pragma_no_cache(headers)


@pytest.mark.parametrize(
    "headers",
    [[], [(b"pragma", b"x-no-cache")], [(b"pragma", b"no-cache-please")], [(b"x", b"no-cache")]],
)
def test_no_pragma_no_cache(headers: list[tuple[bytes, bytes]]) -> None:
    """RFC 9111 §5.4: only the ``no-cache`` pragma directive has a defined meaning."""
    assert not pragma_no_cache(headers)
