"""The scenarios and the loop that measures every peer in each, runs interleaved.

Within a scenario every available peer is started fresh, warmed up, then measured in
turn, run after run (peer A, B, C, then A, B, C again...), so that a burst of load from
elsewhere on a shared machine hits all of them alike. Peak memory is read at the end of
the scenario, before the peers stop. Idle-connection runs start a fresh peer each time.

Scenarios whose ``protocol`` is not ``h1`` go over TLS: the peers that can (``Peer.tls``)
are started with a TLS listener and the run's throwaway certificate, and loaded with
h2load speaking HTTP/2 (``h2``) or wrk speaking HTTP/1.1 (``h1-tls``) to that listener.

The cache scenarios request ``/cached/<size>``, which the backend answers with
``Cache-Control: max-age=3600``: ``cache-hit-*`` with the proxies' caches on (filled by
one request before the warm-up, so every measured request is a hit), ``cache-miss-*``
the same requests with the caches off. Around each measured run of both, the backend
says how many requests it answered, so a sample shows how many reached it
(``extra["backend_requests"]``).
"""

from __future__ import annotations

import dataclasses
import functools
import http.client
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks import h2load
from benchmarks.backend import CACHED_PREFIX, JSON_NAME
from benchmarks.certs import Certificate, make_certificate
from benchmarks.idle_h2 import hold_idle_h2
from benchmarks.load import Sample, curl_download, curl_upload, hold_idle, wrk
from benchmarks.peers import (
    Backends,
    Peer,
    Running,
    Tools,
    keeps_alive,
    launch,
    start_backends,
    unavailable,
)
from benchmarks.procs import CpuLayout, cpu_layout, raise_fd_limit, tree_memory

__all__ = ["PeerResult", "Scenario", "Settings", "run_suite", "scenarios"]


@dataclass(frozen=True)
class Scenario:
    """One workload: what is requested, how, and the unit of its main number."""

    name: str
    title: str
    kind: str  # rate (wrk), download, upload (curl), idle (held connections)
    path: str = "/100b"
    connections: int = 1
    unit: str = "req/s"
    protocol: str = "h1"  # h1 (cleartext HTTP/1.1), h1-tls (HTTP/1.1 over TLS), h2 (over TLS)
    streams: int = 1  # requests in flight per connection (HTTP/2 streams)
    accept_encoding: str = ""  # sent by the load generator; with it, the proxies compress
    cache: bool = False  # the proxies cache responses (cache-hit-*)

    @property
    def tls(self) -> bool:
        """Whether the peers are reached over TLS."""
        return self.protocol != "h1"

    @property
    def counts_backend(self) -> bool:
        """Whether each run records how many requests reached the backend (the cache pairs)."""
        return self.path.startswith(CACHED_PREFIX)


