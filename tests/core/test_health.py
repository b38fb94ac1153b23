"""The pool health model: active rise/fall, passive ejection, decay, the ejection cap."""

from __future__ import annotations

import random

import pytest

from sansproxy.health import (
    ActiveCheck,
    HealthChange,
    OutlierDetection,
    PoolHealth,
    ServerHealthView,
    probe_delay,
    probe_passed,
)

LABELS = ["127.0.0.1:9001", "127.0.0.1:9002", "127.0.0.1:9003", "127.0.0.1:9004"]
OUTLIER = OutlierDetection(consecutive_failures=3, base_ejection=30.0, max_ejection=300.0)


def active_pool(n: int = 1, **settings: object) -> PoolHealth:
    check = ActiveCheck(**settings)  # type: ignore[arg-type]
    return PoolHealth(LABELS[:n], active=check, outlier=None)


def passive_pool(n: int = 4, outlier: OutlierDetection = OUTLIER, history: int = 16) -> PoolHealth:
    return PoolHealth(LABELS[:n], active=None, outlier=outlier, history=history)


def fail(pool: PoolHealth, index: int, times: int, now: float) -> HealthChange | None:
    change = None
    for _ in range(times):
        change = pool.traffic_failure(index, "reset", now)
    return change


# -- probe_passed and probe_delay ------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "passed"),
    [(199, False), (200, True), (204, True), (399, True), (400, False), (503, False)],
)
def test_probe_status_range_is_inclusive(status: int, passed: bool) -> None:
    assert probe_passed(ActiveCheck(), status, b"") is passed


def test_probe_custom_range_of_one_status() -> None:
    check = ActiveCheck(expect_status=(204, 204))
    assert [probe_passed(check, s, b"") for s in (203, 204, 205)] == [False, True, False]


def test_probe_body_must_contain_the_bytes() -> None:
    check = ActiveCheck(body_contains=b"ok")
    assert probe_passed(check, 200, b'{"status": "ok"}')
    assert probe_passed(check, 200, b"ok")
    assert not probe_passed(check, 200, b"OK")
    assert not probe_passed(check, 200, b"")
    assert not probe_passed(check, 500, b"ok")  # the status still has to pass


def test_probe_delay_stays_within_jitter_and_is_deterministic() -> None:
    check = ActiveCheck(interval=5.0, jitter=0.2)
    draws = [probe_delay(check, random.Random(7)) for _ in range(3)]
    assert draws[0] == draws[1] == draws[2]
    rng = random.Random(1234)
    delays = [probe_delay(check, rng) for _ in range(1000)]
    again = random.Random(1234)
    assert delays == [probe_delay(check, again) for _ in range(1000)]
    assert all(4.0 <= d <= 6.0 for d in delays)
    # The draws spread over the whole band, not only part of it.
    assert min(delays) < 4.05
    assert max(delays) > 5.95
    assert 4.9 < sum(delays) / len(delays) < 5.1


def test_probe_delay_without_jitter_is_the_interval() -> None:
    check = ActiveCheck(interval=2.5, jitter=0.0)
    rng = random.Random(0)
    assert {probe_delay(check, rng) for _ in range(100)} == {2.5}


# -- active checks: rise and fall ------------------------------------------------------------


def test_servers_start_healthy() -> None:
    pool = active_pool(2)
    assert pool.available(0, 0.0)
    assert pool.available(1, 0.0)
    assert pool.healthy_count(0.0) == 2
    assert pool.next_deadline() is None


def test_fall_three_two_failures_keep_it_up_third_flips() -> None:
    pool = active_pool(fall=3, rise=2)
    assert pool.probe_result(0, False, "connect failed", 1.0) is None
    assert pool.probe_result(0, False, "timeout", 2.0) is None
    assert pool.available(0, 2.0)
    change = pool.probe_result(0, False, "connect failed", 3.0)
    assert change == HealthChange(
        at=3.0, server="127.0.0.1:9001", healthy=False, reason="3 failed probes: connect failed"
    )
    assert not pool.available(0, 3.0)
    assert pool.healthy_count(3.0) == 0


