"""The compression scenarios of ``python -m benchmarks``: configurations and parsing.

Nothing here asserts a speed; the figures come from ``python -m benchmarks``.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from benchmarks import nginx
from benchmarks.backend import json_body
from benchmarks.load import parse_wrk
from benchmarks.peers import _sansproxy_toml
from benchmarks.report import _kib_per_response
from benchmarks.runner import scenarios
from sansproxy.config import parse_config
from tests.benchmarks.test_tls_scenarios import _reasons, _suite

WRK_OUTPUT = """\
Running 10s test @ http://127.0.0.1:8080/json100k
  2 threads and 50 connections
  Latency Distribution
     50%   10.00ms
     99%   40.00ms
  12000 requests in 10.00s, 300.00MB read
Requests/sec:   1200.00
Transfer/sec:     30.00MB
"""


def test_the_json_document_is_valid_compressible_and_100_kib() -> None:
    document = json_body()
    assert len(document) == 100 * 1024
    assert isinstance(json.loads(document), list)
    ratio = len(gzip.compress(document, 5)) / len(document)
    assert 0.05 < ratio < 0.5  # like real API answers: neither incompressible nor trivial


def test_one_scenario_without_and_one_per_coding_with_compression() -> None:
    listed = {s.name: s for s in scenarios(1024**3, 10_000)}
    assert listed["json-c50"].accept_encoding == ""
    for coding in ("gzip", "br", "zstd"):
        scenario = listed[f"json-{coding}-c50"]
        assert (scenario.path, scenario.connections) == ("/json100k", 50)
        assert scenario.accept_encoding == coding


def test_only_compressing_peers_run_the_compressed_scenarios(tmp_path: Path) -> None:
    suite = _suite(tmp_path)
    assert _reasons(suite, "relay")["json-gzip-c50"] == "does not compress"
    assert _reasons(suite, "relay")["json-c50"] == ""
    assert _reasons(suite, "nginx-proxy")["json-gzip-c50"] == ""
    assert _reasons(suite, "nginx-proxy")["json-br-c50"].endswith("gzip only")
    assert _reasons(suite, "sansproxy-trio")["json-zstd-c50"] == ""


def test_proxies_compress_only_when_asked() -> None:
    assert not parse_config(_sansproxy_toml(8080, 9000), source="bench").compression.enabled
    config = parse_config(_sansproxy_toml(8080, 9000, compress=True), source="bench")
    assert config.compression.enabled
    assert "gzip on;" in nginx.proxy_conf(Path("/tmp"), 8080, 9000, 1024, gzip=True)
    assert "gzip" not in nginx.proxy_conf(Path("/tmp"), 8080, 9000, 1024)


def test_bytes_on_the_wire_per_response_come_from_wrk() -> None:
    sample = parse_wrk(WRK_OUTPUT)
    assert sample.value == 1200.0
    assert sample.extra["bytes_read"] == 300 * 1024 * 1024
    assert _kib_per_response(sample) == 300 * 1024 / 12000
