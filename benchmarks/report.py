"""Turning results into the printed table, the targets' verdicts, JSON and Markdown.

Every proxy is shown as a ratio to the backend reached directly and to nginx measured in
the same run: on a shared machine the absolute numbers move from one run to the next, the
ratios much less.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from benchmarks.load import Sample
from benchmarks.runner import PeerResult, Scenario

__all__ = [
    "CACHE_HIT_SPEEDUP",
    "Target",
    "backend_requests",
    "from_json",
    "markdown",
    "rows",
    "targets",
    "text_table",
    "to_json",
]

MIB = 1024 * 1024
_SANSPROXY_ONE_WORKER = ("sansproxy-trio", "sansproxy-asyncio", "sansproxy-uvloop")
#: The HTTP/2 rate scenarios and their HTTP/1.1-over-TLS counterparts, by body size.
_H2_VERSUS_H1 = (("100 B", "h2-100b", "h1tls-100b"), ("1 MiB", "h2-1m", "h1tls-1m"))
_IDLE_H2_MAX = 150 * 1024
#: The cache-hit scenarios, by body size: the uncached twin (cache off, the same path),
#: and the plain scenario of the same size used when the twin was not run.
_CACHE_PAIRS = (
    ("100 B", "cache-hit-100b", "cache-miss-100b", "100b-c50"),
    ("16 KiB", "cache-hit-16k", "cache-miss-16k", "16k-c50"),
)
#: A cache hit must give at least this many times the requests/s of the proxied miss.
CACHE_HIT_SPEEDUP = 2.0


def _find(results: Sequence[PeerResult], name: str) -> PeerResult | None:
    for result in results:
        if result.peer == name and result.samples:
            return result
    return None


def _value(result: PeerResult | None) -> float | None:
    return None if result is None else result.value


def _ratio(value: float | None, reference: float | None) -> float | None:
    if value is None or reference is None or reference == 0:
        return None
    return value / reference


def _display(scenario: Scenario, value: float | None) -> str:
    if value is None:
        return "—"
    if scenario.kind == "idle":
        return f"{value / 1024:,.1f}"
    if scenario.kind == "rate":
        return f"{value:,.0f}"
    return f"{value:,.1f}"


def _unit(scenario: Scenario) -> str:
    return "KiB/conn" if scenario.kind == "idle" else scenario.unit


def _fmt(value: float | None, pattern: str) -> str:
    return "—" if value is None else format(value, pattern)


def rows(scenario: Scenario, results: Sequence[PeerResult]) -> list[list[str]]:
    """One row per peer: median, spread, p50, p99, errors, ratios, memory (or why skipped)."""
    direct = _find(results, "backend-direct")
    nginx = _find(results, "nginx-proxy")
    table = []
    for result in results:
        if result.skipped and not result.samples:
            table.append([result.peer, "skipped: " + result.skipped])
            continue
        values = [sample.value for sample in result.samples]
        value = result.value
        spread = (
            f"{_display(scenario, min(values))}-{_display(scenario, max(values))}"
            if len(values) > 1
            else ""
        )
        x_direct = None if scenario.kind == "idle" else _ratio(value, _value(direct))
        table.append(
            [
                result.peer,
                "failed"
                if all(s.value == 0 for s in result.samples)
                else _display(scenario, value),
                spread,
                _fmt(result.median_of(lambda s: s.p50_ms), ".2f"),
                _fmt(result.median_of(lambda s: s.p99_ms), ".2f"),
                f"{result.errors}" + (f" ({result.timeouts} t/o)" if result.timeouts else ""),
                _fmt(x_direct, ".3f"),
                _fmt(_ratio(value, _value(nginx)), ".3f"),
                _fmt(result.peak_rss / MIB if result.peak_rss else None, ".1f"),
                _fmt(result.median_of(_kib_per_response), ".1f"),
            ]
        )
    return table


def _kib_per_response(sample: Sample) -> float | None:
    """Bytes on the wire per response (head and body, as wrk counts them), in KiB."""
    requests, read = sample.extra.get("requests"), sample.extra.get("bytes_read")
    return read / requests / 1024 if requests and read is not None else None


_HEADER = ["peer", "median", "runs (min-max)", "p50 ms", "p99 ms", "errors", "x direct"]
_HEADER += ["x nginx", "peak RSS MiB", "KiB/resp"]


def text_table(scenarios: Sequence[Scenario], results: Mapping[str, Sequence[PeerResult]]) -> str:
    """The one table printed at the end: every scenario, every peer."""
    lines: list[list[str]] = [["scenario", "unit", *_HEADER]]
    for scenario in scenarios:
        if scenario.name not in results:
            continue
        for index, row in enumerate(rows(scenario, results[scenario.name])):
            title = scenario.title if index == 0 else ""
            unit = _unit(scenario) if index == 0 else ""
            lines.append([title, unit, *row])
        lines.append([])
    full = [line for line in lines if len(line) == len(_HEADER) + 2]
    widths = [
        max(len(line[i]) for line in (lines if i < 3 else full) if len(line) > i)
        for i in range(len(_HEADER) + 2)
    ]
    out = []
    for line in lines:
        if len(line) != len(_HEADER) + 2:  # a skipped peer (the reason fills the row), or a gap
            out.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip())
            continue
        cells = [
            cell.ljust(widths[i]) if i < 3 else cell.rjust(widths[i]) for i, cell in enumerate(line)
        ]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


@dataclass(frozen=True)
class Target:
    """One target of the issue, checked against this run."""

    target: str
    peer: str
    measured: str
    verdict: str  # "met", "NOT met" or "not measured"


def _verdict(ok: bool | None) -> str:
    return "not measured" if ok is None else ("met" if ok else "NOT met")


def targets(
    scenarios: Sequence[Scenario], results: Mapping[str, Sequence[PeerResult]]
) -> list[Target]:
    """The issue's targets (section 2), each with the measured figure and a verdict."""
    titles = {scenario.name: scenario.title for scenario in scenarios}

    def get(scenario: str, peer: str) -> PeerResult | None:
        return _find(results.get(scenario, ()), peer)

    found: list[Target] = []

    def rate_ratio(peer: str, reference: str, minimum: float) -> None:
        mine, theirs = get("100b-c50", peer), get("100b-c50", reference)
        ratio = _ratio(_value(mine), _value(theirs))
        measured = "—" if ratio is None else f"{ratio:.2f}x"
        if mine and theirs:
            measured += f" ({mine.value:,.0f} vs {theirs.value:,.0f} req/s)"
        target = f"100 B, 50 conns: req/s >= {minimum:g}x {reference}"
        found.append(
            Target(target, peer, measured, _verdict(None if ratio is None else ratio >= minimum))
        )

    rate_ratio("sansproxy-asyncio", "relay", 1.5)
    rate_ratio("sansproxy-asyncio", "mitmproxy", 10)
    rate_ratio("sansproxy-trio", "relay", 1.3)
    relay = get("100b-c50", "relay")
    for peer in ("sansproxy-asyncio", "sansproxy-trio"):
        mine = get("100b-c50", peer)
        p99 = mine.median_of(lambda s: s.p99_ms) if mine else None
        relay_p99 = relay.median_of(lambda s: s.p99_ms) if relay else None
        ok = None if p99 is None or relay_p99 is None else p99 <= relay_p99
        measured = f"{_fmt(p99, '.1f')} ms vs relay {_fmt(relay_p99, '.1f')} ms"
        found.append(Target("100 B, 50 conns: p99 <= relay's", peer, measured, _verdict(ok)))
    for peer in _SANSPROXY_ONE_WORKER:
        mine = get("100b-c256", peer)
        p99 = mine.median_of(lambda s: s.p99_ms) if mine else None
        ok = None if mine is None else mine.timeouts == 0 and p99 is not None and p99 < 500
        measured = "—" if mine is None else f"p99 {_fmt(p99, '.1f')} ms, {mine.timeouts} timeouts"
        found.append(
            Target("100 B, 256 conns: no timeouts, p99 < 500 ms", peer, measured, _verdict(ok))
        )
    nginx = get("download", "nginx-proxy")
    for peer in _SANSPROXY_ONE_WORKER:
        mine = get("download", peer)
        ratio = _ratio(_value(mine), _value(nginx))
        measured = (
            "—" if ratio is None or mine is None else f"{ratio:.2f}x ({mine.value:,.0f} MB/s)"
        )
        ok = None if ratio is None else ratio >= 0.5
        found.append(
            Target(
                f"{titles.get('download', 'download')}: >= 0.5x nginx", peer, measured, _verdict(ok)
            )
        )
    for scenario in ("download", "upload"):
        for peer in _SANSPROXY_ONE_WORKER:
            mine = get(scenario, peer)
            peak = mine.peak_rss if mine else None
            measured = "—" if peak is None else f"{peak / MIB:.1f} MiB"
            ok = None if peak is None else peak < 64 * MIB
            title = titles.get(scenario, scenario)
            found.append(Target(f"{title}: peak RSS < 64 MiB", peer, measured, _verdict(ok)))
    for peer in _SANSPROXY_ONE_WORKER:
        mine = get("idle", peer)
        per = mine.value if mine else None
        measured = (
            "—" if per is None or mine is None else f"{per / 1024:.1f} KiB ({mine.errors} errors)"
        )
        ok = None if per is None or mine is None else per < 100 * 1024 and mine.errors == 0
        found.append(
            Target(f"{titles.get('idle', 'idle')}: < 100 KiB each", peer, measured, _verdict(ok))
        )
    found += _h2_targets(get, titles)
    found += _cache_targets(get)
    return found


