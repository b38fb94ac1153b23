"""The responses the cache makes from the store, for :mod:`sansproxy.filters.cache`.

A stored response as it is served (its body's length, its current Age), the 304 that
answers a client's own conditional request, one byte range of it (206, or 416 for a
range outside the body), and the answers to a purge. Each is an
:class:`~sansproxy.filters.Answer` marked ``stored``, so that it passes the response
stages like a backend's response; the purge answers are the proxy's own.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from sansproxy.cache.dates import parse_http_date
from sansproxy.cache.freshness import header_value
from sansproxy.cache.ranges import UNSATISFIABLE
from sansproxy.cache.validation import client_not_modified, not_modified_headers
from sansproxy.filters import Answer

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sansproxy._codec import Headers
    from sansproxy.cache.store import StoredResponse

__all__ = [
    "conditional_holds",
    "not_modified",
    "not_modified_fields",
    "partial",
    "purge_allowed",
    "purged",
    "served",
    "served_fields",
]

_TEXT: Headers = [(b"content-type", b"text/plain; charset=utf-8")]


def served_fields(stored: StoredResponse, age: int) -> Headers:
    """The stored fields as served: one Content-Length for its body, the current Age."""
    fields = [(n, v) for n, v in stored.headers if n not in (b"age", b"content-length")]
    fields.append((b"age", b"%d" % max(0, age)))
    if stored.status != 204 and stored.status >= 200:
        fields.append((b"content-length", b"%d" % len(stored.body)))
    return fields


def served(stored: StoredResponse, age: int) -> Answer:
    """The whole stored response."""
    return Answer(
        status=stored.status,
        headers=served_fields(stored, age),
        body=stored.body,
        stored=True,
        reason=stored.reason,
    )


def not_modified_fields(stored: StoredResponse, age: int) -> Headers:
    """The fields of the 304 that stands for ``stored`` (RFC 9110 §15.4.5), with its Age."""
    return [*not_modified_headers(stored.headers), (b"age", b"%d" % age)]


def not_modified(stored: StoredResponse, age: int) -> Answer:
    """The 304 for a client whose copy is still ``stored``."""
    return Answer(
        status=304, headers=not_modified_fields(stored, age), stored=True, reason=b"Not Modified"
    )


def conditional_holds(request: Headers, stored: StoredResponse) -> bool:
    """Whether the client's own conditional request is answered 304 by ``stored``."""
    if not any(name in (b"if-none-match", b"if-modified-since") for name, _ in request):
        return False
    date = parse_http_date(header_value(stored.headers, b"date") or b"")
    stored_date = int(stored.response_time) if date is None else date
    return client_not_modified(request, stored.headers, stored_date=stored_date)


def partial(stored: StoredResponse, age: int, span: tuple[int, int]) -> Answer:
    """A 206 with one range of the stored body, or a 416 for a range outside it."""
    length = len(stored.body)
    fields = [(n, v) for n, v in stored.headers if n not in (b"age", b"content-length")]
    fields.append((b"age", b"%d" % max(0, age)))
    if span == UNSATISFIABLE:
        fields.append((b"content-range", b"bytes */%d" % length))
        fields.append((b"content-length", b"0"))
        return Answer(status=416, headers=fields, stored=True, reason=b"Range Not Satisfiable")
    first, last = span
    body = stored.body[first : last + 1]
    fields.append((b"content-range", b"bytes %d-%d/%d" % (first, last, length)))
    fields.append((b"content-length", b"%d" % len(body)))
    return Answer(status=206, headers=fields, body=body, stored=True, reason=b"Partial Content")


def purge_allowed(peer: str, networks: Sequence[str]) -> bool:
    """Whether a client at address ``peer`` may purge (its address is in ``networks``)."""
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(net) for net in networks)


def purged(removed: int | None) -> Answer:
    """The answer to a purge: 403 when not allowed (None), 404 when nothing was stored."""
    if removed is None:
        return Answer(status=403, body=b"403 Forbidden\n", headers=_TEXT[:])
    if not removed:
        return Answer(status=404, body=b"404 Not Found\n", headers=_TEXT[:])
    return Answer(status=200, body=b"purged %d\n" % removed, headers=_TEXT[:])
