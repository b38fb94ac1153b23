"""The HTTP cache through the real proxy, with real clients: httpx and curl.

Every test runs on each adapter; the ones that can differ by protocol run over
HTTP/1.1, HTTP/2 over TLS (ALPN) and HTTP/2 in cleartext (prior knowledge), as
``test_compression`` does. The backend numbers its ``/cached/NAME`` answers by the
requests that reached it (``NAME response N``) and keeps every request head, so a
test sees both which response a client got and what reached the backend.

Time is the wall clock here: lifetimes are one second, and a test that waits for a
response to go stale waits a bounded time past it. The proxy's ``Age`` counts whole
seconds and its ``Date`` (the backend sends none) is cut to the second, so a response
with ``max-age=1`` is stale for certain two seconds after it arrived.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from backend import Backend
from conftest import TlsFiles
from test_http2 import H2Proxy, Start, h2_client, run_curl, start_h2_proxy

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

KINDS = ["http/1.1", "h2-tls", "h2c"]
STALE_AFTER = 2.2
"""Seconds after a ``max-age=1`` response arrived when it is stale for certain."""
REFRESH_DELAY = 2.0
"""How long the backend takes over a background refresh in the stale-while-revalidate test."""
IMMEDIATE = 1.2
"""A response served without waiting for a :data:`REFRESH_DELAY` backend comes within this."""
COALESCE_DELAY = 1.5
"""How long the backend takes over the miss the other requests wait for."""
MISS_STORED = {"fwd": "uri-miss", "stored": ""}
"""Cache-Status of a first request: nothing stored for the URI; the response was stored."""


def start_cache_proxy(
    start_proxy: Start, tls_files: TlsFiles, backend: Backend, **cache: Any
) -> H2Proxy:
    """A TLS (h2 + http/1.1) and a cleartext (h2c + http/1.1) listener, the cache on."""
    return start_h2_proxy(start_proxy, tls_files, backend.url, cache={"enabled": True, **cache})


@pytest.fixture
def proxy(start_proxy: Start, backend: Backend, tls_files: TlsFiles) -> H2Proxy:
    return start_cache_proxy(start_proxy, tls_files, backend, purge_method="PURGE")


@contextmanager
def client(proxy: H2Proxy, kind: str) -> Iterator[httpx.Client]:
    if kind == "http/1.1":
        with httpx.Client(base_url=proxy.h2c_url, timeout=20) as http:
            yield http
    else:
        with h2_client(proxy, "tls" if kind == "h2-tls" else "h2c") as http:
            yield http


def path_for(name: str, kind: str) -> str:
    """A path of its own per test and protocol (the backend's body names it)."""
    return f"/cached/{name}-{kind.replace('/', '')}"


@dataclass(frozen=True, slots=True)
class CurlResponse:
    status: int
    version: str
    headers: dict[str, str]
    body: bytes


def curl_get(curl: str, proxy: H2Proxy, kind: str, target: str, *options: str) -> CurlResponse:
    """One request with curl over ``kind``; the status, head fields (lower-case) and body."""
    flags = {
        "http/1.1": ["--http1.1", proxy.h2c_url],
        "h2-tls": ["--http2", "--cacert", str(proxy.tls.ca_file), proxy.tls_url],
        "h2c": ["--http2-prior-knowledge", proxy.h2c_url],
    }[kind]
    *protocol, base = flags
    result = run_curl(curl, "-D", "-", *protocol, *options, base + target)
    assert result.returncode == 0, result.stderr
    head, _, body = result.stdout.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    version, status = status_line.split()[:2]
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return CurlResponse(int(status), version, headers, body)


def wait_until(predicate: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    """Poll ``predicate`` every ``step`` seconds for at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
    return True


def sleep_until(moment: float) -> None:
    """Sleep (in short steps) until ``time.monotonic()`` reaches ``moment``."""
    while (left := moment - time.monotonic()) > 0:
        time.sleep(min(left, 0.1))


def cache_status(headers: Mapping[str, str]) -> dict[str, str]:
    """The proxy's ``Cache-Status`` member (RFC 9211) as parameters: ``hit`` -> ``""`` etc."""
    name, *parameters = (part.strip() for part in headers.get("cache-status", "").split(";"))
    assert name == "sansproxy", headers.get("cache-status")
    found = {}
    for parameter in parameters:
        key, _, value = parameter.partition("=")
        found[key] = value.strip('"')
    return found


def is_hit(response: httpx.Response) -> bool:
    """Whether the response is a fresh hit: served from the store, not forwarded, not stale."""
    status = cache_status(response.headers)
    return "hit" in status and "fwd" not in status and int(status.get("ttl", "1")) > 0


# -- hits: served from the store -----------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_hits_are_served_from_the_store_without_the_backend(
    proxy: H2Proxy, backend: Backend, curl: str, kind: str
) -> None:
    path = path_for("hit", kind)
    target = path + "?max_age=60"
    with client(proxy, kind) as http:
        first = http.get(target)
        hits = [http.get(target) for _ in range(3)]
    assert first.status_code == 200
    assert first.http_version == ("HTTP/1.1" if kind == "http/1.1" else "HTTP/2")
    assert first.text == f"{path[8:]} response 1\n"
    assert cache_status(first.headers) == MISS_STORED
    for response in hits:
        assert response.status_code == 200
        assert response.content == first.content
        assert is_hit(response), response.headers.get("cache-status")
        assert int(response.headers["age"]) >= 0
        assert response.headers["content-length"] == str(len(first.content))
        assert response.headers["cache-control"] == "max-age=60"
        # What the proxy hides on a forwarded response stays hidden on a stored one.
        assert "x-powered-by" not in response.headers
        assert "secret" not in response.headers.get("server", "")
    # curl, another client with other request fields, gets the same stored response.
    seen = curl_get(curl, proxy, kind, target)
    assert seen.status == 200
    assert seen.version == ("HTTP/1.1" if kind == "http/1.1" else "HTTP/2")
    assert seen.body == first.content
    assert "hit" in cache_status(seen.headers)
    assert "age" in seen.headers
    assert backend.count(path) == 1


@pytest.mark.parametrize("kind", KINDS)
def test_head_and_a_clients_own_condition_are_answered_from_the_store(
    proxy: H2Proxy, backend: Backend, kind: str
) -> None:
    path = path_for("cond", kind)
    target = path + "?max_age=60&etag=v1"
    with client(proxy, kind) as http:
        first = http.get(target)
        head = http.head(target)
        conditional = http.get(target, headers={"if-none-match": '"v1"'})
    assert first.headers["etag"] == '"v1"'
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(first.content))
    assert is_hit(head)
    assert conditional.status_code == 304
    assert conditional.content == b""
    assert conditional.headers["etag"] == '"v1"'
    assert backend.count(path) == 1


