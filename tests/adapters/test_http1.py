"""HTTP/1.1 through the real proxy: message framing, forwarding headers, protocol errors.

Each test starts a backend (:mod:`backend`) and a ``sansproxy_trio`` process,
then talks to the proxy with httpx, curl or a raw socket.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import socket
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from backend import (
    VALID_RAW_RESPONSES,
    Backend,
    RawClient,
    assert_clean_error_body,
    pattern,
    pattern_pieces,
    pattern_sha256,
)
from conftest import RunningProxy, proxy_config

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

Start = Callable[..., RunningProxy]


LINGER = {"client_linger": 1}
"""After an error response the proxy drains the client for ``client_linger`` seconds
before it closes (RFC 9112 §9.6); a short one keeps the error tests quick."""


@pytest.fixture
def proxy(start_proxy: Start, backend: Backend) -> RunningProxy:
    return start_proxy(proxy_config(backend.url, timeouts=LINGER))


@pytest.fixture
def client(proxy: RunningProxy) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=proxy.url, timeout=10) as http:
        yield http


def backend_headers(response: httpx.Response | bytes) -> dict[str, list[str]]:
    """The request headers the backend's ``/headers`` endpoint reported, by lower-case name."""
    document = json.loads(response if isinstance(response, bytes) else response.content)
    seen: dict[str, list[str]] = {}
    for name, value in document["headers"]:
        seen.setdefault(name.lower(), []).append(value)
    return seen


def split_list(values: list[str]) -> list[str]:
    """A comma-separated header field's members, over all its lines (RFC 9110 §5.6.1)."""
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def parse_forwarded(values: list[str]) -> list[dict[str, str]]:
    """RFC 7239 Forwarded elements as dicts (lower-case keys, quotes removed)."""
    elements = []
    for element in split_list(values):
        pairs = {}
        for pair in element.split(";"):
            key, _, value = pair.strip().partition("=")
            pairs[key.lower()] = value.strip('"')
        elements.append(pairs)
    return elements


# -- plain exchanges -------------------------------------------------------------


def test_plain_get(client: httpx.Client) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert response.text == "backend a\n"
    assert response.headers["content-type"] == "text/plain"
    assert response.headers["x-backend-id"] == "a"


def test_response_carries_via(client: httpx.Client) -> None:
    """RFC 9110 §7.6.3: a proxy adds Via to each message it forwards, responses too."""
    response = client.get("/")
    assert any("sansproxy" in value for value in response.headers.get_list("via"))


def test_access_log_line_per_request(proxy: RunningProxy, client: httpx.Client) -> None:
    client.get("/status?code=201&x=access-log-check", headers={"User-Agent": "suite/1.0"})
    stdout = proxy.wait_for_stdout("access-log-check")
    lines = [line for line in stdout.splitlines() if "access-log-check" in line]
    assert len(lines) == 1, stdout
    line = lines[0]
    assert line.startswith("127.0.0.1 ")
    assert '"GET /status?code=201&x=access-log-check HTTP/1.1" 201 ' in line
    assert '"suite/1.0"' in line


def test_access_log_json(start_proxy: Start, backend: Backend) -> None:
    proxy = start_proxy(proxy_config(backend.url, logging={"access_log_format": "json"}))
    with httpx.Client(base_url=proxy.url, timeout=10) as http:
        assert http.get("/bytes?n=1234&x=json-log").status_code == 200
    stdout = proxy.wait_for_stdout("json-log")
    records = [json.loads(line) for line in stdout.splitlines() if "json-log" in line]
    assert len(records) == 1, stdout
    assert records[0]["status"] == 200
    assert records[0]["method"] == "GET"
    assert records[0]["target"] == "/bytes?n=1234&x=json-log"
    assert records[0]["response_bytes"] == 1234


def test_access_log_can_be_turned_off(start_proxy: Start, backend: Backend) -> None:
    proxy = start_proxy(proxy_config(backend.url, logging={"access_log": False}))
    with httpx.Client(base_url=proxy.url, timeout=10) as http:
        assert http.get("/?x=not-logged").status_code == 200
    assert proxy.terminate() == 0
    assert "not-logged" not in proxy.stdout()


