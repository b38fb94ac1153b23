"""The cache scenarios of ``python -m benchmarks``: configurations, counting and targets.

Most checks run in process. One module fixture starts the built-in backend and the
checkout's sansproxy (asyncio) with and without its cache, as the suite does, for a
handful of requests: the fill, and the backend's count of what reached it. Nothing here
asserts a speed; the figures come from ``python -m benchmarks``.
"""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks import nginx
from benchmarks.backend import CACHE_CONTROL, CACHED_PREFIX, parse_stats
from benchmarks.load import Sample
from benchmarks.peers import (
    PEERS,
    Backends,
    Running,
    Tools,
    _sansproxy_toml,
    launch,
    start_backends,
)
from benchmarks.procs import CpuLayout
from benchmarks.report import backend_requests, from_json, targets, text_table, to_json
from benchmarks.runner import PeerResult, Scenario, _progress, scenarios
from sansproxy.config import parse_config
from tests.benchmarks.test_tls_scenarios import _reasons, _suite

PAIRS = (("100b", 100), ("16k", 16 * 1024))

# What nginx 1.22's stub_status answers.
STUB_STATUS = """\
Active connections: 3
server accepts handled requests
 17 17 1234
Reading: 0 Writing: 1 Waiting: 2
"""


def _listed() -> dict[str, Scenario]:
    return {s.name: s for s in scenarios(1024**3, 10_000)}


def test_each_size_has_a_cache_hit_and_an_uncached_twin_on_the_same_path() -> None:
    listed = _listed()
    for name, _ in PAIRS:
        hit, miss = listed[f"cache-hit-{name}"], listed[f"cache-miss-{name}"]
        assert hit.path == miss.path == f"{CACHED_PREFIX}{name}"
        assert (hit.connections, miss.connections) == (50, 50)
        assert (hit.kind, hit.protocol, hit.accept_encoding) == ("rate", "h1", "")
        assert (hit.cache, miss.cache) == (True, False)
        assert hit.counts_backend
        assert miss.counts_backend
    assert not listed["100b-c50"].counts_backend
    assert [s.name for s in listed.values() if s.cache] == [
        "json-hit-c50",
        "json-gzip-hit-c50",
        "json-zstd-hit-c50",
        "cache-hit-100b",
        "cache-hit-16k",
    ]
    names = list(listed)
    assert names.index("cache-miss-100b") + 1 == names.index("cache-hit-100b")  # side by side


def test_only_caching_peers_run_the_hit_scenarios(tmp_path: Path) -> None:
    suite = _suite(tmp_path)
    for peer in ("backend-direct", "relay", "mitmproxy", "proxy.py"):
        assert _reasons(suite, peer)["cache-hit-100b"] == "does not cache"
        assert _reasons(suite, peer)["cache-hit-16k"] == "does not cache"
    assert _reasons(suite, "relay")["cache-miss-16k"] == ""
    for peer in ("sansproxy-trio", "sansproxy-asyncio", "nginx-proxy"):
        assert _reasons(suite, peer)["cache-hit-100b"] == ""
        assert _reasons(suite, peer)["cache-miss-100b"] == ""


def test_proxies_cache_only_when_asked() -> None:
    plain = parse_config(_sansproxy_toml(8080, 9000), source="bench")
    assert not plain.cache.enabled
    cached = parse_config(_sansproxy_toml(8080, 9000, cache=True), source="bench")
    assert cached.cache.enabled
    assert not cached.compression.enabled
    both = parse_config(_sansproxy_toml(8080, 9000, compress=True, cache=True), source="bench")
    assert both.cache.enabled
    assert both.compression.enabled
    conf = nginx.proxy_conf(Path("/tmp/p"), 8080, 9000, 1024, cache=True)
    assert "proxy_cache_path /tmp/p/cache " in conf
    assert "proxy_cache bench;" in conf
    assert "proxy_cache_lock on;" in conf
    assert "proxy_cache" not in nginx.proxy_conf(Path("/tmp/p"), 8080, 9000, 1024)


