"""Whether each server of a pool should get traffic: active probes and passive ejection.

Pure bookkeeping: the proxy sends the probes, times them out and watches real
traffic, then reports outcomes here with the ``now`` they happened at. Nothing
in this module schedules I/O; :func:`probe_delay` and
:meth:`PoolHealth.next_deadline` tell the proxy when to act next.

Model decisions:

- Servers start healthy, so traffic flows at once. With active checks a server
  goes down after ``fall`` failed probes in a row and comes back after ``rise``
  passing probes in a row; a passing probe while up resets the failure streak,
  a failing probe while down resets the passing streak, so results that
  alternate never flip the state. Without active checks (``active=None``) the
  active state is always up.
- Passive checks (``outlier=None`` turns them off) count failures of real
  traffic in a row, and only while the server is available: failures of
  requests that were already in flight when the server was taken out say
  nothing new. Reaching ``consecutive_failures`` ejects the server for
  ``min(n * base_ejection, max_ejection)`` seconds, where ``n`` counts its
  ejections, this one included; the failure count starts again from zero.
- ``n`` decays by one for every ``max_ejection`` seconds the server spends
  un-ejected, so a server that was flaky long ago is not punished forever.
- An ejection that would take out more than ``max_ejected_fraction`` of the
  pool (rounded down, but one server may be ejected whatever the fraction) is skipped: the
  failure returns None and the count stays where it is, so the next failure
  tries again. Only ejections count against this cap; servers that failed
  their active probes do not.
- The last available server is never ejected, whatever the cap: not a sole
  server, not the one server left of a pool whose others are ejected or down
  on their probes (backups count: a primary may be ejected while a backup is
  available). Ejecting it would only turn the failures of a backend that is
  restarting into 503s from the proxy that last until the ejection ends, while
  keeping it in lets traffic through the moment the backend answers again
  (nginx never marks a group's single server down; Envoy caps ejection by a
  percentage). Its failures are counted, and skipped like a capped ejection.
- A server is *available* when it is active-up and not ejected. An ejection
  is over at its end time even before :meth:`PoolHealth.expire` reports it, or
  as soon as the probes bring the server back (``fall`` failed, then ``rise``
  passed, during the ejection): a backend that was restarted comes back after
  ``rise`` probes, not after the ejection time. Passing probes alone do not end
  an ejection (Envoy's default does), since a server can pass its health path
  and still fail real traffic.
- :class:`HealthChange.healthy <HealthChange>` is whether the server is
  available right after the change, so a fall during an ejection reads
  ``healthy=False``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from random import Random

__all__ = [
    "ActiveCheck",
    "HealthChange",
    "OutlierDetection",
    "PoolHealth",
    "ServerHealthView",
    "probe_delay",
    "probe_passed",
]

# Guards the rounding of `fraction * servers` (0.29 * 100 is 28.999999999999996).
_EPSILON = 1e-9


@dataclass(frozen=True, slots=True, kw_only=True)
class ActiveCheck:
    """How the proxy probes each server of one pool, and how many results flip its state."""

    method: str = "GET"
    """Request method of a probe."""
    path: str = "/"
    """Request target of a probe."""
    host: str | None = None
    """Host header of a probe; None uses the server's own address."""
    expect_status: tuple[int, int] = (200, 399)
    """Inclusive range of response statuses that pass."""
    body_contains: bytes | None = None
    """If set, the response body must contain these bytes to pass."""
    interval: float = 5.0
    """Seconds between the probes of one server, before jitter."""
    jitter: float = 0.1
    """Fraction of ``interval`` by which each delay varies either way (0 <= jitter < 1)."""
    timeout: float = 2.0
    """A probe without a complete response by then fails."""
    rise: int = 2
    """Passing probes in a row that bring a down server back."""
    fall: int = 3
    """Failed probes in a row that take an up server down."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OutlierDetection:
    """Passive checks: eject a server whose real traffic keeps failing."""

    consecutive_failures: int = 5
    """Connect failures, resets, timeouts or ``statuses`` in a row that eject a server."""
    statuses: frozenset[int] = frozenset()
    """Response statuses that count as failures (e.g. 502, 503, 504); empty: none do."""
    base_ejection: float = 30.0
    """Length of a first ejection; the n-th lasts ``n * base_ejection``."""
    max_ejection: float = 300.0
    """Cap on the length of an ejection, and the time that forgives one past ejection."""
    max_ejected_fraction: float = 0.5
    """Largest share of the pool ejected at once (at least one may be, never the last one up)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthChange:
    """One transition of a server, for the log and the server's history."""

    at: float
    """When it happened (monotonic seconds)."""
    server: str
    """The server's label, e.g. ``127.0.0.1:9001``."""
    healthy: bool
    """Whether the server is available (takes traffic) right after the change."""
    reason: str
    """Why, e.g. ``3 failed probes: connect failed`` or ``ejection ended``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerHealthView:
    """A read-only snapshot of one server's health, for ``statistics()``."""

    server: str
    healthy: bool
    """Available: active-up and not ejected."""
    active_up: bool
    ejected_until: float | None
    """End of the current ejection, None when not ejected."""
    ejections: int
    """Ejections counted towards the next ejection's length (after decay)."""
    consecutive_failures: int
    """Passive failures in a row so far."""
    history: tuple[HealthChange, ...]
    """The latest changes, oldest first."""