def test_keepalive_reuses_upstream_connection(client: httpx.Client, backend: Backend) -> None:
    conns = {client.get(f"/?i={i}").headers["x-backend-conn"] for i in range(6)}
    assert len(conns) == 1
    assert backend.connections_accepted == 1


def test_upstream_pool_shared_between_client_connections(
    proxy: RunningProxy, backend: Backend
) -> None:
    """Sequential clients on fresh connections get the same pooled backend connection."""
    conns = set()
    for i in range(4):
        with RawClient(proxy.port) as raw:
            response = raw.request("GET", f"/?i={i}")
            assert response.status == 200
            conns.add(response.header("x-backend-conn")[0])
    assert len(conns) == 1
    assert backend.connections_accepted == 1


def test_client_keepalive_many_requests_one_socket(proxy: RunningProxy) -> None:
    with RawClient(proxy.port) as raw:
        for i in range(10):
            response = raw.request("GET", f"/bytes?n={100 * i}")
            assert response.status == 200
            assert response.body == pattern(0, 100 * i)


def test_pipelined_requests_answered_in_order(proxy: RunningProxy) -> None:
    with RawClient(proxy.port) as raw:
        raw.send(
            raw.request_bytes("GET", "/slow?delay=0.5")
            + raw.request_bytes("GET", "/status?code=201")
            + raw.request_bytes("HEAD", "/bytes?n=777")
            + raw.request_bytes("GET", "/bytes?n=5000&chunked=1")
            + raw.request_bytes("POST", "/echo", body=b"pipelined body")
            + raw.request_bytes("GET", "/status?code=202")
        )
        first = raw.read_response("GET")
        assert (first.status, first.body) == (200, b"slow done\n")
        second = raw.read_response("GET")
        assert (second.status, second.body) == (201, b"status 201\n")
        third = raw.read_response("HEAD")
        assert (third.status, third.body, third.header("content-length")) == (200, b"", ["777"])
        fourth = raw.read_response("GET")
        assert (fourth.status, fourth.body) == (200, pattern(0, 5000))
        fifth = raw.read_response("GET")
        assert (fifth.status, fifth.body) == (200, b"pipelined body")
        sixth = raw.read_response("GET")
        assert (sixth.status, sixth.body) == (202, b"status 202\n")


def test_pipelined_request_then_garbage(proxy: RunningProxy, backend: Backend) -> None:
    """The good request is answered first, then the malformed one gets its 400."""
    with RawClient(proxy.port) as raw:
        raw.send(raw.request_bytes("GET", "/?first=1") + b"GARBAGE\r\n\r\n")
        first = raw.read_response("GET")
        second = raw.read_response("GET")
    assert (first.status, first.body) == (200, b"backend a\n")
    assert second.status == 400
    assert [request.target for request in backend.requests] == ["/?first=1"]


def test_head_has_length_but_no_body(proxy: RunningProxy) -> None:
    with RawClient(proxy.port) as raw:
        head = raw.request("HEAD", "/bytes?n=5000")
        assert head.status == 200
        assert head.header("content-length") == ["5000"]
        assert head.body == b""
        # A stray body byte would corrupt the next response on this connection.
        after = raw.request("GET", "/")
        assert (after.status, after.body) == (200, b"backend a\n")


def test_head_with_httpx(client: httpx.Client) -> None:
    response = client.head("/")
    assert response.status_code == 200
    assert response.headers["content-length"] == "10"
    assert response.content == b""


@pytest.mark.parametrize("target", ["/status?code=204", "/status?code=304&cl=1234"])
def test_bodiless_statuses(proxy: RunningProxy, target: str) -> None:
    """204 and 304 end at the head, even a 304 that states a Content-Length (RFC 9110 §8.6)."""
    with RawClient(proxy.port) as raw:
        response = raw.request("GET", target)
        assert response.status == int(target.split("code=")[1][:3])
        assert response.body == b""
        assert raw.request("GET", "/").body == b"backend a\n"


def test_304_keeps_validators(client: httpx.Client) -> None:
    response = client.get("/status?code=304")
    assert response.status_code == 304
    assert response.headers["etag"] == '"v1"'


