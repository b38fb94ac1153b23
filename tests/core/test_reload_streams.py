"""A reload applies to new requests, on HTTP/1.1 and HTTP/2 alike; requests in flight finish.

On an HTTP/2 connection a new stream after the reload goes to the new configuration
while an older stream on the same connection finishes where it started.
"""

from __future__ import annotations

import random

import pytest

from sansproxy import ConfigReloaded, Proxy, parse_config
from tests.core.protocol_client import Client

CONFIG = """
[[listeners]]
address = "192.0.2.1:443"
certificate = "cert.pem"
private_key = "key.pem"

[upstreams.app]
servers = ["http://{server}:80"]
"""

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@pytest.fixture(params=["http1", "h2"])
def protocol(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_new_requests_follow_a_reload_and_requests_in_flight_finish(protocol: str) -> None:
    proxy = Proxy(parse_config(CONFIG.format(server="10.0.0.1")), rng=random.Random(1))
    client = Client(proxy, protocol)
    client.request(b"/before")
    (first,) = client.opened
    assert first.host == "10.0.0.1"
    client.handle(ConfigReloaded(config=parse_config(CONFIG.format(server="10.0.0.2"))))
    client.request(b"/after")
    if protocol == "h2":
        # A new stream of the same connection is routed by the new configuration at once.
        assert [command.host for command in client.opened] == ["10.0.0.1", "10.0.0.2"]
    client.backend_answers(OK, first.conn)
    # HTTP/1.1 answers the pipelined request after the first one, by the new configuration.
    assert [command.host for command in client.opened] == ["10.0.0.1", "10.0.0.2"]
    client.backend_answers(OK, client.opened[1].conn)
    assert [(status, body) for status, _, body in client.responses] == [(200, b"ok")] * 2
    assert proxy.statistics().exchanges == 0
