"""HTTP/1.1 wire text the codec writes (RFC 9112), with no parser behind it.

Field lines, the ``Connection: close`` h11 would add, reason phrases, the
refusal a full proxy answers with, and the split of an absolute-form target.
:mod:`sansproxy._codec.http1` uses these; none of them needs h11.
"""

from __future__ import annotations

from http import HTTPStatus

from sansproxy._codec import Headers

__all__ = [
    "CHUNKED",
    "PHRASES",
    "field_lines",
    "not_tls_response",
    "refusal",
    "split_absolute",
    "tokens",
    "with_close",
]

PHRASES = {status.value: status.phrase.encode("ascii") for status in HTTPStatus}
"""Standard reason phrases, for backends that send an empty one (RFC 9112 §4 allows it)."""

FIELD_LINE = b"%s: %s\r\n".__mod__
"""One field line from a ``(name, value)`` pair."""

CHUNKED = (b"Transfer-Encoding", b"chunked")
CLOSE = (b"Connection", b"close")


def field_lines(fields: Headers) -> bytes:
    """The field lines of a header or trailer section, in order, without the blank line."""
    return b"".join(map(FIELD_LINE, fields))


def tokens(value: bytes) -> list[bytes]:
    """The lower-cased, non-empty elements of a list-valued field (RFC 9110 §5.6.1)."""
    return [token for part in value.lower().split(b",") if (token := part.strip())]


def refusal() -> bytes:
    """The whole 503 response that turns a connection away before it sends a request."""
    return (
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: 24\r\nconnection: close\r\n\r\n503 Service Unavailable\n"
    )


_NOT_TLS_BODY = b"400 The plain HTTP request was sent to HTTPS port\n"


def not_tls_response() -> bytes:
    """The whole 400 for plain HTTP sent to a TLS listener, in nginx's words.

    It is written before the request is read (there is nothing in it to answer
    otherwise), so it is the same for every request: HTTP/1.1, ``Connection: close``.
    """
    return (
        b"HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_NOT_TLS_BODY), _NOT_TLS_BODY)
    )


def split_absolute(target: bytes) -> tuple[bytes, bytes]:
    """The authority and the origin-form target of an absolute-form target (RFC 9112 §3.2.2)."""
    rest = target.split(b"://", 1)[1]
    authority = rest
    for stop in (b"/", b"?"):
        authority = authority.split(stop, 1)[0]
    slash = rest.find(b"/")
    query = rest.find(b"?")
    if slash == -1 or (query != -1 and query < slash):
        path = b"/" + rest[query:] if query != -1 else b"/"
    else:
        path = rest[slash:]
    return authority.rpartition(b"@")[2], path


def with_close(headers: Headers) -> Headers:
    """``headers`` with their ``Connection`` options plus ``close``, as h11 writes them.

    ``keep-alive`` goes (it would contradict ``close``); the options end the
    section, one ``Connection`` line each, in sorted order.
    """
    options = {b"close"}
    kept: Headers = []
    for field in headers:
        if field[0] == b"connection":
            options.update(tokens(field[1]))
        else:
            kept.append(field)
    options.discard(b"keep-alive")
    if options == {b"close"}:
        kept.append(CLOSE)
    else:
        kept.extend((b"Connection", option) for option in sorted(options))
    return kept
