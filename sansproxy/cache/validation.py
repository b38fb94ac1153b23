"""Validation (RFC 9111 §4.3): is a stored response still good, and is a client's copy.

It builds the conditional request that asks the backend, merges its 304 into
the stored response, and answers a client's own conditional request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sansproxy.cache.dates import parse_http_date
from sansproxy.cache.freshness import header_value
from sansproxy.headers import connection_tokens

if TYPE_CHECKING:
    from sansproxy._codec import Headers

__all__ = [
    "CONDITIONALS",
    "NOT_STORED",
    "client_not_modified",
    "not_modified_headers",
    "storable_headers",
    "updated_headers",
    "validators",
]

NOT_STORED = frozenset(
    (
        b"connection",
        b"proxy-connection",
        b"keep-alive",
        b"te",
        b"transfer-encoding",
        b"upgrade",
        b"trailer",
        b"proxy-authenticate",
        b"proxy-authentication-info",
        b"age",  # recomputed on every hit from the one the backend sent (kept apart)
    )
)
"""Fields a cache does not keep (§3.1: hop-by-hop and the proxy's own)."""

CONDITIONALS = (b"if-none-match", b"if-modified-since", b"if-match", b"if-unmodified-since")
_NOT_MODIFIED_FIELDS = frozenset(
    (b"cache-control", b"content-location", b"date", b"etag", b"expires", b"vary")
)
"""What a 304 carries of the response it stands for (RFC 9110 §15.4.5), besides Age."""
_NOT_UPDATED = frozenset((b"content-length", b"content-encoding", b"content-range"))
"""Fields a 304 may not change in the stored response (§3.2: what the body depends on)."""


def storable_headers(headers: Headers, *, leave_out: frozenset[bytes] = frozenset()) -> Headers:
    """The fields of a response as a cache stores them (``leave_out``: ``private=`` names...)."""
    listed = connection_tokens(headers)
    return [
        (name, value)
        for name, value in headers
        if name not in NOT_STORED and name not in listed and name not in leave_out
    ]


def validators(stored: Headers) -> Headers:
    """The conditional fields that ask the backend whether ``stored`` is still current."""
    fields: Headers = []
    etags = [value for name, value in stored if name == b"etag"]
    if etags:
        fields.append((b"if-none-match", b", ".join(etags)))
    modified = header_value(stored, b"last-modified")
    if modified is not None and parse_http_date(modified) is not None:
        fields.append((b"if-modified-since", modified))
    return fields


def updated_headers(stored: Headers, fresh: Headers, *, leave_out: frozenset[bytes]) -> Headers:
    """The stored fields with those of a 304 (or of a HEAD response) put in their place (§3.2)."""
    incoming = storable_headers(fresh, leave_out=leave_out | _NOT_UPDATED)
    replaced = {name for name, _ in incoming}
    kept = [(name, value) for name, value in stored if name not in replaced]
    return kept + incoming


def client_not_modified(request: Headers, stored: Headers, *, stored_date: int) -> bool:
    """Whether a client's conditional GET is answered 304 by ``stored`` (RFC 9110 §13.2.2).

    If-None-Match takes precedence; If-Modified-Since compares with Last-Modified,
    or the stored Date when there is none (RFC 9111 §4.3.2).
    """
    if_none_match = [value for name, value in request if name == b"if-none-match"]
    if if_none_match:
        # "*" matches any current representation, with or without an ETag (RFC 9110 §13.1.2).
        wanted = {_weak(t) for value in if_none_match for t in _etag_list(value)}
        etags = [value for name, value in stored if name == b"etag"]
        return b"*" in wanted or any(_weak(tag) in wanted for tag in etags)
    since = header_value(request, b"if-modified-since")
    if since is None:
        return False
    since_time = parse_http_date(since)
    if since_time is None:
        return False
    modified = parse_http_date(header_value(stored, b"last-modified") or b"")
    return (stored_date if modified is None else modified) <= since_time


def not_modified_headers(stored: Headers) -> Headers:
    """The fields of the 304 that stands for ``stored``."""
    return [(name, value) for name, value in stored if name in _NOT_MODIFIED_FIELDS]


def _weak(tag: bytes) -> bytes:
    """An entity tag for the weak comparison (RFC 9110 §8.8.3.2)."""
    tag = tag.strip()
    return tag[2:] if tag[:2] == b"W/" else tag


def _etag_list(value: bytes) -> list[bytes]:
    """The entity tags of an If-None-Match value (a tag may hold a comma in quotes)."""
    tags: list[bytes] = []
    index = 0
    length = len(value)
    while index < length:
        while index < length and value[index] in b" \t,":
            index += 1
        if index >= length:
            break
        start = index
        if value[index : index + 2] == b"W/":
            index += 2
        if index < length and value[index] == 0x22:
            end = value.find(b'"', index + 1)
            index = length if end < 0 else end + 1
        else:
            while index < length and value[index] not in b" \t,":
                index += 1
        tags.append(value[start:index])
    return tags
