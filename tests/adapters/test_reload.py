"""Live reload: SIGHUP (or ``sansproxy reload``) re-reads the configuration under load.

The server runs as ``python -m sansproxy_trio --config FILE`` (alone, or with
``--workers 2``); the tests rewrite FILE atomically, signal the server, and wait for its
log to say the reload was applied or refused. A client thread keeps requests going
through every reload, on a kept-alive connection and on new ones, and must see no
failure at all.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from backend import Backend
from conftest import RunningProxy, TlsFiles, proxy_config, proxy_env, to_toml
from test_workers import (
    child_pids,
    count_in_stderr,
    serve_fixture,  # noqa: F401 - the `serve` fixture
    wait_for_stderr,
    wait_for_workers,
    write_config,
)
from websockets.sync.client import connect

from sansproxy.config import Listener, ProxyConfig, Server, Upstream, parse_config
from sansproxy.errors import ConfigError
from sansproxy_io.reload import (
    REFUSED,
    LoadedConfig,
    Reloader,
    check_same_listeners,
    read_pid_file,
    remove_pid_file,
    signal_reload,
    write_pid_file,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

RELOADED = "configuration reloaded from"
WORKER_COUNTS = [1, 2]


def start(
    serve: Callable[..., RunningProxy], config: dict[str, Any], workers: int, *args: str
) -> RunningProxy:
    proxy = serve(config, "--workers", str(workers), *args)
    if workers > 1:
        wait_for_workers(proxy, workers)
    return proxy


def reload_to(proxy: RunningProxy, config: dict[str, Any], workers: int, done: int) -> int:
    """Rewrite the file, SIGHUP, wait until every process applied it; the new reload count."""
    write_config(proxy.config_path, config)
    proxy.proc.send_signal(signal.SIGHUP)
    done += workers
    wait_for_stderr(proxy, RELOADED, done)
    return done


class Load:
    """Requests from a thread until stopped: kept-alive and new connections, alternately."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.failures: list[str] = []
        self.answered: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)
        assert not self._thread.is_alive()

    def _run(self) -> None:
        deadline = time.monotonic() + 60  # bounded even if the test never stops it
        with httpx.Client(timeout=10) as kept_alive:
            while not self._stop.is_set() and time.monotonic() < deadline:
                for client in (kept_alive, None):
                    try:
                        if client is None:
                            response = httpx.get(self.url + "/", timeout=10)
                        else:
                            response = client.get(self.url + "/")
                    except httpx.HTTPError as error:
                        self.failures.append(f"{type(error).__name__}: {error}")
                        continue
                    if response.status_code != 200:
                        self.failures.append(f"status {response.status_code}: {response.text}")
                    else:
                        self.answered.append(response.headers["x-backend-id"])


@pytest.mark.parametrize("workers", WORKER_COUNTS)
def test_reloads_under_load_switch_backends_without_a_failure(
    serve: Callable[..., RunningProxy], backend: Backend, backend_b: Backend, workers: int
) -> None:
    proxy = start(serve, proxy_config(backend.url), workers)
    done = 0
    in_flight: list[httpx.Response] = []
    slow = threading.Thread(
        target=lambda: in_flight.append(httpx.get(proxy.url + "/slow?delay=1.5", timeout=20)),
        daemon=True,
    )
    backend.request_seen.clear()
    with Load(proxy.url) as load, httpx.Client(timeout=10) as kept_alive:
        slow.start()
        assert backend.request_seen.wait(10)
        for target in (backend_b, backend, backend_b, backend):
            done = reload_to(proxy, proxy_config(target.url), workers, done)
            # From now on every request goes to the new backend, new connection or old.
            for _ in range(workers * 3):
                assert (
                    httpx.get(proxy.url + "/", timeout=10).text == f"backend {target.backend_id}\n"
                )
                assert kept_alive.get(proxy.url + "/").headers["x-backend-id"] == target.backend_id
            time.sleep(0.3)
    slow.join(20)
    # Started on backend a before the first reload; finished there after it.
    assert [(r.status_code, r.text, r.headers["x-backend-id"]) for r in in_flight] == [
        (200, "slow done\n", "a")
    ]
    assert load.failures == []
    assert set(load.answered) == {"a", "b"}
    assert count_in_stderr(proxy, RELOADED) == 4 * workers
    if workers > 1:
        assert count_in_stderr(proxy, "configuration from") == 4  # validated once per reload
        assert len(child_pids(proxy.pid)) == workers


