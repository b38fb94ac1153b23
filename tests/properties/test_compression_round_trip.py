"""Whatever the body and however the backend cuts it, the client decodes the backend's bytes.

Through the whole proxy on the simulated network, for every coding and every client
protocol (HTTP/1.1, HTTP/2 over TLS, h2c), with and without a Content-Length (a
response of unknown length is flushed piece by piece), with the client's reads cut
at random too.
"""

from __future__ import annotations

import dataclasses
import gzip
import itertools
import zlib

import brotli
import h11
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from sansproxy.config import Compression
from tests.simnet import PROTOCOLS, Reply, SimNet, cycling, protocol_config

DECODE = {
    "gzip": gzip.decompress,
    "deflate": zlib.decompress,
    "br": brotli.decompress,
    "zstd": lambda data: zstandard.ZstdDecompressor().decompressobj().decompress(data),
}

_text = st.binary(max_size=3000) | st.text(max_size=2000).map(str.encode)


@settings(max_examples=80, deadline=None)
@given(
    body=_text,
    cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=6),
    coding=st.sampled_from(sorted(DECODE)),
    protocol=st.sampled_from(PROTOCOLS),
    with_length=st.booleans(),
    read_sizes=st.lists(st.integers(min_value=1, max_value=700), min_size=1, max_size=4),
)
def test_the_client_decodes_exactly_the_backends_bytes(
    *,
    body: bytes,
    cuts: list[int],
    coding: str,
    protocol: str,
    with_length: bool,
    read_sizes: list[int],
) -> None:
    config = protocol_config(protocol)  # type: ignore[arg-type]
    compression = Compression(enabled=True, encodings=(coding,), min_size=0, types=("text/*",))
    net = SimNet(dataclasses.replace(config, compression=compression))
    points = sorted({min(cut, len(body)) for cut in cuts} | {0, len(body)})
    pieces = [body[a:b] for a, b in itertools.pairwise(points) if b > a]

    def handle(request: h11.Request, request_body: bytes) -> Reply:
        head: list[tuple[bytes | str, bytes | str]] = [("content-type", "text/plain")]
        if with_length:
            head.append(("content-length", str(len(body))))
        return 200, head, pieces

    net.add_backend("10.0.0.1", 80, handle)
    client = net.connect(protocol, chunker=cycling(read_sizes))  # type: ignore[arg-type]
    client.request("GET", "/", [("accept-encoding", coding)])
    net.run()
    (response,) = client.responses
    assert response.complete
    assert response.header(b"content-encoding") == coding.encode()
    assert DECODE[coding](response.body) == body
    assert not net.violations