def test_rise_two_brings_it_back() -> None:
    pool = active_pool(fall=3, rise=2)
    for t in (1.0, 2.0, 3.0):
        pool.probe_result(0, False, "status 500", t)
    assert pool.probe_result(0, True, "", 4.0) is None
    assert not pool.available(0, 4.0)
    change = pool.probe_result(0, True, "", 5.0)
    assert change == HealthChange(
        at=5.0, server="127.0.0.1:9001", healthy=True, reason="2 probes passed"
    )
    assert pool.available(0, 5.0)
    # Back up, it takes a full `fall` again to go down.
    assert pool.probe_result(0, False, "x", 6.0) is None
    assert pool.probe_result(0, False, "x", 7.0) is None
    assert pool.probe_result(0, False, "x", 8.0) is not None


def test_a_pass_resets_the_failure_streak() -> None:
    pool = active_pool(fall=3)
    results = [False, False, True, False, False, True, False, False]
    assert [pool.probe_result(0, ok, "x", float(t)) for t, ok in enumerate(results)] == [
        None
    ] * len(results)
    assert pool.available(0, 10.0)


def test_a_failure_while_down_resets_the_passing_streak() -> None:
    pool = active_pool(fall=1, rise=3)
    assert pool.probe_result(0, False, "x", 0.0) is not None
    for t, ok in enumerate([True, True, False, True, True]):
        assert pool.probe_result(0, ok, "x", 1.0 + t) is None
    assert not pool.available(0, 6.0)
    change = pool.probe_result(0, True, "x", 7.0)
    assert change is not None
    assert change.healthy
    assert change.reason == "3 probes passed"


@pytest.mark.parametrize("start_down", [False, True])
def test_alternating_results_never_flip(start_down: bool) -> None:
    pool = active_pool(fall=2, rise=2)
    if start_down:
        pool.probe_result(0, False, "x", 0.0)
        pool.probe_result(0, False, "x", 0.5)
    up = pool.available(0, 1.0)
    assert up is not start_down
    for t in range(1, 200):
        ok = t % 2 == 0
        assert pool.probe_result(0, ok, "x", float(t)) is None
        assert pool.available(0, float(t)) is up


def test_fall_and_rise_of_one_flip_on_every_result_with_singular_reasons() -> None:
    pool = active_pool(fall=1, rise=1)
    down = pool.probe_result(0, False, "status 503", 1.0)
    up = pool.probe_result(0, True, "", 2.0)
    assert down is not None
    assert down.reason == "1 failed probe: status 503"
    assert up is not None
    assert up.reason == "1 probe passed"


def test_without_active_checks_probe_results_change_nothing() -> None:
    pool = passive_pool(1)
    for t in range(10):
        assert pool.probe_result(0, False, "x", float(t)) is None
    assert pool.available(0, 10.0)


def test_servers_are_independent() -> None:
    pool = active_pool(3, fall=2)
    pool.probe_result(1, False, "x", 1.0)
    pool.probe_result(1, False, "x", 2.0)
    assert [pool.available(i, 2.0) for i in range(3)] == [True, False, True]
    assert pool.healthy_count(2.0) == 2


# -- passive checks: ejection ----------------------------------------------------------------


def test_ejection_after_n_consecutive_failures() -> None:
    pool = passive_pool()
    assert pool.traffic_failure(0, "connect", 1.0) is None
    assert pool.traffic_failure(0, "timeout", 2.0) is None
    assert pool.available(0, 2.0)
    change = pool.traffic_failure(0, "status 503", 3.0)
    assert change == HealthChange(
        at=3.0,
        server="127.0.0.1:9001",
        healthy=False,
        reason="ejected for 30s after 3 consecutive failures (last: status 503)",
    )
    assert not pool.available(0, 3.0)
    assert not pool.available(0, 32.999)
    assert pool.available(0, 33.0)  # over at its end time, before expire() ran
    assert pool.healthy_count(10.0) == 3


