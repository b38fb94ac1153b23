"""The reuse decision (RFC 9111 §4, RFC 5861) and Cache-Status (RFC 9211), with a fake clock.

Every stored response has Date ``T``, was requested at ``T + 1`` and arrived at
``T + 2``, so its current age at ``now`` is ``now - T`` exactly (RFC 9111 §4.2.3:
apparent_age 2, corrected_age_value 0 + 1, corrected_initial_age 2, plus
resident time ``now - (T + 2)``), plus its Age header when it has one.
"""

from __future__ import annotations

import email.utils
from collections.abc import Sequence

import pytest

from sansproxy.cache.keys import Variant, variant
from sansproxy.cache.lookup import Decision, Policy, decide, stale_if_error
from sansproxy.cache.status import CacheStatus
from sansproxy.cache.store import StoredResponse

T = 1_000_000_000
POLICY = Policy(defaults={})
Headers = list[tuple[bytes, bytes]]


def http_date(seconds: int) -> bytes:
    return email.utils.formatdate(seconds, usegmt=True).encode()


def stored(
    cc: bytes | None = b"max-age=100",
    *extra: tuple[bytes, bytes],
    date: int = T,
    status: int = 200,
    vary: Variant = (),
) -> StoredResponse:
    headers = [(b"date", http_date(date)), *extra]
    if cc is not None:
        headers.append((b"cache-control", cc))
    return StoredResponse(
        key=b"http://example.com/a",
        status=status,
        reason=b"OK",
        headers=headers,
        body=b"hello",
        request_time=date + 1,
        response_time=date + 2,
        variant=vary,
    )


def lookup(
    response: StoredResponse | Sequence[StoredResponse],
    now: float,
    *request: tuple[bytes, bytes],
    policy: Policy = POLICY,
) -> Decision:
    variants = [response] if isinstance(response, StoredResponse) else list(response)
    return decide(request_headers=list(request), variants=variants, now=now, policy=policy)


def req_cc(value: bytes) -> tuple[bytes, bytes]:
    return (b"cache-control", value)


# ---------------------------------------------------------------------------------------------
# Fresh and stale (RFC 9111 §4.2).


def test_fresh_response_is_a_hit() -> None:
    """RFC 9111 §4.2: fresh when freshness_lifetime > current_age; §4: reused without asking."""
    response = stored()
    decision = lookup(response, T + 50)
    assert decision == Decision(action="hit", response=response, age=50, ttl=50)


def test_last_fresh_second_is_a_hit() -> None:
    """RFC 9111 §4.2: age 99 of 100 is still fresh."""
    decision = lookup(stored(), T + 99)
    assert (decision.action, decision.age, decision.ttl) == ("hit", 99, 1)


def test_age_equal_to_lifetime_is_stale() -> None:
    """RFC 9111 §4.2: fresh only while the lifetime *exceeds* the age; equal is stale."""
    decision = lookup(stored(), T + 100)
    assert (decision.action, decision.fwd, decision.detail) == ("validate", "stale", "stale")
    assert (decision.age, decision.ttl) == (100, 0)


def test_stale_response_is_validated() -> None:
    """RFC 9111 §4.2.4: a cache MUST NOT send a stale response unless allowed; it validates."""
    response = stored()
    decision = lookup(response, T + 130)
    assert decision == Decision(
        action="validate", response=response, age=130, ttl=-30, fwd="stale", detail="stale"
    )


def test_age_header_adds_to_the_age() -> None:
    """RFC 9111 §4.2.3: Age 30 + response_delay 1 = 31 > apparent 2; at T+52 the age is 81."""
    decision = lookup(stored(b"max-age=100", (b"age", b"30")), T + 52)
    assert (decision.action, decision.age, decision.ttl) == ("hit", 81, 19)


def test_max_age_zero_is_stale_at_once() -> None:
    """RFC 9111 §5.2.2.1: max-age=0 means stale on arrival."""
    assert lookup(stored(b"max-age=0"), T + 2).action == "validate"


