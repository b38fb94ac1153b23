"""Multi-core workers: a supervisor, N worker processes on shared listening sockets.

Each test runs ``python -m sansproxy_trio --config FILE --workers N`` as an operator would
and looks at the processes through ``/proc``: which pids are the supervisor's workers,
and which of them holds which accepted client connection. Every process is stopped by
PID at the end (the supervisor by SIGTERM, leftover workers by SIGKILL, which fails the
test).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from backend import Backend
from conftest import LISTENING, STARTUP_TIMEOUT, RunningProxy, proxy_config, proxy_env, to_toml

from sansproxy.config import Listener, ProxyConfig, Server, Upstream
from sansproxy_io.listen import ListenError
from sansproxy_io.workers import (
    WorkerSpec,
    bind_listeners,
    parse_workers,
    use_reuseport,
    worker_count,
)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(90),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inspects /proc"),
]

STOP_TIMEOUT = 30.0


# -- the harness (test_reload.py uses it too) ---------------------------------------------------


def write_config(path: Path, config: dict[str, Any]) -> None:
    """Replace the config file atomically, as an operator's deploy tool should."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(to_toml(config))
    partial.replace(path)


def launch(
    workdir: Path,
    config: dict[str, Any] | None,
    *args: str,
    listeners: int = 1,
    env: dict[str, str] | None = None,
) -> RunningProxy:
    """Start ``python -m sansproxy_trio [--config FILE] ARGS`` and wait for its listeners."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = workdir / "proxy.toml"
    argv = [sys.executable, "-m", "sansproxy_trio"]
    if config is not None:
        write_config(config_path, config)
        argv += ["--config", str(config_path)]
    stdout_path = workdir / "proxy.stdout"
    stderr_path = workdir / "proxy.stderr"
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        proc = subprocess.Popen(
            [*argv, *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            cwd=workdir,
            env={**proxy_env(), **(env or {})},
        )
    running = RunningProxy(
        proc=proc,
        urls=[],
        stdout_path=stdout_path,
        stderr_path=stderr_path,
        config_path=config_path,
    )
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        found = LISTENING.findall(running.stderr())
        if len(found) >= listeners:
            break
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
            pytest.fail(f"proxy did not start (exit {proc.returncode}):\n{running.stderr()}")
        time.sleep(0.05)
    for scheme, host, port in found[:listeners]:
        running.urls.append(f"{scheme}://{host}:{port}")
        running.ports.append(int(port))
    return running


def child_pids(pid: int) -> list[int]:
    """Live (not zombie) processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, ...
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry.name))
    return sorted(found)


def is_worker(pid: int) -> bool:
    """Whether ``pid`` is (still) a sansproxy worker process."""
    try:
        return b"--worker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def _ready(proxy: RunningProxy, count: int) -> bool:
    """``count`` workers run, and each said ``accepting on`` since its latest start."""
    pids = child_pids(proxy.pid)
    if len(pids) != count:
        return False
    stderr = proxy.stderr()
    for pid in pids:
        started = re.search(rf"worker (\d+) started \(pid {pid}\)", stderr)
        if started is None:
            return False
        index = started.group(1)
        if stderr.count(f"worker {index}: accepting on") < stderr.count(f"worker {index} started"):
            return False
    return True


def wait_for_workers(proxy: RunningProxy, count: int, timeout: float = 15.0) -> list[int]:
    """Wait until ``count`` workers are serving; their pids."""
    wait_for(lambda: _ready(proxy, count), timeout, f"{count} ready workers:\n{proxy.stderr()}")
    return child_pids(proxy.pid)


def count_in_stderr(proxy: RunningProxy, needle: str) -> int:
    return proxy.stderr().count(needle)


def wait_for_stderr(proxy: RunningProxy, needle: str, count: int = 1, timeout: float = 15) -> None:
    wait_for(
        lambda: count_in_stderr(proxy, needle) >= count,
        timeout,
        f"{count} x {needle!r} in stderr:\n{proxy.stderr()}",
    )


@pytest.fixture(name="serve")
def serve_fixture(tmp_path: Path, adapter: str) -> Iterator[Callable[..., RunningProxy]]:
    """Start servers (see :func:`launch`) on ``adapter``'s event loop (``--loop``).

    At teardown each gets SIGTERM and must exit 0, without a traceback or orphaned workers.
    """
    started: list[RunningProxy] = []

    def start(config: dict[str, Any] | None, *args: str, **options: Any) -> RunningProxy:
        workdir = tmp_path / f"server{len(started)}"
        running = launch(workdir, config, "--loop", adapter, *args, **options)
        started.append(running)
        return running

    yield start
    problems = []
    for running in started:
        workers = set(child_pids(running.pid)) if running.proc.poll() is None else set()
        was_stopped = running.stopped
        code = running.returncode if was_stopped else running.terminate(STOP_TIMEOUT)
        stderr = running.stderr()
        if "Traceback" in stderr:
            problems.append(f"server {running.pid} printed a traceback:\n{stderr}")
        if not was_stopped and code != 0:
            problems.append(f"server {running.pid} exit code {code}:\n{stderr[-4000:]}")
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                problems.append(f"worker {pid} outlived its supervisor {running.pid}")
    if problems:
        pytest.fail("\n\n".join(problems))