@pytest.mark.parametrize("kind", ["http/1.1", "h2c"])
def test_concurrent_misses_wait_for_one_backend_request(
    proxy: H2Proxy, backend: Backend, kind: str
) -> None:
    path = path_for("coalesced", kind)
    target = f"{path}?max_age=60&delay={COALESCE_DELAY}"  # the backend is slow to answer
    responses: list[httpx.Response] = []
    lock = threading.Lock()

    def fetch() -> None:
        with client(proxy, kind) as http:
            response = http.get(target)
        with lock:
            responses.append(response)

    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(responses) == 4
    assert {r.content for r in responses} == {f"{path[8:]} response 1\n".encode()}
    statuses = [cache_status(r.headers) for r in responses]
    assert sum(1 for s in statuses if s == MISS_STORED) == 1, statuses
    assert all("collapsed" in s and "hit" in s for s in statuses if s != MISS_STORED), statuses
    assert backend.count(path) == 1


def test_the_store_outlives_a_reload_with_the_same_cache_settings(
    proxy: H2Proxy, backend: Backend
) -> None:
    target = "/cached/reloaded?max_age=60"
    with client(proxy, "http/1.1") as http:
        http.get(target)
        running = proxy.running
        before = running.stderr().count("configuration reloaded from")
        running.proc.send_signal(signal.SIGHUP)  # the same file: the same cache settings
        assert wait_until(
            lambda: running.stderr().count("configuration reloaded from") > before, timeout=10
        ), running.stderr()
        after = http.get(target)
    assert is_hit(after), after.headers.get("cache-status")
    assert backend.count("/cached/reloaded") == 1


