"""Scripted exchanges on the simulated network, the same script over every client protocol.

Each test takes ``protocol``: an HTTP/1.1 client on a plain listener, an HTTP/2
client over TLS (ALPN ``h2``) or an HTTP/2 client in cleartext with prior
knowledge (``h2c``, on a listener that also speaks HTTP/1.1, so the core sniffs
the preface). The backends speak HTTP/1.1 in every case. Where the protocols
must differ (how a broken response shows, how a WebSocket is asked for, how a
drain is announced) the test says so explicitly.
"""

from __future__ import annotations

import dataclasses

import h2.errors
import h11
import pytest

from sansproxy.config import ProxyConfig
from tests.simnet import (
    PROTOCOLS,
    ClientProtocol,
    FakeClient,
    FakeH2Client,
    ReceivedResponse,
    Reply,
    SimNet,
    echo,
    ok,
    protocol_config,
    websocket,
    websocket_accept,
)

every_protocol = pytest.mark.parametrize("protocol", PROTOCOLS)
http2_only = pytest.mark.parametrize("protocol", [p for p in PROTOCOLS if p != "http/1.1"])

INTERNAL_ERROR = int(h2.errors.ErrorCodes.INTERNAL_ERROR)
REFUSED_STREAM = int(h2.errors.ErrorCodes.REFUSED_STREAM)
WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 §1.3's example key


def setup(protocol: ClientProtocol, config: ProxyConfig | None = None) -> SimNet:
    return SimNet(config if config is not None else protocol_config(protocol))


def only(client: FakeClient | FakeH2Client) -> ReceivedResponse:
    (response,) = client.responses
    return response


def assert_clean(net: SimNet, *clients: FakeClient | FakeH2Client) -> None:
    """Every client closes; then the core holds nothing and the network saw no problem."""
    for client in clients:
        client.reading = True
        if not client.closed:
            client.close()
    net.quiesce()
    net.check()
    assert net.open_connections() == []
    stats = net.proxy.statistics()
    assert (stats.client_connections, stats.upstream_connections, stats.exchanges) == (0, 0, 0)
    assert stats.timers == 0
    assert net.proxy.next_deadline() is None


@every_protocol
def test_get(protocol: ClientProtocol) -> None:
    net = setup(protocol)
    backend = net.add_backend("10.0.0.1", 80, ok(b"hello"))
    client = net.connect(protocol)
    client.request("GET", "/hello?x=1")
    net.run()
    (request,) = backend.requests
    assert (request.method, request.target, request.http_version) == (b"GET", b"/hello?x=1", b"1.1")
    assert request.header(b"host") == b"example.com"
    assert request.body == b""
    response = only(client)
    assert (response.status, response.body, response.complete) == (200, b"hello", True)
    assert client.outcomes == ["response"]
    assert_clean(net, client)


@every_protocol
@pytest.mark.parametrize("chunked", [False, True])
def test_post_with_a_body(protocol: ClientProtocol, chunked: bool) -> None:
    net = setup(protocol)
    backend = net.add_backend("10.0.0.1", 80, echo)
    client = net.connect(protocol)
    body = [b"first piece, ", bytes(range(256)) * 300, b"last"]
    client.request("POST", "/upload", body=body, chunked=chunked)
    net.run()
    (request,) = backend.requests
    assert request.complete
    assert request.body == b"".join(body)
    if chunked:
        # No length up front: it goes upstream chunked, whatever the client spoke.
        assert request.header(b"transfer-encoding") == b"chunked"
    else:
        assert request.header(b"content-length") == str(len(request.body)).encode()
    response = only(client)
    assert response.status == 200
    assert response.body == b"".join(body)
    assert_clean(net, client)


@every_protocol
def test_several_requests_on_one_connection_reuse_one_upstream(protocol: ClientProtocol) -> None:
    net = setup(protocol)
    backend = net.add_backend("10.0.0.1", 80, echo)
    client = net.connect(protocol)
    for n in range(3):
        assert client.idle
        client.request("POST", f"/r{n}", body=f"body {n}".encode())
        net.run()
    assert [r.target for r in backend.requests] == [b"/r0", b"/r1", b"/r2"]
    assert [r.body for r in client.responses] == [b"body 0", b"body 1", b"body 2"]
    assert client.outcomes == ["response"] * 3
    assert len(backend.connections) == 1  # pooled between the requests
    assert_clean(net, client)


@every_protocol
def test_no_route_gets_404_from_the_proxy(protocol: ClientProtocol) -> None:
    config = protocol_config(protocol)
    listener = dataclasses.replace(config.listeners[0], upstream=None)
    net = setup(protocol, dataclasses.replace(config, listeners=(listener,)))
    backend = net.add_backend("10.0.0.1", 80)
    client = net.connect(protocol)
    client.request("GET", "/nowhere")
    net.run()
    response = only(client)
    assert response.status == 404
    assert response.complete
    assert backend.requests == []
    assert client.outcomes == ["response"]
    assert client.idle  # a local answer does not end the connection
    assert_clean(net, client)


@every_protocol
def test_refused_connect_gets_502(protocol: ClientProtocol) -> None:
    net = setup(protocol)
    backend = net.add_backend("10.0.0.1", 80)
    backend.refuse = True
    client = net.connect(protocol)
    client.request("GET", "/")
    net.run()
    response = only(client)
    assert response.status == 502
    assert response.complete
    assert net.access_logs[-1].status == 502
    assert_clean(net, client)


