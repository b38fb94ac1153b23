"""Whether a shared cache may store a response (RFC 9111 §3), with the reason when not.

The answer is a short reason string (empty when the response may be stored), so
that the ``Cache-Status`` ``detail`` parameter, the explain API and the tests can
all say why a response was not kept.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sansproxy.cache.freshness import HEURISTIC_STATUSES
from sansproxy.cache.keys import vary_names

if TYPE_CHECKING:
    from sansproxy._codec import Headers
    from sansproxy.cache.directives import CacheControl

__all__ = ["UNDERSTOOD_STATUSES", "refusal", "request_refusal"]

UNDERSTOOD_STATUSES = frozenset(
    (200, 203, 204, 300, 301, 302, 303, 307, 308, 404, 405, 410, 414, 501)
)
"""Statuses whose caching rules this cache implements (for ``must-understand``)."""


def request_refusal(method: bytes, directives: CacheControl) -> str:
    """Why a request's response may not be stored, whatever it is ('' when it may)."""
    if method != b"GET":
        return "method"
    if "no-store" in directives:
        return "request no-store"
    return ""


def refusal(
    *,
    status: int,
    request_headers: Headers,
    response_headers: Headers,
    directives: CacheControl,
    has_default: bool,
    store_set_cookie: bool,
) -> str:
    """Why a response to a GET may not be stored ('' when it may).

    ``has_default`` says the route gives this status a lifetime of its own, which
    makes a response without freshness information storable (nginx's
    ``proxy_cache_valid``).
    """
    if status < 200 or status in (206, 304):
        return "status"  # partial content and 304s are never stored whole (§3.3, §4.3.4)
    if "must-understand" in directives:
        if status not in UNDERSTOOD_STATUSES:
            return "must-understand"
    elif "no-store" in directives:
        return "no-store"
    if "private" in directives and directives.field_names("private") is None:
        return "private"
    if any(name == b"authorization" for name, _ in request_headers) and not (
        "public" in directives or "s-maxage" in directives or "must-revalidate" in directives
    ):
        return "authorization"
    if b"*" in vary_names(response_headers):
        return "vary *"
    if not store_set_cookie and any(name == b"set-cookie" for name, _ in response_headers):
        return "set-cookie"
    explicit = (
        "public" in directives
        or "max-age" in directives
        or "s-maxage" in directives
        or (not directives.targeted and any(name == b"expires" for name, _ in response_headers))
    )
    if not (explicit or has_default or status in HEURISTIC_STATUSES):
        return "no freshness"
    return ""
