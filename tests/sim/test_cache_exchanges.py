"""The HTTP cache on the simulated network, over every client protocol.

The rules have their own tests (``tests/core/test_cache_*``); these check that
the lookup filter and the store stage apply them to real exchanges: a hit never
reaches the backend, a revalidation reaches it once and turns its 304 into the
stored response, concurrent misses wait for one backend request, unsafe requests
invalidate, failures fall back to stale responses where allowed, and what must
not be stored is not. The simulated wall clock starts at 0 with the monotonic one.
"""

from __future__ import annotations

import dataclasses
import gzip
from typing import TYPE_CHECKING

import pytest

from sansproxy.cache.dates import format_http_date
from sansproxy.config import CacheSettings, Compression, ProxyConfig
from sansproxy.events import ConfigReloaded
from tests.simnet import PROTOCOLS, ClientProtocol, SimNet, protocol_config

if TYPE_CHECKING:
    import h11

    from tests.simnet import FakeBackend, ReceivedResponse, Reply

every_protocol = pytest.mark.parametrize("protocol", PROTOCOLS)
START = 1_000_000.0
"""Monotonic start; the wall clock starts at 0 (1970), so Date values are small."""


def caching(protocol: ClientProtocol = "http/1.1", **settings: object) -> ProxyConfig:
    config = protocol_config(protocol)
    cache = dataclasses.replace(CacheSettings(enabled=True), **settings)  # type: ignore[arg-type]
    return dataclasses.replace(config, cache=cache)


class Origin:
    """A backend handler that dates its responses with the simulated wall clock."""

    def __init__(
        self,
        net: SimNet,
        body: bytes = b"hello",
        headers: tuple[tuple[str, str], ...] = (("cache-control", "max-age=60"),),
        status: int = 200,
    ) -> None:
        self.net = net
        self.body = body
        self.headers = headers
        self.status = status
        self.etag: str | None = '"v1"'
        self.not_modified_headers: tuple[tuple[str, str], ...] = ()

    def wall(self) -> float:
        return self.net.clock.now - START

    def __call__(self, request: h11.Request, body: bytes) -> Reply:
        head: list[tuple[bytes | str, bytes | str]] = [("date", format_http_date(self.wall()))]
        if self.etag is not None:
            head.append(("etag", self.etag))
            for name, value in request.headers:
                if name == b"if-none-match" and value == self.etag.encode():
                    return 304, [*head, *(self.not_modified_headers or self.headers)], []
        head.extend(self.headers)
        if request.method == b"HEAD":
            return self.status, [*head, ("content-length", str(len(self.body)))], []
        head.append(("content-length", str(len(self.body))))
        return self.status, head, [self.body]


def world(
    protocol: ClientProtocol = "http/1.1", **settings: object
) -> tuple[SimNet, FakeBackend, Origin]:
    net = SimNet(caching(protocol, **settings), start=START)
    origin = Origin(net)
    backend = net.add_backend("10.0.0.1", 80, origin)
    return net, backend, origin


def get(
    net: SimNet,
    protocol: ClientProtocol = "http/1.1",
    target: str = "/page",
    headers: tuple[tuple[str, str], ...] = (),
    method: str = "GET",
) -> ReceivedResponse:
    client = net.connect(protocol)
    client.request(method, target, headers)
    net.run()
    (response,) = client.responses
    assert response.complete
    return response


def cache_status(response: ReceivedResponse) -> str:
    value = response.header(b"cache-status")
    assert value is not None
    return value.decode()


@every_protocol
def test_a_hit_is_served_without_the_backend_with_its_age(protocol: ClientProtocol) -> None:
    net, backend, _ = world(protocol)
    first = get(net, protocol)
    assert first.body == b"hello"
    assert cache_status(first) == "sansproxy; fwd=uri-miss; stored"
    net.advance(7)
    second = get(net, protocol)
    assert second.status == 200
    assert second.body == b"hello"
    assert second.header(b"age") == b"7"
    assert second.header(b"date") == format_http_date(0)
    assert cache_status(second) == "sansproxy; hit; ttl=53"
    assert len(backend.requests) == 1
    stats = net.proxy.cache_statistics()
    assert (stats["listener-0"].hits, stats["listener-0"].misses) == (1, 1)


