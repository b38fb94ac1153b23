"""One upstream at run time: which of its servers may take the next request.

A :class:`Pool` joins the pieces that decide where a request goes: the
servers' health (:mod:`sansproxy.health`), their live load and the balancing
algorithm (:mod:`sansproxy.balancing`), per-server connection caps with a
bounded wait queue, slow start, sticky sessions and the retry budget
(:mod:`sansproxy.retries`). The proxy asks :meth:`Pool.choose` for a server
and reports back what happened; the pool never sends anything itself.

Which servers are eligible for a request, in order:

1. primaries that are available (active-up and not ejected), not already
   tried by this request and below their ``max_connections``;
2. if no primary is available at all, the backups, by the same rules;
3. if no server at all is available, every server when ``when_all_down`` is
   ``use_all`` (a last resort that may find one that recovered), else none.

A server that is available but at its cap is not eligible; when every
available server is at its cap the request waits in the queue (or gets 503
when the queue is full).
"""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Generic, TypeVar

from sansproxy.balancing import MemberLoad, make_balancer
from sansproxy.health import HealthChange, PoolHealth, ServerHealthView
from sansproxy.retries import RetryBudget

if TYPE_CHECKING:
    from random import Random

    from sansproxy.config import Server, Upstream

__all__ = ["Choice", "Pool", "PoolView", "ServerView"]

W = TypeVar("W")
"""What waits in the queue (the proxy's exchanges)."""

_SLOW_START_FLOOR = 0.1
"""Share of its weight a server gets the moment it comes back (never zero)."""


class Choice(Enum):
    """Why :meth:`Pool.choose` returned no server."""

    NONE_AVAILABLE = "none available"
    """Every server is down, or already tried by this request."""
    ALL_BUSY = "all busy"
    """Servers are available but every one is at its ``max_connections``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerView:
    """A server's numbers for :meth:`sansproxy.Proxy.statistics`."""

    server: str
    weight: int
    effective_weight: float
    backup: bool
    outstanding: int
    health: ServerHealthView


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolView:
    """An upstream's state for :meth:`sansproxy.Proxy.statistics`."""

    name: str
    algorithm: str
    servers: tuple[ServerView, ...]
    queued: int
    requests_in_window: int
    retries_in_window: int


