"""A real session over sockets, recorded with ``--record``, replays exactly.

The proxy runs as ``python -m sansproxy_trio --loop LOOP --config FILE --record REC`` and
serves real traffic: keep-alive requests, an upload, error responses from the backend and
from the proxy, a backend that dies mid-response, a backend that is down, a client that
goes quiet until its timer fires. After SIGTERM, ``python -m sansproxy_trio replay REC``
must report that a fresh core returns the very same commands; with the recorded
configuration changed, it must report the first difference.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from backend import Backend, RawClient

from sansproxy_io.record import FORMAT_VERSION

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0
LISTENING = re.compile(r"listening on http://([0-9.]+):(\d+)")


def env() -> dict[str, str]:
    environment = dict(os.environ)
    paths = [str(REPO), str(REPO / "adapters")]
    if environment.get("PYTHONPATH"):
        paths.append(environment["PYTHONPATH"])
    environment["PYTHONPATH"] = os.pathsep.join(paths)
    environment["PYTHONUNBUFFERED"] = "1"
    return environment


def records_on(adapter: str) -> bool:
    """Whether ``--loop adapter`` passes ``--record`` on (asyncio needs ``record=``)."""
    if adapter == "trio":
        return True
    serve = importlib.import_module("sansproxy_asyncio").serve_asyncio
    return "record" in inspect.signature(serve).parameters


@dataclass(slots=True)
class Proxy:
    proc: subprocess.Popen[bytes]
    ports: list[int]
    stderr_path: Path

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


@contextlib.contextmanager
def proxy_process(adapter: str, config_text: str, record: Path, workdir: Path) -> Iterator[Proxy]:
    """Start the proxy with ``--record``; on exit, make sure it is gone (killed by PID)."""
    config_path = workdir / "proxy.toml"
    config_path.write_text(config_text)
    stderr_path = workdir / "proxy.stderr"
    command = [sys.executable, "-m", "sansproxy_trio", "--loop", adapter]
    command += ["--config", str(config_path), "--record", str(record), "--seed", "4242"]
    with (workdir / "proxy.stdout").open("wb") as out, stderr_path.open("wb") as err:
        proc = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=workdir, env=env()
        )
    running = Proxy(proc=proc, ports=[], stderr_path=stderr_path)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while len(found := LISTENING.findall(running.stderr())) < 2:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the proxy did not start:\n{running.stderr()}")
            time.sleep(0.05)
        running.ports = [int(port) for _host, port in found]
        yield running
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def replay_command(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sansproxy_trio", "replay", str(path)],
        capture_output=True,
        text=True,
        env=env(),
        timeout=60,
        check=False,
    )


def config_text(backend: Backend, dead_port: int) -> str:
    return f"""\
[[listeners]]
address = "127.0.0.1:0"
upstream = "app"

[[listeners]]
address = "127.0.0.1:0"
upstream = "dead"

[upstreams.app]
servers = ["{backend.url}"]

[upstreams.dead]
servers = ["http://127.0.0.1:{dead_port}"]

[timeouts]
client_header = 0.5
client_keepalive = 0.5
"""


def drive_traffic(app: int, dead: int) -> None:
    """Real clients: every request's outcome is checked, so the session is what we think."""
    with httpx.Client(base_url=f"http://127.0.0.1:{app}", timeout=10) as client:
        for _ in range(3):  # keep-alive: one client connection
            assert client.get("/").status_code == 200
        body = bytes(range(256)) * 1024  # 256 KiB upload
        echoed = client.post("/echo?digest=1", content=body)
        assert echoed.status_code == 200
        assert echoed.json()["bytes"] == len(body)
        assert client.get("/status?code=503").status_code == 503
        with pytest.raises(httpx.HTTPError):
            client.get("/die?after=10")  # the backend dies mid-response: the client is reset
        assert len(client.get("/bytes?n=100000&chunked=1").content) == 100000
    with httpx.Client(base_url=f"http://127.0.0.1:{dead}", timeout=10) as client:
        assert client.get("/").status_code == 502  # nobody listens on that backend
    with RawClient(app) as raw:
        assert raw.request("GET", "/", headers=[("Content-Length", "x")]).status == 400
    with RawClient(app) as raw:  # quiet: the header timer answers 408 and closes
        assert raw.read_to_eof().startswith(b"HTTP/1.1 408 ")


