"""Response compression on the simulated network, over every client protocol.

The rules themselves have their own tests (``tests/core/test_compression_*``); these
check that the response stage applies them to real exchanges: the head is rewritten,
the body decodes to what the backend sent whatever its pieces, responses that must not
be compressed are left alone, and the counters add up.
"""

from __future__ import annotations

import dataclasses
import gzip
import zlib

import brotli
import pytest
import zstandard

from sansproxy.config import Compression, ProxyConfig, parse_config
from tests.simnet import PROTOCOLS, ClientProtocol, Handler, SimNet, protocol_config

every_protocol = pytest.mark.parametrize("protocol", PROTOCOLS)

JSON = b'{"items": [' + b", ".join(b'{"id": %d, "name": "item"}' % i for i in range(200)) + b"]}"

DECODE = {
    "gzip": gzip.decompress,
    "deflate": zlib.decompress,
    "br": brotli.decompress,
    "zstd": lambda data: zstandard.ZstdDecompressor().decompressobj().decompress(data),
}


def compressing(protocol: ClientProtocol, **settings: object) -> ProxyConfig:
    config = protocol_config(protocol)
    compression = dataclasses.replace(Compression(enabled=True), **settings)  # type: ignore[arg-type]
    return dataclasses.replace(config, compression=compression)


def backend(
    body: bytes = JSON,
    *,
    pieces: int = 1,
    length: bool = True,
    status: int = 200,
    headers: tuple[tuple[str, str], ...] = (("content-type", "application/json"),),
) -> Handler:
    def handle(
        request: object, request_body: bytes
    ) -> tuple[int, list[tuple[str, str]], list[bytes]]:
        head = list(headers)
        if length:
            head.append(("content-length", str(len(body))))
        size = -(-len(body) // pieces) if body else 1
        return status, head, [body[i : i + size] for i in range(0, len(body), size)]

    return handle  # type: ignore[return-value]


def fetch(
    net: SimNet,
    protocol: ClientProtocol,
    *,
    method: str = "GET",
    accept: str | None = "gzip",
    headers: tuple[tuple[str, str], ...] = (),
):  # type: ignore[no-untyped-def]
    client = net.connect(protocol)
    sent = list(headers) + ([("accept-encoding", accept)] if accept is not None else [])
    client.request(method, "/data", sent)
    net.run()
    (response,) = client.responses
    assert response.complete
    return response


@every_protocol
@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "zstd"])
@pytest.mark.parametrize("pieces", [1, 7])
def test_body_is_encoded_and_decodes_to_the_backends(
    protocol: ClientProtocol, coding: str, pieces: int
) -> None:
    net = SimNet(compressing(protocol, encodings=(coding,)))
    net.add_backend(
        "10.0.0.1",
        80,
        backend(
            pieces=pieces,
            headers=(
                ("content-type", "application/json"),
                ("etag", '"v1"'),
                ("vary", "Cookie"),
            ),
        ),
    )
    response = fetch(net, protocol, accept=f"{coding}, identity;q=0.5")
    assert response.status == 200
    assert response.header(b"content-encoding") == coding.encode()
    assert response.header(b"content-length") is None  # chunked, or HTTP/2 DATA frames
    assert response.header(b"etag") == b'W/"v1"'  # RFC 9110 §8.8.1: no longer byte-identical
    assert response.header(b"vary") == b"Cookie, Accept-Encoding"
    assert len(response.body) < len(JSON) // 3
    assert DECODE[coding](response.body) == JSON
    count = net.proxy.compression_statistics()[coding]
    assert (count.responses, count.bytes_in, count.bytes_out) == (1, len(JSON), len(response.body))
    (record,) = net.access_logs
    assert record.response_bytes == len(response.body)  # what went to the client


@every_protocol
def test_unknown_length_is_encoded_piece_by_piece(protocol: ClientProtocol) -> None:
    net = SimNet(compressing(protocol, encodings=("gzip",)))
    net.add_backend(
        "10.0.0.1",
        80,
        backend(pieces=5, length=False, headers=(("content-type", "text/event-stream"),)),
    )
    response = fetch(net, protocol)
    assert response.header(b"content-encoding") == b"gzip"
    assert gzip.decompress(response.body) == JSON


