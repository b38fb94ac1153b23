"""Freshness lifetime and current age (RFC 9111 §4.2) with a fake wall clock.

Times are plain numbers. The response's Date is ``T``, the request that fetched
it left at ``T + 1`` and the response arrived at ``T + 2`` unless a test says
otherwise, so every age below is the §4.2.3 formula worked by hand.
"""

from __future__ import annotations

import email.utils

import pytest

from sansproxy.cache.directives import MAX_DELTA, cache_control
from sansproxy.cache.freshness import (
    HEURISTIC_STATUSES,
    Lifetime,
    age_value,
    current_age,
    freshness_lifetime,
    header_value,
)

T = 1_000_000_000
Headers = list[tuple[bytes, bytes]]


def http_date(seconds: int) -> bytes:
    return email.utils.formatdate(seconds, usegmt=True).encode()


def lifetime(
    headers: Headers,
    *,
    status: int = 200,
    default: int | None = None,
    heuristic_max: int = 86400,
    response_time: float = T + 2,
) -> Lifetime:
    return freshness_lifetime(
        status,
        headers,
        cache_control(headers),
        response_time=response_time,
        default=default,
        heuristic_fraction=0.1,
        heuristic_max=heuristic_max,
    )


def dated(*extra: tuple[bytes, bytes], date: int = T) -> Headers:
    return [(b"date", http_date(date)), *extra]


# ---------------------------------------------------------------------------------------------
# Explicit freshness and its precedence (RFC 9111 §4.2.1).


def test_max_age() -> None:
    """RFC 9111 §4.2.1, §5.2.2.1: max-age gives the lifetime in seconds."""
    assert lifetime(dated((b"cache-control", b"max-age=60"))) == Lifetime(60, "max-age")


def test_s_maxage_wins_over_max_age() -> None:
    """RFC 9111 §4.2.1, §5.2.2.10: a shared cache uses s-maxage first."""
    headers = dated((b"cache-control", b"max-age=60, s-maxage=10"))
    assert lifetime(headers) == Lifetime(10, "s-maxage")


def test_s_maxage_wins_over_expires() -> None:
    """RFC 9111 §4.2.1: s-maxage before max-age before Expires."""
    headers = dated((b"cache-control", b"s-maxage=10"), (b"expires", http_date(T + 500)))
    assert lifetime(headers) == Lifetime(10, "s-maxage")


def test_max_age_wins_over_expires() -> None:
    """RFC 9111 §5.3: with max-age present, Expires is ignored."""
    headers = dated((b"cache-control", b"max-age=60"), (b"expires", http_date(T + 500)))
    assert lifetime(headers) == Lifetime(60, "max-age")


def test_expires_minus_date() -> None:
    """RFC 9111 §4.2.1: without max-age, the lifetime is Expires minus Date."""
    assert lifetime(dated((b"expires", http_date(T + 100)))) == Lifetime(100, "expires")


def test_expires_without_date_uses_the_response_time() -> None:
    """RFC 9110 §6.6.1: a recipient without Date takes the time it received the message."""
    headers = [(b"expires", http_date(T + 100))]
    assert lifetime(headers, response_time=T + 2) == Lifetime(98, "expires")


def test_expires_before_date_is_already_expired() -> None:
    """RFC 9111 §4.2.1: Expires at or before Date gives no freshness."""
    assert lifetime(dated((b"expires", http_date(T - 100)))) == Lifetime(0, "expires")
    assert lifetime(dated((b"expires", http_date(T)))) == Lifetime(0, "expires")


@pytest.mark.parametrize("value", [b"0", b"-1", b"garbage", b"", b"Sun, 06 Nov 1994 08:49:37 UTC"])
def test_invalid_expires_means_already_expired(value: bytes) -> None:
    """RFC 9111 §5.3: a cache MUST treat an invalid Expires, "0" especially, as in the past."""
    headers = dated((b"expires", value))
    assert lifetime(headers) == Lifetime(0, "expires")


