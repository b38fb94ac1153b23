"""The Proxy: one pure, deterministic object that makes every decision.

Theory of operation
-------------------
An adapter feeds :class:`~sansproxy.events.Event` values to :meth:`Proxy.handle`
with the current monotonic time and carries out the returned
:class:`~sansproxy.commands.Command` list in order. Nothing else crosses the
boundary: no callbacks, no shared mutable state.

Rules the code below keeps:

1. A client connection carries one exchange at a time; pipelined requests
   wait in the codec's buffer and are answered in order (RFC 9112 §9.3.2).
2. Every message is re-serialised from parsed events; hop-by-hop headers are
   rebuilt by :mod:`sansproxy.headers` and framing is chosen by the proxy.
3. An upstream connection returns to the pool only after a cycle in which
   both messages ended cleanly with keep-alive on both sides.
4. A request is sent again only when that cannot duplicate a side effect:
   after a failed connect (nothing was sent), or when a reused connection
   closed before any response byte and the method is idempotent or no byte of
   the request reached the operating system (RFC 9110 §9.2.2).
5. Backpressure: when one side's unwritten bytes pass the high-water mark the
   other side stops being read, until they fall below the low-water mark.
6. A peer's mistake becomes an HTTP error or a close, never an exception.
   Once the response has started, an upstream failure aborts the client
   connection so a truncated body is never presented as complete.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, assert_never

from sansproxy._codec import (
    Body,
    CodecError,
    EndOfMessage,
    Headers,
    InformationalHead,
    PeerClosed,
    RequestHead,
    ResponseHead,
)
from sansproxy._state import (
    ClientConn,
    ClientState,
    Exchange,
    Probe,
    UpstreamConn,
    UpstreamState,
)
from sansproxy._timers import TimerKind, TimerTable
from sansproxy.commands import (
    AccessLog,
    AccessRecord,
    Close,
    Command,
    Log,
    LogLevel,
    OpenUpstream,
    PauseReading,
    ResumeReading,
    Send,
    ShutdownComplete,
    ShutdownWrite,
    UpstreamTls,
)
from sansproxy.config import Route
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
    UpstreamConnected,
    UpstreamFailed,
    Written,
)
from sansproxy.headers import HeaderRules, is_upgrade
from sansproxy.health import HealthChange, probe_delay, probe_passed
from sansproxy.pool import Choice, Pool, PoolView
from sansproxy.retries import backoff
from sansproxy.routing import (
    RouteMatch,
    RouteTable,
    normalise_host,
    normalise_path,
    rewrite_path,
    split_target,
)

if TYPE_CHECKING:
    from random import Random

    from sansproxy.config import ProxyConfig, Server, Upstream

__all__ = ["Proxy", "ProxyStatistics"]

IDEMPOTENT_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"})

_REASONS = {
    400: b"Bad Request",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    413: b"Content Too Large",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
    499: b"Client Closed Request",
    501: b"Not Implemented",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
}

_PARSING = frozenset({ClientState.WAITING, ClientState.ACTIVE})
"""Client states in which bytes from the client are HTTP messages."""

_DRAIN_OWNER = ConnId(0)
"""Timer owner of the shutdown drain deadline (connection ids start at 1; the proxy's
other timer owners, health probes and waiting exchanges, count down from -1)."""

_PROBE_BODY_CAP = 64 * 1024
"""Bytes of a probe response kept to look for ``body_contains``."""

_PLACEHOLDER = re.compile(r"\{(scheme|host|path|query|uri)\}")

_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 24\r\nconnection: close\r\n\r\n503 Service Unavailable\n"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxyStatistics:
    """Sizes of the core's tables; all zero once every connection is closed."""

    client_connections: int
    upstream_connections: int
    idle_upstream_connections: int
    exchanges: int
    timers: int