def probe_passed(check: ActiveCheck, status: int, body: bytes) -> bool:
    """Whether a probe response passes: status in range and, if asked, the body matches."""
    low, high = check.expect_status
    if not low <= status <= high:
        return False
    return check.body_contains is None or check.body_contains in body


def probe_delay(check: ActiveCheck, rng: Random) -> float:
    """Seconds until a server's next probe: ``interval`` give or take ``jitter`` of it.

    Jitter keeps the probes of many servers (and many proxies) from firing in
    lockstep.
    """
    return check.interval * (1.0 + rng.uniform(-check.jitter, check.jitter))


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


class _Server:
    """Mutable health state of one server."""

    __slots__ = (
        "active_up",
        "consecutive_failures",
        "ejected_until",
        "ejections",
        "fall_streak",
        "forgive_from",
        "history",
        "label",
        "rise_streak",
    )

    def __init__(self, label: str, history: int) -> None:
        self.label = label
        self.active_up = True
        self.rise_streak = 0
        self.fall_streak = 0
        self.consecutive_failures = 0
        self.ejected_until: float | None = None
        self.ejections = 0
        # Start of the un-ejected time that has not yet forgiven an ejection.
        self.forgive_from = 0.0
        self.history: deque[HealthChange] = deque(maxlen=history)