@pytest.mark.parametrize("workers", WORKER_COUNTS)
def test_invalid_reload_is_refused_with_the_start_up_message(
    serve: Callable[..., RunningProxy], backend: Backend, backend_b: Backend, workers: int
) -> None:
    proxy = start(serve, proxy_config(backend.url), workers)
    bad = proxy_config(backend_b.url, timeouts={"client_header": -1})
    with pytest.raises(ConfigError) as raised:
        parse_config(to_toml(bad), source=str(proxy.config_path))
    message = str(raised.value)
    assert "timeouts.client_header" in message
    # The same line as --check-config (and a start-up) would print.
    write_config(proxy.config_path, bad)
    check = subprocess.run(
        [sys.executable, "-m", "sansproxy_trio", "--check-config", str(proxy.config_path)],
        capture_output=True,
        text=True,
        timeout=30,
        env=proxy_env(),
        check=False,
    )
    assert check.returncode == 2
    assert check.stderr.strip() == message

    with Load(proxy.url) as load:
        time.sleep(0.2)
        proxy.proc.send_signal(signal.SIGHUP)
        wait_for_stderr(proxy, REFUSED)
        time.sleep(0.3)
    lines = proxy.stderr().splitlines()
    refused = [line for line in lines if line.endswith(message)]
    assert len(refused) == 1  # the supervisor checks once; no worker hears of it
    assert RELOADED not in proxy.stderr()
    assert load.failures == []
    assert set(load.answered) == {"a"}
    assert httpx.get(proxy.url + "/", timeout=10).text == "backend a\n"

    # Fixed: the next reload applies.
    reload_to(proxy, proxy_config(backend_b.url), workers, 0)
    assert httpx.get(proxy.url + "/", timeout=10).text == "backend b\n"


def test_listener_change_is_refused(
    serve: Callable[..., RunningProxy], backend: Backend, backend_b: Backend
) -> None:
    proxy = start(serve, proxy_config(backend.url), 1)
    write_config(
        proxy.config_path,
        proxy_config(backend_b.url, listener={"address": f"127.0.0.1:{proxy.port + 1}"}),
    )
    proxy.proc.send_signal(signal.SIGHUP)
    wait_for_stderr(proxy, REFUSED)
    assert (
        f"{proxy.config_path}: listeners[0]: address changed: changing a listener's address "
        "or TLS files needs a restart"
    ) in proxy.stderr()
    assert httpx.get(proxy.url + "/", timeout=10).text == "backend a\n"


@pytest.mark.parametrize("workers", WORKER_COUNTS)
def test_websocket_tunnel_survives_reloads(
    serve: Callable[..., RunningProxy], backend: Backend, backend_b: Backend, workers: int
) -> None:
    proxy = start(serve, proxy_config(backend.url), workers)
    ws_url = proxy.url.replace("http", "ws", 1) + "/ws"
    done = 0
    with connect(ws_url, open_timeout=10, close_timeout=10) as ws:
        ws.send("before")
        assert ws.recv(timeout=10) == "before"
        for target in (backend_b, backend):
            done = reload_to(proxy, proxy_config(target.url), workers, done)
            ws.send(f"after reload to {target.backend_id}")
            assert ws.recv(timeout=10) == f"after reload to {target.backend_id}"
        # Routing changed for new tunnels only.
        done = reload_to(proxy, proxy_config(backend_b.url), workers, done)
        with connect(ws_url, open_timeout=10, close_timeout=10) as second:
            second.send("new")
            assert second.recv(timeout=10) == "new"
        ws.send("still open")
        assert ws.recv(timeout=10) == "still open"
        ws.close()
        assert ws.close_code == 1000
    assert len(backend.requests_to("/ws")) == 1
    assert len(backend_b.requests_to("/ws")) == 1


@pytest.mark.parametrize("workers", WORKER_COUNTS)
def test_reload_command_uses_the_pid_file(
    serve: Callable[..., RunningProxy],
    backend: Backend,
    backend_b: Backend,
    tmp_path: Path,
    workers: int,
) -> None:
    pid_file = tmp_path / "sansproxy.pid"
    proxy = start(serve, proxy_config(backend.url), workers, "--pid-file", str(pid_file))
    assert read_pid_file(pid_file) == proxy.pid
    write_config(proxy.config_path, proxy_config(backend_b.url))
    command = [sys.executable, "-m", "sansproxy_trio", "reload", "--pid-file", str(pid_file)]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=30, env=proxy_env(), check=False
    )
    assert result.returncode == 0, result.stderr
    assert f"sent SIGHUP to {proxy.pid}" in result.stdout
    wait_for_stderr(proxy, RELOADED, workers)
    assert httpx.get(proxy.url + "/", timeout=10).text == "backend b\n"

    assert proxy.terminate() == 0
    assert not pid_file.exists()  # removed on exit
    stale = subprocess.run(
        command, capture_output=True, text=True, timeout=30, env=proxy_env(), check=False
    )
    assert stale.returncode == 1
    assert stale.stderr.startswith(f"sansproxy: reload: {pid_file}: ")
    assert len(stale.stderr.strip().splitlines()) == 1


def test_quick_mode_has_nothing_to_reload(
    serve: Callable[..., RunningProxy], backend: Backend
) -> None:
    proxy = serve(None, "--listen", "127.0.0.1:0", "--upstream", backend.url)
    proxy.proc.send_signal(signal.SIGHUP)
    wait_for_stderr(proxy, "SIGHUP: nothing to reload (no configuration file)")
    assert httpx.get(proxy.url + "/", timeout=10).status_code == 200


