"""Whether a shared cache may store a response (RFC 9111 §3): ``refusal`` and ``request_refusal``.

``refusal`` answers '' when the response may be stored, otherwise the reason.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from sansproxy.cache.directives import cache_control
from sansproxy.cache.storable import UNDERSTOOD_STATUSES, refusal, request_refusal

Headers = list[tuple[bytes, bytes]]
DATE = (b"date", b"Sun, 06 Nov 1994 08:49:37 GMT")


def why(
    *,
    status: int = 200,
    cc: bytes | None = b"max-age=60",
    response: Sequence[tuple[bytes, bytes]] = (),
    request: Sequence[tuple[bytes, bytes]] = (),
    has_default: bool = False,
    store_set_cookie: bool = False,
) -> str:
    headers = [DATE, *response]
    if cc is not None:
        headers.append((b"cache-control", cc))
    return refusal(
        status=status,
        request_headers=list(request),
        response_headers=headers,
        directives=cache_control(headers),
        has_default=has_default,
        store_set_cookie=store_set_cookie,
    )


def test_a_plain_fresh_200_is_storable() -> None:
    """RFC 9111 §3: a final response to GET with max-age may be stored."""
    assert why() == ""


# ---------------------------------------------------------------------------------------------
# The request (RFC 9111 §3: the method is understood; §5.2.1.5 request no-store).


def test_get_is_storable() -> None:
    """RFC 9111 §3: the request method is understood by the cache (GET)."""
    assert request_refusal(b"GET", cache_control([])) == ""


@pytest.mark.parametrize("method", [b"HEAD", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"get"])
def test_other_methods_are_not_stored(method: bytes) -> None:
    """RFC 9111 §3: only methods the cache understands (here GET; methods are case-sensitive)."""
    assert request_refusal(method, cache_control([])) == "method"


def test_request_no_store() -> None:
    """RFC 9111 §5.2.1.5: a cache MUST NOT store any response to a no-store request."""
    directives = cache_control([(b"cache-control", b"No-Store")])
    assert request_refusal(b"GET", directives) == "request no-store"


# ---------------------------------------------------------------------------------------------
# Status codes (RFC 9111 §3: final; 206 and 304 need understanding; never stored whole).


@pytest.mark.parametrize("status", [100, 101, 102, 103, 199])
def test_informational_responses_are_never_stored(status: int) -> None:
    """RFC 9111 §3: the response status code is final (RFC 9110 §15)."""
    assert why(status=status) == "status"


@pytest.mark.parametrize("status", [206, 304])
def test_partial_and_not_modified_are_never_stored(status: int) -> None:
    """RFC 9111 §3.3 (206 needs range combining) and §4.3.4 (a 304 updates, never stores)."""
    assert why(status=status) == "status"
    assert why(status=status, cc=b"public, max-age=600") == "status"


@pytest.mark.parametrize("status", [200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501])
def test_heuristically_cacheable_statuses_need_no_freshness(status: int) -> None:
    """RFC 9111 §3: a heuristically cacheable status code suffices (RFC 9110 §15.1)."""
    assert why(status=status, cc=None) == ""


# ---------------------------------------------------------------------------------------------
# no-store and must-understand (RFC 9111 §5.2.2.5, §5.2.2.3).


@pytest.mark.parametrize(
    "cc", [b"no-store", b"NO-STORE", b"max-age=60, no-store", b"public, no-store"]
)
def test_response_no_store(cc: bytes) -> None:
    """RFC 9111 §5.2.2.5: a cache MUST NOT store a response with no-store."""
    assert why(cc=cc) == "no-store"


def test_no_store_in_a_second_field_line() -> None:
    """RFC 9111 §5.2, RFC 9110 §5.3: directives of every Cache-Control line count."""
    assert why(response=[(b"cache-control", b"no-store")]) == "no-store"


@pytest.mark.parametrize("status", sorted(UNDERSTOOD_STATUSES))
def test_must_understand_with_an_understood_status_ignores_no_store(status: int) -> None:
    """RFC 9111 §5.2.2.3: a cache that understands the status SHOULD ignore no-store."""
    assert why(status=status, cc=b"must-understand, no-store, max-age=60") == ""


@pytest.mark.parametrize("status", [201, 299, 418, 422, 599])
def test_must_understand_with_an_unknown_status_is_refused(status: int) -> None:
    """RFC 9111 §3: with must-understand, the cache must understand the status code."""
    assert why(status=status, cc=b"must-understand, no-store, max-age=60") == "must-understand"
    assert why(status=status, cc=b"must-understand, max-age=60") == "must-understand"


def test_unknown_status_with_explicit_freshness_is_storable() -> None:
    """RFC 9111 §3: without must-understand, any final status with max-age may be stored."""
    assert why(status=299, cc=b"max-age=60") == ""


# ---------------------------------------------------------------------------------------------
# private (RFC 9111 §5.2.2.7).


@pytest.mark.parametrize("cc", [b"private", b"PRIVATE, max-age=60", b"max-age=60, private"])
def test_unqualified_private(cc: bytes) -> None:
    """RFC 9111 §5.2.2.7: a shared cache MUST NOT store a response with unqualified private."""
    assert why(cc=cc) == "private"


def test_qualified_private_is_storable() -> None:
    """RFC 9111 §5.2.2.7: ``private="x"`` lets a shared cache store the rest of the response."""
    assert why(cc=b'private="x-user", max-age=60') == ""


def test_private_alongside_a_qualified_private_is_refused() -> None:
    """RFC 9111 §5.2.2.7, §4.2.1: an unqualified private anywhere wins over a qualified one."""
    assert why(cc=b'private="x-user", private, max-age=60') == "private"


# ---------------------------------------------------------------------------------------------
# Authorization (RFC 9111 §3.5).

AUTH = [(b"authorization", b"Basic YTpi")]


@pytest.mark.parametrize("cc", [b"max-age=60", b"proxy-revalidate, max-age=60", b"no-cache"])
def test_authorization_without_an_explicit_allowance(cc: bytes) -> None:
    """RFC 9111 §3.5: a shared cache MUST NOT store a response to an authenticated request."""
    assert why(cc=cc, request=AUTH) == "authorization"


@pytest.mark.parametrize(
    "cc", [b"public", b"public, max-age=60", b"s-maxage=60", b"must-revalidate, max-age=60"]
)
def test_authorization_with_an_explicit_allowance(cc: bytes) -> None:
    """RFC 9111 §3.5: unless must-revalidate, public or s-maxage explicitly allows it."""
    assert why(cc=cc, request=AUTH) == ""


def test_authorization_in_the_response_is_not_the_request() -> None:
    """RFC 9111 §3.5: the rule is about the request's Authorization field."""
    assert why(response=AUTH) == ""


