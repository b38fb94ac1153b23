"""HPACK conformance of the core's HTTP/2 listener, RFC 7541 (and RFC 9113 §4.3).

Every field block here is built by hand, representation by representation, so
that the client's idea of the dynamic table is exact: the common request is
three static entries (``:method GET``, ``:scheme https``, ``:path /``) and an
unindexed ``:authority``, which leaves the proxy's dynamic table empty.

Accepted representations are checked end to end: the field must reach the
backend. A decoding error must be a connection error of type
COMPRESSION_ERROR (RFC 9113 §4.3).
"""

from __future__ import annotations

import pytest
from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH
from hyperframe.frame import HeadersFrame

from tests.core.h2frames import ErrorCode, H2Client, Header, Setting

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\ntest"

EOS = 256
"""The Huffman table's end-of-string symbol."""

USER_AGENT = 58
"""Static table index of ``user-agent`` (RFC 7541 Appendix A)."""

FIRST_DYNAMIC = 62
"""The index of the newest dynamic table entry."""


# -- building representations (RFC 7541 §5, §6) ---------------------------------------


def integer(value: int, prefix: int, flags: int = 0) -> bytes:
    """An integer with a ``prefix``-bit prefix, the high bits of the first octet ``flags``."""
    limit = (1 << prefix) - 1
    if value < limit:
        return bytes([flags | value])
    out = bytearray([flags | limit])
    value -= limit
    while value >= 128:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.append(value)
    return bytes(out)


def huffman_bits(data: bytes, *, eos_after: int | None = None) -> tuple[int, int]:
    """The Huffman code of ``data`` as ``(bits, count)``, optionally with EOS inside it."""
    bits = count = 0
    for position, byte in enumerate(data):
        if position == eos_after:
            bits = (bits << REQUEST_CODES_LENGTH[EOS]) | REQUEST_CODES[EOS]
            count += REQUEST_CODES_LENGTH[EOS]
        bits = (bits << REQUEST_CODES_LENGTH[byte]) | REQUEST_CODES[byte]
        count += REQUEST_CODES_LENGTH[byte]
    return bits, count


def huffman(
    data: bytes, *, pad_bit: int = 1, extra_octets: int = 0, eos_after: int | None = None
) -> bytes:
    """A Huffman string literal, padded with ``pad_bit`` (RFC 7541 §5.2 wants ones)."""
    bits, count = huffman_bits(data, eos_after=eos_after)
    pad = -count % 8
    bits = (bits << pad) | (((1 << pad) - 1) if pad_bit else 0)
    octets = (count + pad) // 8
    encoded = bits.to_bytes(octets, "big") + b"\xff" * extra_octets
    return integer(len(encoded), 7, 0x80) + encoded


def string(data: bytes, *, coded: bool = False) -> bytes:
    """A string literal, raw or Huffman-coded."""
    return huffman(data) if coded else integer(len(data), 7) + data


def indexed(index: int) -> bytes:
    """An indexed field line (§6.1)."""
    return integer(index, 7, 0x80)


_LITERAL = {"incremental": (6, 0x40), "without": (4, 0x00), "never": (4, 0x10)}


def literal(kind: str, name: int | bytes, value: bytes, *, coded: bool = False) -> bytes:
    """A literal field line (§6.2): ``name`` is a table index or a new name."""
    prefix, flags = _LITERAL[kind]
    if isinstance(name, int):
        return integer(name, prefix, flags) + string(value, coded=coded)
    return integer(0, prefix, flags) + string(name, coded=coded) + string(value, coded=coded)


def size_update(size: int) -> bytes:
    """A dynamic table size update (§6.3)."""
    return integer(size, 5, 0x20)


BASE = indexed(2) + indexed(7) + indexed(4) + literal("without", 1, b"example.com")
"""GET https://example.com/ without touching the dynamic table."""


@pytest.fixture
def client() -> H2Client:
    """A client past the preface, whose backend answers every request with :data:`OK`."""
    client = H2Client()
    client.handshake()
    client.answers.extend([OK] * 8)
    return client


def forwarded(client: H2Client, block: bytes, stream_id: int = 1) -> list[Header]:
    """Send ``block`` as a request; return the fields the backend got."""
    client.send(client.factory.headers(stream_id, block))
    assert client.stream(stream_id).status == 200, client.logs()
    return client.backend.requests[-1].headers


# -- accepted representations ---------------------------------------------------------


def test_2_3_1_static_table_entry_is_decoded(client: H2Client) -> None:
    assert (b"accept-encoding", b"gzip, deflate") in forwarded(client, BASE + indexed(16))


@pytest.mark.parametrize("kind", ["incremental", "without", "never"])
@pytest.mark.parametrize("coded", [False, True], ids=["raw", "huffman"])
@pytest.mark.parametrize("name", [USER_AGENT, b"x-test"], ids=["indexed-name", "new-name"])
def test_6_2_literal_field_line_is_decoded(
    client: H2Client, kind: str, coded: bool, name: int | bytes
) -> None:
    block = BASE + literal(kind, name, b"sans-h2", coded=coded)
    expected = b"user-agent" if name == USER_AGENT else name
    assert (expected, b"sans-h2") in forwarded(client, block)


