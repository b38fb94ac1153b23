"""How old a stored response is and how long it stays fresh (RFC 9111 §4.2, RFC 5861).

All times are wall-clock Unix seconds. ``request_time`` and ``response_time``
are when the cache sent the request that got the response and when the
response arrived; the stored ``Date`` is always present (the cache adds one
when the backend sent none, RFC 9110 §6.6.1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sansproxy.cache.dates import parse_http_date
from sansproxy.cache.directives import INVALID, MAX_DELTA, CacheControl, parse_delta

if TYPE_CHECKING:
    from sansproxy._codec import Headers

__all__ = [
    "HEURISTIC_STATUSES",
    "Lifetime",
    "age_value",
    "aged",
    "current_age",
    "freshness_lifetime",
    "header_value",
    "initial_age",
]

HEURISTIC_STATUSES = frozenset((200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501))
"""The statuses that are heuristically cacheable (RFC 9110 §15.1)."""


@dataclass(frozen=True, slots=True)
class Lifetime:
    """A stored response's freshness lifetime in seconds, and where it came from."""

    seconds: int
    source: str
    """``s-maxage``, ``max-age``, ``expires``, ``default`` (the route's), ``heuristic`` or
    ``none``; an unusable value of a source makes a lifetime of 0 from that source."""


def header_value(headers: Headers, name: bytes) -> bytes | None:
    """The value of a singleton field, or None when absent or given more than once."""
    found: bytes | None = None
    for field, value in headers:
        if field == name:
            if found is not None:
                return None if value != found else found
            found = value
    return found


def _count(headers: Headers, name: bytes) -> int:
    return sum(1 for field, _ in headers if field == name)


def freshness_lifetime(
    status: int,
    headers: Headers,
    directives: CacheControl,
    *,
    response_time: float,
    default: int | None,
    heuristic_fraction: float,
    heuristic_max: int,
) -> Lifetime:
    """The freshness lifetime for a shared cache (§4.2.1, §4.2.2).

    ``default`` is the route's lifetime for this status when the response has no
    freshness information of its own (None: there is none).
    """
    for name in ("s-maxage", "max-age"):
        seconds = directives.seconds(name)
        if seconds is not None:
            return Lifetime(0 if seconds == INVALID else seconds, name)
    expires_count = 0 if directives.targeted else _count(headers, b"expires")
    if expires_count:
        expires = parse_http_date(header_value(headers, b"expires") or b"", now=response_time)
        if expires is None or expires_count > 1:
            return Lifetime(0, "expires")  # an invalid Expires is a time in the past (§5.3)
        date = _date(headers, response_time)
        return Lifetime(max(0, min(expires - date, MAX_DELTA)), "expires")
    if default is not None:
        return Lifetime(default, "default")
    if status in HEURISTIC_STATUSES or "public" in directives:
        modified = parse_http_date(
            header_value(headers, b"last-modified") or b"", now=response_time
        )
        if modified is not None:
            elapsed = _date(headers, response_time) - modified
            if elapsed > 0:
                return Lifetime(min(int(elapsed * heuristic_fraction), heuristic_max), "heuristic")
    return Lifetime(0, "none")


def _date(headers: Headers, response_time: float) -> int:
    date = parse_http_date(header_value(headers, b"date") or b"", now=response_time)
    return int(response_time) if date is None else date


def age_value(headers: Headers) -> int:
    """The Age field's seconds: its first member, 0 when absent or invalid (§5.1)."""
    for name, value in headers:
        if name == b"age":
            seconds = parse_delta(value.split(b",")[0].strip())
            return 0 if seconds == INVALID else seconds
    return 0


def current_age(headers: Headers, *, request_time: float, response_time: float, now: float) -> int:
    """The response's current age in whole seconds (§4.2.3)."""
    initial = initial_age(headers, request_time=request_time, response_time=response_time)
    return aged(initial, response_time=response_time, now=now)


def initial_age(headers: Headers, *, request_time: float, response_time: float) -> float:
    """The age a response had when it arrived (§4.2.3 ``corrected_initial_age``)."""
    date = _date(headers, response_time)
    apparent_age = max(0.0, response_time - date)
    response_delay = max(0.0, response_time - request_time)
    corrected_age_value = age_value(headers) + response_delay
    return max(apparent_age, corrected_age_value)


def aged(initial: float, *, response_time: float, now: float) -> int:
    """The current age in whole seconds of a response that arrived ``initial`` seconds old."""
    resident_time = max(0.0, now - response_time)
    return min(int(initial + resident_time), MAX_DELTA)
