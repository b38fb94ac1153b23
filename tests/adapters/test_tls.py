"""TLS on both sides of the proxy, with trustme certificates."""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import time
from collections.abc import Callable

import httpx
import pytest
from backend import Backend, assert_clean_error_body, pattern_pieces, pattern_sha256
from conftest import RunningProxy, TlsFiles, proxy_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

Start = Callable[..., RunningProxy]


def tls_listener(files: TlsFiles) -> dict[str, str]:
    return {"certificate": str(files.cert_file), "private_key": str(files.key_file)}


@pytest.fixture
def tls_proxy(start_proxy: Start, backend: Backend, tls_files: TlsFiles) -> RunningProxy:
    return start_proxy(proxy_config(backend.url, listener=tls_listener(tls_files)))


def test_tls_listener_serves_https(tls_proxy: RunningProxy, tls_files: TlsFiles) -> None:
    assert tls_proxy.url.startswith("https://127.0.0.1:")
    with httpx.Client(base_url=tls_proxy.url, verify=tls_files.client_context(), timeout=10) as c:
        response = c.get("/headers")
        assert response.status_code == 200
        assert response.http_version == "HTTP/1.1"
        document = response.json()
        seen = dict(document["headers"])
        assert seen["x-forwarded-proto"] == "https"
        assert "proto=https" in seen["forwarded"]
        assert c.get("/").text == "backend a\n"


