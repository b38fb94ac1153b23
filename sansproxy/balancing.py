"""Load-balancing algorithms: which server of a pool takes the next request.

Each algorithm is a small class built over the pool's :class:`MemberLoad`
list. The pool owns those records and keeps them current (requests in flight,
latency samples, the effective weight it lowers during slow start); a
balancer only reads them, plus whatever rotation state its algorithm needs.

Theory of operation:

* ``pick`` gets the *eligible* members as ascending indexes into the
  members list: the pool leaves out servers that are down, ejected or already
  tried by this request. A balancer never sees health itself, so failover is
  the same call with a shorter list. An empty list gives ``None``.
* Every random choice draws from the ``random.Random`` the caller passes in,
  so a seed fixes the whole sequence of picks and a run can be replayed.
* Loads are compared as ``outstanding / effective_weight``: a server with
  twice the weight is expected to carry twice the requests.
* The members of a balancer never change. A reload builds a new balancer;
  consistent hashing is what keeps most keys on their server across it.
* ``pick`` is on the request path, so it allocates nothing in proportion to
  the pool and the ring lookup is a bisection.
"""

from __future__ import annotations

import hashlib
import math
from bisect import bisect_left
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from random import Random

__all__ = ["ALGORITHMS", "Balancer", "MemberLoad", "PeakEwma", "make_balancer"]

ALGORITHMS: tuple[str, ...] = (
    "round_robin",
    "weighted_round_robin",
    "least_requests",
    "two_choices",
    "peak_ewma",
    "ring_hash",
    "random",
)
"""Names that :func:`make_balancer` accepts, as written in the configuration."""


class PeakEwma:
    """Latency estimate that rises to a peak at once and decays towards newer samples.

    This is the "peak EWMA" of Finagle and Linkerd: a sample above the estimate
    replaces it, so one slow response makes a server look slow right away; a
    sample below it is blended in with weight ``1 - exp(-elapsed / decay)``,
    so the server earns its good name back over about ``decay`` seconds
    whatever the request rate.
    """

    __slots__ = ("_decay", "_stamp", "_value")

    def __init__(self, *, decay: float = 10.0, initial: float = 0.0) -> None:
        if not decay > 0:
            raise ValueError(f"decay must be positive, got {decay!r}")
        self._decay = decay
        self._value = initial
        self._stamp: float | None = None

    def observe(self, rtt: float, now: float) -> None:
        """Fold in one round-trip time ``rtt`` measured at ``now`` (seconds).

        The first sample has no earlier one to decay from and replaces the
        initial value outright; a clock that seems to run backwards counts
        as no time elapsed.
        """
        stamp = self._stamp
        if stamp is None or rtt > self._value:
            self._value = rtt
        else:
            w = math.exp(-max(0.0, now - stamp) / self._decay)
            self._value = self._value * w + rtt * (1.0 - w)
        self._stamp = now

    def estimate(self, now: float) -> float:
        """The current estimate: the stored value, which only samples move.

        ``now`` is accepted so that a later version may decay between samples
        without changing its callers.
        """
        del now
        return self._value


class MemberLoad:
    """Live numbers about one server of a pool, read by the balancers.

    Attributes:
        key: Stable identity of the server, such as ``b"10.0.0.1:8080"``;
            consistent hashing places the server on its ring by this key.
        weight: Configured weight, an integer of at least 1.
        effective_weight: The weight balancers use; starts at ``weight`` and is
            lowered by the pool during slow start. Always above zero.
        outstanding: Requests in flight to the server.
        latency: The server's response-time estimate.
    """

    __slots__ = ("effective_weight", "key", "latency", "outstanding", "weight")

    def __init__(self, key: bytes, weight: int = 1) -> None:
        if weight < 1:
            raise ValueError(f"weight must be at least 1, got {weight!r}")
        self.key = key
        self.weight = weight
        self.effective_weight = float(weight)
        self.outstanding = 0
        self.latency = PeakEwma()

    def __repr__(self) -> str:
        return (
            f"MemberLoad({self.key!r}, weight={self.weight}, "
            f"effective_weight={self.effective_weight}, outstanding={self.outstanding})"
        )