class Proxy:
    """A reverse proxy's whole decision-making, with no I/O.

    Args:
        config: the validated configuration.
        rng: the source of every random choice; seed it to replay a run.
    """

    def __init__(self, config: ProxyConfig, *, rng: Random) -> None:
        self._config = config
        self._rng = rng
        self._limits = config.limits
        self._timeouts = config.timeouts
        self._rules = HeaderRules(config.headers)
        self._pools: dict[str, Pool[Exchange]] = {
            name: Pool(upstream) for name, upstream in config.upstreams.items()
        }
        self._routes, self._listener_routes = _route_tables(config)
        self._servers = _all_servers(config)
        self._next_internal = 0
        self._probe_owners: dict[ConnId, tuple[str, int]] = {}
        self._probes_started = False
        self._waiting: dict[ConnId, Exchange] = {}
        self._clients: dict[ConnId, ClientConn] = {}
        self._upstreams: dict[ConnId, UpstreamConn] = {}
        self._idle: dict[Server, list[UpstreamConn]] = {}
        self._timers: TimerTable[ConnId] = TimerTable()
        self._next_id = 1
        self._now = float("-inf")
        self._wall = 0.0
        """Wall-clock seconds (Unix time) as of the latest call, for HTTP dates."""
        self._out: list[Command] = []
        self._busy = False
        self._shutting_down = False
        self._shutdown_reported = False
        self._exchanges = 0

    # -- public API ---------------------------------------------------------

    def allocate_id(self) -> ConnId:
        """A fresh id for a connection the adapter has just accepted."""
        conn = ConnId(self._next_id)
        self._next_id += 1
        return conn

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
        self._enter(now, wall)
        try:
            self._dispatch(event)
            self._check_shutdown_complete()
            return self._out
        finally:
            self._busy = False

    def handle_timeout(self, now: float, *, wall: float | None = None) -> list[Command]:
        """Fire every timer due at ``now``; call it at (or after) :meth:`next_deadline`.

        ``now`` and ``wall`` are as for :meth:`handle`.

        Raises:
            UsageError: time went backwards or the call is re-entrant.
        """
        self._enter(now, wall)
        try:
            for owner, kind in self._timers.expired(now):
                self._on_timer(owner, kind)
            self._check_shutdown_complete()
            return self._out
        finally:
            self._busy = False

    def next_deadline(self) -> float | None:
        """When :meth:`handle_timeout` next wants to be called, or None.

        The end of a server's ejection counts, so that its return is logged when
        it happens rather than whenever the next event arrives.
        """
        deadline = self._timers.next_deadline()
        for pool in self._pools.values():
            ejection = pool.health.next_deadline()
            if ejection is not None and (deadline is None or ejection < deadline):
                deadline = ejection
        return deadline

    def statistics(self) -> ProxyStatistics:
        """How many connections, exchanges and timers the core holds right now.

        Health probes are not counted: they belong to the configuration, not
        to traffic, and run for as long as the proxy does.
        """
        probes = [u for u in self._upstreams.values() if u.probe is not None]
        probe_timers = sum(1 for owner in self._probe_owners if self._timers.kind(owner))
        return ProxyStatistics(
            client_connections=len(self._clients),
            upstream_connections=len(self._upstreams) - len(probes),
            idle_upstream_connections=sum(len(v) for v in self._idle.values()),
            exchanges=self._exchanges,
            timers=len(self._timers) - probe_timers - len(probes),
        )

    def upstream_status(self) -> tuple[PoolView, ...]:
        """Every upstream's servers: health and its history, load, weights, queue, retries.

        As of the latest ``now`` the proxy was given.
        """
        return tuple(pool.view(self._now) for pool in self._pools.values())

    # -- dispatch -------------------------------------------------------------

    def _enter(self, now: float, wall: float | None) -> None:
        if self._busy:
            raise UsageError("re-entrant call into Proxy")
        if now < self._now:
            raise UsageError(f"time went backwards: {now} < {self._now}")
        self._busy = True
        if wall is None:
            wall = self._wall if self._now == float("-inf") else self._wall + (now - self._now)
        self._wall = wall
        self._now = now
        self._out = []
        if not self._probes_started:
            self._start_probes()
        for pool in self._pools.values():
            deadline = pool.health.next_deadline()
            if deadline is not None and deadline <= now:
                for change in pool.expire(now):
                    self._health_changed(pool, change)

    def _dispatch(self, event: Event) -> None:
        match event:
            case DataReceived():
                self._on_data(event)
            case Written():
                self._on_written(event.conn, event.nbytes)
            case ConnectionAccepted():
                self._on_accept(event)
            case EofReceived():
                self._on_eof(event.conn)
            case ConnectionLost():
                self._on_lost(event.conn)
            case UpstreamConnected():
                upstream = self._late_or_upstream(event.conn)
                if upstream is not None:
                    self._on_upstream_connected(upstream)
            case UpstreamFailed():
                upstream = self._late_or_upstream(event.conn)
                if upstream is not None:
                    self._on_upstream_failed(upstream, event.reason)
            case ShutdownRequested():
                self._on_shutdown(event.drain_timeout)
            case ConfigReloaded():
                self._on_reload(event.config)
            case _:
                assert_never(event)

    def _late_or_upstream(self, conn: ConnId) -> UpstreamConn | None:
        """The upstream ``conn``, or None for one the core already closed (a late report)."""
        upstream = self._upstreams.get(conn)
        if upstream is None and (conn in self._clients or not self._known(conn)):
            raise UsageError(f"unknown upstream connection {conn}")
        return upstream

    def _known(self, conn: ConnId) -> bool:
        return conn in self._clients or conn in self._upstreams or 0 < conn < self._next_id

    def _log(self, level: LogLevel, message: str, conn: ConnId | None = None) -> None:
        self._out.append(Log(level=level, message=message, conn=conn))

    # -- connection events ----------------------------------------------------

    def _on_accept(self, event: ConnectionAccepted) -> None:
        conn = event.conn
        if conn in self._clients or conn in self._upstreams or conn <= 0 or conn >= self._next_id:
            raise UsageError(f"connection id {conn} was not allocated or is in use")
        if not 0 <= event.listener < len(self._config.listeners):
            raise UsageError(f"no listener number {event.listener}")
        if self._shutting_down or len(self._clients) >= self._limits.max_client_connections:
            if not self._shutting_down:
                self._log("warning", "client connection limit reached", conn)
            self._out.append(Send(conn=conn, data=_BUSY))
            self._out.append(Close(conn=conn))
            return
        client = ClientConn(
            conn,
            listener=event.listener,
            peer=event.peer,
            tls=event.tls,
            max_header_bytes=self._limits.max_header_bytes,
        )
        self._clients[conn] = client
        self._timers.set(conn, TimerKind.CLIENT_HEADER, self._now + self._timeouts.client_header)

    def _on_data(self, event: DataReceived) -> None:
        conn = event.conn
        client = self._clients.get(conn)
        if client is not None:
            if client.eof:
                raise UsageError(f"data after EOF on connection {conn}")
            self._client_data(client, event.data)
            return
        upstream = self._upstreams.get(conn)
        if upstream is not None:
            self._upstream_data(upstream, event.data)
            return
        if not self._known(conn):
            raise UsageError(f"unknown connection {conn}")

    def _on_eof(self, conn: ConnId) -> None:
        client = self._clients.get(conn)
        if client is not None:
            if client.eof:
                raise UsageError(f"EOF reported twice on connection {conn}")
            client.eof = True
            if client.state is ClientState.TUNNEL:
                self._end_tunnel(client)
                return
            if client.state is ClientState.LINGER:
                self._close_client(client)
                return
            client.codec.receive(b"")
            self._pump_client(client)
            return
        upstream = self._upstreams.get(conn)
        if upstream is not None:
            if upstream.state is UpstreamState.TUNNEL:
                assert upstream.exchange is not None
                self._end_tunnel(upstream.exchange.client)
                return
            upstream.codec.receive(b"")
            self._pump_upstream(upstream)
            return
        if not self._known(conn):
            raise UsageError(f"unknown connection {conn}")

    def _on_lost(self, conn: ConnId) -> None:
        client = self._clients.pop(conn, None)
        if client is not None:
            self._timers.cancel(conn)
            exchange = client.exchange
            if exchange is not None:
                if exchange.upstream is not None:
                    self._drop_upstream(exchange.upstream, abort=True)
                if exchange.status == 0:
                    exchange.status = 499
                self._end_exchange(exchange)
            return
        upstream = self._upstreams.get(conn)
        if upstream is not None:
            if upstream.state is UpstreamState.TUNNEL:
                assert upstream.exchange is not None
                self._forget_upstream(upstream)
                self._end_tunnel(upstream.exchange.client)
                return
            self._upstream_broke(upstream, "connection lost", lost=True)
            return
        if not self._known(conn):
            raise UsageError(f"unknown connection {conn}")

    def _on_written(self, conn: ConnId, nbytes: int) -> None:
        side: ClientConn | UpstreamConn | None = self._clients.get(conn)
        if side is None:
            side = self._upstreams.get(conn)
        if side is None:
            if not self._known(conn):
                raise UsageError(f"unknown connection {conn}")
            return
        if nbytes < 0 or nbytes > side.unwritten:
            raise UsageError(f"Written({nbytes}) exceeds the {side.unwritten} bytes sent to {conn}")
        side.unwritten -= nbytes
        side.written_total += nbytes
        self._touch_idle_timer(side)
        peer = self._peer(side)
        if peer is not None:
            self._touch_idle_timer(peer)
            if peer.hold_peer and side.unwritten <= self._limits.buffer_low_water:
                peer.hold_peer = False
                self._sync_reading(peer)

    # -- flow control ------------------------------------------------------

    def _peer(self, side: ClientConn | UpstreamConn) -> ClientConn | UpstreamConn | None:
        exchange = side.exchange
        if exchange is None:
            return None
        if isinstance(side, ClientConn):
            return exchange.upstream
        return exchange.client

    def _send(self, side: ClientConn | UpstreamConn, data: bytes) -> None:
        if not data:
            return
        side.unwritten += len(data)
        if isinstance(side, UpstreamConn) and side.state is UpstreamState.CONNECTING:
            side.pending.append(data)
        else:
            out = self._out
            last = out[-1] if out else None
            if type(last) is Send and last.conn == side.conn:
                # One write per turn and connection: fewer syscalls and wake-ups.
                out[-1] = Send(conn=side.conn, data=last.data + data)
            else:
                out.append(Send(conn=side.conn, data=data))
        if side.unwritten > self._limits.buffer_high_water:
            peer = self._peer(side)
            if peer is not None and not peer.hold_peer:
                peer.hold_peer = True
                self._sync_reading(peer)

    def _sync_reading(self, side: ClientConn | UpstreamConn) -> None:
        want_paused = side.hold_peer or (isinstance(side, ClientConn) and side.hold_pipeline)
        if want_paused == side.reading_paused:
            return
        side.reading_paused = want_paused
        if want_paused:
            self._out.append(PauseReading(conn=side.conn))
        else:
            self._out.append(ResumeReading(conn=side.conn))

    def _touch_idle_timer(self, side: ClientConn | UpstreamConn) -> None:
        """Progress in either direction keeps a streaming exchange's idle timer alive."""
        kind = self._timers.kind(side.conn)
        if kind is TimerKind.CLIENT_BODY or kind is TimerKind.UPSTREAM_BODY:
            exchange = side.exchange
            timeouts = self._timeouts if exchange is None else exchange.timeouts
            idle = timeouts.client_body if kind is TimerKind.CLIENT_BODY else timeouts.upstream_body
            self._timers.set(side.conn, kind, self._now + idle)
        elif kind is TimerKind.TUNNEL_IDLE:
            self._timers.set(side.conn, kind, self._now + self._timeouts.tunnel_idle)

    # -- client side -------------------------------------------------------

    def _client_data(self, client: ClientConn, data: bytes) -> None:
        if client.state is ClientState.LINGER:
            return
        if client.state is ClientState.TUNNEL:
            exchange = client.exchange
            assert exchange is not None
            assert exchange.upstream is not None
            exchange.request_bytes += len(data)
            self._touch_idle_timer(client)
            self._send(exchange.upstream, data)
            return
        if client.state is ClientState.WAITING and (
            self._timers.kind(client.conn) is TimerKind.CLIENT_KEEPALIVE
        ):
            self._timers.set(
                client.conn, TimerKind.CLIENT_HEADER, self._now + self._timeouts.client_header
            )
        exchange = client.exchange
        if exchange is not None and exchange.request_complete:
            client.pipelined_bytes += len(data)
            if client.pipelined_bytes > self._limits.buffer_high_water and not client.hold_pipeline:
                client.hold_pipeline = True
                self._sync_reading(client)
        client.codec.receive(data)
        self._pump_client(client)

    def _pump_client(self, client: ClientConn) -> None:
        codec = client.codec
        while client.conn in self._clients and client.state in _PARSING:
            event = codec.next_event()
            if event is None:
                return
            if type(event) is Body:
                self._request_body(client, event.data)
            elif type(event) is RequestHead:
                self._request_head(client, event)
            elif type(event) is EndOfMessage:
                self._request_end(client, event.trailers)
            elif type(event) is PeerClosed:
                self._client_closed(client)
                return
            elif type(event) is CodecError:
                self._client_protocol_error(client, event)
                return
            else:  # pragma: no cover - a server codec yields no response heads
                raise AssertionError(f"unexpected request event {event!r}")

    def _client_closed(self, client: ClientConn) -> None:
        """The client closed its sending side.

        With a whole request in hand, a half-closed client still gets its
        response (``nc -N`` and scripted clients do this); the connection
        closes after it. Between requests, nothing is lost by closing.
        """
        exchange = client.exchange
        if exchange is not None and exchange.request_complete:
            return
        self._close_client(client)

    def _client_protocol_error(self, client: ClientConn, error: CodecError) -> None:
        if client.eof:
            # The client went away mid-message: nobody is left to read an answer.
            self._close_client(client)
            return
        self._log("info", f"bad request from client: {error.reason}", client.conn)
        self._fail(client, error.status_hint)

    def _request_head(self, client: ClientConn, head: RequestHead) -> None:
        self._timers.cancel(client.conn)
        exchange = Exchange(
            client,
            method=head.method,
            target=head.target,
            client_version=head.http_version,
            started_at=self._now,
            timeouts=self._timeouts,
            max_body=self._limits.max_body_bytes,
        )
        client.exchange = exchange
        client.state = ClientState.ACTIVE
        self._exchanges += 1
        status = self._validate_request(head, exchange)
        if status:
            self._fail(client, status)
            return
        if not head.target.startswith(b"/") and head.target != b"*":
            self._use_target_authority(head, exchange)
        target = self._origin_form(head.target)
        if target == b"*":
            path, query = target, b""
        else:
            raw_path, query = split_target(target)
            normalised = normalise_path(raw_path, merge_slashes=self._config.routing.merge_slashes)
            if normalised is None:
                self._log("info", "bad request from client: invalid request path", client.conn)
                self._fail(client, 400)
                return
            path = normalised
        route = self._route(client, exchange, path, head)
        if route is None:
            self._local_response(exchange, 404, [], b"404 Not Found\n")
            return
        exchange.route = route
        if route.respond is not None:
            respond = route.respond
            self._local_response(exchange, respond.status, list(respond.headers), respond.body)
            return
        if route.redirect is not None:
            location = self._redirect_location(route.redirect.location, exchange, path, query)
            self._local_response(exchange, route.redirect.status, [(b"location", location)], b"")
            return
        if route.timeouts is not None:
            exchange.timeouts = route.timeouts
        if route.max_body_bytes is not None:
            exchange.max_body = route.max_body_bytes
        if exchange.max_body and exchange.declared_length > exchange.max_body:
            self._fail(client, 413)
            return
        assert route.upstream is not None
        pool = self._pools[route.upstream]
        exchange.pool = pool
        group = pool.upstream
        if path != b"*":
            path = rewrite_path(path, strip_prefix=route.strip_prefix, add_prefix=route.add_prefix)
        exchange.upgrade = is_upgrade(head.headers)
        host_override = route.host_header or group.host_header
        headers = self._rules.upstream_request(
            head.headers,
            client_ip=client.peer[0],
            proto="https" if client.tls is not None else "http",
            http_version=head.http_version,
            host_override=host_override.encode() if host_override is not None else None,
            upgrade=exchange.upgrade,
        )
        if not any(name == b"host" for name, _ in headers):
            # An HTTP/1.0 client may omit Host; HTTP/1.1 backends require one.
            headers.append((b"host", group.servers[0].label.encode()))
        if exchange.chunked_request:
            headers.append((b"transfer-encoding", b"chunked"))
        exchange.upstream_head = (head.method, path + query, headers)
        self._affinity(exchange, pool, head.headers)
        if client.codec.waiting_for_100_continue:
            self._send(client, client.codec.send_informational(100, [], b"Continue"))
        if exchange.has_body:
            self._timers.set(
                client.conn, TimerKind.CLIENT_BODY, self._now + exchange.timeouts.client_body
            )
        pool.budget.record_request(self._now)
        self._connect_exchange(exchange)

    def _route(
        self, client: ClientConn, exchange: Exchange, path: bytes, head: RequestHead
    ) -> Route | None:
        """The route for a request: the first that matches, else the listener's default."""
        if self._config.routes:
            route = self._routes.find(
                host=exchange.host, path=path, method=head.method, headers=head.headers
            )
            if route is not None:
                return route
        return self._listener_routes[client.listener]

    def _redirect_location(
        self, template: str, exchange: Exchange, path: bytes, query: bytes
    ) -> bytes:
        values = {
            "scheme": "https" if exchange.client.tls is not None else "http",
            "host": normalise_host(exchange.host).decode("latin-1"),
            "path": path.decode("latin-1"),
            "query": query.decode("latin-1"),
            "uri": (path + query).decode("latin-1"),
        }
        return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template).encode("latin-1")

    def _local_response(
        self, exchange: Exchange, status: int, headers: Headers, body: bytes
    ) -> None:
        """Answer from the proxy itself (a 404, a redirect, a fixed response).

        The connection stays open for the next request: the request body, if
        any, is read and dropped as it arrives.
        """
        client = exchange.client
        exchange.local = True
        exchange.replay = None
        exchange.status = status
        if self._config.headers.server is not None:
            headers.append((b"server", self._config.headers.server.encode()))
        if status not in (204, 304):
            headers.append((b"content-length", b"%d" % len(body)))
        else:
            body = b""
        if self._shutting_down:
            headers.append((b"connection", b"close"))
        codec = client.codec
        expecting_continue = codec.waiting_for_100_continue
        data = codec.send_response(status, headers, head_request=exchange.head_request)
        if body and not exchange.head_request:
            data += codec.send_body(body)
            exchange.response_bytes = len(body)
        self._send(client, data + codec.send_end([]))
        if exchange.request_complete or expecting_continue:
            # A client that expected 100 Continue may never send its body now: close
            # after the answer rather than wait for it.
            self._end_exchange(exchange)
            self._next_request(client)
        elif exchange.has_body:
            self._timers.set(
                client.conn, TimerKind.CLIENT_BODY, self._now + exchange.timeouts.client_body
            )

    def _affinity(self, exchange: Exchange, pool: Pool[Exchange], headers: Headers) -> None:
        """The request's hash key and sticky server, from its address, headers or cookies."""
        group = pool.upstream
        hash_on = group.hash_on
        if hash_on is not None:
            if hash_on == "client_ip":
                exchange.hash_key = exchange.client.peer[0].encode()
            elif hash_on.startswith("header:"):
                name = hash_on[7:].encode()
                exchange.hash_key = next((v for n, v in headers if n == name), None)
            else:
                exchange.hash_key = _cookie(headers, hash_on[7:].encode())
        if group.sticky_cookie is not None:
            token = _cookie(headers, group.sticky_cookie.encode())
            if token is not None:
                exchange.sticky = pool.sticky_index(token)

    def _validate_request(self, head: RequestHead, exchange: Exchange) -> int:
        """The error status a request head earns, or 0 when it may be forwarded."""
        limits = self._limits
        if len(head.target) > limits.max_uri_bytes:
            return 414
        if len(head.headers) > limits.max_header_count:
            return 431
        # h11 bounds only a head that arrives in pieces; one read can hold a whole
        # oversized head, so measure the parsed one too.
        size = len(head.method) + len(head.target) + 12
        for name, value in head.headers:
            size += len(name) + len(value) + 4
        if size > limits.max_header_bytes:
            return 431
        if head.method == b"CONNECT":
            return 405
        content_length: bytes | None = None
        chunked = False
        for name, value in head.headers:
            if name == b"content-length":
                content_length = value
            elif name == b"transfer-encoding":
                chunked = True
            elif name == b"host":
                exchange.host = value
            elif name == b"user-agent":
                exchange.user_agent = value
            elif name == b"referer":
                exchange.referer = value
        if chunked and (content_length is not None or head.http_version < b"1.1"):
            # RFC 9112 §6.3 item 3 and §6.1: ambiguous framing (both lengths, or
            # chunked from an HTTP/1.0 peer) is a smuggling vector; refuse it.
            return 400
        exchange.chunked_request = chunked
        exchange.has_body = chunked or (content_length is not None and content_length != b"0")
        if content_length is not None:
            exchange.declared_length = int(content_length)
        if not (head.target.startswith(b"/") or head.target == b"*" or b"://" in head.target):
            return 400
        return 0

    @staticmethod
    def _use_target_authority(head: RequestHead, exchange: Exchange) -> None:
        """An absolute-form target's authority replaces Host (RFC 9112 §3.2.2)."""
        authority = head.target.split(b"://", 1)[1]
        for stop in (b"/", b"?"):
            authority = authority.split(stop, 1)[0]
        authority = authority.rpartition(b"@")[2]
        head.headers = [(n, v) for n, v in head.headers if n != b"host"]
        head.headers.append((b"host", authority))
        exchange.host = authority

    @staticmethod
    def _origin_form(target: bytes) -> bytes:
        """Turn an absolute-form target into origin-form (RFC 9112 §3.2.2)."""
        if target.startswith(b"/") or target == b"*":
            return target
        rest = target.split(b"://", 1)[1]
        slash = rest.find(b"/")
        query = rest.find(b"?")
        if slash == -1 or (query != -1 and query < slash):
            return b"/" + rest[query:] if query != -1 else b"/"
        return rest[slash:]

    def _request_body(self, client: ClientConn, data: bytes) -> None:
        exchange = client.exchange
        assert exchange is not None
        exchange.request_bytes += len(data)
        limit = exchange.max_body
        if limit and exchange.request_bytes > limit:
            if exchange.upstream is not None:
                self._drop_upstream(exchange.upstream, abort=True)
            self._fail(client, 413)
            return
        self._touch_idle_timer(client)
        replay = exchange.replay
        upstream = exchange.upstream
        if replay is not None:
            # While the exchange waits for a server (its reading paused), the body
            # is kept whole; it is forwarded when a server is found.
            if exchange.request_bytes <= self._limits.retry_buffer_bytes or upstream is None:
                replay.append(data)
            else:
                exchange.replay = None
        if upstream is not None:
            self._send(upstream, upstream.codec.send_body(data))

    def _request_end(self, client: ClientConn, trailers: Headers) -> None:
        exchange = client.exchange
        assert exchange is not None
        exchange.request_complete = True
        exchange.request_trailers = trailers
        if self._timers.kind(client.conn) is TimerKind.CLIENT_BODY:
            self._timers.cancel(client.conn)
        if exchange.local:
            self._end_exchange(exchange)
            self._next_request(client)
            return
        upstream = exchange.upstream
        if upstream is not None:
            self._send(upstream, upstream.codec.send_end(trailers))
            if upstream.state is UpstreamState.ACTIVE and not exchange.response_started:
                self._arm_response_timer(upstream)

    # -- upstream selection and connection -----------------------------------

    def _connect_exchange(self, exchange: Exchange) -> None:
        """Give the exchange a server and an upstream connection: a pooled one or a new one."""
        pool = self._current_pool(exchange)
        if pool is None:
            self._fail(exchange.client, 502)
            return
        tried = {i for server in exchange.tried if (i := pool.index(server)) is not None}
        choice = pool.choose(
            tried=tried, key=exchange.hash_key, sticky=exchange.sticky, rng=self._rng, now=self._now
        )
        if choice is Choice.ALL_BUSY:
            self._enqueue(exchange, pool)
            return
        if choice is Choice.NONE_AVAILABLE:
            if not exchange.tried:
                self._log("warning", f"upstream {pool.upstream.name}: no server is available")
            if exchange.tried:
                self._fail(exchange.client, 502)
            else:
                self._fail(exchange.client, 503, retry_after=1)
            return
        server = pool.servers[choice]
        exchange.tried.add(server)
        exchange.server = server
        exchange.attempts += 1
        pool.started(choice, self._now)
        exchange.counted = True
        idle = self._idle.get(server)
        while idle:
            upstream = idle.pop()
            self._timers.cancel(upstream.conn)
            upstream.state = UpstreamState.ACTIVE
            self._attach(exchange, upstream)
            return
        self._open_upstream(exchange, server)

    def _current_pool(self, exchange: Exchange) -> Pool[Exchange] | None:
        """The exchange's upstream as configured now (a reload may have replaced it)."""
        pool = exchange.pool
        return None if pool is None else self._pools.get(pool.upstream.name)

    def _release(self, exchange: Exchange) -> None:
        """The current try is over: it no longer counts against its server."""
        if not exchange.counted:
            return
        exchange.counted = False
        pool = self._current_pool(exchange)
        index = None if pool is None or exchange.server is None else pool.index(exchange.server)
        if pool is None or index is None:
            return
        pool.finished(index, self._now, latency=exchange.ttfb)
        if pool.queue:
            self._drain_queue(pool)

    def _enqueue(self, exchange: Exchange, pool: Pool[Exchange]) -> None:
        """Every available server is at its connection cap: wait for one, or 503."""
        group = pool.upstream
        retry_after = max(1, math.ceil(group.queue_timeout))
        if len(pool.queue) >= group.queue_size:
            self._log("warning", f"upstream {group.name}: every server busy and the queue full")
            self._fail(exchange.client, 503, retry_after=retry_after)
            return
        pool.queue.append(exchange)
        self._wait(exchange, TimerKind.QUEUE_WAIT, self._now + group.queue_timeout)

    def _drain_queue(self, pool: Pool[Exchange]) -> None:
        """A server has room again: the longest-waiting requests go first."""
        for _ in range(len(pool.queue)):
            if not pool.queue or not pool.has_room(self._now):
                return
            exchange = pool.queue.popleft()
            self._stop_waiting(exchange)
            self._connect_exchange(exchange)

    def _wait(self, exchange: Exchange, kind: TimerKind, deadline: float) -> None:
        """Park an exchange (backoff or queue) until ``deadline``; stop reading its body."""
        if exchange.wait is None:
            self._next_internal -= 1
            exchange.wait = ConnId(self._next_internal)
            self._waiting[exchange.wait] = exchange
        self._timers.set(exchange.wait, kind, deadline)
        client = exchange.client
        if not exchange.request_complete and not client.hold_peer:
            client.hold_peer = True
            self._sync_reading(client)

    def _stop_waiting(self, exchange: Exchange) -> None:
        owner = exchange.wait
        if owner is None:
            return
        exchange.wait = None
        self._timers.cancel(owner)
        del self._waiting[owner]
        client = exchange.client
        if client.hold_peer and client.exchange is exchange:
            client.hold_peer = False
            self._sync_reading(client)

    def _waiting_timeout(self, exchange: Exchange, kind: TimerKind) -> None:
        self._stop_waiting(exchange)
        if kind is TimerKind.RETRY_BACKOFF:
            self._connect_exchange(exchange)
            return
        pool = exchange.pool
        assert pool is not None
        for queue in (pool.queue, self._pools.get(pool.upstream.name, pool).queue):
            if exchange in queue:
                queue.remove(exchange)
        group = pool.upstream
        self._log("warning", f"upstream {group.name}: no server free within the queue timeout")
        self._fail(exchange.client, 503, retry_after=max(1, math.ceil(group.queue_timeout)))

    def _open_upstream(self, exchange: Exchange, server: Server) -> None:
        upstream = UpstreamConn(self.allocate_id(), server)
        self._upstreams[upstream.conn] = upstream
        pool = exchange.pool
        assert pool is not None
        self._out.append(
            OpenUpstream(
                conn=upstream.conn,
                host=server.host,
                port=server.port,
                tls=_upstream_tls(pool.upstream, server),
            )
        )
        self._timers.set(
            upstream.conn,
            TimerKind.UPSTREAM_CONNECT,
            self._now + exchange.timeouts.upstream_connect,
        )
        self._attach(exchange, upstream)

    def _attach(self, exchange: Exchange, upstream: UpstreamConn) -> None:
        """Write the request (as much as has arrived) to the upstream connection."""
        exchange.upstream = upstream
        upstream.exchange = exchange
        upstream.written_total = 0
        assert exchange.upstream_head is not None
        method, target, headers = exchange.upstream_head
        codec = upstream.codec
        self._send(upstream, codec.send_request(method, target, headers))
        for piece in exchange.replay or ():
            self._send(upstream, codec.send_body(piece))
        if exchange.request_bytes > self._limits.retry_buffer_bytes:
            exchange.replay = None  # Kept whole only while the exchange waited.
        if exchange.request_complete:
            self._send(upstream, codec.send_end(exchange.request_trailers))
        exchange.sent_at = self._now
        if upstream.state is UpstreamState.ACTIVE and exchange.request_complete:
            self._arm_response_timer(upstream)

    def _arm_response_timer(self, upstream: UpstreamConn) -> None:
        exchange = upstream.exchange
        timeouts = self._timeouts if exchange is None else exchange.timeouts
        self._timers.set(
            upstream.conn, TimerKind.UPSTREAM_HEADER, self._now + timeouts.upstream_header
        )

    def _on_upstream_connected(self, upstream: UpstreamConn) -> None:
        if upstream.state is not UpstreamState.CONNECTING:
            raise UsageError(f"connection {upstream.conn} reported connected twice")
        upstream.state = UpstreamState.ACTIVE
        if upstream.probe is None:
            self._timers.cancel(upstream.conn)
        if upstream.pending:
            self._out.append(Send(conn=upstream.conn, data=b"".join(upstream.pending)))
            upstream.pending = []
        exchange = upstream.exchange
        if exchange is not None:
            exchange.sent_at = self._now
        if exchange is not None and exchange.request_complete and not exchange.response_started:
            self._arm_response_timer(upstream)

    def _on_upstream_failed(self, upstream: UpstreamConn, reason: str) -> None:
        if upstream.state is not UpstreamState.CONNECTING:
            raise UsageError(f"connection {upstream.conn} failed after connecting")
        self._forget_upstream(upstream)
        if upstream.probe is not None:
            self._probe_done(upstream.probe, ok=False, reason=f"connect failed: {reason}")
            return
        self._log(
            "warning", f"upstream {upstream.server.label} connect failed: {reason}", upstream.conn
        )
        exchange = upstream.exchange
        if exchange is not None:
            self._server_failed(exchange, "connect")
            self._retry_or_fail(exchange, 502, "connect")

    def _server_failed(self, exchange: Exchange, kind: str) -> None:
        """Count a failure of real traffic against the exchange's server (passive checks)."""
        pool = self._current_pool(exchange)
        index = None if pool is None or exchange.server is None else pool.index(exchange.server)
        if pool is not None and index is not None:
            change = pool.failure(index, kind, self._now)
            if change is not None:
                self._health_changed(pool, change)

    def _retry_or_fail(self, exchange: Exchange, status: int, condition: str) -> None:
        """This try failed before any response byte reached the client.

        Try another server when the route allows it (see :meth:`_may_retry`),
        or answer ``status``. A failed connect fails over at once: nothing
        was sent, so there is nothing to back off from; every other retry
        waits a jittered backoff first.
        """
        exchange.upstream = None
        self._release(exchange)
        if self._may_retry(exchange, condition):
            if condition == "connect":
                self._connect_exchange(exchange)
            else:
                self._retry_later(exchange)
            return
        self._fail(exchange.client, status)

    def _retry_later(self, exchange: Exchange) -> None:
        """Try the next server after a backoff with jitter (the try is already released)."""
        route = exchange.route
        assert route is not None
        policy = route.retry
        delay = backoff(
            exchange.attempts, base=policy.backoff_base, cap=policy.backoff_max, rng=self._rng
        )
        self._wait(exchange, TimerKind.RETRY_BACKOFF, self._now + delay)

    def _may_retry(self, exchange: Exchange, condition: str) -> bool:
        """Whether a failed try may be followed by another (rule 4).

        ``connect`` (nothing was sent) and ``reset`` (the caller checked that
        resending cannot duplicate a side effect) always qualify; ``timeout``
        and ``502``/``503``/``504`` only when the route lists them and the
        method is idempotent. Then: the body must still be in the replay
        buffer, the route's tries must not be used up, another server must be
        left, and, except after a failed connect (which costs the backends
        nothing), the upstream's retry budget must allow it.
        """
        route = exchange.route
        pool = self._current_pool(exchange)
        if route is None or pool is None or exchange.replay is None:
            return False
        policy = route.retry
        if exchange.attempts >= policy.tries or len(exchange.tried) >= len(pool.servers):
            return False
        if condition not in ("connect", "reset") and (
            condition not in policy.on or exchange.method not in policy.methods
        ):
            return False
        if condition != "connect" and not pool.budget.try_retry(self._now):
            self._log("warning", f"upstream {pool.upstream.name}: retry budget exhausted")
            return False
        return True

    def _stick(self, exchange: Exchange, pool: Pool[Exchange], headers: Headers) -> None:
        """Pin the client to the server that answered, unless its cookie already does."""
        assert pool.upstream.sticky_cookie is not None
        index = None if exchange.server is None else pool.index(exchange.server)
        if index is None or index == exchange.sticky:
            return
        cookie = b"%s=%s; Path=/; HttpOnly; SameSite=Lax" % (
            pool.upstream.sticky_cookie.encode(),
            pool.sticky_token(index),
        )
        headers.append((b"set-cookie", cookie))

    # -- upstream side -----------------------------------------------------

    def _upstream_data(self, upstream: UpstreamConn, data: bytes) -> None:
        if upstream.state is UpstreamState.TUNNEL:
            exchange = upstream.exchange
            assert exchange is not None
            exchange.response_bytes += len(data)
            self._touch_idle_timer(exchange.client)
            self._send(exchange.client, data)
            return
        if upstream.state is UpstreamState.CONNECTING:
            raise UsageError(f"data on connection {upstream.conn} before UpstreamConnected")
        upstream.codec.receive(data)
        self._pump_upstream(upstream)

    def _pump_upstream(self, upstream: UpstreamConn) -> None:
        if upstream.probe is not None:
            self._pump_probe(upstream, upstream.probe)
            return
        codec = upstream.codec
        while upstream.conn in self._upstreams and upstream.state is not UpstreamState.TUNNEL:
            event = codec.next_event()
            if event is None:
                return
            exchange = upstream.exchange
            if exchange is None:
                # An idle pooled connection said something: it is no longer usable.
                self._drop_upstream(upstream, abort=not isinstance(event, PeerClosed))
                return
            if type(event) is Body:
                self._response_body(exchange, event.data)
            elif type(event) is ResponseHead:
                self._response_head(exchange, event)
            elif type(event) is EndOfMessage:
                self._response_end(exchange, event.trailers)
            elif type(event) is InformationalHead:
                self._informational(exchange, event)
            elif type(event) is PeerClosed:
                self._upstream_broke(upstream, "closed the connection", lost=False)
                return
            elif type(event) is CodecError:
                self._upstream_broke(upstream, f"protocol error: {event.reason}", lost=False)
                return
            else:  # pragma: no cover - a client codec yields no request heads
                raise AssertionError(f"unexpected response event {event!r}")

    def _first_byte(self, exchange: Exchange) -> None:
        if exchange.ttfb is None and exchange.sent_at is not None:
            exchange.ttfb = self._now - exchange.sent_at

    def _informational(self, exchange: Exchange, head: InformationalHead) -> None:
        self._first_byte(exchange)
        client = exchange.client
        if head.status == 101:
            if exchange.upgrade and exchange.request_complete:
                self._start_tunnel(exchange, head)
            else:
                assert exchange.upstream is not None
                self._upstream_broke(exchange.upstream, "unrequested 101", lost=False)
            return
        if head.status == 100 or client.codec.client_http_version < b"1.1":
            return  # 100 was answered by the proxy; HTTP/1.0 clients get no 1xx.
        headers = self._rules.client_response(head.headers, http_version=b"1.1", upgrade=False)
        self._send(client, client.codec.send_informational(head.status, headers, head.reason))

    def _response_head(self, exchange: Exchange, head: ResponseHead) -> None:
        self._first_byte(exchange)
        upstream = exchange.upstream
        assert upstream is not None
        pool = self._current_pool(exchange)
        if pool is not None and pool.counts_as_failure(head.status):
            self._server_failed(exchange, f"status {head.status}")
        elif pool is not None and exchange.server is not None:
            index = pool.index(exchange.server)
            if index is not None:
                pool.success(index, self._now)
        if head.status in (502, 503, 504) and self._may_retry(exchange, str(head.status)):
            self._log(
                "info", f"upstream {upstream.server.label} answered {head.status}; trying another"
            )
            self._drop_upstream(upstream, abort=True)
            exchange.upstream = None
            self._release(exchange)
            exchange.ttfb = None
            self._retry_later(exchange)
            return
        exchange.response_started = True
        exchange.status = head.status
        exchange.replay = None
        self._timers.set(
            upstream.conn, TimerKind.UPSTREAM_BODY, self._now + exchange.timeouts.upstream_body
        )
        client = exchange.client
        response_headers = head.headers
        if any(name == b"transfer-encoding" for name, _ in response_headers) and any(
            name == b"content-length" for name, _ in response_headers
        ):
            # Transfer-Encoding overrides Content-Length; a proxy must drop the
            # latter rather than pass on a length that is not the framing, and
            # such a response smells of smuggling: never reuse that connection
            # (RFC 9112 §6.3 item 3).
            response_headers = [(n, v) for n, v in response_headers if n != b"content-length"]
            upstream.reusable = False
        headers = self._rules.client_response(
            response_headers, http_version=head.http_version, upgrade=False
        )
        if pool is not None and pool.upstream.sticky_cookie is not None:
            self._stick(exchange, pool, headers)
        if self._shutting_down or client.eof:
            headers.append((b"connection", b"close"))
        self._send(
            client,
            client.codec.send_response(
                head.status, headers, reason=head.reason, head_request=exchange.head_request
            ),
        )

    def _response_body(self, exchange: Exchange, data: bytes) -> None:
        exchange.response_bytes += len(data)
        assert exchange.upstream is not None
        self._touch_idle_timer(exchange.upstream)
        client = exchange.client
        self._send(client, client.codec.send_body(data))

    def _response_end(self, exchange: Exchange, trailers: Headers) -> None:
        client = exchange.client
        self._send(client, client.codec.send_end(trailers))
        upstream = exchange.upstream
        assert upstream is not None
        upstream.exchange = None
        exchange.upstream = None
        upstream.hold_peer = False
        self._sync_reading(upstream)
        if (
            exchange.request_complete
            and upstream.reusable
            and not self._shutting_down
            and upstream.codec.start_next_cycle()
        ):
            self._pool(upstream)
        else:
            self._drop_upstream(upstream, abort=False)
        self._end_exchange(exchange)
        self._next_request(client)

    def _pool(self, upstream: UpstreamConn) -> None:
        if upstream.server not in self._servers:  # removed by a reload
            self._drop_upstream(upstream, abort=False)
            return
        idle = self._idle.setdefault(upstream.server, [])
        if len(idle) >= self._limits.max_idle_per_server:
            self._drop_upstream(upstream, abort=False)
            return
        upstream.state = UpstreamState.IDLE
        upstream.reused = True
        idle.append(upstream)
        self._timers.set(
            upstream.conn,
            TimerKind.UPSTREAM_KEEPALIVE,
            self._now + self._timeouts.upstream_keepalive,
        )

    def _upstream_broke(self, upstream: UpstreamConn, why: str, *, lost: bool) -> None:
        """The upstream closed, reset or misbehaved; decide what the client sees."""
        exchange = upstream.exchange
        if lost:
            self._forget_upstream(upstream)
        else:
            self._drop_upstream(upstream, abort=True)
        if upstream.probe is not None:
            self._probe_done(upstream.probe, ok=False, reason=why)
            return
        if exchange is None:
            return
        exchange.upstream = None
        server = upstream.server
        if exchange.response_started:
            self._log("warning", f"upstream {server.label} {why} mid-response")
            self._server_failed(exchange, "reset")
            self._abort_client(exchange.client)
            return
        pool = self._current_pool(exchange)
        index = None if pool is None else pool.index(server)
        if (
            upstream.reused
            and self._safe_to_resend(exchange, upstream)
            and pool is not None
            and index is not None
            and pool.serves(index, self._now)
        ):
            # A pooled connection the backend had already closed: resend (rule 4),
            # unless the server went down meanwhile; then it is an ordinary retry.
            exchange.tried.discard(server)
            self._open_upstream(exchange, server)
            exchange.tried.add(server)
            upstream.reused = False
            return
        self._log("warning", f"upstream {server.label} {why} before responding")
        self._server_failed(exchange, "reset")
        route = exchange.route
        if route is not None and (
            exchange.method in route.retry.methods or upstream.written_total == 0
        ):
            self._retry_or_fail(exchange, 502, "reset")
            return
        self._release(exchange)
        self._fail(exchange.client, 502)

    @staticmethod
    def _safe_to_resend(exchange: Exchange, upstream: UpstreamConn) -> bool:
        if exchange.replay is None:
            return False
        return exchange.method in IDEMPOTENT_METHODS or upstream.written_total == 0

    # -- tunnels -----------------------------------------------------------

    def _start_tunnel(self, exchange: Exchange, head: InformationalHead) -> None:
        client = exchange.client
        upstream = exchange.upstream
        assert upstream is not None
        exchange.status = 101
        exchange.response_started = True
        headers = self._rules.client_response(head.headers, http_version=b"1.1", upgrade=True)
        self._send(client, client.codec.send_informational(101, headers, head.reason))
        client.state = ClientState.TUNNEL
        upstream.state = UpstreamState.TUNNEL
        self._timers.cancel(upstream.conn)
        self._timers.set(client.conn, TimerKind.TUNNEL_IDLE, self._now + self._timeouts.tunnel_idle)
        self._send(upstream, client.codec.trailing_data)
        self._send(client, upstream.codec.trailing_data)
        if client.eof:
            self._end_tunnel(client)

    def _end_tunnel(self, client: ClientConn) -> None:
        """Either side of a tunnel closed: flush what is buffered and close both."""
        exchange = client.exchange
        if exchange is not None:
            if exchange.upstream is not None:
                self._drop_upstream(exchange.upstream, abort=False)
            self._end_exchange(exchange)
        self._close_client(client)

    # -- ending things -------------------------------------------------------

    def _next_request(self, client: ClientConn) -> None:
        """The response is complete: keep the client for the next request or close it."""
        client.exchange = None
        client.pipelined_bytes = 0
        if client.hold_pipeline:
            client.hold_pipeline = False
        client.hold_peer = False
        self._sync_reading(client)
        if self._shutting_down or not client.codec.start_next_cycle():
            if client.eof or client.codec.their_message_complete:
                self._close_client(client)
            else:
                self._linger(client)  # The backend answered before the upload ended.
            return
        client.state = ClientState.WAITING
        self._timers.set(
            client.conn, TimerKind.CLIENT_KEEPALIVE, self._now + self._timeouts.client_keepalive
        )
        self._pump_client(client)

    def _end_exchange(self, exchange: Exchange) -> None:
        """Write the access-log record of an exchange that is over."""
        client = exchange.client
        if client.exchange is exchange:
            client.exchange = None
        self._exchanges -= 1
        if exchange.wait is not None:
            self._stop_waiting(exchange)
            pool = self._current_pool(exchange)
            if pool is not None and exchange in pool.queue:
                pool.queue.remove(exchange)
        self._release(exchange)
        server = exchange.server
        self._out.append(
            AccessLog(
                record=AccessRecord(
                    client=client.peer,
                    method=exchange.method.decode("latin-1"),
                    target=exchange.target.decode("latin-1"),
                    http_version=exchange.client_version.decode("latin-1"),
                    status=exchange.status,
                    request_bytes=exchange.request_bytes,
                    response_bytes=exchange.response_bytes,
                    upstream=None if server is None else f"{server.host}:{server.port}",
                    duration=self._now - exchange.started_at,
                    upstream_ttfb=exchange.ttfb,
                    host=exchange.host.decode("latin-1"),
                    referer=exchange.referer.decode("latin-1"),
                    user_agent=exchange.user_agent.decode("latin-1"),
                )
            )
        )

    def _fail(self, client: ClientConn, status: int, *, retry_after: int | None = None) -> None:
        """Answer with a generic error (if a response can still start) and close."""
        exchange = client.exchange
        if exchange is not None and exchange.upstream is not None:
            self._drop_upstream(exchange.upstream, abort=True)
        if not client.codec.can_respond:
            self._abort_client(client)
            return
        reason = _REASONS.get(status, b"Error")
        body = b"%d %s\n" % (status, reason)
        headers: Headers = []
        if self._config.headers.server is not None:
            headers.append((b"server", self._config.headers.server.encode()))
        if retry_after is not None:
            headers.append((b"retry-after", b"%d" % retry_after))
        head_request = exchange is not None and exchange.head_request
        self._send(
            client,
            client.codec.send_error(status, reason, body, headers, head_request=head_request),
        )
        if exchange is None:
            # Refused before a request could be parsed: log it all the same.
            exchange = Exchange(
                client,
                method=b"-",
                target=b"-",
                client_version=client.codec.client_http_version,
                started_at=self._now,
                timeouts=self._timeouts,
                max_body=self._limits.max_body_bytes,
            )
            self._exchanges += 1
        exchange.status = status
        exchange.response_bytes = 0 if head_request else len(body)
        exchange.upstream = None
        self._end_exchange(exchange)
        if client.eof or client.codec.their_message_complete:
            self._close_client(client)
        else:
            self._linger(client)

    def _linger(self, client: ClientConn) -> None:
        """Drain what the client is still sending before closing (RFC 9112 §9.6).

        Closing a socket with unread input resets it, and a reset can destroy
        the error response before the client reads it.
        """
        client.state = ClientState.LINGER
        client.hold_peer = client.hold_pipeline = False
        self._sync_reading(client)
        self._out.append(ShutdownWrite(conn=client.conn))
        self._timers.set(
            client.conn, TimerKind.CLIENT_LINGER, self._now + self._timeouts.client_linger
        )

    def _abort_client(self, client: ClientConn) -> None:
        exchange = client.exchange
        if exchange is not None:
            if exchange.upstream is not None:
                self._drop_upstream(exchange.upstream, abort=True)
            if exchange.status == 0:
                exchange.status = 499
            self._end_exchange(exchange)
        self._close_client(client, abort=True)

    def _close_client(self, client: ClientConn, *, abort: bool = False) -> None:
        if self._clients.pop(client.conn, None) is None:
            return
        self._timers.cancel(client.conn)
        exchange = client.exchange
        if exchange is not None:
            if exchange.upstream is not None:
                self._drop_upstream(exchange.upstream, abort=True)
            if exchange.status == 0:
                exchange.status = 499
            self._end_exchange(exchange)
        self._out.append(Close(conn=client.conn, abort=abort))

    def _drop_upstream(self, upstream: UpstreamConn, *, abort: bool) -> None:
        """Close an upstream connection we no longer want."""
        if self._forget_upstream(upstream):
            self._out.append(Close(conn=upstream.conn, abort=abort))

    def _forget_upstream(self, upstream: UpstreamConn) -> bool:
        """Remove every trace of an upstream connection; False if it was already gone."""
        if self._upstreams.pop(upstream.conn, None) is None:
            return False
        self._timers.cancel(upstream.conn)
        if upstream.state is UpstreamState.IDLE:
            idle = self._idle.get(upstream.server)
            if idle is not None:
                idle.remove(upstream)
                if not idle:
                    del self._idle[upstream.server]
        exchange = upstream.exchange
        if exchange is not None and exchange.upstream is upstream:
            exchange.upstream = None
        return True

    # -- timers ------------------------------------------------------------

    def _on_timer(self, owner: ConnId, kind: TimerKind) -> None:
        if kind is TimerKind.DRAIN:
            self._log("warning", "drain deadline passed: closing remaining connections")
            for remaining in list(self._clients.values()):
                self._abort_client(remaining)
            for leftover in list(self._upstreams.values()):
                self._drop_upstream(leftover, abort=True)
            return
        client = self._clients.get(owner)
        if client is not None:
            self._client_timeout(client, kind)
            return
        upstream = self._upstreams.get(owner)
        if upstream is not None:
            self._upstream_timeout(upstream, kind)
            return
        exchange = self._waiting.get(owner)
        if exchange is not None:
            self._waiting_timeout(exchange, kind)
            return
        probe = self._probe_owners.get(owner)
        if probe is not None:
            self._send_probe(owner, *probe)

    def _client_timeout(self, client: ClientConn, kind: TimerKind) -> None:
        if kind is TimerKind.CLIENT_HEADER:
            self._log("info", "client request header timeout", client.conn)
            self._fail(client, 408)
        elif kind is TimerKind.CLIENT_BODY:
            self._log("info", "client body timeout", client.conn)
            self._fail(client, 408)
        elif kind is TimerKind.TUNNEL_IDLE:
            self._end_tunnel(client)
        else:
            self._close_client(client)

    def _upstream_timeout(self, upstream: UpstreamConn, kind: TimerKind) -> None:
        exchange = upstream.exchange
        where = f"upstream {upstream.server.label}"
        if upstream.probe is not None:
            self._drop_upstream(upstream, abort=True)
            self._probe_done(upstream.probe, ok=False, reason="timed out")
        elif kind is TimerKind.UPSTREAM_KEEPALIVE or exchange is None:
            self._drop_upstream(upstream, abort=False)
        elif kind is TimerKind.UPSTREAM_CONNECT:
            self._log("warning", f"{where} connect timeout", upstream.conn)
            self._drop_upstream(upstream, abort=True)
            self._server_failed(exchange, "connect timeout")
            self._retry_or_fail(exchange, 504, "connect")
        elif kind is TimerKind.UPSTREAM_HEADER:
            self._log("warning", f"{where} response header timeout", upstream.conn)
            self._drop_upstream(upstream, abort=True)
            self._server_failed(exchange, "timeout")
            self._retry_or_fail(exchange, 504, "timeout")
        else:
            self._log("warning", f"{where}: response body stalled (no progress)", upstream.conn)
            self._abort_client(exchange.client)

    # -- reload ------------------------------------------------------------

    def _on_reload(self, config: ProxyConfig) -> None:
        if len(config.listeners) != len(self._config.listeners):
            raise UsageError("a reload cannot add or remove listeners")
        self._config = config
        self._limits = config.limits
        self._timeouts = config.timeouts
        self._rules = HeaderRules(config.headers)
        pools: dict[str, Pool[Exchange]] = {}
        for name, group in config.upstreams.items():
            old = self._pools.get(name)
            if old is not None and _same_upstream(old.upstream, group):
                pools[name] = old  # Unchanged: health, load and queue carry on.
            else:
                pools[name] = Pool(group, previous=old)
                if old is not None:
                    pools[name].queue.extend(old.queue)
        removed = [old for name, old in self._pools.items() if name not in pools]
        self._pools = pools
        for old in removed:
            while old.queue:
                self._waiting_timeout(old.queue[0], TimerKind.QUEUE_WAIT)
        self._routes, self._listener_routes = _route_tables(config)
        self._servers = _all_servers(config)
        for server, idle in list(self._idle.items()):
            if server not in self._servers:
                for upstream in list(idle):
                    self._drop_upstream(upstream, abort=False)
        self._stop_probes()
        self._start_probes()
        self._log("debug", "configuration reloaded")

    # -- health ------------------------------------------------------------

    def _health_changed(self, pool: Pool[Exchange], change: HealthChange) -> None:
        state = "up" if change.healthy else "down"
        self._log(
            "info" if change.healthy else "warning",
            f"upstream {pool.upstream.name}: server {change.server} is {state}: {change.reason}",
        )

    def _start_probes(self) -> None:
        """Schedule each server's first probe at a random point of its first interval."""
        self._probes_started = True
        if self._shutting_down:
            return
        for name, pool in self._pools.items():
            check = pool.upstream.health_check
            if check is None:
                continue
            for index in range(len(pool.servers)):
                self._next_internal -= 1
                owner = ConnId(self._next_internal)
                self._probe_owners[owner] = (name, index)
                first = self._rng.uniform(0, check.interval)
                self._timers.set(owner, TimerKind.PROBE, self._now + first)

    def _stop_probes(self) -> None:
        for owner in self._probe_owners:
            self._timers.cancel(owner)
        self._probe_owners.clear()
        for upstream in list(self._upstreams.values()):
            if upstream.probe is not None:
                self._drop_upstream(upstream, abort=True)

    def _send_probe(self, owner: ConnId, name: str, index: int) -> None:
        """Open a connection of its own to the server and ask the check's request."""
        pool = self._pools[name]
        check = pool.upstream.health_check
        assert check is not None
        server = pool.servers[index]
        upstream = UpstreamConn(self.allocate_id(), server, Probe(name, index, owner))
        self._upstreams[upstream.conn] = upstream
        self._out.append(
            OpenUpstream(
                conn=upstream.conn,
                host=server.host,
                port=server.port,
                tls=_upstream_tls(pool.upstream, server),
            )
        )
        self._timers.set(upstream.conn, TimerKind.PROBE_TIMEOUT, self._now + check.timeout)
        host = check.host or pool.upstream.host_header or server.label
        headers = [
            (b"host", host.encode()),
            (b"user-agent", b"sansproxy-health-check"),
            (b"connection", b"close"),
        ]
        codec = upstream.codec
        self._send(
            upstream, codec.send_request(check.method.encode(), check.path.encode(), headers)
        )
        self._send(upstream, codec.send_end([]))

    def _pump_probe(self, upstream: UpstreamConn, probe: Probe) -> None:
        while upstream.conn in self._upstreams:
            event = upstream.codec.next_event()
            if event is None:
                return
            if type(event) is ResponseHead:
                probe.status = event.status
            elif type(event) is Body:
                room = _PROBE_BODY_CAP - len(probe.body)
                if room > 0:
                    probe.body += event.data[:room]
            elif type(event) is EndOfMessage:
                self._drop_upstream(upstream, abort=False)
                pool = self._pools.get(probe.pool)
                check = None if pool is None else pool.upstream.health_check
                if check is None:
                    return
                ok = probe_passed(check, probe.status, probe.body)
                if ok or not check.expect_status[0] <= probe.status <= check.expect_status[1]:
                    reason = f"status {probe.status}"
                else:
                    reason = "expected text not in the body"
                self._probe_done(probe, ok=ok, reason=reason)
                return
            elif type(event) is PeerClosed or type(event) is CodecError:
                what = "closed before responding" if type(event) is PeerClosed else "bad response"
                self._upstream_broke(upstream, what, lost=False)
                return

    def _probe_done(self, probe: Probe, *, ok: bool, reason: str) -> None:
        """Count a probe's outcome and schedule the server's next one."""
        if self._probe_owners.get(probe.owner) != (probe.pool, probe.index):
            return  # Reloaded or shutting down since the probe was sent.
        pool = self._pools[probe.pool]
        check = pool.upstream.health_check
        assert check is not None
        change = pool.probed(probe.index, ok, reason, self._now)
        if change is not None:
            self._health_changed(pool, change)
        self._timers.set(probe.owner, TimerKind.PROBE, self._now + probe_delay(check, self._rng))

    # -- shutdown ----------------------------------------------------------

    def _on_shutdown(self, drain_timeout: float | None) -> None:
        if self._shutting_down:
            return
        self._shutting_down = True
        self._stop_probes()
        timeout = self._timeouts.drain if drain_timeout is None else drain_timeout
        for client in list(self._clients.values()):
            if client.state is ClientState.WAITING and client.exchange is None:
                self._close_client(client)
        for idle in list(self._idle.values()):
            for upstream in list(idle):
                self._drop_upstream(upstream, abort=False)
        if self._clients or self._upstreams:
            self._timers.set(_DRAIN_OWNER, TimerKind.DRAIN, self._now + timeout)

    def _check_shutdown_complete(self) -> None:
        if (
            self._shutting_down
            and not self._shutdown_reported
            and not self._clients
            and not self._upstreams
        ):
            self._shutdown_reported = True
            self._timers.cancel(_DRAIN_OWNER)
            self._out.append(ShutdownComplete())


