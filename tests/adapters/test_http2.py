"""HTTP/2 to clients through the real proxy, with real clients: curl, httpx, h2load.

Every test runs on each adapter. One proxy per test listens twice: on TLS, where ALPN
offers ``h2`` then ``http/1.1``, and in cleartext with ``protocols = ["h2c", "http/1.1"]``,
where a client with prior knowledge speaks HTTP/2 and everyone else HTTP/1.1. The
backends speak HTTP/1.1 only: what they saw shows what the proxy made of each stream.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from backend import Backend, pattern, pattern_pieces, pattern_sha256
from conftest import RunningProxy, TlsFiles, proxy_config
from h2peer import REFUSED_STREAM, FrameClient, H2WebSocket
from websockets.sync.server import Server, ServerConnection, serve

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

Start = Callable[..., RunningProxy]
MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class H2Proxy:
    """A proxy with a TLS listener (ALPN h2) and a cleartext h2c + HTTP/1.1 listener."""

    running: RunningProxy
    tls: TlsFiles
    tls_url: str
    h2c_url: str

    @property
    def tls_port(self) -> int:
        return int(self.tls_url.rsplit(":", 1)[1])

    @property
    def h2c_port(self) -> int:
        return int(self.h2c_url.rsplit(":", 1)[1])

    def url(self, kind: str) -> str:
        return self.tls_url if kind == "tls" else self.h2c_url

    def port(self, kind: str) -> int:
        return self.tls_port if kind == "tls" else self.h2c_port


def start_h2_proxy(
    start_proxy: Start, tls_files: TlsFiles, *servers: str, **sections: dict[str, Any]
) -> H2Proxy:
    config = proxy_config(
        *servers,
        listener={"certificate": str(tls_files.cert_file), "private_key": str(tls_files.key_file)},
        **sections,
    )
    config["listeners"].append(
        {"address": "127.0.0.1:0", "upstream": "app", "protocols": ["h2c", "http/1.1"]}
    )
    running = start_proxy(config)
    tls_url = next(url for url in running.urls if url.startswith("https:"))
    h2c_url = next(url for url in running.urls if url.startswith("http:"))
    return H2Proxy(running=running, tls=tls_files, tls_url=tls_url, h2c_url=h2c_url)


@pytest.fixture
def proxy(start_proxy: Start, backend: Backend, tls_files: TlsFiles) -> H2Proxy:
    return start_h2_proxy(start_proxy, tls_files, backend.url)


def h2_client(proxy: H2Proxy, kind: str, timeout: float = 20) -> httpx.Client:
    """httpx speaking HTTP/2 only: over TLS by ALPN, in cleartext with prior knowledge."""
    return httpx.Client(
        base_url=proxy.url(kind),
        verify=proxy.tls.client_context(),
        http1=False,
        http2=True,
        timeout=timeout,
    )


def run_curl(curl: str, *args: str, timeout: float = 15) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [curl, "-sS", "--max-time", str(timeout - 5), *args],
        capture_output=True,
        timeout=timeout,
        check=False,
    )


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


# -- curl ------------------------------------------------------------------------------


@pytest.mark.parametrize(("flag", "version"), [("--http2", "2"), ("--http1.1", "1.1")])
def test_curl_over_tls_gets_the_protocol_it_offers_in_alpn(
    proxy: H2Proxy, backend: Backend, curl: str, flag: str, version: str
) -> None:
    result = run_curl(
        curl,
        flag,
        "--cacert",
        str(proxy.tls.ca_file),
        "-w",
        "\n%{http_version}",
        proxy.tls_url + "/headers",
    )
    assert result.returncode == 0, result.stderr
    body, _, seen_version = result.stdout.rpartition(b"\n")
    assert seen_version.decode() == version
    document = json.loads(body)
    seen = dict(document["headers"])
    assert document["http_version"] == "1.1"
    assert seen["host"] == f"127.0.0.1:{proxy.tls_port}"
    assert seen["x-forwarded-proto"] == "https"


def test_curl_prior_knowledge_and_http11_share_the_h2c_listener(
    proxy: H2Proxy, backend: Backend, curl: str
) -> None:
    url = proxy.h2c_url + "/"
    h2 = run_curl(curl, "--http2-prior-knowledge", "-w", "%{http_version}", "-o", "/dev/null", url)
    h1 = run_curl(curl, "-w", "%{http_version}", "-o", "/dev/null", url)
    assert (h2.returncode, h2.stdout) == (0, b"2"), h2.stderr
    assert (h1.returncode, h1.stdout) == (0, b"1.1"), h1.stderr
    with httpx.Client(base_url=proxy.h2c_url, timeout=10) as http:
        response = http.get("/")
    assert (response.http_version, response.text) == ("HTTP/1.1", "backend a\n")


def test_h2c_upgrade_request_is_answered_in_http11(proxy: H2Proxy, curl: str) -> None:
    """``curl --http2`` on cleartext asks for ``Upgrade: h2c``; the proxy does not do that
    upgrade (RFC 9113 deprecates it), so the answer is an ordinary HTTP/1.1 response."""
    result = run_curl(curl, "--http2", "-w", "\n%{http_version}", proxy.h2c_url + "/headers")
    assert result.returncode == 0, result.stderr
    body, _, version = result.stdout.rpartition(b"\n")
    assert version == b"1.1"
    assert json.loads(body)["method"] == "GET"


def test_h2c_upgrade_offer_is_not_forwarded_to_the_backend(proxy: H2Proxy, curl: str) -> None:
    result = run_curl(curl, "--http2", proxy.h2c_url + "/headers")
    assert result.returncode == 0, result.stderr
    headers = dict(json.loads(result.stdout)["headers"])
    assert "http2-settings" not in headers
    assert headers.get("upgrade") != "h2c"


def test_access_log_says_http2(proxy: H2Proxy, curl: str) -> None:
    for url in (proxy.tls_url, proxy.h2c_url):
        result = run_curl(
            curl,
            "--http2-prior-knowledge" if url.startswith("http:") else "--http2",
            "--cacert",
            str(proxy.tls.ca_file),
            "-o",
            "/dev/null",
            url + "/logged",
        )
        assert result.returncode == 0, result.stderr
    run_curl(curl, "-o", "/dev/null", proxy.h2c_url + "/logged-h1")
    log = proxy.running.wait_for_stdout("/logged-h1 ")
    assert len(re.findall(r'"GET /logged HTTP/2\.0" 404 ', log)) == 2, log
    assert '"GET /logged-h1 HTTP/1.1" 404 ' in log


# -- httpx -----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["tls", "h2c"])
def test_httpx_concurrent_requests_multiplex_one_connection(
    proxy: H2Proxy, backend: Backend, kind: str
) -> None:
    count = 10

    async def main() -> list[httpx.Response]:
        async with httpx.AsyncClient(
            base_url=proxy.url(kind),
            verify=proxy.tls.client_context(),
            http1=False,
            http2=True,
            timeout=20,
            limits=httpx.Limits(max_connections=1),
        ) as http:
            responses = await asyncio.gather(
                *(http.get(f"/slow?delay=0.5&n={n}") for n in range(count))
            )
            for response in responses:
                stream = response.extensions["network_stream"]
                client_ports.add(stream.get_extra_info("client_addr"))
            return responses

    client_ports: set[tuple[str, int]] = set()
    responses = asyncio.run(main())
    assert {(r.status_code, r.http_version, r.text) for r in responses} == {
        (200, "HTTP/2", "slow done\n")
    }
    stream_ids = {r.extensions["stream_id"] for r in responses}
    assert len(stream_ids) == count
    assert len(client_ports) == 1
    # Each was in flight while the others were: none could reuse another's backend connection.
    assert len({r.headers["x-backend-conn"] for r in responses}) == count
    assert "x-powered-by" not in responses[0].headers


@pytest.mark.parametrize("kind", ["tls", "h2c"])
def test_httpx_post_bodies(proxy: H2Proxy, backend: Backend, kind: str) -> None:
    with h2_client(proxy, kind) as http:
        echoed = http.post("/echo", content=b"hello over h2", headers={"content-type": "text/x"})
        assert (echoed.http_version, echoed.status_code) == ("HTTP/2", 200)
        assert echoed.content == b"hello over h2"
        assert echoed.headers["content-type"] == "text/x"
        sized = http.post("/headers", content=b"x" * 70_000).json()
        streamed = http.post("/headers", content=iter([b"abc", b"defg"])).json()
    assert sized["method"] == "POST"
    assert dict(sized["headers"])["content-length"] == "70000"
    assert sized["body_sha256"] == hashlib.sha256(b"x" * 70_000).hexdigest()
    # No length given: the stream's DATA goes to the HTTP/1.1 backend chunked.
    assert dict(streamed["headers"]).get("transfer-encoding") == "chunked"
    assert (streamed["body_bytes"], streamed["body_sha256"]) == (
        7,
        hashlib.sha256(b"abcdefg").hexdigest(),
    )


@pytest.mark.timeout(60)
def test_httpx_large_download_and_upload_byte_for_byte(proxy: H2Proxy, backend: Backend) -> None:
    """8 MiB each way over TLS: many DATA frames, window updates both ways, backpressure."""
    size = 8 * MIB + 3
    with h2_client(proxy, "tls", timeout=40) as http:
        download = http.get(f"/bytes?n={size}&chunked=1")
        assert (download.http_version, download.status_code) == ("HTTP/2", 200)
        assert download.content == pattern(0, size)
        payload = pattern(7, size)
        upload = http.post("/echo", content=payload)
        assert upload.status_code == 200
        assert upload.content == payload
        streamed = http.post("/echo?digest=1", content=pattern_pieces(size))
        assert streamed.json() == {"bytes": size, "sha256": pattern_sha256(size)}


@pytest.mark.parametrize("kind", ["tls", "h2c"])
def test_response_trailers_reach_the_http2_client(
    proxy: H2Proxy, tls_files: TlsFiles, kind: str
) -> None:
    tls = tls_files.client_context() if kind == "tls" else None
    with FrameClient(proxy.port(kind), tls=tls) as client:
        stream = client.request("/trailers", extra=[("te", "trailers")])
        assert client.wait_streams(stream)
        result = client.streams[stream]
    assert (result.status, result.ended, result.reset) == (200, True, None)
    body = pattern(0, 100_000)
    assert bytes(result.body) == body
    trailers = dict(result.trailers)
    assert trailers == {
        "x-body-sha256": hashlib.sha256(body).hexdigest(),
        "x-trailer-note": "end",
    }
    assert "transfer-encoding" not in dict(result.headers)


# -- h2load ----------------------------------------------------------------------------


@pytest.mark.timeout(90)
def test_h2load_many_concurrent_streams_all_succeed(proxy: H2Proxy, h2load: str) -> None:
    """2,000 requests, 4 connections, 50 streams each at a time, over TLS (ALPN h2)."""
    total = 2000
    result = subprocess.run(
        [h2load, "-n", str(total), "-c", "4", "-m", "50", proxy.tls_url + "/"],
        capture_output=True,
        timeout=60,
        check=False,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"requests: {total} total, {total} started, {total} done, {total} succeeded" in (
        result.stdout
    ), result.stdout
    assert f"status codes: {total} 2xx, 0 3xx, 0 4xx, 0 5xx" in result.stdout, result.stdout
    assert "Application protocol: h2" in result.stdout, result.stdout


# -- WebSocket over HTTP/2 (RFC 8441) ----------------------------------------------------


@pytest.fixture
def websocket_backend() -> Iterator[Server]:
    """An echo server of the ``websockets`` package (HTTP/1.1 Upgrade, as backends speak)."""

    def echo(ws: ServerConnection) -> None:
        for message in ws:
            ws.send(message)

    with serve(echo, "127.0.0.1", 0) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield server
        server.shutdown()
        thread.join(5)


def test_websocket_over_http2_to_a_websockets_backend(
    start_proxy: Start, tls_files: TlsFiles, websocket_backend: Server
) -> None:
    port = websocket_backend.socket.getsockname()[1]
    proxy = start_h2_proxy(start_proxy, tls_files, f"http://127.0.0.1:{port}")
    with H2WebSocket(proxy.h2c_port, "/chat") as ws:
        assert ws.status == 200
        names = {name for name, _ in ws.response_headers}
        assert not names & {b"upgrade", b"connection", b"sec-websocket-accept"}
        for i in range(5):
            ws.send(f"message {i}")
            assert ws.receive() == f"message {i}"
        ws.send(b"\x00\x01binary\xff")
        assert ws.receive() == b"\x00\x01binary\xff"
        big = pattern(0, 300_000)  # several DATA frames and window updates each way
        ws.send(big)
        assert ws.receive() == big
        ws.close()
        assert ws.close_code == 1000
        assert ws.stream_ended


def test_websocket_over_http2_tls_becomes_an_http11_upgrade(
    proxy: H2Proxy, backend: Backend, tls_files: TlsFiles
) -> None:
    with H2WebSocket(proxy.tls_port, "/ws", tls=tls_files.client_context()) as ws:
        assert ws.status == 200
        ws.send("over h2 and tls")
        assert ws.receive() == "over h2 and tls"
        ws.close()
    (upgrade,) = backend.requests_to("/ws")
    assert (upgrade.method, upgrade.http_version) == ("GET", "1.1")
    assert upgrade.header("upgrade") == ["websocket"]
    assert upgrade.header("sec-websocket-version") == ["13"]
    assert len(upgrade.header("sec-websocket-key")) == 1
    assert upgrade.header("x-forwarded-proto") == ["https"]


# -- graceful shutdown -------------------------------------------------------------------


def test_sigterm_sends_goaway_finishes_streams_in_flight_and_refuses_new_ones(
    start_proxy: Start, backend: Backend, tls_files: TlsFiles
) -> None:
    proxy = start_h2_proxy(start_proxy, tls_files, backend.url, timeouts={"drain": 10})
    with FrameClient(proxy.h2c_port) as client:
        streams = [client.request(f"/slow?delay=1.5&n={n}") for n in range(3)]
        assert wait_until(lambda: len(backend.requests_to("/slow")) == 3, 10)
        proxy.running.send_sigterm()
        assert client.read_until(lambda: client.goaway is not None, 5)
        goaway = client.goaway
        assert goaway is not None
        assert (goaway.error_code, goaway.last_stream_id) == (0, streams[-1])
        late = client.request("/")  # after the GOAWAY: must not be served
        assert client.wait_streams(*streams, late, timeout=10)
        for stream in streams:
            result = client.streams[stream]
            assert (result.status, bytes(result.body), result.ended) == (200, b"slow done\n", True)
        assert client.streams[late].reset == REFUSED_STREAM
        assert client.read_to_close(5)
    assert proxy.running.wait_exit(10) == 0
    assert len(backend.requests_to("/")) == 0


def test_sigterm_lets_curl_finish_its_http2_request(
    start_proxy: Start, backend: Backend, tls_files: TlsFiles, curl: str
) -> None:
    """curl (nghttp2) gets the GOAWAY over TLS and still reads its response to the end."""
    proxy = start_h2_proxy(start_proxy, tls_files, backend.url, timeouts={"drain": 10})
    backend.request_seen.clear()
    with subprocess.Popen(
        [
            curl,
            "-sS",
            "--max-time",
            "15",
            "--http2",
            "--cacert",
            str(tls_files.ca_file),
            "-w",
            "\n%{http_version}",
            proxy.tls_url + "/slow?delay=1.5",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as curl_process:
        assert backend.request_seen.wait(10)
        proxy.running.send_sigterm()
        out, err = curl_process.communicate(timeout=20)
    assert curl_process.returncode == 0, err
    assert out == b"slow done\n\n2"
    assert proxy.running.wait_exit(10) == 0