class Balancer(Protocol):
    """Chooses a server for each request; what every algorithm provides."""

    def pick(
        self, eligible: Sequence[int], *, rng: Random, now: float, key: bytes | None = None
    ) -> int | None:
        """The member index of the chosen server, or None when ``eligible`` is empty.

        Args:
            eligible: Indexes into the members list of the servers that may be
                chosen, ascending; often all of them, fewer when some are down
                or were already tried by this request.
            rng: Source of every random choice.
            now: Monotonic seconds, for algorithms that read latency estimates.
            key: The request's hash key (``ring_hash`` only; others ignore it).
        """
        ...


def _load(member: MemberLoad) -> float:
    return member.outstanding / member.effective_weight


class _RoundRobin:
    """Members in list order, skipping those not eligible; weights play no part."""

    __slots__ = ("_count", "_next")

    def __init__(self, members: Sequence[MemberLoad]) -> None:
        self._count = len(members)
        self._next = 0

    def pick(
        self, eligible: Sequence[int], *, rng: Random, now: float, key: bytes | None = None
    ) -> int | None:
        if not eligible:
            return None
        at = bisect_left(eligible, self._next)
        chosen = eligible[at] if at < len(eligible) else eligible[0]
        self._next = (chosen + 1) % self._count
        return chosen


class _SmoothWeighted:
    """nginx's smooth weighted round robin over the effective weights.

    Each pick adds every eligible member's weight to its running score, takes
    the highest score (the earliest member on a tie) and takes the eligible
    total off the winner. Weights 5, 1, 1 give a a b a c a a: the heavy
    server's turns are spread out, not bunched. A member that is not eligible
    keeps its score until it is again.
    """

    __slots__ = ("_current", "_members")

    def __init__(self, members: Sequence[MemberLoad]) -> None:
        self._members = members
        self._current = [0.0] * len(members)

    def pick(
        self, eligible: Sequence[int], *, rng: Random, now: float, key: bytes | None = None
    ) -> int | None:
        members = self._members
        current = self._current
        total = 0.0
        best = -1
        best_score = -math.inf
        for i in eligible:
            weight = members[i].effective_weight
            total += weight
            score = current[i] + weight
            current[i] = score
            if score > best_score:
                best, best_score = i, score
        if best < 0:
            return None
        current[best] -= total
        return best


class _LeastRequests:
    """The member with the fewest requests in flight per unit of weight.

    Ties go to a random one of the tied members, so an idle pool spreads its
    first requests instead of sending them all to the first server.
    """

    __slots__ = ("_members",)

    def __init__(self, members: Sequence[MemberLoad]) -> None:
        self._members = members

    def pick(
        self, eligible: Sequence[int], *, rng: Random, now: float, key: bytes | None = None
    ) -> int | None:
        members = self._members
        best = -1
        best_load = math.inf
        ties = 0
        for i in eligible:
            load = _load(members[i])
            if load < best_load:
                best, best_load, ties = i, load, 1
            elif load == best_load:
                # Reservoir sampling: each of the k tied members ends up chosen with chance 1/k.
                ties += 1
                if rng.randrange(ties) == 0:
                    best = i
        return best if best >= 0 else None


def _two_distinct(eligible: Sequence[int], rng: Random) -> tuple[int, int]:
    """Two different eligible members, uniformly, in the order they were drawn."""
    n = len(eligible)
    first = rng.randrange(n)
    second = rng.randrange(n - 1)
    if second >= first:
        second += 1
    return eligible[first], eligible[second]


class _TwoChoices:
    """Power of two random choices: of two random members, the cheaper one.

    Nearly as good as least-requests at keeping loads even, and it avoids
    everyone piling onto the single least loaded server when load figures are
    stale. ``cost`` says what "cheaper" means: requests in flight per unit of
    weight (``two_choices``) or the peak-EWMA cost (``peak_ewma``). On a tie
    the first member drawn wins.
    """

    __slots__ = ("_cost", "_members")

    def __init__(
        self,
        members: Sequence[MemberLoad],
        cost: Callable[[MemberLoad, float], tuple[float, float]],
    ) -> None:
        self._members = members
        self._cost = cost

    def pick(
        self, eligible: Sequence[int], *, rng: Random, now: float, key: bytes | None = None
    ) -> int | None:
        if len(eligible) < 2:
            return eligible[0] if eligible else None
        a, b = _two_distinct(eligible, rng)
        members = self._members
        cost = self._cost
        return b if cost(members[b], now) < cost(members[a], now) else a


def _load_cost(member: MemberLoad, now: float) -> tuple[float, float]:
    return _load(member), 0.0