def test_success_resets_the_count() -> None:
    pool = passive_pool()
    for t in range(20):
        assert fail(pool, 0, 2, float(t)) is None
        pool.traffic_success(0, float(t))
    assert pool.available(0, 20.0)
    assert pool.view()[0].consecutive_failures == 0
    assert fail(pool, 0, 3, 21.0) is not None


def test_failures_while_unavailable_do_not_count() -> None:
    pool = passive_pool()
    assert fail(pool, 0, 3, 0.0) is not None
    # In-flight requests failing during the ejection say nothing new.
    assert fail(pool, 0, 10, 5.0) is None
    assert pool.view()[0].consecutive_failures == 0
    # After it ends, the count starts from zero.
    assert fail(pool, 0, 2, 31.0) is None
    assert pool.view()[0].consecutive_failures == 2


def test_failures_while_active_down_do_not_count() -> None:
    pool = PoolHealth(LABELS[:2], active=ActiveCheck(fall=1, rise=1), outlier=OUTLIER)
    pool.probe_result(0, False, "x", 0.0)
    assert fail(pool, 0, 10, 1.0) is None
    assert pool.view()[0].consecutive_failures == 0
    assert pool.view()[0].ejected_until is None


def test_without_outlier_detection_nothing_is_ejected() -> None:
    pool = PoolHealth(LABELS[:1], active=None, outlier=None)
    assert fail(pool, 0, 100, 0.0) is None
    assert pool.available(0, 0.0)


def eject_and_wait(pool: PoolHealth, now: float) -> float:
    """Eject server 0 at ``now``; return when the ejection ends."""
    change = fail(pool, 0, 3, now)
    assert change is not None
    until = pool.view()[0].ejected_until
    assert until is not None
    return until


def test_ejection_durations_grow_and_are_capped() -> None:
    pool = passive_pool()
    now = 0.0
    durations = []
    for _ in range(13):
        end = eject_and_wait(pool, now)
        durations.append(end - now)
        now = end  # fail again the moment it comes back: no time to decay
    assert durations == [30.0 * n for n in range(1, 11)] + [300.0] * 3
    assert pool.view()[0].ejections == 13


def test_ejection_reason_names_the_duration() -> None:
    pool = passive_pool()
    end = eject_and_wait(pool, 0.0)
    change = fail(pool, 0, 3, end)
    assert change is not None
    assert change.reason == "ejected for 60s after 3 consecutive failures (last: reset)"


def test_ejection_count_decays_one_per_max_ejection_un_ejected() -> None:
    outlier = OutlierDetection(consecutive_failures=1, base_ejection=10.0, max_ejection=100.0)
    pool = passive_pool(outlier=outlier)
    now = 0.0
    for _ in range(3):  # ejections of 10, 20, 30 s
        now = eject_and_wait_one(pool, now)
    assert now == 60.0
    assert pool.view()[0].ejections == 3
    # Un-ejected from 60 on: 99 s forgives nothing, 100 s forgives one, 200 s two.
    change = pool.traffic_failure(0, "reset", 60.0 + 99.0)
    assert change is not None
    assert change.reason.startswith("ejected for 40s")
    now = 60.0 + 99.0 + 40.0
    pool.expire(now)
    change = pool.traffic_failure(0, "reset", now + 100.0)
    assert change is not None
    assert change.reason.startswith("ejected for 40s")  # 4 - 1 forgiven + 1
    now = now + 100.0 + 40.0
    pool.expire(now)
    change = pool.traffic_failure(0, "reset", now + 250.0)
    assert change is not None
    assert change.reason.startswith("ejected for 30s")  # 4 - 2 forgiven + 1


def eject_and_wait_one(pool: PoolHealth, now: float) -> float:
    change = pool.traffic_failure(0, "reset", now)
    assert change is not None
    until = pool.view()[0].ejected_until
    assert until is not None
    return until


