"""Streaming encoders for the content codings the proxy can apply (RFC 9110 §8.4.1).

An :class:`Encoder` turns one response body, given piece by piece, into one
encoded body: :meth:`Encoder.compress` returns the bytes that can be sent now,
:meth:`Encoder.finish` the end of the stream. With ``flush_each`` every piece
is flushed at a block boundary, so the client can decode everything it was sent
without waiting for the next piece: server-sent events and other streams that
trickle must not sit in a compressor's buffer. Flushing costs some ratio (each
flush ends a block), so it is only for the responses that need it.

Memory is the cost to watch: one encoder lives per compressed response in
flight, so its window and tables are chosen bounded rather than for the best
ratio. The figures below are the resident memory one encoder took in a
measurement on 16 KiB pieces, flushed each time (CPython 3.11, x86-64):

- ``gzip`` and ``deflate`` (the standard library's zlib): ``wbits=15`` (a 32 KiB
  window, the format's maximum) and ``memLevel=8``, zlib's own defaults: about
  256 KiB (zlib's formula: ``2**(wbits+2) + 2**(memLevel+9)``). Level 5: close
  to the default level 6 in ratio on text, noticeably faster; levels above 6 buy
  little for web content at a large cost in CPU.
- ``br`` (the optional ``brotli`` package): quality 4 with ``lgwin=18`` (a 256
  KiB window): about 1.1 MiB. The library's default ``lgwin=22`` (4 MiB window)
  took 1.9 MiB at the same quality and gains only on bodies larger than 256 KiB,
  which are rare among compressible responses; quality 5 took 2 MiB (its hash
  tables are larger) for a few per cent of ratio. Quality 11, the library's
  default, is for compressing static files ahead of time, far too slow per
  request.
- ``zstd`` (the optional ``zstandard`` package): level 3 (zstd's default, the
  usual choice for on-the-fly HTTP compression) with ``window_log=19`` (a 512
  KiB window instead of the level's 2 MiB): about 1.4 MiB, against 1.9 MiB with
  ``window_log=20``. RFC 9659 §3 asks encoders to stay within an 8 MiB window;
  this is far below it. No worker threads (the core is one synchronous turn).

``deflate`` is the zlib format (RFC 1950), as RFC 9110 §8.4.1.2 says, not raw
deflate. Brotli and Zstandard are optional extras (``pip install
'sansproxy[compression]'``): :func:`available` names the codings this
interpreter can produce, and the negotiation only offers those.
"""

from __future__ import annotations

import zlib
from typing import Protocol

try:
    import brotli

    _HAVE_BROTLI = True
except ImportError:  # the optional extra is not installed
    _HAVE_BROTLI = False

try:
    import zstandard

    _HAVE_ZSTANDARD = True
except ImportError:  # the optional extra is not installed
    _HAVE_ZSTANDARD = False

__all__ = [
    "CODINGS",
    "DEFAULT_LEVELS",
    "Encoder",
    "available",
    "new_encoder",
]

CODINGS = ("zstd", "br", "gzip", "deflate")
"""Every coding this module knows, whether or not its library is installed."""

DEFAULT_LEVELS: dict[str, int] = {"gzip": 5, "deflate": 5, "br": 4, "zstd": 3}
"""Levels chosen for speed per request (see the module docstring)."""

ZLIB_WBITS = 15
ZLIB_MEMLEVEL = 8
BROTLI_LGWIN = 18
ZSTD_WINDOW_LOG = 19


class Encoder(Protocol):
    """One response body's encoder, fed its pieces in order."""

    def compress(self, piece: bytes) -> bytes:
        """Encode ``piece``; return what can be sent now (possibly nothing).

        With ``flush_each``, the bytes returned so far decode to every piece
        given so far.
        """

    def finish(self) -> bytes:
        """End the encoded stream; return its last bytes. The encoder is then spent."""


class _BrotliCompressor(Protocol):
    """The part of ``brotli.Compressor`` used here (the package has no type hints)."""

    def process(self, data: bytes, /) -> bytes: ...
    def flush(self) -> bytes: ...
    def finish(self) -> bytes: ...