def test_expires_is_used_without_max_age() -> None:
    """RFC 9111 §5.3: Expires T+60 with Date T: fresh at T+59, stale at T+60."""
    response = stored(None, (b"expires", http_date(T + 60)))
    assert lookup(response, T + 59).action == "hit"
    assert lookup(response, T + 60).action == "validate"


def test_route_default_lifetime() -> None:
    """RFC 9111 §4.2.2: the route's lifetime for a status applies without explicit freshness."""
    policy = Policy(defaults={200: 60})
    response = stored(None)
    assert lookup(response, T + 59, policy=policy).ttl == 1
    assert lookup(response, T + 60, policy=policy).action == "validate"


def test_heuristic_lifetime() -> None:
    """RFC 9111 §4.2.2: Last-Modified 1000 s before Date gives 100 s of freshness."""
    response = stored(None, (b"last-modified", http_date(T - 1000)))
    assert lookup(response, T + 99).action == "hit"
    assert lookup(response, T + 100).action == "validate"
    capped = Policy(defaults={}, heuristic_max=10)
    assert lookup(response, T + 10, policy=capped).action == "validate"


# ---------------------------------------------------------------------------------------------
# no-cache (RFC 9111 §5.2.2.4 response, §5.2.1.4 request, §5.4 Pragma).


def test_response_no_cache_is_always_validated() -> None:
    """RFC 9111 §5.2.2.4: no-cache: MUST NOT be used without successful validation."""
    decision = lookup(stored(b"no-cache, max-age=100"), T + 5)
    assert (decision.action, decision.fwd, decision.detail) == (
        "validate",
        "stale",
        "response no-cache",
    )


def test_qualified_response_no_cache_does_not_force_validation() -> None:
    """RFC 9111 §5.2.2.4: with field names, the rest of the response may be reused."""
    assert lookup(stored(b'no-cache="set-cookie", max-age=100'), T + 5).action == "hit"


@pytest.mark.parametrize(
    "request_fields",
    [
        [req_cc(b"no-cache")],
        [req_cc(b"NO-CACHE")],
        [req_cc(b"max-age=1000, no-cache")],
        [(b"pragma", b"no-cache")],
    ],
)
def test_request_no_cache_forces_validation(request_fields: Headers) -> None:
    """RFC 9111 §5.2.1.4: no-cache: the client does not want a response without validation."""
    decision = lookup(stored(), T + 5, *request_fields)
    assert (decision.action, decision.fwd, decision.detail) == (
        "validate",
        "request",
        "request no-cache",
    )


def test_pragma_is_ignored_with_cache_control() -> None:
    """RFC 9111 §5.4: when Cache-Control is present in a request, Pragma is ignored."""
    decision = lookup(stored(), T + 5, (b"pragma", b"no-cache"), req_cc(b"max-age=1000"))
    assert decision.action == "hit"


@pytest.mark.parametrize("field", [req_cc(b"no-cache"), (b"pragma", b"no-cache")])
def test_request_no_cache_not_honoured_when_the_route_says_so(field: tuple[bytes, bytes]) -> None:
    """RFC 9111 §5.2.1: request directives are advisory for a cache (a configured choice)."""
    policy = Policy(defaults={}, honour_no_cache=False)
    assert lookup(stored(), T + 5, field, policy=policy).action == "hit"


def test_response_no_cache_is_honoured_whatever_the_route_says() -> None:
    """RFC 9111 §5.2.2.4: the response's no-cache is a MUST NOT, not a preference."""
    policy = Policy(defaults={}, honour_no_cache=False)
    assert lookup(stored(b"no-cache, max-age=100"), T + 5, policy=policy).action == "validate"


# ---------------------------------------------------------------------------------------------
# Request max-age, min-fresh and max-stale (RFC 9111 §5.2.1.1-3).