def test_invalid_expires_is_not_replaced_by_a_default() -> None:
    """RFC 9111 §5.3: an invalid Expires is explicit information (a past time), not none."""
    headers = dated((b"expires", b"0"))
    assert lifetime(headers, default=300) == Lifetime(0, "expires")


@pytest.mark.parametrize(
    "values", [(http_date(T + 100), http_date(T + 200)), (http_date(T + 100), b"0")]
)
def test_multiple_expires_means_stale(values: tuple[bytes, bytes]) -> None:
    """RFC 9111 §4.2.1: with several values, use the first or consider the response stale."""
    headers = dated(*((b"expires", value) for value in values))
    assert lifetime(headers) == Lifetime(0, "expires")


def test_huge_expires_is_capped() -> None:
    """RFC 9111 §1.2.2: a lifetime past 2**31 seconds is taken as 2**31."""
    headers = dated((b"expires", http_date(T + 2**32)))
    assert lifetime(headers) == Lifetime(MAX_DELTA, "expires")


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(b"max-age=0", 0), (b"max-age=99999999999", MAX_DELTA), (b'max-age="30"', 30)],
)
def test_max_age_values(value: bytes, seconds: int) -> None:
    """RFC 9111 §5.2.2.1, §1.2.2: max-age=0 is stale at once; huge values are capped."""
    assert lifetime(dated((b"cache-control", value))) == Lifetime(seconds, "max-age")


@pytest.mark.parametrize(
    "value", [b"max-age=abc", b"max-age=-5", b"max-age", b"max-age=5, max-age=6"]
)
def test_invalid_max_age_means_stale_even_with_expires(value: bytes) -> None:
    """RFC 9111 §4.2.1: invalid freshness information is encouraged to mean stale.

    The invalid max-age still takes the place of Expires: it does not fall through.
    """
    headers = dated((b"cache-control", value), (b"expires", http_date(T + 500)))
    assert lifetime(headers) == Lifetime(0, "max-age")


def test_invalid_s_maxage_means_stale_even_with_max_age() -> None:
    """RFC 9111 §4.2.1: an invalid s-maxage is still the shared cache's first source."""
    headers = dated((b"cache-control", b"s-maxage=x, max-age=60"))
    assert lifetime(headers) == Lifetime(0, "s-maxage")


# ---------------------------------------------------------------------------------------------
# The route's default lifetime: only without explicit freshness (RFC 9111 §4.2.2).


def test_default_applies_without_explicit_freshness() -> None:
    """RFC 9111 §4.2.2: the cache may assign a lifetime when none is given."""
    assert lifetime(dated(), default=300) == Lifetime(300, "default")


@pytest.mark.parametrize(
    "extra",
    [
        (b"cache-control", b"max-age=60"),
        (b"cache-control", b"s-maxage=60"),
        (b"expires", http_date(T + 60)),
    ],
)
def test_default_never_overrides_explicit_freshness(extra: tuple[bytes, bytes]) -> None:
    """RFC 9111 §4.2.2: a cache MUST NOT use heuristics when an explicit expiration is present."""
    result = lifetime(dated(extra), default=300)
    assert result.seconds == 60
    assert result.source != "default"


def test_default_wins_over_the_heuristic() -> None:
    """RFC 9111 §4.2.2: the route's own lifetime replaces the Last-Modified heuristic."""
    headers = dated((b"last-modified", http_date(T - 1000)))
    assert lifetime(headers, default=5) == Lifetime(5, "default")


# ---------------------------------------------------------------------------------------------
# Heuristic freshness (RFC 9111 §4.2.2).


@pytest.mark.parametrize("status", sorted(HEURISTIC_STATUSES))
def test_heuristic_for_heuristically_cacheable_statuses(status: int) -> None:
    """RFC 9111 §4.2.2: 10% of the time since Last-Modified, for heuristically cacheable codes."""
    headers = dated((b"last-modified", http_date(T - 1000)))
    assert lifetime(headers, status=status) == Lifetime(100, "heuristic")


