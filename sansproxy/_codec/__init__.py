"""Codecs: the only place a wire protocol library is touched.

Each codec wraps one library (``http1`` wraps h11) behind the same small
vocabulary of normalised messages, so the proxy logic never sees a library
type. Header names are lower-case bytes, values are stripped bytes.

Grammar of what a codec yields, per message::

    head (InformationalHead* then RequestHead | ResponseHead)
    Body*
    EndOfMessage
    (PeerClosed | CodecError) may end the stream at any point.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Body",
    "CodecError",
    "CodecEvent",
    "EndOfMessage",
    "Headers",
    "InformationalHead",
    "PeerClosed",
    "RequestHead",
    "ResponseHead",
]

Headers = list[tuple[bytes, bytes]]


@dataclass(slots=True)
class RequestHead:
    """A request line and header section, validated by the codec."""

    method: bytes
    target: bytes
    headers: Headers
    http_version: bytes


@dataclass(slots=True)
class ResponseHead:
    """A final (status >= 200) response head."""

    status: int
    reason: bytes
    headers: Headers
    http_version: bytes


@dataclass(slots=True)
class InformationalHead:
    """A 1xx interim response head."""

    status: int
    reason: bytes
    headers: Headers


@dataclass(slots=True)
class Body:
    """A piece of a message body, de-framed."""

    data: bytes


@dataclass(slots=True)
class EndOfMessage:
    """The message ended cleanly; ``trailers`` only for chunked messages."""

    trailers: Headers


@dataclass(slots=True)
class PeerClosed:
    """The peer closed its side between messages (or ended a close-delimited body)."""


@dataclass(slots=True)
class CodecError:
    """The peer broke the protocol. ``status_hint`` is the HTTP status to answer with."""

    status_hint: int
    reason: str


CodecEvent = (
    RequestHead | ResponseHead | InformationalHead | Body | EndOfMessage | PeerClosed | CodecError
)