def test_the_nginx_backend_serves_the_cached_paths_and_counts() -> None:
    conf = nginx.backend_conf(Path("/tmp/p"), 9000, Path("/tmp/static"), 1024)
    assert "location /cached/ {\n            alias /tmp/static/;" in conf
    assert f'add_header Cache-Control "{CACHE_CONTROL}";' in conf
    assert "location = /_stats {\n            stub_status;" in conf


def test_stats_of_either_backend_parse() -> None:
    assert parse_stats("requests 42\n") == 42
    assert parse_stats(STUB_STATUS) == 1234
    assert parse_stats("<html>not found</html>") is None


def _samples(*pairs: tuple[float, float | None]) -> list[Sample]:
    return [
        Sample(
            value,
            extra={"requests": value * 4}
            | ({} if reached is None else {"backend_requests": reached}),
        )
        for value, reached in pairs
    ]


def _result(peer: str, *pairs: tuple[float, float | None]) -> PeerResult:
    return PeerResult(peer, samples=_samples(*pairs))


def test_cache_targets_compare_with_the_uncached_twin_and_count_the_backend() -> None:
    listed = _listed()
    chosen = [listed[name] for name in ("cache-miss-100b", "cache-hit-100b", "cache-hit-16k")]
    results = {
        "cache-miss-100b": [_result("sansproxy-trio", (1000, 4000)), _result("sansproxy-asyncio")],
        "cache-hit-100b": [
            _result("sansproxy-trio", (2500, 0), (2400, 0), (2600, 0)),
            _result("sansproxy-asyncio", (1500, 1)),
        ],
        "16k-c50": [_result("sansproxy-trio", (900, None))],
        "cache-hit-16k": [_result("sansproxy-trio", (1700, None))],
    }
    found = {(t.target, t.peer): t for t in targets(chosen, results)}
    speed = "100 B cache hit, 50 conns: req/s >= 2x uncached"
    trio = found[speed, "sansproxy-trio"]
    assert trio.verdict == "met"
    assert trio.measured == "2.50x (2,500 vs 1,000 req/s in cache-miss-100b)"
    assert found[speed, "sansproxy-asyncio"].verdict == "not measured"  # no twin, no 100b-c50
    assert found[speed, "sansproxy-uvloop"].verdict == "not measured"
    untouched = "100 B cache hit: no request reaches the backend"
    assert found[untouched, "sansproxy-trio"].verdict == "met"
    assert found[untouched, "sansproxy-trio"].measured == "0 of 30,000 requests"
    assert found[untouched, "sansproxy-asyncio"].verdict == "NOT met"
    # Without the twin, the plain scenario of the same size is the reference.
    big = found["16 KiB cache hit, 50 conns: req/s >= 2x uncached", "sansproxy-trio"]
    assert big.verdict == "NOT met"
    assert big.measured == "1.89x (1,700 vs 900 req/s in 16k-c50)"
    not_counted = found["16 KiB cache hit: no request reaches the backend", "sansproxy-trio"]
    assert (not_counted.verdict, not_counted.measured) == ("not measured", "—")


def test_a_run_says_how_many_requests_reached_the_backend() -> None:
    scenario = _listed()["cache-hit-100b"]
    peer = next(p for p in PEERS if p.name == "sansproxy-trio")
    (sample,) = _samples((2500, 0))
    assert _progress(scenario, peer, 0, sample).endswith("2,500.0 req/s, 0 reached the backend")
    assert backend_requests(_result("x", (1, 2), (1, None), (1, 3))) == 5
    assert backend_requests(_result("x", (1, None))) is None


def test_cache_scenarios_survive_the_json_round_trip() -> None:
    chosen = [s for s in _listed().values() if s.name.startswith("cache-")]
    results = {
        "cache-hit-100b": [_result("sansproxy-trio", (2500, 0)), PeerResult("relay", "no")],
        "cache-miss-100b": [_result("sansproxy-trio", (1000, 4000))],
    }
    saved = to_json(chosen, results, {"mode": "quick"})
    again, again_results, _ = from_json(saved)
    assert again == [s for s in chosen if s.name in results]
    assert again_results["cache-hit-100b"][0].samples[0].extra["backend_requests"] == 0
    assert text_table(again, again_results) == text_table(chosen, results)
    assert "100 B cache hit, 50 connections" in text_table(chosen, results)