def test_heuristically_cacheable_statuses_are_rfc_9110s() -> None:
    """RFC 9110 §15.1: the list of heuristically cacheable status codes."""
    expected = {200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501}
    assert expected == HEURISTIC_STATUSES


@pytest.mark.parametrize("status", [201, 302, 303, 307, 400, 403, 500, 502, 503])
def test_no_heuristic_for_other_statuses(status: int) -> None:
    """RFC 9111 §4.2.2: heuristics only for heuristically cacheable codes (or ``public``)."""
    headers = dated((b"last-modified", http_date(T - 1000)))
    assert lifetime(headers, status=status) == Lifetime(0, "none")


@pytest.mark.parametrize("status", [302, 307, 500])
def test_public_allows_the_heuristic_for_any_status(status: int) -> None:
    """RFC 9111 §4.2.2, §5.2.2.9: ``public`` marks a response heuristically cacheable."""
    headers = dated((b"cache-control", b"public"), (b"last-modified", http_date(T - 1000)))
    assert lifetime(headers, status=status) == Lifetime(100, "heuristic")


def test_heuristic_is_capped() -> None:
    """RFC 9111 §4.2.2: a heuristic lifetime has an upper bound (the route's cap)."""
    headers = dated((b"last-modified", http_date(T - 1_000_000)))
    assert lifetime(headers, heuristic_max=3600) == Lifetime(3600, "heuristic")


def test_heuristic_rounds_down() -> None:
    """RFC 9111 §4.2.2: 10% of 1005 seconds is 100 whole seconds."""
    headers = dated((b"last-modified", http_date(T - 1005)))
    assert lifetime(headers) == Lifetime(100, "heuristic")


def test_heuristic_without_date_uses_the_response_time() -> None:
    """RFC 9110 §6.6.1: no Date means the time the response arrived (here T + 2)."""
    headers = [(b"last-modified", http_date(T - 998))]
    assert lifetime(headers, response_time=T + 2) == Lifetime(100, "heuristic")


@pytest.mark.parametrize(
    "extra",
    [
        (),
        ((b"last-modified", b"garbage"),),
        ((b"last-modified", http_date(T)),),
        ((b"last-modified", http_date(T + 100)),),
    ],
)
def test_no_heuristic_without_a_usable_last_modified(extra: tuple[tuple[bytes, bytes]]) -> None:
    """RFC 9111 §4.2.2: the 10% rule needs a Last-Modified before Date."""
    assert lifetime(dated(*extra)) == Lifetime(0, "none")


# ---------------------------------------------------------------------------------------------
# Age (RFC 9111 §5.1) and current age (§4.2.3).


@pytest.mark.parametrize(
    ("lines", "seconds"),
    [
        ([], 0),
        ([b"10"], 10),
        ([b" 10 "], 10),
        ([b"10, 20"], 10),  # a list: use the first member
        ([b"10", b"20"], 10),
        ([b"abc"], 0),  # invalid: ignore the field
        ([b"-5"], 0),
        ([b"1.5"], 0),
        ([b"99999999999"], MAX_DELTA),
    ],
)
def test_age_value(lines: list[bytes], seconds: int) -> None:
    """RFC 9111 §5.1: the first member of Age; an invalid value is ignored."""
    assert age_value([(b"age", line) for line in lines]) == seconds


def age(
    headers: Headers, *, request_time: float = T + 1, response_time: float = T + 2, now: float
) -> int:
    return current_age(headers, request_time=request_time, response_time=response_time, now=now)


def test_current_age_with_age_header() -> None:
    """RFC 9111 §4.2.3, worked by hand.

    apparent_age = max(0, (T+2) - T) = 2; response_delay = (T+2) - (T+1) = 1;
    corrected_age_value = 10 + 1 = 11; corrected_initial_age = max(2, 11) = 11;
    resident_time = (T+50) - (T+2) = 48; current_age = 11 + 48 = 59.
    """
    assert age(dated((b"age", b"10")), now=T + 50) == 59


