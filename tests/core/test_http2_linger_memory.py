"""A closing HTTP/2 connection keeps nothing of its input while it lingers.

After a connection error the proxy sends GOAWAY and keeps reading (dropping what comes)
until the client goes or ``client_linger`` passes. A CONTINUATION flood leaves up to 64
frames in h2's header buffer; a lingering connection lets go of it, so that a stream of
abusive connections costs the proxy no more than their count.
"""

from __future__ import annotations

from hyperframe.frame import ContinuationFrame, HeadersFrame

from sansproxy._codec.http2 import ServerCodec
from sansproxy.config import Http2Settings


def _codec() -> ServerCodec:
    settings = Http2Settings()
    return ServerCodec(
        max_concurrent_streams=settings.max_concurrent_streams,
        initial_window_size=settings.initial_window_size,
        connection_window_size=settings.connection_window_size,
        max_frame_size=settings.max_frame_size,
        max_header_list_size=16384,
        header_table_size=settings.header_table_size,
        output_cap=1 << 20,
    )


def _unfinished_block() -> bytes:
    headers = HeadersFrame(1)
    headers.data = b"\x82"  # :method GET (HPACK static table), more to come
    return headers.serialize() + b"".join(
        ContinuationFrame(1, data=b"\x00" * 1024).serialize() for _ in range(40)
    )


def test_stop_reading_lets_go_of_an_unfinished_header_block() -> None:
    codec = _codec()
    codec.receive(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
    codec.receive(_unfinished_block())
    buffer = codec._conn.incoming_buffer
    assert len(buffer._headers_buffer) == 41  # h2 holds the block until END_HEADERS
    codec.stop_reading()
    assert not codec._conn.incoming_buffer._headers_buffer
    codec.receive(_unfinished_block())  # what comes now is dropped
    assert not codec._conn.incoming_buffer._headers_buffer
    assert codec.next_event() is None
    codec.written(10)  # the adapter still reports what it wrote
