"""What a stored response is filed under: its primary key and its Vary variant (RFC 9111 §4.1).

The primary key is the target URI (scheme, authority, path and query as the
route sees them), so that invalidating or purging a URI reaches every response
stored for it. A response is one variant of its key: the request's values of
the fields its ``Vary`` lists, and of the route's extra key parts (a request
header, a cookie), are stored with it, normalised, and a later request matches
only when its own values normalise the same. An absent field matches only an absent
field; ``*`` never matches (such responses are not stored).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sansproxy._codec import Headers

__all__ = ["Variant", "matches", "primary_key", "variant", "vary_names"]

Variant = tuple[tuple[bytes, bytes | None], ...]
"""``(field name, normalised request value or None)`` for each field a response varies on."""


def primary_key(*, scheme: bytes, host: bytes, target: bytes) -> bytes:
    """The key of a request's stored responses: its target URI."""
    return b"%s://%s%s" % (scheme, host.lower(), target)


def vary_names(headers: Headers) -> tuple[bytes, ...]:
    """The field names a response's Vary lists, lower-cased, in order, without repeats."""
    names: list[bytes] = []
    for name, value in headers:
        if name == b"vary":
            for member in value.split(b","):
                field = member.strip().lower()
                if field and field not in names:
                    names.append(field)
    return tuple(names)


def variant(
    request_headers: Headers,
    names: Sequence[bytes],
    *,
    key_headers: Sequence[bytes] = (),
    key_cookies: Sequence[bytes] = (),
) -> Variant:
    """The request's normalised values of the fields ``names`` and of the extra key parts.

    A key part is named with a NUL in front (no field name holds one), so that it
    never collides with a field of Vary.
    """
    parts = [(name, _normalised(request_headers, name)) for name in names]
    parts.extend((b"\0" + name, _joined(request_headers, name)) for name in key_headers)
    parts.extend((b"\0cookie:" + name, _cookie(request_headers, name)) for name in key_cookies)
    return tuple(parts)


def matches(stored: Variant, request_headers: Headers) -> bool:
    """Whether a request selects a response stored with variant ``stored``."""
    for name, value in stored:
        if name[:1] == b"\0":
            if name[:8] == b"\0cookie:":
                current = _cookie(request_headers, name[8:])
            else:
                current = _joined(request_headers, name[1:])
        else:
            current = _normalised(request_headers, name)
        if current != value:
            return False
    return True


def _normalised(headers: Headers, name: bytes) -> bytes | None:
    value = _joined(headers, name)
    if value is None:
        return None
    members = [m.strip() for m in value.split(b",")]
    if name in (b"accept-encoding", b"accept-language"):
        # Codings and language tags are case-insensitive, and their order means
        # nothing (their qvalues do).
        members = sorted({m.lower().replace(b" ", b"") for m in members if m})
    return b",".join(members)


def _joined(headers: Headers, name: bytes) -> bytes | None:
    """Every line of field ``name`` as one comma-joined value (RFC 9110 §5.3)."""
    values = [value for field, value in headers if field == name]
    if not values:
        return None
    return b", ".join(v.strip() for v in values)


def _cookie(headers: Headers, wanted: bytes) -> bytes | None:
    for field, value in headers:
        if field == b"cookie":
            for pair in value.split(b";"):
                name, _, cookie = pair.strip().partition(b"=")
                if name == wanted:
                    return cookie
    return None