def records_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.timeout(120)
def test_a_recorded_session_over_sockets_replays_exactly(
    adapter: str, backend: Backend, closed_port: int, tmp_path: Path
) -> None:
    if not records_on(adapter):
        pytest.skip(f"the {adapter} adapter does not take record= yet")
    record = tmp_path / "session.jsonl"
    started = time.time()
    with proxy_process(adapter, config_text(backend, closed_port), record, tmp_path) as proxy:
        drive_traffic(*proxy.ports)
        proxy.proc.send_signal(signal.SIGTERM)
        assert proxy.proc.wait(STOP_TIMEOUT) == 0, proxy.stderr()
    stopped = time.time()
    assert "Traceback" not in proxy.stderr()

    header, *steps, end = records_of(record)
    assert header["seed"] == 4242
    assert header["version"] == FORMAT_VERSION
    # Every turn carries the wall clock the adapter read for it (the system clock here).
    turns = [step for step in steps if "t" in step]
    assert turns
    assert all(started <= step["w"] <= stopped for step in turns)
    assert header["config"]["source"].endswith("proxy.toml")
    assert end == {"end": {"turns": len(steps)}}
    events = {step["event"]["type"] for step in steps if "event" in step}
    assert {
        "ConnectionAccepted",
        "DataReceived",
        "Written",
        "UpstreamConnected",
        "UpstreamFailed",
        "ShutdownRequested",
    } <= events
    assert "EofReceived" in events or "ConnectionLost" in events
    assert any(step.get("timeout") for step in steps), "no timer turn was recorded"
    uploaded = sum(
        len(step["event"]["data"]) * 3 // 4
        for step in steps
        if step.get("event", {}).get("type") == "DataReceived"
    )
    assert uploaded > 256 * 1024

    replayed = replay_command(record)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert replayed.stdout == f"replayed {len(steps)} turns: identical\n"


@pytest.mark.adapters("trio")
@pytest.mark.timeout(120)
def test_a_recording_replayed_with_another_configuration_differs(
    adapter: str, backend: Backend, backend_b: Backend, closed_port: int, tmp_path: Path
) -> None:
    record = tmp_path / "session.jsonl"
    with proxy_process(adapter, config_text(backend, closed_port), record, tmp_path) as proxy:
        drive_traffic(*proxy.ports)
        proxy.proc.send_signal(signal.SIGTERM)
        assert proxy.proc.wait(STOP_TIMEOUT) == 0, proxy.stderr()

    lines = record.read_text().splitlines(keepends=True)
    header = json.loads(lines[0])
    header["config"]["text"] = header["config"]["text"].replace(backend.url, backend_b.url)
    lines[0] = json.dumps(header) + "\n"
    changed = tmp_path / "changed.jsonl"
    changed.write_text("".join(lines))

    turn = next(
        index
        for index, line in enumerate(lines[1:], start=1)
        if any(c["type"] == "OpenUpstream" for c in json.loads(line).get("commands", []))
    )
    replayed = replay_command(changed)
    assert replayed.returncode == 1, replayed.stdout + replayed.stderr
    summary, where, *details = replayed.stdout.splitlines()
    assert summary == f"replayed {turn} turns: different"
    assert where.startswith(f"turn {turn} (line {turn + 1}) at t=")
    assert f'expected: OpenUpstream(conn=2, host="127.0.0.1", port={backend.port}' in (
        replayed.stdout
    )
    assert f'actual:   OpenUpstream(conn=2, host="127.0.0.1", port={backend_b.port}' in (
        replayed.stdout
    )
    assert details


@pytest.mark.adapters("trio")
@pytest.mark.timeout(120)
def test_a_killed_proxy_leaves_a_replayable_recording(
    adapter: str, backend: Backend, closed_port: int, tmp_path: Path
) -> None:
    record = tmp_path / "session.jsonl"
    with proxy_process(adapter, config_text(backend, closed_port), record, tmp_path) as proxy:
        drive_traffic(*proxy.ports)
        time.sleep(1.5)  # the recording is flushed about once a second
        proxy.proc.kill()
        proxy.proc.wait(STOP_TIMEOUT)
    text = record.read_text()
    assert '"end"' not in text
    replayed = replay_command(record)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    summary, note = replayed.stdout.splitlines()
    assert re.fullmatch(r"replayed \d+ turns: identical", summary)
    if text.endswith("\n"):
        assert note == "note: the recording has no end line (the proxy did not shut down)"
    else:
        assert note == "note: the last line was cut off mid-write and was ignored"
    assert int(summary.split()[1]) >= 30