def test_tls_listener_with_curl(tls_proxy: RunningProxy, tls_files: TlsFiles, curl: str) -> None:
    result = subprocess.run(
        [curl, "-sS", "--max-time", "10", "--cacert", str(tls_files.ca_file), tls_proxy.url + "/"],
        capture_output=True,
        timeout=15,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"backend a\n"


def test_tls_listener_rejects_untrusted_client_verification(
    tls_proxy: RunningProxy, other_tls_files: TlsFiles
) -> None:
    """Sanity check of the setup: a client trusting another CA refuses the proxy."""
    with (
        httpx.Client(verify=other_tls_files.client_context(), timeout=10) as c,
        pytest.raises(httpx.ConnectError),
    ):
        c.get(tls_proxy.url + "/")


NOT_TLS_BODY = b"400 The plain HTTP request was sent to HTTPS port\n"


def test_plain_http_to_a_tls_listener_gets_a_400_that_says_so(
    tls_proxy: RunningProxy, tls_files: TlsFiles, curl: str
) -> None:
    # What a user types when they forget the s: curl http:// to the https port.
    result = subprocess.run(
        [curl, "-sS", "-i", "--max-time", "10", f"http://127.0.0.1:{tls_proxy.port}/"],
        capture_output=True,
        timeout=15,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    head, _, body = result.stdout.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 Bad Request\r\n"), result.stdout
    assert b"connection: close" in head.lower()
    assert body == NOT_TLS_BODY
    # The listener still serves TLS, and nothing plain reached the backend.
    with httpx.Client(base_url=tls_proxy.url, verify=tls_files.client_context(), timeout=10) as c:
        assert c.get("/").text == "backend a\n"


def test_plain_http_on_a_raw_socket_is_answered_then_closed(tls_proxy: RunningProxy) -> None:
    with socket.create_connection(("127.0.0.1", tls_proxy.port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert answer.endswith(NOT_TLS_BODY)
    assert b"backend" not in answer


def test_failed_handshakes_are_logged_at_debug_level(
    start_proxy: Start, backend: Backend, tls_files: TlsFiles
) -> None:
    config = proxy_config(backend.url, listener=tls_listener(tls_files), logging={"level": "debug"})
    proxy = start_proxy(config)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        # A handshake record header, then rubbish where the ClientHello should be.
        sock.sendall(b"\x16\x03\x01\x00\x08" + b"rubbish!")
        sock.settimeout(10)
        try:
            while sock.recv(4096):
                pass
        except ConnectionResetError:
            pass
    deadline = time.monotonic() + 10
    while "TLS handshake from 127.0.0.1:" not in proxy.stderr():
        assert time.monotonic() < deadline, proxy.stderr()
        time.sleep(0.05)
    line = next(line for line in proxy.stderr().splitlines() if "TLS handshake from" in line)
    assert " DEBUG " in line
    assert "on listener 0 failed" in line


def https_upstream(files: TlsFiles, **extra: object) -> dict[str, object]:
    settings: dict[str, object] = {"ca_file": str(files.ca_file), "server_name": "localhost"}
    settings.update(extra)
    return settings


def test_https_upstream_verified_with_ca_file(
    start_proxy: Start, tls_backend: Backend, tls_files: TlsFiles
) -> None:
    proxy = start_proxy(proxy_config(tls_backend.url, upstream=https_upstream(tls_files)))
    with httpx.Client(base_url=proxy.url, timeout=10) as c:
        response = c.get("/")
        assert response.status_code == 200
        assert response.text == "backend tls\n"
        # The pooled TLS connection is reused.
        conns = {c.get("/").headers["x-backend-conn"] for _ in range(3)}
    assert len(conns) == 1


def test_https_upstream_by_ip_without_server_name(
    start_proxy: Start, tls_backend: Backend, tls_files: TlsFiles
) -> None:
    """The certificate also names 127.0.0.1, so verifying against the URL's host works."""
    proxy = start_proxy(proxy_config(tls_backend.url, upstream={"ca_file": str(tls_files.ca_file)}))
    with httpx.Client(base_url=proxy.url, timeout=10) as c:
        assert c.get("/").text == "backend tls\n"


def test_https_upstream_with_wrong_ca_gets_502(
    start_proxy: Start, tls_backend: Backend, tls_files: TlsFiles, other_tls_files: TlsFiles
) -> None:
    proxy = start_proxy(proxy_config(tls_backend.url, upstream=https_upstream(other_tls_files)))
    with httpx.Client(base_url=proxy.url, timeout=15) as c:
        response = c.get("/")
    assert response.status_code == 502
    assert_clean_error_body(response.content, tls_backend.port)
    assert tls_backend.requests == []


def test_https_upstream_with_wrong_server_name_gets_502(
    start_proxy: Start, tls_backend: Backend, tls_files: TlsFiles
) -> None:
    upstream = https_upstream(tls_files, server_name="wrong.example")
    proxy = start_proxy(proxy_config(tls_backend.url, upstream=upstream))
    with httpx.Client(base_url=proxy.url, timeout=15) as c:
        response = c.get("/")
    assert response.status_code == 502
    assert_clean_error_body(response.content, tls_backend.port)
    assert tls_backend.requests == []


def test_https_upstream_unverified_when_disabled(start_proxy: Start, tls_backend: Backend) -> None:
    """No CA is configured (a ca_file beside ``tls_verify = false`` is a config error)."""
    upstream = {"server_name": "localhost", "tls_verify": False}
    proxy = start_proxy(proxy_config(tls_backend.url, upstream=upstream))
    with httpx.Client(base_url=proxy.url, timeout=10) as c:
        assert c.get("/").text == "backend tls\n"


@pytest.mark.timeout(120)
def test_tls_on_both_sides_large_bodies(
    start_proxy: Start, tls_backend: Backend, tls_files: TlsFiles
) -> None:
    size = 8 * 1024 * 1024 + 3
    proxy = start_proxy(
        proxy_config(
            tls_backend.url,
            listener=tls_listener(tls_files),
            upstream=https_upstream(tls_files),
        )
    )
    with httpx.Client(base_url=proxy.url, verify=tls_files.client_context(), timeout=60) as c:
        digest = hashlib.sha256()
        with c.stream("GET", f"/bytes?n={size}&chunked=1") as response:
            assert response.status_code == 200
            for piece in response.iter_raw():
                digest.update(piece)
        assert digest.hexdigest() == pattern_sha256(size)
        upload = c.post("/echo?digest=1", content=pattern_pieces(size))
        assert json.loads(upload.content) == {"bytes": size, "sha256": pattern_sha256(size)}


def test_plain_and_tls_listeners_together(
    start_proxy: Start, backend: Backend, tls_files: TlsFiles
) -> None:
    config = proxy_config(backend.url)
    config["listeners"].append({"address": "127.0.0.1:0", **tls_listener(tls_files)})
    proxy = start_proxy(config)
    schemes = sorted(url.split(":")[0] for url in proxy.urls)
    assert schemes == ["http", "https"]
    for url in proxy.urls:
        with httpx.Client(base_url=url, verify=tls_files.client_context(), timeout=10) as c:
            document = c.get("/headers").json()
            proto = dict(document["headers"])["x-forwarded-proto"]
            assert proto == url.split(":")[0]
