"""Timing the core benchmark's passes, and splitting their CPU time by library.

Each timed pass is a fresh :class:`~benchmarks.core.driver.Driver` whose :meth:`run` is
measured with ``time.process_time`` (and ``time.perf_counter`` for the wall clock), then
checked. The split comes from one more pass under :mod:`cProfile`: the own time of every
function (its ``tottime``), with the C functions it calls directly, is counted for h11 when
its source file is inside the h11 package (for h2 when inside h2 or its hpack and
hyperframe), for the driver when inside this benchmark; those shares of the profiled total
are then applied to the unprofiled median, since profiling itself slows the code down.
"""

from __future__ import annotations

import cProfile
import gc
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import h2
import h11
import hpack
import hyperframe

from benchmarks.core.driver import REQUEST_PATH, BenchmarkError, Driver, bench_config
from benchmarks.core.wire import WIRES, ClientWire, Request
from sansproxy import ConfigError

__all__ = ["SPLIT_METHOD", "Result", "Settings", "Skipped", "cpu_shares", "measure"]

SPLIT_METHOD = (
    "one more pass under cProfile: each function's own time (tottime), with the C functions "
    "it calls directly, counts for h11 when its file is in the h11 package (for h2 when in "
    "h2, hpack or hyperframe); those shares of the profiled total are applied to the "
    "unprofiled median CPU time"
)


def _folder(module: ModuleType) -> str:
    assert module.__file__ is not None
    return str(Path(module.__file__).resolve().parent) + os.sep


_GROUPS: dict[str, tuple[str, ...]] = {
    "h11": (_folder(h11),),
    "h2": (_folder(h2), _folder(hpack), _folder(hyperframe)),
    "driver": (str(Path(__file__).resolve().parent) + os.sep,),
}
"""Where each group's source files are (the driver: this benchmark's package)."""


class Skipped(Exception):
    """The protocol cannot be measured on this core; the message says why."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """What to measure."""

    protocol: str = "http1"
    exchanges: int = 20_000
    connections: int = 50
    body_size: int = 100
    runs: int = 3


@dataclass(frozen=True, slots=True, kw_only=True)
class Result:
    """The figures of a measurement; per-exchange figures are of the median pass."""

    settings: Settings
    cpu_seconds: tuple[float, ...]
    """CPU time of each timed pass."""
    wall_seconds: tuple[float, ...]
    shares: dict[str, float]
    """Shares of the profiled CPU time: ``h11``, ``h2``, ``driver`` and ``rest`` (which
    includes ``driver``); they add up to 1 without ``driver``."""
    upstream_connections: int
    """Upstream connections the last timed pass opened for requests (probes not counted)."""
    health_probes: int

    @property
    def cpu_us_per_exchange(self) -> float:
        """Median CPU microseconds per exchange."""
        return statistics.median(self.cpu_seconds) / self.settings.exchanges * 1e6

    @property
    def exchanges_per_second(self) -> float:
        """Exchanges per CPU second, from the median pass."""
        return 1e6 / self.cpu_us_per_exchange

    @property
    def wall_exchanges_per_second(self) -> float:
        """Exchanges per wall-clock second, from the median of the passes' wall times."""
        return self.settings.exchanges / statistics.median(self.wall_seconds)

    def us(self, group: str) -> float:
        """Microseconds per exchange spent in ``group`` (a key of :attr:`shares`)."""
        return self.shares[group] * self.cpu_us_per_exchange


def cpu_shares(profiler: cProfile.Profile) -> dict[str, float]:
    """Split a profile's own time into h11, h2, the benchmark driver and the rest.

    A C function's time goes to the group of the Python function that called it (from
    the profile's caller records); one called only from other C functions stays in
    ``rest``. ``rest`` includes ``driver``.
    """
    seconds = dict.fromkeys(_GROUPS, 0.0)
    total = 0.0
    for entry in profiler.getstats():
        total += entry.inlinetime
        if isinstance(entry.code, str):
            continue  # A C function: counted below, with its Python callers.
        filename = str(Path(entry.code.co_filename).resolve())
        for group, prefixes in _GROUPS.items():
            if filename.startswith(prefixes):
                called_c = sum(
                    call.inlinetime for call in entry.calls or () if isinstance(call.code, str)
                )
                seconds[group] += entry.inlinetime + called_c
                break
    if total <= 0:
        raise BenchmarkError("the profiled pass recorded no time")
    shares = {group: value / total for group, value in seconds.items()}
    shares["rest"] = 1.0 - shares["h11"] - shares["h2"]
    return shares


def measure(settings: Settings, progress: Callable[[str], None] = lambda _: None) -> Result:
    """Check the protocol works, then time ``settings.runs`` passes and profile one more.

    Raises:
        Skipped: the core does not speak the protocol (not an HTTP/1.1 failure).
        BenchmarkError: a pass did not complete every exchange correctly.
        ValueError: the settings are out of range.
    """
    if settings.connections < 1 or settings.exchanges < settings.connections:
        raise ValueError("--exchanges must be at least --connections, which must be at least 1")
    if settings.runs < 1 or settings.body_size < 0:
        raise ValueError("--runs must be at least 1 and --body-size at least 0")
    request = Request(authority="bench.example", path=REQUEST_PATH, body_size=settings.body_size)
    wire = WIRES[settings.protocol](request)
    try:
        config = bench_config(wire)
    except ConfigError as error:
        if wire.tls is None:
            raise
        raise Skipped(
            f"the core does not speak {_title(wire)} yet: a listener for it cannot be "
            f"configured ({error})"
        ) from None

    def fresh(exchanges: int) -> Driver:
        return Driver(config, wire, request, connections=settings.connections, exchanges=exchanges)

    # An untimed pass first, two exchanges per connection: it warms the caches, and shows
    # whether the core answers in the wire's protocol at all.
    progress("checking that every exchange completes")
    first = fresh(min(settings.exchanges, 2 * settings.connections))
    first.run()
    if not first.speaks_protocol() and wire.tls is not None:
        raise Skipped(
            f"the core does not speak {_title(wire)} yet: it answered a client that "
            f"negotiated it (TLS, ALPN {wire.tls.alpn}) with {first.first_bytes()!r}"
        )
    first.check()

    cpu: list[float] = []
    wall: list[float] = []
    driver = first
    for run in range(settings.runs):
        progress(f"run {run + 1} of {settings.runs}")
        driver = fresh(settings.exchanges)
        gc.collect()
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        driver.run()
        cpu.append(time.process_time() - cpu_start)
        wall.append(time.perf_counter() - wall_start)
        driver.check()
    progress("one more run under cProfile, for the split")
    profiled = fresh(settings.exchanges)
    profiler = cProfile.Profile()
    gc.collect()
    profiler.enable()
    profiled.run()
    profiler.disable()
    profiled.check()
    return Result(
        settings=settings,
        cpu_seconds=tuple(cpu),
        wall_seconds=tuple(wall),
        shares=cpu_shares(profiler),
        upstream_connections=driver.opened - driver.probes,
        health_probes=driver.probes,
    )


def _title(wire: ClientWire) -> str:
    return {"http1": "HTTP/1.1", "h2": "HTTP/2"}.get(wire.name, wire.name)
