"""Byte ranges served from a complete stored response (RFC 9110 §14).

One range is answered with a 206; a request for several, or one the cache does
not understand, gets the whole response (a recipient may ignore Range, §14.2).
``If-Range`` keeps the range only while it names the stored representation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sansproxy.cache.dates import parse_http_date
from sansproxy.cache.freshness import header_value

if TYPE_CHECKING:
    from sansproxy._codec import Headers

__all__ = ["UNSATISFIABLE", "requested_range"]

UNSATISFIABLE = (-1, -1)
"""A range that selects nothing of the representation (answered 416)."""


def requested_range(request: Headers, stored: Headers, length: int) -> tuple[int, int] | None:
    """``(first, last)`` byte of the one range asked for, :data:`UNSATISFIABLE`, or None.

    None means: send the whole response (no Range, several ranges, a unit other
    than bytes, a malformed value, or an ``If-Range`` that does not match).
    """
    value = header_value(request, b"range")
    if value is None or not _if_range_holds(request, stored):
        return None
    unit, _, spec = value.partition(b"=")
    if unit.strip().lower() != b"bytes" or b"," in spec:
        return None
    first_text, dash, last_text = spec.strip().partition(b"-")
    first_text, last_text = first_text.strip(), last_text.strip()
    if not dash or not (first_text or last_text):
        return None
    if not first_text:
        if not last_text.isdigit():
            return None
        suffix = int(last_text)
        if suffix == 0 or length == 0:
            return UNSATISFIABLE
        return max(0, length - suffix), length - 1
    if not first_text.isdigit() or (last_text and not last_text.isdigit()):
        return None
    first = int(first_text)
    if last_text and int(last_text) < first:
        return None  # invalid: ignored (§14.1.1)
    if first >= length:
        return UNSATISFIABLE
    last = int(last_text) if last_text else length - 1
    return first, min(last, length - 1)


def _if_range_holds(request: Headers, stored: Headers) -> bool:
    """Whether ``If-Range`` (if any) matches the stored representation (RFC 9110 §13.1.5)."""
    condition = header_value(request, b"if-range")
    if condition is None:
        return True
    condition = condition.strip()
    if condition.startswith((b'"', b"W/")):
        etag = header_value(stored, b"etag")
        return etag is not None and not condition.startswith(b"W/") and etag.strip() == condition
    modified = header_value(stored, b"last-modified")
    wanted = parse_http_date(condition)
    return modified is not None and wanted is not None and parse_http_date(modified) == wanted