def test_expect_100_continue_with_curl(proxy: RunningProxy, curl: str, tmp_path: Any) -> None:
    upload = tmp_path / "upload.bin"
    size = 2 * 1024 * 1024 + 17
    upload.write_bytes(pattern(0, size))
    result = subprocess.run(
        [
            curl,
            "-sS",
            "-v",
            "--max-time",
            "20",
            "--expect100-timeout",
            "10",
            "-H",
            "Expect: 100-continue",
            "-H",
            "Content-Type: application/octet-stream",
            "--data-binary",
            f"@{upload}",
            f"{proxy.url}/echo?digest=1",
        ],
        capture_output=True,
        timeout=25,
        check=False,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert json.loads(result.stdout) == {"bytes": size, "sha256": pattern_sha256(size)}
    assert b"< HTTP/1.1 100 Continue" in result.stderr, "curl never got 100 Continue"


def test_expect_100_continue_raw(proxy: RunningProxy) -> None:
    """The client waits for 100 before sending the body; the proxy must let it go on."""
    with RawClient(proxy.port) as raw:
        body = b"x" * 5000
        raw.send(
            raw.request_bytes(
                "POST",
                "/echo?digest=1",
                [("Expect", "100-continue"), ("Content-Length", str(len(body)))],
            )
        )
        received = b""
        while b"\r\n\r\n" not in received:
            piece = raw.sock.recv(4096)
            assert piece, "proxy closed while the client waited for 100 Continue"
            received += piece
        assert received.startswith(b"HTTP/1.1 100 "), received
        raw.leftover = received
        raw.send(body)
        response = raw.read_response("POST")
        assert response.informational == [100]
        assert response.status == 200
        expected = {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}
        assert json.loads(response.body) == expected


def test_chunked_request_body_httpx(client: httpx.Client) -> None:
    size = 3 * 1024 * 1024 + 5
    response = client.post("/echo?digest=1", content=pattern_pieces(size, 10_000))
    assert response.status_code == 200
    assert response.json() == {"bytes": size, "sha256": pattern_sha256(size)}


def test_chunked_request_body_raw_with_extensions_and_trailers(proxy: RunningProxy) -> None:
    with RawClient(proxy.port) as raw:
        body = b"5;name=value\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Req-Trailer: t\r\n\r\n"
        response = raw.request("POST", "/headers", [("Transfer-Encoding", "chunked")], body=body)
        assert response.status == 200
        document = json.loads(response.body)
        assert document["body_bytes"] == 11
        assert document["body_sha256"] == hashlib.sha256(b"hello world").hexdigest()
        assert raw.request("GET", "/").status == 200


def test_response_trailers_forwarded(proxy: RunningProxy) -> None:
    """A chunked response keeps its body and, for a client that accepts them, its trailers."""
    body = pattern(0, 100_000)
    with RawClient(proxy.port) as raw:
        response = raw.request("GET", "/trailers", [("TE", "trailers")])
        assert response.status == 200
        assert response.body == body
        assert ("x-body-sha256", hashlib.sha256(body).hexdigest()) in response.trailers
        assert ("x-trailer-note", "end") in response.trailers


def test_trailers_response_body_intact_without_te(client: httpx.Client) -> None:
    response = client.get("/trailers")
    assert response.status_code == 200
    assert response.content == pattern(0, 100_000)


# -- forwarding headers ------------------------------------------------------------


def test_forwarding_headers_added(proxy: RunningProxy, client: httpx.Client) -> None:
    seen = backend_headers(client.get("/headers"))
    host = f"127.0.0.1:{proxy.port}"
    assert seen["x-forwarded-for"] == ["127.0.0.1"]
    assert seen["x-forwarded-proto"] == ["http"]
    assert seen["x-forwarded-host"] == [host]
    forwarded = parse_forwarded(seen["forwarded"])
    assert len(forwarded) == 1
    assert forwarded[0]["for"] == "127.0.0.1"
    assert forwarded[0]["proto"] == "http"
    assert forwarded[0]["host"] == host
    assert any(item.endswith("sansproxy") for item in split_list(seen["via"]))
    assert split_list(seen["via"])[-1] in ("1.1 sansproxy", "HTTP/1.1 sansproxy")


def test_forged_forwarding_headers_from_untrusted_client_replaced(
    proxy: RunningProxy, client: httpx.Client
) -> None:
    response = client.get(
        "/headers",
        headers={
            "X-Forwarded-For": "6.6.6.6",
            "X-Forwarded-Proto": "https",
            "X-Forwarded-Host": "evil.example",
            "Forwarded": 'for=6.6.6.6;proto=https;host="evil.example"',
        },
    )
    seen = backend_headers(response)
    assert seen["x-forwarded-for"] == ["127.0.0.1"]
    assert seen["x-forwarded-proto"] == ["http"]
    assert seen["x-forwarded-host"] == [f"127.0.0.1:{proxy.port}"]
    assert [element["for"] for element in parse_forwarded(seen["forwarded"])] == ["127.0.0.1"]
    everything = json.dumps(seen)
    assert "6.6.6.6" not in everything
    assert "evil.example" not in everything


def test_trusted_proxy_chain_extended(start_proxy: Start, backend: Backend) -> None:
    proxy = start_proxy(proxy_config(backend.url, headers={"trusted_proxies": ["127.0.0.0/8"]}))
    with httpx.Client(base_url=proxy.url, timeout=10) as http:
        seen = backend_headers(
            http.get(
                "/headers",
                headers={"X-Forwarded-For": "203.0.113.9", "Forwarded": "for=203.0.113.9"},
            )
        )
    assert split_list(seen["x-forwarded-for"]) == ["203.0.113.9", "127.0.0.1"]
    fors = [element["for"] for element in parse_forwarded(seen["forwarded"])]
    assert fors == ["203.0.113.9", "127.0.0.1"]


def test_forwarding_headers_can_be_disabled(start_proxy: Start, backend: Backend) -> None:
    config = proxy_config(
        backend.url, headers={"x_forwarded": False, "forwarded": False, "via": False}
    )
    proxy = start_proxy(config)
    with httpx.Client(base_url=proxy.url, timeout=10) as http:
        response = http.get("/headers")
    seen = backend_headers(response)
    for name in ("x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded", "via"):
        assert name not in seen, name
    assert "via" not in response.headers


def test_hop_by_hop_request_headers_removed(proxy: RunningProxy) -> None:
    with RawClient(proxy.port) as raw:
        response = raw.request(
            "GET",
            "/headers",
            [
                ("Connection", "x-secret, keep-alive"),
                ("X-Secret", "must-not-cross"),
                ("Keep-Alive", "timeout=5"),
                ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
                ("Proxy-Connection", "keep-alive"),
                ("TE", "gzip"),
                ("X-Kept", "yes"),
            ],
        )
    assert response.status == 200
    seen = backend_headers(response.body)
    assert seen["x-kept"] == ["yes"]
    for name in ("x-secret", "keep-alive", "proxy-authorization", "proxy-connection"):
        assert name not in seen, f"{name} reached the backend"
    assert "te" not in seen or split_list(seen["te"]) == ["trailers"]
    assert "x-secret" not in json.dumps(seen.get("connection", [])).lower()
    assert "must-not-cross" not in json.dumps(seen)


def test_hop_by_hop_response_headers_removed(client: httpx.Client) -> None:
    response = client.get("/?hop=1")
    assert response.status_code == 200
    assert "x-backend-hop" not in response.headers
    assert "keep-alive" not in response.headers
    assert "x-backend-hop" not in response.headers.get("connection", "").lower()


@pytest.mark.parametrize("target", ["/", "/status?code=404", "/status?code=500", "/nowhere"])
def test_backend_identity_hidden(client: httpx.Client, target: str) -> None:
    response = client.get(target)
    assert response.headers.get("x-backend-id") == "a"  # a normal header still crosses
    assert "x-powered-by" not in response.headers
    assert "secret" not in response.headers.get("server", "")


def test_server_header_replaced(start_proxy: Start, backend: Backend) -> None:
    proxy = start_proxy(proxy_config(backend.url, headers={"server": "front/2"}))
    with httpx.Client(base_url=proxy.url, timeout=10) as http:
        response = http.get("/")
    assert response.headers.get_list("server") == ["front/2"]
    assert "x-powered-by" not in response.headers


def test_custom_hidden_response_headers(start_proxy: Start, backend: Backend) -> None:
    config = proxy_config(
        backend.url, headers={"hide_response_headers": ["x-backend-id", "x-powered-by"]}
    )
    proxy = start_proxy(config)
    with httpx.Client(base_url=proxy.url, timeout=10) as http:
        response = http.get("/")
    assert response.status_code == 200
    assert "x-backend-id" not in response.headers
    assert "x-powered-by" not in response.headers
    assert response.headers["x-backend-conn"] == "1"


def test_host_passed_through(client: httpx.Client) -> None:
    seen = backend_headers(client.get("/headers", headers={"Host": "app.example"}))
    assert seen["host"] == ["app.example"]
    assert seen["x-forwarded-host"] == ["app.example"]


def test_host_header_rewritten(start_proxy: Start, backend: Backend) -> None:
    proxy = start_proxy(proxy_config(backend.url, upstream={"host_header": "rewritten.example"}))
    with httpx.Client(base_url=proxy.url, timeout=10) as http:
        seen = backend_headers(http.get("/headers", headers={"Host": "app.example"}))
    assert seen["host"] == ["rewritten.example"]
    assert seen["x-forwarded-host"] == ["app.example"]


def test_request_target_and_method_preserved(client: httpx.Client) -> None:
    response = client.request("PATCH", "/headers?a=1&b=%20x&c=%2F#frag", content=b"data")
    document = response.json()
    assert document["method"] == "PATCH"
    assert document["target"] == "/headers?a=1&b=%20x&c=%2F"
    assert document["body_bytes"] == 4


# -- protocol errors ---------------------------------------------------------------


@pytest.fixture
def strict_proxy(start_proxy: Start, backend: Backend) -> RunningProxy:
    limits = {
        "max_header_bytes": 8192,
        "max_header_count": 20,
        "max_uri_bytes": 1024,
        "max_body_bytes": 1024,
    }
    return start_proxy(proxy_config(backend.url, limits=limits, timeouts=LINGER))


def exchange_raw(port: int, data: bytes, method: str = "GET") -> tuple[int, bytes, bool]:
    """Send ``data``, read one response; returns status, body and whether the proxy then closed."""
    with RawClient(port) as raw:
        raw.send(data)
        response = raw.read_response(method)
        closed = raw.eof or raw.is_closed_by_peer(10.0)
        return response.status, response.body, closed


@pytest.mark.parametrize(
    "data",
    [
        b"GARBAGE\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost : x\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    ],
    ids=[
        "garbage",
        "no-colon",
        "space-before-colon",
        "no-host",
        "two-hosts",
        "two-lengths",
        "negative-length",
    ],
)
def test_malformed_request_gets_400(proxy: RunningProxy, backend: Backend, data: bytes) -> None:
    status, body, closed = exchange_raw(proxy.port, data)
    assert status == 400
    assert closed
    assert_clean_error_body(body, backend.port)
    assert backend.requests == []


def test_huge_header_gets_431(strict_proxy: RunningProxy, backend: Backend) -> None:
    request = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 10_000 + b"\r\n\r\n"
    status, body, _ = exchange_raw(strict_proxy.port, request)
    assert status == 431
    assert_clean_error_body(body, backend.port)
    assert backend.requests == []


def test_too_many_headers_gets_431(strict_proxy: RunningProxy, backend: Backend) -> None:
    fields = b"".join(b"X-H%d: v\r\n" % i for i in range(30))
    status, body, _ = exchange_raw(
        strict_proxy.port, b"GET / HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n"
    )
    assert status == 431
    assert_clean_error_body(body, backend.port)
    assert backend.requests == []


def test_long_uri_gets_414(strict_proxy: RunningProxy, backend: Backend) -> None:
    target = b"/" + b"a" * 2000
    status, body, _ = exchange_raw(
        strict_proxy.port, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    assert status == 414
    assert_clean_error_body(body, backend.port)
    assert backend.requests == []


def test_body_over_limit_gets_413(strict_proxy: RunningProxy, backend: Backend) -> None:
    body = b"z" * 2048
    request = b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2048\r\n\r\n" + body
    status, error_body, _ = exchange_raw(strict_proxy.port, request, "POST")
    assert status == 413
    assert_clean_error_body(error_body, backend.port)
    assert backend.requests == []


def test_body_over_limit_with_expect_gets_413_without_100(
    strict_proxy: RunningProxy, backend: Backend
) -> None:
    request = (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4096\r\nExpect: 100-continue\r\n\r\n"
    )
    with RawClient(strict_proxy.port) as raw:
        raw.send(request)
        response = raw.read_response("POST")
    assert response.informational == []
    assert response.status == 413
    assert backend.requests == []


def test_chunked_body_over_limit_gets_413(strict_proxy: RunningProxy, backend: Backend) -> None:
    chunk = b"z" * 600
    body = b"".join(b"258\r\n" + chunk + b"\r\n" for _ in range(3)) + b"0\r\n\r\n"
    request = b"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + body
    status, error_body, _ = exchange_raw(strict_proxy.port, request, "POST")
    assert status == 413
    assert_clean_error_body(error_body, backend.port)


@pytest.mark.parametrize("coding", ["gzip", "gzip, chunked"])
def test_unknown_transfer_coding_gets_501(
    proxy: RunningProxy, backend: Backend, coding: str
) -> None:
    """RFC 9112 §6.1: an unknown transfer coding is answered 501, and the connection closed."""
    request = (
        f"POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: {coding}\r\n\r\n"
        "5\r\nhello\r\n0\r\n\r\n"
    ).encode()
    status, body, closed = exchange_raw(proxy.port, request, "POST")
    assert status == 501
    assert closed
    assert_clean_error_body(body, backend.port)
    assert backend.requests == []


def test_content_length_and_transfer_encoding_gets_400(
    proxy: RunningProxy, backend: Backend
) -> None:
    """RFC 9112 §6.3: CL with TE is a smuggling attempt; refuse it and close the connection."""
    request = (
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    status, body, closed = exchange_raw(proxy.port, request, "POST")
    assert status == 400
    assert closed
    assert_clean_error_body(body, backend.port)
    assert backend.requests_to("/smuggled") == []


def test_proxy_still_serves_after_errors(proxy: RunningProxy) -> None:
    for data in (b"GARBAGE\r\n\r\n", b"GET / HTTP/1.1\r\n\r\n"):
        exchange_raw(proxy.port, data)
    with httpx.Client(base_url=proxy.url, timeout=10) as http:
        assert http.get("/").text == "backend a\n"


# -- less common but valid requests ----------------------------------------------


def test_absolute_form_target(proxy: RunningProxy, backend: Backend) -> None:
    """RFC 9112 §3.2.2: a server accepts absolute-form; the authority becomes the Host."""
    with RawClient(proxy.port) as raw:
        raw.send(b"GET http://app.example/headers?x=1 HTTP/1.1\r\nHost: app.example\r\n\r\n")
        response = raw.read_response("GET")
    assert response.status == 200
    document = json.loads(response.body)
    assert document["target"] == "/headers?x=1"
    assert backend_headers(response.body)["host"] == ["app.example"]


def test_http10_client_gets_unchunked_body(proxy: RunningProxy) -> None:
    """A chunked backend response must reach an HTTP/1.0 client without chunked framing."""
    with RawClient(proxy.port) as raw:
        raw.send(b"GET /bytes?n=50000&chunked=1 HTTP/1.0\r\nHost: x\r\n\r\n")
        response = raw.read_response("GET")
        assert "chunked" not in ",".join(response.header("transfer-encoding"))
        assert response.body == pattern(0, 50_000)
        assert raw.eof or raw.is_closed_by_peer(5)


def test_http10_client_without_host(proxy: RunningProxy) -> None:
    with RawClient(proxy.port) as raw:
        raw.send(b"GET / HTTP/1.0\r\n\r\n")
        response = raw.read_response("GET")
    assert response.status == 200
    assert response.body == b"backend a\n"


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
        b"GET /\x7f HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
    ids=["nul-in-value", "chunked-twice", "control-in-target"],
)
def test_more_malformed_requests_refused(
    proxy: RunningProxy, backend: Backend, data: bytes
) -> None:
    status, body, closed = exchange_raw(proxy.port, data)
    assert status in (400, 501)
    assert closed
    assert_clean_error_body(body, backend.port)
    assert backend.requests == []


def test_obs_fold_rejected_or_unfolded(proxy: RunningProxy, backend: Backend) -> None:
    """RFC 9112 §5.2: reject obs-fold with 400, or replace it with spaces before forwarding."""
    data = b"GET /headers HTTP/1.1\r\nHost: x\r\nX-Folded: one\r\n two\r\n\r\n"
    with RawClient(proxy.port) as raw:
        raw.send(data)
        response = raw.read_response("GET")
    if response.status == 400:
        assert backend.requests == []
    else:
        assert response.status == 200
        folded = backend_headers(response.body)["x-folded"]
        assert len(folded) == 1
        assert "\r" not in folded[0]
        assert "\n" not in folded[0]
        assert folded[0].split() == ["one", "two"]


def test_early_hints_then_final_response(proxy: RunningProxy) -> None:
    with RawClient(proxy.port) as raw:
        response = raw.request("GET", "/early-hints")
        assert response.informational in ([], [103])
        assert (response.status, response.body) == (200, b"after hints\n")
        assert raw.request("GET", "/").body == b"backend a\n"


def test_many_concurrent_clients_get_their_own_responses(proxy: RunningProxy) -> None:
    """Sixteen clients at once, each response must be the one for its own request."""

    def fetch(index: int) -> bool:
        size = 1000 + index * 7919
        with httpx.Client(base_url=proxy.url, timeout=20) as http:
            for _ in range(5):
                response = http.get(f"/bytes?n={size}&chunked={index % 2}")
                if response.content != pattern(0, size):
                    return False
                echo = http.post("/echo", content=f"client {index}".encode())
                if echo.content != f"client {index}".encode():
                    return False
        return True

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        results = list(pool.map(fetch, range(16), timeout=25))
    assert results == [True] * 16


def test_ipv6_listener(start_proxy: Start, backend: Backend) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("::1 is not available")
    proxy = start_proxy(proxy_config(backend.url, listener={"address": "[::1]:0"}))
    assert proxy.url.startswith("http://[::1]:")
    with httpx.Client(base_url=proxy.url, timeout=10) as http:
        seen = backend_headers(http.get("/headers"))
    assert seen["x-forwarded-for"] == ["::1"]
    forwarded = parse_forwarded(seen["forwarded"])
    assert forwarded[0]["for"] == "[::1]"  # RFC 7239 §6: IPv6 is bracketed and quoted


def test_head_to_chunked_resource(proxy: RunningProxy) -> None:
    with RawClient(proxy.port) as raw:
        head = raw.request("HEAD", "/bytes?n=5000&chunked=1")
        assert (head.status, head.body) == (200, b"")
        assert raw.request("GET", "/").body == b"backend a\n"


@pytest.mark.parametrize(
    ("case", "body"),
    [("close-delimited", b"hello world"), ("http10", b"old school"), ("two-cookies", b"ok")],
)
def test_unusual_valid_backend_responses(proxy: RunningProxy, case: str, body: bytes) -> None:
    assert case in VALID_RAW_RESPONSES
    with RawClient(proxy.port) as raw:
        response = raw.request("GET", f"/raw?case={case}")
        assert (response.status, response.body) == (200, body)
        if case == "two-cookies":
            # Set-Cookie lines must never be folded into one (RFC 9110 §5.3).
            assert response.header("set-cookie") == ["a=1; Path=/", "b=2, c=3"]
        # The client connection outlives the backend's close.
        assert raw.request("GET", "/").body == b"backend a\n"


def test_repeated_request_headers_keep_order(client: httpx.Client) -> None:
    response = client.get(
        "/headers", headers=[("X-Multi", "first"), ("X-Other", "x"), ("X-Multi", "second")]
    )
    # Either as separate lines or combined into one list, in order (RFC 9110 §5.2).
    assert split_list(backend_headers(response)["x-multi"]) == ["first", "second"]


def test_client_half_close_still_gets_response(proxy: RunningProxy) -> None:
    """A client may shut down its sending side after the request (RFC 9112 §9.6)."""
    with RawClient(proxy.port) as raw:
        raw.send(raw.request_bytes("GET", "/slow?delay=0.5"))
        raw.sock.shutdown(socket.SHUT_WR)
        response = raw.read_response("GET")
    assert (response.status, response.body) == (200, b"slow done\n")


def test_request_connection_close_honoured(proxy: RunningProxy) -> None:
    with RawClient(proxy.port) as raw:
        response = raw.request("GET", "/", [("Connection", "close")])
        assert (response.status, response.body) == (200, b"backend a\n")
        assert raw.eof or raw.is_closed_by_peer(10)