def _ewma_cost(member: MemberLoad, now: float) -> tuple[float, float]:
    """Peak-EWMA cost: ``estimate * (outstanding + 1) / effective_weight``.

    A member with no latency sample yet costs nothing, so new servers are
    tried, but only while nothing is in flight to it: a server whose first
    requests have not come back costs more than any measured one (Finagle's
    penalty), else a server that hangs would draw traffic forever. Equal costs
    go to the less loaded member.
    """
    estimate = member.latency.estimate(now)
    outstanding = member.outstanding
    weight = member.effective_weight
    if estimate <= 0.0:
        return (0.0 if outstanding == 0 else math.inf), outstanding / weight
    return estimate * (outstanding + 1) / weight, outstanding / weight


def _ring_hash(data: bytes) -> int:
    """64-bit position on the ring; the same in every process and Python version."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


class _RingHash:
    """Consistent hashing: a request key goes to the first eligible point clockwise.

    Each member owns ``virtual_nodes * weight`` points, placed by hashing its
    key with the point's number. Removing a server, or skipping it because it
    is down, moves only the keys it held, to the next points round the ring;
    adding one takes about ``1 / (n + 1)`` of the keys. A request with no key
    goes to a random eligible member.
    """

    __slots__ = ("_count", "_hashes", "_owners")

    def __init__(self, members: Sequence[MemberLoad], virtual_nodes: int) -> None:
        if virtual_nodes < 1:
            raise ValueError(f"virtual_nodes must be at least 1, got {virtual_nodes!r}")
        points = sorted(
            (_ring_hash(b"%b#%d" % (member.key, v)), index)
            for index, member in enumerate(members)
            for v in range(virtual_nodes * member.weight)
        )
        self._hashes = [h for h, _ in points]
        self._owners = [owner for _, owner in points]
        self._count = len(members)

    def pick(
        self, eligible: Sequence[int], *, rng: Random, now: float, key: bytes | None = None
    ) -> int | None:
        if not eligible:
            return None
        if key is None:
            return eligible[rng.randrange(len(eligible))]
        hashes = self._hashes
        owners = self._owners
        size = len(hashes)
        at = bisect_left(hashes, _ring_hash(key))
        if len(eligible) == self._count:
            return owners[at % size]
        last = len(eligible) - 1
        for step in range(size):
            owner = owners[(at + step) % size]
            spot = bisect_left(eligible, owner)
            if spot <= last and eligible[spot] == owner:
                return owner
        return None  # `eligible` names no member of this ring


class _WeightedRandom:
    """A random eligible member, with chances in proportion to effective weight."""

    __slots__ = ("_members",)

    def __init__(self, members: Sequence[MemberLoad]) -> None:
        self._members = members

    def pick(
        self, eligible: Sequence[int], *, rng: Random, now: float, key: bytes | None = None
    ) -> int | None:
        if len(eligible) < 2:
            return eligible[0] if eligible else None
        members = self._members
        total = 0.0
        for i in eligible:
            total += members[i].effective_weight
        target = rng.random() * total
        for i in eligible:
            target -= members[i].effective_weight
            if target < 0.0:
                return i
        return eligible[-1]  # rounding left a sliver past the last weight


def make_balancer(
    algorithm: str, members: Sequence[MemberLoad], *, virtual_nodes: int = 160
) -> Balancer:
    """A balancer running ``algorithm`` over ``members``.

    Args:
        algorithm: One of :data:`ALGORITHMS`.
        members: The pool's servers; the balancer keeps a reference and reads
            their live numbers on every pick. The list must not change
            afterwards: build a new balancer instead.
        virtual_nodes: Points per unit of weight on the ``ring_hash`` ring.

    Raises:
        ValueError: ``algorithm`` is not one of :data:`ALGORITHMS`, or
            ``virtual_nodes`` is below 1 for ``ring_hash``.
    """
    if algorithm == "round_robin":
        return _RoundRobin(members)
    if algorithm == "weighted_round_robin":
        return _SmoothWeighted(members)
    if algorithm == "least_requests":
        return _LeastRequests(members)
    if algorithm == "two_choices":
        return _TwoChoices(members, _load_cost)
    if algorithm == "peak_ewma":
        return _TwoChoices(members, _ewma_cost)
    if algorithm == "ring_hash":
        return _RingHash(members, virtual_nodes)
    if algorithm == "random":
        return _WeightedRandom(members)
    raise ValueError(
        f"unknown load-balancing algorithm {algorithm!r}; valid: {', '.join(ALGORITHMS)}"
    )