# -- revalidation of stale responses -------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_a_stale_response_is_revalidated_once_and_the_304_serves_the_stored_body(
    proxy: H2Proxy, backend: Backend, kind: str
) -> None:
    path = path_for("reval", kind)
    # max-age=1 at first; the 304 says max-age=60, so the revalidated copy stays fresh.
    target = path + "?max_age=1&later_max_age=60&etag=v1"
    with client(proxy, kind) as http:
        first = http.get(target)
        stored_at = time.monotonic()
        assert cache_status(first.headers) == MISS_STORED
        sleep_until(stored_at + STALE_AFTER)
        revalidated = http.get(target)
        after = [http.get(target) for _ in range(2)]
    requests = backend.requests_to(path)
    assert len(requests) == 2, [r.headers for r in requests]
    assert requests[0].header("if-none-match") == []
    assert requests[1].header("if-none-match") == ['"v1"']
    assert revalidated.status_code == 200
    assert revalidated.content == first.content  # the stored body: the backend sent none
    assert revalidated.headers["content-length"] == str(len(first.content))
    status = cache_status(revalidated.headers)
    assert (status.get("fwd"), status.get("fwd-status")) == ("stale", "304"), status
    assert revalidated.headers["cache-control"] == "max-age=60"  # freshened by the 304
    for response in after:
        assert is_hit(response), response.headers.get("cache-status")
        assert response.content == first.content
    assert backend.count(path) == 2


def test_a_revalidation_answered_in_full_replaces_the_stored_response(
    proxy: H2Proxy, backend: Backend
) -> None:
    path = "/cached/replaced"
    # The backend's ETag changes after the first answer: the revalidation gets a 200.
    target = path + "?max_age=1&later_max_age=60&etag=v1&later_etag=v2"
    with client(proxy, "http/1.1") as http:
        first = http.get(target)
        stored_at = time.monotonic()
        sleep_until(stored_at + STALE_AFTER)
        changed = http.get(target)
        hit = http.get(target)
    assert first.text == "replaced response 1\n"
    assert backend.requests_to(path)[1].header("if-none-match") == ['"v1"']
    assert changed.status_code == 200
    assert changed.text == "replaced response 2\n"
    assert changed.headers["etag"] == '"v2"'
    assert cache_status(changed.headers).get("fwd-status") == "200"
    assert is_hit(hit), hit.headers.get("cache-status")
    assert hit.content == changed.content
    assert backend.count(path) == 2


def test_last_modified_is_the_validator_without_an_etag(proxy: H2Proxy, backend: Backend) -> None:
    path = "/cached/modified"
    target = path + "?max_age=1&later_max_age=60&last_modified=1000000000"
    with client(proxy, "h2c") as http:
        first = http.get(target)
        stored_at = time.monotonic()
        sleep_until(stored_at + STALE_AFTER)
        revalidated = http.get(target)
    (_, second) = backend.requests_to(path)
    assert second.header("if-modified-since") == ["Sun, 09 Sep 2001 01:46:40 GMT"]
    assert revalidated.status_code == 200
    assert revalidated.content == first.content == b"modified response 1\n"
    assert cache_status(revalidated.headers).get("fwd-status") == "304"


