"""Backend responses whose Transfer-Encoding does not end in chunked (RFC 9112 §6.3 item 3).

Their body runs to the close of the connection; h11 cannot frame them, so the
client codec rewrites the head before h11 parses it. Checked at the codec, and
through the proxy on the simulated network.
"""

from __future__ import annotations

import pytest

from sansproxy._codec import Body, EndOfMessage, PeerClosed, ResponseHead
from sansproxy._codec._h1response import ResponseHeads
from sansproxy._codec.http1 import ClientCodec
from tests.simnet import SimNet, simple_config


def _events(codec: ClientCodec) -> list[object]:
    out = []
    while (event := codec.next_event()) is not None and not isinstance(event, PeerClosed):
        out.append(event)
    return out


def _codec_with_request() -> ClientCodec:
    codec = ClientCodec()
    codec.send_request(b"GET", b"/", [(b"host", b"x")], body_length=0, has_body=False)
    codec.send_end([])
    return codec


@pytest.mark.parametrize("pieces", [1, 3, 200])
def test_an_unknown_final_coding_makes_the_body_run_to_the_close(pieces: int) -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: ARIZQHYPGXOFWNE\r\nContent-Length: 3\r\n"
        b"X-A: 1\r\n\r\nbody that is longer than three bytes"
    )
    codec = _codec_with_request()
    size = -(-len(raw) // pieces)
    events: list[object] = []
    for start in range(0, len(raw), size):
        codec.receive(raw[start : start + size])
        events.extend(_events(codec))
    codec.receive(b"")
    events.extend(_events(codec))
    head = events[0]
    assert isinstance(head, ResponseHead)
    assert head.headers == [(b"x-a", b"1")]
    body = b"".join(e.data for e in events if isinstance(e, Body))
    assert body == b"body that is longer than three bytes"
    assert isinstance(events[-1], EndOfMessage)
    assert not codec.start_next_cycle()  # never reused


def test_chunked_and_interim_heads_pass_byte_for_byte() -> None:
    heads = ResponseHeads(16384)
    interim = b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
    final = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"
    assert heads.feed(interim + final) == interim + final
    assert heads.done
    assert not heads.rewrote


def test_the_final_head_after_an_interim_one_is_reframed() -> None:
    heads = ResponseHeads(16384)
    interim = b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
    final = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxyz"
    assert heads.feed(interim + final) == interim + b"HTTP/1.1 200 OK\r\n\r\nxyz"
    assert heads.rewrote


def test_a_folded_head_is_left_for_h11_to_refuse() -> None:
    heads = ResponseHeads(16384)
    raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n x\r\n\r\n"
    assert heads.feed(raw) == raw
    assert not heads.rewrote


def test_a_head_too_long_goes_to_h11_whole() -> None:
    heads = ResponseHeads(10)
    assert heads.feed(b"HTTP/1.1 200 OK\r\nX") == b"HTTP/1.1 200 OK\r\nX"
    assert heads.done


def test_through_the_proxy_the_client_gets_the_body_and_no_transfer_coding() -> None:
    net = SimNet(simple_config())
    backend = net.add_backend("10.0.0.1", 80)
    backend.raw_reply = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: foo\r\n\r\nhello"
    backend.raw_close = True
    client = net.client()
    client.request("GET", "/")
    net.run()
    (response,) = client.responses
    assert response.complete
    assert response.status == 200
    assert response.body == b"hello"
    assert all(
        name != b"transfer-encoding" or value == b"chunked" for name, value in response.headers
    )