def test_request_max_age() -> None:
    """RFC 9111 §5.2.1.1: the client wants a response whose age is at most max-age."""
    assert lookup(stored(), T + 50, req_cc(b"max-age=50")).action == "hit"
    decision = lookup(stored(), T + 50, req_cc(b"max-age=49"))
    assert (decision.action, decision.fwd, decision.detail) == (
        "validate",
        "request",
        "request max-age",
    )


def test_request_max_age_zero() -> None:
    """RFC 9111 §5.2.1.1: max-age=0 refuses any response older than 0 seconds."""
    assert lookup(stored(), T + 2, req_cc(b"max-age=0")).action == "validate"


def test_invalid_request_max_age_validates() -> None:
    """RFC 9111 §4.2.1: unusable freshness information is read the most restrictive way."""
    assert lookup(stored(), T + 5, req_cc(b"max-age=x")).action == "validate"


def test_request_min_fresh() -> None:
    """RFC 9111 §5.2.1.3: lifetime >= age + min-fresh; at T+50 there are 50 seconds left."""
    assert lookup(stored(), T + 50, req_cc(b"min-fresh=50")).action == "hit"
    decision = lookup(stored(), T + 50, req_cc(b"min-fresh=51"))
    assert (decision.action, decision.fwd, decision.detail) == (
        "validate",
        "request",
        "request min-fresh",
    )


def test_max_stale_without_value_accepts_any_staleness() -> None:
    """RFC 9111 §5.2.1.2: max-stale without a value: a stale response of any age is fine."""
    response = stored()
    decision = lookup(response, T + 100_000, req_cc(b"max-stale"))
    assert decision == Decision(
        action="stale",
        response=response,
        age=100_000,
        ttl=100 - 100_000,
        detail="request max-stale",
    )


def test_max_stale_with_value() -> None:
    """RFC 9111 §5.2.1.2: stale by no more than the given seconds (here lifetime 100)."""
    assert lookup(stored(), T + 110, req_cc(b"max-stale=10")).action == "stale"
    assert lookup(stored(), T + 111, req_cc(b"max-stale=10")).action == "validate"


def test_max_stale_does_not_matter_while_fresh() -> None:
    """RFC 9111 §5.2.1.2: max-stale is about stale responses; a fresh one is a hit."""
    assert lookup(stored(), T + 5, req_cc(b"max-stale=10")).action == "hit"


def test_invalid_max_stale_allows_nothing() -> None:
    """RFC 9111 §4.2.1: an unusable max-stale value is read the most restrictive way."""
    assert lookup(stored(), T + 101, req_cc(b"max-stale=abc")).action == "validate"


@pytest.mark.parametrize(
    "cc",
    [
        b"max-age=100, must-revalidate",
        b"max-age=100, proxy-revalidate",
        b"s-maxage=100",
        b"max-age=100, s-maxage=100",
        b"max-age=100, must-revalidate, stale-while-revalidate=1000",
    ],
)
def test_revalidation_directives_forbid_stale(cc: bytes) -> None:
    """RFC 9111 §5.2.2.2, §5.2.2.8, §5.2.2.10: once stale, MUST NOT be used unvalidated.

    Neither max-stale (§4.2.4) nor stale-while-revalidate (RFC 5861 §3) overrides them.
    """
    decision = lookup(stored(cc), T + 150, req_cc(b"max-stale"))
    assert (decision.action, decision.detail) == ("validate", "must revalidate")


@pytest.mark.parametrize("cc", [b"max-age=100, must-revalidate", b"s-maxage=100"])
def test_revalidation_directives_do_not_affect_fresh_responses(cc: bytes) -> None:
    """RFC 9111 §5.2.2.2: must-revalidate applies only once the response is stale."""
    assert lookup(stored(cc), T + 50).action == "hit"


# ---------------------------------------------------------------------------------------------
# stale-while-revalidate (RFC 5861 §3) and stale-if-error (RFC 5861 §4).


