"""Upgraded connections (WebSocket) tunnelled through the real proxy."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable

import pytest
from backend import Backend, RawClient, pattern
from conftest import RunningProxy, TlsFiles, proxy_config
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

Start = Callable[..., RunningProxy]


@pytest.fixture
def proxy(start_proxy: Start, backend: Backend) -> RunningProxy:
    return start_proxy(proxy_config(backend.url))


def ws_url(proxy: RunningProxy, path: str = "/ws") -> str:
    return proxy.url.replace("http", "ws", 1) + path


def test_websocket_echo_then_close(proxy: RunningProxy, backend: Backend) -> None:
    with connect(ws_url(proxy), open_timeout=10, close_timeout=10) as ws:
        for i in range(5):
            ws.send(f"message {i}")
            assert ws.recv(timeout=10) == f"message {i}"
        ws.send(b"\x00\x01binary\xff")
        assert ws.recv(timeout=10) == b"\x00\x01binary\xff"
        ws.close()
        assert ws.close_code == 1000
    upgrades = backend.requests_to("/ws")
    assert len(upgrades) == 1
    assert upgrades[0].header("upgrade") == ["websocket"]
    assert "upgrade" in upgrades[0].header("connection")[0].lower()


def test_websocket_handshake_hides_backend_identity(proxy: RunningProxy) -> None:
    with connect(ws_url(proxy), open_timeout=10, close_timeout=10) as ws:
        headers = ws.response.headers
        assert ws.response.status_code == 101
        assert "X-Powered-By" not in headers
        assert "secret" not in headers.get("Server", "")
        ws.send("still works")
        assert ws.recv(timeout=10) == "still works"


@pytest.mark.timeout(60)
def test_websocket_large_messages(proxy: RunningProxy) -> None:
    message = pattern(0, 4 * 1024 * 1024)
    with connect(ws_url(proxy), open_timeout=10, close_timeout=10, max_size=None) as ws:
        for _ in range(3):
            ws.send(message)
            assert ws.recv(timeout=30) == message


def test_concurrent_websockets_stay_separate(proxy: RunningProxy) -> None:
    errors: list[BaseException] = []

    def session(index: int) -> None:
        try:
            with connect(ws_url(proxy), open_timeout=10, close_timeout=10) as ws:
                for i in range(20):
                    ws.send(f"{index}:{i}")
                    assert ws.recv(timeout=10) == f"{index}:{i}"
        except BaseException as error:  # noqa: BLE001 - the main thread judges it
            errors.append(error)

    threads = [threading.Thread(target=session, args=(n,), daemon=True) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []


def test_websocket_over_tls_listener(
    start_proxy: Start, backend: Backend, tls_files: TlsFiles
) -> None:
    listener = {"certificate": str(tls_files.cert_file), "private_key": str(tls_files.key_file)}
    proxy = start_proxy(proxy_config(backend.url, listener=listener))
    url = ws_url(proxy)
    assert url.startswith("wss://")
    with connect(url, ssl=tls_files.client_context(), open_timeout=10, close_timeout=10) as ws:
        ws.send("over tls")
        assert ws.recv(timeout=10) == "over tls"
    assert backend.requests_to("/ws")[0].header("x-forwarded-proto") == ["https"]


def test_idle_tunnel_closed_after_tunnel_idle(start_proxy: Start, backend: Backend) -> None:
    proxy = start_proxy(proxy_config(backend.url, timeouts={"tunnel_idle": 1}))
    with connect(ws_url(proxy), open_timeout=10, close_timeout=2, ping_interval=None) as ws:
        ws.send("before idle")
        assert ws.recv(timeout=10) == "before idle"
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=15)


def test_upgrade_declined_by_backend_is_a_normal_response(proxy: RunningProxy) -> None:
    """The backend answers an Upgrade request with 200: no tunnel, an ordinary exchange."""
    with RawClient(proxy.port) as raw:
        response = raw.request(
            "GET",
            "/headers",
            [
                ("Connection", "Upgrade"),
                ("Upgrade", "websocket"),
                ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                ("Sec-WebSocket-Version", "13"),
            ],
        )
    assert response.status == 200
    assert json.loads(response.body)["target"] == "/headers"


def test_websocket_to_endpoint_refusing_upgrade(proxy: RunningProxy) -> None:
    """An upgrade the backend refuses (404) reaches the client as that refusal."""
    with RawClient(proxy.port) as raw:
        response = raw.request(
            "GET",
            "/nowhere",
            [
                ("Connection", "Upgrade"),
                ("Upgrade", "websocket"),
                ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                ("Sec-WebSocket-Version", "13"),
            ],
        )
    assert response.status == 404
