"""``python -m benchmarks core``: run the in-process benchmark of the core and report it.

Usage::

    python -m benchmarks core                         # 20,000 exchanges, 50 connections, 3 runs
    python -m benchmarks core --body-size 16KiB --runs 5 --json core.json
    python -m benchmarks core --protocol h2           # skipped until the core speaks HTTP/2

Exit status: 0 when measured (or skipped because the core lacks the protocol, which the
output says), 1 when an exchange did not complete correctly, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

from benchmarks.core.driver import SERVERS, BenchmarkError
from benchmarks.core.measure import SPLIT_METHOD, Result, Settings, Skipped, measure
from benchmarks.core.wire import WIRES
from benchmarks.machine import commit, load_average
from sansproxy.config import parse_size

__all__ = ["main"]

_TITLES = {"http1": "HTTP/1.1", "h2": "HTTP/2"}


def _count(text: str) -> int:
    try:
        value = int(text.replace(",", "").replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be at least 1")
    return value


def _size(text: str) -> int:
    try:
        return parse_size(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _parser() -> argparse.ArgumentParser:
    defaults = Settings()
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks core",
        description="Drive sansproxy.Proxy in process, with no sockets, and measure its CPU "
        "time per exchange: inside h11 (or h2) and the rest.",
    )
    parser.add_argument(
        "--protocol", choices=list(WIRES), default=defaults.protocol, help="client protocol"
    )
    parser.add_argument(
        "--exchanges", type=_count, default=defaults.exchanges, metavar="N", help="in all (20000)"
    )
    parser.add_argument(
        "--connections",
        type=_count,
        default=defaults.connections,
        metavar="K",
        help="keep-alive client connections (50)",
    )
    parser.add_argument(
        "--body-size",
        type=_size,
        default=defaults.body_size,
        metavar="SIZE",
        help="response body, such as 100 or 16KiB (100)",
    )
    parser.add_argument(
        "--runs", type=_count, default=defaults.runs, metavar="N", help="timed runs (3)"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    return parser


def _versions() -> dict[str, str]:
    return {name: importlib.metadata.version(name) for name in ("h11", "h2")}


def _describe(settings: Settings) -> str:
    return (
        f"{settings.exchanges:,} exchanges (GET, {settings.body_size:,}-byte responses) on "
        f"{settings.connections} keep-alive client connections, {len(SERVERS)} backend "
        f"servers with pooled connections and an active health check; "
        f"{settings.runs} run(s), median shown"
    )


def _wrapped(text: str) -> str:
    return textwrap.fill(text, width=100, initial_indent="  ", subsequent_indent="    ")


def _report(result: Result, load_before: str, load_after: str) -> str:
    settings = result.settings
    per_cpu = sorted(settings.exchanges / seconds for seconds in result.cpu_seconds)
    lines = [
        f"sansproxy core, in process (no sockets), {_TITLES[settings.protocol]}",
        _wrapped(_describe(settings)),
        f"  exchanges/s        {result.exchanges_per_second:9,.0f} per CPU second "
        f"(runs {per_cpu[0]:,.0f}-{per_cpu[-1]:,.0f}); "
        f"{result.wall_exchanges_per_second:,.0f} per wall-clock second",
        f"  CPU per exchange   {result.cpu_us_per_exchange:9.1f} µs",
        f"    inside h11       {result.us('h11'):9.1f} µs  {result.shares['h11']:6.1%}",
    ]
    if settings.protocol == "h2":
        lines.append(
            f"    inside h2        {result.us('h2'):9.1f} µs  {result.shares['h2']:6.1%}"
            "  (h2, hpack, hyperframe)"
        )
    lines += [
        f"    the rest         {result.us('rest'):9.1f} µs  {result.shares['rest']:6.1%}"
        f"  (of which the benchmark's own driver: {result.us('driver'):.1f} µs)",
        _wrapped(f"split: {SPLIT_METHOD}"),
        _wrapped(
            f"checked: all {settings.exchanges:,} exchanges of every run complete with status "
            f"200 and a {settings.body_size:,}-byte body, as each client parsed them; "
            f"upstream connections opened: {result.upstream_connections}; "
            f"health probes answered: {result.health_probes}"
        ),
        f"  load average: {load_before} before, {load_after} after",
    ]
    return "\n".join(lines)


def _json(result: Result | None, settings: Settings, skipped: str, loads: list[str]) -> object:
    document: dict[str, object] = {
        "benchmark": "core",
        "settings": {
            "protocol": settings.protocol,
            "exchanges": settings.exchanges,
            "connections": settings.connections,
            "body_size": settings.body_size,
            "runs": settings.runs,
            "servers": len(SERVERS),
        },
        "skipped": skipped or None,
        "commit": commit(),
        "python": sys.version.split()[0],
        "versions": _versions(),
        "load_average": {"before": loads[0], "after": loads[-1]},
    }
    if result is not None:
        document.update(
            {
                "exchanges_per_second": round(result.exchanges_per_second, 1),
                "wall_exchanges_per_second": round(result.wall_exchanges_per_second, 1),
                "cpu_us_per_exchange": round(result.cpu_us_per_exchange, 2),
                "h11_us": round(result.us("h11"), 2),
                "h2_us": round(result.us("h2"), 2),
                "rest_us": round(result.us("rest"), 2),
                "driver_us": round(result.us("driver"), 2),
                "shares": {key: round(value, 4) for key, value in result.shares.items()},
                "split_method": SPLIT_METHOD,
                "cpu_seconds": [round(value, 4) for value in result.cpu_seconds],
                "wall_seconds": [round(value, 4) for value in result.wall_seconds],
                "all_exchanges_correct": True,
                "upstream_connections": result.upstream_connections,
                "health_probes": result.health_probes,
            }
        )
    return document


def main(argv: Sequence[str] | None = None) -> int:
    """Run the core benchmark with ``argv`` (default: ``sys.argv[1:]``); the exit status."""
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    settings = Settings(
        protocol=args.protocol,
        exchanges=args.exchanges,
        connections=args.connections,
        body_size=args.body_size,
        runs=args.runs,
    )
    if settings.exchanges < settings.connections:
        print("benchmarks core: --exchanges must be at least --connections", file=sys.stderr)
        return 2
    loads = [load_average()]
    result: Result | None = None
    skipped = ""
    try:
        result = measure(settings, lambda line: print(f"core: {line}", file=sys.stderr))
    except Skipped as why:
        skipped = f"skipped: {why}"
    except BenchmarkError as error:
        print(f"benchmarks core: FAILED: {error}", file=sys.stderr)
        return 1
    except ValueError as error:
        print(f"benchmarks core: {error}", file=sys.stderr)
        return 2
    loads.append(load_average())
    if result is None:
        print(f"sansproxy core, in process, {_TITLES[settings.protocol]}: {skipped}")
    else:
        print(_report(result, loads[0], loads[-1]))
    if args.json is not None:
        args.json.write_text(
            json.dumps(_json(result, settings, skipped, loads), indent=1) + "\n", encoding="utf-8"
        )
    return 0
