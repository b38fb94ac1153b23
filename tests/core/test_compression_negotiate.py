"""Tests of sansproxy.compression.negotiate: Accept-Encoding (RFC 9110 §12.5.3)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sansproxy.compression import encoders
from sansproxy.compression.negotiate import (
    DEFAULT_PREFERENCE,
    choose_coding,
    default_preference,
    parse_accept_encoding,
)

ALL = ("zstd", "br", "gzip")


def choose(*values: str, preference: tuple[str, ...] = ALL) -> str | None:
    return choose_coding([value.encode() for value in values], preference)


# --- parsing --------------------------------------------------------------------------------


def test_qvalues_rfc_9110_12_4_2() -> None:
    """qvalue = ("0" ["." 0*3DIGIT]) / ("1" ["." 0*3("0")]), kept in thousandths."""
    parsed = parse_accept_encoding([b"a;q=0, b;q=0.5, c;q=0.125, d;q=1, e;q=1.000, f;q=1., g"])
    assert parsed == {
        "a": 0,
        "b": 500,
        "c": 125,
        "d": 1000,
        "e": 1000,
        "f": 1000,
        "g": 1000,
    }


@pytest.mark.parametrize(
    "member",
    [
        "gzip;q=1.5",  # above 1
        "gzip;q=1.001",  # "1" allows only zeros after the dot
        "gzip;q=0.1234",  # four decimals
        "gzip;q=.5",  # no leading digit
        "gzip;q=2",
        "gzip;q=-0",
        "gzip;q=0.5x",
        "gzip;q=",
        "gzip;q",
        "gzip;level=1",  # Accept-Encoding members take a weight only
        "gzip;q= 0.5",  # no whitespace around "="
        "gz ip",  # not a token
        "gzip\x7f",
        "g\xe9zip",
        "gzip;q=0.5;q=1",
    ],
)
def test_invalid_members_are_ignored_rfc_9110_12_5_3(member: str) -> None:
    """A member that breaks the grammar is dropped; the rest of the field still counts."""
    value = f"br;q=0.2, {member}, zstd;q=0.1".encode("latin-1")
    assert parse_accept_encoding([value]) == {"br": 200, "zstd": 100}


def test_parameter_name_q_and_codings_are_case_insensitive_rfc_9110_8_4_1() -> None:
    assert parse_accept_encoding([b"GZip;Q=0.5, BR"]) == {"gzip": 500, "br": 1000}


def test_x_gzip_is_gzip_rfc_9110_8_4_1_3() -> None:
    assert parse_accept_encoding([b"x-gzip;q=0.3"]) == {"gzip": 300}
    assert choose("x-gzip") == "gzip"


def test_whitespace_and_empty_members_rfc_9110_5_6_1() -> None:
    assert parse_accept_encoding([b" ,gzip ;\tq=0.5 ,, br\t"]) == {"gzip": 500, "br": 1000}


def test_several_field_lines_are_one_list_rfc_9110_5_3() -> None:
    assert choose("gzip;q=0.5", "br") == "br"
    assert choose("br;q=0", "gzip") == "gzip"


def test_first_member_of_a_repeated_coding_counts() -> None:
    assert parse_accept_encoding([b"gzip;q=0, gzip"]) == {"gzip": 0}
    assert choose("gzip;q=0, gzip") is None


# --- choosing -------------------------------------------------------------------------------


def test_no_field_means_no_compression_rfc_9110_12_5_3() -> None:
    assert choose_coding([], ALL) is None


def test_empty_field_means_no_coding_wanted_rfc_9110_12_5_3() -> None:
    assert choose("") is None


def test_highest_q_wins_rfc_9110_12_5_3() -> None:
    assert choose("zstd;q=0.5, br;q=0.8, gzip;q=0.9") == "gzip"


def test_ties_go_to_the_server_preference() -> None:
    assert choose("gzip, br, zstd") == "zstd"
    assert choose("gzip, br") == "br"
    assert choose("gzip, br", preference=("gzip", "br")) == "gzip"
    assert choose("gzip;q=0.5, br;q=0.5, zstd;q=0.4") == "br"


def test_q_zero_refuses_rfc_9110_12_4_2() -> None:
    assert choose("zstd;q=0, br;q=0, gzip") == "gzip"
    assert choose("gzip;q=0") is None
    assert choose("gzip;q=0.000") is None


def test_unlisted_codings_are_not_acceptable_rfc_9110_12_5_3() -> None:
    assert choose("deflate") is None
    assert choose("compress, identity") is None


def test_star_gives_its_q_to_codings_not_named_rfc_9110_12_5_3() -> None:
    assert choose("*") == "zstd"
    assert choose("*;q=0.5, gzip") == "gzip"
    assert choose("*;q=0.5, zstd;q=0.2") == "br"
    assert choose("*;q=0, gzip;q=0.1") == "gzip"
    assert choose("*;q=0") is None


def test_no_compression_when_every_weight_is_zero() -> None:
    assert choose("zstd;q=0, br;q=0, gzip;q=0, *;q=0") is None


def test_identity_q_zero_does_not_stop_compression_rfc_9110_12_5_3() -> None:
    assert choose("identity;q=0, gzip") == "gzip"
    # Nothing acceptable: the proxy has no other representation and forwards it as it is.
    assert choose("identity;q=0") is None
    assert choose("identity;q=0, *;q=0") is None


def test_identity_preferred_explicitly_wins() -> None:
    assert choose("identity, gzip;q=0.5") is None
    # A tie with identity goes to compression (the server's preference).
    assert choose("identity;q=0.5, gzip;q=0.5") == "gzip"
    # identity that is not named carries no weight.
    assert choose("gzip;q=0.1") == "gzip"


def test_only_the_server_codings_are_chosen() -> None:
    assert choose("zstd, br", preference=("gzip",)) is None
    assert choose("zstd, br, gzip;q=0.1", preference=("gzip",)) == "gzip"
    assert choose("deflate", preference=("gzip", "deflate")) == "deflate"


def test_default_preference_follows_the_installed_libraries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert DEFAULT_PREFERENCE == ("zstd", "br", "gzip")
    monkeypatch.setattr(encoders, "_HAVE_ZSTANDARD", False)
    monkeypatch.setattr(encoders, "_HAVE_BROTLI", False)
    assert default_preference() == ("gzip",)
    assert choose_coding([b"zstd, br, gzip;q=0.1"]) == "gzip"
    monkeypatch.setattr(encoders, "_HAVE_BROTLI", True)
    assert default_preference() == ("br", "gzip")
    assert choose_coding([b"zstd, br, gzip;q=0.1"]) == "br"


# --- properties -----------------------------------------------------------------------------

members = st.tuples(
    st.sampled_from(["gzip", "GZIP", "x-gzip", "br", "zstd", "deflate", "identity", "*", "foo"]),
    st.one_of(st.none(), st.integers(min_value=0, max_value=1000)),
)


def _render(coding: str, weight: int | None) -> str:
    return coding if weight is None else f"{coding};q={weight / 1000:.3f}"


@settings(max_examples=200)
@given(st.lists(members, max_size=8), st.permutations(ALL))
def test_the_choice_is_acceptable_and_maximal(
    parts: list[tuple[str, int | None]], preference: list[str]
) -> None:
    header = ", ".join(_render(coding, weight) for coding, weight in parts)
    chosen = choose(header, preference=tuple(preference))
    weights = parse_accept_encoding([header.encode()])

    def weight(coding: str) -> int:
        return weights.get(coding, weights.get("*", 0))

    if chosen is None:
        best = max(weight(coding) for coding in preference)
        assert best == 0 or weights.get("identity", 0) > best
    else:
        assert chosen in preference
        assert weight(chosen) > 0
        assert weights.get("identity", 0) <= weight(chosen)
        assert all(weight(other) <= weight(chosen) for other in preference)
        earlier = preference[: preference.index(chosen)]
        assert all(weight(other) < weight(chosen) for other in earlier)


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=40), max_size=3))
def test_parsing_never_raises(values: list[bytes]) -> None:
    result = parse_accept_encoding(values)
    assert all(0 <= weight <= 1000 for weight in result.values())
    choose_coding(values, ALL)