class PoolHealth:
    """Active and passive health of the servers of one pool, addressed by index."""

    __slots__ = ("_active", "_ejections", "_ended", "_latest", "_outlier", "_servers")

    def __init__(
        self,
        servers: Sequence[str],
        *,
        active: ActiveCheck | None,
        outlier: OutlierDetection | None,
        history: int = 16,
    ) -> None:
        if active is not None and (active.rise < 1 or active.fall < 1):
            raise ValueError("rise and fall must be at least 1")
        if outlier is not None and (
            outlier.consecutive_failures < 1
            or outlier.base_ejection <= 0
            or outlier.max_ejection <= 0
            or not 0 <= outlier.max_ejected_fraction <= 1
        ):
            raise ValueError(
                "consecutive_failures must be at least 1, ejection times positive"
                " and max_ejected_fraction between 0 and 1"
            )
        if history < 0:
            raise ValueError("history must not be negative")
        self._servers = [_Server(label, history) for label in servers]
        self._active = active
        self._outlier = outlier
        # Ejections that ended on a call other than expire(): reported by the next expire().
        self._ended: list[HealthChange] = []
        self._ejections = 0
        """Servers with an ejection end set (so that ``next_deadline`` is cheap without)."""
        self._latest = -math.inf

    def available(self, index: int, now: float) -> bool:
        """Whether server ``index`` should get traffic at ``now``."""
        server = self._servers[index]
        return server.active_up and not _ejected(server, now)

    def probe_result(self, index: int, ok: bool, reason: str, now: float) -> HealthChange | None:
        """Count one active probe's outcome; the change when the active state flips.

        ``reason`` says why a failed probe failed (e.g. ``connect failed``, ``status 500``).
        """
        self._settle(index, now)
        server = self._servers[index]
        check = self._active
        if check is None:
            return None
        if server.active_up:
            if ok:
                server.fall_streak = 0
                return None
            server.fall_streak += 1
            if server.fall_streak < check.fall:
                return None
            server.active_up = False
            server.fall_streak = 0
            server.consecutive_failures = 0
            return self._record(server, now, f"{_plural(check.fall, 'failed probe')}: {reason}")
        if not ok:
            server.rise_streak = 0
            return None
        server.rise_streak += 1
        if server.rise_streak < check.rise:
            return None
        server.active_up = True
        server.rise_streak = 0
        server.consecutive_failures = 0
        if _ejected(server, now):
            # The probes saw it fall and rise during the ejection: the outage is over.
            server.ejected_until = None
            self._ejections -= 1
            server.forgive_from = now
        return self._record(server, now, f"{_plural(check.rise, 'probe')} passed")

    def traffic_success(self, index: int, now: float) -> None:
        """A request to server ``index`` succeeded: its run of failures is over."""
        self._settle(index, now)
        self._servers[index].consecutive_failures = 0

    def traffic_failure(self, index: int, kind: str, now: float) -> HealthChange | None:
        """A request to server ``index`` failed; the change if that ejects the server.

        ``kind`` names the failure for the log: ``connect``, ``reset``,
        ``timeout`` or ``status 503``. Whether a status counts at all is the
        caller's question (:attr:`OutlierDetection.statuses`).
        """
        self._settle(index, now)
        outlier = self._outlier
        if outlier is None or not self.available(index, now):
            return None
        server = self._servers[index]
        server.consecutive_failures += 1
        if server.consecutive_failures < outlier.consecutive_failures:
            return None
        if self._ejected_count(now) >= self._ejection_cap(outlier):
            return None
        if self.healthy_count(now) <= 1:
            return None  # the last available server: see the module docs
        self._forgive(server, now, outlier)
        server.ejections += 1
        duration = min(server.ejections * outlier.base_ejection, outlier.max_ejection)
        if server.ejected_until is None:
            self._ejections += 1
        server.ejected_until = now + duration
        failures = server.consecutive_failures
        server.consecutive_failures = 0
        return self._record(
            server,
            now,
            f"ejected for {duration:g}s after {failures} consecutive failures (last: {kind})",
        )

    def expire(self, now: float) -> list[HealthChange]:
        """The ejections that ended by ``now``, oldest first; each is reported once."""
        for index in range(len(self._servers)):
            self._settle(index, now)
        ended, self._ended = self._ended, []
        ended.sort(key=lambda change: change.at)
        return ended

    def next_deadline(self) -> float | None:
        """When :meth:`expire` next has something to report, for the proxy's timer.

        That is the earliest ejection end; it may lie in the past when an
        ejection ended unreported (noticed by another call).
        """
        if not self._ended and not self._ejections:
            return None
        deadlines = [change.at for change in self._ended]
        deadlines.extend(s.ejected_until for s in self._servers if s.ejected_until is not None)
        return min(deadlines, default=None)

    def healthy_count(self, now: float) -> int:
        """How many servers are available at ``now``."""
        return sum(self.available(index, now) for index in range(len(self._servers)))

    def view(self) -> tuple[ServerHealthView, ...]:
        """A snapshot of every server, as of the latest ``now`` any call was given."""
        latest = self._latest
        views = []
        for server in self._servers:
            ejected = _ejected(server, latest)
            views.append(
                ServerHealthView(
                    server=server.label,
                    healthy=server.active_up and not ejected,
                    active_up=server.active_up,
                    ejected_until=server.ejected_until if ejected else None,
                    ejections=self._decayed(server, latest),
                    consecutive_failures=server.consecutive_failures,
                    history=tuple(server.history),
                )
            )
        return tuple(views)

    # -- internals ----------------------------------------------------------------------------

    def _settle(self, index: int, now: float) -> None:
        """End server ``index``'s ejection if it is over by ``now``, keeping the record."""
        self._latest = max(self._latest, now)
        server = self._servers[index]
        end = server.ejected_until
        if end is None or end > now:
            return
        server.ejected_until = None
        self._ejections -= 1
        server.forgive_from = end
        self._ended.append(self._record(server, end, "ejection ended"))

    def _record(self, server: _Server, at: float, reason: str) -> HealthChange:
        change = HealthChange(
            at=at,
            server=server.label,
            healthy=server.active_up and not _ejected(server, at),
            reason=reason,
        )
        server.history.append(change)
        return change

    def _decayed(self, server: _Server, now: float) -> int:
        """``server.ejections`` after forgiving its un-ejected time up to ``now``."""
        outlier = self._outlier
        if outlier is None or server.ejections == 0 or _ejected(server, now):
            return server.ejections
        forgiven = math.floor((now - server.forgive_from) / outlier.max_ejection)
        return max(0, server.ejections - max(0, forgiven))

    def _forgive(self, server: _Server, now: float, outlier: OutlierDetection) -> None:
        decayed = self._decayed(server, now)
        if decayed != server.ejections:
            forgiven = server.ejections - decayed
            server.ejections = decayed
            server.forgive_from += forgiven * outlier.max_ejection

    def _ejected_count(self, now: float) -> int:
        return sum(_ejected(server, now) for server in self._servers)

    def _ejection_cap(self, outlier: OutlierDetection) -> int:
        share = outlier.max_ejected_fraction * len(self._servers)
        return max(1, math.floor(share + _EPSILON))


def _ejected(server: _Server, now: float) -> bool:
    return server.ejected_until is not None and server.ejected_until > now