def available() -> tuple[str, ...]:
    """The codings this interpreter can produce, in :data:`CODINGS` order."""
    missing = set()
    if not _HAVE_BROTLI:
        missing.add("br")
    if not _HAVE_ZSTANDARD:
        missing.add("zstd")
    return tuple(coding for coding in CODINGS if coding not in missing)


def new_encoder(coding: str, *, level: int | None = None, flush_each: bool = False) -> Encoder:
    """A fresh encoder for one body in ``coding`` (one of :func:`available`).

    Args:
        coding: ``"gzip"``, ``"deflate"``, ``"br"`` or ``"zstd"``.
        level: the compression level (quality for Brotli); None for
            :data:`DEFAULT_LEVELS`.
        flush_each: flush every piece so that the client can decode it at once.

    Raises:
        ValueError: ``coding`` is unknown or its library is not installed, or
            ``level`` is out of the library's range.
    """
    if coding not in available():
        raise ValueError(f"cannot encode {coding!r}; available: {', '.join(available())}")
    chosen = DEFAULT_LEVELS[coding] if level is None else level
    if coding == "gzip":
        return _ZlibEncoder(chosen, 16 + ZLIB_WBITS, flush_each)
    if coding == "deflate":
        return _ZlibEncoder(chosen, ZLIB_WBITS, flush_each)
    if coding == "br":
        return _BrotliEncoder(chosen, flush_each)
    return _ZstdEncoder(chosen, flush_each)


class _ZlibEncoder:
    """gzip (RFC 1952) or zlib-format deflate (RFC 1950), by ``wbits``."""

    __slots__ = ("_flush_each", "_zlib")

    def __init__(self, level: int, wbits: int, flush_each: bool) -> None:
        if not -1 <= level <= 9:
            raise ValueError(f"zlib level {level} is not in -1..9")
        self._zlib = zlib.compressobj(level, zlib.DEFLATED, wbits, ZLIB_MEMLEVEL)
        self._flush_each = flush_each

    def compress(self, piece: bytes) -> bytes:
        out = self._zlib.compress(piece)
        if self._flush_each and piece:
            # Z_SYNC_FLUSH ends the block on a byte boundary without ending the stream.
            out += self._zlib.flush(zlib.Z_SYNC_FLUSH)
        return out

    def finish(self) -> bytes:
        return self._zlib.flush(zlib.Z_FINISH)


class _BrotliEncoder:
    """Brotli (RFC 7932) through the ``brotli`` package."""

    __slots__ = ("_brotli", "_flush_each")

    def __init__(self, quality: int, flush_each: bool) -> None:
        if not 0 <= quality <= 11:
            raise ValueError(f"brotli quality {quality} is not in 0..11")
        self._brotli: _BrotliCompressor = brotli.Compressor(quality=quality, lgwin=BROTLI_LGWIN)
        self._flush_each = flush_each

    def compress(self, piece: bytes) -> bytes:
        out = self._brotli.process(piece)
        if self._flush_each and piece:
            out += self._brotli.flush()
        return out

    def finish(self) -> bytes:
        return self._brotli.finish()


class _ZstdEncoder:
    """Zstandard (RFC 8878) through the ``zstandard`` package."""

    __slots__ = ("_flush_each", "_zstd")

    def __init__(self, level: int, flush_each: bool) -> None:
        if not 1 <= level <= 22:
            raise ValueError(f"zstd level {level} is not in 1..22")
        params = zstandard.ZstdCompressionParameters.from_level(level, window_log=ZSTD_WINDOW_LOG)
        self._zstd = zstandard.ZstdCompressor(compression_params=params).compressobj()
        self._flush_each = flush_each

    def compress(self, piece: bytes) -> bytes:
        out = self._zstd.compress(piece)
        if self._flush_each and piece:
            # Ends the current block so the decoder can emit it; the frame goes on.
            out += self._zstd.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)
        return out

    def finish(self) -> bytes:
        return self._zstd.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH)
