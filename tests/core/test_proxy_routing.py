"""Playbooks of routing: which route a request takes, and what it does to the request.

The order of evaluation is the one documented in :mod:`sansproxy.routing`: the most
specific host group, then exact path, longest prefix, regex, catch-all; methods and
headers pick among them. A route may proxy (with its own Host, prefix rewriting, body
limit and timeouts), redirect, or answer with a fixed response.
"""

from __future__ import annotations

import pytest

from sansproxy.commands import AccessLog, AccessRecord, Close, OpenUpstream, Send
from sansproxy.events import (
    ConnId,
    DataReceived,
    EofReceived,
    TlsInfo,
)
from tests.playbook import Placeholder, Playbook

A = ("10.0.0.1", 8001)
B = ("10.0.0.2", 8002)
C = ("10.0.0.3", 8003)

POOLS = """
[[listeners]]
address = "192.0.2.1:8080"
{listener}

[upstreams.a]
servers = ["http://10.0.0.1:8001"]

[upstreams.b]
servers = ["http://10.0.0.2:8002"]

[upstreams.c]
servers = ["http://10.0.0.3:8003"]
"""

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
OK_OUT = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\ncontent-length: 14\r\n\r\n404 Not Found\n"


def _config(kit, routes: str, *, listener: str = ""):
    return kit.toml(POOLS.format(listener=listener) + routes)


def _get(path: bytes, host: bytes = b"example.com", extra: bytes = b"") -> bytes:
    return b"GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n" % (path, host, extra)


def _fwd(path: bytes, host: bytes = b"example.com", extra: bytes = b"") -> bytes:
    return b"GET %s HTTP/1.1\r\nhost: %s\r\n%s\r\n" % (path, host, extra)


def _through(kit, pb: Playbook, request: bytes, forwarded: bytes, server: tuple[str, int]) -> None:
    """A fresh client's request reaches ``server`` as ``forwarded``; the exchange completes."""
    c = pb.accept()
    u = kit.forward(pb, c, request, forwarded, server=server)
    assert (
        pb
        >> DataReceived(conn=u, data=OK)
        << Send(conn=c, data=OK_OUT)
        >> EofReceived(conn=c)
        << Close(conn=c)
        >> EofReceived(conn=u)
        << Close(conn=u)
    )


def _answered(pb: Playbook, request: bytes, response: bytes) -> ConnId:
    """A fresh client's request is answered by the proxy itself; the client stays open."""
    c = pb.accept()
    assert pb >> DataReceived(conn=c, data=request) << Send(conn=c, data=response)
    return c


# ---------------------------------------------------------------------------------------------
# Hosts
# ---------------------------------------------------------------------------------------------

HOSTS = """
[[routes]]
host = "api.example.com"
upstream = "a"

[[routes]]
host = "*.example.com"
upstream = "b"

[[routes]]
upstream = "c"
"""


@pytest.mark.parametrize(
    ("host", "server"),
    [
        (b"api.example.com", A),
        (b"API.Example.COM:8080", A),  # case and port do not matter
        (b"api.example.com.", A),  # nor a trailing dot
        (b"www.example.com", B),
        (b"a.b.example.com", B),  # a wildcard covers any depth
        (b"example.com", C),  # but not the apex
        (b"other.org", C),
    ],
)
def test_exact_host_beats_wildcard_beats_no_host(kit, host: bytes, server) -> None:
    pb = Playbook(_config(kit, HOSTS))
    _through(kit, pb, _get(b"/x", host), _fwd(b"/x", host), server)
    kit.assert_clean(pb)


def test_chosen_host_group_does_not_fall_through_to_a_less_specific_one(kit) -> None:
    routes = """
[[routes]]
host = "api.example.com"
path_prefix = "/v1"
upstream = "a"

[[routes]]
upstream = "c"
"""
    pb = Playbook(_config(kit, routes))
    _through(kit, pb, _get(b"/v1/x", b"api.example.com"), _fwd(b"/v1/x", b"api.example.com"), A)
    _answered(pb, _get(b"/v2/x", b"api.example.com"), NOT_FOUND)
    _through(kit, pb, _get(b"/v2/x", b"other.org"), _fwd(b"/v2/x", b"other.org"), C)


