"""Failover under load: SIGKILL one of three backends, restart it, and the clients see nothing.

Three backends run as separate processes (``_http_backend_proc.py``) behind one
upstream with active health checks. Eight keep-alive httpx clients send GETs
without pause while one backend is killed with SIGKILL and, a little later,
started again on the same port. The test asserts:

- every GET gets a 200 (no error status, no connection error): requests that
  hit the dead backend are retried on another server;
- the dead backend is marked down within the configured bound: ``fall`` probes
  of ``interval`` (plus jitter) and a probe ``timeout``;
- once restarted it is marked up after ``rise`` passing probes, within the same
  kind of bound, and serves traffic again.

Times come from a thread that tails the proxy's stderr (the log's own
timestamps have one-second resolution) and are measured from the kill and from
the moment the restarted backend listens. The figures are printed (``pytest -s``).
"""

from __future__ import annotations

import contextlib
import re
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from conftest import RunningProxy, proxy_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

Start = Callable[..., RunningProxy]
SCRIPT = Path(__file__).resolve().parent / "_http_backend_proc.py"

INTERVAL = 0.5
JITTER = 0.1
PROBE_TIMEOUT = 0.4
RISE = 2
FALL = 2
CLIENTS = 8
SLACK = 0.5
"""Scheduling allowance on a loaded two-core machine, on top of each computed bound."""
DOWN_BOUND = FALL * INTERVAL * (1 + JITTER) + PROBE_TIMEOUT + SLACK
"""The next probe comes within one jittered interval, and ``fall`` must fail in a row."""
UP_BOUND = RISE * INTERVAL * (1 + JITTER) + PROBE_TIMEOUT + SLACK
"""From the restarted backend listening to ``rise`` probes passed."""
KILL_AFTER = 1.5
DEAD_FOR = 2.5
RUN_AFTER_UP = 1.0


