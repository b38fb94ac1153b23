"""Properties of the pure cache rules (``sansproxy.cache``), over random responses and requests.

(a) ``decide`` never serves a response as a hit once its current age reaches its
    freshness lifetime (RFC 9111 §4.2), and never serves one stale unless the
    request's max-stale or the response's stale-while-revalidate allows it and no
    must-revalidate, proxy-revalidate or s-maxage forbids it (§4.2.4, RFC 5861 §3).
    Lifetimes and ages are computed here independently, by the §4.2.1 precedence and
    the §4.2.3 formula, on whole seconds of a fake wall clock.
(b) ``refusal`` never lets a shared cache store a response with ``no-store`` (without
    ``must-understand``) or unqualified ``private``, nor one to a request with
    Authorization unless public, s-maxage or must-revalidate allows it (§3, §3.5).
(c) ``MemoryStore.bytes`` never exceeds ``max_bytes`` and always equals the sum of the
    sizes stored, across random put / replace / remove / add_encoding / variants.
(d) ``decide`` is deterministic and does not change its inputs.
(e) ``format_http_date`` and ``parse_http_date`` agree with each other and with the
    standard library for any time in 0..2**33 (RFC 9110 §5.6.7).
"""

from __future__ import annotations

import dataclasses
import email.utils
import time
from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from sansproxy.cache.dates import format_http_date, parse_http_date
from sansproxy.cache.directives import cache_control
from sansproxy.cache.freshness import HEURISTIC_STATUSES
from sansproxy.cache.keys import Variant
from sansproxy.cache.lookup import Decision, Policy, decide
from sansproxy.cache.storable import UNDERSTOOD_STATUSES, refusal
from sansproxy.cache.store import MemoryStore, StoredResponse

T = 1_000_000_000
MAX_DELTA = 2**31
Headers = list[tuple[bytes, bytes]]


def http_date(seconds: int) -> bytes:
    return email.utils.formatdate(seconds, usegmt=True).encode()


# ---------------------------------------------------------------------------------------------
# (a), (d): decide against an independent oracle.


