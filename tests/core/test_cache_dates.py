"""HTTP dates (RFC 9110 §5.6.7) as the cache reads and writes them (``sansproxy.cache.dates``).

The reference values come from the standard library (``calendar.timegm``), never from
the module under test.
"""

from __future__ import annotations

import calendar

import pytest

from sansproxy.cache.dates import format_http_date, parse_http_date

# Sun, 06 Nov 1994 08:49:37 GMT: the example of RFC 9110 §5.6.7.
EXAMPLE = calendar.timegm((1994, 11, 6, 8, 49, 37))


def utc(*fields: int) -> int:
    """Unix seconds of (year, month, day[, hour, minute, second]) in UTC."""
    return calendar.timegm((*fields, 0, 0, 0)[:6])


# ---------------------------------------------------------------------------------------------
# The three formats (RFC 9110 §5.6.7: a recipient MUST accept all three).


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(b"Sun, 06 Nov 1994 08:49:37 GMT", id="IMF-fixdate"),
        pytest.param(b"Sunday, 06-Nov-94 08:49:37 GMT", id="rfc850-date"),
        pytest.param(b"Sun Nov  6 08:49:37 1994", id="asctime-date"),
    ],
)
def test_the_three_formats_name_the_same_instant(value: bytes) -> None:
    """RFC 9110 §5.6.7: IMF-fixdate, the obsolete RFC 850 form and asctime are all read."""
    assert parse_http_date(value) == EXAMPLE


def test_asctime_with_a_two_digit_day() -> None:
    """RFC 9110 §5.6.7: asctime's day is ``2DIGIT / ( SP DIGIT )``."""
    assert parse_http_date(b"Thu Nov 24 08:49:37 1994") == utc(1994, 11, 24, 8, 49, 37)


def test_surrounding_whitespace_is_not_part_of_the_value() -> None:
    """RFC 9110 §5.5: leading and trailing whitespace is not part of a field value."""
    assert parse_http_date(b"  Sun, 06 Nov 1994 08:49:37 GMT \t") == EXAMPLE


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"Thu, 01 Jan 1970 00:00:00 GMT", 0),
        (b"Fri, 31 Dec 1999 23:59:59 GMT", utc(1999, 12, 31, 23, 59, 59)),
        (b"Sat, 01 Jan 2000 00:00:00 GMT", utc(2000, 1, 1)),
        (b"Tue, 19 Jan 2038 03:14:08 GMT", 2**31),  # past the 32-bit signed limit
        (b"Fri, 31 Dec 9999 23:59:59 GMT", utc(9999, 12, 31, 23, 59, 59)),
    ],
)
def test_imf_fixdate_edges(value: bytes, expected: int) -> None:
    """RFC 9110 §5.6.7: IMF-fixdate is a fixed-length subset of RFC 5322's date-time."""
    assert parse_http_date(value) == expected


# ---------------------------------------------------------------------------------------------
# Two-digit years (RFC 9110 §5.6.7: a year more than 50 years ahead is in the past).


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"Sunday, 06-Nov-94 08:49:37 GMT", utc(1994, 11, 6, 8, 49, 37)),
        (b"Friday, 31-Dec-99 00:00:00 GMT", utc(1999, 12, 31)),
        (b"Saturday, 01-Jan-00 00:00:00 GMT", utc(2000, 1, 1)),
        (b"Monday, 01-Jan-24 00:00:00 GMT", utc(2024, 1, 1)),
        (b"Friday, 01-Jan-49 00:00:00 GMT", utc(2049, 1, 1)),  # 25 years ahead: not "> 50"
        (b"Tuesday, 01-Jan-80 00:00:00 GMT", utc(1980, 1, 1)),  # 2080 is > 50 years ahead
    ],
)
def test_two_digit_years(value: bytes, expected: int) -> None:
    """RFC 9110 §5.6.7: an rfc850-date year that looks > 50 years ahead is the past century."""
    assert parse_http_date(value) == expected


YEAR_2026 = utc(2026, 6, 1)


@pytest.mark.parametrize(
    ("value", "now", "year"),
    [
        (b"Friday, 01-Jan-60 00:00:00 GMT", YEAR_2026, 2060),  # 34 years ahead: future
        (b"Tuesday, 01-Jan-80 00:00:00 GMT", YEAR_2026, 1980),  # 54 years ahead: past
        (b"Thursday, 01-Jan-76 00:00:00 GMT", YEAR_2026, 2076),  # exactly 50: not "more"
        (b"Monday, 01-Jan-77 00:00:00 GMT", YEAR_2026, 1977),
        (b"Sunday, 01-Jan-51 00:00:00 GMT", 1_000_000_000, 2051),  # now in 2001
        (b"Monday, 01-Jan-52 00:00:00 GMT", 1_000_000_000, 1952),
        (b"Sunday, 01-Jan-00 00:00:00 GMT", YEAR_2026, 2000),
    ],
)
def test_two_digit_years_relative_to_now(value: bytes, now: int, year: int) -> None:
    """RFC 9110 §5.6.7: "more than 50 years in the future" is measured from the clock given."""
    assert parse_http_date(value, now=now) == utc(year, 1, 1)


def test_two_digit_year_keeps_the_time_of_day() -> None:
    """RFC 9110 §5.6.7: rfc850-date carries the same time-of-day as IMF-fixdate."""
    assert parse_http_date(b"Wednesday, 09-Sep-01 01:46:40 GMT") == 1_000_000_000


