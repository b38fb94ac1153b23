"""Whether a response may be compressed, and the head of a response that is.

:func:`refusal` looks at the request and the response head and returns why the
body must go as it is, or None. The reason is a short phrase, for the access
log and a future explain endpoint. A response is left alone when:

- it is a tunnel: a ``CONNECT`` request or a ``101`` protocol switch (the bytes
  that follow are not HTTP content);
- it has no content to encode: a ``HEAD`` request (RFC 9110 §9.3.2), an
  interim ``1xx`` status, ``204``, or ``304`` (whose head must match the
  representation the client holds, RFC 9110 §15.4.5);
- it is part of a representation: a ``206``, or a request with ``Range``.
  Ranges are of the encoded bytes (RFC 9110 §14.1.2 and §8.4), so a range of
  an uncompressed response cannot be sent compressed, and one range request
  may not be answered with a whole compressed body either;
- it is encoded already: a ``Content-Encoding`` other than ``identity``;
- its sender forbids it: ``Cache-Control: no-transform`` (RFC 9111 §5.2.2.6,
  RFC 9110 §7.7);
- its media type (before any ``;``, case-insensitive) is not on the list of
  compressible types: :data:`DEFAULT_TYPES` by default, where ``text/*``
  matches any text subtype and ``application/*+json`` any ``+json`` suffix
  (RFC 6839). A response without ``Content-Type`` is not compressed: it could
  be anything, images and archives included;
- its declared ``Content-Length`` is below a minimum, :data:`DEFAULT_MIN_SIZE`
  (512 bytes, Caddy's default; nginx's ``gzip_min_length`` is 20). A small
  body fits one packet either way, and the coding's own overhead (gzip's 18
  bytes of header and trailer, a dictionary-less start) eats most of the gain.
  A body of unknown length (chunked, HTTP/2 without the field) is compressed:
  it is usually large or a stream.

:func:`compressed_head` rewrites the response fields for a body that will be
encoded.
"""

from __future__ import annotations

from collections.abc import Sequence

from sansproxy._codec import Headers
from sansproxy._codec._h1write import tokens

__all__ = ["DEFAULT_MIN_SIZE", "DEFAULT_TYPES", "compressed_head", "media_type", "refusal"]

DEFAULT_MIN_SIZE = 512
"""Bytes; a response declared shorter is sent as it is (see the module docstring)."""

DEFAULT_TYPES = (
    "text/*",
    "application/json",
    "application/*+json",
    "application/javascript",
    "application/xml",
    "application/*+xml",
    "image/svg+xml",
    "application/wasm",
)
"""Media types worth compressing: text and text-like formats, and WebAssembly.

Images (other than SVG), audio, video, fonts in WOFF2 and archives are
compressed by their own format already; encoding them again costs CPU and
usually makes them larger.
"""

_OWS = b" \t"

_DIGESTS = (b"content-md5", b"digest", b"content-digest", b"repr-digest")
"""Integrity fields computed over the bytes as the origin sent them (RFC 9530 §2, §3).

Repr-Digest covers the representation, content coding included, and
Content-Digest the content: both would be wrong for the encoded body, and a
client that checks them would reject it.
"""


def refusal(
    *,
    method: bytes,
    status: int,
    request_headers: Headers,
    response_headers: Headers,
    min_size: int = DEFAULT_MIN_SIZE,
    types: Sequence[str] = DEFAULT_TYPES,
) -> str | None:
    """Why this response must not be compressed, or None when it may be.

    Args:
        method: the request method, as received (upper case).
        status: the response status.
        request_headers: the request's fields (lower-case names).
        response_headers: the response's fields (lower-case names).
        min_size: responses with a ``Content-Length`` below this stay as they are.
        types: compressible media types: exact (``application/json``), a whole
            type (``text/*``) or a structured suffix (``application/*+xml``).
    """
    if method == b"CONNECT" or status == 101:
        return "tunnel"
    if method == b"HEAD":
        return "HEAD request"
    if status < 200 or status in (204, 304):
        return f"status {status} has no content"
    if status == 206:
        return "partial content"
    if any(name == b"range" for name, _ in request_headers):
        return "range request"
    codings = [t for t in _values(response_headers, b"content-encoding") if t != b"identity"]
    if codings:
        return "already encoded: " + b", ".join(codings).decode("latin-1")
    if any(
        directive.partition(b"=")[0].strip(_OWS) == b"no-transform"
        for directive in _values(response_headers, b"cache-control")
    ):
        return "Cache-Control: no-transform"
    media = media_type(response_headers)
    if media is None:
        return "no single Content-Type"
    if not any(_matches(media, pattern.lower()) for pattern in types):
        return f"media type {media} not compressible"
    length = _content_length(response_headers)
    if length is not None and length < min_size:
        return f"{length} bytes is below the minimum of {min_size}"
    return None