# ---------------------------------------------------------------------------------------------
# Paths, methods, headers
# ---------------------------------------------------------------------------------------------

PATHS = """
[[routes]]
path_prefix = "/api"
upstream = "a"

[[routes]]
path_prefix = "/api/v2"
upstream = "b"

[[routes]]
path = "/api/v2/special"
upstream = "c"

[[routes]]
path_regex = "/img/[a-z]+\\\\.png$"
upstream = "c"
"""


@pytest.mark.parametrize(
    ("path", "server"),
    [
        (b"/api", A),
        (b"/api/", A),
        (b"/api/users", A),
        (b"/api/v2", B),  # the longest prefix wins, whatever the order
        (b"/api/v2/users", B),
        (b"/api/v2/special", C),  # an exact path beats any prefix
        (b"/api/v2/special/more", B),
        (b"/img/cat.png", C),
    ],
)
def test_exact_path_then_longest_prefix_then_regex(kit, path: bytes, server) -> None:
    pb = Playbook(_config(kit, PATHS))
    _through(kit, pb, _get(path), _fwd(path), server)


@pytest.mark.parametrize("path", [b"/apix", b"/", b"/img/cat.gif", b"/img/Cat.png", b"/other"])
def test_no_match_and_no_listener_upstream_is_404_and_the_connection_stays_open(
    kit, path: bytes
) -> None:
    pb = Playbook(_config(kit, PATHS))
    c = _answered(pb, _get(path), NOT_FOUND)
    # Keep-alive: the next request on the same connection is routed normally.
    u = kit.forward(pb, c, _get(b"/api/x"), _fwd(b"/api/x"), server=A)
    assert (
        pb
        >> DataReceived(conn=u, data=OK)
        << Send(conn=c, data=OK_OUT)
        >> EofReceived(conn=c)
        << Close(conn=c)
        >> EofReceived(conn=u)
        << Close(conn=u)
    )
    kit.assert_clean(pb)


def test_no_match_goes_to_the_listeners_upstream(kit) -> None:
    pb = Playbook(_config(kit, PATHS, listener='upstream = "b"'))
    _through(kit, pb, _get(b"/elsewhere?q=1"), _fwd(b"/elsewhere?q=1"), B)
    _through(kit, pb, _get(b"/api/x"), _fwd(b"/api/x"), A)


def test_methods_and_headers_choose_among_routes_with_the_same_path(kit) -> None:
    routes = """
[[routes]]
path_prefix = "/w"
upstream = "a"

[[routes]]
path_prefix = "/w"
methods = ["delete", "PUT"]
upstream = "b"

[[routes]]
path_prefix = "/w"
headers = { X-Canary = "yes" }
upstream = "c"
"""
    pb = Playbook(_config(kit, routes))
    _through(kit, pb, _get(b"/w/1"), _fwd(b"/w/1"), A)
    put = b"PUT /w/1 HTTP/1.1\r\nHost: example.com\r\nContent-Length: 0\r\n\r\n"
    fwd_put = b"PUT /w/1 HTTP/1.1\r\nhost: example.com\r\ncontent-length: 0\r\n\r\n"
    _through(kit, pb, put, fwd_put, B)
    _through(
        kit,
        pb,
        _get(b"/w/1", extra=b"X-Canary: yes\r\n"),
        _fwd(b"/w/1", extra=b"x-canary: yes\r\n"),
        C,
    )
    # The value must match exactly.
    _through(
        kit,
        pb,
        _get(b"/w/1", extra=b"X-Canary: no\r\n"),
        _fwd(b"/w/1", extra=b"x-canary: no\r\n"),
        A,
    )


def test_a_failed_method_condition_falls_back_to_a_shorter_prefix(kit) -> None:
    routes = """
[[routes]]
path_prefix = "/"
upstream = "a"

[[routes]]
path_prefix = "/admin"
methods = ["GET"]
upstream = "b"
"""
    pb = Playbook(_config(kit, routes))
    _through(kit, pb, _get(b"/admin/x"), _fwd(b"/admin/x"), B)
    head = b"HEAD /admin/x HTTP/1.1\r\nHost: example.com\r\n\r\n"
    c = pb.accept()
    u = kit.forward(pb, c, head, b"HEAD /admin/x HTTP/1.1\r\nhost: example.com\r\n\r\n", server=A)
    assert u.is_set


