"""Failures, limits and load through the real proxy.

Backends that are missing, slow or die mid-response; big bodies with bounded
memory; slow clients (backpressure); connection limits; client timeouts;
graceful shutdown on SIGTERM.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import h11
import httpx
import pytest
from backend import (
    RAW_RESPONSES,
    Backend,
    RawClient,
    assert_clean_error_body,
    pattern,
    pattern_pieces,
    pattern_sha256,
)
from conftest import RunningProxy, proxy_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

Start = Callable[..., RunningProxy]
MIB = 1024 * 1024
BIG = 64 * MIB
RSS_LIMIT_KIB = 100 * 1024


@pytest.fixture
def proxy(start_proxy: Start, backend: Backend) -> RunningProxy:
    return start_proxy(proxy_config(backend.url))


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


def in_thread(function: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    """Run ``function`` in a daemon thread; the dict gets ``result`` or ``error``."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = function()
        except Exception as error:  # noqa: BLE001 - the test judges it
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


# -- backends that fail ------------------------------------------------------------


def test_no_backend_listening_gets_502(start_proxy: Start, closed_port: int) -> None:
    proxy = start_proxy(proxy_config(f"http://127.0.0.1:{closed_port}"))
    with httpx.Client(base_url=proxy.url, timeout=15) as http:
        response = http.get("/")
        assert response.status_code == 502
        assert_clean_error_body(response.content, closed_port)
        assert "x-powered-by" not in response.headers
        # The proxy keeps serving (and keeps answering 502) after the failure.
        assert http.get("/again").status_code == 502


def test_backend_slower_than_upstream_header_timeout_gets_504(
    start_proxy: Start, backend: Backend
) -> None:
    proxy = start_proxy(proxy_config(backend.url, timeouts={"upstream_header": 0.5}))
    with httpx.Client(base_url=proxy.url, timeout=15) as http:
        response = http.get("/slow?delay=3")
        assert response.status_code == 504
        assert_clean_error_body(response.content, backend.port)
        assert len(backend.requests_to("/slow")) == 1
        assert http.get("/").text == "backend a\n"


def test_connect_failure_fails_over_to_next_server(
    start_proxy: Start, backend: Backend, closed_port: int
) -> None:
    """A failed connect is always safe to retry: the request goes to the live server."""
    proxy = start_proxy(proxy_config(f"http://127.0.0.1:{closed_port}", backend.url))
    with httpx.Client(base_url=proxy.url, timeout=15) as http:
        statuses = [http.get(f"/?i={i}").status_code for i in range(6)]
    assert statuses == [200] * 6


def test_round_robin_uses_every_server(
    start_proxy: Start, backend: Backend, backend_b: Backend
) -> None:
    proxy = start_proxy(proxy_config(backend.url, backend_b.url))
    with httpx.Client(base_url=proxy.url, timeout=10) as http:
        bodies = [http.get("/").text for _ in range(6)]
    assert set(bodies) == {"backend a\n", "backend b\n"}


def test_stale_pooled_connection_is_retried(proxy: RunningProxy, backend: Backend) -> None:
    """The backend silently closes after each response; idempotent requests must not fail."""
    with httpx.Client(base_url=proxy.url, timeout=10) as http:
        for i in range(20):
            response = http.get(f"/?close=1&i={i}")
            assert response.status_code == 200, (i, response.content)
            assert response.text == "backend a\n"


@pytest.mark.parametrize("after", [0, 1000, 300_000])
def test_backend_dies_mid_response_httpx(proxy: RunningProxy, after: int) -> None:
    def read_all(http: httpx.Client) -> None:
        with http.stream("GET", f"/die?after={after}") as response:
            assert response.status_code == 200
            for _ in response.iter_raw():
                pass

    with httpx.Client(base_url=proxy.url, timeout=10) as http:
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            read_all(http)
        assert http.get("/").text == "backend a\n"


@pytest.mark.parametrize("chunked", [0, 1])
@pytest.mark.parametrize("after", [0, 1000, 300_000])
def test_backend_dies_mid_response_raw(proxy: RunningProxy, after: int, chunked: int) -> None:
    """Never a complete-looking message: no final chunk, no matching length."""
    with RawClient(proxy.port) as raw:
        raw.send(raw.request_bytes("GET", f"/die?after={after}&chunked={chunked}"))
        with pytest.raises((h11.RemoteProtocolError, ConnectionResetError)):
            raw.read_response("GET")


def test_backend_dies_mid_response_curl(proxy: RunningProxy, curl: str) -> None:
    result = subprocess.run(
        [curl, "-sS", "--max-time", "20", "-o", "/dev/null", f"{proxy.url}/die?after=50000"],
        capture_output=True,
        timeout=25,
        check=False,
    )
    # 18: transfer closed with outstanding read data; 56: connection reset while receiving.
    assert result.returncode in (18, 56), (result.returncode, result.stderr)