@every_protocol
def test_backend_dying_mid_response_breaks_the_response(protocol: ClientProtocol) -> None:
    net = setup(protocol)
    backend = net.add_backend("10.0.0.1", 80, ok(b"x" * 5000))
    backend.die_after = 200  # the head and part of the body
    client = net.connect(protocol)
    client.request("GET", "/big")
    net.run()
    if isinstance(client, FakeH2Client):
        # HTTP/2: that stream alone is reset, after the part of the body that came.
        response = only(client)
        assert response.status == 200
        assert not response.complete
        assert 0 < len(response.body) < 5000
        (stream,) = client.streams.values()
        assert (stream.outcome, stream.reset_code) == ("reset", INTERNAL_ERROR)
        assert not client.closed
        assert client.idle  # the connection goes on
    else:
        # HTTP/1.1: only a reset connection tells the client the body is cut short
        # (a reset drops what was not yet delivered, here the whole partial response).
        assert all(not r.complete for r in client.responses)
        assert client.outcomes == ["closed"]
        assert client.reset
    assert_clean(net, client)


@every_protocol
def test_websocket_tunnels_bytes_both_ways(protocol: ClientProtocol) -> None:
    net = setup(protocol)
    backend = net.add_backend("10.0.0.1", 80, websocket)
    client = net.connect(protocol)
    if isinstance(client, FakeH2Client):
        # RFC 8441: an extended CONNECT; the proxy makes up the handshake upstream.
        stream = client.open_stream(
            "CONNECT", "/chat", [("sec-websocket-version", "13")], protocol="websocket"
        )
        client.send_body(stream, b"\x81\x02hi")
    else:
        client.request(
            "GET",
            "/chat",
            [
                ("upgrade", "websocket"),
                ("connection", "Upgrade"),
                ("sec-websocket-key", WS_KEY),
                ("sec-websocket-version", "13"),
            ],
        )
    net.run()
    (request,) = backend.requests
    assert (request.method, request.target) == (b"GET", b"/chat")
    assert request.header(b"upgrade") == b"websocket"
    assert request.header(b"connection") == b"upgrade"
    key = request.header(b"sec-websocket-key")
    assert key is not None
    response = only(client)
    if isinstance(client, FakeH2Client):
        assert response.status == 200
        assert response.header(b"sec-websocket-accept") is None
    else:
        assert key == WS_KEY.encode()
        assert response.status == 101
        assert response.header(b"sec-websocket-accept") == websocket_accept(key)
        client.send_tunnel(b"\x81\x02hi")
    net.run()
    assert response.body == b"\x81\x02hi"  # the backend echoes
    if isinstance(client, FakeH2Client):
        client.send_body(stream, b"\x81\x03bye")
    else:
        client.send_tunnel(b"\x81\x03bye")
    net.run()
    assert request.tunnel == b"\x81\x02hi\x81\x03bye"
    assert response.body == b"\x81\x02hi\x81\x03bye"
    # The client ends the tunnel: END_STREAM on HTTP/2, closing the connection on HTTP/1.1.
    if isinstance(client, FakeH2Client):
        client.end_stream(stream)
    else:
        client.close()
    net.run()
    assert backend.open_connections == []
    assert client.outcomes == ["response"]
    assert_clean(net, client)


@every_protocol
def test_shutdown_lets_the_exchange_in_flight_finish(protocol: ClientProtocol) -> None:
    net = setup(protocol)
    backend = net.add_backend("10.0.0.1", 80, ok(b"done"))
    backend.hold = True
    client = net.connect(protocol)
    client.request("GET", "/slow")
    net.run()
    net.shutdown(drain_timeout=30.0)
    if isinstance(client, FakeH2Client):
        # GOAWAY(NO_ERROR) naming the stream in flight: it will still be served.
        assert client.goaways == [(1, 0, b"")]
    assert not client.closed
    backend.release()
    net.run()
    response = only(client)
    assert (response.status, response.body, response.complete) == (200, b"done", True)
    if not isinstance(client, FakeH2Client):
        assert response.header(b"connection") == b"close"
    assert client.outcomes == ["response"]
    assert client.closed
    assert net.shutdown_complete
    assert_clean(net, client)


@http2_only
def test_shutdown_refuses_streams_opened_after_the_goaway(protocol: ClientProtocol) -> None:
    net = setup(protocol)
    backend = net.add_backend("10.0.0.1", 80, ok(b"done"))
    backend.hold = True
    client = net.connect(protocol)
    assert isinstance(client, FakeH2Client)
    client.request("GET", "/first")
    net.run()
    client.reading = False  # the GOAWAY is on its way while the client sends a second request
    net.shutdown(drain_timeout=30.0)
    second = client.request("GET", "/second")
    net.run()
    client.reading = True
    net.run()
    assert client.goaways == [(1, 0, b"")]
    # Above the GOAWAY's last stream, so never served, and reset with REFUSED_STREAM
    # (safe to retry elsewhere, RFC 9113 §8.7).
    assert client.streams[second].outcome == "refused"
    assert client.streams[second].reset_code == REFUSED_STREAM
    backend.release()
    net.run()
    assert client.streams[1].outcome == "response"
    assert [r.target for r in backend.requests] == [b"/first"]
    assert net.shutdown_complete
    assert_clean(net, client)


@http2_only
def test_websocket_with_a_wrong_accept_is_not_tunnelled(protocol: ClientProtocol) -> None:
    net = setup(protocol)

    def bad_handshake(request: h11.Request, body: bytes) -> Reply:
        return (
            101,
            [
                ("upgrade", "websocket"),
                ("connection", "Upgrade"),
                ("sec-websocket-accept", "bm90IHRoZSByaWdodCBvbmU="),
            ],
            [],
        )

    net.add_backend("10.0.0.1", 80, bad_handshake)
    client = net.connect(protocol)
    assert isinstance(client, FakeH2Client)
    client.open_stream("CONNECT", "/chat", protocol="websocket")
    net.run()
    response = only(client)
    assert response.status == 502
    assert response.complete
    assert_clean(net, client)