def media_type(headers: Headers) -> str | None:
    """The lower-cased ``type/subtype`` of ``Content-Type``, or None without one.

    Several ``Content-Type`` lines that disagree are as good as none: the
    recipient cannot know which one the body is (RFC 9110 §8.3).
    """
    found = {
        value.split(b";", 1)[0].strip(_OWS).lower()
        for name, value in headers
        if name == b"content-type"
    }
    if len(found) != 1:
        return None
    media = found.pop().decode("latin-1")
    return media if media.count("/") == 1 else None


def compressed_head(headers: Headers, coding: str) -> Headers:
    """The response fields to send with a body encoded in ``coding``.

    - ``Content-Length`` goes: the encoded length is not known until the end.
    - ``Content-Encoding`` names ``coding`` (an ``identity`` one is replaced).
    - ``Vary`` gets ``Accept-Encoding`` (RFC 9110 §12.5.5), unless it names it
      already or is ``*``, so that caches keep the encodings apart.
    - A strong ``ETag`` becomes weak: the encoded bytes differ from the origin's,
      and a strong validator promises the same bytes (RFC 9110 §8.8.1,
      §8.8.3). A malformed one, which cannot be made weak, is dropped.
    - ``Accept-Ranges`` goes: ranges would be of the encoded body, which the
      proxy does not keep (and it refuses range requests here anyway).
    - Digests of the unencoded bytes go (see ``_DIGESTS``).

    Every other field keeps its place and repetitions. ``headers`` is not changed.
    """
    vary = _values(headers, b"vary")
    keep_vary = b"*" in vary or b"accept-encoding" in vary
    last_vary = max((i for i, (name, _) in enumerate(headers) if name == b"vary"), default=-1)
    result: Headers = []
    for index, (name, value) in enumerate(headers):
        if name in (b"content-length", b"content-encoding", b"accept-ranges") or name in _DIGESTS:
            continue
        if name == b"etag":
            tag = _weak(value)
            if tag is not None:
                result.append((name, tag))
            continue
        if index == last_vary and not keep_vary:
            listed = value.strip(_OWS)
            result.append((name, listed + b", Accept-Encoding" if listed else b"Accept-Encoding"))
            continue
        result.append((name, value))
    if last_vary == -1:
        result.append((b"vary", b"Accept-Encoding"))
    result.append((b"content-encoding", coding.encode("ascii")))
    return result


def _values(headers: Headers, field: bytes) -> list[bytes]:
    """The lower-cased list elements of every ``field`` line (RFC 9110 §5.6.1)."""
    return [token for name, value in headers if name == field for token in tokens(value)]


def _matches(media: str, pattern: str) -> bool:
    kind, _, subtype = media.partition("/")
    want_kind, _, want_subtype = pattern.partition("/")
    if kind != want_kind:
        return False
    if want_subtype == "*":
        return True
    if want_subtype.startswith("*+"):
        return subtype.endswith(want_subtype[1:]) and len(subtype) > len(want_subtype) - 1
    return subtype == want_subtype


def _content_length(headers: Headers) -> int | None:
    """The declared length, or None when absent or not a plain number.

    The codecs reject malformed and conflicting lengths before a response gets here.
    """
    for name, value in headers:
        if name == b"content-length":
            text = value.strip(_OWS)
            return int(text) if text.isdigit() else None
    return None


def _weak(etag: bytes) -> bytes | None:
    """``etag`` as a weak validator, or None when it is not an entity-tag (RFC 9110 §8.8.3)."""
    tag = etag.strip(_OWS)
    if tag.startswith(b'W/"') and tag.endswith(b'"') and len(tag) >= 4:
        return tag
    if tag.startswith(b'"') and tag.endswith(b'"') and len(tag) >= 2:
        return b"W/" + tag
    return None