# -- purge ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["http/1.1", "h2c"])
def test_purge_from_loopback_removes_the_response(
    proxy: H2Proxy, backend: Backend, curl: str, kind: str
) -> None:
    path = path_for("purge", kind)
    target = path + "?max_age=60"
    with client(proxy, kind) as http:
        assert http.get(target).text.endswith("response 1\n")
        assert is_hit(http.get(target))
        purged = curl_get(curl, proxy, kind, target, "-X", "PURGE")
        again = curl_get(curl, proxy, kind, target, "-X", "PURGE")
        refetched = http.get(target)
        hit = http.get(target)
    assert (purged.status, purged.body) == (200, b"purged 1\n")
    assert (again.status, again.body) == (404, b"404 Not Found\n")
    assert refetched.text.endswith("response 2\n")  # it reached the backend again
    assert cache_status(refetched.headers) == MISS_STORED
    assert is_hit(hit)
    assert hit.content == refetched.content
    assert backend.count(path) == 2
    assert all(r.method == "GET" for r in backend.requests_to(path))  # PURGE stays in the proxy


def test_purge_from_an_untrusted_network_is_refused(
    start_proxy: Start, backend: Backend, tls_files: TlsFiles, curl: str
) -> None:
    proxy = start_cache_proxy(
        start_proxy, tls_files, backend, purge_method="PURGE", purge_from=["192.0.2.0/24"]
    )
    target = "/cached/kept?max_age=60"
    with client(proxy, "http/1.1") as http:
        http.get(target)
        refused = curl_get(curl, proxy, "http/1.1", target, "-X", "PURGE")
        kept = http.get(target)
    assert refused.status == 403
    assert is_hit(kept)
    assert backend.count("/cached/kept") == 1


# -- stale-while-revalidate ----------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_stale_while_revalidate_serves_stale_at_once_and_refreshes_once(
    proxy: H2Proxy, backend: Backend, kind: str
) -> None:
    path = path_for("swr", kind)
    # The first answer is fresh for 1 s and may be served stale for 30 s more; the
    # refresh takes REFRESH_DELAY seconds at the backend and is fresh for 60 s.
    target = f"{path}?max_age=1&swr=30&later_max_age=60&delay={REFRESH_DELAY}&delay_from=2"
    with client(proxy, kind) as http:
        first = http.get(target)
        stored_at = time.monotonic()
        assert cache_status(first.headers) == MISS_STORED
        sleep_until(stored_at + STALE_AFTER)
        stale: list[tuple[float, httpx.Response]] = []
        for _ in range(2):
            started = time.monotonic()
            response = http.get(target)
            stale.append((time.monotonic() - started, response))
        for took, response in stale:
            assert response.status_code == 200
            assert response.content == first.content  # the stale body, not the refresh's
            status = cache_status(response.headers)
            assert status.get("detail") == "stale-while-revalidate", status
            assert "fwd-status" not in status, status  # nothing was forwarded for it
            assert took < IMMEDIATE, f"a stale response waited {took:.2f} s"
        # The refresh reaches the backend in the background, once.
        refreshed = wait_until(lambda: backend.count(path) >= 2, timeout=10)
        assert refreshed, "no background refresh reached the backend"
        # Once it is stored the response is fresh again; until then, requests get the stale
        # copy without starting another refresh.
        fresh: list[httpx.Response] = []

        def fresh_again() -> bool:
            response = http.get(target)
            fresh.append(response)
            return is_hit(response)

        assert wait_until(fresh_again, timeout=REFRESH_DELAY + 10, step=0.2), [
            r.headers.get("cache-status") for r in fresh
        ]
    seen = [(r.method, r.target, r.headers) for r in backend.requests_to(path)]
    statuses = [r.headers.get("cache-status") for r in fresh]
    assert fresh[-1].content == f"{path[8:]} response 2\n".encode(), (statuses, seen)
    assert fresh[-1].headers["cache-control"] == "max-age=60, stale-while-revalidate=30", (
        statuses,
        seen,
    )
    assert backend.count(path) == 2, (statuses, seen)
