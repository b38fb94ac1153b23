"""Response compression: the stage that encodes a backend's body on its way to the client.

The rules are in :mod:`sansproxy.compression`; this stage applies them to one
exchange. At the response head it asks whether the response may be encoded
(:func:`~sansproxy.compression.decide.refusal`) and in which coding the client
wants it (:func:`~sansproxy.compression.negotiate.choose_coding`), rewrites the
head, and from then on feeds each body piece to the encoder. A response without
a known length, and any ``text/event-stream``, is flushed piece by piece, so that
streamed content reaches the client as soon as it would have uncompressed.

A response served from the cache is compressed once per coding: the first hit
that asks for a coding keeps its encoded body beside the stored response, and
later hits send those bytes as they are (``docs/compression.md``, "With the cache").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sansproxy.compression.counters import CompressionCount
from sansproxy.compression.decide import compressed_head, media_type, refusal
from sansproxy.compression.encoders import Encoder, new_encoder
from sansproxy.compression.negotiate import choose_coding, default_preference
from sansproxy.filters import OutgoingHead, ResponseStage

if TYPE_CHECKING:
    from sansproxy._codec import Headers
    from sansproxy.exchange import Exchange

__all__ = ["Compress"]


class Compress:
    """The response filter: exchanges on routes with compression enabled take part."""

    __slots__ = ()

    def start(self, exchange: Exchange) -> ResponseStage | None:
        """A fresh stage for each exchange of a compressing route (never for probes)."""
        route = exchange.route
        if route is None or not route.compression.enabled or exchange.probe is not None:
            return None
        return _CompressStage()


class _CompressStage(ResponseStage):
    """One response's encoder, once its head has shown that it is to be encoded."""

    __slots__ = ("coding", "count", "encoder", "kept", "ready")

    transforms_body = True

    def __init__(self) -> None:
        self.encoder: Encoder | None = None
        self.count: CompressionCount | None = None
        self.coding = ""
        self.ready: bytes | None = None
        """A stored response's body already encoded in the chosen coding (sent at the end)."""
        self.kept: list[bytes] | None = None
        """The encoded pieces of a stored response's body, kept for the next hits."""

    def head(self, exchange: Exchange, head: OutgoingHead) -> None:
        """Decide, and rewrite the head of a response that will be encoded."""
        route = exchange.route
        assert route is not None
        settings = route.compression
        if refusal(
            method=exchange.method,
            status=head.status,
            request_headers=exchange.request_headers,
            response_headers=head.headers,
            min_size=settings.min_size,
            types=settings.types,
        ):
            return
        accepted = [v for n, v in exchange.request_headers if n == b"accept-encoding"]
        coding = choose_coding(accepted, settings.encodings or default_preference())
        if coding is None:
            return
        streaming = media_type(head.headers) == "text/event-stream" or not any(
            name == b"content-length" for name, _ in head.headers
        )
        head.headers = compressed_head(head.headers, coding)
        counts = exchange.ctx.compression
        self.count = count = counts.get(coding) or counts.setdefault(coding, CompressionCount())
        count.responses += 1
        self.coding = coding
        job = exchange.cache
        if job is not None and job.served is not None and not streaming:
            self.ready = job.encoding(coding)
            if self.ready is not None:
                count.bytes_in += len(job.served.body)
                count.bytes_out += len(self.ready)
                return
            self.kept = []
        self.encoder = new_encoder(coding, level=settings.level(coding), flush_each=streaming)

    def body(self, exchange: Exchange, data: bytes) -> bytes:
        """The encoded piece (possibly nothing yet)."""
        if self.ready is not None:
            return b""  # the encoded body goes at the end, whole
        encoder = self.encoder
        if encoder is None:
            return data
        out = encoder.compress(data)
        count = self.count
        assert count is not None
        count.bytes_in += len(data)
        count.bytes_out += len(out)
        if self.kept is not None and out:
            self.kept.append(out)
        return out

    def end(self, exchange: Exchange, trailers: Headers) -> bytes:
        """The end of the encoded stream."""
        ready = self.ready
        if ready is not None:
            self.ready = None
            return ready
        encoder = self.encoder
        if encoder is None:
            return b""
        self.encoder = None
        out = encoder.finish()
        count = self.count
        assert count is not None
        count.bytes_out += len(out)
        kept = self.kept
        job = exchange.cache
        if kept is not None and job is not None:
            kept.append(out)
            job.keep_encoding(self.coding, b"".join(kept))
            self.kept = None
        return out
