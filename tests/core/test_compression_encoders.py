"""Tests of sansproxy.compression.encoders: streaming encoders that round-trip and flush.

Each coding is checked against an independent decoder: the standard library's
``gzip`` and ``zlib`` modules, and the ``brotli`` and ``zstandard`` packages'
own decompressors. Brotli and Zstandard tests are skipped when their optional
library is missing (CI installs the ``compression`` extra, so they run there).
"""

from __future__ import annotations

import gzip
import importlib
import importlib.util
import sys
import zlib
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sansproxy.compression import encoders
from sansproxy.compression.encoders import available, new_encoder

Decode = Callable[[bytes], bytes]
"""Decode a whole encoded body."""
StreamDecoder = Callable[[], Callable[[bytes], bytes]]
"""Make a streaming decoder: feed it encoded bytes, get the decoded bytes available so far."""


def _gzip_stream() -> Callable[[bytes], bytes]:
    return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress


def _deflate_stream() -> Callable[[bytes], bytes]:
    return zlib.decompressobj(zlib.MAX_WBITS).decompress


def _br_decode(data: bytes) -> bytes:
    brotli = pytest.importorskip("brotli")
    result: bytes = brotli.decompress(data)
    return result


def _br_stream() -> Callable[[bytes], bytes]:
    brotli = pytest.importorskip("brotli")
    decoder = brotli.Decompressor()
    return lambda data: bytes(decoder.process(data))


def _zstd_decode(data: bytes) -> bytes:
    zstandard = pytest.importorskip("zstandard")
    # A streamed frame has no content size, so the one-shot decompress() refuses it.
    result: bytes = zstandard.ZstdDecompressor().decompressobj().decompress(data)
    return result


def _zstd_stream() -> Callable[[bytes], bytes]:
    zstandard = pytest.importorskip("zstandard")
    return zstandard.ZstdDecompressor().decompressobj().decompress


DECODERS: dict[str, tuple[Decode, StreamDecoder]] = {
    "gzip": (gzip.decompress, _gzip_stream),
    "deflate": (zlib.decompress, _deflate_stream),
    "br": (_br_decode, _br_stream),
    "zstd": (_zstd_decode, _zstd_stream),
}

LIBRARY = {"br": "brotli", "zstd": "zstandard"}