# -- which worker holds which connection --------------------------------------------------------


def _established_inodes(port: int) -> set[int]:
    """Socket inodes of ESTABLISHED TCP connections whose local port is ``port``."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                if local_port == port and fields[3] == "01":
                    inodes.add(int(fields[9]))
    return inodes


def _socket_inodes(pid: int) -> set[int]:
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    return inodes


def connections_per_worker(port: int, workers: list[int]) -> dict[int, int]:
    """How many accepted client connections on ``port`` each worker pid holds."""
    established = _established_inodes(port)
    return {pid: len(_socket_inodes(pid) & established) for pid in workers}


def open_connections(port: int, count: int) -> list[socket.socket]:
    """``count`` client connections, each with one answered keep-alive request."""
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sockets.append(sock)
        sock.sendall(b"GET / HTTP/1.1\r\nHost: test\r\n\r\n")
        response = b""
        while b"backend" not in response:
            data = sock.recv(65536)
            assert data, f"connection closed early: {response!r}"
            response += data
        assert response.startswith(b"HTTP/1.1 200 ")
    return sockets


# -- unit tests of the pieces ---------------------------------------------------------------------


def test_parse_workers_and_count() -> None:
    assert parse_workers("auto") == 0
    assert parse_workers("3") == 3
    for bad in ("0", "-1", "257", "two", ""):
        with pytest.raises(ValueError, match="auto"):
            parse_workers(bad)
    assert worker_count(None, 4) == 4
    assert worker_count(2, 4) == 2
    assert worker_count(0, 1) == (os.cpu_count() or 1)


def test_worker_spec_round_trip() -> None:
    spec = WorkerSpec(index=2, supervisor=1234, fds=((3, 4), (5,)))
    assert spec.encode() == "2:1234:3,4;5"
    assert WorkerSpec.parse(spec.encode()) == spec


def _config(host: str = "127.0.0.1") -> ProxyConfig:
    return ProxyConfig(
        listeners=(Listener(host=host, port=0, upstream="app"),),
        upstreams={"app": Upstream(name="app", servers=(Server(host="127.0.0.1", port=9),))},
    )


@pytest.mark.skipif(not use_reuseport(), reason="SO_REUSEPORT balancing is Linux-only")
def test_reuseport_copies_share_one_resolved_port() -> None:
    sockets = bind_listeners(_config(), 3, reuse_port=True)
    try:
        ports = {sockets.for_worker(index)[0][0].getsockname()[1] for index in (1, 2, 3)}
        assert len(ports) == 1
        assert ports != {0}
        assert sockets.for_worker(1)[0][0] is not sockets.for_worker(2)[0][0]
    finally:
        sockets.close()


def test_shared_sockets_are_one_copy() -> None:
    sockets = bind_listeners(_config(), 3, reuse_port=False)
    try:
        assert sockets.for_worker(1)[0][0] is sockets.for_worker(3)[0][0]
    finally:
        sockets.close()


def test_bind_error_is_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = _config()
        config = replace(config, listeners=(replace(config.listeners[0], port=port),))
        with pytest.raises(ListenError, match=f"cannot listen on 127.0.0.1:{port}: "):
            bind_listeners(config, 2, reuse_port=False)


# -- the server with workers ------------------------------------------------------------------


@pytest.mark.parametrize("reuseport", ["1", "0"])
def test_two_workers_accept_connections(
    serve: Callable[..., RunningProxy], backend: Backend, reuseport: str
) -> None:
    proxy = serve(
        proxy_config(backend.url), "--workers", "2", env={"SANSPROXY_REUSEPORT": reuseport}
    )
    workers = wait_for_workers(proxy, 2)
    assert LISTENING.findall(proxy.stderr()) == [("http", "127.0.0.1", str(proxy.port))]
    mode = "a SO_REUSEPORT socket each" if reuseport == "1" else "sharing the listening sockets"
    assert f"starting 2 workers ({mode})" in proxy.stderr()
    for index, pid in enumerate(workers, start=1):
        assert f"worker {index} started (pid {pid})" in proxy.stderr()

    clients = open_connections(proxy.port, 16)
    try:
        held = connections_per_worker(proxy.port, workers)
        assert sum(held.values()) == 16, held
        if reuseport == "1":
            # The kernel hashes connections over the two sockets: both workers get some.
            assert all(count > 0 for count in held.values()), held
    finally:
        for sock in clients:
            sock.close()
    assert len(backend.requests_to("/")) == 16


def test_quick_mode_with_workers(serve: Callable[..., RunningProxy], backend: Backend) -> None:
    proxy = serve(None, "--listen", "127.0.0.1:0", "--upstream", backend.url, "--workers", "2")
    wait_for_workers(proxy, 2)
    for _ in range(4):
        assert httpx.get(proxy.url + "/", timeout=10).text == "backend a\n"
    proxy.proc.send_signal(signal.SIGHUP)
    wait_for_stderr(proxy, "SIGHUP: nothing to reload (no configuration file)")
    assert httpx.get(proxy.url + "/", timeout=10).status_code == 200
    assert len(child_pids(proxy.pid)) == 2


def test_killed_worker_is_restarted_and_requests_keep_succeeding(
    serve: Callable[..., RunningProxy], backend: Backend
) -> None:
    proxy = serve(proxy_config(backend.url), "--workers", "2")
    before = wait_for_workers(proxy, 2)
    with httpx.Client(timeout=10) as client:
        assert client.get(proxy.url + "/").status_code == 200

    victim = before[0]
    os.kill(victim, signal.SIGKILL)
    # Fresh connections right away: the ones the kernel queues on the dead worker's socket
    # wait for its successor, which inherits that very socket.
    statuses = []
    for _ in range(20):
        with httpx.Client(timeout=15) as client:
            statuses.append(client.get(proxy.url + "/").status_code)
    assert statuses == [200] * 20

    wait_for_stderr(proxy, f"(pid {victim}) died: signal SIGKILL; restarting")
    after = wait_for_workers(proxy, 2)
    assert victim not in after
    assert before[1] in after


def test_sigterm_drains_every_worker(serve: Callable[..., RunningProxy], backend: Backend) -> None:
    proxy = serve(proxy_config(backend.url), "--workers", "2")
    workers = wait_for_workers(proxy, 2)
    outcome: dict[str, Any] = {}

    def slow_request() -> None:
        try:
            response = httpx.get(proxy.url + "/slow?delay=1.5", timeout=20)
            outcome["status"], outcome["body"] = response.status_code, response.text
        except httpx.HTTPError as error:
            outcome["error"] = error

    backend.request_seen.clear()
    thread = threading.Thread(target=slow_request, daemon=True)
    thread.start()
    assert backend.request_seen.wait(10)
    proxy.send_sigterm()
    assert proxy.wait_exit(STOP_TIMEOUT) == 0
    thread.join(10)
    assert outcome == {"status": 200, "body": "slow done\n"}
    stderr = proxy.stderr()
    assert "SIGTERM: shutting down gracefully: stopping 2 workers" in stderr
    assert stderr.count("shutdown complete") == 2
    assert not any(is_worker(pid) for pid in workers)
    with pytest.raises(httpx.ConnectError):
        httpx.get(proxy.url + "/", timeout=5)


def test_second_signal_stops_at_once_with_status_1(
    serve: Callable[..., RunningProxy], backend: Backend
) -> None:
    proxy = serve(proxy_config(backend.url, timeouts={"drain": 30}), "--workers", "2")
    workers = wait_for_workers(proxy, 2)
    backend.request_seen.clear()
    thread = threading.Thread(
        target=_ignore_errors,
        args=(lambda: httpx.get(proxy.url + "/slow?delay=20", timeout=30),),
        daemon=True,
    )
    thread.start()
    assert backend.request_seen.wait(10)
    proxy.proc.send_signal(signal.SIGINT)
    wait_for_stderr(proxy, "SIGINT: shutting down gracefully")
    proxy.proc.send_signal(signal.SIGINT)
    assert proxy.wait_exit(STOP_TIMEOUT) == 1
    assert "SIGINT again: stopping the workers now" in proxy.stderr()
    assert not any(is_worker(pid) for pid in workers)


def _ignore_errors(call: Callable[[], object]) -> None:
    with contextlib.suppress(httpx.HTTPError):
        call()


def test_workers_run_as_configured_in_the_file(
    serve: Callable[..., RunningProxy], backend: Backend
) -> None:
    proxy = serve(proxy_config(backend.url, server={"workers": 2}))
    wait_for_workers(proxy, 2)
    assert httpx.get(proxy.url + "/", timeout=10).status_code == 200


def test_record_is_refused_with_workers(tmp_path: Path, backend: Backend) -> None:
    config_path = tmp_path / "proxy.toml"
    write_config(config_path, proxy_config(backend.url))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sansproxy_trio",
            "--config",
            str(config_path),
            "--workers",
            "2",
            "--record",
            str(tmp_path / "run.rec"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env=proxy_env(),
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("command line: --record:")