def test_decay_never_goes_below_zero_and_is_seen_in_the_view() -> None:
    outlier = OutlierDetection(consecutive_failures=1, base_ejection=10.0, max_ejection=100.0)
    pool = passive_pool(outlier=outlier)
    end = eject_and_wait_one(pool, 0.0)
    end = eject_and_wait_one(pool, end)
    assert end == 30.0
    pool.expire(end)
    assert pool.view()[0].ejections == 2
    pool.expire(end + 150.0)
    assert pool.view()[0].ejections == 1
    pool.expire(end + 10_000.0)
    assert pool.view()[0].ejections == 0
    change = pool.traffic_failure(0, "reset", end + 10_000.0)
    assert change is not None
    assert change.reason.startswith("ejected for 10s")


def test_decay_only_counts_un_ejected_time() -> None:
    # max_ejection (the decay period) equals the longest ejection: a server that keeps being
    # ejected for the cap never decays while ejected.
    outlier = OutlierDetection(consecutive_failures=1, base_ejection=100.0, max_ejection=100.0)
    pool = passive_pool(outlier=outlier)
    now = 0.0
    for _ in range(5):
        now = eject_and_wait_one(pool, now)
    assert now == 500.0
    assert pool.view()[0].ejections == 5


def test_cap_pool_of_four_at_half_ejects_two_at_once() -> None:
    pool = passive_pool(4)
    assert fail(pool, 0, 3, 0.0) is not None
    assert fail(pool, 1, 3, 1.0) is not None
    assert fail(pool, 2, 3, 2.0) is None  # would take out 3 of 4
    assert pool.view()[2].consecutive_failures == 3  # kept: the next failure tries again
    assert pool.healthy_count(2.0) == 2
    assert pool.traffic_failure(2, "reset", 10.0) is None
    # Server 0's ejection ends at 30: the next failure of server 2 ejects it.
    change = pool.traffic_failure(2, "timeout", 30.0)
    assert change is not None
    assert change.reason == "ejected for 30s after 5 consecutive failures (last: timeout)"
    assert [pool.available(i, 30.0) for i in range(4)] == [True, False, False, True]


def test_a_sole_server_is_never_ejected() -> None:
    pool = passive_pool(1)
    assert fail(pool, 0, 100, 0.0) is None
    assert pool.available(0, 0.0)
    view = pool.view()[0]
    assert (view.ejected_until, view.ejections) == (None, 0)
    assert view.consecutive_failures == 100  # counted, as for a capped ejection
    assert pool.next_deadline() is None
    # The backend answers again: so does the proxy, at once.
    pool.traffic_success(0, 0.5)
    assert pool.view()[0].consecutive_failures == 0


def test_the_last_available_server_is_never_ejected_even_at_a_cap_of_all() -> None:
    everything = OutlierDetection(consecutive_failures=3, max_ejected_fraction=1.0)
    pool = passive_pool(2, outlier=everything)
    assert fail(pool, 0, 3, 0.0) is not None  # two servers: one may go
    assert fail(pool, 1, 50, 1.0) is None  # the other is all that is left
    assert [pool.available(i, 1.0) for i in range(2)] == [False, True]
    # Once server 0 is back, server 1's next failure ejects it.
    assert pool.traffic_failure(1, "reset", 30.0) is not None
    assert [pool.available(i, 30.0) for i in range(2)] == [True, False]


def test_the_last_server_up_on_its_probes_is_not_ejected() -> None:
    pool = PoolHealth(LABELS[:2], active=ActiveCheck(fall=1, rise=1), outlier=OUTLIER)
    pool.probe_result(0, False, "connect failed", 0.0)
    assert fail(pool, 1, 10, 1.0) is None
    assert pool.available(1, 1.0)
    assert pool.healthy_count(1.0) == 1


@pytest.mark.parametrize(
    ("fraction", "servers", "cap"),
    [(0.0, 4, 1), (0.1, 4, 1), (0.5, 3, 1), (0.5, 4, 2), (0.74, 4, 2), (0.75, 4, 3), (1.0, 4, 3)],
)
def test_cap_rounds_down_allows_one_and_keeps_one(fraction: float, servers: int, cap: int) -> None:
    outlier = OutlierDetection(consecutive_failures=1, max_ejected_fraction=fraction)
    pool = passive_pool(servers, outlier=outlier)
    ejected = [pool.traffic_failure(i, "reset", 0.0) is not None for i in range(servers)]
    assert sum(ejected) == cap
    assert ejected == [True] * cap + [False] * (servers - cap)