@every_protocol
def test_a_stale_response_is_revalidated_once_and_the_304_serves_the_stored_body(
    protocol: ClientProtocol,
) -> None:
    net, backend, origin = world(protocol)
    get(net, protocol)
    net.advance(61)
    origin.not_modified_headers = (("x-refreshed", "yes"), ("cache-control", "max-age=100"))
    origin.body = b"changed but not served"  # a 304 says the stored body is still good
    response = get(net, protocol)
    assert response.status == 200
    assert response.body == b"hello"
    assert response.header(b"x-refreshed") == b"yes"
    assert cache_status(response) == 'sansproxy; fwd=stale; fwd-status=304; detail="stale"'
    assert len(backend.requests) == 2
    assert backend.requests[1].header(b"if-none-match") == b'"v1"'
    # The 304's max-age=100 now counts from the revalidation.
    net.advance(50)
    again = get(net, protocol)
    assert cache_status(again).startswith("sansproxy; hit; ttl=50")
    assert len(backend.requests) == 2


def test_a_revalidation_answered_in_full_replaces_the_stored_response() -> None:
    net, backend, origin = world()
    get(net)
    net.advance(61)
    origin.etag = '"v2"'
    origin.body = b"new"
    assert get(net).body == b"new"
    assert get(net).body == b"new"
    assert len(backend.requests) == 2


@every_protocol
def test_a_clients_conditional_request_gets_304_from_a_fresh_stored_response(
    protocol: ClientProtocol,
) -> None:
    net, backend, _ = world(protocol)
    get(net, protocol)
    response = get(net, protocol, headers=(("if-none-match", 'W/"v1"'),))
    assert response.status == 304
    assert response.body == b""
    assert response.header(b"etag") == b'"v1"'
    assert len(backend.requests) == 1


def test_a_clients_condition_is_kept_apart_from_the_revalidation() -> None:
    """The client's If-None-Match does not reach the backend; its 304 comes from the store."""
    net, backend, _ = world()
    get(net)
    net.advance(61)
    response = get(net, headers=(("if-none-match", '"other"'),))
    assert response.status == 200
    assert backend.requests[1].header(b"if-none-match") == b'"v1"'
    net.advance(61)
    response = get(net, headers=(("if-none-match", '"v1"'),))
    assert response.status == 304


@pytest.mark.parametrize(
    ("headers", "request_headers", "detail"),
    [
        ((("cache-control", "no-store"),), (), "no-store"),
        ((("cache-control", "private, max-age=60"),), (), "private"),
        ((("cache-control", "max-age=60"),), (("authorization", "Basic eDp5"),), "authorization"),
        ((("cache-control", "max-age=60"), ("vary", "*")), (), "vary *"),
        ((("cache-control", "max-age=60"),), (("cache-control", "no-store"),), "request no-store"),
    ],
)
def test_what_must_not_be_stored_is_not(
    headers: tuple[tuple[str, str], ...],
    request_headers: tuple[tuple[str, str], ...],
    detail: str,
) -> None:
    net, backend, origin = world()
    origin.headers = headers
    first = get(net, headers=request_headers)
    assert cache_status(first) == f'sansproxy; fwd=uri-miss; detail="{detail}"'
    get(net, headers=request_headers)
    assert len(backend.requests) == 2


def test_a_set_cookie_response_is_stored_and_replayed_as_rfc_9111_says() -> None:
    net, backend, origin = world()
    origin.headers = (("cache-control", "max-age=60"), ("set-cookie", "theme=dark"))
    get(net)
    second = get(net)
    assert cache_status(second).startswith("sansproxy; hit")
    assert second.header(b"set-cookie") == b"theme=dark"
    assert len(backend.requests) == 1


