"""Response compression through the real proxy, with real clients: curl and httpx.

Every test runs on each adapter, over HTTP/1.1 and HTTP/2 (TLS with ALPN, and
cleartext with prior knowledge). The backend sends JSON text and a server-sent
events stream; the clients decode what they get, so a wrong coding, a broken stream
or a wrong head shows as a decoding failure or a wrong body.
"""

from __future__ import annotations

import httpx
import pytest
from backend import Backend, json_text
from conftest import TlsFiles
from test_http2 import H2Proxy, Start, h2_client, run_curl, start_h2_proxy

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

SIZE = 100_000
KINDS = ["http/1.1", "h2-tls", "h2c"]


@pytest.fixture
def proxy(start_proxy: Start, backend: Backend, tls_files: TlsFiles) -> H2Proxy:
    return start_h2_proxy(start_proxy, tls_files, backend.url, compression={"enabled": True})


def client(proxy: H2Proxy, kind: str) -> httpx.Client:
    if kind == "http/1.1":
        return httpx.Client(base_url=proxy.h2c_url, timeout=20)
    return h2_client(proxy, "tls" if kind == "h2-tls" else "h2c")


@pytest.mark.parametrize("kind", KINDS)
def test_curl_compressed_gets_zstd_and_decodes_it(proxy: H2Proxy, curl: str, kind: str) -> None:
    flags = {
        "http/1.1": ["--http1.1", proxy.h2c_url],
        "h2-tls": ["--http2", "--cacert", str(proxy.tls.ca_file), proxy.tls_url],
        "h2c": ["--http2-prior-knowledge", proxy.h2c_url],
    }[kind]
    *options, base = flags
    result = run_curl(
        curl,
        "--compressed",  # curl offers deflate, gzip, br and zstd where it was built with them
        "-D",
        "-",
        "-w",
        "\n%{size_download}",
        *options,
        f"{base}/text?n={SIZE}",
    )
    assert result.returncode == 0, result.stderr
    output, _, downloaded = result.stdout.rpartition(b"\n")
    head, _, body = output.partition(b"\r\n\r\n")
    fields = head.lower()
    assert b"content-encoding: zstd" in fields
    assert b"vary: accept-encoding" in fields
    assert b"content-length" not in fields
    assert body == json_text(SIZE)  # curl decoded it
    assert int(downloaded) < SIZE // 5


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("coding", ["gzip", "br", "zstd"])  # deflate is offered only when asked
@pytest.mark.parametrize("chunked", ["0", "1"])
def test_httpx_decodes_every_coding(proxy: H2Proxy, kind: str, coding: str, chunked: str) -> None:
    with client(proxy, kind) as http:
        response = http.get(
            f"/text?n={SIZE}&chunked={chunked}", headers={"accept-encoding": coding}
        )
    assert response.status_code == 200
    assert response.http_version == ("HTTP/1.1" if kind == "http/1.1" else "HTTP/2")
    assert response.headers["content-encoding"] == coding
    assert response.content == json_text(SIZE)
    assert response.num_bytes_downloaded < SIZE // 4


@pytest.mark.parametrize("kind", KINDS)
def test_small_and_unaccepted_responses_go_as_they_are(proxy: H2Proxy, kind: str) -> None:
    with client(proxy, kind) as http:
        small = http.get("/text?n=100", headers={"accept-encoding": "gzip"})
        unaccepted = http.get(f"/text?n={SIZE}", headers={"accept-encoding": "identity"})
        binary = http.get("/bytes?n=100000", headers={"accept-encoding": "gzip"})
    for response, size in ((small, 100), (unaccepted, SIZE), (binary, 100_000)):
        assert "content-encoding" not in response.headers
        assert response.headers["content-length"] == str(size)


@pytest.mark.parametrize("kind", KINDS)
def test_server_sent_events_arrive_one_by_one(proxy: H2Proxy, backend: Backend, kind: str) -> None:
    # The backend sends each event only once the client has read the one before: an
    # encoder that kept an event for later would stall the stream until it timed out.
    seen: list[str] = []
    with (
        client(proxy, kind) as http,
        http.stream("GET", "/events?count=4", headers={"accept-encoding": "gzip"}) as response,
    ):
        assert response.headers["content-encoding"] == "gzip"
        assert response.headers["content-type"] == "text/event-stream"
        for line in response.iter_lines():
            if line.startswith("data: "):
                seen.append(line)
                backend.next_event.release()
    assert seen == [f"data: event {n}" for n in range(4)]
    assert "events-unseen" not in backend.progress
