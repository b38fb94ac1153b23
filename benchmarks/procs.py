"""Processes the suite starts: free ports, CPU pinning, readiness, memory, stopping by pid.

Every process is started in its own session, so that what it leaves behind (nginx's
workers, proxy.py's acceptors) can be stopped through its process group, and nothing the
suite did not start is ever signalled.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import resource
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CpuLayout",
    "Process",
    "cpu_layout",
    "free_port",
    "http_get",
    "raise_fd_limit",
    "tree_memory",
]

_STOP_GRACE = 15.0


@dataclass(frozen=True)
class CpuLayout:
    """Which CPUs the proxy and the load side (load generator and backend) may use.

    ``None`` means "not pinned": the machine has too few CPUs to give each side its own.
    """

    cpus: tuple[int, ...]
    load: frozenset[int] | None

    def proxy(self, width: int) -> frozenset[int] | None:
        """CPUs for a proxy that uses ``width`` cores, or ``None`` if they cannot be spared."""
        if self.load is None or len(self.cpus) < width + 1:
            return None
        return frozenset(self.cpus[:width])

    def load_for(self, width: int) -> frozenset[int] | None:
        """CPUs of the load side while a proxy of ``width`` cores runs (``None``: unpinned)."""
        if self.proxy(width) is None:
            return None
        return frozenset(self.cpus[width:])

    def describe(self, width: int) -> str:
        """One line for the report: who runs where."""
        proxy = self.proxy(width)
        if proxy is None:
            return f"not pinned ({len(self.cpus)} CPUs: too few to separate)"
        load = self.load_for(width)
        assert load is not None
        return (
            f"proxy on CPU {_cpu_list(proxy)}, load generator and backend on CPU {_cpu_list(load)}"
        )


def _cpu_list(cpus: frozenset[int]) -> str:
    return ",".join(str(cpu) for cpu in sorted(cpus))


def cpu_layout(pin: bool = True) -> CpuLayout:
    """The CPUs this process may use, split as proxy first, load side after, when ``pin``."""
    cpus = tuple(sorted(os.sched_getaffinity(0)))
    if not pin or len(cpus) < 2:
        return CpuLayout(cpus=cpus, load=None)
    return CpuLayout(cpus=cpus, load=frozenset(cpus[1:]))


def raise_fd_limit() -> int:
    """Raise this process's open-file limit to its hard limit; return the new soft limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def http_get(
    port: int, path: str, timeout: float = 5.0, tls: ssl.SSLContext | None = None
) -> tuple[int, int]:
    """``GET path`` on ``127.0.0.1:port`` (over TLS with ``tls``): status and body length."""
    connection = (
        http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        if tls is None
        else http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=tls)
    )
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, len(response.read())
    finally:
        connection.close()


def _preexec(cpus: frozenset[int] | None) -> Callable[[], None]:
    def setup() -> None:
        raise_fd_limit()
        if cpus is not None:
            os.sched_setaffinity(0, cpus)

    return setup


class Process:
    """A started program: its pid, its output files, how to stop it and how much it holds."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        logs: Path,
        cpus: frozenset[int] | None,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.stdout_path = logs / f"{name}.stdout"
        self.stderr_path = logs / f"{name}.stderr"
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                env={**os.environ, **(env or {})},
                cwd=cwd,
                preexec_fn=_preexec(cpus),  # noqa: PLW1509  (no threads run in the suite)
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        """The process id."""
        return self.popen.pid

    def tail(self, lines: int = 5) -> str:
        """The last lines of its stderr (and stdout), to explain a failure."""
        text: list[str] = []
        for path in (self.stderr_path, self.stdout_path):
            with contextlib.suppress(OSError):
                text += path.read_text(errors="replace").splitlines()[-lines:]
        return " | ".join(line.strip() for line in text if line.strip())[-600:]

    def wait_http(
        self,
        port: int,
        path: str,
        expect_bytes: int,
        timeout: float = 30.0,
        tls: ssl.SSLContext | None = None,
    ) -> str:
        """Poll ``GET path`` until it answers 200 with ``expect_bytes``; '' or the problem.

        With ``tls`` the requests go over TLS (HTTP/1.1), checked with that client context.
        """
        deadline = time.monotonic() + timeout
        problem = "no answer"
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                return f"exited with status {self.popen.returncode}: {self.tail()}"
            try:
                status, length = http_get(port, path, tls=tls)
            except (OSError, http.client.HTTPException) as error:
                problem = f"{type(error).__name__}: {error}"
            else:
                if status == 200 and length == expect_bytes:
                    return ""
                problem = f"answered {status} with {length} bytes"
            time.sleep(0.2)
        return f"not ready after {timeout:.0f} s ({problem}): {self.tail()}"

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Stop it (``sig``, SIGKILL after a grace period) and what is left in its group."""
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(_STOP_GRACE)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        # Its session id is its pid: helpers it forked and left behind are ours to stop.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    return children


def _status_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_memory(pid: int) -> tuple[int, int]:
    """(resident, peak resident) bytes of ``pid`` and all its descendants, summed.

    The peak is the sum of each process's own high-water mark (``VmHWM``): for several
    processes it is an upper bound of the peak of their sum.
    """
    children = _children()
    todo, seen = [pid], set[int]()
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(children.get(current, []))
    rss = sum(_status_kib(member, "VmRSS") for member in seen)
    hwm = sum(_status_kib(member, "VmHWM") for member in seen)
    return rss * 1024, hwm * 1024