def test_cap_fraction_rounding_is_not_fooled_by_floats() -> None:
    labels = [f"10.0.0.{i}:80" for i in range(100)]
    outlier = OutlierDetection(consecutive_failures=1, max_ejected_fraction=0.29)
    pool = PoolHealth(labels, active=None, outlier=outlier)
    assert sum(pool.traffic_failure(i, "reset", 0.0) is not None for i in range(100)) == 29


# -- expire, next_deadline, history, view ----------------------------------------------------


def test_expire_and_next_deadline() -> None:
    pool = passive_pool(4)
    assert pool.next_deadline() is None
    fail(pool, 1, 3, 5.0)  # until 35
    fail(pool, 0, 3, 2.0)  # until 32 (times need not be in order across servers)
    assert pool.next_deadline() == 32.0
    assert pool.expire(31.9) == []
    assert pool.next_deadline() == 32.0
    ended = pool.expire(40.0)
    assert ended == [
        HealthChange(at=32.0, server=LABELS[0], healthy=True, reason="ejection ended"),
        HealthChange(at=35.0, server=LABELS[1], healthy=True, reason="ejection ended"),
    ]
    assert pool.next_deadline() is None
    assert pool.expire(50.0) == []


def test_expire_one_at_a_time() -> None:
    pool = passive_pool(4)
    fail(pool, 0, 3, 0.0)
    fail(pool, 1, 3, 10.0)
    assert [c.server for c in pool.expire(30.0)] == [LABELS[0]]
    assert pool.next_deadline() == 40.0
    assert [c.server for c in pool.expire(40.0)] == [LABELS[1]]


def test_an_ejection_ended_by_another_call_is_still_reported_once() -> None:
    pool = passive_pool(4)
    fail(pool, 0, 3, 0.0)  # until 30
    pool.traffic_success(0, 45.0)  # notices the end, before expire() ran
    assert pool.next_deadline() == 30.0  # due: the proxy's timer fires at once
    assert pool.expire(45.0) == [
        HealthChange(at=30.0, server=LABELS[0], healthy=True, reason="ejection ended")
    ]
    assert pool.expire(46.0) == []
    assert pool.next_deadline() is None


def test_re_ejection_before_expire_keeps_both_records_in_order() -> None:
    pool = passive_pool(2)
    fail(pool, 0, 3, 0.0)  # 0..30
    fail(pool, 0, 3, 31.0)  # 31..91, before expire() saw the first one end
    reasons = [(c.at, c.reason.split(" after")[0]) for c in pool.view()[0].history]
    assert reasons == [
        (0.0, "ejected for 30s"),
        (30.0, "ejection ended"),
        (31.0, "ejected for 60s"),
    ]
    assert [c.at for c in pool.expire(31.0)] == [30.0]
    assert pool.next_deadline() == 91.0


def test_ejection_ending_while_active_down_is_not_healthy() -> None:
    pool = PoolHealth(LABELS[:2], active=ActiveCheck(fall=1, rise=1), outlier=OUTLIER)
    fail(pool, 0, 3, 0.0)
    flip = pool.probe_result(0, False, "connect failed", 5.0)
    assert flip is not None
    assert not flip.healthy
    (ended,) = pool.expire(30.0)
    assert ended == HealthChange(at=30.0, server=LABELS[0], healthy=False, reason="ejection ended")
    assert not pool.available(0, 30.0)
    back = pool.probe_result(0, True, "", 31.0)
    assert back is not None
    assert back.healthy


