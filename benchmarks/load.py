"""Load generators: wrk for request rates, curl for large transfers, a client for idle sockets.

h2load, for the TLS scenarios, is in :mod:`benchmarks.h2load`; the idle HTTP/2 client in
:mod:`benchmarks.idle_h2`.

Each returns a :class:`Sample`: one measurement, with its errors counted rather than
hidden. A run that failed outright has ``value`` 0 and says why in ``detail``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import subprocess
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from benchmarks.procs import raise_fd_limit

__all__ = [
    "Held",
    "Sample",
    "curl_download",
    "curl_upload",
    "hold_connections",
    "hold_idle",
    "parse_wrk",
    "wrk",
]


@dataclass(frozen=True)
class Sample:
    """One measurement of one peer in one scenario."""

    value: float  # requests/s, MB/s (10**6 bytes) or bytes per idle connection
    p50_ms: float | None = None
    p99_ms: float | None = None
    errors: int = 0  # socket errors, non-2xx answers, failed or closed connections
    timeouts: int = 0
    detail: str = ""
    extra: dict[str, float] = field(default_factory=dict)


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}
_BYTES = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}
"""wrk's "MB read" are binary multiples (it divides by 1024)."""


def _millis(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def parse_wrk(output: str) -> Sample:
    """Requests/s, p50, p99 and errors from ``wrk --latency`` output."""
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if rate is None:
        return Sample(0.0, errors=1, detail="no 'Requests/sec' in wrk output: " + output[-300:])
    percentiles = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", output, re.M))
    errors = timeouts = 0
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if sockets is not None:
        connect, read, write, timeouts = (int(group) for group in sockets.groups())
        errors += connect + read + write + timeouts
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx is not None:
        errors += int(non_2xx.group(1))
    requests = re.search(r"(\d+) requests in [^,]+, ([\d.]+)([KMGT]?B) read", output)
    extra: dict[str, float] = {}
    if requests:
        extra["requests"] = float(requests.group(1))
        extra["bytes_read"] = float(requests.group(2)) * _BYTES[requests.group(3)]
    return Sample(
        float(rate.group(1)),
        p50_ms=_millis(percentiles["50"]) if "50" in percentiles else None,
        p99_ms=_millis(percentiles["99"]) if "99" in percentiles else None,
        errors=errors,
        timeouts=timeouts,
        extra=extra,
    )


def wrk(
    binary: str,
    url: str,
    *,
    connections: int,
    seconds: float,
    threads: int,
    run: Callable[[list[str], float], str],
    headers: Sequence[str] = (),
) -> Sample:
    """Run wrk against ``url`` (``run`` executes it on the load CPUs and returns stdout)."""
    argv = [binary, f"-t{min(threads, connections)}", f"-c{connections}", f"-d{seconds:g}s"]
    for header in headers:
        argv += ["-H", header]
    argv += ["--latency", "--timeout", "2s", url]
    try:
        output = run(argv, seconds + 30)
    except subprocess.TimeoutExpired:
        return Sample(0.0, errors=1, detail="wrk did not finish")
    return parse_wrk(output)


def _curl_fields(output: str, names: tuple[str, ...]) -> dict[str, float] | None:
    last = output.strip().splitlines()[-1:] or [""]
    parts = last[0].split()
    if len(parts) != len(names):
        return None
    try:
        return dict(zip(names, (float(part) for part in parts), strict=True))
    except ValueError:
        return None


def curl_download(
    binary: str, url: str, *, size: int, run: Callable[[list[str], float], str], timeout: float
) -> Sample:
    """Download ``url`` to /dev/null; MB/s, checked against the expected ``size``."""
    argv = [binary, "-sS", "-o", "/dev/null", "--max-time", f"{timeout:g}"]
    argv += ["-w", "%{http_code} %{size_download} %{speed_download}\n", url]
    try:
        fields = _curl_fields(run(argv, timeout + 10), ("code", "size", "speed"))
    except subprocess.TimeoutExpired:
        fields = None
    if fields is None or fields["code"] != 200 or fields["size"] != size:
        return Sample(0.0, errors=1, detail=f"download failed or short: {fields}")
    return Sample(fields["speed"] / 1e6)


def curl_upload(
    binary: str,
    url: str,
    *,
    source: Path,
    size: int,
    run: Callable[[list[str], float], str],
    timeout: float,
) -> Sample:
    """Upload ``source`` (``size`` bytes) with POST; MB/s, checked by the sink's byte count."""
    # "Expect:" turns off curl's 100-continue wait, which would add a second to every run.
    argv = [binary, "-sS", "-X", "POST", "-T", str(source), "-H", "Expect:"]
    argv += ["--max-time", f"{timeout:g}"]
    argv += ["-w", "\n%{http_code} %{size_upload} %{speed_upload}\n", url]
    try:
        output = run(argv, timeout + 10)
    except subprocess.TimeoutExpired:
        return Sample(0.0, errors=1, detail="curl did not finish")
    fields = _curl_fields(output, ("code", "size", "speed"))
    received = f"received {size} bytes" in output
    if fields is None or fields["code"] != 200 or fields["size"] != size or not received:
        return Sample(0.0, errors=1, detail=f"upload failed or short: {output.strip()[-200:]}")
    return Sample(fields["speed"] / 1e6)


_REQUEST = b"GET /100b HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


class Held(Protocol):
    """One connection held open by :func:`hold_connections`."""

    def alive(self) -> bool:
        """Whether the proxy has kept it open so far."""

    async def close(self) -> None:
        """Close it and wait until it is closed (errors ignored)."""


class _Http1Held:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    def alive(self) -> bool:
        return not self._reader.at_eof()  # the proxy sends nothing before closing an idle one

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()


async def _open_http1(port: int) -> Held | None:
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 30)
        writer.write(_REQUEST)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
        length = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
        if not head.startswith(b"HTTP/1.1 200") or length is None:
            writer.close()
            return None
        await asyncio.wait_for(reader.readexactly(int(length.group(1))), 30)
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
        return None
    return _Http1Held(reader, writer)