def _cache_targets(get: Callable[[str, str], PeerResult | None]) -> list[Target]:
    """Cache hits against the same requests uncached, and what reached the backend."""
    found = []
    for size, hit, miss, plain in _CACHE_PAIRS:
        for peer in _SANSPROXY_ONE_WORKER:
            mine = get(hit, peer)
            reference = miss if get(miss, peer) is not None else plain
            theirs = get(reference, peer)
            ratio = _ratio(_value(mine), _value(theirs))
            measured = "—" if ratio is None else f"{ratio:.2f}x"
            if mine and theirs:
                measured += f" ({mine.value:,.0f} vs {theirs.value:,.0f} req/s in {reference})"
            ok = None if ratio is None else ratio >= CACHE_HIT_SPEEDUP
            target = f"{size} cache hit, 50 conns: req/s >= {CACHE_HIT_SPEEDUP:g}x uncached"
            found.append(Target(target, peer, measured, _verdict(ok)))
        for peer in _SANSPROXY_ONE_WORKER:
            mine = get(hit, peer)
            counted = backend_requests(mine) if mine else None
            measured = "—"
            if mine and counted is not None:
                served = sum(s.extra.get("requests", 0.0) for s in mine.samples)
                measured = f"{counted:,.0f} of {served:,.0f} requests"
            ok = None if counted is None else counted == 0
            target = f"{size} cache hit: no request reaches the backend"
            found.append(Target(target, peer, measured, _verdict(ok)))
    return found


