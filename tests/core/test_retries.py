"""The retry budget (a sliding window of bucketed counters) and full-jitter backoff."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sansproxy.retries import RetryBudget, backoff


def retries_allowed(budget: RetryBudget, now: float, attempts: int = 1000) -> int:
    return sum(budget.try_retry(now) for _ in range(attempts))


def requests(budget: RetryBudget, count: int, now: float) -> None:
    for _ in range(count):
        budget.record_request(now)


# -- the budget ------------------------------------------------------------------------------


def test_ratio_of_requests_without_minimum() -> None:
    budget = RetryBudget(ratio=0.2, min_retries=0)
    requests(budget, 100, 0.0)
    assert retries_allowed(budget, 0.0) == 20
    assert budget.stats(0.0) == (100, 20)


def test_minimum_is_added_to_the_ratio() -> None:
    budget = RetryBudget(ratio=0.2, min_retries=3)
    requests(budget, 100, 0.0)
    assert retries_allowed(budget, 0.0) == 23


def test_a_quiet_pool_gets_the_minimum() -> None:
    budget = RetryBudget(ratio=0.2, min_retries=3)
    assert retries_allowed(budget, 0.0) == 3
    budget = RetryBudget(ratio=0.2, min_retries=0)
    assert not budget.try_retry(0.0)


def test_fractional_budget_rounds_down() -> None:
    budget = RetryBudget(ratio=0.2, min_retries=0)
    requests(budget, 9, 0.0)  # 1.8 retries
    assert retries_allowed(budget, 0.0) == 1
    budget.record_request(0.0)  # 2.0
    assert retries_allowed(budget, 0.0) == 1


def test_float_ratio_is_not_rounded_away() -> None:
    budget = RetryBudget(ratio=0.29, min_retries=0)
    requests(budget, 100, 0.0)  # 0.29 * 100 == 28.999999999999996
    assert retries_allowed(budget, 0.0) == 29


def test_denied_retries_are_not_counted_and_retries_are_not_requests() -> None:
    budget = RetryBudget(ratio=0.5, min_retries=0)
    requests(budget, 4, 0.0)
    assert [budget.try_retry(0.0) for _ in range(4)] == [True, True, False, False]
    assert budget.stats(0.0) == (4, 2)
    budget.record_request(0.5)
    budget.record_request(0.5)
    assert budget.try_retry(0.5)
    assert budget.stats(0.5) == (6, 3)


def test_interleaved_requests_and_retries() -> None:
    budget = RetryBudget(ratio=0.2, min_retries=0)
    allowed = []
    for _ in range(50):
        budget.record_request(1.0)
        allowed.append(budget.try_retry(1.0))
    # Every fifth request earns one retry, taken at once.
    assert allowed == [False, False, False, False, True] * 10


def test_requests_older_than_the_window_stop_counting() -> None:
    budget = RetryBudget(ratio=0.2, window=10.0, min_retries=0, buckets=10)
    requests(budget, 100, 0.0)
    assert retries_allowed(budget, 0.0) == 20
    assert budget.stats(9.999) == (100, 20)
    assert not budget.try_retry(9.999)
    assert budget.stats(10.0) == (0, 0)
    assert not budget.try_retry(10.0)


def test_window_slides_bucket_by_bucket() -> None:
    budget = RetryBudget(ratio=0.2, window=10.0, min_retries=0, buckets=10)
    requests(budget, 50, 0.0)
    requests(budget, 50, 5.0)
    assert retries_allowed(budget, 5.0) == 20
    # At 12 the requests of 0 are gone, their retries too: the 50 of 5 allow 10, 10 were
    # taken at 5 (all 20 retries sit in the bucket of 5).
    assert budget.stats(12.0) == (50, 20)
    assert retries_allowed(budget, 12.0) == 0
    assert budget.stats(15.0) == (0, 0)
    requests(budget, 50, 15.0)
    assert retries_allowed(budget, 15.0) == 10


def test_bucket_granularity_edges() -> None:
    # Buckets of one second: at `now` the window starts at the start of the bucket
    # `buckets - 1` before the current one.
    budget = RetryBudget(ratio=1.0, window=10.0, min_retries=0, buckets=10)
    budget.record_request(0.5)
    budget.record_request(1.0)
    assert budget.stats(9.999) == (2, 0)
    assert budget.stats(10.0) == (1, 0)  # the request of 0.5 is only 9.5 s old, but gone
    assert budget.stats(10.999) == (1, 0)  # the request of 1.0 is 9.999 s old, still in
    assert budget.stats(11.0) == (0, 0)


def test_one_bucket_is_a_tumbling_window() -> None:
    budget = RetryBudget(ratio=1.0, window=10.0, min_retries=0, buckets=1)
    budget.record_request(0.0)
    assert budget.stats(9.9) == (1, 0)
    assert budget.stats(10.0) == (0, 0)


def test_long_idle_gap() -> None:
    budget = RetryBudget(ratio=0.2, window=10.0, min_retries=1, buckets=10)
    requests(budget, 100, 5.0)
    retries_allowed(budget, 5.0)
    assert budget.stats(1e9) == (0, 0)
    assert retries_allowed(budget, 1e9) == 1
    requests(budget, 10, 1e9 + 3.0)
    assert budget.stats(1e9 + 3.0) == (10, 1)
    assert retries_allowed(budget, 1e9 + 3.0) == 2


def test_gap_shorter_than_the_window_keeps_the_rest() -> None:
    budget = RetryBudget(ratio=1.0, window=10.0, min_retries=0, buckets=10)
    for t in range(10):
        budget.record_request(float(t))
    assert budget.stats(9.0) == (10, 0)
    assert budget.stats(13.0) == (6, 0)  # buckets 0..3 left, 4..9 stay


def test_time_going_backwards_counts_in_the_latest_bucket() -> None:
    budget = RetryBudget(ratio=1.0, window=10.0, min_retries=0, buckets=10)
    budget.record_request(5.0)
    budget.record_request(1.0)  # earlier than seen: counted at 5
    assert budget.stats(5.0) == (2, 0)
    assert budget.stats(14.999) == (2, 0)
    assert budget.stats(15.0) == (0, 0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ratio": -0.1},
        {"ratio": math.inf},
        {"ratio": math.nan},
        {"window": 0.0},
        {"window": -1.0},
        {"min_retries": -1},
        {"buckets": 0},
    ],
)
def test_invalid_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must"):
        RetryBudget(**kwargs)  # type: ignore[arg-type]


# -- the budget holds in every window ---------------------------------------------------------

SHAPES = [(10.0, 10), (10.0, 4), (6.0, 3), (5.0, 1), (2.0, 2)]

operations = st.lists(
    st.one_of(
        st.tuples(st.just("request"), st.integers(min_value=1, max_value=8)),
        st.tuples(st.just("retry"), st.integers(min_value=1, max_value=4)),
        # Half-second steps keep every boundary exact in binary floating point.
        st.tuples(st.just("wait"), st.integers(min_value=0, max_value=30)),
    ),
    max_size=80,
)


@given(
    ops=operations,
    shape=st.sampled_from(SHAPES),
    ratio=st.sampled_from([0.0, 0.1, 0.2, 0.25, 0.5, 1.0]),
    min_retries=st.integers(min_value=0, max_value=3),
)
def test_budget_holds_in_every_window(
    ops: list[tuple[str, int]], shape: tuple[float, int], ratio: float, min_retries: int
) -> None:
    """Checked against the event log, not the implementation's counters.

    The window at ``t`` always covers ``[t - window + width, t]`` and never reaches back to
    ``t - window``. So every allowed retry keeps the retries of the last ``window - width``
    seconds within ``ratio`` of the requests of the last ``window`` seconds plus the minimum
    (safety), and a retry that fits even when counted the strict way is never denied
    (liveness). ``stats`` must match the bucket-aligned count exactly.
    """
    window, buckets = shape
    width = window / buckets
    budget = RetryBudget(ratio=ratio, window=window, min_retries=min_retries, buckets=buckets)
    request_times: list[float] = []
    retry_times: list[float] = []
    now = 0.0

    def count(times: list[float], after: float, upto: float, *, closed: bool) -> int:
        return sum((after <= t if closed else after < t) and t <= upto for t in times)

    for op, value in ops:
        if op == "wait":
            now += value / 2
        elif op == "request":
            for _ in range(value):
                budget.record_request(now)
                request_times.append(now)
        else:
            for _ in range(value):
                wide_retries = count(retry_times, now - window, now, closed=False)
                narrow_requests = count(request_times, now - window + width, now, closed=True)
                must_allow = wide_retries + 1 <= ratio * narrow_requests + min_retries
                allowed = budget.try_retry(now)
                if must_allow:
                    assert allowed
                if allowed:
                    retry_times.append(now)
                    narrow_retries = count(retry_times, now - window + width, now, closed=True)
                    wide_requests = count(request_times, now - window, now, closed=False)
                    assert narrow_retries <= ratio * wide_requests + min_retries + 1e-9
        start = (math.floor(now / width) - buckets + 1) * width
        assert budget.stats(now) == (
            count(request_times, start, now, closed=True),
            count(retry_times, start, now, closed=True),
        )


# -- backoff ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("attempt", "ceiling"), [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0)])
def test_backoff_bounds_double_then_cap(attempt: int, ceiling: float) -> None:
    rng = random.Random(99)
    draws = [backoff(attempt, base=0.1, cap=1.0, rng=rng) for _ in range(1000)]
    assert all(0.0 <= d <= ceiling for d in draws)
    # Full jitter: the draws cover the whole range, evenly.
    assert min(draws) < ceiling * 0.01
    assert max(draws) > ceiling * 0.99
    assert ceiling * 0.45 < sum(draws) / len(draws) < ceiling * 0.55


def test_backoff_is_deterministic_with_a_seed() -> None:
    first = [backoff(a, base=0.05, cap=2.0, rng=random.Random(5)) for a in range(1, 10)]
    second = [backoff(a, base=0.05, cap=2.0, rng=random.Random(5)) for a in range(1, 10)]
    assert first == second
    rng, again = random.Random(42), random.Random(42)
    assert [backoff(3, base=1.0, cap=9.0, rng=rng) for _ in range(1000)] == [
        backoff(3, base=1.0, cap=9.0, rng=again) for _ in range(1000)
    ]


def test_backoff_of_huge_attempts_is_the_cap() -> None:
    rng = random.Random(0)
    assert all(0.0 <= backoff(5000, base=0.1, cap=3.0, rng=rng) <= 3.0 for _ in range(100))


def test_backoff_attempts_count_from_one() -> None:
    with pytest.raises(ValueError, match="from 1"):
        backoff(0, base=0.1, cap=1.0, rng=random.Random(0))