HEAD_BROKEN = sorted(set(RAW_RESPONSES) - {"bad-chunk", "length-and-chunked"})


@pytest.mark.parametrize("case", HEAD_BROKEN)
def test_malformed_backend_response_head_gets_502(
    proxy: RunningProxy, backend: Backend, case: str
) -> None:
    with RawClient(proxy.port) as raw:
        response = raw.request("GET", f"/raw?case={case}")
    assert response.status == 502
    assert_clean_error_body(response.body, backend.port)


def test_malformed_backend_chunk_never_looks_complete(proxy: RunningProxy) -> None:
    with RawClient(proxy.port) as raw:
        raw.send(raw.request_bytes("GET", "/raw?case=bad-chunk"))
        try:
            response = raw.read_response("GET")
        except (h11.RemoteProtocolError, ConnectionResetError):
            return
    assert response.status == 502


def test_backend_response_with_length_and_chunked(proxy: RunningProxy) -> None:
    """RFC 9112 §6.3: refuse it (502), or forward it decoded as chunked without the length."""
    with RawClient(proxy.port) as raw:
        response = raw.request("GET", "/raw?case=length-and-chunked")
    if response.status != 502:
        assert response.status == 200
        assert response.body == b"hello"
        assert response.header("content-length") in ([], ["5"])


def test_backend_stalling_mid_body_is_cut_after_upstream_body(
    start_proxy: Start, backend: Backend
) -> None:
    proxy = start_proxy(proxy_config(backend.url, timeouts={"upstream_body": 1}))
    with httpx.Client(base_url=proxy.url, timeout=20) as http:
        with (
            pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)),
            http.stream("GET", "/stall?after=1000") as response,
        ):
            for _ in response.iter_raw():
                pass
        assert http.get("/").text == "backend a\n"


def test_idle_upstream_connection_expires(start_proxy: Start, backend: Backend) -> None:
    proxy = start_proxy(proxy_config(backend.url, timeouts={"upstream_keepalive": 0.5}))
    with httpx.Client(base_url=proxy.url, timeout=10) as http:
        assert http.get("/").headers["x-backend-conn"] == "1"
        assert wait_until(lambda: backend.connections_closed == 1, 10)
        assert http.get("/").headers["x-backend-conn"] == "2"


def test_proxy_serves_after_backend_died(proxy: RunningProxy) -> None:
    with RawClient(proxy.port) as raw:
        raw.send(raw.request_bytes("GET", "/die?after=1000"))
        with contextlib.suppress(h11.RemoteProtocolError, ConnectionResetError):
            raw.read_response("GET")
    with httpx.Client(base_url=proxy.url, timeout=10) as http:
        assert http.get("/").text == "backend a\n"


def test_client_abort_mid_upload_leaves_proxy_serving(
    proxy: RunningProxy, backend: Backend
) -> None:
    raw = RawClient(proxy.port)
    raw.send(raw.request_bytes("POST", "/echo?digest=1", [("Content-Length", str(4 * MIB))]))
    raw.send(pattern(0, 100_000))
    assert wait_until(lambda: len(backend.requests_to("/echo")) == 1, 5)
    raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    raw.close()
    with httpx.Client(base_url=proxy.url, timeout=10) as http:
        assert http.get("/").text == "backend a\n"
        response = http.post("/echo?digest=1", content=b"after")
        assert response.json()["bytes"] == 5


def test_client_leaves_mid_download_leaves_proxy_serving(proxy: RunningProxy) -> None:
    raw = RawClient(proxy.port)
    raw.send(raw.request_bytes("GET", f"/bytes?n={BIG}"))
    received = 0
    while received < MIB:
        received += len(raw.sock.recv(65536))
    raw.close()
    with httpx.Client(base_url=proxy.url, timeout=10) as http:
        assert http.get("/").text == "backend a\n"
    assert proxy.status_kib("VmHWM") < RSS_LIMIT_KIB