def test_no_cache_naming_set_cookie_keeps_the_cookie_out_of_the_store() -> None:
    net, backend, origin = world()
    origin.headers = (
        ("cache-control", 'max-age=60, no-cache="Set-Cookie"'),
        ("set-cookie", "session=alice"),
    )
    assert get(net).header(b"set-cookie") == b"session=alice"
    second = get(net)
    assert cache_status(second).startswith("sansproxy; hit")
    assert second.header(b"set-cookie") is None
    assert len(backend.requests) == 1


def test_set_cookie_refuse_stores_no_response_that_sets_a_cookie() -> None:
    net, backend, origin = world(set_cookie="refuse")
    origin.headers = (("cache-control", "max-age=60"), ("set-cookie", "a=b"))
    assert 'detail="set-cookie"' in cache_status(get(net))
    get(net)
    assert len(backend.requests) == 2


def test_a_stored_set_cookie_response_never_hands_the_cookie_to_another_client() -> None:
    net, backend, origin = world(set_cookie="strip")
    origin.headers = (("cache-control", "max-age=60"), ("set-cookie", "session=alice"))
    assert get(net).header(b"set-cookie") == b"session=alice"
    second = get(net)
    assert cache_status(second).startswith("sansproxy; hit")
    assert second.header(b"set-cookie") is None
    assert len(backend.requests) == 1


@every_protocol
def test_concurrent_misses_wait_for_one_backend_request(protocol: ClientProtocol) -> None:
    net, backend, _ = world(protocol)
    backend.hold = True
    clients = [net.connect(protocol) for _ in range(3)]
    for client in clients:
        client.request("GET", "/page")
    net.run()
    assert len(backend.requests) == 1
    backend.release()
    net.run()
    bodies = [client.responses[0].body for client in clients]
    assert bodies == [b"hello"] * 3
    statuses = [cache_status(client.responses[0]) for client in clients]
    assert statuses[0] == "sansproxy; fwd=uri-miss; stored"
    assert statuses[1:] == ["sansproxy; hit; ttl=60; collapsed"] * 2
    counts = net.proxy.cache_statistics()["listener-0"]
    assert (counts.coalesced, counts.misses, counts.hits) == (2, 1, 2)  # each counted once


def test_waiters_go_on_at_once_when_the_response_will_not_be_stored() -> None:
    net, backend, origin = world()
    origin.headers = (("cache-control", "no-store"),)
    backend.hold = True
    clients = [net.connect("http/1.1") for _ in range(3)]
    for client in clients:
        client.request("GET", "/page")
    net.run()
    backend.release()
    net.run()
    assert len(backend.requests) == 3  # the two waiters forwarded as soon as the head said so
    while backend.held:
        backend.release()
        net.run()
    assert [c.responses[0].body for c in clients] == [b"hello"] * 3


def test_a_waiter_goes_to_the_backend_itself_after_the_coalescing_timeout() -> None:
    net, backend, _ = world(coalesce_timeout=2.0)
    backend.hold = True
    first, second = net.connect("http/1.1"), net.connect("http/1.1")
    first.request("GET", "/page")
    second.request("GET", "/page")
    net.run()
    assert len(backend.requests) == 1
    net.advance(2)
    assert len(backend.requests) == 2
    backend.release(1)
    net.run()
    assert second.responses[0].body == b"hello"
    assert "collapsed" in cache_status(second.responses[0])
    backend.release()
    net.run()
    assert first.responses[0].body == b"hello"