def test_stale_while_revalidate_window() -> None:
    """RFC 5861 §3: serve stale up to the given seconds past expiry, refreshing meanwhile."""
    response = stored(b"max-age=100, stale-while-revalidate=30")
    decision = lookup(response, T + 130)
    assert decision == Decision(
        action="stale",
        response=response,
        age=130,
        ttl=-30,
        detail="stale-while-revalidate",
        refresh=True,
    )


def test_past_the_stale_while_revalidate_window() -> None:
    """RFC 5861 §3: past the window the response is validated as usual."""
    decision = lookup(stored(b"max-age=100, stale-while-revalidate=30"), T + 131)
    assert (decision.action, decision.fwd) == ("validate", "stale")


def test_stale_while_revalidate_while_fresh_is_a_hit() -> None:
    """RFC 5861 §3: the window only starts when the response becomes stale."""
    decision = lookup(stored(b"max-age=100, stale-while-revalidate=30"), T + 50)
    assert (decision.action, decision.refresh) == ("hit", False)


def test_invalid_stale_while_revalidate_allows_nothing() -> None:
    """RFC 5861 §3 with RFC 9111 §4.2.1: an unusable window is no window."""
    assert lookup(stored(b"max-age=100, stale-while-revalidate=x"), T + 101).action == "validate"


def test_max_stale_is_preferred_to_a_background_refresh() -> None:
    """RFC 9111 §5.2.1.2: the client accepts the stale response; no refresh is needed."""
    response = stored(b"max-age=100, stale-while-revalidate=30")
    decision = lookup(response, T + 110, req_cc(b"max-stale"))
    assert (decision.action, decision.refresh) == ("stale", False)


def test_stale_if_error_window() -> None:
    """RFC 5861 §4: on an error, a response stale by at most the window may be used."""
    response = stored(b"max-age=100, stale-if-error=60")
    assert stale_if_error(response, [], T + 160, POLICY)
    assert not stale_if_error(response, [], T + 161, POLICY)


def test_stale_if_error_from_the_request() -> None:
    """RFC 5861 §4: the directive may come with the request too."""
    response = stored()
    assert not stale_if_error(response, [], T + 150, POLICY)
    assert stale_if_error(response, [req_cc(b"stale-if-error=60")], T + 150, POLICY)
    assert not stale_if_error(response, [req_cc(b"stale-if-error=x")], T + 150, POLICY)


@pytest.mark.parametrize("cc", [b"must-revalidate", b"proxy-revalidate", b"s-maxage=100"])
def test_stale_if_error_yields_to_revalidation_directives(cc: bytes) -> None:
    """RFC 9111 §5.2.2.2: with must-revalidate an unreachable origin means 504, not stale."""
    response = stored(b"max-age=100, stale-if-error=60, " + cc)
    assert not stale_if_error(response, [], T + 150, POLICY)


# ---------------------------------------------------------------------------------------------
# only-if-cached (RFC 9111 §5.2.1.7).


def test_only_if_cached_with_nothing_stored() -> None:
    """RFC 9111 §5.2.1.7: without a stored response, answer 504 instead of forwarding."""
    decision = lookup([], T, req_cc(b"only-if-cached"))
    assert decision == Decision(action="only-if-cached", fwd="uri-miss", detail="only-if-cached")


def test_only_if_cached_with_no_matching_variant() -> None:
    """RFC 9111 §5.2.1.7, §4.1: a variant that does not match is not a stored response for it."""
    response = stored(vary=((b"accept-language", b"en"),))
    decision = lookup(response, T + 5, req_cc(b"only-if-cached"), (b"accept-language", b"fr"))
    assert (decision.action, decision.fwd) == ("only-if-cached", "vary-miss")


def test_only_if_cached_with_a_fresh_response() -> None:
    """RFC 9111 §5.2.1.7: respond using a stored response consistent with the request."""
    assert lookup(stored(), T + 5, req_cc(b"only-if-cached")).action == "hit"