# ---------------------------------------------------------------------------------------------
# Leap years and leap seconds.


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"Thu, 29 Feb 2024 12:00:00 GMT", utc(2024, 2, 29, 12)),
        (b"Tue, 29 Feb 2000 00:00:00 GMT", utc(2000, 2, 29)),  # divisible by 400
        (b"Sunday, 29-Feb-04 00:00:00 GMT", utc(2004, 2, 29)),
        (b"Sun Feb 29 00:00:00 1976", utc(1976, 2, 29)),
    ],
)
def test_leap_days_exist_in_leap_years(value: bytes, expected: int) -> None:
    """RFC 9110 §5.6.7: dates are proleptic Gregorian (RFC 5322 §3.3), with 29 February."""
    assert parse_http_date(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        b"Wed, 29 Feb 2023 00:00:00 GMT",
        b"Thu, 29 Feb 1900 00:00:00 GMT",  # divisible by 100, not by 400
        b"Mon, 29 Feb 2100 00:00:00 GMT",
        b"Mon, 30 Feb 2024 00:00:00 GMT",
        b"Sat, 31 Apr 1994 00:00:00 GMT",
        b"Sat, 31 Jun 1994 00:00:00 GMT",
        b"Sat, 31 Sep 1994 00:00:00 GMT",
        b"Sat, 31 Nov 1994 00:00:00 GMT",
    ],
)
def test_days_that_do_not_exist_are_invalid(value: bytes) -> None:
    """RFC 9110 §5.6.7: a day past its month's end is not an HTTP-date."""
    assert parse_http_date(value) is None


def test_leap_second_is_read_as_the_second_before() -> None:
    """RFC 9110 §5.6.7 (via RFC 5322 §3.3): second 60 may appear at a leap second."""
    assert parse_http_date(b"Sat, 31 Dec 2016 23:59:60 GMT") == utc(2016, 12, 31, 23, 59, 59)


# ---------------------------------------------------------------------------------------------
# Invalid dates (RFC 9110 §5.6.7: anything else is not a date; RFC 9111 §5.3 decides the rest).


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"0",
        b"-1",
        b"garbage",
        b"1994-11-06T08:49:37Z",  # ISO 8601
        b"Sun, 06 Nov 1994 08:49:37 UTC",  # the zone is always "GMT"
        b"Sun, 06 Nov 1994 08:49:37 +0000",
        b"Sun, 06 Nov 1994 08:49:37",
        b"Sun, 06 Nov 94 08:49:37 GMT",  # two-digit year in IMF-fixdate
        b"Sun, 06 Nov 19940 08:49:37 GMT",
        b"Sun, 06 Foo 1994 08:49:37 GMT",
        b"Xyz, 06 Nov 1994 08:49:37 GMT",
        b"Sun, 32 Nov 1994 08:49:37 GMT",
        b"Sun, 00 Nov 1994 08:49:37 GMT",
        b"Sun, 06 Nov 1994 24:00:00 GMT",
        b"Sun, 06 Nov 1994 08:60:00 GMT",
        b"Sun, 06 Nov 1994 08:49:61 GMT",
        b"Sun, 06 Nov 1994 08:49 GMT",
        b"Sun, 06 Nov 1994 8:49:37 GMT",
        b"Sun, 06 Nov 1994 08:49:37:00 GMT",
        b"Sun, 6a Nov 1994 08:49:37 GMT",
        b"Sunday, 06-Nov-1994 08:49:37 GMT",  # four-digit year in rfc850-date
        b"Sunday, 06-Nov 08:49:37 GMT",
        b"Sunday, 06-Nov-94-01 08:49:37 GMT",
        b"Sun Nov  6 08:49:37 94",  # two-digit year in asctime
        b"Sun Nov  6 08:49:37 1994 GMT",
        b"Sun 06 Nov 1994 08:49:37 GMT",  # IMF-fixdate without the comma
        b"Sun, 6 Nov 1994 08:49:37 GMT",  # IMF-fixdate's day is 2DIGIT
        b"Sun,  06 Nov 1994 08:49:37 GMT",  # one SP between the parts
        b"Sun, 06 Nov  1994 08:49:37 GMT",
        b"Sunday, 6-Nov-94 08:49:37 GMT",  # rfc850-date's day is 2DIGIT
    ],
)
def test_invalid_dates_are_none(value: bytes) -> None:
    """RFC 9110 §5.6.7: a value in none of the three formats is not an HTTP-date."""
    assert parse_http_date(value) is None


# ---------------------------------------------------------------------------------------------
# Writing: always IMF-fixdate (RFC 9110 §5.6.7: a sender MUST generate IMF-fixdate).


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (EXAMPLE, b"Sun, 06 Nov 1994 08:49:37 GMT"),
        (0, b"Thu, 01 Jan 1970 00:00:00 GMT"),
        (utc(2000, 2, 29, 23, 59, 59), b"Tue, 29 Feb 2000 23:59:59 GMT"),
        (utc(2024, 2, 29), b"Thu, 29 Feb 2024 00:00:00 GMT"),
        (2**31, b"Tue, 19 Jan 2038 03:14:08 GMT"),
    ],
)
def test_format_writes_imf_fixdate(seconds: int, expected: bytes) -> None:
    """RFC 9110 §5.6.7: IMF-fixdate, with a day-name, two-digit day and four-digit year."""
    assert format_http_date(seconds) == expected


def test_format_rounds_fractions_down() -> None:
    """RFC 9110 §5.6.7: HTTP-date has one-second resolution; the fraction is dropped."""
    assert format_http_date(EXAMPLE + 0.999) == b"Sun, 06 Nov 1994 08:49:37 GMT"


def test_format_then_parse_is_the_identity() -> None:
    """RFC 9110 §5.6.7: what a sender generates, a recipient reads back."""
    for seconds in (0, 1, 59, 86399, 86400, EXAMPLE, 951_782_400, 2**31 - 1, 2**33):
        assert parse_http_date(format_http_date(seconds)) == seconds
