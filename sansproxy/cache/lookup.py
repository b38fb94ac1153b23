"""What a request gets from the stored responses of its key (RFC 9111 §4, RFC 5861).

:func:`decide` is the whole reuse rule in one pure function: given a request
(its method, fields and Cache-Control), the stored variants of its key and the
wall clock, it says whether a stored response is served, revalidated first, or
not used, and why. The explain API and the tests call it as the filter does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from sansproxy.cache.dates import parse_http_date
from sansproxy.cache.directives import INVALID, cache_control, pragma_no_cache
from sansproxy.cache.freshness import (
    aged,
    current_age,
    freshness_lifetime,
    header_value,
    initial_age,
)
from sansproxy.cache.keys import matches
from sansproxy.cache.targeted import response_directives

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from sansproxy._codec import Headers
    from sansproxy.cache.directives import CacheControl
    from sansproxy.cache.store import StoredResponse

__all__ = ["Action", "Decision", "Policy", "age_of", "decide", "lifetime_of", "stale_if_error"]

Action = Literal["hit", "stale", "validate", "miss", "only-if-cached"]
"""``hit``: serve it fresh; ``stale``: serve it stale (a directive allows it, ``refresh``
says whether in the background); ``validate``: ask the backend first; ``miss``: forward;
``only-if-cached``: answer 504 (nothing may be served and the client forbids forwarding)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """The route's settings that the reuse rules read."""

    defaults: Mapping[int, int]
    """Lifetimes by status for responses without freshness information."""
    heuristic_fraction: float = 0.1
    heuristic_max: int = 86400
    honour_no_cache: bool = True
    """Whether a request's ``no-cache`` (or ``Pragma: no-cache``) forces a revalidation."""
    targeted: tuple[bytes, ...] = (b"cdn-cache-control",)
    """Targeted fields (RFC 9213) that, when valid, stand in for Cache-Control."""


@dataclass(slots=True, kw_only=True)
class Decision:
    """What to do with one request."""

    action: Action
    response: StoredResponse | None = None
    age: int = 0
    ttl: int = 0
    """Freshness left, in seconds (negative once stale)."""
    fwd: str | None = None
    """Why it is forwarded, as Cache-Status says it (``uri-miss``, ``stale``...)."""
    detail: str = ""
    refresh: bool = False
    """For ``stale``: refresh it in the background (stale-while-revalidate)."""


def lifetime_of(response: StoredResponse, directives: CacheControl, policy: Policy) -> int:
    """The freshness lifetime of a stored response, in seconds."""
    return freshness_lifetime(
        response.status,
        response.headers,
        directives,
        response_time=response.response_time,
        default=policy.defaults.get(response.status),
        heuristic_fraction=policy.heuristic_fraction,
        heuristic_max=policy.heuristic_max,
    ).seconds


@dataclass(frozen=True, slots=True)
class _Facts:
    """What a stored response's fields say, read once: its fields do not change once stored."""

    policy: Policy
    directives: CacheControl
    lifetime: int
    initial_age: float
    """Its age when it arrived (§4.2.3 ``corrected_initial_age``)."""
    date: int


def _facts(response: StoredResponse, policy: Policy) -> _Facts:
    facts = response.facts
    if isinstance(facts, _Facts) and facts.policy is policy:
        return facts
    directives = response_directives(response.headers, policy.targeted)
    date = parse_http_date(header_value(response.headers, b"date") or b"") or 0
    made = _Facts(
        policy=policy,
        directives=directives,
        lifetime=lifetime_of(response, directives, policy),
        initial_age=initial_age(
            response.headers,
            request_time=response.request_time,
            response_time=response.response_time,
        ),
        date=date,
    )
    response.facts = made
    return made


def age_of(response: StoredResponse, now: float) -> int:
    """A stored response's current age at wall-clock time ``now`` (RFC 9111 §4.2.3)."""
    return current_age(
        response.headers,
        request_time=response.request_time,
        response_time=response.response_time,
        now=now,
    )