def test_only_if_cached_with_a_stale_response() -> None:
    """RFC 9111 §5.2.1.7: a stale response that would need validation gives the 504."""
    decision = lookup(stored(), T + 150, req_cc(b"only-if-cached"))
    assert (decision.action, decision.fwd) == ("only-if-cached", "stale")


def test_only_if_cached_with_max_stale() -> None:
    """RFC 9111 §5.2.1.7 with §5.2.1.2: a stale response the client accepts is served."""
    assert lookup(stored(), T + 150, req_cc(b"only-if-cached, max-stale")).action == "stale"


def test_only_if_cached_with_request_no_cache() -> None:
    """RFC 9111 §5.2.1.7 with §5.2.1.4: validation is forwarding, so the answer is 504."""
    decision = lookup(stored(), T + 5, req_cc(b"only-if-cached, no-cache"))
    assert (decision.action, decision.fwd) == ("only-if-cached", "request")


# ---------------------------------------------------------------------------------------------
# Misses and variant selection (RFC 9111 §4.1, RFC 9211 §2.2).


def test_nothing_stored_is_a_uri_miss() -> None:
    """RFC 9211 §2.2: ``uri-miss``: the cache did not contain any responses for the URI."""
    assert lookup([], T) == Decision(action="miss", fwd="uri-miss")


def test_no_variant_matching_is_a_vary_miss() -> None:
    """RFC 9211 §2.2: ``vary-miss``: responses for the URI, none matching the request."""
    response = stored(vary=((b"accept-language", b"en"),))
    assert lookup(response, T + 5, (b"accept-language", b"fr")) == Decision(
        action="miss", fwd="vary-miss"
    )
    assert lookup(response, T + 5, (b"accept-language", b"en")).action == "hit"


def test_matching_variant_is_chosen_among_several() -> None:
    """RFC 9111 §4.1: the stored response whose selecting fields match is used."""
    english = stored(vary=variant([(b"accept-language", b"en")], (b"accept-language",)))
    french = stored(vary=variant([(b"accept-language", b"fr")], (b"accept-language",)))
    decision = lookup([english, french], T + 5, (b"accept-language", b"fr"))
    assert decision.response is french


@pytest.mark.parametrize("order", [0, 1])
def test_most_recent_matching_variant_wins(order: int) -> None:
    """RFC 9111 §4.1: with several matching responses, the most recent by Date is used."""
    older = stored(date=T)
    newer = stored(date=T + 10)
    variants = [older, newer] if order else [newer, older]
    decision = lookup(variants, T + 20)
    assert decision.response is newer
    assert decision.age == 10


# ---------------------------------------------------------------------------------------------
# Cache-Status (RFC 9211 §2).


@pytest.mark.parametrize(
    ("status", "rendered"),
    [
        (CacheStatus(hit=True, ttl=50), b"sansproxy; hit; ttl=50"),
        (CacheStatus(fwd="uri-miss", stored=True), b"sansproxy; fwd=uri-miss; stored"),
        (
            CacheStatus(fwd="stale", fwd_status=304, ttl=100),
            b"sansproxy; fwd=stale; fwd-status=304; ttl=100",
        ),
        (CacheStatus(hit=True, ttl=-30), b"sansproxy; hit; ttl=-30"),  # stale: negative ttl
        (CacheStatus(fwd="miss", collapsed=True), b"sansproxy; fwd=miss; collapsed"),
        (
            CacheStatus(fwd="request", detail="request no-cache"),
            b'sansproxy; fwd=request; detail="request no-cache"',
        ),
        (CacheStatus(fwd="miss", detail='a "b"'), b"sansproxy; fwd=miss; detail=\"a 'b'\""),
        (CacheStatus(), b"sansproxy"),
    ],
)
def test_cache_status_render(status: CacheStatus, rendered: bytes) -> None:
    """RFC 9211 §2: the cache's name, then hit / fwd / fwd-status / ttl / stored / collapsed.

    ``ttl`` is negative for a stale response (§2.5); ``detail`` is a String (§2.8).
    """
    assert status.render(b"sansproxy") == rendered
