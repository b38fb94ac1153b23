"""The HTTP/2 and HTTP/1.1-over-TLS scenarios of ``python -m benchmarks``.

Parsing, targets and configurations are checked in process; one test starts the
checkout's sansproxy with a TLS listener (as the suite does) and holds idle HTTP/2
connections against it. Nothing here asserts a speed.
"""

from __future__ import annotations

import dataclasses
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks import certs, h2load, nginx
from benchmarks.idle_h2 import hold_idle_h2
from benchmarks.load import Sample
from benchmarks.peers import PEERS, Tools, _sansproxy_toml, launch, start_backends
from benchmarks.procs import CpuLayout
from benchmarks.report import from_json, targets, text_table, to_json
from benchmarks.runner import PeerResult, Settings, _Suite, scenarios
from sansproxy.config import parse_config

# What h2load 1.52 printed for a run against sansproxy (progress lines cut).
H2LOAD_OUTPUT = """\
TLS Protocol: TLSv1.3
Cipher: TLS_AES_128_GCM_SHA256
Server Temp Key: X25519 253 bits
Application protocol: h2
Main benchmark duration is over for thread #0. Stopping all clients.

finished in 5.00s, 1219.80 req/s, 156.35KB/s
requests: 6099 total, 6199 started, 6099 done, 6099 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 6099 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 781.76KB (800519) total, 24.13KB (24706) headers (space savings 94.87%), 595.61KB
"""


def _bad_run(failed: int, errored: int, timeouts: int, fives: int) -> str:
    return H2LOAD_OUTPUT.replace(
        "0 failed, 0 errored, 0 timeout", f"{failed} failed, {errored} errored, {timeouts} timeout"
    ).replace("0 4xx, 0 5xx", f"2 4xx, {fives} 5xx")


def test_h2load_output_gives_rate_and_percentiles_from_the_log() -> None:
    sample = h2load.parse_h2load(H2LOAD_OUTPUT, list(range(1000, 101_000, 1000)))
    assert sample.value == pytest.approx(1219.80)
    assert sample.errors == 0
    assert sample.timeouts == 0
    assert sample.p50_ms == pytest.approx(50.0)
    assert sample.p99_ms == pytest.approx(99.0)
    assert sample.extra == {"requests": 6099.0}


def test_h2load_failures_and_error_statuses_are_errors() -> None:
    sample = h2load.parse_h2load(_bad_run(failed=7, errored=4, timeouts=3, fives=5))
    assert sample.errors == 7 + 2 + 5
    assert sample.timeouts == 3
    assert sample.p50_ms is None
    assert "7 failed (4 errored, 3 timeout), 2 4xx, 5 5xx" in sample.detail


def test_h2load_output_without_a_rate_is_a_failed_run() -> None:
    sample = h2load.parse_h2load("connect to 127.0.0.1 failed: Connection refused\n")
    assert sample.value == 0
    assert sample.errors == 1
    assert "Connection refused" in sample.detail


def test_percentile_is_the_nearest_rank() -> None:
    assert h2load.percentile([5], 0.99) == 5
    assert h2load.percentile([1, 2, 3, 4], 0.5) == 2
    assert h2load.percentile([1, 2, 3, 4], 0.51) == 3
    with pytest.raises(ValueError, match="no values"):
        h2load.percentile([], 0.5)


def test_the_log_is_read_ascending_and_junk_is_skipped(tmp_path: Path) -> None:
    log = tmp_path / "h2load.log"
    log.write_text("1796290441527570\t200\t300\n\n1796290441558853\t200\t100\nnot\ta\tnumber\n")
    assert h2load.read_log(log) == [100, 300]
    assert h2load.read_log(tmp_path / "missing.log") == []


def test_tls_scenarios_are_listed_with_their_load() -> None:
    every = {scenario.name: scenario for scenario in scenarios(1024**3, 10_000, 300)}
    assert (every["h2-100b"].connections, every["h2-100b"].streams) == (10, 10)
    assert (every["h2-1m"].path, every["h2-1m"].protocol) == ("/1m", "h2")
    assert every["h1tls-100b"].connections == 100
    assert every["h1tls-1m"].protocol == "h1-tls"
    assert every["idle-h2"].connections == 300
    assert every["idle-h2"].kind == "idle"
    assert [name for name, scenario in every.items() if scenario.tls] == [
        "h1tls-100b",
        "h2-100b",
        "h1tls-1m",
        "h2-1m",
        "idle-h2",
    ]


def _result(peer: str, *values: float) -> PeerResult:
    return PeerResult(peer, samples=[Sample(value) for value in values])