# -- against the built-in backend and the checkout's sansproxy ----------------------------------


@pytest.fixture(scope="module")
def builtin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Backends, Path]]:
    tmp_path = tmp_path_factory.mktemp("cache-bench")
    tools = Tools.find()
    if not tools.sansproxy:
        pytest.skip("sansproxy_trio does not import")
    tmp_path.chmod(0o755)
    (tmp_path / "logs").mkdir()
    layout = CpuLayout(cpus=(0,), load=None)
    backends, problem = start_backends(tools, tmp_path, layout, 1024**2, 1024, use_nginx=False)
    assert backends is not None, problem
    try:
        yield backends, tmp_path
    finally:
        backends.stop()


def _get(port: int, path: str) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response
    finally:
        connection.close()


def test_the_builtin_backend_marks_the_cached_paths_and_counts_requests(
    builtin: tuple[Backends, Path],
) -> None:
    backends, _ = builtin
    before = backends.requests_served()
    assert before is not None
    for name, size in PAIRS:
        response = _get(backends.static_port, CACHED_PREFIX + name)
        assert (response.status, response.getheader("content-length")) == (200, str(size))
        assert response.getheader("cache-control") == CACHE_CONTROL
    assert _get(backends.static_port, "/100b").getheader("cache-control") is None
    assert backends.requests_served() == before + 3  # its own questions are not counted


def _start(builtin: tuple[Backends, Path], tag: str, *, cache: bool) -> Running:
    backends, tmp_path = builtin
    peer = next(p for p in PEERS if p.name == "sansproxy-asyncio")
    layout = CpuLayout(cpus=(0,), load=None)
    running, problem = launch(
        peer,
        Tools.find(),
        backends.static_port,
        workdir=tmp_path,
        layout=layout,
        tag=tag,
        cache=cache,
    )
    assert running is not None, problem
    return running


@pytest.mark.parametrize("cache", [True, False])
def test_the_fill_and_the_count_through_sansproxy(
    builtin: tuple[Backends, Path], tmp_path: Path, cache: bool
) -> None:
    backends, _ = builtin
    running = _start(builtin, f"fill-{cache}", cache=cache)
    assert running.process is not None
    suite = _suite(tmp_path)
    suite.backends = backends
    scenario = _listed()["cache-hit-16k" if cache else "cache-miss-16k"]

    def measure(scenario: Scenario, running: Running, seconds: float) -> Sample:
        for _ in range(5):
            assert _get(running.port, scenario.path).status == 200
        return Sample(5.0, extra={"requests": 5.0})

    try:
        hit_scenario = _listed()["cache-hit-16k"]
        problem = suite._fill(hit_scenario, running)
        suite._measure = measure  # type: ignore[method-assign]
        sample = suite._counted(scenario, running, 1.0)
    finally:
        running.process.stop()
    if cache:
        assert problem == ""
        assert sample.extra == {"requests": 5.0, "backend_requests": 0.0}
    else:
        assert problem == "a second GET /cached/16k reached the backend: nothing was cached"
        assert sample.extra == {"requests": 5.0, "backend_requests": 5.0}


def test_compressed_hits_pair_with_the_compressed_misses() -> None:
    listed = _listed()
    for coding in ("gzip", "zstd"):
        hit = listed[f"json-{coding}-hit-c50"]
        miss = listed[f"json-{coding}-c50"]
        assert (hit.accept_encoding, miss.accept_encoding) == (coding, coding)
        assert hit.cache
        assert hit.path == f"{CACHED_PREFIX}json100k"
        assert hit.counts_backend
    assert listed["json-hit-c50"].accept_encoding == ""


def test_the_cached_json_document_is_json_on_both_backends(builtin: tuple[Backends, Path]) -> None:
    conf = nginx.backend_conf(Path("/tmp/p"), 9000, Path("/tmp/static"), 1024)
    assert "location = /cached/json100k {\n            alias /tmp/static/json100k;" in conf
    backends, _ = builtin
    response = _get(backends.static_port, CACHED_PREFIX + "json100k")
    assert response.status == 200
    assert response.getheader("content-type") == "application/json"
    assert response.getheader("cache-control") == CACHE_CONTROL