def test_a_waiter_whose_client_leaves_is_dropped_from_the_queue() -> None:
    net, backend, _ = world()
    backend.hold = True
    first, second = net.connect("http/1.1"), net.connect("http/1.1")
    first.request("GET", "/page")
    second.request("GET", "/page")
    net.run()
    second.close()
    net.run()
    backend.release()
    net.run()
    assert first.responses[0].body == b"hello"
    assert net.proxy.cache_statistics()["listener-0"].coalesced == 1


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_a_successful_unsafe_request_invalidates_the_uri_and_its_location(method: str) -> None:
    net, backend, origin = world()
    get(net, target="/page")
    get(net, target="/other")
    origin.headers = (("location", "/other"),)
    get(net, method=method, target="/page")
    assert len(backend.requests) == 3
    origin.headers = (("cache-control", "max-age=60"),)
    get(net, target="/page")
    get(net, target="/other")
    assert len(backend.requests) == 5


def test_a_failed_unsafe_request_invalidates_nothing() -> None:
    net, _, origin = world()
    get(net)
    origin.status = 500
    get(net, method="POST")
    origin.status = 200
    assert cache_status(get(net)).startswith("sansproxy; hit")


def test_a_purge_from_a_trusted_network_removes_every_variant() -> None:
    net = SimNet(caching(purge_method=b"PURGE", purge_from=("203.0.113.0/24",)), start=START)
    origin = Origin(net)
    origin.headers = (("cache-control", "max-age=60"), ("vary", "accept-language"))
    backend = net.add_backend("10.0.0.1", 80, origin)
    get(net, headers=(("accept-language", "en"),))
    get(net, headers=(("accept-language", "fr"),))
    purged = get(net, method="PURGE")
    assert (purged.status, purged.body) == (200, b"purged 2\n")
    assert get(net, method="PURGE").status == 404
    get(net, headers=(("accept-language", "en"),))
    assert len(backend.requests) == 3


def test_a_purge_from_elsewhere_is_refused() -> None:
    net, backend, _ = world(purge_method=b"PURGE")  # default: loopback only
    get(net)
    assert get(net, method="PURGE").status == 403
    assert cache_status(get(net)).startswith("sansproxy; hit")
    assert len(backend.requests) == 1


@pytest.mark.parametrize("failure", ["status 500", "refused"])
def test_stale_if_error_serves_the_stored_response_when_the_backend_fails(failure: str) -> None:
    net, backend, origin = world()
    origin.headers = (("cache-control", "max-age=10, stale-if-error=60"),)
    get(net)
    net.advance(20)
    if failure == "refused":
        backend.refuse = True
        backend.kill()  # the pooled connection too
        net.run()
    else:
        origin.status = 500
        origin.etag = None
    response = get(net)
    assert (response.status, response.body) == (200, b"hello")
    assert response.header(b"age") == b"20"
    assert "stale-if-error" in cache_status(response)


def test_past_the_stale_if_error_window_the_error_goes_through() -> None:
    net, _, origin = world()
    origin.headers = (("cache-control", "max-age=10, stale-if-error=5"),)
    get(net)
    net.advance(20)
    origin.status, origin.etag = 500, None
    assert get(net).status == 500


def test_must_revalidate_answers_504_when_the_backend_cannot_be_reached() -> None:
    net, backend, origin = world()
    origin.headers = (("cache-control", "max-age=10, must-revalidate"),)
    get(net)
    net.advance(20)
    backend.refuse = True
    backend.kill()
    net.run()
    assert get(net).status == 504


def test_only_if_cached_answers_504_when_nothing_is_stored() -> None:
    net, backend, _ = world()
    response = get(net, headers=(("cache-control", "only-if-cached"),))
    assert response.status == 504
    assert not backend.requests
    get(net)
    assert get(net, headers=(("cache-control", "only-if-cached"),)).status == 200


def test_a_response_past_the_maximum_object_size_reaches_the_client_but_is_not_stored() -> None:
    net, backend, origin = world(max_object_size=1024)
    origin.body = b"x" * 4096
    first = get(net)
    assert first.body == origin.body
    assert 'detail="too large"' in cache_status(first)
    get(net)
    assert len(backend.requests) == 2


