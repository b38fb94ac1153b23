"""HTTP dates (RFC 9110 §5.6.7): reading all three formats, writing IMF-fixdate.

A cache compares dates from headers (``Date``, ``Expires``, ``Last-Modified``) with
the wall clock it is given. Reading is lenient in the ways the RFC asks a
recipient to be (the obsolete RFC 850 and asctime forms, two-digit years) and
strict otherwise: anything else is not a date, and the caller decides what an
invalid date means (an invalid ``Expires`` is a time in the past, §5.3).
"""

from __future__ import annotations

__all__ = ["format_http_date", "parse_http_date"]

_MONTH_NAMES = (
    *(b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun"),
    *(b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec"),
)
_MONTHS = {name.lower(): number for number, name in enumerate(_MONTH_NAMES, start=1)}
_DAYS = (b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun")
_WEEKDAYS = frozenset(
    (
        *(b"mon", b"tue", b"wed", b"thu", b"fri", b"sat", b"sun"),
        *(b"monday", b"tuesday", b"wednesday", b"thursday", b"friday", b"saturday", b"sunday"),
    )
)


def parse_http_date(value: bytes, *, now: float | None = None) -> int | None:
    """Unix seconds of an HTTP-date, or None when ``value`` is not one.

    The fields are separated by single spaces, as the grammar says (asctime pads a
    one-digit day with a second one). ``now`` places an RFC 850 two-digit year: one
    that would be more than 50 years ahead of it is in the century before (§5.6.7);
    without ``now``, years 00 to 49 are 2000 to 2049.
    """
    parts = value.strip().split(b" ")
    try:
        if len(parts) == 6 and parts[0].endswith(b","):
            # IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
            weekday, day, month, year, clock, zone = parts
            if not _digits(day, 2):
                return None
            return _build(weekday[:-1], day, month, clock, zone, year=_long_year(year))
        if len(parts) == 4 and parts[0].endswith(b","):
            # RFC 850: Sunday, 06-Nov-94 08:49:37 GMT
            weekday, date, clock, zone = parts
            day, month, year = date.split(b"-")
            if not _digits(day, 2):
                return None
            return _build(weekday[:-1], day, month, clock, zone, year=_short_year(year, now))
        if len(parts) == 6 and parts[2] == b"" and _digits(parts[3], 1):
            del parts[2]  # asctime with a one-digit day: Sun Nov  6 08:49:37 1994
        if len(parts) == 5 and not parts[0].endswith(b","):
            # asctime: Sun Nov 16 08:49:37 1994
            weekday, month, day, clock, year = parts
            if not (_digits(day, 2) or _digits(day, 1)):
                return None
            return _build(weekday, day, month, clock, b"GMT", year=_long_year(year))
    except ValueError:
        return None
    return None


def _long_year(year: bytes) -> int | None:
    return int(year) if _digits(year, 4) else None


def _short_year(year: bytes, now: float | None) -> int | None:
    if not _digits(year, 2):
        return None
    current = 2000 if now is None else _gmtime(int(now))[0]
    candidate = current - current % 100 + int(year)
    if now is None:
        return candidate if candidate < 2050 else candidate - 100
    return candidate - 100 if candidate > current + 50 else candidate


def _build(
    weekday: bytes, day: bytes, month: bytes, clock: bytes, zone: bytes, *, year: int | None
) -> int | None:
    # Day, month and zone names are matched case-insensitively (a lenient reading).
    if year is None or weekday.lower() not in _WEEKDAYS or zone.upper() != b"GMT":
        return None
    number = _MONTHS.get(month.lower())
    fields = clock.split(b":")
    if number is None or len(fields) != 3 or not all(_digits(f, 2) for f in fields):
        return None
    year_number = year
    hour, minute, second = (int(f) for f in fields)
    day_number = int(day)
    if not (1 <= day_number <= 31 and hour <= 23 and minute <= 59 and second <= 60):
        return None
    if day_number > _month_length(year_number, number):
        return None
    days = _days_from_civil(year_number, number, day_number)
    return days * 86400 + hour * 3600 + minute * 60 + min(second, 59)


def _month_length(year: int, month: int) -> int:
    if month == 2:
        leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
        return 29 if leap else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _days_from_civil(year: int, month: int, day: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm)."""
    if month <= 2:
        year -= 1
    era = year // 400
    yoe = year - era * 400
    doy = (153 * (month - 3 if month > 2 else month + 9) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _digits(value: bytes, count: int) -> bool:
    return len(value) == count and value.isdigit()


def format_http_date(seconds: float) -> bytes:
    """The IMF-fixdate of Unix time ``seconds`` (whole seconds, rounded down)."""
    year, month, day, hour, minute, second, weekday, _, _ = _gmtime(int(seconds))
    return b"%s, %02d %s %04d %02d:%02d:%02d GMT" % (
        _DAYS[weekday],
        day,
        _MONTH_NAMES[month - 1],
        year,
        hour,
        minute,
        second,
    )


def _gmtime(seconds: int) -> tuple[int, int, int, int, int, int, int, int, int]:
    """``time.gmtime`` without the time module (the core never imports it)."""
    days, rest = divmod(seconds, 86400)
    hour, rest = divmod(rest, 3600)
    minute, second = divmod(rest, 60)
    # Civil from days (Howard Hinnant's algorithm), proleptic Gregorian.
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    year = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = mp + 3 if mp < 10 else mp - 9
    if month <= 2:
        year += 1
    weekday = (days + 3) % 7  # 1970-01-01 was a Thursday (Monday is 0)
    return year, month, day, hour, minute, second, weekday, 0, 0