def backend_requests(result: PeerResult) -> float | None:
    """The requests that reached the backend over the measured runs (None: not counted)."""
    counts = [s.extra["backend_requests"] for s in result.samples if "backend_requests" in s.extra]
    return sum(counts) if counts else None


def _h2_targets(
    get: Callable[[str, str], PeerResult | None], titles: Mapping[str, str]
) -> list[Target]:
    """HTTP/2 against HTTP/1.1 over TLS through the same proxy, and idle HTTP/2 memory."""
    found = []
    for size, h2, h1 in _H2_VERSUS_H1:
        for peer in _SANSPROXY_ONE_WORKER:
            mine, theirs = get(h2, peer), get(h1, peer)
            ratio = _ratio(_value(mine), _value(theirs))
            measured = "—" if ratio is None else f"{ratio:.2f}x"
            if mine and theirs:
                measured += f" ({mine.value:,.0f} vs {theirs.value:,.0f} req/s)"
            ok = None if ratio is None else ratio >= 1.0
            target = f"HTTP/2 {size}: req/s >= HTTP/1.1 over TLS"
            found.append(Target(target, peer, measured, _verdict(ok)))
    for peer in _SANSPROXY_ONE_WORKER:
        mine = get("idle-h2", peer)
        per = mine.value if mine else None
        measured = (
            "—" if per is None or mine is None else f"{per / 1024:.1f} KiB ({mine.errors} errors)"
        )
        ok = None if per is None or mine is None else per <= _IDLE_H2_MAX and mine.errors == 0
        title = titles.get("idle-h2", "idle HTTP/2 connections")
        found.append(Target(f"{title}: <= 150 KiB each", peer, measured, _verdict(ok)))
    return found


