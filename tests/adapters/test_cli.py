"""The ``sansproxy`` command line: config checking, quick mode, signals, the demo.

Config checks call :func:`sansproxy_trio.cli.main` in-process; everything that serves runs
``python -m sansproxy_trio`` as a subprocess, exactly as an operator would, and is stopped
by PID at the end of each test.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from backend import Backend

from sansproxy_trio.cli import main

STARTUP_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0
LISTENING = re.compile(r"listening on (https?)://(\[[0-9a-fA-F:]+\]|[0-9.]+):(\d+)")

VALID = """\
[[listeners]]
address = "127.0.0.1:0"
upstream = "app"

[upstreams.app]
servers = ["http://127.0.0.1:9000"]
"""


def write(tmp_path: Path, text: str, name: str = "proxy.toml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


# -- --check-config and config errors (in-process) -------------------------------------------


def test_check_config_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, VALID)
    assert main(["--check-config", path]) == 0
    out, err = capsys.readouterr()
    assert out == f"{path}: OK\n"
    assert err == ""


def test_check_config_invalid_value(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, VALID + "\n[timeouts]\nclient_header = -1\n")
    assert main(["--check-config", path]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith(f"{path}: timeouts.client_header: ")
    assert "positive" in err


def test_unknown_key_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, VALID.replace('upstream = "app"', 'upstrem = "app"'))
    for argv in (["--check-config", path], ["--config", path]):
        assert main(argv) == 2
        out, err = capsys.readouterr()
        assert out == ""
        assert err == f"{path}: listeners[0].upstrem: unknown key (did you mean 'upstream'?)\n"


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = str(tmp_path / "nowhere.toml")
    for argv in (["--check-config", path], ["--config", path]):
        assert main(argv) == 2
        _, err = capsys.readouterr()
        assert err == f"{path}: cannot read: No such file or directory\n"


def test_check_config_loads_certificates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.pem"
    text = VALID.replace(
        'upstream = "app"\n',
        f'upstream = "app"\ncertificate = "{missing}"\nprivate_key = "{missing}"\n',
        1,
    )
    path = write(tmp_path, text)
    assert main(["--check-config", path]) == 2
    _, err = capsys.readouterr()
    assert err == f"{path}: listeners[0].certificate: file not found: {missing}\n"


def test_replaying_an_old_recording_format_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    header = {"format": "sansproxy-recording", "version": 1, "sansproxy": "unknown", "seed": 1}
    old = write(tmp_path, json.dumps(header) + "\n", name="old.jsonl")
    assert main(["replay", old]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"sansproxy replay: {old}: recording format version 1 cannot be replayed: "
        "this sansproxy replays version 2 only (record the run again)\n"
    )


def test_quick_mode_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--upstream", "http://127.0.0.1:9000"]) == 2
    assert capsys.readouterr().err == "command line: --listen: at least one is required\n"
    assert main(["--listen", "127.0.0.1:0", "--upstream", "ftp://x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("command line: --upstream: 'ftp://x'")
    assert err.count("\n") == 1
    assert main([]) == 2
    assert capsys.readouterr().err.count("\n") == 1


# -- serving (subprocesses) -----------------------------------------------------------------


@dataclass
class Proc:
    popen: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def wait_listening(self, count: int = 1) -> list[int]:
        """Ports from the ``listening on`` lines, once ``count`` of them were logged."""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            found = LISTENING.findall(self.stderr())
            if len(found) >= count:
                return [int(port) for _, _, port in found[:count]]
            if self.popen.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"no listening line (exit {self.popen.poll()}):\n{self.stderr()}")
            time.sleep(0.05)

    def wait_exit(self, timeout: float = STOP_TIMEOUT) -> int | None:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None


def _env() -> dict[str, str]:
    """Let the child import the same sansproxy and sansproxy_trio as this test does."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    paths = []
    for name in ("sansproxy", "sansproxy_trio"):
        spec = importlib.util.find_spec(name)
        assert spec is not None
        assert spec.origin is not None
        paths.append(str(Path(spec.origin).resolve().parent.parent))
    env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")])
    return env


