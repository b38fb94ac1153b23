"""Smoke tests of ``python -m benchmarks core``: it runs, its numbers are sane, its checks bite.

Nothing here asserts a speed: the figures only have to be positive and add up.
"""

from __future__ import annotations

import json
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import h11
import pytest

from benchmarks import cli
from benchmarks.core.driver import REQUEST_PATH, BenchmarkError, Driver, bench_config
from benchmarks.core.wire import ExchangeError, H2Wire, Http1Wire, Request

SMALL = ["--exchanges", "120", "--connections", "6", "--runs", "2"]


def _request(body_size: int = 100, status: int = 200) -> Request:
    return Request(authority="bench.example", path=REQUEST_PATH, body_size=body_size, status=status)


def test_core_subcommand_reports_sane_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "core.json"
    assert cli.main(["core", *SMALL, "--json", str(out)]) == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["skipped"] is None
    assert report["all_exchanges_correct"] is True
    assert report["settings"] == {
        "protocol": "http1",
        "exchanges": 120,
        "connections": 6,
        "body_size": 100,
        "runs": 2,
        "servers": 2,
    }
    assert len(report["cpu_seconds"]) == 2
    assert all(seconds > 0 for seconds in report["cpu_seconds"])
    per_exchange = report["cpu_us_per_exchange"]
    assert per_exchange > 0
    assert report["exchanges_per_second"] == pytest.approx(1e6 / per_exchange, rel=1e-3)
    assert 0 < report["h11_us"] < per_exchange
    assert 0 < report["rest_us"] < per_exchange
    assert report["h2_us"] == 0
    assert report["h11_us"] + report["rest_us"] == pytest.approx(per_exchange, abs=0.02)
    assert 0 < report["driver_us"] < report["rest_us"]
    assert report["upstream_connections"] >= 1
    text = capsys.readouterr().out
    assert "inside h11" in text
    assert "the rest" in text
    assert "cProfile" in text
    assert "load average" in text


def test_larger_bodies_arrive_in_reads_and_stay_correct(tmp_path: Path) -> None:
    out = tmp_path / "core.json"
    args = ["--exchanges", "8", "--connections", "2", "--runs", "1", "--body-size", "300KiB"]
    assert cli.main(["core", *args, "--json", str(out)]) == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["settings"]["body_size"] == 300 * 1024
    assert report["all_exchanges_correct"] is True


def test_h2_is_measured_or_skipped_with_the_reason(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "core.json"
    assert cli.main(["core", *SMALL, "--protocol", "h2", "--json", str(out)]) == 0
    report = json.loads(out.read_text(encoding="utf-8"))
    if report["skipped"] is not None:  # Until the core speaks HTTP/2.
        assert report["skipped"].startswith("skipped: the core does not speak HTTP/2 yet")
        assert "skipped: the core does not speak HTTP/2 yet" in capsys.readouterr().out
    else:
        assert report["all_exchanges_correct"] is True
        assert report["h2_us"] > 0


def test_a_wrong_status_fails_the_pass() -> None:
    wire = Http1Wire(_request(status=201))
    driver = Driver(bench_config(wire), wire, _request(status=201), connections=2, exchanges=4)
    driver.run()
    with pytest.raises(BenchmarkError, match=r"status 200 with a 100-byte body \(expected 201"):
        driver.check()


def test_a_response_cut_short_fails_the_pass() -> None:
    request = _request(body_size=200_000)
    wire = Http1Wire(request)
    driver = Driver(bench_config(wire), wire, request, connections=2, exchanges=4)
    driver._responses.pop()  # The backends never send the last read of each response.
    driver.run()
    with pytest.raises(BenchmarkError, match="0 of 4 exchanges finished"):
        driver.check()


def test_bad_options_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["core", "--exchanges", "3", "--connections", "5"]) == 2
    assert "--exchanges must be at least --connections" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        cli.main(["core", "--protocol", "spdy"])
    assert exit_.value.code == 2


def test_http1_wire_rejects_an_incomplete_or_extra_response() -> None:
    wire = Http1Wire(_request(body_size=5))
    good = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"
    wire.verify(good * 2, 2)
    with pytest.raises(ExchangeError, match="exchange 2 of 2"):
        wire.verify(good + good[:-1], 2)
    with pytest.raises(ExchangeError, match="after the last response"):
        wire.verify(good * 2, 1)
    with pytest.raises(ExchangeError, match="not kept alive"):
        wire.verify(
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello" * 2, 2
        )
    assert h11.Connection(h11.CLIENT).receive_data(wire.requests(1)[0]) is None


def _h2_server_answers(wire: H2Wire, count: int, status: bytes, body: bytes) -> bytes:
    """What an h2 server sends back to ``wire``'s ``count`` requests."""
    server = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=False, header_encoding=None)
    )
    server.initiate_connection()
    out = [server.data_to_send()]
    for data in wire.requests(count):
        for event in server.receive_data(data):
            if isinstance(event, h2.events.RequestReceived) and event.stream_id is not None:
                length = str(len(body)).encode()
                server.send_headers(
                    event.stream_id, [(b":status", status), (b"content-length", length)]
                )
                server.send_data(event.stream_id, body, end_stream=True)
        out.append(server.data_to_send())
    return b"".join(out)


def test_h2_wire_against_an_h2_server() -> None:
    wire = H2Wire(_request(body_size=100))
    received = _h2_server_answers(wire, 5, b"200", b"x" * 100)
    assert wire.speaks_protocol(received)
    wire.verify(received, 5)
    with pytest.raises(ExchangeError, match=r"exchange 6 of 6 \(stream 11\): no complete"):
        wire.verify(received, 6)
    with pytest.raises(ExchangeError, match="status 404 with a 100-byte body"):
        wire.verify(_h2_server_answers(wire, 2, b"404", b"x" * 100), 2)
    assert not wire.speaks_protocol(b"HTTP/1.1 400 Bad Request\r\n\r\n")