def test_current_age_without_age_header() -> None:
    """RFC 9111 §4.2.3: corrected_initial_age = max(2, 0 + 1) = 2; plus 8 resident -> 10."""
    assert age(dated(), now=T + 10) == 10


def test_current_age_at_arrival() -> None:
    """RFC 9111 §4.2.3: at response_time the age is the corrected initial age alone."""
    assert age(dated((b"age", b"10")), now=T + 2) == 11
    assert age(dated(), now=T + 2) == 2


def test_current_age_with_clock_skew_date_in_the_future() -> None:
    """RFC 9111 §4.2.3: apparent_age is clamped at 0 when Date is after response_time.

    Date = T+100; apparent_age = max(0, (T+2) - (T+100)) = 0; response_delay = 1;
    corrected_initial_age = 1; resident 8 -> 9.
    """
    assert age(dated(date=T + 100), now=T + 10) == 9


def test_current_age_with_clock_skew_and_age_header() -> None:
    """RFC 9111 §4.2.3: a skewed Date does not hide the Age the upstream cache reported."""
    assert age(dated((b"age", b"30"), date=T + 100), now=T + 2) == 31


def test_response_delay_counts_when_it_exceeds_the_apparent_age() -> None:
    """RFC 9111 §4.2.3: a slow response is at least as old as its round trip.

    Date = T; request at T, response at T+3 with Age: 5; apparent_age = 3;
    corrected_age_value = 5 + 3 = 8; corrected_initial_age = 8; resident 2 -> 10.
    """
    headers = dated((b"age", b"5"))
    assert age(headers, request_time=T, response_time=T + 3, now=T + 5) == 10


def test_apparent_age_counts_when_it_exceeds_the_corrected_age() -> None:
    """RFC 9111 §4.2.3: Date = T-100 (an old Date, no Age): apparent_age 102 wins over 1."""
    assert age(dated(date=T - 100), now=T + 2) == 102


def test_invalid_age_is_ignored() -> None:
    """RFC 9111 §5.1: a cache SHOULD ignore an invalid Age; the age is as without one."""
    assert age(dated((b"age", b"bogus")), now=T + 10) == 10


def test_resident_time_is_never_negative() -> None:
    """RFC 9111 §4.2.3: a wall clock read before response_time adds no residence."""
    assert age(dated(), now=T) == 2


def test_current_age_without_date_uses_the_response_time() -> None:
    """RFC 9110 §6.6.1: no Date: apparent_age = 0; corrected_initial_age = delay 1; +8 -> 9."""
    assert age([], now=T + 10) == 9


def test_current_age_is_capped() -> None:
    """RFC 9111 §1.2.2: an age past 2**31 (overflow) is taken as 2**31."""
    assert age(dated((b"age", b"2147483648")), now=T + 1000) == MAX_DELTA


def test_fractional_clock_truncates_to_whole_seconds() -> None:
    """RFC 9111 §4.2.3: ages are in whole seconds (Age is delta-seconds, §5.1)."""
    assert age(dated(), request_time=T + 1.5, response_time=T + 2.25, now=T + 10.9) == 10


# ---------------------------------------------------------------------------------------------
# Singleton fields.


@pytest.mark.parametrize(
    ("headers", "value"),
    [
        ([], None),
        ([(b"date", b"a")], b"a"),
        ([(b"date", b"a"), (b"date", b"a")], b"a"),
        ([(b"date", b"a"), (b"date", b"b")], None),
        ([(b"x", b"a")], None),
    ],
)
def test_header_value_of_a_singleton_field(headers: Headers, value: bytes | None) -> None:
    """RFC 9110 §5.5: a singleton field given twice with different values is not usable."""
    assert header_value(headers, b"date") == value


def test_conflicting_dates_fall_back_to_the_response_time() -> None:
    """RFC 9110 §6.6.1: an unusable Date is treated like an absent one."""
    headers = [(b"date", http_date(T)), (b"date", http_date(T - 50))]
    assert age(headers, now=T + 10) == 9