@pytest.fixture
def run_cli(tmp_path: Path) -> Iterator[type[Proc]]:
    """Start ``python -m sansproxy_trio ARGS``; every process is killed by PID at teardown."""
    started: list[Proc] = []

    class Started(Proc):
        def __init__(self, *args: str) -> None:
            n = len(started)
            out, err = tmp_path / f"cli{n}.stdout", tmp_path / f"cli{n}.stderr"
            with out.open("wb") as stdout, err.open("wb") as stderr:
                popen = subprocess.Popen(
                    [sys.executable, "-m", "sansproxy_trio", *args],
                    stdin=subprocess.DEVNULL,
                    stdout=stdout,
                    stderr=stderr,
                    cwd=tmp_path,
                    env=_env(),
                )
            super().__init__(popen, out, err)
            started.append(self)

    yield Started
    for proc in started:
        if proc.popen.poll() is None:
            proc.popen.kill()
            proc.popen.wait(5)


def free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def client() -> httpx.Client:
    return httpx.Client(trust_env=False, timeout=10)


@pytest.mark.integration
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_quick_mode_proxies_then_stops_on_signal(run_cli: type[Proc], signum: int) -> None:
    with Backend("quick") as backend:
        proc = run_cli("--listen", "127.0.0.1:0", "--upstream", backend.url)
        (port,) = proc.wait_listening()
        with client() as http:
            response = http.get(f"http://127.0.0.1:{port}/", headers={"User-Agent": "cli-test"})
        assert response.status_code == 200
        assert "quick" in response.text
        assert len(backend.requests) == 1

        proc.popen.send_signal(signum)
        assert proc.wait_exit() == 0
    stderr = proc.stderr()
    assert "Traceback" not in stderr
    assert f"{signal.Signals(signum).name}: shutting down gracefully" in stderr
    assert "shutdown complete" in stderr
    # The access log is stdout, one line per exchange in exactly the combined format.
    (line,) = proc.stdout().splitlines()
    assert re.fullmatch(
        r"127\.0\.0\.1 - - \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "
        r'"GET / HTTP/1\.1" 200 \d+ "-" "cli-test"',
        line,
    ), line


@pytest.mark.integration
def test_json_access_log_and_log_level(run_cli: type[Proc]) -> None:
    with Backend("json") as backend:
        backend_port = backend.port
        proc = run_cli(
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            backend.url,
            "--access-log-format",
            "json",
            "--log-level",
            "debug",
            "--seed",
            "1234",
        )
        (port,) = proc.wait_listening()
        with client() as http:
            assert http.get(f"http://127.0.0.1:{port}/?y=1").status_code == 200
        proc.popen.send_signal(signal.SIGTERM)
        assert proc.wait_exit() == 0
    record = json.loads(proc.stdout().splitlines()[0])
    assert record["method"] == "GET"
    assert record["target"] == "/?y=1"
    assert record["status"] == 200
    assert record["upstream"] == f"127.0.0.1:{backend_port}"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d", record["time"])
    assert "DEBUG rng seed 1234" in proc.stderr()


@pytest.mark.integration
def test_port_in_use_is_one_line_exit_1(run_cli: type[Proc]) -> None:
    with contextlib.closing(socket.socket()) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run_cli("--listen", f"127.0.0.1:{port}", "--upstream", "http://127.0.0.1:9")
        assert proc.wait_exit() == 1
    assert (
        proc.stderr() == f"sansproxy: cannot listen on 127.0.0.1:{port}: Address already in use\n"
    )


@pytest.mark.integration
def test_demo_answers_from_all_three_backends(run_cli: type[Proc]) -> None:
    port = free_port()
    proc = run_cli("demo", "--port", str(port))
    assert proc.wait_listening() == [port]
    seen = set()
    with client() as http:
        for _ in range(30):
            response = http.get(f"http://127.0.0.1:{port}/try")
            assert response.status_code == 200
            match = re.fullmatch(r"hello from backend ([123]) \(GET /try\)\n", response.text)
            assert match is not None, response.text
            seen.add(match.group(1))
            if len(seen) == 3:
                break
    assert seen == {"1", "2", "3"}
    assert f"curl http://127.0.0.1:{port}/" in proc.stdout()
    assert f"curl --http2-prior-knowledge http://127.0.0.1:{port}/hello" in proc.stdout()
    # The demo's listener also takes cleartext HTTP/2 with prior knowledge.
    with httpx.Client(http1=False, http2=True, timeout=10) as h2:
        response = h2.get(f"http://127.0.0.1:{port}/h2")
    assert (response.http_version, response.status_code) == ("HTTP/2", 200)
    assert re.fullmatch(r"hello from backend [123] \(GET /h2\)\n", response.text)
    proc.popen.send_signal(signal.SIGINT)
    assert proc.wait_exit() == 0
    assert "Traceback" not in proc.stderr()