def test_h2_targets_compare_with_http1_over_tls_and_cap_idle_memory() -> None:
    chosen = [s for s in scenarios(1024**3, 10_000, 1000) if s.tls]
    results = {
        "h2-100b": [_result("sansproxy-trio", 900, 1000, 1100), _result("sansproxy-uvloop", 10)],
        "h1tls-100b": [_result("sansproxy-trio", 999), _result("sansproxy-uvloop", 20)],
        "idle-h2": [
            _result("sansproxy-trio", 150 * 1024),
            _result("sansproxy-asyncio", 150 * 1024 + 1),
        ],
    }
    found = {(t.target, t.peer): t for t in targets(chosen, results)}
    trio = found["HTTP/2 100 B: req/s >= HTTP/1.1 over TLS", "sansproxy-trio"]
    assert (trio.verdict, trio.measured) == ("met", "1.00x (1,000 vs 999 req/s)")
    uvloop = found["HTTP/2 100 B: req/s >= HTTP/1.1 over TLS", "sansproxy-uvloop"]
    assert uvloop.verdict == "NOT met"
    assert found["HTTP/2 1 MiB: req/s >= HTTP/1.1 over TLS", "sansproxy-trio"].verdict == (
        "not measured"
    )
    idle = "1,000 idle HTTP/2 connections: <= 150 KiB each"
    assert found[idle, "sansproxy-trio"].verdict == "met"
    assert found[idle, "sansproxy-asyncio"].verdict == "NOT met"
    assert found[idle, "sansproxy-uvloop"].verdict == "not measured"


def test_tls_scenarios_survive_the_json_round_trip() -> None:
    chosen = [s for s in scenarios(1024**3, 10_000, 1000) if s.name in ("h2-100b", "idle-h2")]
    results = {
        "h2-100b": [_result("nginx-proxy", 5000), PeerResult("relay", skipped="cleartext")],
        "idle-h2": [_result("nginx-proxy", 20_000)],
    }
    saved = to_json(chosen, results, {"mode": "quick"})
    again, again_results, _ = from_json(saved)
    assert again == chosen
    assert text_table(again, again_results) == text_table(chosen, results)
    assert "HTTP/2, 100 B, 10 connections x 10 streams" in text_table(chosen, results)


def test_the_sansproxy_tls_listener_offers_h2_then_http1(tmp_path: Path) -> None:
    made = certs.Certificate(tmp_path / "c.pem", tmp_path / "k.pem", tmp_path / "ca.pem", "x")
    config = parse_config(_sansproxy_toml(8443, 9000, made), source="bench")
    (listener,) = config.listeners
    assert listener.tls
    assert listener.certificate == str(made.certificate)
    assert listener.alpn == ("h2", "http/1.1")
    (cleartext,) = parse_config(_sansproxy_toml(8080, 9000), source="bench").listeners
    assert not cleartext.tls


def test_nginx_terminates_tls_with_http2_only_when_asked(tmp_path: Path) -> None:
    pair = (tmp_path / "c.pem", tmp_path / "k.pem")
    secure = nginx.proxy_conf(tmp_path, 8443, 9000, 1024, tls=pair)
    assert "listen 127.0.0.1:8443 ssl http2 backlog=4096;" in secure
    assert f"ssl_certificate {pair[0]};" in secure
    assert "ssl_protocols TLSv1.2 TLSv1.3;" in secure
    plain = nginx.proxy_conf(tmp_path, 8080, 9000, 1024)
    assert "listen 127.0.0.1:8080 backlog=4096;" in plain
    assert "ssl" not in plain


def test_only_tls_peers_are_started_with_tls(tmp_path: Path) -> None:
    relay = next(peer for peer in PEERS if peer.name == "relay")
    made = certs.Certificate(tmp_path / "c.pem", tmp_path / "k.pem", tmp_path / "ca.pem", "x")
    layout = CpuLayout(cpus=(0,), load=None)
    with pytest.raises(ValueError, match="relay is not set up for TLS"):
        launch(relay, Tools.find(), 9, workdir=tmp_path, layout=layout, tag="t", tls=made)


def _loads(made: certs.Certificate) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(made.certificate), str(made.private_key))
    made.client_context()  # the CA file loads too


def test_the_certificate_is_made_with_trustme(tmp_path: Path) -> None:
    made, problem = certs.make_certificate(tmp_path / "tls")
    assert problem == ""
    assert made is not None
    assert made.origin == "trustme"
    _loads(made)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command")