# -- big bodies, bounded memory -------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_large_upload_streams_with_bounded_memory(proxy: RunningProxy, framing: str) -> None:
    headers = {"Content-Length": str(BIG)} if framing == "content-length" else {}
    with httpx.Client(base_url=proxy.url, timeout=60) as http:
        request = http.build_request(
            "POST", "/echo?digest=1", content=pattern_pieces(BIG), headers=headers
        )
        if framing == "chunked":
            assert request.headers["transfer-encoding"] == "chunked"
        else:
            assert "transfer-encoding" not in request.headers
        response = http.send(request)
    assert response.status_code == 200
    assert response.json() == {"bytes": BIG, "sha256": pattern_sha256(BIG)}
    peak = proxy.status_kib("VmHWM")
    assert peak < RSS_LIMIT_KIB, f"proxy peak RSS {peak} KiB"


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("chunked", [0, 1])
def test_large_download_streams_with_bounded_memory(proxy: RunningProxy, chunked: int) -> None:
    digest = hashlib.sha256()
    count = 0
    with (
        httpx.Client(base_url=proxy.url, timeout=60) as http,
        http.stream("GET", f"/bytes?n={BIG}&chunked={chunked}") as response,
    ):
        assert response.status_code == 200
        if not chunked:
            assert response.headers["content-length"] == str(BIG)
        for piece in response.iter_raw():
            digest.update(piece)
            count += len(piece)
    assert count == BIG
    assert digest.hexdigest() == pattern_sha256(BIG)
    peak = proxy.status_kib("VmHWM")
    assert peak < RSS_LIMIT_KIB, f"proxy peak RSS {peak} KiB"


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_slow_client_backpressure(proxy: RunningProxy, backend: Backend) -> None:
    """A client that stops reading stalls the backend instead of filling the proxy's memory."""
    with RawClient(proxy.port, rcvbuf=64 * 1024, timeout=60) as raw:
        raw.send(raw.request_bytes("GET", f"/bytes?n={BIG}&tag=slow"))

        # Wait for the backend to stop making progress (bounded): buffers are full.
        history: list[int] = []

        def stalled() -> bool:
            history.append(backend.progress.get("slow", 0))
            return len(history) > 10 and history[-1] == history[-11] > 0

        assert wait_until(stalled, 20, interval=0.1), f"backend never stalled: {history[-5:]}"
        sent_while_stalled = history[-1]
        assert sent_while_stalled < 16 * MIB, f"backend sent {sent_while_stalled} bytes"
        assert proxy.status_kib("VmRSS") < RSS_LIMIT_KIB

        # Read a little, slowly, then everything; every byte arrives, in order.
        digest = hashlib.sha256()
        response = None
        head = b""
        while b"\r\n\r\n" not in head:
            head += raw.sock.recv(1024)
        for _ in range(20):
            time.sleep(0.02)
            head += raw.sock.recv(4096)
        raw.leftover = head
        response = raw.read_response("GET", sink=digest.update)
    assert response.status == 200
    assert response.body_bytes == BIG
    assert digest.hexdigest() == pattern_sha256(BIG)
    peak = proxy.status_kib("VmHWM")
    assert peak < RSS_LIMIT_KIB, f"proxy peak RSS {peak} KiB"


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_upload_backpressure_when_backend_does_not_read(
    proxy: RunningProxy, backend: Backend
) -> None:
    """The backend reads nothing for a while: the proxy stops reading the client."""
    produced = [0]

    def body() -> Any:
        for piece in pattern_pieces(BIG):
            produced[0] += len(piece)
            yield piece

    def upload() -> Any:
        with httpx.Client(base_url=proxy.url, timeout=60) as http:
            return http.post("/echo?digest=1&pause=3", content=body()).json()

    backend.request_seen.clear()
    thread, outcome = in_thread(upload)
    assert backend.request_seen.wait(10)
    history: list[int] = []

    def stalled() -> bool:
        history.append(produced[0])
        return len(history) > 10 and history[-1] == history[-11]

    assert wait_until(stalled, 2.5, interval=0.1), f"client never stalled: {history[-5:]}"
    assert produced[0] < 16 * MIB, f"the client got {produced[0]} bytes in"
    assert proxy.status_kib("VmRSS") < RSS_LIMIT_KIB
    thread.join(120)
    assert outcome == {"result": {"bytes": BIG, "sha256": pattern_sha256(BIG)}}
    peak = proxy.status_kib("VmHWM")
    assert peak < RSS_LIMIT_KIB, f"proxy peak RSS {peak} KiB"


@pytest.mark.timeout(120)
def test_pipelining_flood_without_reading_stays_bounded(
    proxy: RunningProxy, backend: Backend
) -> None:
    """Hundreds of pipelined requests and no reading: the proxy must not run ahead."""
    count = 500
    size = 100_000
    with RawClient(proxy.port, timeout=60, rcvbuf=32 * 1024) as raw:
        request = raw.request_bytes("GET", f"/bytes?n={size}")
        thread, outcome = in_thread(lambda: raw.sock.sendall(request * count))
        time.sleep(2)
        assert len(backend.requests) < count // 4, "the proxy forwarded far ahead of the client"
        assert proxy.status_kib("VmRSS") < RSS_LIMIT_KIB
        expected = pattern(0, size)
        for index in range(count):
            response = raw.read_response("GET")
            assert (index, response.status) == (index, 200)
            assert response.body == expected
        thread.join(10)
    assert "error" not in outcome
    assert proxy.status_kib("VmHWM") < RSS_LIMIT_KIB