def demo_backend(response: httpx.Response) -> str:
    """Which demo backend answered a GET (asserting it was a plain 200)."""
    assert response.status_code == 200, response.text
    match = re.fullmatch(r"hello from backend ([123]) \(GET /\S*\)\n", response.text)
    assert match is not None, response.text
    return match.group(1)


@pytest.mark.integration
def test_quick_mode_takes_caddy_style_addresses(run_cli: type[Proc]) -> None:
    with Backend("caddy-style") as backend:
        # ":0" is every interface on an ephemeral port; no scheme is http.
        proc = run_cli("--listen", ":0", "--upstream", f"localhost:{backend.port}")
        (port,) = proc.wait_listening()
        assert f"listening on http://0.0.0.0:{port}" in proc.stderr()
        with client() as http:
            response = http.get(f"http://127.0.0.1:{port}/")
        assert response.status_code == 200
        assert "caddy-style" in response.text
        proc.popen.send_signal(signal.SIGTERM)
        assert proc.wait_exit() == 0


@pytest.mark.integration
def test_demo_backend_stopped_and_started_again(run_cli: type[Proc]) -> None:
    port = free_port()
    proc = run_cli("demo", "--port", str(port))
    assert proc.wait_listening() == [port]
    url = f"http://127.0.0.1:{port}"
    ports = re.search(r"on ports (\d+), (\d+), (\d+)\n", proc.stdout())
    assert ports is not None, proc.stdout()
    label = f"127.0.0.1:{ports.group(2)}"
    assert f"curl -X POST {url}/_demo/backends/2/stop" in proc.stdout()
    assert f"curl -X POST {url}/_demo/backends/2/start" in proc.stdout()

    def get_until(log_line: str, timeout: float) -> Counter[str]:
        """GET every 50 ms until the proxy logs ``log_line``; which backends answered."""
        seen: Counter[str] = Counter()
        deadline = time.monotonic() + timeout
        while log_line not in proc.stderr():
            assert time.monotonic() < deadline, f"no {log_line!r} in:\n{proc.stderr()}"
            seen[demo_backend(http.get(f"{url}/during"))] += 1
            time.sleep(0.05)
        return seen

    with client() as http:
        rotation = [demo_backend(http.get(f"{url}/before")) for _ in range(6)]
        assert sorted(rotation) == ["1", "1", "2", "2", "3", "3"]

        stopped = http.post(f"{url}/_demo/backends/2/stop")
        assert stopped.status_code == 200
        assert stopped.text.startswith(f"backend 2 stopped: {label} refuses connections")
        # The GETs' failed connects eject it at once; wait for the probes to take it down
        # too (2 failures 1 s apart), as a user watching the log would before starting it.
        while_stopping = get_until(f"server {label} is down: 2 failed probes", timeout=10)
        after = Counter(demo_backend(http.get(f"{url}/after")) for _ in range(10))
        assert "2" not in while_stopping
        assert after == {"1": 5, "3": 5}
        # Stopping the last running backend is refused, so /start stays reachable.
        assert http.post(f"{url}/_demo/backends/1/stop").status_code == 200
        # A POST sent on a pooled connection that backend 1 closed an instant earlier would
        # get 502 (it may have reached the backend, so it is not retried): give the proxy
        # time to see those connections close, as a user typing the next command does.
        time.sleep(0.2)
        last = http.post(f"{url}/_demo/backends/3/stop")
        assert last.status_code == 409
        assert http.get(f"{url}/_demo/backends/1/start").status_code == 405
        assert http.post(f"{url}/_demo/backends/1/start").status_code == 200

        started = http.post(f"{url}/_demo/backends/2/start")
        assert started.status_code == 200
        assert started.text.startswith(f"backend 2 started again on {label}")
        get_until(f"server {label} is up: 2 probes passed", timeout=10)
        back = Counter(demo_backend(http.get(f"{url}/back")) for _ in range(9))
        assert back["2"] >= 1, back
    proc.popen.send_signal(signal.SIGINT)
    assert proc.wait_exit() == 0
    stderr = proc.stderr()
    assert "Traceback" not in stderr
    assert "demo backend 2 stopped" in stderr
    assert "demo backend 2 started again" in stderr