@dataclass(frozen=True)
class Case:
    """One stored response, one request and the wall clock, all in whole seconds."""

    status: int
    date: int
    request_time: int
    response_time: int
    now: int
    age_header: int | None
    max_age: int | None
    s_maxage: int | None
    expires: int | None  # seconds after Date; None: absent
    expires_invalid: bool
    last_modified: int | None  # seconds before Date
    flags: frozenset[str]
    swr: int | None
    default: int | None
    heuristic_max: int
    honour_no_cache: bool
    req_max_age: int | None
    req_min_fresh: int | None
    req_max_stale: int | None  # -1: without a value
    req_no_cache: bool
    req_pragma: bool
    req_only_if_cached: bool

    def response(self) -> StoredResponse:
        directives = sorted(self.flags)
        if self.max_age is not None:
            directives.append(f"max-age={self.max_age}")
        if self.s_maxage is not None:
            directives.append(f"s-maxage={self.s_maxage}")
        if self.swr is not None:
            directives.append(f"stale-while-revalidate={self.swr}")
        headers: Headers = [(b"date", http_date(self.date))]
        if directives:
            headers.append((b"cache-control", ", ".join(directives).encode()))
        if self.expires_invalid:
            headers.append((b"expires", b"0"))
        elif self.expires is not None:
            headers.append((b"expires", http_date(self.date + self.expires)))
        if self.last_modified is not None:
            headers.append((b"last-modified", http_date(self.date - self.last_modified)))
        if self.age_header is not None:
            headers.append((b"age", b"%d" % self.age_header))
        return StoredResponse(
            key=b"http://example.com/",
            status=self.status,
            reason=b"",
            headers=headers,
            body=b"body",
            request_time=self.request_time,
            response_time=self.response_time,
        )

    def request(self) -> Headers:
        directives = []
        if self.req_max_age is not None:
            directives.append(f"max-age={self.req_max_age}")
        if self.req_min_fresh is not None:
            directives.append(f"min-fresh={self.req_min_fresh}")
        if self.req_max_stale is not None:
            stale = self.req_max_stale
            directives.append("max-stale" if stale < 0 else f"max-stale={stale}")
        if self.req_no_cache:
            directives.append("no-cache")
        if self.req_only_if_cached:
            directives.append("only-if-cached")
        headers: Headers = []
        if directives:
            headers.append((b"cache-control", ", ".join(directives).encode()))
        if self.req_pragma:
            headers.append((b"pragma", b"no-cache"))
        return headers

    def policy(self) -> Policy:
        defaults = {} if self.default is None else {self.status: self.default}
        return Policy(
            defaults=defaults,
            heuristic_max=self.heuristic_max,
            honour_no_cache=self.honour_no_cache,
        )

    def lifetime(self) -> int:
        """RFC 9111 §4.2.1 (shared cache), §4.2.2 and §5.3, worked independently."""
        if self.s_maxage is not None:
            return self.s_maxage
        if self.max_age is not None:
            return self.max_age
        if self.expires_invalid:
            return 0
        if self.expires is not None:
            return max(0, self.expires)
        if self.default is not None:
            return self.default
        if (self.status in HEURISTIC_STATUSES or "public" in self.flags) and self.last_modified:
            return min(self.last_modified // 10, self.heuristic_max)
        return 0

    def age(self) -> int:
        """RFC 9111 §4.2.3, worked independently."""
        apparent_age = max(0, self.response_time - self.date)
        response_delay = self.response_time - self.request_time
        corrected_age_value = (self.age_header or 0) + response_delay
        corrected_initial_age = max(apparent_age, corrected_age_value)
        resident_time = self.now - self.response_time
        return min(corrected_initial_age + resident_time, MAX_DELTA)


small = st.integers(0, 400)


@st.composite
def cases(draw: st.DrawFn) -> Case:
    def rarely() -> bool:  # one time in four, and False when shrinking
        return draw(st.sampled_from((False, False, False, True)))

    def sometimes(values: st.SearchStrategy[int]) -> int | None:
        return None if draw(st.booleans()) else draw(values)

    date = T + draw(st.integers(-30, 30))  # a skewed origin clock now and then
    request_time = T + draw(st.integers(0, 5))
    response_time = request_time + draw(st.integers(0, 10))
    flags = ("must-revalidate", "proxy-revalidate", "no-cache", "public")
    case = Case(
        status=draw(st.sampled_from([200, 203, 301, 302, 307, 404, 410, 500])),
        date=date,
        request_time=request_time,
        response_time=response_time,
        now=response_time + draw(st.integers(0, 700)),
        age_header=draw(st.integers(0, 60)) if rarely() else None,
        max_age=sometimes(small),
        s_maxage=draw(small) if rarely() else None,
        expires=sometimes(st.integers(-100, 600)),
        expires_invalid=rarely(),
        last_modified=sometimes(st.integers(0, 20_000)),
        flags=frozenset(flag for flag in flags if rarely()),
        swr=sometimes(small),
        default=draw(small) if rarely() else None,
        heuristic_max=draw(st.integers(0, 2000)),
        honour_no_cache=draw(st.booleans()),
        req_max_age=draw(st.integers(0, 700)) if rarely() else None,
        req_min_fresh=draw(small) if rarely() else None,
        req_max_stale=sometimes(st.integers(-1, 600)),
        req_no_cache=rarely(),
        req_pragma=rarely(),
        req_only_if_cached=rarely(),
    )
    if draw(st.booleans()):
        # Near the moment it goes stale, where off-by-one mistakes live.
        at_expiry = case.lifetime() - case.age() + case.now
        now = max(response_time, at_expiry + draw(st.integers(-40, 40)))
        case = dataclasses.replace(case, now=now)
    return case


def run(case: Case) -> Decision:
    return decide(
        request_headers=case.request(),
        variants=[case.response()],
        now=case.now,
        policy=case.policy(),
    )


@given(cases())
def test_decide_never_serves_an_expired_hit_or_a_forbidden_stale(case: Case) -> None:
    """RFC 9111 §4.2, §4.2.4, §5.2.2.2/8/10; RFC 5861 §3 (property a)."""
    decision = run(case)
    lifetime, age = case.lifetime(), case.age()
    assert (decision.age, decision.ttl) == (age, lifetime - age)
    request_cc = any(name == b"cache-control" for name, _ in case.request())
    request_no_cache = case.honour_no_cache and (
        case.req_no_cache or (case.req_pragma and not request_cc)
    )
    if decision.action == "hit":
        assert age < lifetime
        assert "no-cache" not in case.flags
        assert not request_no_cache
    if decision.action == "stale":
        staleness = age - lifetime
        assert staleness >= 0
        assert not {"must-revalidate", "proxy-revalidate", "no-cache"} & case.flags
        assert case.s_maxage is None
        assert not request_no_cache
        by_max_stale = case.req_max_stale is not None and (
            case.req_max_stale < 0 or staleness <= case.req_max_stale
        )
        by_swr = case.swr is not None and staleness <= case.swr
        assert by_max_stale or by_swr
        assert decision.refresh == (not by_max_stale)
    if case.req_only_if_cached:
        assert decision.action in {"hit", "stale", "only-if-cached"}
    else:
        assert decision.action in {"hit", "stale", "validate"}
    # And the converse (§4): a fresh response that nothing forbids reusing is a hit.
    unconstrained = (
        "no-cache" not in case.flags
        and not case.req_no_cache
        and not case.req_pragma
        and case.req_max_age is None
        and case.req_min_fresh is None
    )
    if unconstrained and age < lifetime:
        assert decision.action == "hit"


@given(cases())
def test_decide_is_deterministic_and_leaves_its_inputs_alone(case: Case) -> None:
    """Determinism (STYLE §3.2): equal inputs give equal decisions (property d)."""
    request, response = case.request(), case.response()
    first = decide(request_headers=request, variants=[response], now=case.now, policy=case.policy())
    twin = case.response()
    second = decide(
        request_headers=case.request(), variants=[twin], now=case.now, policy=case.policy()
    )
    assert first.response is response
    assert second.response is twin
    first.response = second.response = None
    assert first == second
    assert request == case.request()
    assert response.headers == twin.headers


# ---------------------------------------------------------------------------------------------
# (b): refusal.

DIRECTIVES = [
    "no-store",
    "must-understand",
    "private",
    'private="x-user"',
    "public",
    "s-maxage=10",
    "max-age=10",
    "must-revalidate",
    "proxy-revalidate",
    "no-cache",
]


@st.composite
def random_case(draw: st.DrawFn, text: str) -> str:
    """``text`` with its directive name in random case (RFC 9111 §5.2)."""
    name, sep, argument = text.partition("=")
    flips = draw(st.lists(st.booleans(), min_size=len(name), max_size=len(name)))
    name = "".join(c.upper() if flip else c for c, flip in zip(name, flips, strict=True))
    return name + sep + argument


@st.composite
def storage_cases(draw: st.DrawFn) -> tuple[int, list[str], Headers, Headers, bool, bool]:
    status = draw(st.sampled_from([100, 200, 203, 204, 206, 301, 302, 304, 404, 418, 500, 599]))
    names = draw(st.lists(st.sampled_from(DIRECTIVES), max_size=5))
    spelled = [draw(random_case(name)) for name in names]
    split = draw(st.integers(0, len(spelled)))  # over one or two Cache-Control lines
    response: Headers = [(b"date", http_date(T))]
    for part in (spelled[:split], spelled[split:]):
        if part:
            response.append((b"cache-control", ", ".join(part).encode()))
    if draw(st.booleans()):
        response.append((b"vary", draw(st.sampled_from([b"accept", b"*", b"accept, *"]))))
    if draw(st.booleans()):
        response.append((b"set-cookie", b"id=1"))
    if draw(st.booleans()):
        response.append((b"expires", http_date(T + 60)))
    request: Headers = [(b"authorization", b"Bearer x")] if draw(st.booleans()) else []
    return status, names, request, response, draw(st.booleans()), draw(st.booleans())


@given(storage_cases())
def test_refusal_never_stores_what_a_shared_cache_must_not(
    case: tuple[int, list[str], Headers, Headers, bool, bool],
) -> None:
    """RFC 9111 §3, §3.5, §5.2.2.3, §5.2.2.5, §5.2.2.7 (property b)."""
    status, names, request, response, has_default, store_set_cookie = case
    reason = refusal(
        status=status,
        request_headers=request,
        response_headers=response,
        directives=cache_control(response),
        has_default=has_default,
        store_set_cookie=store_set_cookie,
    )
    present = set(names)
    if "no-store" in present and "must-understand" not in present:
        assert reason
    if "must-understand" in present and status not in UNDERSTOOD_STATUSES:
        assert reason
    if "private" in present:
        assert reason
    if request and not present & {"public", "s-maxage=10", "must-revalidate"}:
        assert reason
    if status < 200 or status in (206, 304):
        assert reason
    if any(name == b"vary" and b"*" in value for name, value in response):
        assert reason
    if not store_set_cookie and any(name == b"set-cookie" for name, _ in response):
        assert reason


# ---------------------------------------------------------------------------------------------
# (c): the store's byte accounting.

KEYS = (b"a", b"b", b"c", b"d")
VARIANTS: tuple[Variant, ...] = ((), ((b"accept", b"x"),), ((b"accept", b"y"),))

sizes = st.integers(1, 700)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.sampled_from(KEYS), st.sampled_from(VARIANTS), sizes),
        st.tuples(st.just("replace"), st.integers(0, 100), sizes),
        st.tuples(st.just("remove"), st.sampled_from(KEYS)),
        st.tuples(st.just("variants"), st.sampled_from(KEYS)),
        st.tuples(
            st.just("encode"),
            st.integers(0, 100),
            st.sampled_from(["gzip", "br"]),
            st.integers(0, 300),
        ),
    ),
    max_size=40,
)


