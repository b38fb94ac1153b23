"""Attempts: which server an exchange tries, and what happens when a try fails.

Theory of operation
-------------------
:func:`connect` asks the exchange's pool for a server (balancing, health, caps;
see :mod:`sansproxy.pool`), then takes an idle connection to it or opens one.
When every eligible server is at its cap the exchange waits in the pool's queue;
a failed try waits a jittered backoff before the next one. While an exchange
waits, its request body is not read.

A request is sent again only when that cannot duplicate a side effect
(RFC 9110 §9.2.2):

- after a failed connect (nothing was sent): at once, to another server, and
  free of the retry budget;
- when a reused pooled connection closed before any response byte and the method
  is idempotent or no byte of the request reached the operating system: once,
  on a fresh connection to the same server (it was a stale connection, not a
  failing server), unless that server has gone down meanwhile;
- on a reset before any response byte, for the route's idempotent methods or a
  request of which no byte was written; and on a timeout, 502, 503 or 504 when
  the route lists it and the method is idempotent: after a backoff, to another
  server, within the route's tries and the upstream's retry budget, and only
  while the body is still in the replay buffer.

A health probe (an exchange with a ``probe``) goes to its server on a
connection of its own, is never retried, and never counts as traffic.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from sansproxy._exchange_states import State, Trigger
from sansproxy._flow import HOLD_WAIT
from sansproxy._timers import TimerKind
from sansproxy.commands import UpstreamTls
from sansproxy.pool import Choice
from sansproxy.retries import backoff

if TYPE_CHECKING:
    from sansproxy.config import Server, Upstream
    from sansproxy.exchange import Exchange
    from sansproxy.pool import Pool
    from sansproxy.upstream import UpstreamConn

__all__ = [
    "IDEMPOTENT_METHODS",
    "connect",
    "connect_failed",
    "may_retry",
    "release",
    "retry_later",
    "server_failed",
    "set_affinity",
    "stop_waiting",
    "upstream_broke",
    "upstream_timeout",
    "waiting_timeout",
]

IDEMPOTENT_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})


def connect(exchange: Exchange) -> None:
    """Give the exchange a server and an upstream connection: a pooled one or a new one."""
    pool = exchange.current_pool()
    if pool is None:
        exchange.fail(502)
        return
    ctx = exchange.ctx
    probe = exchange.probe
    if probe is not None:
        exchange.server = probe.server
        exchange.attempts += 1
        exchange.move(Trigger.CONNECT)
        _open(exchange, pool.upstream, probe.server)
        return
    tried = {i for server in exchange.tried if (i := pool.index(server)) is not None}
    choice = pool.choose(
        tried=tried, key=exchange.hash_key, sticky=exchange.sticky, rng=ctx.rng, now=ctx.now
    )
    if choice is Choice.ALL_BUSY:
        _enqueue(exchange, pool)
        return
    if choice is Choice.NONE_AVAILABLE:
        if not exchange.tried:
            ctx.log("warning", f"upstream {pool.upstream.name}: no server is available")
            exchange.fail(503, retry_after=1)
        else:
            exchange.fail(502)
        return
    server = pool.servers[choice]
    exchange.tried.add(server)
    exchange.server = server
    exchange.attempts += 1
    pool.started(choice, ctx.now)
    exchange.counted = True
    upstream = ctx.idle.take(server)
    if upstream is not None:
        exchange.move(Trigger.REUSE)
        exchange.attach(upstream)
        return
    exchange.move(Trigger.CONNECT)
    _open(exchange, pool.upstream, server)


def _open(exchange: Exchange, group: Upstream, server: Server) -> None:
    """Open a new connection to ``server`` for the exchange's current try."""
    ctx = exchange.ctx
    upstream = ctx.open_upstream(server, upstream_tls(group, server))
    if exchange.probe is not None:
        check = group.health_check
        assert check is not None
        ctx.timers.set(upstream, TimerKind.PROBE_TIMEOUT, ctx.now + check.timeout)
    else:
        ctx.timers.set(
            upstream, TimerKind.UPSTREAM_CONNECT, ctx.now + exchange.timeouts.upstream_connect
        )
    exchange.attach(upstream)


def upstream_tls(group: Upstream, server: Server) -> UpstreamTls | None:
    """How to speak TLS to an ``https://`` server of ``group``."""
    if not server.tls:
        return None
    return UpstreamTls(
        server_name=group.server_name or server.host,
        verify=group.tls_verify,
        ca_file=group.ca_file,
    )


def set_affinity(exchange: Exchange, pool: Pool[Exchange]) -> None:
    """The request's hash key and sticky server, from its address, headers or cookies."""
    group = pool.upstream
    headers = exchange.request_headers
    hash_on = group.hash_on
    if hash_on is not None:
        if hash_on == "client_ip":
            exchange.hash_key = exchange.stream.peer[0].encode()
        elif hash_on.startswith("header:"):
            name = hash_on[7:].encode()
            exchange.hash_key = next((v for n, v in headers if n == name), None)
        else:
            exchange.hash_key = _cookie(headers, hash_on[7:].encode())
    if group.sticky_cookie is not None:
        token = _cookie(headers, group.sticky_cookie.encode())
        if token is not None:
            exchange.sticky = pool.sticky_index(token)