def _size(count: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if count >= scale and count % scale == 0:
            return f"{count // scale} {unit}"
    return f"{count} B"


#: HTTP/2 load: connections, and streams in flight on each (``h2load -c 10 -m 10``).
H2_CONNECTIONS, H2_STREAMS = 10, 10
#: HTTP/1.1 over TLS has as many requests in flight, one per connection.
H1_TLS_CONNECTIONS = H2_CONNECTIONS * H2_STREAMS


def scenarios(
    transfer_bytes: int, idle_connections: int, idle_h2_connections: int = 1000
) -> tuple[Scenario, ...]:
    """Every scenario, with the large transfer and idle counts of this run."""
    size = _size(transfer_bytes)
    h2_load = f"{H2_CONNECTIONS} connections x {H2_STREAMS} streams"
    return (
        Scenario("100b-c1", "100 B, 1 connection", "rate", "/100b", 1),
        Scenario("100b-c50", "100 B, 50 connections", "rate", "/100b", 50),
        Scenario("100b-c256", "100 B, 256 connections", "rate", "/100b", 256),
        Scenario("16k-c50", "16 KiB, 50 connections", "rate", "/16k", 50),
        Scenario("1m-c50", "1 MiB, 50 connections", "rate", "/1m", 50),
        Scenario("json-c50", "100 KiB JSON, 50 connections", "rate", "/json100k", 50),
        *(
            Scenario(
                f"json-{coding}-c50",
                f"100 KiB JSON, {coding}, 50 connections",
                "rate",
                "/json100k",
                50,
                accept_encoding=coding,
            )
            for coding in ("gzip", "br", "zstd")
        ),
        *(
            Scenario(
                f"json-{coding}-hit-c50" if coding else "json-hit-c50",
                f"100 KiB JSON, {coding or 'identity'}, cache hit, 50 connections",
                "rate",
                f"{CACHED_PREFIX}{JSON_NAME}",
                50,
                accept_encoding=coding,
                cache=True,
            )
            for coding in ("", "gzip", "zstd")
        ),
        *(
            scenario
            for name, title in (("100b", "100 B"), ("16k", "16 KiB"))
            for scenario in (
                Scenario(
                    f"cache-miss-{name}",
                    f"{title} cacheable, cache off, 50 connections",
                    "rate",
                    f"{CACHED_PREFIX}{name}",
                    50,
                ),
                Scenario(
                    f"cache-hit-{name}",
                    f"{title} cache hit, 50 connections",
                    "rate",
                    f"{CACHED_PREFIX}{name}",
                    50,
                    cache=True,
                ),
            )
        ),
        Scenario(
            "h1tls-100b",
            f"HTTP/1.1 over TLS, 100 B, {H1_TLS_CONNECTIONS} connections",
            "rate",
            "/100b",
            H1_TLS_CONNECTIONS,
            protocol="h1-tls",
        ),
        Scenario(
            "h2-100b",
            f"HTTP/2, 100 B, {h2_load}",
            "rate",
            "/100b",
            H2_CONNECTIONS,
            protocol="h2",
            streams=H2_STREAMS,
        ),
        Scenario(
            "h1tls-1m",
            f"HTTP/1.1 over TLS, 1 MiB, {H1_TLS_CONNECTIONS} connections",
            "rate",
            "/1m",
            H1_TLS_CONNECTIONS,
            protocol="h1-tls",
        ),
        Scenario(
            "h2-1m",
            f"HTTP/2, 1 MiB, {h2_load}",
            "rate",
            "/1m",
            H2_CONNECTIONS,
            protocol="h2",
            streams=H2_STREAMS,
        ),
        Scenario("download", f"{size} download", "download", "/1g", 1, "MB/s"),
        Scenario("upload", f"{size} upload", "upload", "/upload", 1, "MB/s"),
        Scenario(
            "idle",
            f"{idle_connections:,} idle keep-alive connections",
            "idle",
            "/100b",
            idle_connections,
            "B/conn",
        ),
        Scenario(
            "idle-h2",
            f"{idle_h2_connections:,} idle HTTP/2 connections",
            "idle",
            "/100b",
            idle_h2_connections,
            "B/conn",
            protocol="h2",
        ),
    )


@dataclass(frozen=True)
class Settings:
    """What one run of the suite does."""

    runs: int
    seconds: float
    warmup: float
    transfer_bytes: int
    transfer_timeout: float
    idle_connections: int
    idle_h2_connections: int
    scenarios: tuple[Scenario, ...]
    peers: tuple[Peer, ...]
    pin: bool
    use_nginx: bool


@dataclass
class PeerResult:
    """What one peer did in one scenario (``skipped`` says why there is no number)."""

    peer: str
    skipped: str = ""
    samples: list[Sample] = field(default_factory=list)
    start_rss: int | None = None
    peak_rss: int | None = None
    pinning: str = ""

    @property
    def value(self) -> float | None:
        """The median of the runs' main numbers."""
        return statistics.median(s.value for s in self.samples) if self.samples else None

    def median_of(self, pick: Callable[[Sample], float | None]) -> float | None:
        """The median of a per-run figure (such as p99), over the runs that have it."""
        values = [v for v in map(pick, self.samples) if v is not None]
        return statistics.median(values) if values else None

    @property
    def errors(self) -> int:
        """Errors over all runs."""
        return sum(s.errors for s in self.samples)

    @property
    def timeouts(self) -> int:
        """Timeouts over all runs."""
        return sum(s.timeouts for s in self.samples)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


_NO_CACHE = ("direct", "relay", "mitmproxy", "proxy.py")
"""Peer kinds that are not set up to cache here (the backend, the relay, the others)."""

_NO_TLS = {
    "direct": "the backend is cleartext HTTP/1.1 only",
    "relay": "the relay is cleartext HTTP/1.1 only",
}


class _Suite:
    """The state of one run: tools, CPUs, the backend, the certificate and the scratch folder."""

    def __init__(
        self,
        settings: Settings,
        tools: Tools,
        workdir: Path,
        layout: CpuLayout,
        certificate: tuple[Certificate | None, str],
    ):
        self.settings = settings
        self.tools = tools
        self.workdir = workdir
        self.layout = layout
        self.certificate, self.certificate_problem = certificate
        self.negotiated: dict[str, str] = {}  # peer -> TLS version and cipher h2load got
        self.backends: Backends | None = None  # set as each scenario starts
        self.upload_file = workdir / "upload.bin"
        with self.upload_file.open("wb") as file:
            file.truncate(settings.transfer_bytes)  # sparse: reading it costs no disk

    def run_load(self, width: int) -> Callable[[list[str], float], str]:
        """A function that runs a load generator on the load CPUs for a proxy ``width`` wide."""
        cpus = self.layout.load_for(width) or frozenset(self.layout.cpus)

        def run(argv: list[str], timeout: float) -> str:
            done = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                preexec_fn=lambda: os.sched_setaffinity(0, cpus),
            )
            return done.stdout + done.stderr

        return run

    def scenario(self, scenario: Scenario, backends: Backends) -> list[PeerResult]:
        upstream = backends.sink_port if scenario.kind == "upload" else backends.static_port
        self.backends = backends
        results = {peer.name: PeerResult(peer.name) for peer in self.settings.peers}
        for peer in self.settings.peers:
            results[peer.name].pinning = self.layout.describe(peer.workers)
            reason = self._cannot_measure(peer, scenario)
            if reason:
                results[peer.name].skipped = reason
        todo = [p for p in self.settings.peers if not results[p.name].skipped]
        if scenario.kind == "idle":
            self._idle(scenario, todo, upstream, results)
        else:
            self._interleaved(scenario, todo, upstream, results)
        for result in results.values():
            if result.skipped:
                _say(f"  {result.peer}: skipped: {result.skipped}")
        return list(results.values())

    def _cannot_measure(self, peer: Peer, scenario: Scenario) -> str:
        tools = self.tools
        if scenario.kind == "idle" and peer.kind == "direct":
            return "no proxy: nothing to measure"
        if scenario.tls and not peer.tls:
            return _NO_TLS.get(peer.kind, "not set up with a TLS listener in this suite")
        if scenario.kind == "rate" and scenario.protocol == "h2" and tools.h2load is None:
            return "h2load is not installed (apt-get install nghttp2-client)"
        if scenario.kind == "rate" and scenario.protocol != "h2" and tools.wrk is None:
            return "wrk is not installed (apt-get install wrk)"
        if scenario.tls and self.certificate is None:
            return self.certificate_problem
        if scenario.kind in ("download", "upload") and tools.curl is None:
            return "curl is not installed (apt-get install curl)"
        if scenario.cache and peer.kind in _NO_CACHE:
            return "does not cache"
        if scenario.accept_encoding:
            if peer.kind in ("direct", "relay", "mitmproxy", "proxy.py"):
                return "does not compress"
            if peer.kind == "nginx" and scenario.accept_encoding != "gzip":
                return "open-source nginx compresses with gzip only"
        return unavailable(peer, tools) or ""

    def _start(
        self, peer: Peer, scenario: Scenario, upstream: int, tag: str, result: PeerResult
    ) -> Running | None:
        running, problem = launch(
            peer,
            self.tools,
            upstream,
            workdir=self.workdir,
            layout=self.layout,
            tag=tag,
            tls=self.certificate if scenario.tls else None,
            compress=bool(scenario.accept_encoding),
            cache=scenario.cache,
        )
        if running is None:
            result.skipped = f"did not start: {problem}"
        return running

    def _url(self, scenario: Scenario, running: Running) -> str:
        scheme = "https" if scenario.tls else "http"
        return f"{scheme}://127.0.0.1:{running.port}{scenario.path}"

    def _unusable(self, scenario: Scenario, running: Running) -> str:
        """Why a started peer cannot be loaded in a rate scenario, or ''."""
        if scenario.protocol != "h2":
            made = self.certificate if scenario.tls else None
            if not keeps_alive(running.port, tls=made.client_context() if made else None):
                return "does not answer a second request on a kept-alive connection"
            return self._fill(scenario, running) if scenario.cache else ""
        assert self.tools.h2load is not None
        problem, negotiated = h2load.probe(
            self.tools.h2load,
            self._url(scenario, running),
            run=self.run_load(running.peer.workers),
        )
        if negotiated:
            self.negotiated[running.peer.name] = negotiated
        return problem

    def _fill(self, scenario: Scenario, running: Running) -> str:
        """Fill the peer's cache with one request; why it cannot be measured, or ''.

        A second request must not reach the backend (where the backend can say).
        """
        backends = self.backends
        for attempt in range(2):
            before = backends.requests_served() if backends is not None else None
            if not _answers(running.port, scenario.path):
                return f"does not answer GET {scenario.path}"
            after = backends.requests_served() if backends is not None else None
            if attempt and before is not None and after is not None and after != before:
                return f"a second GET {scenario.path} reached the backend: nothing was cached"
        return ""

    def _interleaved(
        self,
        scenario: Scenario,
        peers: Sequence[Peer],
        upstream: int,
        results: dict[str, PeerResult],
    ) -> None:
        settings = self.settings
        started: list[Running] = []
        try:
            for peer in peers:
                running = self._start(peer, scenario, upstream, scenario.name, results[peer.name])
                if running is None:
                    continue
                problem = self._unusable(scenario, running) if scenario.kind == "rate" else ""
                if problem:
                    results[peer.name].skipped = problem
                    if running.process is not None:
                        running.process.stop()
                    continue
                if running.process is not None:
                    results[peer.name].start_rss = tree_memory(running.process.pid)[0]
                started.append(running)
            if scenario.kind == "rate" and settings.warmup > 0:
                for running in started:
                    self._measure(scenario, running, settings.warmup)
            for run in range(settings.runs):
                for running in started:
                    result = results[running.peer.name]
                    if scenario.kind != "rate" and any(s.value == 0 for s in result.samples):
                        continue  # a transfer that failed once is not retried for hours
                    sample = self._counted(scenario, running, settings.seconds)
                    result.samples.append(sample)
                    _say(_progress(scenario, running.peer, run, sample))
            for running in started:
                if running.process is not None:
                    results[running.peer.name].peak_rss = tree_memory(running.process.pid)[1]
        finally:
            for running in started:
                if running.process is not None:
                    running.process.stop()

    def _counted(self, scenario: Scenario, running: Running, seconds: float) -> Sample:
        """:meth:`_measure`, with the requests that reached the backend (cache scenarios)."""
        backends = self.backends
        if not scenario.counts_backend or backends is None:
            return self._measure(scenario, running, seconds)
        before = backends.requests_served()
        sample = self._measure(scenario, running, seconds)
        after = backends.requests_served()
        if before is None or after is None:
            return sample
        extra = {**sample.extra, "backend_requests": float(after - before)}
        return dataclasses.replace(sample, extra=extra)

    def _measure(self, scenario: Scenario, running: Running, seconds: float) -> Sample:
        url = self._url(scenario, running)
        run = self.run_load(running.peer.workers)
        size, timeout = self.settings.transfer_bytes, self.settings.transfer_timeout
        if scenario.kind == "download":
            assert self.tools.curl is not None
            return curl_download(self.tools.curl, url, size=size, run=run, timeout=timeout)
        if scenario.kind == "upload":
            assert self.tools.curl is not None
            return curl_upload(
                self.tools.curl, url, source=self.upload_file, size=size, run=run, timeout=timeout
            )
        threads = len(self.layout.load_for(running.peer.workers) or self.layout.cpus)
        if scenario.protocol == "h2":
            assert self.tools.h2load is not None
            return h2load.h2load(
                self.tools.h2load,
                url,
                connections=scenario.connections,
                streams=scenario.streams,
                seconds=seconds,
                threads=threads,
                log=self.workdir / "h2load.log",
                run=run,
            )
        assert self.tools.wrk is not None
        return wrk(
            self.tools.wrk,
            url,
            connections=scenario.connections,
            seconds=seconds,
            threads=threads,
            run=run,
            headers=[f"Accept-Encoding: {scenario.accept_encoding}"]
            if scenario.accept_encoding
            else [],
        )

    def _idle(
        self,
        scenario: Scenario,
        peers: Sequence[Peer],
        upstream: int,
        results: dict[str, PeerResult],
    ) -> None:
        for run in range(self.settings.runs):
            for peer in peers:
                result = results[peer.name]
                if result.skipped:
                    continue
                running = self._start(peer, scenario, upstream, f"{scenario.name}{run}", result)
                if running is None or running.process is None:
                    continue
                pid = running.process.pid
                measure = functools.partial(_resident, pid)
                try:
                    if scenario.protocol == "h2":
                        sample = hold_idle_h2(
                            running.port, scenario.connections, measure, scenario.path
                        )
                    else:
                        sample = hold_idle(running.port, scenario.connections, measure)
                    result.peak_rss = max(result.peak_rss or 0, tree_memory(pid)[1])
                finally:
                    running.process.stop()
                result.samples.append(sample)
                _say(_progress(scenario, peer, run, sample))


