"""A simulated network that watches the proxy's failover decisions as they happen.

:class:`WatchedNet` is a :class:`~tests.simnet.SimNet` that reads every event
it feeds the core and every command the core returns, in order, and keeps an
outside account of the pool:

- **availability** of each server, replayed from the core's health ``Log``
  lines (``upstream app: server 10.0.0.1:80 is down: ...``) and compared with
  ``proxy.upstream_status()`` after every call, so the two accounts must agree;
- **tries**: each request is named by its target ``/sim/<rid>``; a try starts
  when the core opens a connection for it (``OpenUpstream``) or writes its
  head on a pooled connection. A new connection's request bytes wait in the
  core until it connects, so they are read from the core's pending buffer
  right after ``OpenUpstream``; health probes are told apart by their
  ``user-agent: sansproxy-health-check``, and the bytes later sent on the
  connection must say the same;
- **delivery**: bytes the core sent on each upstream connection and bytes it
  was told were ``Written``, so it is known whether any byte of a request may
  have reached a backend (a graceful ``Close`` flushes everything sent).

Checks made at the moment of each decision (recorded in :attr:`failures`):
no try goes to a server the account says is unavailable, and a backup server
is tried only while no primary is available. :meth:`WatchedNet.audit` checks
the rest over the whole history: a POST is never tried again once a byte of
it may have reached a backend (nor received by two backends), the tries of
one request stay within the route's ``tries``, and retries stay within the
retry budget (see :attr:`WatchedNet.retries`).
"""

from __future__ import annotations

import bisect
import math
import re
from dataclasses import dataclass, field
from typing import Literal

from sansproxy.commands import Close, Command, Log, OpenUpstream, Send
from sansproxy.config import ProxyConfig
from sansproxy.events import (
    ConnectionLost,
    ConnId,
    DataReceived,
    Event,
    UpstreamConnected,
    UpstreamFailed,
    Written,
)
from tests.simnet import SimNet

__all__ = ["Try", "TryKind", "UpstreamRecord", "WatchedNet", "rid_of"]

REQUEST_LINE = re.compile(rb"(?:^|(?<=\r\n))([A-Z]+) (/\S*) HTTP/1\.1\r\n")
SIM_TARGET = re.compile(r"/sim/(\d+)")
HEALTH_LOG = re.compile(r"upstream (\S+): server (\S+) is (up|down): (.*)")
PROBE_AGENT = b"user-agent: sansproxy-health-check"
BUDGET_BUCKETS = 10
"""Buckets of :class:`sansproxy.retries.RetryBudget` (the pool uses the default)."""

TryKind = Literal["first", "failover", "resend", "retry"]
"""How a try came about: the request's first; after a failed connect (exempt from the
budget); a resend on a fresh connection after a pooled one went stale (same server,
exempt); a retry on another server after a failure (counted by the budget)."""


def rid_of(target: bytes | str) -> int | None:
    """The request number in a ``/sim/<rid>`` target, or None."""
    text = target.decode("latin-1") if isinstance(target, bytes) else target
    match = SIM_TARGET.fullmatch(text)
    return None if match is None else int(match.group(1))


@dataclass(slots=True)
class UpstreamRecord:
    """One upstream connection as the network saw it."""

    conn: ConnId
    server: str
    probe: bool
    opened_seq: int
    sent: int = 0
    written: int = 0
    connected: bool = False
    graceful: bool = False
    ended_seq: int | None = None
    ended_at: float | None = None
    requests: list[tuple[int, int]] = field(default_factory=list)
    """``(offset in the sent stream, rid)`` of each request head sent on it."""

    def reached(self, offset: int) -> bool:
        """Whether a byte at ``offset`` of the sent stream may have reached the backend."""
        return self.written > offset or (self.graceful and self.sent > offset)


@dataclass(slots=True)
class Try:
    """One try of a request: the server chosen, on which connection, when."""

    rid: int
    conn: ConnId
    server: str
    at: float
    seq: int
    offset: int
    """Where the request starts in the connection's sent stream."""
    kind: TryKind