def stored_sizes(store: MemoryStore) -> list[int]:
    # Read the store's table directly: ``variants()`` would reorder its LRU list.
    held = store._keys
    for key, variants in held.items():
        assert variants, "no key is kept without responses"
        assert all(v.key == key for v in variants)
        assert len({v.variant for v in variants}) == len(variants), "one response per variant"
    return [v.size for variants in held.values() for v in variants]


@given(operations, st.integers(200, 2000), st.integers(1, 2000))
def test_store_bytes_stay_under_the_cap_and_add_up(
    ops: list[tuple[object, ...]], max_bytes: int, max_object: int
) -> None:
    """The cap holds after every operation, and ``bytes`` is exactly what is held (property c)."""
    store = MemoryStore(max_bytes=max_bytes, max_object_bytes=max_object)
    created: list[StoredResponse] = []
    evictions = 0

    def make(key: bytes, vary: Variant, size: int) -> StoredResponse:
        response = StoredResponse(
            key=key,
            status=200,
            reason=b"",
            headers=[],
            body=b"",
            request_time=0,
            response_time=0,
            variant=vary,
            size=size,
        )
        created.append(response)
        return response

    for op in ops:
        match op:
            case ("put", bytes() as key, tuple() as vary, int() as size):
                response = make(key, vary, size)
                store.put(response)
                if size <= store.max_object_bytes:
                    assert store.variants(key)[0] is response
            case ("replace", int() as index, int() as size) if created:
                old = created[index % len(created)]
                new = make(old.key, old.variant, size)
                store.replace(old, new)
                if size <= store.max_object_bytes:
                    assert new in store.variants(old.key)
                else:
                    assert old not in store.variants(old.key)
            case ("remove", bytes() as key):
                count = len(store._keys.get(key, []))
                assert store.remove(key) == count
                assert store.variants(key) == []
            case ("variants", bytes() as key):
                store.variants(key)
            case ("encode", int() as index, str() as coding, int() as length) if created:
                store.add_encoding(created[index % len(created)], coding, b"z" * length)
            case _:
                pass
        sizes = stored_sizes(store)
        assert store.bytes == sum(sizes)
        assert store.bytes <= store.max_bytes
        assert len(store) == len(sizes)
        assert store.evictions >= evictions
        evictions = store.evictions