# -- limits and client timeouts ---------------------------------------------------------


def test_client_connection_limit(start_proxy: Start, backend: Backend) -> None:
    proxy = start_proxy(proxy_config(backend.url, limits={"max_client_connections": 2}))
    first = RawClient(proxy.port)
    second = RawClient(proxy.port)
    try:
        assert first.request("GET", "/?conn=1").status == 200
        assert second.request("GET", "/?conn=2").status == 200
        with RawClient(proxy.port) as third:
            try:
                third.send(third.request_bytes("GET", "/?conn=3"))
                answer = third.read_to_eof()
            except (ConnectionResetError, BrokenPipeError):
                answer = b""
        assert answer == b"" or answer.startswith(b"HTTP/1.1 503 "), answer[:200]
        assert [r.target for r in backend.requests] == ["/?conn=1", "/?conn=2"]
        # Both held connections still work.
        assert first.request("GET", "/?conn=1b").status == 200
    finally:
        first.close()
        second.close()

    def fourth_served() -> bool:
        try:
            with RawClient(proxy.port, timeout=5) as fourth:
                return fourth.request("GET", "/?conn=4").status == 200
        except (OSError, h11.RemoteProtocolError):
            return False

    assert wait_until(fourth_served, 10, interval=0.2)


def test_client_header_timeout_closes_slowloris(start_proxy: Start, backend: Backend) -> None:
    proxy = start_proxy(proxy_config(backend.url, timeouts={"client_header": 1}))
    with RawClient(proxy.port, timeout=15) as raw:
        raw.send(b"GET / HTTP/1.1\r\nHost: x\r\n")
        answer = raw.read_to_eof()
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert backend.requests == []


def test_client_keepalive_timeout_closes_idle_connection(
    start_proxy: Start, backend: Backend
) -> None:
    proxy = start_proxy(proxy_config(backend.url, timeouts={"client_keepalive": 1}))
    with RawClient(proxy.port, timeout=15) as raw:
        assert raw.request("GET", "/").status == 200
        assert raw.is_closed_by_peer(15)


def test_client_body_timeout(start_proxy: Start, backend: Backend) -> None:
    proxy = start_proxy(proxy_config(backend.url, timeouts={"client_body": 1}))
    with RawClient(proxy.port, timeout=15) as raw:
        raw.send(raw.request_bytes("POST", "/echo", [("Content-Length", "1000")]) + b"x" * 10)
        answer = raw.read_to_eof()
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    with httpx.Client(base_url=proxy.url, timeout=10) as http:
        assert http.get("/").status_code == 200


# -- graceful shutdown ---------------------------------------------------------------


def connect_refused(port: int) -> bool:
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=1)
    except ConnectionRefusedError:
        return True
    sock.close()
    return False


def test_graceful_shutdown_finishes_in_flight_request(start_proxy: Start, backend: Backend) -> None:
    proxy = start_proxy(proxy_config(backend.url, timeouts={"drain": 10}))

    def slow_request() -> tuple[int, bytes]:
        with httpx.Client(timeout=20) as http:
            response = http.get(f"{proxy.url}/slow?delay=2")
            return response.status_code, response.content

    backend.request_seen.clear()
    thread, outcome = in_thread(slow_request)
    assert backend.request_seen.wait(10)
    proxy.send_sigterm()
    refused = wait_until(lambda: connect_refused(proxy.port), 1.5)
    thread.join(20)
    assert outcome == {"result": (200, b"slow done\n")}
    assert refused, "new connections were still accepted during the drain"
    assert proxy.wait_exit(15) == 0


def test_shutdown_does_not_wait_for_idle_keepalive_connections(
    start_proxy: Start, backend: Backend
) -> None:
    proxy = start_proxy(proxy_config(backend.url, timeouts={"drain": 60}))
    with httpx.Client(base_url=proxy.url, timeout=10) as http:
        assert http.get("/").status_code == 200  # the connection stays open, idle
        proxy.send_sigterm()
        assert proxy.wait_exit(15) == 0


def test_drain_timeout_cuts_long_exchanges(start_proxy: Start, backend: Backend) -> None:
    proxy = start_proxy(proxy_config(backend.url, timeouts={"drain": 1}))

    def long_request() -> int:
        with httpx.Client(timeout=20) as http:
            return http.get(f"{proxy.url}/slow?delay=6").status_code

    backend.request_seen.clear()
    thread, outcome = in_thread(long_request)
    assert backend.request_seen.wait(10)
    proxy.send_sigterm()
    assert proxy.wait_exit(10) == 0
    thread.join(10)
    error = outcome.get("error")
    status = outcome.get("result")
    assert isinstance(error, httpx.TransportError) or (status is not None and status >= 500), (
        outcome
    )
