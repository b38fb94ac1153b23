"""The load-balancing algorithms of ``sansproxy.balancing``.

Where an algorithm defines its answer (rotations, smooth weighted round robin, cost
comparisons, PeakEwma arithmetic) the tests spell it out exactly; where it is random the
seed is fixed and the tolerance is measured against the expected spread.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Sequence
from random import Random

import pytest

from sansproxy.balancing import ALGORITHMS, Balancer, MemberLoad, PeakEwma, make_balancer


def servers(*weights: int) -> list[MemberLoad]:
    return [MemberLoad(b"10.0.0.%d:8080" % (i + 1), w) for i, w in enumerate(weights)]


def picks(
    balancer: Balancer,
    eligible: Sequence[int],
    count: int,
    *,
    rng: Random | None = None,
    now: float = 0.0,
) -> list[int | None]:
    rng = Random(0) if rng is None else rng
    return [balancer.pick(eligible, rng=rng, now=now) for _ in range(count)]


# --------------------------------------------------------------------------------------------
# Common contract


def test_unknown_algorithm_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="'least_conn'") as info:
        make_balancer("least_conn", servers(1, 1))
    for name in ALGORITHMS:
        assert name in str(info.value)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("key", [None, b"user-42"])
def test_no_eligible_member_gives_none(algorithm: str, key: bytes | None) -> None:
    balancer = make_balancer(algorithm, servers(1, 2, 3))
    assert balancer.pick([], rng=Random(1), now=0.0, key=key) is None
    assert balancer.pick((), rng=Random(1), now=0.0, key=key) is None


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("key", [None, b"user-42"])
def test_the_only_eligible_member_is_chosen(algorithm: str, key: bytes | None) -> None:
    members = servers(1, 2, 3, 1)
    members[2].outstanding = 50
    members[2].latency.observe(9.0, now=0.0)
    balancer = make_balancer(algorithm, members)
    rng = Random(2)
    for only in (2, 0, 3):
        assert [balancer.pick([only], rng=rng, now=1.0, key=key) for _ in range(5)] == [only] * 5


def test_member_load_starts_idle_at_its_configured_weight() -> None:
    member = MemberLoad(b"10.0.0.1:8080", 3)
    assert (member.key, member.weight, member.effective_weight, member.outstanding) == (
        b"10.0.0.1:8080",
        3,
        3.0,
        0,
    )
    assert member.latency.estimate(0.0) == 0.0
    with pytest.raises(ValueError, match="weight"):
        MemberLoad(b"x", 0)


# --------------------------------------------------------------------------------------------
# round_robin


def test_round_robin_rotates_in_list_order_ignoring_weights() -> None:
    balancer = make_balancer("round_robin", servers(5, 1, 1))
    assert picks(balancer, [0, 1, 2], 7) == [0, 1, 2, 0, 1, 2, 0]


def test_round_robin_skips_members_that_are_not_eligible() -> None:
    balancer = make_balancer("round_robin", servers(1, 1, 1, 1))
    assert picks(balancer, [0, 2, 3], 5) == [0, 2, 3, 0, 2]
    # The rotation carries on from where it was: after 2 comes 3, then 0 wraps round.
    assert picks(balancer, [1, 3], 3) == [3, 1, 3]
    assert picks(balancer, [0, 1, 2, 3], 4) == [0, 1, 2, 3]
    assert picks(balancer, [1], 2) == [1, 1]
    assert picks(balancer, [0, 1, 2, 3], 2) == [2, 3]


# --------------------------------------------------------------------------------------------
# weighted_round_robin (nginx's smooth weighted round robin)


def test_smooth_weighted_spreads_the_heavy_server() -> None:
    balancer = make_balancer("weighted_round_robin", servers(5, 1, 1))
    assert picks(balancer, [0, 1, 2], 14) == [0, 0, 1, 0, 2, 0, 0] * 2


def test_smooth_weighted_with_equal_weights_is_a_rotation() -> None:
    balancer = make_balancer("weighted_round_robin", servers(2, 2, 2))
    assert picks(balancer, [0, 1, 2], 7) == [0, 1, 2, 0, 1, 2, 0]


def test_smooth_weighted_follows_lowered_effective_weights() -> None:
    members = servers(4, 4, 4)
    members[0].effective_weight = 1.0  # slow start
    members[1].effective_weight = 2.0
    balancer = make_balancer("weighted_round_robin", members)
    assert picks(balancer, [0, 1, 2], 7) == [2, 1, 2, 0, 2, 1, 2]
    assert Counter(picks(balancer, [0, 1, 2], 700)) == {0: 100, 1: 200, 2: 400}


def test_smooth_weighted_with_fractional_weights_stays_proportional() -> None:
    members = servers(1, 1, 1)
    for member, weight in zip(members, (0.3, 1.1, 2.6), strict=True):
        member.effective_weight = weight
    balancer = make_balancer("weighted_round_robin", members)
    count = 4000
    chosen = Counter(picks(balancer, [0, 1, 2], count))
    for index, member in enumerate(members):
        # Smooth WRR never strays more than a pick or so from the exact share.
        assert abs(chosen[index] - count * member.effective_weight / 4.0) <= 1.5


def test_smooth_weighted_skips_members_that_are_not_eligible() -> None:
    balancer = make_balancer("weighted_round_robin", servers(5, 1, 2))
    assert picks(balancer, [1, 2], 6) == [2, 1, 2, 2, 1, 2]
    chosen = Counter(picks(balancer, [0, 2], 70))
    assert chosen == {0: 50, 2: 20}


# --------------------------------------------------------------------------------------------
# least_requests


def test_least_requests_takes_the_fewest_in_flight() -> None:
    members = servers(1, 1, 1)
    for member, outstanding in zip(members, (3, 1, 2), strict=True):
        member.outstanding = outstanding
    balancer = make_balancer("least_requests", members)
    assert picks(balancer, [0, 1, 2], 5) == [1] * 5
    assert picks(balancer, [0, 2], 5) == [2] * 5


def test_least_requests_divides_by_effective_weight() -> None:
    members = servers(1, 3)
    members[0].outstanding = 2  # 2 per unit of weight
    members[1].outstanding = 3  # 1 per unit of weight
    balancer = make_balancer("least_requests", members)
    assert picks(balancer, [0, 1], 3) == [1] * 3
    members[1].effective_weight = 1.0  # slow start: 3 per unit of weight
    assert picks(balancer, [0, 1], 3) == [0] * 3


def test_least_requests_breaks_ties_at_random_among_the_tied_only() -> None:
    members = servers(1, 1, 1, 2)
    members[1].outstanding = 1
    members[3].outstanding = 2  # 1 per unit of weight, like member 1
    balancer = make_balancer("least_requests", members)
    chosen = Counter(picks(balancer, [0, 1, 2, 3], 3000, rng=Random(7)))
    assert set(chosen) == {0, 2}
    assert abs(chosen[0] - 1500) <= 100
    members[0].outstanding = members[2].outstanding = 1
    chosen = Counter(picks(balancer, [0, 1, 2, 3], 3000, rng=Random(7)))
    assert set(chosen) == {0, 1, 2, 3}
    assert all(abs(n - 750) <= 75 for n in chosen.values())


def test_least_requests_spreads_a_burst_over_idle_servers() -> None:
    members = servers(1, 1, 1, 1)
    balancer = make_balancer("least_requests", members)
    rng = Random(3)
    for _ in range(40):
        chosen = balancer.pick([0, 1, 2, 3], rng=rng, now=0.0)
        assert chosen is not None
        members[chosen].outstanding += 1
    assert [m.outstanding for m in members] == [10, 10, 10, 10]


# --------------------------------------------------------------------------------------------
# two_choices and peak_ewma


@pytest.mark.parametrize("algorithm", ["two_choices", "peak_ewma"])
def test_a_heavily_loaded_member_is_never_chosen(algorithm: str) -> None:
    members = servers(1, 1, 1, 1, 1)
    for member in members:
        member.latency.observe(0.05, now=0.0)
    members[2].outstanding = 100
    balancer = make_balancer(algorithm, members)
    chosen = Counter(picks(balancer, range(5), 10_000, rng=Random(11), now=1.0))
    assert chosen[2] == 0
    assert all(abs(chosen[i] - 2500) <= 125 for i in (0, 1, 3, 4))


@pytest.mark.parametrize("algorithm", ["two_choices", "peak_ewma"])
def test_equal_members_are_chosen_uniformly(algorithm: str) -> None:
    members = servers(1, 1, 1, 1, 1)
    for member in members:
        member.latency.observe(0.05, now=0.0)
    balancer = make_balancer(algorithm, members)
    chosen = Counter(picks(balancer, range(5), 10_000, rng=Random(12), now=1.0))
    assert set(chosen) == {0, 1, 2, 3, 4}
    assert all(abs(n - 2000) <= 100 for n in chosen.values()), chosen


def test_two_choices_compares_load_per_unit_of_weight() -> None:
    members = servers(1, 4)
    members[0].outstanding = 2
    members[1].outstanding = 4
    balancer = make_balancer("two_choices", members)
    assert picks(balancer, [0, 1], 20, rng=Random(4)) == [1] * 20
    members[1].effective_weight = 1.0
    assert picks(balancer, [0, 1], 20, rng=Random(4)) == [0] * 20


def test_two_choices_tie_goes_to_the_first_drawn_so_both_get_traffic() -> None:
    members = servers(1, 2)
    members[0].outstanding = 1
    members[1].outstanding = 2  # 1 per unit of weight too
    balancer = make_balancer("two_choices", members)
    chosen = Counter(picks(balancer, [0, 1], 2000, rng=Random(5)))
    assert abs(chosen[0] - 1000) <= 100


@pytest.mark.parametrize("algorithm", ["two_choices", "peak_ewma"])
def test_two_random_choices_keep_the_first_drawn_on_a_tie(algorithm: str) -> None:
    # The first member drawn is eligible[rng.randrange(len(eligible))].
    members = servers(1, 2, 1)
    members[0].outstanding = 1
    members[1].outstanding = 2
    members[2].outstanding = 1
    balancer = make_balancer(algorithm, members)
    for seed in range(40):
        first = [0, 1, 2][Random(seed).randrange(3)]
        assert balancer.pick([0, 1, 2], rng=Random(seed), now=0.0) == first


def test_peak_ewma_cost_is_latency_times_queue_over_weight() -> None:
    members = servers(1, 1)
    members[0].latency.observe(0.1, now=0.0)
    members[0].outstanding = 1  # 0.1 * 2 = 0.2
    members[1].latency.observe(0.3, now=0.0)  # 0.3 * 1 = 0.3
    balancer = make_balancer("peak_ewma", members)
    assert picks(balancer, [0, 1], 20, rng=Random(6), now=1.0) == [0] * 20
    members[1].effective_weight = 2.0  # 0.3 * 1 / 2 = 0.15
    assert picks(balancer, [0, 1], 20, rng=Random(6), now=1.0) == [1] * 20


def test_peak_ewma_prefers_a_member_not_yet_measured() -> None:
    members = servers(1, 1, 1, 1)
    for member in members[:3]:
        member.latency.observe(0.001, now=0.0)
    balancer = make_balancer("peak_ewma", members)
    assert picks(balancer, [0, 3], 20, rng=Random(8), now=1.0) == [3] * 20
    # Member 3 wins whenever it is one of the two drawn: 3 of the 6 pairs.
    chosen = Counter(picks(balancer, range(4), 6000, rng=Random(8), now=1.0))
    assert abs(chosen[3] - 3000) <= 150


def test_peak_ewma_distrusts_an_unmeasured_member_with_requests_in_flight() -> None:
    members = servers(1, 1)
    members[0].latency.observe(5.0, now=0.0)
    members[0].outstanding = 10
    members[1].outstanding = 1  # its first request has not come back yet
    balancer = make_balancer("peak_ewma", members)
    assert picks(balancer, [0, 1], 20, rng=Random(9), now=1.0) == [0] * 20


def test_peak_ewma_follows_a_latency_spike() -> None:
    members = servers(1, 1)
    members[0].latency.observe(0.010, now=0.0)
    members[1].latency.observe(0.020, now=0.0)
    balancer = make_balancer("peak_ewma", members)
    assert picks(balancer, [0, 1], 10, rng=Random(10), now=1.0) == [0] * 10
    members[0].latency.observe(0.5, now=1.0)  # one slow response
    assert picks(balancer, [0, 1], 10, rng=Random(10), now=1.0) == [1] * 10


# --------------------------------------------------------------------------------------------
# PeakEwma


def test_peak_ewma_estimate_jumps_to_peaks_and_decays_towards_samples() -> None:
    ewma = PeakEwma(decay=10.0)
    assert ewma.estimate(0.0) == 0.0
    ewma.observe(0.1, now=0.0)
    assert ewma.estimate(0.0) == 0.1
    ewma.observe(0.5, now=1.0)  # above the estimate: taken at once
    assert ewma.estimate(1.0) == 0.5
    ewma.observe(0.1, now=6.0)
    w = math.exp(-5.0 / 10.0)
    expected = 0.5 * w + 0.1 * (1 - w)
    assert ewma.estimate(6.0) == pytest.approx(expected, rel=1e-15)
    assert ewma.estimate(100.0) == ewma.estimate(6.0)  # no decay without samples
    ewma.observe(0.2, now=26.0)
    w = math.exp(-20.0 / 10.0)
    expected = expected * w + 0.2 * (1 - w)
    assert ewma.estimate(26.0) == pytest.approx(expected, rel=1e-15)


def test_peak_ewma_sample_with_no_elapsed_time_carries_no_weight() -> None:
    ewma = PeakEwma(decay=2.0)
    ewma.observe(1.0, now=5.0)
    ewma.observe(0.1, now=5.0)
    assert ewma.estimate(5.0) == 1.0
    ewma.observe(0.1, now=4.0)  # a clock that ran backwards counts as no time
    assert ewma.estimate(5.0) == 1.0
    ewma.observe(0.1, now=6.0)
    w = math.exp(-2.0 / 2.0)  # measured from the latest sample, at 4.0
    assert ewma.estimate(6.0) == pytest.approx(1.0 * w + 0.1 * (1 - w), rel=1e-15)


def test_peak_ewma_first_sample_replaces_the_initial_value() -> None:
    ewma = PeakEwma(decay=1.0, initial=0.3)
    assert ewma.estimate(0.0) == 0.3
    ewma.observe(0.05, now=0.0)
    assert ewma.estimate(0.0) == 0.05
    with pytest.raises(ValueError, match="decay"):
        PeakEwma(decay=0.0)


# --------------------------------------------------------------------------------------------
# random


def test_random_follows_effective_weights() -> None:
    members = servers(1, 2, 3, 4)
    members[3].effective_weight = 2.0
    balancer = make_balancer("random", members)
    count = 40_000
    chosen = Counter(picks(balancer, range(4), count, rng=Random(13)))
    for index, weight in enumerate((1, 2, 3, 2)):
        expected = count * weight / 8
        assert abs(chosen[index] - expected) <= 0.05 * expected, chosen
    chosen = Counter(picks(balancer, [0, 2], count, rng=Random(14)))
    assert set(chosen) == {0, 2}
    assert abs(chosen[0] - count / 4) <= 0.05 * count / 4


# --------------------------------------------------------------------------------------------
# ring_hash

KEYS = [b"client-%d" % i for i in range(100_000)]


def owners(balancer: Balancer, members: list[MemberLoad], eligible: Sequence[int]) -> list[bytes]:
    """The server key each of ``KEYS`` lands on."""
    rng = Random(0)
    result = []
    for key in KEYS:
        chosen = balancer.pick(eligible, rng=rng, now=0.0, key=key)
        assert chosen is not None
        result.append(members[chosen].key)
    return result


def ring(members: list[MemberLoad]) -> list[bytes]:
    return owners(make_balancer("ring_hash", members), members, range(len(members)))


def test_ring_hash_is_the_same_in_every_process() -> None:
    # Pinned: worker processes must agree on where a key goes, so any change of the hash (or a
    # slip to the salted built-in hash()) must show here.
    members = servers(1, 1, 1, 1, 1)
    balancer = make_balancer("ring_hash", members)
    chosen = [
        balancer.pick(range(5), rng=Random(0), now=0.0, key=b"session-%d" % i) for i in range(12)
    ]
    assert chosen == [0, 3, 4, 2, 2, 1, 3, 3, 4, 3, 3, 0]


def _position(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def test_ring_hash_matches_a_plain_reference_ring() -> None:
    members = servers(1, 2, 1, 1)
    points = sorted(
        (_position(b"%b#%d" % (m.key, v)), i)
        for i, m in enumerate(members)
        for v in range(8 * m.weight)
    )
    balancer = make_balancer("ring_hash", members, virtual_nodes=8)
    for key in KEYS[:500]:
        target = _position(key)
        expected = next((i for p, i in points if p >= target), points[0][1])
        assert balancer.pick(range(4), rng=Random(0), now=0.0, key=key) == expected


@pytest.mark.parametrize("n", [5, 10])
def test_ring_hash_spreads_keys_evenly(n: int) -> None:
    counts = Counter(ring(servers(*[1] * n)))
    fair = len(KEYS) / n
    print(f"ring_hash n={n}: shares / fair = {[round(c / fair, 3) for c in counts.values()]}")
    assert len(counts) == n
    assert all(abs(c - fair) <= 0.15 * fair for c in counts.values()), counts


def test_ring_hash_weight_two_gets_twice_the_keys() -> None:
    members = servers(1, 1, 2, 1)
    counts = Counter(ring(members))
    others = (counts[members[0].key] + counts[members[1].key] + counts[members[3].key]) / 3
    ratio = counts[members[2].key] / others
    print(f"ring_hash weight 2 / weight 1 = {ratio:.3f}")
    assert 1.7 <= ratio <= 2.3


@pytest.mark.parametrize("n", [5, 10])
def test_removing_a_server_moves_only_its_keys(n: int) -> None:
    members = servers(*[1] * n)
    before = ring(members)
    removed = members[n // 2]
    after = ring([m for m in members if m is not removed])
    moved = sum(1 for b, a in zip(before, after, strict=True) if b != a)
    print(f"ring_hash n={n}: removing one moves {moved / len(KEYS):.4f} (its share 1/n)")
    for b, a in zip(before, after, strict=True):
        assert b in (a, removed.key)
    assert moved == before.count(removed.key)


@pytest.mark.parametrize("n", [5, 10])
def test_adding_a_server_moves_about_one_in_n_plus_one(n: int) -> None:
    members = servers(*[1] * (n + 1))
    before = ring(members[:n])
    after = ring(members)
    added = members[n].key
    moved = sum(1 for b, a in zip(before, after, strict=True) if b != a)
    fraction = moved / len(KEYS)
    print(f"ring_hash n={n}: adding one moves {fraction:.4f} (1/(n+1) = {1 / (n + 1):.4f})")
    assert all(a in (b, added) for b, a in zip(before, after, strict=True))
    assert 0.7 / (n + 1) <= fraction <= 1.3 / (n + 1)


def test_skipping_an_ineligible_server_is_the_same_as_removing_it() -> None:
    members = servers(1, 1, 1, 1, 1, 1)
    balancer = make_balancer("ring_hash", members)
    before = owners(balancer, members, range(6))
    down = [0, 1, 2, 4, 5]
    skipped = owners(balancer, members, down)
    assert skipped == ring([members[i] for i in down])
    assert all(b in (s, members[3].key) for b, s in zip(before, skipped, strict=True))
    assert skipped.count(members[3].key) == 0
    # Back up: every key returns to where it was.
    assert owners(balancer, members, range(6)) == before


def test_ring_hash_walks_past_several_ineligible_servers() -> None:
    members = servers(1, 1, 1, 1)
    balancer = make_balancer("ring_hash", members)
    rng = Random(0)
    for key in KEYS[:2000]:
        assert balancer.pick([2], rng=rng, now=0.0, key=key) == 2
        assert balancer.pick([0, 3], rng=rng, now=0.0, key=key) in (0, 3)


def test_ring_hash_without_a_key_picks_at_random() -> None:
    balancer = make_balancer("ring_hash", servers(1, 1, 1, 1))
    chosen = Counter(picks(balancer, [0, 1, 3], 3000, rng=Random(15)))
    assert set(chosen) == {0, 1, 3}
    assert all(abs(n - 1000) <= 100 for n in chosen.values())


def test_ring_hash_rejects_an_empty_ring() -> None:
    with pytest.raises(ValueError, match="virtual_nodes"):
        make_balancer("ring_hash", servers(1), virtual_nodes=0)


# --------------------------------------------------------------------------------------------
# Determinism


def simulate(algorithm: str, seed: int) -> list[int | None]:
    """A run with changing eligibility, loads and latencies, driven by ``seed`` alone."""
    members = servers(1, 2, 1, 3, 1, 1)
    balancer = make_balancer(algorithm, members)
    rng = Random(seed)
    world = Random(1000 + seed)
    chosen_all: list[int | None] = []
    for step in range(600):
        now = step * 0.01
        eligible = [i for i in range(6) if world.random() < 0.8]
        key = None if world.random() < 0.2 else b"k%d" % world.randrange(50)
        chosen = balancer.pick(eligible, rng=rng, now=now, key=key)
        chosen_all.append(chosen)
        if chosen is not None:
            members[chosen].outstanding += 1
        for member in members:
            if member.outstanding and world.random() < 0.3:
                member.outstanding -= 1
                member.latency.observe(world.uniform(0.001, 0.2), now)
        members[world.randrange(6)].effective_weight = world.uniform(0.2, 3.0)
    return chosen_all


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_same_seed_gives_the_same_picks(algorithm: str) -> None:
    first = simulate(algorithm, 21)
    assert simulate(algorithm, 21) == first
    assert len(set(first) - {None}) > 1


@pytest.mark.parametrize("algorithm", ["two_choices", "peak_ewma", "random", "least_requests"])
def test_the_seed_matters_where_the_algorithm_draws(algorithm: str) -> None:
    members = servers(1, 1, 1, 1)
    runs = [
        picks(make_balancer(algorithm, members), range(4), 50, rng=Random(seed)) for seed in (1, 2)
    ]
    assert runs[0] != runs[1]