def test_default_preference_is_zstd_then_br_then_gzip() -> None:
    net = SimNet(compressing("http/1.1"))
    net.add_backend("10.0.0.1", 80, backend())
    assert fetch(net, "http/1.1", accept="gzip, br, zstd").header(b"content-encoding") == b"zstd"
    assert fetch(net, "http/1.1", accept="gzip, br").header(b"content-encoding") == b"br"
    # The client's weights come first (RFC 9110 §12.5.3).
    response = fetch(net, "http/1.1", accept="zstd;q=0.5, gzip")
    assert response.header(b"content-encoding") == b"gzip"


@pytest.mark.parametrize(
    ("handler", "method", "accept", "request_headers"),
    [
        pytest.param(backend(), "GET", None, (), id="no-accept-encoding"),
        pytest.param(backend(), "GET", "identity", (), id="identity-only"),
        pytest.param(backend(), "GET", "gzip;q=0, br;q=0, zstd;q=0", (), id="all-refused"),
        pytest.param(backend(), "HEAD", "gzip", (), id="head"),
        pytest.param(backend(), "GET", "gzip", (("range", "bytes=0-9"),), id="range-request"),
        pytest.param(backend(b"tiny"), "GET", "gzip", (), id="below-min-size"),
        pytest.param(
            backend(headers=(("content-type", "image/png"),)), "GET", "gzip", (), id="png"
        ),
        pytest.param(backend(headers=()), "GET", "gzip", (), id="no-content-type"),
        pytest.param(
            backend(headers=(("content-type", "text/html"), ("cache-control", "no-transform"))),
            "GET",
            "gzip",
            (),
            id="no-transform",
        ),
        pytest.param(
            backend(headers=(("content-type", "text/html"), ("content-encoding", "br"))),
            "GET",
            "gzip",
            (),
            id="already-encoded",
        ),
        pytest.param(backend(status=206), "GET", "gzip", (), id="206"),
    ],
)
def test_responses_that_are_left_alone(
    handler: Handler, method: str, accept: str | None, request_headers: tuple[tuple[str, str], ...]
) -> None:
    net = SimNet(compressing("http/1.1"))
    origin = net.add_backend("10.0.0.1", 80, handler)
    response = fetch(net, "http/1.1", method=method, accept=accept, headers=request_headers)
    encoding = response.header(b"content-encoding")
    assert encoding in (None, b"br")  # the backend's own, in the already-encoded case
    assert response.header(b"vary") is None
    expected = b"" if method == "HEAD" else None
    if expected is None:
        assert response.header(b"content-length") == str(len(response.body)).encode()
    # What the client asked for still reaches the backend unchanged.
    assert origin.requests[0].header(b"accept-encoding") == (
        accept.encode() if accept is not None else None
    )
    assert net.proxy.compression_statistics() == {}


def test_off_by_default_and_per_route() -> None:
    net = SimNet(protocol_config("http/1.1"))
    net.add_backend("10.0.0.1", 80, backend())
    assert fetch(net, "http/1.1").header(b"content-encoding") is None

    config = parse_config(
        """
        [[listeners]]
        address = "127.0.0.1:8080"
        upstream = "app"
        [upstreams.app]
        servers = ["http://10.0.0.1:80"]
        [compression]
        enabled = true
        [[routes]]
        path_prefix = "/archive/"
        upstream = "app"
        compression = { enabled = false }
        [[routes]]
        path_prefix = "/gzip-only/"
        upstream = "app"
        compression = { encodings = ["gzip"] }
        """
    )
    net = SimNet(config)
    net.add_backend("10.0.0.1", 80, backend())
    client = net.client()
    for path in ("/archive/a", "/gzip-only/a", "/other"):
        client.request("GET", path, [("accept-encoding", "zstd, gzip")])
        net.run()
    codings = [r.header(b"content-encoding") for r in client.responses]
    assert codings == [None, b"gzip", b"zstd"]  # the listener's own upstream: the global table