def test_a_body_without_a_length_that_grows_too_large_stops_being_stored() -> None:
    net, backend, origin = world(max_object_size=1024)

    def chunked(request: h11.Request, body: bytes) -> Reply:
        date = format_http_date(origin.wall())
        return 200, [("date", date), ("cache-control", "max-age=60")], [b"y" * 600] * 4

    backend.handler = chunked
    assert get(net).body == b"y" * 2400
    get(net)
    assert len(backend.requests) == 2


def test_a_backend_that_dies_mid_body_stores_nothing() -> None:
    net, backend, origin = world()
    origin.body = b"z" * 5000
    backend.die_after = 3000
    client = net.connect("http/1.1")
    client.request("GET", "/page")
    net.run()
    assert client.outcomes == ["closed"]
    backend.die_after = None
    assert get(net).body == origin.body
    assert len(backend.requests) == 2


@every_protocol
def test_head_is_answered_from_a_stored_get(protocol: ClientProtocol) -> None:
    net, backend, _ = world(protocol)
    get(net, protocol)
    response = get(net, protocol, method="HEAD")
    assert response.status == 200
    assert response.body == b""
    assert response.header(b"content-length") == b"5"
    assert len(backend.requests) == 1


def test_vary_keeps_one_variant_per_request_value() -> None:
    net, backend, origin = world()
    origin.headers = (("cache-control", "max-age=60"), ("vary", "Accept-Language"))
    get(net, headers=(("accept-language", "en"),))
    miss = get(net, headers=(("accept-language", "fr"),))
    assert cache_status(miss).startswith("sansproxy; fwd=vary-miss")
    assert cache_status(get(net, headers=(("accept-language", "en"),))).startswith("sansproxy; hit")
    assert len(backend.requests) == 2


def test_extra_key_parts_separate_what_the_uri_does_not() -> None:
    net, backend, _ = world(key_cookies=(b"tenant",), key_headers=(b"x-region",))
    get(net, headers=(("cookie", "tenant=a"),))
    get(net, headers=(("cookie", "tenant=b"),))
    get(net, headers=(("cookie", "tenant=a"), ("x-region", "eu")))
    assert len(backend.requests) == 3
    assert cache_status(get(net, headers=(("cookie", "x=1; tenant=a"),))).startswith(
        "sansproxy; hit"
    )


def test_a_hit_is_compressed_for_a_client_that_asks() -> None:
    net = SimNet(
        dataclasses.replace(
            caching(), compression=Compression(enabled=True, min_size=0, types=("text/*",))
        ),
        start=START,
    )
    origin = Origin(net, body=b"text " * 400)
    origin.headers = (("cache-control", "max-age=60"), ("content-type", "text/plain"))
    backend = net.add_backend("10.0.0.1", 80, origin)
    get(net)  # stored as the backend sent it
    hit = get(net, headers=(("accept-encoding", "gzip"),))
    assert hit.header(b"content-encoding") == b"gzip"
    assert gzip.decompress(hit.body) == origin.body
    assert get(net).body == origin.body
    assert len(backend.requests) == 1


def test_cache_status_can_be_turned_off() -> None:
    net, _, _ = world(status_header=False)
    assert get(net).header(b"cache-status") is None


def test_the_store_outlives_a_reload_with_the_same_cache_settings() -> None:
    net, backend, _ = world()
    get(net)
    net._handle(ConfigReloaded(config=net.config))
    net.run()
    assert cache_status(get(net)).startswith("sansproxy; hit")
    assert len(backend.requests) == 1