def test_the_certificate_is_made_with_openssl_without_trustme(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(certs.importlib.util, "find_spec", lambda name: None)
    made, problem = certs.make_certificate(tmp_path / "tls")
    assert problem == ""
    assert made is not None
    assert made.origin == "openssl"
    _loads(made)


def test_no_certificate_maker_is_a_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(certs.importlib.util, "find_spec", lambda name: None)
    monkeypatch.setattr(certs.shutil, "which", lambda name: None)
    made, problem = certs.make_certificate(tmp_path / "tls")
    assert made is None
    assert "pip install trustme" in problem


@pytest.fixture(scope="module")
def tls_sansproxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The checkout's sansproxy (asyncio) with a TLS listener, before the built-in backend."""
    tmp_path = tmp_path_factory.mktemp("tls-sansproxy")
    tools = Tools.find()
    if not tools.sansproxy:
        pytest.skip("sansproxy_trio does not import")
    tmp_path.chmod(0o755)
    (tmp_path / "logs").mkdir()
    layout = CpuLayout(cpus=(0,), load=None)
    backends, problem = start_backends(tools, tmp_path, layout, 1024**2, 1024, use_nginx=False)
    assert backends is not None, problem
    try:
        made, problem = certs.make_certificate(tmp_path / "tls")
        assert made is not None, problem
        peer = next(peer for peer in PEERS if peer.name == "sansproxy-asyncio")
        running, problem = launch(
            peer, tools, backends.sink_port, workdir=tmp_path, layout=layout, tag="t", tls=made
        )
        assert running is not None, problem
        assert running.process is not None
        try:
            yield running.port
        finally:
            running.process.stop()
    finally:
        backends.stop()


def test_idle_h2_connections_are_opened_and_held(tls_sansproxy: int) -> None:
    port = tls_sansproxy
    readings = iter([10_000_000, 10_000_000 + 5 * 4096])
    sample = hold_idle_h2(port, 5, lambda: next(readings), settle=0.2)
    assert (sample.errors, sample.extra["alive"], sample.value) == (0, 5, 4096)


def test_idle_h2_counts_connections_that_get_no_http2(tls_sansproxy: int) -> None:
    port = tls_sansproxy
    sample = hold_idle_h2(port, 3, lambda: 0, path="/missing", settle=0.1)
    assert sample.errors == 3
    assert sample.detail == "no connection stayed open"


@pytest.mark.skipif(shutil.which("h2load") is None, reason="h2load is not installed")
def test_h2load_probe_sees_the_protocol_alpn_chose(tls_sansproxy: int) -> None:
    port = tls_sansproxy
    binary = shutil.which("h2load")
    assert binary is not None

    def run(argv: list[str], timeout: float) -> str:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
        return done.stdout + done.stderr

    url = f"https://127.0.0.1:{port}/100b"
    assert h2load.probe(binary, url, run=run) == ("", "TLSv1.3, TLS_AES_256_GCM_SHA384")
    problem, _ = h2load.probe(binary, f"https://127.0.0.1:{port}/missing", run=run)
    assert "were not both answered with 2xx" in problem


def _suite(tmp_path: Path, **missing: None) -> _Suite:
    every = scenarios(1024, 10, 10)
    settings = Settings(
        runs=1,
        seconds=1,
        warmup=0,
        transfer_bytes=1024,
        transfer_timeout=1,
        idle_connections=10,
        idle_h2_connections=10,
        scenarios=every,
        peers=PEERS,
        pin=False,
        use_nginx=False,
    )
    tools = dataclasses.replace(Tools.find(), sansproxy=True, nginx="nginx", **missing)
    made = certs.Certificate(tmp_path / "c.pem", tmp_path / "k.pem", tmp_path / "ca.pem", "x")
    return _Suite(settings, tools, tmp_path, CpuLayout(cpus=(0,), load=None), (made, ""))


def _reasons(suite: _Suite, peer: str) -> dict[str, str]:
    chosen = next(p for p in PEERS if p.name == peer)
    return {s.name: suite._cannot_measure(chosen, s) for s in suite.settings.scenarios}


def test_a_missing_load_generator_skips_its_scenarios_with_the_reason(tmp_path: Path) -> None:
    without_h2load = _reasons(_suite(tmp_path, h2load=None), "nginx-proxy")
    assert without_h2load["h2-100b"] == "h2load is not installed (apt-get install nghttp2-client)"
    assert without_h2load["h2-1m"] == without_h2load["h2-100b"]
    assert without_h2load["h1tls-100b"] == ""
    assert without_h2load["idle-h2"] == ""  # the suite's own client holds those
    without_wrk = _reasons(_suite(tmp_path, wrk=None), "nginx-proxy")
    assert without_wrk["h1tls-1m"] == "wrk is not installed (apt-get install wrk)"
    assert without_wrk["100b-c50"] == without_wrk["h1tls-1m"]
    assert without_wrk["h2-1m"] == ""


def test_peers_without_tls_are_skipped_in_tls_scenarios(tmp_path: Path) -> None:
    suite = _suite(tmp_path)
    relay = _reasons(suite, "relay")
    assert relay["h2-100b"] == "the relay is cleartext HTTP/1.1 only"
    assert relay["idle-h2"] == relay["h2-100b"]
    assert relay["100b-c50"] == ""
    assert _reasons(suite, "backend-direct")["h1tls-1m"] == "the backend is cleartext HTTP/1.1 only"
    assert _reasons(suite, "mitmproxy")["h2-1m"].startswith(
        ("not set up with a TLS listener", "mitmdump not found")
    )
    suite.certificate, suite.certificate_problem = None, "no certificate maker: pip install trustme"
    assert _reasons(suite, "sansproxy-trio")["h2-1m"] == "no certificate maker: pip install trustme"