# ---------------------------------------------------------------------------------------------
# (e): dates.


@given(st.integers(0, 2**33))
def test_http_date_round_trip_and_agrees_with_the_standard_library(seconds: int) -> None:
    """RFC 9110 §5.6.7: IMF-fixdate written and read back, as ``email.utils`` writes it."""
    written = format_http_date(seconds)
    assert parse_http_date(written) == seconds
    assert written == email.utils.formatdate(seconds, usegmt=True).encode()
    assert format_http_date(seconds + 0.75) == written  # one-second resolution


@given(st.integers(0, 2**33))
def test_asctime_date_is_read(seconds: int) -> None:
    """RFC 9110 §5.6.7: a recipient MUST accept the asctime format."""
    assert parse_http_date(time.asctime(time.gmtime(seconds)).encode()) == seconds


# 1980-01-01 .. 2049-12-31: two-digit years that every reading of §5.6.7 agrees on today.
@given(st.integers(315_532_800, 2_524_607_999))
def test_rfc850_date_is_read(seconds: int) -> None:
    """RFC 9110 §5.6.7: a recipient MUST accept the obsolete RFC 850 format."""
    value = time.strftime("%A, %d-%b-%y %H:%M:%S GMT", time.gmtime(seconds)).encode()
    assert parse_http_date(value) == seconds