# ---------------------------------------------------------------------------------------------
# Normalised paths: what is routed is what is forwarded
# ---------------------------------------------------------------------------------------------

GUARDED = """
[[routes]]
path_prefix = "/public"
upstream = "a"

[[routes]]
path_prefix = "/admin"
upstream = "b"
"""


@pytest.mark.parametrize(
    "path",
    [
        b"/public/../admin",
        b"/public/%2e%2e/admin",
        b"/public/%2E%2E/admin",
        b"/%61dmin",
        b"/%61%64%6D%69%6E",
        b"//admin",
        b"/public/./../admin",
        b"/./admin",
    ],
)
def test_spellings_of_admin_reach_only_the_admin_route_as_admin(kit, path: bytes) -> None:
    pb = Playbook(_config(kit, GUARDED))
    _through(kit, pb, _get(path), _fwd(b"/admin"), B)


@pytest.mark.parametrize("path", [b"/public/../admin", b"/%61dmin", b"/public/%2e%2e/admin/x"])
def test_a_forbidden_admin_cannot_be_reached_through_another_spelling(kit, path: bytes) -> None:
    routes = """
[[routes]]
path_prefix = "/"
upstream = "a"

[[routes]]
path_prefix = "/admin"
respond = { status = 403, body = "forbidden" }
"""
    pb = Playbook(_config(kit, routes))
    forbidden = (
        b"HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: 9\r\n\r\nforbidden"
    )
    c = _answered(pb, _get(path), forbidden)
    assert pb >> EofReceived(conn=c) << Close(conn=c)
    kit.assert_clean(pb)


def test_an_encoded_slash_is_not_a_separator(kit) -> None:
    pb = Playbook(_config(kit, GUARDED, listener='upstream = "c"'))
    # %2F stays encoded (upper-cased), so this is one segment, not /public/x.
    _through(kit, pb, _get(b"/public%2fx"), _fwd(b"/public%2Fx"), C)


@pytest.mark.parametrize("path", [b"/a%zz", b"/a%0", b"/a%00b"])
def test_malformed_escapes_are_400(kit, path: bytes) -> None:
    pb = Playbook(_config(kit, GUARDED, listener='upstream = "c"'))
    c = pb.accept()
    pb >> DataReceived(conn=c, data=_get(path))
    kit.answered_with_error(pb, c, 400)
    kit.assert_clean(pb)


def test_forwarded_line_is_the_normalised_path_rewritten_with_the_query_kept(kit) -> None:
    routes = """
[[routes]]
path_prefix = "/api"
upstream = "a"
strip_prefix = "/api"
add_prefix = "/v2"
"""
    pb = Playbook(_config(kit, routes))
    _through(
        kit,
        pb,
        _get(b"/api//users/./%7Ebob/../%7ealice?id=1&next=/../x%2F"),
        _fwd(b"/v2/users/~alice?id=1&next=/../x%2F"),
        A,
    )
    _through(kit, pb, _get(b"/api?x"), _fwd(b"/v2/?x"), A)


def test_strip_prefix_alone_and_add_prefix_alone(kit) -> None:
    routes = """
[[routes]]
path_prefix = "/old"
upstream = "a"
strip_prefix = "/old"

[[routes]]
path_prefix = "/"
upstream = "b"
add_prefix = "/site/"
"""
    pb = Playbook(_config(kit, routes))
    _through(kit, pb, _get(b"/old/page?p=2"), _fwd(b"/page?p=2"), A)
    _through(kit, pb, _get(b"/old"), _fwd(b"/"), A)
    _through(kit, pb, _get(b"/page"), _fwd(b"/site/page"), B)


def test_merge_slashes_off_keeps_empty_segments(kit) -> None:
    pb = Playbook(
        kit.toml(POOLS.format(listener='upstream = "a"') + "[routing]\nmerge_slashes = false\n")
    )
    _through(kit, pb, _get(b"/a//b/./c"), _fwd(b"/a//b/c"), A)


# ---------------------------------------------------------------------------------------------
# Per-route Host, body limit and timeouts
# ---------------------------------------------------------------------------------------------


