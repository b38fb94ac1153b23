"""HTTP/2 request heads checked and mapped to HTTP/1.1 semantics (RFC 9113 §8).

Pure functions over the field lists h2 decodes: which requests are malformed
(§8.2 field names and values, §8.3 pseudo-header fields, the CONNECT rules), how a
valid one becomes a :class:`~sansproxy._codec.RequestHead` the HTTP/1.1 side can
forward (``:authority`` becomes Host, §8.3.1; several ``cookie`` fields become one,
§8.2.3), and which response fields an HTTP/2 client may be sent (§8.2.2). The
checks are stricter than HTTP/2 alone needs where the fields go on into an HTTP/1.1
request line or field section: a method must be a token, a path visible ASCII, a
field name a lower-case token.
"""

from __future__ import annotations

import re

from sansproxy._codec import Headers, RequestHead
from sansproxy._codec._authority import valid_authority

__all__ = ["CONNECTION_SPECIFIC", "request_head", "response_fields", "trailers"]

CONNECTION_SPECIFIC = frozenset(
    {b"connection", b"proxy-connection", b"keep-alive", b"transfer-encoding", b"upgrade"}
)
"""Fields HTTP/2 forbids (RFC 9113 §8.2.2); a request that has one is malformed."""

_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz")
"""Lower-case RFC 9110 token characters: the only ones a forwarded field name may have."""

_METHOD = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
"""RFC 9110 §9.1: a method is a token."""
_SCHEME = re.compile(rb"[A-Za-z][A-Za-z0-9+\-.]*")
"""RFC 3986 §3.1 scheme."""
_PATH = re.compile(rb"[\x21-\x7e]+")
"""A request target goes into an HTTP/1.1 request line: visible ASCII only."""

_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]|^[ \t]|[ \t]$")
"""A control character (HTAB excepted), or space around the value (RFC 9113 §8.2.1)."""


def _valid_name(name: bytes) -> bool:
    return bool(name) and not name.translate(None, bytes(_TOKEN))


def _valid_value(value: bytes) -> bool:
    return _BAD_VALUE.search(value) is None


def request_head(
    stream: int, fields: list[tuple[bytes, bytes]], *, ended: bool
) -> RequestHead | str:
    """The request head of ``fields``, or why the request is malformed (RFC 9113 §8.2, §8.3)."""
    pseudo: dict[bytes, bytes] = {}
    headers: Headers = []
    cookies: list[bytes] = []
    hosts: list[bytes] = []
    length: bytes | None = None
    regular = False
    for name, value in fields:
        if name[:1] == b":":
            if regular:
                return "a pseudo-header field after a regular field"
            if name not in (b":method", b":scheme", b":authority", b":path", b":protocol"):
                return f"pseudo-header field {name!r} is not one of a request"
            if name in pseudo:
                return f"pseudo-header field {name!r} twice"
            if not value and name != b":authority":
                return f"empty {name.decode('latin-1')}"
            pseudo[name] = value
            continue
        regular = True
        if not _valid_name(name):
            return f"field name {name!r} is not a lower-case token"
        if not _valid_value(value):
            return f"field {name!r} has a control character or surrounding space in its value"
        if name in CONNECTION_SPECIFIC:
            return f"connection-specific field {name!r}"
        if name == b"te":
            if value.lower() != b"trailers":
                return "TE other than trailers"
        elif name == b"cookie":
            cookies.append(value)
            continue
        elif name == b"host":
            hosts.append(value)
            continue
        elif name == b"content-length":
            length = value
        headers.append((name, value))
    method = pseudo.get(b":method")
    if method is None:
        return "no :method"
    if not _METHOD.fullmatch(method):
        return ":method is not a token"
    authority = pseudo.get(b":authority")
    scheme = pseudo.get(b":scheme", b"")
    if scheme and not _SCHEME.fullmatch(scheme):
        return "invalid :scheme"
    protocol = pseudo.get(b":protocol", b"")
    if protocol and not _METHOD.fullmatch(protocol):
        return ":protocol is not a token"
    path = pseudo.get(b":path")
    if path is not None and not _PATH.fullmatch(path):
        return ":path has characters a request target cannot carry"
    if method == b"CONNECT" and not protocol:
        if b":scheme" in pseudo or path is not None:
            return "CONNECT with :scheme or :path"
        if not authority:
            return "CONNECT without :authority"
        path = authority
    else:
        if protocol and method != b"CONNECT":
            return ":protocol without CONNECT"
        if not scheme or path is None:
            return "no :scheme or :path"
        if protocol and not authority:
            return "extended CONNECT without :authority"
        if not (path.startswith(b"/") or (path == b"*" and method == b"OPTIONS")):
            return ":path is neither absolute nor * for OPTIONS"
    if authority is not None:
        if authority and not valid_authority(authority, empty_host=False):
            return "invalid :authority"
        if any(host.lower() != authority.lower() for host in hosts):
            return "Host differs from :authority"
        hosts = [authority] if authority else hosts
    if len(hosts) > 1:
        return "more than one Host"
    if hosts:
        headers.insert(0, (b"host", hosts[0]))
    if cookies:
        headers.append((b"cookie", b"; ".join(cookies)))
    if hosts and not valid_authority(hosts[0]):
        return "invalid Host"
    body_length = None
    if length is not None:
        if not length.isdigit():
            return "invalid content-length"  # pragma: no cover - h2 refuses it first
        body_length = int(length)
        if ended and body_length and method != b"HEAD":
            # RFC 9113 §8.1.1: a length that the DATA frames (none) do not match.
            return "content-length but no DATA"
    return RequestHead(
        stream=stream,
        method=method,
        target=path,
        path=path,
        headers=headers,
        http_version=b"2.0",
        authority=hosts[0] if hosts else b"",
        scheme=scheme,
        protocol=protocol,
        body_length=body_length,
        has_body=not ended,
    )


def trailers(fields: list[tuple[bytes, bytes]]) -> Headers | None:
    """Request trailers, or None when they are malformed (pseudo-headers, bad fields)."""
    checked: Headers = []
    for name, value in fields:
        if not _valid_name(name) or not _valid_value(value) or name in CONNECTION_SPECIFIC:
            return None
        checked.append((name, value))
    return checked


def response_fields(headers: Headers) -> Headers:
    """Response fields for HTTP/2: lower-case names, no connection-specific fields."""
    fields: Headers = []
    for name, value in headers:
        lower = name.lower()
        if lower not in CONNECTION_SPECIFIC:
            fields.append((lower, value))
    return fields