async def _hold(
    open_one: Callable[[], Awaitable[Held | None]],
    count: int,
    measure: Callable[[], int],
    settle: float,
) -> Sample:
    gate = asyncio.Semaphore(100)

    async def gated() -> Held | None:
        async with gate:
            return await open_one()

    before = measure()
    started = time.monotonic()
    opened = await asyncio.gather(*(gated() for _ in range(count)))
    connections = [held for held in opened if held is not None]
    took = time.monotonic() - started
    await asyncio.sleep(settle)
    after = measure()
    await asyncio.sleep(0.1)
    alive = sum(1 for held in connections if held.alive())
    await asyncio.gather(*(held.close() for held in connections), return_exceptions=True)
    errors = count - alive
    if alive == 0:
        return Sample(0.0, errors=errors, detail="no connection stayed open")
    detail = f"{alive} of {count} open; opened in {took:.1f} s" if errors else ""
    return Sample(
        (after - before) / alive,
        errors=errors,
        detail=detail,
        extra={
            "rss_before": float(before),
            "rss_after": float(after),
            "alive": float(alive),
            "open_seconds": round(took, 2),
        },
    )


def hold_connections(
    open_one: Callable[[], Awaitable[Held | None]],
    count: int,
    measure: Callable[[], int],
    settle: float = 2.0,
) -> Sample:
    """Open ``count`` connections with ``open_one`` (100 at a time) and keep them open.

    ``open_one`` connects, makes one request and reads its answer, or returns ``None``.
    ``measure`` returns the proxy's resident bytes; the sample is the growth per connection
    still open after ``settle`` seconds. Connections that failed or that the proxy closed
    count as errors.
    """
    raise_fd_limit()
    return asyncio.run(_hold(open_one, count, measure, settle))


def hold_idle(port: int, count: int, measure: Callable[[], int], settle: float = 2.0) -> Sample:
    """Open ``count`` HTTP/1.1 keep-alive connections, one request each, and keep them open.

    See :func:`hold_connections`.
    """
    return hold_connections(functools.partial(_open_http1, port), count, measure, settle)
