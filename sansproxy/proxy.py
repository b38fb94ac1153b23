"""The Proxy: the one object an adapter drives; events in, commands out.

Theory of operation
-------------------
An adapter feeds :class:`~sansproxy.events.Event` values to :meth:`Proxy.handle`
with the current monotonic and wall-clock time and carries out the returned
:class:`~sansproxy.commands.Command` list in order. Nothing else crosses the
boundary: no callbacks, no shared mutable state. Every call is one complete turn.

The Proxy itself decides little: it checks the adapter keeps the contract,
dispatches each event to the connection it names (a client connection of
:mod:`sansproxy.downstream`, an upstream connection of :mod:`sansproxy.upstream`),
fires due timers at their typed owners, and runs the proxy-wide steps: accepting
a connection, a reload, shutdown. Where each rule lives is listed in
``docs/architecture.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, assert_never

from sansproxy._context import Context
from sansproxy._settings import Settings
from sansproxy._timers import TimerKind
from sansproxy.attempts import waiting_timeout
from sansproxy.cache import CacheCount
from sansproxy.commands import Close, Command, Send, ShutdownComplete
from sansproxy.downstream.accept import accept, refusal
from sansproxy.downstream.not_tls import NotTlsConnection
from sansproxy.errors import UsageError
from sansproxy.events import (
    ConfigReloaded,
    ConnectionAccepted,
    ConnectionLost,
    ConnId,
    DataReceived,
    EofReceived,
    Event,
    ShutdownRequested,
    TlsHandshakeFailed,
    UpstreamConnected,
    UpstreamFailed,
    Written,
)
from sansproxy.handshakes import HandshakeLog, TlsStatistics
from sansproxy.probes import Probes

if TYPE_CHECKING:
    from random import Random

    from sansproxy.compression.counters import CompressionCount
    from sansproxy.config import ProxyConfig
    from sansproxy.downstream import Downstream
    from sansproxy.pool import PoolView
    from sansproxy.upstream import UpstreamConn

__all__ = ["Proxy", "ProxyStatistics"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxyStatistics:
    """Sizes of the core's tables; all zero once every connection is closed."""

    client_connections: int
    upstream_connections: int
    idle_upstream_connections: int
    exchanges: int
    timers: int


class _Drain:
    """The timer owner of the shutdown drain deadline."""

    __slots__ = ("proxy",)

    order = 0

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy

    def on_timer(self, kind: TimerKind) -> None:
        """The drain time is over: cut what is left."""
        self.proxy._drain_expired()