@pytest.fixture(params=sorted(DECODERS))
def coding(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    if name in LIBRARY:
        pytest.importorskip(LIBRARY[name])
    return name


def _split(body: bytes, cuts: list[int]) -> Iterator[bytes]:
    """``body`` cut at the given offsets (sorted, repeated cuts give empty pieces)."""
    start = 0
    for cut in sorted(min(cut, len(body)) for cut in cuts):
        yield body[start:cut]
        start = cut
    yield body[start:]


TEXT = b"data: {'event': 'tick', 'n': 12345}\n\n" * 40 + bytes(range(256))

bodies = st.one_of(
    st.binary(max_size=4000),
    # Compressible text, where a buffering encoder would hold data back.
    st.lists(
        st.sampled_from([b"abc", b"hello ", b"\n", b"data: x\n\n", b"\x00"]), max_size=400
    ).map(b"".join),
)
cuts = st.lists(st.integers(min_value=0, max_value=4000), max_size=12)


# --- scripted -------------------------------------------------------------------------------


def test_gzip_output_is_a_gzip_member_rfc_9110_8_4_1_3(coding: str) -> None:
    """gzip is RFC 1952 (magic 1f 8b); deflate is the zlib format, RFC 9110 §8.4.1.2."""
    encoder = new_encoder(coding)
    data = encoder.compress(TEXT) + encoder.finish()
    assert DECODERS[coding][0](data) == TEXT
    if coding == "gzip":
        assert data[:2] == b"\x1f\x8b"
    if coding == "deflate":
        # A zlib header: CM=8 (deflate) and a header checksum, not raw deflate.
        assert data[0] & 0x0F == 8
        assert int.from_bytes(data[:2], "big") % 31 == 0
    if coding == "zstd":
        assert data[:4] == b"\x28\xb5\x2f\xfd"  # RFC 8878 §3.1.1 magic number


def test_compressible_text_gets_smaller(coding: str) -> None:
    encoder = new_encoder(coding)
    assert len(encoder.compress(TEXT) + encoder.finish()) < len(TEXT) // 4


def test_flush_each_makes_a_small_piece_decodable_at_once(coding: str) -> None:
    """An SSE event must reach the client now, not when the buffer fills."""
    encoder = new_encoder(coding, flush_each=True)
    decode = DECODERS[coding][1]()
    assert decode(encoder.compress(b"data: one\n\n")) == b"data: one\n\n"
    assert decode(encoder.compress(b"data: two\n\n")) == b"data: two\n\n"
    assert decode(encoder.finish()) == b""


def test_without_flush_each_small_pieces_may_wait(coding: str) -> None:
    # The point of not flushing: the encoder holds the piece back for a better ratio.
    encoder = new_encoder(coding)
    sent = encoder.compress(b"data: one\n\n")
    assert DECODERS[coding][1]()(sent) == b""


def test_empty_body(coding: str) -> None:
    encoder = new_encoder(coding, flush_each=True)
    # zlib writes its header at once; the other libraries wait for data.
    head = encoder.compress(b"")
    assert len(head) <= 10
    assert DECODERS[coding][0](head + encoder.finish()) == b""


def test_levels_are_checked() -> None:
    with pytest.raises(ValueError, match="level 10"):
        new_encoder("gzip", level=10)
    new_encoder("gzip", level=1)


@pytest.mark.parametrize(("coding", "level"), [("br", 12), ("zstd", 0), ("zstd", 23)])
def test_optional_levels_are_checked(coding: str, level: int) -> None:
    pytest.importorskip(LIBRARY[coding])
    with pytest.raises(ValueError, match=str(level)):
        new_encoder(coding, level=level)


def test_unknown_coding_is_refused() -> None:
    with pytest.raises(ValueError, match="compress"):
        new_encoder("compress")


def test_zlib_window_is_bounded() -> None:
    """RFC 1950 §2.2: CINFO, the header's high nibble, is log2(window size) - 8."""
    encoder = new_encoder("deflate")
    header = (encoder.compress(TEXT) + encoder.finish())[0]
    assert header >> 4 == encoders.ZLIB_WBITS - 8 == 7


def test_brotli_window_is_bounded() -> None:
    """RFC 7932 §9.1: the stream header's WBITS (bit 0 set, then 3 bits n: 17 + n)."""
    pytest.importorskip("brotli")
    encoder = new_encoder("br")
    first = (encoder.compress(TEXT) + encoder.finish())[0]
    assert first & 1 == 1
    assert 17 + ((first >> 1) & 7) == encoders.BROTLI_LGWIN == 18


def test_zstd_window_is_bounded() -> None:
    zstandard = pytest.importorskip("zstandard")
    encoder = new_encoder("zstd")
    frame = encoder.compress(TEXT * 100) + encoder.finish()
    params = zstandard.get_frame_parameters(frame)
    assert params.window_size <= 1 << encoders.ZSTD_WINDOW_LOG
    assert encoders.ZSTD_WINDOW_LOG <= 20


# --- optional libraries ---------------------------------------------------------------------


def test_available_lists_what_is_installed() -> None:
    names = available()
    assert names[-2:] == ("gzip", "deflate")
    assert ("br" in names) == (importlib.util.find_spec("brotli") is not None)
    assert ("zstd" in names) == (importlib.util.find_spec("zstandard") is not None)


@pytest.mark.parametrize(("flag", "coding"), [("_HAVE_BROTLI", "br"), ("_HAVE_ZSTANDARD", "zstd")])
def test_available_omits_a_missing_library(
    monkeypatch: pytest.MonkeyPatch, flag: str, coding: str
) -> None:
    monkeypatch.setattr(encoders, flag, False)
    assert coding not in available()
    assert "gzip" in available()
    with pytest.raises(ValueError, match="cannot encode"):
        new_encoder(coding)


def test_the_module_imports_without_the_optional_libraries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A None entry in sys.modules makes `import brotli` raise ImportError.
    monkeypatch.setitem(sys.modules, "brotli", None)
    monkeypatch.setitem(sys.modules, "zstandard", None)
    try:
        reloaded = importlib.reload(encoders)
        assert reloaded.available() == ("gzip", "deflate")
    finally:
        monkeypatch.undo()
        importlib.reload(encoders)


# --- properties -----------------------------------------------------------------------------


@settings(max_examples=60)
@given(body=bodies, cuts=cuts, flush_each=st.booleans(), data=st.data())
def test_any_split_round_trips(
    body: bytes, cuts: list[int], flush_each: bool, data: st.DataObject
) -> None:
    coding = data.draw(st.sampled_from(available()))
    encoder = new_encoder(coding, flush_each=flush_each)
    encoded = b"".join(encoder.compress(piece) for piece in _split(body, cuts)) + encoder.finish()
    assert DECODERS[coding][0](encoded) == body


@settings(max_examples=60)
@given(body=bodies, cuts=cuts, data=st.data())
def test_flush_each_decodes_to_the_input_so_far(
    body: bytes, cuts: list[int], data: st.DataObject
) -> None:
    coding = data.draw(st.sampled_from(available()))
    encoder = new_encoder(coding, flush_each=True)
    decode = DECODERS[coding][1]()
    received = b""
    given_so_far = b""
    for piece in _split(body, cuts):
        given_so_far += piece
        received += decode(encoder.compress(piece))
        assert received == given_so_far
    received += decode(encoder.finish())
    assert received == body