def test_6_2_1_incremental_indexing_adds_a_dynamic_table_entry(client: H2Client) -> None:
    forwarded(client, BASE + literal("incremental", b"x-test", b"first"))
    assert (b"x-test", b"first") in forwarded(client, BASE + indexed(FIRST_DYNAMIC), 3)


def test_6_2_2_literal_without_indexing_leaves_the_table_alone(client: H2Client) -> None:
    forwarded(client, BASE + literal("incremental", b"x-old", b"kept"))
    forwarded(client, BASE + literal("without", b"x-test", b"not kept"), 3)
    assert (b"x-old", b"kept") in forwarded(client, BASE + indexed(FIRST_DYNAMIC), 5)


def test_2_3_3_newest_dynamic_entry_has_the_lowest_index(client: H2Client) -> None:
    block = BASE + literal("incremental", b"x-a", b"1") + literal("incremental", b"x-b", b"2")
    forwarded(client, block)
    fields = forwarded(client, BASE + indexed(FIRST_DYNAMIC) + indexed(FIRST_DYNAMIC + 1), 3)
    assert [f for f in fields if f[0].startswith(b"x-")] == [(b"x-b", b"2"), (b"x-a", b"1")]


def test_6_3_dynamic_table_size_update_is_accepted(client: H2Client) -> None:
    assert (b"host", b"example.com") in forwarded(client, size_update(0) + BASE)


def test_4_2_two_size_updates_at_the_start_of_a_block_are_accepted(client: H2Client) -> None:
    forwarded(client, size_update(0) + size_update(4096) + BASE)


def test_4_3_entry_larger_than_the_table_empties_it(client: H2Client) -> None:
    forwarded(client, BASE + literal("incremental", b"x-small", b"1"))
    forwarded(client, BASE + literal("incremental", b"x-huge", b"x" * 4096), 3)
    client.send(client.factory.headers(5, BASE + indexed(FIRST_DYNAMIC)))  # nothing there now
    client.connection_error((ErrorCode.COMPRESSION_ERROR, ErrorCode.PROTOCOL_ERROR))


# -- decoding errors ------------------------------------------------------------------


def test_2_3_3_index_beyond_both_tables_is_a_decoding_error(client: H2Client) -> None:
    client.send(client.factory.headers(1, BASE + indexed(FIRST_DYNAMIC)))  # the table is empty
    client.connection_error(ErrorCode.COMPRESSION_ERROR)


def test_6_1_index_0_is_a_decoding_error(client: H2Client) -> None:
    client.send(client.factory.headers(1, BASE + indexed(0)))
    client.connection_error(ErrorCode.COMPRESSION_ERROR)


def test_4_2_size_update_after_a_field_line_is_a_decoding_error(client: H2Client) -> None:
    client.send(client.factory.headers(1, BASE + size_update(1)))
    client.connection_error(ErrorCode.COMPRESSION_ERROR)


def test_6_3_size_update_above_settings_header_table_size_is_a_decoding_error(
    client: H2Client,
) -> None:
    limit = client.settings_sent()[Setting.HEADER_TABLE_SIZE]
    client.send(client.factory.headers(1, size_update(limit + 1) + BASE))
    client.connection_error(ErrorCode.COMPRESSION_ERROR)


def test_5_2_huffman_padding_longer_than_7_bits_is_a_decoding_error(client: H2Client) -> None:
    bad = integer(0, 4) + string(b"x-test") + huffman(b"test", extra_octets=1)
    client.send(client.factory.headers(1, BASE + bad))
    client.connection_error(ErrorCode.COMPRESSION_ERROR)


def test_5_2_huffman_padding_that_is_not_eos_is_a_decoding_error(client: H2Client) -> None:
    assert huffman_bits(b"test")[1] % 8  # there are padding bits to get wrong
    bad = integer(0, 4) + string(b"x-test") + huffman(b"test", pad_bit=0)
    client.send(client.factory.headers(1, BASE + bad))
    client.connection_error(ErrorCode.COMPRESSION_ERROR)


def test_5_2_huffman_string_containing_eos_is_a_decoding_error(client: H2Client) -> None:
    bad = integer(0, 4) + string(b"x-test") + huffman(b"test", eos_after=2)
    client.send(client.factory.headers(1, BASE + bad))
    client.connection_error(ErrorCode.COMPRESSION_ERROR)


def test_5_2_string_longer_than_the_block_is_a_decoding_error(client: H2Client) -> None:
    bad = integer(0, 4) + string(b"x-test") + integer(100, 7) + b"short"
    client.send(client.factory.headers(1, BASE + bad))
    client.connection_error(ErrorCode.COMPRESSION_ERROR)


# -- the proxy's own encoder ----------------------------------------------------------


def test_4_2_proxy_encoder_follows_the_clients_smaller_table_size(client: H2Client) -> None:
    client.send(client.factory.settings({Setting.HEADER_TABLE_SIZE: 0}))
    client.decoder.max_allowed_table_size = 0  # a larger update would make decoding fail
    client.send(client.factory.headers(1, BASE))
    response = next(f for f in client.frames if isinstance(f, HeadersFrame) and f.stream_id == 1)
    assert response.data[:1] == size_update(0)  # signalled at the start of the next block
    assert client.stream(1).status == 200
