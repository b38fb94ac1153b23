"""The filter chains' interface: what a request filter and a response stage can do.

Later features (the cache, compression, access control) plug in as filters without
touching the exchange; these tests hold the interface to its promises, over both client
protocols: a request filter can answer a request itself, and a response stage can
rewrite the head, transform each body piece and add bytes at the end, and hears when
the exchange is finished however it ends.
"""

from __future__ import annotations

import random

import pytest

from sansproxy import EofReceived, Proxy, parse_config
from sansproxy._codec import Headers
from sansproxy.exchange import Exchange
from sansproxy.filters import Answer, OutgoingHead, ResponseStage
from tests.core.protocol_client import Client

CONFIG = """
[[listeners]]
address = "192.0.2.1:443"
certificate = "cert.pem"
private_key = "key.pem"

[upstreams.app]
servers = ["http://10.0.0.1:80"]

[headers]
via = false
x_forwarded = false
forwarded = false
"""


class Teapot:
    """A request filter that answers ``/teapot`` itself."""

    def on_request(self, exchange: Exchange) -> Answer | None:
        if exchange.path == b"/teapot":
            return Answer(status=418, headers=[(b"content-type", b"text/plain")], body=b"short\n")
        return None


class Shout(ResponseStage):
    """A response stage that upper-cases the body and ends it with ``!``."""

    transforms_body = True

    def __init__(self) -> None:
        self.finished_statuses: list[int] = []

    def start(self, exchange: Exchange) -> ResponseStage | None:
        return self

    def head(self, exchange: Exchange, head: OutgoingHead) -> None:
        # The body changes length, so the backend's Content-Length cannot stay.
        head.headers = [(n, v) for n, v in head.headers if n != b"content-length"]
        head.headers.append((b"x-shouted", b"yes"))

    def body(self, exchange: Exchange, data: bytes) -> bytes:
        return data.upper()

    def end(self, exchange: Exchange, trailers: Headers) -> bytes:
        return b"!"

    def finished(self, exchange: Exchange) -> None:
        self.finished_statuses.append(exchange.status)


@pytest.fixture(params=["http1", "h2"])
def protocol(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _proxy() -> tuple[Proxy, Shout]:
    proxy = Proxy(parse_config(CONFIG), rng=random.Random(1))
    settings = proxy._ctx.settings
    shout = Shout()
    # The chains are fixed per configuration; a test plugs its own filters in first.
    settings.request_filters = (Teapot(), *settings.request_filters)
    settings.response_filters = (*settings.response_filters, shout)
    return proxy, shout


def test_a_response_stage_rewrites_the_head_transforms_the_body_and_adds_an_end(
    protocol: str,
) -> None:
    proxy, shout = _proxy()
    client = Client(proxy, protocol)
    client.request(b"/hello")
    client.backend_answers(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world")
    ((status, fields, body),) = client.responses
    assert status == 200
    assert body == b"HELLO WORLD!"
    assert (b"x-shouted", b"yes") in fields
    assert all(name.lower() != b"content-length" for name, _ in fields)
    assert shout.finished_statuses == [200]


def test_a_request_filter_answers_before_anything_is_forwarded(protocol: str) -> None:
    proxy, shout = _proxy()
    client = Client(proxy, protocol)
    client.request(b"/teapot")
    ((status, fields, body),) = client.responses
    assert (status, body) == (418, b"short\n")
    assert (b"content-type", b"text/plain") in fields
    assert client.upstream_bytes == {}  # no backend was asked
    # A local answer skips the head and body hooks but is still reported finished.
    assert shout.finished_statuses == [418]


def test_stages_hear_of_an_exchange_that_failed(protocol: str) -> None:
    proxy, shout = _proxy()
    client = Client(proxy, protocol)
    client.request(b"/hello")
    client.backend_answers(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n")  # ...and no more
    (upstream,) = list(proxy._ctx.upstreams)
    client._apply(client._handle(EofReceived(conn=upstream)))
    # The head never completed: the proxy's own 502, untouched by the stage's hooks.
    ((status, fields, body),) = client.responses
    assert (status, body) == (502, b"502 Bad Gateway\n")
    assert (b"x-shouted", b"yes") not in fields
    assert shout.finished_statuses == [502]