def test_route_host_header_overrides_the_upstream_one(kit) -> None:
    text = POOLS.format(listener="").replace(
        '[upstreams.b]\nservers = ["http://10.0.0.2:8002"]',
        '[upstreams.b]\nservers = ["http://10.0.0.2:8002"]\nhost_header = "b.internal"',
    )
    routes = """
[[routes]]
path_prefix = "/one"
upstream = "b"
host_header = "one.internal:8443"

[[routes]]
path_prefix = "/two"
upstream = "b"
"""
    pb = Playbook(kit.toml(text + routes))
    _through(kit, pb, _get(b"/one"), _fwd(b"/one", b"one.internal:8443"), B)
    _through(kit, pb, _get(b"/two"), _fwd(b"/two", b"b.internal"), B)


BODY_LIMIT = """
[[routes]]
path_prefix = "/small"
upstream = "a"
max_body_bytes = 10

[[routes]]
path_prefix = "/big"
upstream = "a"
max_body_bytes = 0

[limits]
max_body_bytes = 20
"""


def test_route_body_limit_answers_413_before_connecting(kit) -> None:
    pb = Playbook(_config(kit, BODY_LIMIT))
    c = pb.accept()
    post = b"POST /small HTTP/1.1\r\nHost: example.com\r\nContent-Length: 11\r\n\r\n"
    pb >> DataReceived(conn=c, data=post)
    kit.answered_with_error(pb, c, 413)
    kit.assert_clean(pb)


def test_route_body_limit_stops_a_chunked_body_that_outgrows_it(kit) -> None:
    pb = Playbook(_config(kit, BODY_LIMIT))
    c = pb.accept()
    head = b"POST /small HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
    u = Placeholder(ConnId)
    assert (
        pb
        >> DataReceived(conn=c, data=head)
        << OpenUpstream(conn=u, host=A[0], port=A[1])
        >> DataReceived(conn=c, data=b"6\r\nabcdef\r\n")
    )
    pb >> DataReceived(conn=c, data=b"6\r\nghijkl\r\n") << Close(conn=u, abort=True)
    kit.answered_with_error(pb, c, 413)
    kit.assert_clean(pb)


def test_route_body_limit_can_lift_the_global_one(kit) -> None:
    pb = Playbook(_config(kit, BODY_LIMIT))
    body = b"x" * 30  # over limits.max_body_bytes, but this route has no limit
    post = b"POST /big HTTP/1.1\r\nHost: example.com\r\nContent-Length: 30\r\n\r\n" + body
    fwd = b"POST /big HTTP/1.1\r\nhost: example.com\r\ncontent-length: 30\r\n\r\n" + body
    _through(kit, pb, post, fwd, A)
    c = pb.accept()
    other = b"POST /else HTTP/1.1\r\nHost: example.com\r\nContent-Length: 21\r\n\r\n"
    # No route matches /else and there is no fallback, so it is 404 even though it is too big.
    assert pb >> DataReceived(conn=c, data=other) << Send(conn=c, data=NOT_FOUND)


def test_route_timeouts_apply_to_that_route_only(kit) -> None:
    routes = """
[[routes]]
path_prefix = "/slow"
upstream = "a"
timeouts = { upstream_header = 100 }

[[routes]]
path_prefix = "/fast"
upstream = "a"
timeouts = { upstream_header = 2, upstream_connect = 1 }

[timeouts]
upstream_header = 30
"""
    pb = Playbook(_config(kit, routes))
    c1 = pb.accept()
    u1 = kit.forward(pb, c1, _get(b"/fast"), _fwd(b"/fast"))
    c2 = pb.accept()
    u2 = kit.forward(pb, c2, _get(b"/slow"), _fwd(b"/slow"))
    assert pb.advance(1.9)
    assert (
        pb.advance(0.1)
        << Close(conn=u1, abort=True)
        << Send(conn=c1, data=kit.error(504))
        << Close(conn=c1)
    )
    # The global 30 s would have fired by now; the slow route waits its 100 s.
    assert pb.advance(97.9)
    assert (
        pb
        >> DataReceived(conn=u2, data=OK)
        << Send(conn=c2, data=OK_OUT)
        >> EofReceived(conn=c2)
        << Close(conn=c2)
        >> EofReceived(conn=u2)
        << Close(conn=u2)
    )
    kit.assert_clean(pb)


# ---------------------------------------------------------------------------------------------
# Redirects and fixed responses
# ---------------------------------------------------------------------------------------------

