"""Minimal failing examples the property and fuzz suites found, kept as regressions.

Each test is the shrunk example, replayed on the simulated network; the
finding it came from is named in its docstring. A finding not fixed yet is
marked ``xfail(strict=True)``, so that the fix turns it into a plain regression.
"""

from __future__ import annotations

from tests.simnet import SimNet, ok, protocol_config, simple_config


def test_head_with_a_bad_target_gets_a_bodiless_400() -> None:
    """atheris, client harness: ``HEAD x HTTP/1.1`` crashed ``handle()``.

    The 400 went through ``ServerCodec.send_error``, which wrote a body to a
    HEAD response; h11 raised ``LocalProtocolError: Too much data for
    declared Content-Length`` out of ``Proxy.handle``.
    """
    net = SimNet(simple_config())
    net.add_backend("10.0.0.1", 80)
    client = net.client()
    client.request("HEAD", "x")
    net.run()
    net.check()
    (response,) = client.responses
    assert response.status == 400
    assert response.complete
    assert response.body == b""


def test_head_to_a_refused_backend_gets_a_bodiless_502() -> None:
    """test_no_leaks / test_stateful: the same crash from ``handle(UpstreamFailed)``."""
    net = SimNet(simple_config())  # nothing listens at 10.0.0.1:80
    client = net.client()
    client.request("HEAD", "/")
    net.run()
    net.check()
    (response,) = client.responses
    assert response.status == 502
    assert response.complete
    assert response.body == b""


def test_head_timing_out_gets_a_bodiless_504() -> None:
    """test_stateful: the same crash from ``handle_timeout`` (upstream header timeout)."""
    net = SimNet(simple_config())
    backend = net.add_backend("10.0.0.1", 80)
    backend.hold = True
    client = net.client()
    client.request("HEAD", "/")
    net.advance(net.config.timeouts.upstream_header + 1)
    net.check()
    (response,) = client.responses
    assert response.status == 504
    assert response.complete
    assert response.body == b""


def test_http2_client_goaway_lets_its_streams_in_flight_finish() -> None:
    """Targeted probe next to test_no_leaks_http2 (which accepts either outcome).

    Events: h2 preface + SETTINGS; HEADERS(stream 1, GET /a, END_STREAM); the
    backend holds the request; the client sends GOAWAY(last_stream_id=0,
    NO_ERROR) and keeps reading; the backend answers 200 "done". Expected: stream
    1 gets its response, then the proxy may close. Seen before the fix: on the
    GOAWAY the core cancelled stream 1 and closed the client connection, because h2
    refuses to send after a GOAWAY; the codec now takes GOAWAY frames out of what h2
    is fed.
    """
    net = SimNet(protocol_config("h2"))
    backend = net.add_backend("10.0.0.1", 80, ok(b"done"))
    backend.hold = True
    client = net.h2_client()
    stream = client.request("GET", "/a")
    net.run()
    client.goaway(keep_reading=True)
    net.run()
    assert backend.held, "the request in flight was dropped"
    backend.release()
    net.run()
    assert client.streams[stream].outcome == "response"
    response = client.streams[stream].response
    assert response is not None
    assert (response.status, response.body) == (200, b"done")