def test_probe_flip_during_ejection_leaves_it_unavailable() -> None:
    pool = PoolHealth(LABELS[:2], active=ActiveCheck(fall=1, rise=1), outlier=OUTLIER)
    pool.probe_result(0, False, "x", 0.0)
    pool.probe_result(0, True, "", 1.0)
    fail(pool, 0, 3, 2.0)
    up = pool.probe_result(0, True, "", 3.0)  # already up: no flip
    assert up is None
    assert not pool.available(0, 3.0)


def test_history_is_bounded() -> None:
    pool = PoolHealth(LABELS[:1], active=ActiveCheck(fall=1, rise=1), outlier=None, history=4)
    for t in range(10):
        pool.probe_result(0, t % 2 == 1, "x", float(t))
    history = pool.view()[0].history
    assert [c.at for c in history] == [6.0, 7.0, 8.0, 9.0]
    assert [c.healthy for c in history] == [False, True, False, True]


def test_view_contents() -> None:
    pool = PoolHealth(LABELS[:3], active=ActiveCheck(fall=1, rise=2), outlier=OUTLIER)
    fail(pool, 0, 3, 10.0)
    pool.probe_result(1, False, "status 500", 11.0)
    pool.traffic_failure(2, "connect", 12.0)
    views = pool.view()
    assert views == (
        ServerHealthView(
            server=LABELS[0],
            healthy=False,
            active_up=True,
            ejected_until=40.0,
            ejections=1,
            consecutive_failures=0,
            history=(
                HealthChange(
                    at=10.0,
                    server=LABELS[0],
                    healthy=False,
                    reason="ejected for 30s after 3 consecutive failures (last: reset)",
                ),
            ),
        ),
        ServerHealthView(
            server=LABELS[1],
            healthy=False,
            active_up=False,
            ejected_until=None,
            ejections=0,
            consecutive_failures=0,
            history=(
                HealthChange(
                    at=11.0, server=LABELS[1], healthy=False, reason="1 failed probe: status 500"
                ),
            ),
        ),
        ServerHealthView(
            server=LABELS[2],
            healthy=True,
            active_up=True,
            ejected_until=None,
            ejections=0,
            consecutive_failures=1,
            history=(),
        ),
    )


def test_view_is_as_of_the_latest_now_seen() -> None:
    pool = passive_pool(2)
    fail(pool, 0, 3, 0.0)
    pool.traffic_success(1, 31.0)  # time moved past the ejection, expire() not run yet
    (view, _) = pool.view()
    assert view.healthy
    assert view.ejected_until is None
    assert view.ejections == 1


@pytest.mark.parametrize(
    ("active", "outlier"),
    [
        (ActiveCheck(rise=0), None),
        (ActiveCheck(fall=0), None),
        (None, OutlierDetection(consecutive_failures=0)),
        (None, OutlierDetection(base_ejection=0.0)),
        (None, OutlierDetection(max_ejection=0.0)),
        (None, OutlierDetection(max_ejected_fraction=1.5)),
    ],
)
def test_invalid_settings_are_refused(
    active: ActiveCheck | None, outlier: OutlierDetection | None
) -> None:
    with pytest.raises(ValueError, match="must"):
        PoolHealth(LABELS[:1], active=active, outlier=outlier)


def test_rise_during_an_ejection_ends_it() -> None:
    pool = PoolHealth(LABELS[:2], active=ActiveCheck(fall=2, rise=2), outlier=OUTLIER)
    fail(pool, 0, 3, 0.0)  # ejected until 30
    assert pool.probe_result(0, False, "connect failed", 1.0) is None
    down = pool.probe_result(0, False, "connect failed", 2.0)
    assert down is not None
    assert not down.healthy
    assert pool.probe_result(0, True, "", 3.0) is None
    back = pool.probe_result(0, True, "", 4.0)
    assert back == HealthChange(at=4.0, server=LABELS[0], healthy=True, reason="2 probes passed")
    assert pool.available(0, 4.0)
    assert pool.view()[0].ejected_until is None
    assert pool.next_deadline() is None
    assert pool.expire(30.0) == []  # no late "ejection ended"
    assert pool.view()[0].ejections == 1  # the next ejection still lasts longer