def _route_tables(config: ProxyConfig) -> tuple[RouteTable[Route], list[Route | None]]:
    """The configured routes, and each listener's default route (its ``upstream``)."""
    table = RouteTable([(route.match, route) for route in config.routes])
    defaults: list[Route | None] = [
        None
        if listener.upstream is None
        else Route(name=f"listener-{i}", match=RouteMatch(), upstream=listener.upstream)
        for i, listener in enumerate(config.listeners)
    ]
    return table, defaults


def _upstream_tls(group: Upstream, server: Server) -> UpstreamTls | None:
    """How to speak TLS to an ``https://`` server of ``group``."""
    if not server.tls:
        return None
    return UpstreamTls(
        server_name=group.server_name or server.host,
        verify=group.tls_verify,
        ca_file=group.ca_file,
    )


def _cookie(headers: Headers, name: bytes) -> bytes | None:
    """The value of cookie ``name`` in the request's Cookie fields (RFC 6265 section 5.4)."""
    for field, value in headers:
        if field != b"cookie":
            continue
        for pair in value.split(b";"):
            key, sep, cookie = pair.strip().partition(b"=")
            if sep and key == name:
                return cookie.strip(b'"')
    return None


def _same_upstream(old: Upstream, new: Upstream) -> bool:
    """Whether a reload left an upstream as it was, servers' balancing settings included.

    A server's weight, backup flag and cap are not part of its equality (so that its
    pooled connections survive a change of them), but a change of them is a change.
    """
    settings = [(s.weight, s.backup, s.max_connections) for s in old.servers]
    return old == new and settings == [(s.weight, s.backup, s.max_connections) for s in new.servers]


def _all_servers(config: ProxyConfig) -> frozenset[Server]:
    """Every backend server the configuration names."""
    return frozenset(server for up in config.upstreams.values() for server in up.servers)