@every_protocol
def test_stale_while_revalidate_serves_at_once_and_refreshes_once_in_the_background(
    protocol: ClientProtocol,
) -> None:
    net, backend, origin = world(protocol)
    origin.headers = (("cache-control", "max-age=10, stale-while-revalidate=30"),)
    get(net, protocol)
    net.advance(15)
    backend.hold = True  # the refresh waits at the backend
    stale = [get(net, protocol) for _ in range(3)]
    assert [r.body for r in stale] == [b"hello"] * 3
    assert all('detail="stale-while-revalidate"' in cache_status(r) for r in stale)
    assert stale[0].header(b"age") == b"15"
    assert len(backend.requests) == 2  # one refresh for three stale serves
    assert backend.requests[1].header(b"if-none-match") == b'"v1"'
    origin.etag, origin.body = '"v2"', b"fresh"
    backend.release()
    net.run()
    response = get(net, protocol)
    assert response.body == b"fresh"
    assert cache_status(response).startswith("sansproxy; hit")
    assert len(backend.requests) == 2
    assert len(net.access_logs) == 5  # the refresh is not a client's request


def test_past_the_stale_while_revalidate_window_the_client_waits_for_validation() -> None:
    net, backend, origin = world()
    origin.headers = (("cache-control", "max-age=10, stale-while-revalidate=5"),)
    get(net)
    net.advance(20)
    response = get(net)
    assert "fwd=stale; fwd-status=304" in cache_status(response)
    assert len(backend.requests) == 2


def test_the_access_log_records_what_the_cache_did() -> None:
    net, _, origin = world()
    get(net)
    get(net)
    net.advance(61)
    get(net)
    origin.etag = '"v2"'
    net.advance(61)
    get(net)
    get(net, method="POST")  # invalidates /page
    get(net, headers=(("range", "bytes=0-1"),))
    assert [record.cache for record in net.access_logs] == [
        "miss",
        "hit",
        "revalidated",
        "expired",
        "bypass",
        "miss",  # a range request with nothing stored goes through
    ]


def test_the_access_log_has_no_cache_outcome_where_the_route_does_not_cache() -> None:
    net = SimNet(protocol_config("http/1.1"), start=START)
    net.add_backend("10.0.0.1", 80, Origin(net))
    get(net)
    assert net.access_logs[0].cache is None


@every_protocol
@pytest.mark.parametrize(
    ("range_value", "status", "body", "content_range"),
    [
        ("bytes=0-3", 206, b"0123", b"bytes 0-3/10"),
        ("bytes=7-", 206, b"789", b"bytes 7-9/10"),
        ("bytes=-2", 206, b"89", b"bytes 8-9/10"),
        ("bytes=5-100", 206, b"56789", b"bytes 5-9/10"),
        ("bytes=10-", 416, b"", b"bytes */10"),
        ("bytes=0-1,4-5", 200, b"0123456789", None),  # several ranges: the whole response
        ("items=0-1", 200, b"0123456789", None),
    ],
)
def test_a_range_is_answered_from_a_complete_stored_response(
    protocol: ClientProtocol,
    range_value: str,
    status: int,
    body: bytes,
    content_range: bytes | None,
) -> None:
    net, backend, origin = world(protocol)
    origin.body = b"0123456789"
    get(net, protocol)
    response = get(net, protocol, headers=(("range", range_value),))
    assert (response.status, response.body) == (status, body)
    assert response.header(b"content-range") == content_range
    assert len(backend.requests) == 1


def test_if_range_keeps_the_range_only_for_the_stored_representation() -> None:
    net, _, origin = world()
    origin.body = b"0123456789"
    get(net)
    same = get(net, headers=(("range", "bytes=0-1"), ("if-range", '"v1"')))
    other = get(net, headers=(("range", "bytes=0-1"), ("if-range", '"v0"')))
    assert (same.status, same.body) == (206, b"01")
    assert (other.status, other.body) == (200, b"0123456789")