def _md_table(header: Sequence[str], body: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row in body:
        cells = (
            list(row) if len(row) == len(header) else [row[0], row[1]] + [""] * (len(header) - 2)
        )
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return lines


def markdown(
    scenarios: Sequence[Scenario],
    results: Mapping[str, Sequence[PeerResult]],
    meta: Mapping[str, Any],
    charts: Sequence[str],
) -> str:
    """The generated results section of docs/benchmarks.md."""
    lines = [
        f"Run of {meta['finished']}, {meta['mode']} mode: {meta['settings_line']}.",
        "",
        "```console",
        f"$ {meta['command']}",
        "```",
        "",
        "| | |",
        "| --- | --- |",
    ]
    lines += [f"| {key} | {value} |" for key, value in meta["machine"].items()]
    lines.append("")
    for scenario in scenarios:
        if scenario.name not in results:
            continue
        lines += [f"### {scenario.title} ({_unit(scenario)})", ""]
        lines += _md_table(_HEADER, rows(scenario, results[scenario.name]))
        lines.append("")
        notes = [
            f"- {result.peer}, run {run}: {' '.join(sample.detail.split())}"
            for result in results[scenario.name]
            for run, sample in enumerate(result.samples, 1)
            if sample.detail
        ]
        lines += [*notes, ""] if notes else []
    lines += ["### Targets", ""]
    found = targets(scenarios, results)
    lines += _md_table(
        ["target", "peer", "measured", "verdict"],
        [[t.target, t.peer, t.measured, f"**{t.verdict}**"] for t in found],
    )
    lines.append("")
    if charts:
        lines += ["### Charts", ""]
        for name in charts:
            lines += [f"![{name}](benchmarks/{name})", ""]
    return "\n".join(lines)


def to_json(
    scenarios: Sequence[Scenario],
    results: Mapping[str, Sequence[PeerResult]],
    meta: Mapping[str, Any],
) -> dict[str, Any]:
    """Everything measured, run by run, with the medians and the targets."""

    def peer_json(result: PeerResult) -> dict[str, Any]:
        median: Callable[[Callable[[Any], float | None]], float | None] = result.median_of
        return {
            "peer": result.peer,
            "skipped": result.skipped,
            "pinning": result.pinning,
            "median": result.value,
            "p50_ms": median(lambda s: s.p50_ms),
            "p99_ms": median(lambda s: s.p99_ms),
            "errors": result.errors,
            "timeouts": result.timeouts,
            "start_rss": result.start_rss,
            "peak_rss": result.peak_rss,
            "samples": [asdict(sample) for sample in result.samples],
        }

    return {
        **meta,
        "scenarios": [
            {**asdict(scenario), "results": [peer_json(r) for r in results[scenario.name]]}
            for scenario in scenarios
            if scenario.name in results
        ],
        "targets": [asdict(target) for target in targets(scenarios, results)],
    }


def from_json(
    data: Mapping[str, Any],
) -> tuple[list[Scenario], dict[str, list[PeerResult]], dict[str, Any]]:
    """The scenarios, results and metadata of a :func:`to_json` document."""
    scenarios: list[Scenario] = []
    results: dict[str, list[PeerResult]] = {}
    for entry in data["scenarios"]:
        fields = {key: value for key, value in entry.items() if key != "results"}
        scenario = Scenario(**fields)
        scenarios.append(scenario)
        results[scenario.name] = [
            PeerResult(
                peer=saved["peer"],
                skipped=saved["skipped"],
                samples=[Sample(**sample) for sample in saved["samples"]],
                start_rss=saved["start_rss"],
                peak_rss=saved["peak_rss"],
                pinning=saved["pinning"],
            )
            for saved in entry["results"]
        ]
    meta = {key: value for key, value in data.items() if key not in ("scenarios", "targets")}
    return scenarios, results, meta
