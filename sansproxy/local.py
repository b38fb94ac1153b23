"""The responses the proxy makes itself: its error pages and its local answers.

Every error page is small, generic and the same whatever went wrong behind the
proxy (``502 Bad Gateway``): it never names a backend, an address or a reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sansproxy._codec import Headers
    from sansproxy._settings import Settings

__all__ = ["REASONS", "error_page", "local_headers"]

REASONS = {
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    413: b"Content Too Large",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
    499: b"Client Closed Request",
    501: b"Not Implemented",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
    505: b"HTTP Version Not Supported",
}
"""Reason phrases of the statuses the proxy answers with (RFC 9110 §15 spellings)."""


def error_page(
    settings: Settings, status: int, *, retry_after: int | None = None
) -> tuple[bytes, Headers, bytes]:
    """The reason phrase, header fields and body of the proxy's error response for ``status``."""
    reason = REASONS.get(status, b"Error")
    body = b"%d %s\n" % (status, reason)
    headers: Headers = []
    server = settings.config.headers.server
    if server is not None:
        headers.append((b"server", server.encode()))
    if retry_after is not None:
        headers.append((b"retry-after", b"%d" % retry_after))
    headers.append((b"content-type", b"text/plain; charset=utf-8"))
    headers.append((b"content-length", b"%d" % len(body)))
    return reason, headers, body


def local_headers(settings: Settings, status: int, headers: Headers, body: bytes) -> Headers:
    """The fields of a local answer: its own, then Server and Content-Length."""
    server = settings.config.headers.server
    if server is not None:
        headers.append((b"server", server.encode()))
    if status not in (204, 304):
        headers.append((b"content-length", b"%d" % len(body)))
    return headers