class WatchedNet(SimNet):
    """A :class:`SimNet` keeping the outside account described in the module docstring.

    Args:
        config: the proxy's configuration; its first upstream is the one watched.
        seed: the proxy's rng seed.

    Attributes:
        methods: rid -> method, filled in by whoever sends the requests.
        available: server label -> available, as the health logs say.
        tries: rid -> its tries, in order.
        failures: breaches seen at decision time (and disagreements with
            ``upstream_status()``); empty while all is well.
        health_changes: ``(time, server, available, reason)`` of each health log line.
        probes: health probes the core opened.
    """

    def __init__(self, config: ProxyConfig, *, seed: int = 0) -> None:
        super().__init__(config, seed=seed)
        upstream = next(iter(config.upstreams.values()))
        self.upstream_name = upstream.name
        self.primaries = [s.label for s in upstream.servers if not s.backup]
        self.backups = [s.label for s in upstream.servers if s.backup]
        self.budget = upstream.retry_budget
        self.available = {s.label: True for s in upstream.servers}
        self.upstreams: dict[ConnId, UpstreamRecord] = {}
        self.tries: dict[int, list[Try]] = {}
        self.arrivals: dict[int, tuple[float, int]] = {}
        """rid -> (time, call number) when the proxy first read its head."""
        self.retries: list[tuple[int, int]] = []
        """``(call number, budget bucket)`` of every budgeted retry, in call order: the
        budget is asked in the call that learns the previous try failed (the call that
        ended its connection)."""
        self._arrival_buckets: list[int] = []
        self.methods: dict[int, str] = {}
        self.failures: list[str] = []
        self.health_changes: list[tuple[float, str, bool, str]] = []
        self.probes = 0
        self._calls = 0
        self._in_handle = False

    # -- hooks into SimNet ---------------------------------------------------------------

    def _handle(self, event: Event) -> None:
        self._calls += 1
        self._observe_event(event)
        self._in_handle = True
        try:
            super()._handle(event)
        finally:
            self._in_handle = False

    def _apply(self, commands: list[Command]) -> None:
        if not self._in_handle:
            self._calls += 1  # a handle_timeout call
        for command in commands:
            self._observe_command(command)
        super()._apply(commands)
        self._compare_with_status()

    # -- events --------------------------------------------------------------------------

    def _observe_event(self, event: Event) -> None:
        if isinstance(event, DataReceived):
            record = self.upstreams.get(event.conn)
            if record is None:
                for match in REQUEST_LINE.finditer(event.data):
                    rid = rid_of(match.group(2))
                    if rid is not None and rid not in self.arrivals:
                        self.arrivals[rid] = (self.clock.now, self._calls)
                        self._arrival_buckets.append(self._bucket(self.clock.now))
        elif isinstance(event, Written):
            record = self.upstreams.get(event.conn)
            if record is not None:
                record.written += event.nbytes
        elif isinstance(event, UpstreamConnected):
            self.upstreams[event.conn].connected = True
        elif isinstance(event, UpstreamFailed | ConnectionLost):
            self._ended(event.conn)

    def _ended(self, conn: ConnId) -> None:
        record = self.upstreams.get(conn)
        if record is not None and record.ended_seq is None:
            record.ended_seq = self._calls
            record.ended_at = self.clock.now

    # -- commands ------------------------------------------------------------------------

    def _observe_command(self, command: Command) -> None:
        if isinstance(command, Log):
            self._observe_log(command)
        elif isinstance(command, OpenUpstream):
            self._observe_open(command)
        elif isinstance(command, Send):
            record = self.upstreams.get(command.conn)
            if record is not None:
                self._observe_upstream_send(record, command.data)
        elif isinstance(command, Close):
            record = self.upstreams.get(command.conn)
            if record is not None:
                if not command.abort:
                    record.graceful = True
                self._ended(command.conn)

    def _observe_log(self, log: Log) -> None:
        match = HEALTH_LOG.fullmatch(log.message)
        if match is None or match.group(1) != self.upstream_name:
            return
        server, up = match.group(2), match.group(3) == "up"
        self.available[server] = up
        self.health_changes.append((self.clock.now, server, up, match.group(4)))

    def _observe_open(self, command: OpenUpstream) -> None:
        server = f"{command.host}:{command.port}"
        # The request waits in the core until the connection is up: read it there. (The
        # core forgets a connection in the call that opened it only when a reload or a
        # shutdown stops the probes, which these simulations never do.)
        upstream = self.proxy._ctx.upstreams[command.conn]
        pending = b"".join(upstream.queue or ())
        probe = PROBE_AGENT in pending
        record = UpstreamRecord(command.conn, server, probe, self._calls)
        self.upstreams[command.conn] = record
        if probe:
            self.probes += 1
            return
        match = REQUEST_LINE.match(pending)
        rid = None if match is None else rid_of(match.group(2))
        if rid is None:
            self.failures.append(f"{command!r}: no /sim/ request waiting to be sent")
            return
        self._decide(rid, record, offset=0)

    def _observe_upstream_send(self, record: UpstreamRecord, data: bytes) -> None:
        for match in REQUEST_LINE.finditer(data):
            offset = record.sent + match.start()
            target = match.group(2)
            if record.probe != (target == b"/health" and PROBE_AGENT in data):
                self.failures.append(f"conn {record.conn}: probe and traffic mixed up: {target!r}")
                continue
            if record.probe:
                continue
            rid = rid_of(target)
            if rid is None:
                self.failures.append(f"conn {record.conn}: unexpected target {target!r}")
            elif offset == 0:
                first = record.requests[0][1] if record.requests else None
                if first != rid:
                    self.failures.append(f"conn {record.conn}: sent {rid}, opened for {first}")
            else:
                self._decide(rid, record, offset=offset)  # a pooled connection reused
        record.sent += len(data)

    def _decide(self, rid: int, record: UpstreamRecord, *, offset: int) -> None:
        """A try of ``rid`` goes to ``record.server`` now: it must be allowed to."""
        server = record.server
        now = self.clock.now
        if not self.available[server]:
            self.failures.append(f"t={now:.3f}: request {rid} sent to {server} while it is down")
        if server in self.backups and any(self.available[p] for p in self.primaries):
            self.failures.append(
                f"t={now:.3f}: request {rid} sent to backup {server} while a primary is up"
            )
        record.requests.append((offset, rid))
        tries = self.tries.setdefault(rid, [])
        kind: TryKind = "first"
        if tries:
            previous = self.upstreams[tries[-1].conn]
            if not previous.connected:
                kind = "failover"
            elif previous.server == server:
                kind = "resend"
            else:
                kind = "retry"
                if previous.ended_at is None or previous.ended_seq is None:
                    self.failures.append(f"request {rid} tried again before its try ended")
                else:
                    entry = (previous.ended_seq, self._bucket(previous.ended_at))
                    bisect.insort(self.retries, entry)
        tries.append(Try(rid, record.conn, server, now, self._calls, offset, kind))

    def _compare_with_status(self) -> None:
        now = self.clock.now
        for view in self.proxy.upstream_status():
            if view.name != self.upstream_name:
                continue
            for server in view.servers:
                if server.health.healthy != self.available[server.server]:
                    self.failures.append(
                        f"t={now:.3f}: {server.server} healthy={server.health.healthy} "
                        f"but the logs say {self.available[server.server]}"
                    )
            low = self._bucket(now) - BUDGET_BUCKETS + 1
            buckets = self._arrival_buckets
            requests = len(buckets) - bisect.bisect_left(buckets, low)
            if requests != view.requests_in_window:
                self.failures.append(
                    f"t={now:.3f}: {requests} requests in the budget window seen, "
                    f"the pool counts {view.requests_in_window}"
                )
            # Retries are in call order, so those in the window are a tail of the list.
            beyond = len(self.retries) - view.retries_in_window - 1
            if beyond >= 0 and self.retries[beyond][1] >= low:
                self.failures.append(
                    f"t={now:.3f}: more retries in the budget window than the pool "
                    f"counted ({view.retries_in_window})"
                )

    # -- analysis ------------------------------------------------------------------------

    def _bucket(self, when: float) -> int:
        """The retry budget's bucket number of time ``when`` (same formula as the budget)."""
        return math.floor(when / (self.budget.window / BUDGET_BUCKETS))

    def audit(self, tries_allowed: int) -> list[str]:
        """Every breach so far: the decision-time ones and those of the whole history."""
        found = list(self.failures)
        for rid, tries in self.tries.items():
            counted = sum(1 for t in tries if t.kind != "resend")
            if counted > tries_allowed:
                kinds = [t.kind for t in tries]
                found.append(f"request {rid}: {counted} tries > {tries_allowed}: {kinds}")
            if self.methods.get(rid) != "POST":
                continue
            for later, attempt in enumerate(tries[1:], start=1):
                reached = [
                    t.server for t in tries[:later] if self.upstreams[t.conn].reached(t.offset)
                ]
                if reached:
                    found.append(
                        f"POST {rid} tried again on {attempt.server} at t={attempt.at:.3f} "
                        f"after bytes of it may have reached {reached}"
                    )
        found.extend(self._budget_breaches())
        return found

    def _budget_breaches(self) -> list[str]:
        """Retries beyond ``ratio * requests + min_retries`` in the window of any retry.

        The window of a retry is its budget bucket and the ``BUDGET_BUCKETS - 1``
        before it; requests count when the proxy read them before the retry.
        """
        ratio, allowance = self.budget.ratio, self.budget.min_retries
        arrivals = sorted((seq, self._bucket(t)) for t, seq in self.arrivals.values())
        arrival_seqs = [seq for seq, _ in arrivals]
        arrival_buckets = [bucket for _, bucket in arrivals]
        retry_buckets = [bucket for _, bucket in self.retries]
        found = []
        for index, (seq, bucket) in enumerate(self.retries):
            low = bucket - BUDGET_BUCKETS + 1
            count = index + 1 - bisect.bisect_left(retry_buckets, low, 0, index + 1)
            before = bisect.bisect_left(arrival_seqs, seq)
            requests = before - bisect.bisect_left(arrival_buckets, low, 0, before)
            if count > ratio * requests + allowance + 1e-9:
                found.append(
                    f"call {seq}: retry number {count} in a window of {requests} requests "
                    f"> {ratio} * {requests} + {allowance}"
                )
        return found

    def post_deliveries(self) -> dict[int, int]:
        """For each POST: how many backends parsed its head (must be at most one)."""
        counts: dict[int, int] = {}
        for backend in self.backends.values():
            for request in backend.requests:
                rid = rid_of(request.target)
                if rid is not None and self.methods.get(rid) == "POST":
                    counts[rid] = counts.get(rid, 0) + 1
        return counts