def test_a_range_request_without_a_stored_response_goes_through_and_is_not_stored() -> None:
    net, backend, origin = world()
    origin.body = b"0123456789"

    def partial(request: h11.Request, body: bytes) -> Reply:
        if dict(request.headers).get(b"range"):
            return 206, [("content-range", "bytes 0-1/10"), ("content-length", "2")], [b"01"]
        return origin(request, body)

    backend.handler = partial
    response = get(net, headers=(("range", "bytes=0-1"),))
    assert (response.status, response.body) == (206, b"01")
    assert 'detail="range request"' in cache_status(response)
    assert cache_status(get(net)).startswith("sansproxy; fwd=uri-miss; stored")
    assert len(backend.requests) == 2


def compressing_world() -> tuple[SimNet, FakeBackend, Origin]:
    net = SimNet(
        dataclasses.replace(
            caching(), compression=Compression(enabled=True, min_size=0, types=("text/*",))
        ),
        start=START,
    )
    origin = Origin(net, body=b"text " * 400)
    origin.headers = (("cache-control", "max-age=60"), ("content-type", "text/plain"))
    return net, net.add_backend("10.0.0.1", 80, origin), origin


def test_a_hit_is_compressed_once_per_coding_and_the_encoding_kept() -> None:
    net, backend, origin = compressing_world()
    get(net)
    gzip_headers = (("accept-encoding", "gzip"),)
    first = get(net, headers=gzip_headers)
    before = net.proxy.cache_statistics()["listener-0"].bytes
    second = get(net, headers=gzip_headers)
    assert gzip.decompress(first.body) == gzip.decompress(second.body) == origin.body
    assert second.body == first.body  # the kept encoding, sent as it is
    assert net.proxy.cache_statistics()["listener-0"].bytes == before
    assert before > len(origin.body) + len(first.body)  # the encoding counts in the store
    assert get(net).body == origin.body  # identity still there for who asks for it
    # A 304 keeps the stored encodings: the body did not change.
    net.advance(61)
    third = get(net, headers=gzip_headers)
    assert "fwd-status=304" in cache_status(third)
    assert third.body == first.body
    assert len(backend.requests) == 2


def test_a_compressed_hit_answers_a_conditional_request_with_its_weak_etag() -> None:
    net, backend, _ = compressing_world()
    get(net)
    compressed = get(net, headers=(("accept-encoding", "gzip"),))
    etag = compressed.header(b"etag")
    assert etag == b'W/"v1"'
    again = get(net, headers=(("accept-encoding", "gzip"), ("if-none-match", etag.decode())))
    assert again.status == 304
    assert len(backend.requests) == 1


@pytest.mark.parametrize(
    ("headers", "stored"),
    [
        ((("cache-control", "no-store"), ("cdn-cache-control", "max-age=600")), True),
        ((("cache-control", "max-age=600"), ("cdn-cache-control", "no-store")), False),
        ((("cache-control", "max-age=600"), ("cdn-cache-control", "private")), False),
        # An invalid targeted field is ignored as a whole: Cache-Control applies.
        ((("cache-control", "no-store"), ("cdn-cache-control", "max-age=600, &&&")), False),
        ((("cache-control", "no-store"), ("cdn-cache-control", 'max-age="600"')), False),
        ((("expires", "0"), ("cdn-cache-control", "max-age=600")), True),
    ],
)
def test_cdn_cache_control_takes_the_place_of_cache_control(
    headers: tuple[tuple[str, str], ...], stored: bool
) -> None:
    net, backend, origin = world()
    origin.headers = headers
    first = get(net)
    assert first.header(b"cdn-cache-control") is not None  # forwarded as it is
    get(net)
    assert len(backend.requests) == (1 if stored else 2)


def test_targeted_fields_can_be_turned_off() -> None:
    net, backend, origin = world(targeted_fields=())
    origin.headers = (("cache-control", "no-store"), ("cdn-cache-control", "max-age=600"))
    get(net)
    get(net)
    assert len(backend.requests) == 2