class Proxy:
    """A reverse proxy's whole decision-making, with no I/O.

    Args:
        config: the validated configuration.
        rng: the source of every random choice; seed it to replay a run.
    """

    def __init__(self, config: ProxyConfig, *, rng: Random) -> None:
        self._ctx = Context(Settings(config), rng)
        self._probes = Probes(self._ctx)
        self._drain = _Drain(self)
        self._busy = False
        self._shutdown_reported = False
        self._handshakes = HandshakeLog()

    # -- public API ---------------------------------------------------------------------

    def allocate_id(self) -> ConnId:
        """A fresh id for a connection the adapter has just accepted."""
        return self._ctx.allocate_id()

    def handle(self, event: Event, now: float, *, wall: float | None = None) -> list[Command]:
        """Take in one event and return every command it causes, in order.

        Args:
            event: what happened.
            now: monotonic seconds, for every timer; it never goes back.
            wall: wall-clock seconds since the Unix epoch, for HTTP dates (Date, Age,
                Expires); it may jump either way. When omitted, the core moves its last
                wall time on by the monotonic time that passed (starting from 0.0), so
                tests and replays stay deterministic.

        Raises:
            UsageError: the adapter broke the contract (unknown connection,
                data after EOF, time going backwards, a re-entrant call).
                Anything else is a bug in sansproxy.
        """
        ctx = self._enter(now, wall)
        try:
            self._dispatch(event)
            ctx.flush_deferred()
            self._check_shutdown_complete()
            return ctx.out
        finally:
            self._busy = False

    def handle_timeout(self, now: float, *, wall: float | None = None) -> list[Command]:
        """Fire every timer due at ``now``; call it at (or after) :meth:`next_deadline`.

        ``now`` and ``wall`` are as for :meth:`handle`.

        Raises:
            UsageError: time went backwards or the call is re-entrant.
        """
        ctx = self._enter(now, wall)
        try:
            for owner, kind in ctx.timers.expired(now):
                owner.on_timer(kind)
            ctx.flush_deferred()
            self._check_shutdown_complete()
            return ctx.out
        finally:
            self._busy = False

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timeout` next wants to be called, or None.

        The end of a server's ejection counts, so that its return is logged when
        it happens rather than whenever the next event arrives.
        """
        deadline = self._ctx.timers.next_deadline()
        for pool in self._ctx.settings.pools.values():
            ejection = pool.health.next_deadline()
            if ejection is not None and (deadline is None or ejection < deadline):
                deadline = ejection
        return deadline

    def statistics(self) -> ProxyStatistics:
        """How many connections, exchanges and timers the core holds right now.

        Health probes are not counted: they belong to the configuration, not
        to traffic, and run for as long as the proxy does.
        """
        ctx = self._ctx
        probes = [u for u in ctx.upstreams.values() if _is_probe(u)]
        probe_timers = sum(1 for s in self._probes.schedules if ctx.timers.kind(s) is not None)
        return ProxyStatistics(
            client_connections=len(ctx.clients),
            upstream_connections=len(ctx.upstreams) - len(probes),
            idle_upstream_connections=len(ctx.idle),
            exchanges=ctx.exchanges,
            timers=len(ctx.timers) - probe_timers - len(probes),
        )

    def compression_statistics(self) -> dict[str, CompressionCount]:
        """What response compression did since the start, by coding (copies)."""
        return {coding: replace(count) for coding, count in self._ctx.compression.items()}

    def cache_statistics(self) -> dict[str, CacheCount]:
        """What each caching route's cache did since it was made, by route name (copies).

        A route's cache (and its counters) carries over a reload that keeps its settings.
        """
        result: dict[str, CacheCount] = {}
        for name, cache in self._ctx.settings.caches.items():
            store = cache.store
            result[name] = replace(
                cache.count, bytes=store.bytes, objects=len(store), evictions=store.evictions
            )
        return result

    def tls_statistics(self) -> TlsStatistics:
        """TLS connections that never reached HTTP, since the start.

        Failed handshakes (:class:`~sansproxy.events.TlsHandshakeFailed`) and plain HTTP
        sent to a TLS listener (``ConnectionAccepted(not_tls=True)``).
        """
        return self._handshakes.statistics()

    def upstream_status(self) -> tuple[PoolView, ...]:
        """Every upstream's servers: health and its history, load, weights, queue, retries.

        As of the latest ``now`` the proxy was given.
        """
        ctx = self._ctx
        return tuple(pool.view(ctx.now) for pool in ctx.settings.pools.values())

    # -- dispatch -----------------------------------------------------------------------

    def _enter(self, now: float, wall: float | None) -> Context:
        if self._busy:
            raise UsageError("re-entrant call into Proxy")
        ctx = self._ctx
        if now < ctx.now:
            raise UsageError(f"time went backwards: {now} < {ctx.now}")
        self._busy = True
        if wall is None:
            wall = ctx.wall if ctx.now == float("-inf") else ctx.wall + (now - ctx.now)
        ctx.wall = wall
        ctx.now = now
        ctx.out = []
        if not self._probes.started:
            self._probes.start()
        for pool in ctx.settings.pools.values():
            deadline = pool.health.next_deadline()
            if deadline is not None and deadline <= now:
                for change in pool.expire(now):
                    ctx.health_changed(pool, change)
        return ctx

    def _dispatch(self, event: Event) -> None:
        match event:
            case DataReceived():
                target = self._connection(event.conn)
                if target is not None:
                    target.on_data(event.data)
            case Written():
                target = self._connection(event.conn)
                if target is not None:
                    target.on_written(event.nbytes)
            case ConnectionAccepted():
                self._accept(event)
            case EofReceived():
                target = self._connection(event.conn)
                if target is not None:
                    target.on_eof()
            case ConnectionLost():
                target = self._connection(event.conn)
                if target is not None:
                    target.on_lost()
            case UpstreamConnected():
                upstream = self._late_or_upstream(event.conn)
                if upstream is not None:
                    upstream.on_connected()
            case UpstreamFailed():
                upstream = self._late_or_upstream(event.conn)
                if upstream is not None:
                    upstream.on_failed(event.reason)
            case ShutdownRequested():
                self._shutdown(event.drain_timeout)
            case ConfigReloaded():
                self._reload(event.config)
            case TlsHandshakeFailed():
                self._handshake_failed(event)
            case _:
                assert_never(event)

    def _connection(self, conn: ConnId) -> Downstream | UpstreamConn | None:
        """The connection ``conn``; None for one the core already let go of (a late event).

        Raises:
            UsageError: ``conn`` was never allocated.
        """
        ctx = self._ctx
        client = ctx.clients.get(conn)
        if client is not None:
            return client
        upstream = ctx.upstreams.get(conn)
        if upstream is None and not ctx.known(conn):
            raise UsageError(f"unknown connection {conn}")
        return upstream

    def _late_or_upstream(self, conn: ConnId) -> UpstreamConn | None:
        """The upstream ``conn``, or None for one the core already closed (a late report)."""
        ctx = self._ctx
        upstream = ctx.upstreams.get(conn)
        if upstream is None and (conn in ctx.clients or not ctx.known(conn)):
            raise UsageError(f"unknown upstream connection {conn}")
        return upstream

    # -- proxy-wide steps ---------------------------------------------------------------

    def _accept(self, event: ConnectionAccepted) -> None:
        ctx = self._ctx
        conn = event.conn
        if conn in ctx.clients or conn in ctx.upstreams or not ctx.known(conn):
            raise UsageError(f"connection id {conn} was not allocated or is in use")
        if not 0 <= event.listener < len(ctx.config.listeners):
            raise UsageError(f"no listener number {event.listener}")
        if ctx.shutting_down or len(ctx.clients) >= ctx.settings.limits.max_client_connections:
            if not ctx.shutting_down:
                ctx.log("warning", "client connection limit reached", conn)
            ctx.emit(Send(conn=conn, data=refusal(ctx, event)))
            ctx.emit(Close(conn=conn))
            return
        if event.not_tls:
            listener = ctx.config.listeners[event.listener]
            if not listener.tls or event.tls is not None:
                raise UsageError("not_tls is only for a TLS listener's connection without TLS")
            peer = f"{_bracketed(event.peer[0])}:{event.peer[1]}"
            line = self._handshakes.plain_on_tls(
                f"plain HTTP (not TLS) from {peer} on listener {event.listener}: answered 400",
                ctx.now,
            )
            if line is not None:
                ctx.log("debug", line, conn)
            ctx.clients[conn] = NotTlsConnection(
                ctx, conn, listener=event.listener, peer=event.peer
            )
            return
        ctx.clients[conn] = accept(ctx, event)

    def _handshake_failed(self, event: TlsHandshakeFailed) -> None:
        ctx = self._ctx
        if not 0 <= event.listener < len(ctx.config.listeners):
            raise UsageError(f"no listener number {event.listener}")
        peer = f"{_bracketed(event.peer[0])}:{event.peer[1]}"
        why = f": {event.reason}" if event.reason else ""
        line = self._handshakes.handshake_failed(
            f"TLS handshake from {peer} on listener {event.listener} failed{why}", ctx.now
        )
        if line is not None:
            ctx.log("debug", line)

    def _reload(self, config: ProxyConfig) -> None:
        ctx = self._ctx
        previous = ctx.settings
        if len(config.listeners) != len(previous.config.listeners):
            raise UsageError("a reload cannot add or remove listeners")
        ctx.settings = settings = Settings(config, previous)
        for old in settings.removed_pools(previous):
            while old.queue:
                waiting_timeout(old.queue[0], TimerKind.QUEUE_WAIT)
        ctx.idle.close_all(keep=settings.servers)
        self._probes.stop()
        self._probes.start()
        ctx.log("debug", "configuration reloaded")

    def _shutdown(self, drain_timeout: float | None) -> None:
        ctx = self._ctx
        if ctx.shutting_down:
            return
        ctx.shutting_down = True
        self._probes.stop()
        timeout = ctx.settings.timeouts.drain if drain_timeout is None else drain_timeout
        for client in list(ctx.clients.values()):
            client.shutdown()
        ctx.idle.close_all()
        if ctx.clients or ctx.upstreams:
            ctx.timers.set(self._drain, TimerKind.DRAIN, ctx.now + timeout)

    def _drain_expired(self) -> None:
        ctx = self._ctx
        ctx.log("warning", "drain deadline passed: closing remaining connections")
        for client in list(ctx.clients.values()):
            client.abort()
        for leftover in list(ctx.upstreams.values()):
            leftover.close(abort=True)

    def _check_shutdown_complete(self) -> None:
        ctx = self._ctx
        if (
            ctx.shutting_down
            and not self._shutdown_reported
            and not ctx.clients
            and not ctx.upstreams
        ):
            self._shutdown_reported = True
            ctx.timers.cancel(self._drain)
            ctx.emit(ShutdownComplete())


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _is_probe(upstream: UpstreamConn) -> bool:
    exchange = upstream.exchange
    return exchange is not None and exchange.probe is not None