def test_server_settings_change_is_only_announced(
    serve: Callable[..., RunningProxy], backend: Backend, backend_b: Backend
) -> None:
    proxy = start(serve, proxy_config(backend.url), 1)
    reload_to(proxy, proxy_config(backend_b.url, server={"workers": 3}), 1, 0)
    assert "server.workers changed: it takes effect at the next start" in proxy.stderr()
    assert len(child_pids(proxy.pid)) == 0
    assert httpx.get(proxy.url + "/", timeout=10).text == "backend b\n"


def test_reload_serves_a_renewed_certificate(
    serve: Callable[..., RunningProxy],
    backend: Backend,
    tls_files: TlsFiles,
    other_tls_files: TlsFiles,
    tmp_path: Path,
) -> None:
    cert, key = tmp_path / "live-cert.pem", tmp_path / "live-key.pem"
    shutil.copy(tls_files.cert_file, cert)
    shutil.copy(tls_files.key_file, key)
    config = proxy_config(backend.url, listener={"certificate": str(cert), "private_key": str(key)})
    proxy = start(serve, config, 1)
    assert proxy.url.startswith("https://")
    with httpx.Client(verify=tls_files.client_context(), timeout=10) as old_ca:
        assert old_ca.get(proxy.url + "/").status_code == 200

    # Renewed in place (same paths, another CA's certificate), then reloaded.
    shutil.copy(other_tls_files.cert_file, cert)
    shutil.copy(other_tls_files.key_file, key)
    reload_to(proxy, config, 1, 0)
    with httpx.Client(verify=other_tls_files.client_context(), timeout=10) as new_ca:
        assert new_ca.get(proxy.url + "/").status_code == 200
    with (
        httpx.Client(verify=tls_files.client_context(), timeout=10) as old_ca,
        pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        old_ca.get(proxy.url + "/")


# -- the reload module without a server ----------------------------------------------------


def _config(port: int = 8080, servers: int = 9000, **listener: Any) -> ProxyConfig:
    return ProxyConfig(
        listeners=(Listener(host="127.0.0.1", port=port, upstream="app", **listener),),
        upstreams={"app": Upstream(name="app", servers=(Server(host="127.0.0.1", port=servers),))},
    )


def test_same_listeners_allow_routing_changes() -> None:
    check_same_listeners(_config(), _config(servers=9001), "f.toml")
    two = replace(_config(), listeners=(*_config().listeners, *_config(port=8081).listeners))
    with pytest.raises(ConfigError, match=r"^f\.toml: listeners: 2 listeners instead of 1"):
        check_same_listeners(_config(), two, "f.toml")
    with pytest.raises(ConfigError, match=r"listeners\[0\]: address changed"):
        check_same_listeners(_config(), _config(port=8081), "f.toml")
    with pytest.raises(ConfigError, match=r"listeners\[0\]: TLS changed"):
        check_same_listeners(_config(), _config(certificate="c.pem", private_key="k.pem"), "f.toml")


class _Target:
    def __init__(self) -> None:
        self.applied: list[tuple[ProxyConfig, str | None, str]] = []

    def reload(self, config: ProxyConfig, *, text: str | None = None, source: str = "") -> None:
        self.applied.append((config, text, source))


def test_reloader_applies_valid_files_and_refuses_the_rest(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "proxy.toml"
    write_config(path, proxy_config("http://127.0.0.1:9000"))
    text = path.read_text()
    loaded = LoadedConfig(
        text=text, config=parse_config(text, source="proxy.toml"), source="proxy.toml"
    )
    reloader = Reloader(path, loaded)
    target = _Target()
    assert not reloader.reload()  # not attached yet
    reloader.attach(target)
    assert target.applied == []  # the file did not change since start-up

    write_config(path, proxy_config("http://127.0.0.1:9001"))
    assert reloader.reload()
    config, new_text, source = target.applied[-1]
    assert config.upstreams["app"].servers[0].port == 9001
    assert new_text == path.read_text()
    assert source == "proxy.toml"
    assert reloader.config is config

    caplog.clear()
    path.write_text("listeners = 3\n")
    with pytest.raises(ConfigError) as raised:
        parse_config(path.read_text(), source="proxy.toml")
    assert not reloader.reload()
    assert [record.getMessage() for record in caplog.records] == [str(raised.value), REFUSED]
    assert len(target.applied) == 1
    assert reloader.config is config


def test_reloader_catches_up_on_a_change_made_during_start_up(tmp_path: Path) -> None:
    path = tmp_path / "proxy.toml"
    write_config(path, proxy_config("http://127.0.0.1:9000"))
    text = path.read_text()
    loaded = LoadedConfig(text=text, config=parse_config(text), source=str(path))
    reloader = Reloader(path, loaded)
    write_config(path, proxy_config("http://127.0.0.1:9001"))
    target = _Target()
    reloader.attach(target)
    assert len(target.applied) == 1


def test_pid_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "x.pid"
    write_pid_file(path)
    assert read_pid_file(path) == os.getpid()
    remove_pid_file(path)
    assert not path.exists()
    path.write_text("not a pid\n")
    with pytest.raises(ValueError, match="not a process id"):
        signal_reload(path)
    remove_pid_file(path)  # someone else's content: left alone
    assert path.exists()