@dataclass(slots=True)
class BackendProc:
    """One backend process; ``port`` stays the same across restarts."""

    name: str
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> float:
        """Start the process and wait for ``ready PORT``; returns when it listened (monotonic)."""
        proc = subprocess.Popen(
            [sys.executable, str(SCRIPT), "--name", self.name, "--port", str(self.port)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
        )
        self.stop()  # the previous run's pipe, after a kill
        self.proc = proc
        assert proc.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            if not selector.select(10):
                raise AssertionError(f"backend {self.name} did not start")
        line = proc.stdout.readline().decode()
        ready = time.monotonic()
        match = re.fullmatch(r"ready (\d+)\n", line)
        assert match is not None, f"backend {self.name} printed {line!r}"
        self.port = int(match.group(1))
        return ready

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(5)

    def stop(self) -> None:
        """Kill by PID if it still runs; close the pipe."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def label(self) -> str:
        return f"127.0.0.1:{self.port}"


class LogWatcher:
    """Tails a log file in a thread; every line with the monotonic time it was first seen."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with self.path.open("rb") as log:
            pending = b""
            while not self._stop.is_set():
                chunk = log.read()
                if not chunk:
                    time.sleep(0.005)
                    continue
                seen = time.monotonic()
                pending += chunk
                *complete, pending = pending.split(b"\n")
                with self._lock:
                    self.lines.extend((seen, line.decode(errors="replace")) for line in complete)

    def first(self, needle: str, after: float) -> tuple[float, str] | None:
        with self._lock:
            return next(
                ((t, line) for t, line in self.lines if t >= after and needle in line), None
            )

    def wait_for(self, needle: str, after: float, timeout: float) -> tuple[float, str] | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.first(needle, after)
            if found is not None:
                return found
            time.sleep(0.01)
        return self.first(needle, after)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


@dataclass(slots=True)
class Load:
    """Closed-loop GETs from ``CLIENTS`` keep-alive clients until :meth:`stop` (bounded)."""

    url: str
    limit: float = 30.0
    """No client loops longer than this, whatever happens to the test."""
    results: list[tuple[float, float, str | None, str | None]] = field(default_factory=list)
    """(when the request was sent, when its response arrived, backend name, error)."""
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for index in range(CLIENTS):
            thread = threading.Thread(target=self._loop, args=(index,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _loop(self, index: int) -> None:
        end = time.monotonic() + self.limit
        with httpx.Client(trust_env=False, timeout=5.0) as http:
            count = 0
            while not self._stop.is_set() and time.monotonic() < end:
                count += 1
                target = f"{self.url}/anything/{index}/{count}"
                backend = error = None
                sent = time.monotonic()
                try:
                    response = http.get(target)
                except httpx.HTTPError as raised:
                    error = f"{type(raised).__name__}: {raised}"
                else:
                    name, _, rest = response.text.partition(" ")
                    if response.status_code != 200:
                        error = f"status {response.status_code}: {response.text[:200]!r}"
                    elif rest != f"GET /anything/{index}/{count}\n":
                        error = f"unexpected body {response.text[:200]!r}"
                    else:
                        backend = name
                with self._lock:
                    self.results.append((sent, time.monotonic(), backend, error))

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(10)

    def snapshot(self) -> list[tuple[float, float, str | None, str | None]]:
        with self._lock:
            return list(self.results)

    def served_by(self, name: str, after: float) -> float | None:
        """When ``name`` first answered at or after ``after``."""
        return next((t for _, t, who, _ in self.snapshot() if who == name and t >= after), None)


def wait_until(predicate: Callable[[], object], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())


def test_sigkill_and_restart_under_load(start_proxy: Start, adapter: str) -> None:
    backends = [BackendProc(name) for name in ("b1", "b2", "b3")]
    victim = backends[1]
    watcher: LogWatcher | None = None
    load: Load | None = None
    try:
        for backend in backends:
            backend.start()
        config = proxy_config(
            *(b.url for b in backends),
            upstream={
                "health_check": {
                    "path": "/health",
                    "interval": INTERVAL,
                    "jitter": JITTER,
                    "timeout": PROBE_TIMEOUT,
                    "rise": RISE,
                    "fall": FALL,
                }
            },
            logging={"access_log": False},
        )
        proxy = start_proxy(config)
        watcher = LogWatcher(proxy.stderr_path)
        load = Load(proxy.url)
        started = time.monotonic()
        load.start()

        # Every backend takes traffic before anything fails.
        assert wait_until(lambda: all(load.served_by(b.name, started) for b in backends), 5)
        time.sleep(max(0.0, started + KILL_AFTER - time.monotonic()))

        killed = time.monotonic()
        victim.kill()
        dead_since = time.monotonic()  # the process has exited
        down_line = f"server {victim.label} is down"
        down = watcher.wait_for(down_line, killed, DOWN_BOUND + 2)
        probe_down = watcher.wait_for(f"{down_line}: {FALL} failed probes", killed, DOWN_BOUND + 2)

        time.sleep(max(0.0, killed + DEAD_FOR - time.monotonic()))
        dead = [
            sent for sent, _, who, _ in load.snapshot() if who == victim.name and sent > dead_since
        ]
        listening = victim.start()
        up = watcher.wait_for(f"server {victim.label} is up", listening, 15)
        back = None
        if up is not None:
            wait_until(lambda: load.served_by(victim.name, up[0]), 3)
            back = load.served_by(victim.name, up[0])
            time.sleep(RUN_AFTER_UP)
        load.stop()
        stopped = time.monotonic()

        results = load.snapshot()
        failures = [error for _, _, _, error in results if error is not None]
        per_backend = Counter(who for _, _, who, _ in results if who is not None)
        figures = {
            "adapter": adapter,
            "requests": len(results),
            "failed": len(failures),
            "sent_during_outage": sum(
                killed <= sent <= (stopped if up is None else up[0]) for sent, *_ in results
            ),
            "per_backend": dict(sorted(per_backend.items())),
            "rate_per_s": round(len(results) / (stopped - started)),
            "mark_down_s": None if down is None else round(down[0] - killed, 3),
            "mark_down_reason": None if down is None else down[1].split(" is down: ", 1)[1],
            "probes_down_s": None if probe_down is None else round(probe_down[0] - killed, 3),
            "mark_up_after_restart_s": None if up is None else round(up[0] - listening, 3),
            "mark_up_reason": None if up is None else up[1].split(" is up: ", 1)[1],
            "traffic_again_after_restart_s": None if back is None else round(back - listening, 3),
            "down_bound_s": round(DOWN_BOUND, 3),
            "up_bound_s": round(UP_BOUND, 3),
        }
        print(f"\nfailover figures: {figures}")
        health = [line for _, line in list(watcher.lines) if "upstream app: server" in line]
        print("\n".join(health))

        assert failures == [], f"{len(failures)} failed GETs, first: {failures[:5]}"
        assert all(per_backend[b.name] > 0 for b in backends), per_backend
        assert dead == [], "requests sent after the kill were answered by the dead backend"
        assert down is not None, f"no '{down_line}' line"
        assert down[0] - killed <= DOWN_BOUND, figures
        assert probe_down is not None, "the probes never marked the killed backend down"
        assert probe_down[0] - killed <= DOWN_BOUND, figures
        assert up is not None, f"the restarted backend was not marked up: {health}"
        assert up[1].endswith(f"{RISE} probes passed"), up[1]
        assert up[0] - listening <= UP_BOUND, figures
        assert back is not None, "the restarted backend got no traffic after it was marked up"
    finally:
        if load is not None:
            load.stop()
        if watcher is not None:
            watcher.close()
        for backend in backends:
            with contextlib.suppress(OSError):
                backend.stop()