def _answers(port: int, path: str, timeout: float = 10.0) -> bool:
    """Whether ``GET path`` on ``127.0.0.1:port`` is answered 200 with a body."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status == 200 and len(response.read()) > 0
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def _resident(pid: int) -> int:
    return tree_memory(pid)[0]


def _progress(scenario: Scenario, peer: Peer, run: int, sample: Sample) -> str:
    text = f"  {scenario.name} run {run + 1} {peer.name}: {sample.value:,.1f} {scenario.unit}"
    if sample.p99_ms is not None:
        text += f", p99 {sample.p99_ms:.1f} ms"
    if sample.errors:
        text += f", {sample.errors} errors"
    if "backend_requests" in sample.extra:
        text += f", {sample.extra['backend_requests']:,.0f} reached the backend"
    if sample.detail:
        text += f" ({sample.detail})"
    return text


def _tls_note(suite: _Suite) -> str:
    made = suite.certificate
    if made is None:
        return f"no TLS scenario ran: {suite.certificate_problem}"
    text = f"ECDSA P-256 certificate from {made.origin}, made at run time in the temp folder"
    negotiated = sorted(set(suite.negotiated.values()))
    if len(negotiated) == 1:
        text += f"; h2load negotiated {negotiated[0]} with every peer it loaded"
    elif negotiated:
        text += "; h2load negotiated " + ", ".join(
            f"{peer}: {value}" for peer, value in suite.negotiated.items()
        )
    return text


def run_suite(
    settings: Settings, tools: Tools, on_scenario: Callable[[Scenario], None] | None = None
) -> tuple[dict[str, list[PeerResult]], str, dict[str, str]]:
    """Measure every scenario of ``settings``.

    ``on_scenario`` is called as each scenario starts (the suite samples the load with it).

    Returns:
        The results by scenario, the backend used ("nginx" or "built-in"), and notes for
        the report's machine table (how TLS was set up, when a scenario used it).

    Raises:
        RuntimeError: The backend could not be started.
    """
    layout = cpu_layout(settings.pin)
    driver_cpus = layout.load_for(1)
    if driver_cpus is not None:
        os.sched_setaffinity(0, driver_cpus)  # this process holds the idle connections
    nofile = raise_fd_limit()
    results: dict[str, list[PeerResult]] = {}
    with tempfile.TemporaryDirectory(prefix="sansproxy-bench-") as temp:
        workdir = Path(temp)
        workdir.chmod(0o755)  # nginx's workers (user nobody) read the static files
        (workdir / "logs").mkdir()
        backends, problem = start_backends(
            tools,
            workdir,
            layout,
            settings.transfer_bytes,
            nofile,
            use_nginx=settings.use_nginx,
        )
        if backends is None:
            raise RuntimeError(problem)
        _say(f"backend: {backends.kind}; {layout.describe(1)}")
        uses_tls = any(scenario.tls for scenario in settings.scenarios)
        certificate = (
            make_certificate(workdir / "tls") if uses_tls else (None, "no TLS scenario chosen")
        )
        suite = _Suite(settings, tools, workdir, layout, certificate)
        try:
            for scenario in settings.scenarios:
                _say(f"{scenario.title}:")
                if on_scenario is not None:
                    on_scenario(scenario)
                results[scenario.name] = suite.scenario(scenario, backends)
        finally:
            backends.stop()
    notes = {"TLS": _tls_note(suite)} if uses_tls else {}
    return results, backends.kind, notes
