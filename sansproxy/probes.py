"""Active health checks: probes are exchanges with no client.

Theory of operation
-------------------
Every server of an upstream with a ``health_check`` has a :class:`ProbeSchedule`,
a timer owner whose first probe falls at a random point of its first interval
(from the core's generator, so that a fleet of servers is not probed in step)
and every ``probe_delay`` after. A probe is an ordinary
:class:`~sansproxy.exchange.Exchange` whose stream is a :class:`ProbeSink`: it
takes the same attempt and upstream path as client traffic (the same
``OpenUpstream`` with the upstream's TLS settings, the same codec), but goes to
its one server on a connection of its own, is never retried, never counts as
traffic and writes no access record. The sink keeps the status and the first
64 KiB of the body, and on the end of the response (or any failure, or the
probe's one ``timeout``) tells the pool's health model what it saw.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sansproxy import attempts
from sansproxy._codec import RequestHead
from sansproxy._exchange_states import State, Trigger
from sansproxy._timers import TimerKind
from sansproxy.downstream.clientless import ClientlessStream
from sansproxy.exchange import Exchange
from sansproxy.health import probe_delay, probe_passed

if TYPE_CHECKING:
    from sansproxy._codec import Headers
    from sansproxy._context import Context
    from sansproxy.config import Server
    from sansproxy.events import TlsInfo

__all__ = ["ProbeSchedule", "ProbeSink", "Probes"]

_BODY_CAP = 64 * 1024
"""Bytes of a probe response kept to look for ``body_contains``."""


class ProbeSchedule:
    """When the next probe of one server is due."""

    __slots__ = ("active", "ctx", "index", "order", "pool", "probes")

    def __init__(self, probes: Probes, pool: str, index: int) -> None:
        self.probes = probes
        self.ctx = probes.ctx
        self.pool = pool
        self.index = index
        self.order = self.ctx.internal_order()
        self.active = True
        """False once a reload or shutdown replaced the schedule."""

    def on_timer(self, kind: TimerKind) -> None:
        """The probe is due: send it."""
        if self.active:
            self.probes.send(self)

    def done(self, ok: bool, reason: str) -> None:
        """Count a probe's outcome and schedule the server's next one."""
        if not self.active:
            return  # Reloaded or shutting down since the probe was sent.
        ctx = self.ctx
        pool = ctx.settings.pools[self.pool]
        check = pool.upstream.health_check
        assert check is not None
        change = pool.probed(self.index, ok, reason, ctx.now)
        if change is not None:
            ctx.health_changed(pool, change)
        ctx.timers.set(self, TimerKind.PROBE, ctx.now + probe_delay(check, ctx.rng))


class Probes:
    """Every probe schedule of the current configuration, and the probes in flight."""

    __slots__ = ("ctx", "in_flight", "schedules", "started")

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.schedules: list[ProbeSchedule] = []
        self.in_flight: dict[ProbeSchedule, Exchange] = {}
        self.started = False

    def start(self) -> None:
        """Schedule each server's first probe at a random point of its first interval."""
        self.started = True
        ctx = self.ctx
        if ctx.shutting_down:
            return
        for name, pool in ctx.settings.pools.items():
            check = pool.upstream.health_check
            if check is None:
                continue
            for index in range(len(pool.servers)):
                schedule = ProbeSchedule(self, name, index)
                self.schedules.append(schedule)
                first = ctx.rng.uniform(0, check.interval)
                ctx.timers.set(schedule, TimerKind.PROBE, ctx.now + first)

    def stop(self) -> None:
        """Cancel every schedule and every probe in flight."""
        timers = self.ctx.timers
        for schedule in self.schedules:
            schedule.active = False
            timers.cancel(schedule)
        self.schedules.clear()
        for exchange in list(self.in_flight.values()):
            exchange.cancel()
        self.in_flight.clear()

    def send(self, schedule: ProbeSchedule) -> None:
        """Probe the schedule's server: an exchange of its own, with the check's request."""
        ctx = self.ctx
        pool = ctx.settings.pools[schedule.pool]
        check = pool.upstream.health_check
        assert check is not None
        server = pool.servers[schedule.index]
        host = check.host or pool.upstream.host_header or server.label
        headers = [
            (b"host", host.encode()),
            (b"user-agent", b"sansproxy-health-check"),
            (b"connection", b"close"),
        ]
        method, path = check.method.encode(), check.path.encode()
        sink = ProbeSink(self, schedule, server)
        head = RequestHead(
            stream=0, method=method, target=path, path=path, headers=headers, http_version=b"1.1"
        )
        exchange = Exchange(ctx, sink, head, probe=sink)
        sink.exchange = exchange
        exchange.pool = pool
        exchange.stages = []
        exchange.upstream_head = (method, path, headers)
        exchange.request_complete = True
        self.in_flight[schedule] = exchange
        attempts.connect(exchange)


class ProbeSink(ClientlessStream):
    """The stream of a probe's exchange: it keeps what the verdict needs."""

    __slots__ = ("body_seen", "exchange", "probes", "schedule", "server", "status")

    peer: tuple[str, int] = ("", 0)
    tls: TlsInfo | None = None
    listener: int = 0

    def __init__(self, probes: Probes, schedule: ProbeSchedule, server: Server) -> None:
        self.probes = probes
        self.schedule = schedule
        self.server = server
        """The one server this probe goes to."""
        self.exchange: Exchange | None = None
        self.status = 0
        self.body_seen = b""

    def _verdict(self, ok: bool, reason: str) -> None:
        self.probes.in_flight.pop(self.schedule, None)
        self.schedule.done(ok, reason)

    def report_failure(self, reason: str) -> None:
        """The probe failed before a whole response (connect, reset, timeout)."""
        exchange = self.exchange
        if exchange is not None and exchange.state is not State.DONE:
            upstream = exchange.upstream
            if upstream is not None:
                upstream.close(abort=True)
            exchange.end(Trigger.FAIL)
        self._verdict(ok=False, reason=reason)

    # -- the Stream an exchange writes to ----------------------------------------------

    def respond(self, status: int, reason: bytes, headers: Headers, *, head_request: bool) -> None:
        """Keep the status."""
        self.status = status

    def body(self, data: bytes) -> None:
        """Keep the start of the body."""
        room = _BODY_CAP - len(self.body_seen)
        if room > 0:
            self.body_seen += data[:room]

    def end(self, trailers: Headers) -> None:
        """The response is complete (the verdict comes once the exchange is finished)."""

    def error(
        self, status: int, reason: bytes, headers: Headers, body: bytes, *, head_request: bool
    ) -> None:
        """The probe could not be sent (its upstream is gone)."""
        self.status = status

    def finished(self) -> None:
        """A whole response: judge it."""
        pool = self.probes.ctx.settings.pools.get(self.schedule.pool)
        check = None if pool is None else pool.upstream.health_check
        if check is None:
            self.probes.in_flight.pop(self.schedule, None)
            return
        ok = probe_passed(check, self.status, self.body_seen)
        if ok or not check.expect_status[0] <= self.status <= check.expect_status[1]:
            reason = f"status {self.status}"
        else:
            reason = "expected text not in the body"
        self._verdict(ok=ok, reason=reason)

    def failed(self) -> None:
        """The proxy refused to send the probe."""
        self._verdict(ok=False, reason=f"status {self.status}")

    def aborted(self) -> None:
        """The response broke off."""
        self._verdict(ok=False, reason="response cut short")

    def detach(self, exchange: Exchange) -> None:
        """Nothing to let go of."""