REDIRECTS = """
[[routes]]
host = "old.example.com"
redirect = { location = "{scheme}://new.example.com{uri}", status = 308 }

[[routes]]
path_prefix = "/http"
redirect = { location = "https://{host}{uri}", status = 301 }

[[routes]]
path = "/pieces"
redirect = { location = "/to{path}{query}" }
"""


@pytest.mark.parametrize(
    ("request_", "tls", "status", "location"),
    [
        (
            _get(b"/a/b?c=d", b"old.example.com"),
            None,
            b"308 Permanent Redirect",
            b"http://new.example.com/a/b?c=d",
        ),
        (
            _get(b"/x", b"old.example.com"),
            TlsInfo(),
            b"308 Permanent Redirect",
            b"https://new.example.com/x",
        ),
        (
            _get(b"/http/p?q", b"Example.COM:8080"),
            None,
            b"301 Moved Permanently",
            b"https://example.com/http/p?q",
        ),
        (_get(b"/pieces?z=1"), None, b"302 Found", b"/to/pieces?z=1"),
        (_get(b"/./pieces"), None, b"302 Found", b"/to/pieces"),
    ],
)
def test_redirect_status_and_location(
    kit, request_: bytes, tls, status: bytes, location: bytes
) -> None:
    pb = Playbook(_config(kit, REDIRECTS))
    c = pb.accept(tls=tls)
    response = b"HTTP/1.1 %s\r\nlocation: %s\r\ncontent-length: 0\r\n\r\n" % (status, location)
    assert pb >> DataReceived(conn=c, data=request_) << Send(conn=c, data=response)
    assert pb >> EofReceived(conn=c) << Close(conn=c)
    kit.assert_clean(pb)


MAINTENANCE = """
[[routes]]
path_prefix = "/"
respond.status = 503
respond.body = "back soon\\n"
respond.content_type = "text/html"
respond.headers = { Retry-After = "120", X-Reason = "maintenance" }

[[routes]]
path = "/healthz"
respond = { status = 204 }
"""
MAINTENANCE_OUT = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/html\r\nretry-after: 120\r\n"
    b"x-reason: maintenance\r\ncontent-length: 10\r\n\r\n"
)


def test_fixed_response_keeps_the_connection_for_the_next_request(kit) -> None:
    pb = Playbook(_config(kit, MAINTENANCE))
    c = pb.accept()
    head = b"HEAD /index.html HTTP/1.1\r\nHost: example.com\r\n\r\n"
    post = b"POST /form HTTP/1.1\r\nHost: example.com\r\nContent-Length: 5\r\n\r\n"
    assert (
        pb
        >> DataReceived(conn=c, data=_get(b"/index.html"))
        << Send(conn=c, data=MAINTENANCE_OUT + b"back soon\n")
        # HEAD: the same head, no body.
        >> DataReceived(conn=c, data=head)
        << Send(conn=c, data=MAINTENANCE_OUT)
        # A request body is read and dropped; the answer does not wait for it.
        >> DataReceived(conn=c, data=post)
        << Send(conn=c, data=MAINTENANCE_OUT + b"back soon\n")
        >> DataReceived(conn=c, data=b"abcde")
        >> DataReceived(conn=c, data=_get(b"/healthz"))
        << Send(conn=c, data=b"HTTP/1.1 204 No Content\r\n\r\n")
        >> EofReceived(conn=c)
        << Close(conn=c)
    )
    kit.assert_clean(pb)


def test_fixed_response_is_access_logged_without_an_upstream(kit) -> None:
    pb = Playbook(_config(kit, MAINTENANCE), access_logs=True)
    c = pb.accept(peer=("203.0.113.9", 4000))
    record = AccessRecord(
        client=("203.0.113.9", 4000),
        method="GET",
        target="/x",
        http_version="1.1",
        status=503,
        request_bytes=0,
        response_bytes=10,
        upstream=None,
        duration=0.0,
        upstream_ttfb=None,
        host="example.com",
        referer="",
        user_agent="",
    )
    assert (
        pb
        >> DataReceived(conn=c, data=_get(b"/x"))
        << Send(conn=c, data=MAINTENANCE_OUT + b"back soon\n")
        << AccessLog(record=record)
    )