def _cookie(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    """The value of cookie ``name`` in the request's Cookie fields (RFC 6265 section 5.4)."""
    for field, value in headers:
        if field != b"cookie":
            continue
        for pair in value.split(b";"):
            key, sep, cookie = pair.strip().partition(b"=")
            if sep and key == name:
                return cookie.strip(b'"')
    return None


# -- waiting --------------------------------------------------------------------------


def release(exchange: Exchange) -> None:
    """The current try is over: it no longer counts against its server."""
    if not exchange.counted:
        return
    exchange.counted = False
    pool = exchange.current_pool()
    server = exchange.server
    index = None if pool is None or server is None else pool.index(server)
    if pool is None or index is None:
        return
    ctx = exchange.ctx
    pool.finished(index, ctx.now, latency=exchange.ttfb)
    if pool.queue:
        _drain_queue(pool)


def _enqueue(exchange: Exchange, pool: Pool[Exchange]) -> None:
    """Every available server is at its connection cap: wait for one, or 503."""
    group = pool.upstream
    retry_after = max(1, math.ceil(group.queue_timeout))
    if len(pool.queue) >= group.queue_size:
        exchange.ctx.log("warning", f"upstream {group.name}: every server busy and the queue full")
        exchange.fail(503, retry_after=retry_after)
        return
    exchange.move(Trigger.QUEUE)
    pool.queue.append(exchange)
    _wait(exchange, TimerKind.QUEUE_WAIT, exchange.ctx.now + group.queue_timeout)


def _drain_queue(pool: Pool[Exchange]) -> None:
    """A server has room again: the longest-waiting requests go first."""
    for _ in range(len(pool.queue)):
        if not pool.queue:
            return
        exchange = pool.queue[0]
        if not pool.has_room(exchange.ctx.now):
            return
        pool.queue.popleft()
        stop_waiting(exchange)
        connect(exchange)


def _wait(exchange: Exchange, kind: TimerKind, deadline: float) -> None:
    """Park an exchange (backoff or queue) until ``deadline``; stop reading its body."""
    exchange.ctx.timers.set(exchange, kind, deadline)
    if not exchange.request_complete:
        exchange.stream.hold_request(HOLD_WAIT)


def stop_waiting(exchange: Exchange) -> None:
    """The exchange no longer waits: its timer goes, it leaves any queue, its body flows."""
    if not exchange.waiting:
        return
    exchange.ctx.timers.cancel(exchange)
    # A reload may have replaced the pool whose queue the exchange joined.
    for pool in (exchange.pool, exchange.current_pool()):
        if pool is not None and exchange in pool.queue:
            pool.queue.remove(exchange)
    exchange.stream.release_request(HOLD_WAIT)


def waiting_timeout(exchange: Exchange, kind: TimerKind) -> None:
    """A backoff ended (try again), or a queue wait did (503)."""
    stop_waiting(exchange)
    if kind is TimerKind.RETRY_BACKOFF:
        connect(exchange)
        return
    pool = exchange.pool
    assert pool is not None
    group = pool.upstream
    exchange.ctx.log("warning", f"upstream {group.name}: no server free within the queue timeout")
    exchange.fail(503, retry_after=max(1, math.ceil(group.queue_timeout)))


# -- failures ---------------------------------------------------------------------------


def server_failed(exchange: Exchange, kind: str) -> None:
    """Count a failure of real traffic against the exchange's server (passive checks)."""
    if exchange.probe is not None:
        return  # probes are not traffic
    pool = exchange.current_pool()
    server = exchange.server
    index = None if pool is None or server is None else pool.index(server)
    if pool is not None and index is not None:
        change = pool.failure(index, kind, exchange.ctx.now)
        if change is not None:
            exchange.ctx.health_changed(pool, change)


def connect_failed(upstream: UpstreamConn, reason: str) -> None:
    """The connect of ``upstream`` (already forgotten) failed: fail over, or report."""
    exchange = upstream.exchange
    ctx = upstream.ctx
    if exchange is not None and exchange.probe is not None:
        exchange.probe.report_failure(f"connect failed: {reason}")
        return
    ctx.log("warning", f"upstream {upstream.server.label} connect failed: {reason}", upstream.conn)
    if exchange is not None:
        server_failed(exchange, "connect")
        _retry_or_fail(exchange, 502, "connect")


def upstream_timeout(upstream: UpstreamConn, kind: TimerKind) -> None:
    """A timer of ``upstream`` expired."""
    exchange = upstream.exchange
    ctx = upstream.ctx
    where = f"upstream {upstream.server.label}"
    if exchange is not None and exchange.probe is not None:
        upstream.close(abort=True)
        exchange.probe.report_failure("timed out")
    elif kind is TimerKind.UPSTREAM_KEEPALIVE or exchange is None:
        upstream.close(abort=False)
    elif kind is TimerKind.UPSTREAM_CONNECT:
        ctx.log("warning", f"{where} connect timeout", upstream.conn)
        upstream.close(abort=True)
        server_failed(exchange, "connect timeout")
        _retry_or_fail(exchange, 504, "connect")
    elif kind is TimerKind.UPSTREAM_HEADER:
        ctx.log("warning", f"{where} response header timeout", upstream.conn)
        upstream.close(abort=True)
        server_failed(exchange, "timeout")
        _retry_or_fail(exchange, 504, "timeout")
    else:
        ctx.log("warning", f"{where}: response body stalled (no progress)", upstream.conn)
        exchange.abort()


def upstream_broke(upstream: UpstreamConn, why: str, *, lost: bool) -> None:
    """The upstream closed, reset or misbehaved; decide what the client sees."""
    exchange = upstream.exchange
    if lost:
        upstream.forget()
    else:
        upstream.close(abort=True)
    if exchange is None:
        return
    if exchange.probe is not None:
        exchange.probe.report_failure(why)
        return
    exchange.upstream = None
    server = upstream.server
    ctx = exchange.ctx
    if exchange.state is State.RESPONDING:
        ctx.log("warning", f"upstream {server.label} {why} mid-response")
        server_failed(exchange, "reset")
        exchange.abort()
        return
    pool = exchange.current_pool()
    index = None if pool is None else pool.index(server)
    if (
        upstream.reused
        and _safe_to_resend(exchange, upstream)
        and pool is not None
        and index is not None
        and pool.serves(index, ctx.now)
    ):
        # A pooled connection the backend had already closed: resend, unless the
        # server went down meanwhile; then it is an ordinary retry.
        exchange.tried.discard(server)
        exchange.move(Trigger.CONNECT)
        _open(exchange, pool.upstream, server)
        exchange.tried.add(server)
        upstream.reused = False
        return
    ctx.log("warning", f"upstream {server.label} {why} before responding")
    server_failed(exchange, "reset")
    route = exchange.route
    if route is not None and (
        exchange.method in route.retry.methods or upstream.written_total == 0
    ):
        _retry_or_fail(exchange, 502, "reset")
        return
    release(exchange)
    exchange.fail(502)


def _safe_to_resend(exchange: Exchange, upstream: UpstreamConn) -> bool:
    if exchange.replay is None:
        return False
    return exchange.method in IDEMPOTENT_METHODS or upstream.written_total == 0


def _retry_or_fail(exchange: Exchange, status: int, condition: str) -> None:
    """This try failed before any response byte reached the client.

    Try another server when the route allows it (see :func:`may_retry`), or answer
    ``status``. A failed connect fails over at once: nothing was sent, so there is
    nothing to back off from; every other retry waits a jittered backoff first.
    """
    exchange.upstream = None
    release(exchange)
    if may_retry(exchange, condition):
        if condition == "connect":
            connect(exchange)
        else:
            retry_later(exchange)
        return
    exchange.fail(status)


def retry_later(exchange: Exchange) -> None:
    """Try the next server after a backoff with jitter (the try is already released)."""
    route = exchange.route
    assert route is not None
    policy = route.retry
    ctx = exchange.ctx
    delay = backoff(
        exchange.attempts, base=policy.backoff_base, cap=policy.backoff_max, rng=ctx.rng
    )
    exchange.move(Trigger.BACK_OFF)
    _wait(exchange, TimerKind.RETRY_BACKOFF, ctx.now + delay)


def may_retry(exchange: Exchange, condition: str) -> bool:
    """Whether a failed try may be followed by another.

    ``connect`` (nothing was sent) and ``reset`` (the caller checked that resending
    cannot duplicate a side effect) always qualify; ``timeout`` and
    ``502``/``503``/``504`` only when the route lists them and the method is
    idempotent. Then: the body must still be in the replay buffer, the route's tries
    must not be used up, another server must be left, and, except after a failed
    connect (which costs the backends nothing), the upstream's retry budget must
    allow it.
    """
    route = exchange.route
    pool = exchange.current_pool()
    if route is None or pool is None or exchange.replay is None:
        return False
    policy = route.retry
    if exchange.attempts >= policy.tries or len(exchange.tried) >= len(pool.servers):
        return False
    if condition not in ("connect", "reset") and (
        condition not in policy.on or exchange.method not in policy.methods
    ):
        return False
    ctx = exchange.ctx
    if condition != "connect" and not pool.budget.try_retry(ctx.now):
        ctx.log("warning", f"upstream {pool.upstream.name}: retry budget exhausted")
        return False
    return True