class Pool(Generic[W]):
    """The run-time state of one upstream."""

    def __init__(self, upstream: Upstream, *, previous: Pool[W] | None = None) -> None:
        self.upstream = upstream
        self.servers: tuple[Server, ...] = upstream.servers
        self.loads = [MemberLoad(s.label.encode(), s.weight) for s in self.servers]
        self.balancer = make_balancer(upstream.balance, self.loads)
        self.health = PoolHealth(
            [s.label for s in self.servers],
            active=upstream.health_check,
            outlier=upstream.outlier,
        )
        budget = upstream.retry_budget
        self.budget = RetryBudget(
            ratio=budget.ratio, window=budget.window, min_retries=budget.min_retries
        )
        self.queue: deque[W] = deque()
        self._index = {server: i for i, server in enumerate(self.servers)}
        self._by_label = {server.label: i for i, server in enumerate(self.servers)}
        self._tokens = [_sticky_token(upstream.name, s) for s in self.servers]
        self._by_token = {token: i for i, token in enumerate(self._tokens)}
        self._back_since: list[float | None] = [None] * len(self.servers)
        self._primaries = [i for i, s in enumerate(self.servers) if not s.backup]
        self._backups = [i for i, s in enumerate(self.servers) if s.backup]
        if previous is not None:
            before = previous.upstream
            if (before.servers, before.health_check, before.outlier) == (
                self.servers,
                upstream.health_check,
                upstream.outlier,
            ):
                # The same servers checked the same way: their health carries on.
                self.health = previous.health
            # In-flight requests still count against the servers that stay.
            for server, old in previous._index.items():
                new = self._index.get(server)
                if new is not None:
                    self.loads[new].outstanding = previous.loads[old].outstanding
                    self.loads[new].latency = previous.loads[old].latency

    def index(self, server: Server) -> int | None:
        """The server's position in this pool, or None if it is not (or no longer) in it."""
        return self._index.get(server)

    def sticky_token(self, index: int) -> bytes:
        """The sticky-session cookie value naming server ``index``."""
        return self._tokens[index]

    def sticky_index(self, token: bytes) -> int | None:
        """The server a sticky-session cookie value names, if any."""
        return self._by_token.get(token)

    def choose(
        self,
        *,
        tried: set[int],
        key: bytes | None,
        sticky: int | None,
        rng: Random,
        now: float,
    ) -> int | Choice:
        """The server for a request's next try, or why there is none.

        ``sticky`` is the server a sticky-session cookie names; it is used when
        eligible, and otherwise the request is balanced as if it had no cookie.
        """
        eligible, busy = self._eligible(tried, now)
        if not eligible:
            return Choice.ALL_BUSY if busy else Choice.NONE_AVAILABLE
        if sticky is not None and sticky in eligible:
            return sticky
        if self.upstream.slow_start:
            self._ramp(now)
        chosen = self.balancer.pick(eligible, rng=rng, now=now, key=key)
        assert chosen is not None  # eligible is not empty
        return chosen

    def _eligible(self, tried: set[int], now: float) -> tuple[list[int], bool]:
        available = self.health.available
        busy = False
        for group in (self._primaries, self._backups):
            up = [i for i in group if available(i, now)]
            if up:
                eligible = [i for i in up if i not in tried and not self._full(i)]
                busy = any(i not in tried and self._full(i) for i in up)
                return eligible, busy
        if self.upstream.when_all_down == "use_all":
            everyone = range(len(self.servers))
            eligible = [i for i in everyone if i not in tried and not self._full(i)]
            return eligible, any(i not in tried and self._full(i) for i in everyone)
        return [], False

    def serves(self, index: int, now: float) -> bool:
        """Whether server ``index`` belongs to the group that takes traffic now.

        The health and backup rules of :meth:`choose`, without its ``tried`` set
        and connection caps: for resending a request on a fresh connection to
        the server it was already counted against.
        """
        available = self.health.available
        for group in (self._primaries, self._backups):
            up = [i for i in group if available(i, now)]
            if up:
                return index in up
        return self.upstream.when_all_down == "use_all"

    def _full(self, index: int) -> bool:
        cap = self.servers[index].max_connections
        return bool(cap) and self.loads[index].outstanding >= cap

    def _ramp(self, now: float) -> None:
        period = self.upstream.slow_start
        for i, since in enumerate(self._back_since):
            if since is None:
                continue
            load = self.loads[i]
            share = (now - since) / period
            if share >= 1:
                self._back_since[i] = None
                load.effective_weight = float(load.weight)
            else:
                load.effective_weight = load.weight * max(_SLOW_START_FLOOR, share)

    def started(self, index: int, now: float) -> None:
        """A request was handed to server ``index``."""
        del now
        self.loads[index].outstanding += 1

    def finished(self, index: int, now: float, *, latency: float | None) -> None:
        """A request to server ``index`` ended; ``latency`` is its time to first byte."""
        load = self.loads[index]
        load.outstanding -= 1
        if latency is not None:
            load.latency.observe(latency, now)

    def has_room(self, now: float) -> bool:
        """Whether a queued request could now get a server."""
        eligible, _ = self._eligible(set(), now)
        return bool(eligible)

    def success(self, index: int, now: float) -> None:
        """A response came back that does not count as a failure."""
        self.health.traffic_success(index, now)

    def failure(self, index: int, kind: str, now: float) -> HealthChange | None:
        """Count a failure of real traffic on server ``index``; the ejection it caused.

        ``kind`` says what failed: ``connect``, ``reset``, ``timeout``, ``status 503``...
        """
        return self.health.traffic_failure(index, kind, now)

    def probed(self, index: int, ok: bool, reason: str, now: float) -> HealthChange | None:
        """An active probe's outcome; the change of state it caused, if any."""
        change = self.health.probe_result(index, ok, reason, now)
        if change is not None and change.healthy:
            self._came_back(index, now)
        return change

    def expire(self, now: float) -> list[HealthChange]:
        """Ejections that ended by ``now``."""
        changes = self.health.expire(now)
        for change in changes:
            if change.healthy:
                self._came_back(self._by_label[change.server], now)
        return changes

    def _came_back(self, index: int, now: float) -> None:
        if self.upstream.slow_start:
            self._back_since[index] = now
            self.loads[index].effective_weight = self.loads[index].weight * _SLOW_START_FLOOR

    def counts_as_failure(self, status: int) -> bool:
        """Whether a response status counts against its server (passive checks)."""
        outlier = self.upstream.outlier
        return outlier is not None and status in outlier.statuses

    def view(self, now: float) -> PoolView:
        """A snapshot for statistics."""
        health = self.health.view()
        requests, retries = self.budget.stats(now)
        return PoolView(
            name=self.upstream.name,
            algorithm=self.upstream.balance,
            servers=tuple(
                ServerView(
                    server=server.label,
                    weight=server.weight,
                    effective_weight=load.effective_weight,
                    backup=server.backup,
                    outstanding=load.outstanding,
                    health=health[i],
                )
                for i, (server, load) in enumerate(zip(self.servers, self.loads, strict=True))
            ),
            queued=len(self.queue),
            requests_in_window=requests,
            retries_in_window=retries,
        )


def _sticky_token(upstream: str, server: Server) -> bytes:
    """An opaque, stable cookie value for a server: a digest, not its address.

    Stable across restarts and worker processes, so any worker honours it.
    """
    digest = hashlib.blake2b(f"{upstream}/{server.label}".encode(), digest_size=8)
    return digest.hexdigest().encode()
