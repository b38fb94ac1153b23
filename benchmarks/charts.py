"""PNG charts of a run (matplotlib, optional): throughput, latency, transfers, memory.

Each chart has one panel per scenario and one bar per peer, with the spread of the runs
drawn as a line over the median, and sansproxy's bars in one colour, the others in grey
shades, so the picture reads at a glance.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks.runner import PeerResult, Scenario

__all__ = ["available", "write_charts"]

_COLOURS = {
    "backend-direct": "#9e9e9e",
    "relay": "#6d6d6d",
    "nginx-proxy": "#2e7d32",
    "mitmproxy": "#b0bec5",
    "proxy.py": "#cfd8dc",
}
_SANSPROXY = "#1565c0"


def available() -> bool:
    """Whether matplotlib is installed."""
    return importlib.util.find_spec("matplotlib") is not None


def _colour(peer: str) -> str:
    return _SANSPROXY if peer.startswith("sansproxy") else _COLOURS.get(peer, "#757575")


def _panels(
    path: Path,
    title: str,
    panels: Sequence[tuple[str, Sequence[PeerResult]]],
    pick: Callable[[PeerResult], tuple[float | None, float, float]],
    xlabel: str,
    *,
    log: bool = False,
) -> bool:
    import matplotlib as mpl  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # type: ignore[import-not-found,unused-ignore]  # noqa: PLC0415

    panels = [(name, [r for r in rs if pick(r)[0] is not None]) for name, rs in panels]
    panels = [(name, rs) for name, rs in panels if rs]
    if not panels:
        return False
    height = sum(0.32 * len(rs) + 0.9 for _, rs in panels) + 0.6
    figure, axes = plt.subplots(
        len(panels),
        1,
        figsize=(9, height),
        squeeze=False,
        gridspec_kw={"height_ratios": [len(rs) + 1.5 for _, rs in panels]},
    )
    figure.suptitle(title, fontsize=13, fontweight="bold")
    for axis, (name, results) in zip(axes[:, 0], panels, strict=True):
        names = [r.peer for r in results][::-1]
        picked = [pick(r) for r in results][::-1]
        values = [v or 0.0 for v, _, _ in picked]
        axis.barh(names, values, color=[_colour(n) for n in names], height=0.65)
        for row, (value, low, high) in enumerate(picked):
            if value is not None and high > low:
                axis.plot([low, high], [row, row], color="black", linewidth=1)
            axis.text(max(value or 0, high), row, f" {_label(value or 0)}", va="center", fontsize=8)
        axis.set_title(name, fontsize=10, loc="left")
        axis.set_xlabel(xlabel, fontsize=8)
        axis.tick_params(labelsize=8)
        if log:
            axis.set_xscale("log")
        axis.margins(x=0.15)
        axis.grid(axis="x", alpha=0.3)
    figure.tight_layout(rect=(0, 0, 1, 1 - 0.45 / height))
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return True


def _label(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def _spread(values: Sequence[float], median: float | None) -> tuple[float | None, float, float]:
    if median is None or not values:
        return None, 0.0, 0.0
    return median, min(values), max(values)


def write_charts(
    folder: Path,
    scenarios: Sequence[Scenario],
    results: Mapping[str, Sequence[PeerResult]],
    meta: Mapping[str, Any],
) -> list[str]:
    """Write the charts to ``folder``; the file names written."""
    folder.mkdir(parents=True, exist_ok=True)
    note = f" — {meta.get('machine_short', '')}"
    by_kind: dict[str, list[tuple[str, Sequence[PeerResult]]]] = {}
    for scenario in scenarios:
        if scenario.name in results:
            by_kind.setdefault(scenario.kind, []).append((scenario.title, results[scenario.name]))
    written = []

    def rate(result: PeerResult) -> tuple[float | None, float, float]:
        return _spread([s.value for s in result.samples], result.value)

    def p99(result: PeerResult) -> tuple[float | None, float, float]:
        values = [s.p99_ms for s in result.samples if s.p99_ms is not None]
        return _spread(values, result.median_of(lambda s: s.p99_ms))

    def p50(result: PeerResult) -> tuple[float | None, float, float]:
        values = [s.p50_ms for s in result.samples if s.p50_ms is not None]
        return _spread(values, result.median_of(lambda s: s.p50_ms))

    def peak(result: PeerResult) -> tuple[float | None, float, float]:
        mib = result.peak_rss / 2**20 if result.peak_rss else None
        return mib, mib or 0.0, mib or 0.0

    def per_connection(result: PeerResult) -> tuple[float | None, float, float]:
        values = [s.value / 1024 for s in result.samples]
        return _spread(values, result.value / 1024 if result.value is not None else None)

    rates = by_kind.get("rate", [])
    transfers = by_kind.get("download", []) + by_kind.get("upload", [])
    plans: list[tuple[str, str, Any, Any, str, bool]] = [
        ("throughput.png", "Requests per second (higher is better)", rates, rate, "req/s", False),
        ("latency-p50.png", "Median latency (lower is better)", rates, p50, "ms, log", True),
        ("latency-p99.png", "p99 latency (lower is better)", rates, p99, "ms, log", True),
        ("transfer.png", "Large transfers (higher is better)", transfers, rate, "MB/s", False),
        ("transfer-rss.png", "Proxy peak RSS during transfers", transfers, peak, "MiB", False),
        ("idle.png", "Memory per idle keep-alive connection", by_kind.get("idle", []),
         per_connection, "KiB per connection", False),
    ]  # fmt: skip
    for name, title, panels, pick, label, log in plans:
        if panels and _panels(folder / name, title + note, panels, pick, label, log=log):
            written.append(name)
    return written