def _age_at(facts: _Facts, response: StoredResponse, now: float) -> int:
    """:func:`age_of`, from the age it arrived with plus the time it has been stored."""
    return aged(facts.initial_age, response_time=response.response_time, now=now)


def decide(
    *,
    request_headers: Headers,
    variants: Sequence[StoredResponse],
    now: float,
    policy: Policy,
) -> Decision:
    """The reuse decision for a GET or HEAD request (§4)."""
    request = cache_control(request_headers)
    only_if_cached = "only-if-cached" in request
    if not variants:
        return _forward("uri-miss", only_if_cached)
    chosen = _select(variants, request_headers, policy)
    if chosen is None:
        return _forward("vary-miss", only_if_cached)
    facts = _facts(chosen, policy)
    directives = facts.directives
    lifetime = facts.lifetime
    age = _age_at(facts, chosen, now)
    ttl = lifetime - age
    decision = Decision(action="hit", response=chosen, age=age, ttl=ttl)

    def validate(why: str, fwd: str = "stale") -> Decision:
        decision.action = "only-if-cached" if only_if_cached else "validate"
        decision.fwd = fwd
        decision.detail = why
        return decision

    if "no-cache" in directives and directives.field_names("no-cache") is None:
        return validate("response no-cache")
    if policy.honour_no_cache and (
        "no-cache" in request or (not request and pragma_no_cache(request_headers))
    ):
        return validate("request no-cache", "request")
    max_age = request.seconds("max-age")
    if max_age is not None and (max_age == INVALID or age > max_age):
        return validate("request max-age", "request")
    min_fresh = request.seconds("min-fresh")
    if min_fresh is not None and (min_fresh == INVALID or ttl < min_fresh):
        return validate("request min-fresh", "request")
    if ttl > 0:
        return decision
    # Stale. A shared cache serves it only where a directive allows it (§4.2.4).
    if _must_revalidate(directives):
        return validate("must revalidate")
    if "max-stale" in request:
        allowed = request.seconds("max-stale")
        if request.argument("max-stale") is None or (allowed is not None and -ttl <= allowed):
            decision.action = "stale"
            decision.detail = "request max-stale"
            return decision
    window = directives.seconds("stale-while-revalidate")
    if window is not None and window != INVALID and -ttl <= window:
        decision.action = "stale"
        decision.refresh = True
        decision.detail = "stale-while-revalidate"
        return decision
    return validate("stale")


def _must_revalidate(directives: CacheControl) -> bool:
    """Whether a stale response may never be served unvalidated (s-maxage implies it, §5.2.2.10)."""
    return (
        "must-revalidate" in directives
        or "proxy-revalidate" in directives
        or "s-maxage" in directives
    )


def _forward(fwd: str, only_if_cached: bool) -> Decision:
    if only_if_cached:
        return Decision(action="only-if-cached", fwd=fwd, detail="only-if-cached")
    return Decision(action="miss", fwd=fwd)


def _select(
    variants: Sequence[StoredResponse], request_headers: Headers, policy: Policy
) -> StoredResponse | None:
    """The stored response a request selects: of those matching, the most recent (§4.1)."""
    if len(variants) == 1:
        only = variants[0]
        return only if matches(only.variant, request_headers) else None
    best: StoredResponse | None = None
    best_date = -1
    for candidate in variants:
        if not matches(candidate.variant, request_headers):
            continue
        date = _facts(candidate, policy).date
        if best is None or date > best_date:
            best, best_date = candidate, date
    return best


def stale_if_error(
    response: StoredResponse, request_headers: Headers, now: float, policy: Policy
) -> bool:
    """Whether ``response`` may stand in for a failed or 5xx answer (RFC 5861 §4)."""
    facts = _facts(response, policy)
    directives = facts.directives
    if _must_revalidate(directives):
        return False
    staleness = _age_at(facts, response, now) - facts.lifetime
    for source in (cache_control(request_headers), directives):
        window = source.seconds("stale-if-error")
        if window is not None and window != INVALID and staleness <= window:
            return True
    return False