# ---------------------------------------------------------------------------------------------
# Vary: * (RFC 9111 §4.1).


@pytest.mark.parametrize(
    "lines", [[b"*"], [b"accept, *"], [b"accept-encoding", b" * "], [b"Accept,*"]]
)
def test_vary_star_never_matches_so_is_not_stored(lines: list[bytes]) -> None:
    """RFC 9111 §4.1: a Vary containing "*" always fails to match, so storing is pointless."""
    assert why(response=[(b"vary", line) for line in lines]) == "vary *"


def test_vary_without_star_is_storable() -> None:
    """RFC 9111 §4.1: a Vary naming fields is filed as a variant."""
    assert why(response=[(b"vary", b"accept-encoding, accept-language")]) == ""


# ---------------------------------------------------------------------------------------------
# Set-Cookie (RFC 9111 §7.3 / RFC 6265 §8: a policy choice of the route).


def test_set_cookie_refused_by_default() -> None:
    """RFC 9111 §7.3: storing Set-Cookie can leak one client's cookie to another."""
    assert why(response=[(b"set-cookie", b"id=1")]) == "set-cookie"


def test_set_cookie_stored_when_the_route_allows_it() -> None:
    """RFC 9111 §3.1: Set-Cookie is an ordinary field a cache may store."""
    assert why(response=[(b"set-cookie", b"id=1")], store_set_cookie=True) == ""


# ---------------------------------------------------------------------------------------------
# Freshness information (RFC 9111 §3: one of public, Expires, max-age, s-maxage, or a
# heuristically cacheable status).


@pytest.mark.parametrize("status", [302, 303, 307, 201, 403, 500])
def test_no_freshness_information(status: int) -> None:
    """RFC 9111 §3: a status that is not heuristically cacheable needs explicit freshness."""
    assert why(status=status, cc=None) == "no freshness"
    assert why(status=status, cc=b"must-revalidate") == "no freshness"


def test_301_is_heuristically_storable_302_is_not() -> None:
    """RFC 9110 §15.4.2: 301 is heuristically cacheable; §15.4.3: 302 is not."""
    assert why(status=301, cc=None) == ""
    assert why(status=302, cc=None) == "no freshness"


@pytest.mark.parametrize(
    ("cc", "response"),
    [
        (b"max-age=60", []),
        (b"s-maxage=60", []),
        (b"public", []),
        (None, [(b"expires", b"Sun, 06 Nov 1994 09:49:37 GMT")]),
        (None, [(b"expires", b"0")]),  # invalid, but present (stale at once, §5.3)
    ],
)
def test_explicit_freshness_makes_302_storable(cc: bytes | None, response: Headers) -> None:
    """RFC 9111 §3: public, Expires, max-age or s-maxage each suffice."""
    assert why(status=302, cc=cc, response=response) == ""


def test_route_default_makes_302_storable() -> None:
    """RFC 9111 §3: "a cache extension that allows it to be cached" (the route's lifetime)."""
    assert why(status=302, cc=None, has_default=True) == ""
