"""One request and its response, whichever protocol the client speaks.

Theory of operation
-------------------
An :class:`Exchange` talks to a downstream *stream* (:class:`~sansproxy.downstream.Stream`:
one HTTP/1.1 connection's current request, or one HTTP/2 stream, or a health probe's
sink) and to at most one upstream connection at a time. It never sees a codec. Its
state is one :class:`~sansproxy._exchange_states.State`, changed only through the
transition table in :mod:`sansproxy._exchange_states`.

Its path: the request head is checked against the limits and its path normalised;
it is routed; the request filters run (:mod:`sansproxy.filters`); a server is chosen
and an upstream connection taken or opened (:mod:`sansproxy.attempts`); the request
streams up; the response streams down through the response stages; the stages hear
that it finished.

Rules it keeps:

1. Every message is re-serialised from parsed events; the filters rebuild the
   header sections and the codecs choose the framing.
2. A request is sent again only when that cannot duplicate a side effect (see
   :mod:`sansproxy.attempts`).
3. Backpressure: when the upstream's unwritten bytes pass high water the stream
   holds the request body; when the client's side is backlogged the upstream is
   not read. An HTTP/2 client's window is reopened only for request bytes that
   reached the backend.
4. A peer's mistake becomes an HTTP error, a reset stream or a close, never an
   exception. Once the response has started, an upstream failure aborts the
   stream, so a truncated body is never presented as complete.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from sansproxy import attempts
from sansproxy._exchange_states import TRANSITIONS, IllegalTransition, State, Trigger
from sansproxy._flow import HOLD_PEER
from sansproxy._timers import TimerKind
from sansproxy.filters import OutgoingHead
from sansproxy.filters.cache import WAIT
from sansproxy.headers import is_upgrade
from sansproxy.local import error_page, local_headers
from sansproxy.routing import normalise_path, split_target
from sansproxy.tunnel import start_tunnel

if TYPE_CHECKING:
    from sansproxy._codec import Headers, InformationalHead, RequestHead, ResponseHead
    from sansproxy._context import Context
    from sansproxy.config import Route, Server
    from sansproxy.downstream import Stream
    from sansproxy.filters import Answer, ResponseStage
    from sansproxy.filters.cache import CacheJob
    from sansproxy.pool import Pool
    from sansproxy.probes import ProbeSink
    from sansproxy.tunnel import Tunnel
    from sansproxy.upstream import UpstreamConn

__all__ = ["Exchange"]


class Exchange:
    """One request and its response, from the request head to the last log line."""

    __slots__ = (
        "_order",
        "_resume_at",
        "attempts",
        "body_length",
        "body_stages",
        "cache",
        "counted",
        "credits",
        "ctx",
        "has_body",
        "hash_key",
        "head_request",
        "host",
        "http_version",
        "max_body",
        "method",
        "path",
        "pool",
        "probe",
        "query",
        "referer",
        "replay",
        "request_bytes",
        "request_complete",
        "request_headers",
        "request_trailers",
        "response_bytes",
        "route",
        "sent_at",
        "server",
        "settings",
        "stages",
        "started_at",
        "state",
        "status",
        "sticky",
        "stream",
        "target",
        "timeouts",
        "tried",
        "ttfb",
        "tunnel",
        "upgrade",
        "upstream",
        "upstream_head",
        "user_agent",
    )

    def __init__(
        self, ctx: Context, stream: Stream, head: RequestHead, *, probe: ProbeSink | None = None
    ) -> None:
        self.ctx = ctx
        self.settings = settings = ctx.settings
        """The configuration this exchange started under (a reload does not change it)."""
        self.stream = stream
        self.state = State.ROUTING
        self.method = head.method
        self.target = head.target
        self.http_version = head.http_version
        self.request_headers = head.headers
        self.body_length = head.body_length
        self.has_body = head.has_body
        self.head_request = head.method == b"HEAD"
        self.started_at = ctx.now
        self.timeouts = settings.timeouts
        """The route's timeouts (the global ones until a route is chosen)."""
        self.max_body = settings.limits.max_body_bytes
        self.path = b""
        self.query = b""
        self.host = b""
        self.referer = b""
        self.user_agent = b""
        self.route: Route | None = None
        self.pool: Pool[Exchange] | None = None
        self.probe = probe
        """Set for a health probe: the sink of its response, and its one server."""
        self.upgrade = False
        self.upstream_head: tuple[bytes, bytes, Headers] | None = None
        self.hash_key: bytes | None = None
        self.sticky: int | None = None
        self.counted = False
        """Whether the current try counts in the pool's outstanding requests."""
        self.attempts = 0
        """Tries handed to a server so far (resends of a stale pooled connection excluded)."""
        self.tried: set[Server] = set()
        self.server: Server | None = None
        """The server the last try went to (for the access log)."""
        self.upstream: UpstreamConn | None = None
        self.replay: list[bytes] | None = []
        """Request body pieces kept for a resend; None once they outgrew the buffer."""
        self.credits: deque[tuple[int, int]] | None = None
        """``(upstream bytes written by then, window credit)`` of request pieces on their way
        up; an HTTP/2 stream gets the credit back once the backend has them."""
        self.request_bytes = 0
        self.request_complete = False
        self.request_trailers: Headers = []
        self.response_bytes = 0
        self.status = 0
        self.sent_at: float | None = None
        self.ttfb: float | None = None
        self.stages: list[ResponseStage] | None = None
        """The response filters' stages, once the route is known (None until then)."""
        self.body_stages: list[ResponseStage] = []
        self.cache: CacheJob | None = None
        """The cache's part in this exchange, on a route that caches."""
        self.tunnel: Tunnel | None = None
        self._order = 0
        self._resume_at = 0
        if probe is None:
            ctx.exchanges += 1  # probes belong to the configuration, not to traffic

    @property
    def waiting(self) -> bool:
        """Whether the exchange waits for a server (in a queue, or a backoff)."""
        return self.state is State.QUEUED or self.state is State.BACKOFF

    @property
    def order(self) -> int:
        """Timer tie-break (an exchange owns a timer only while it waits for a server)."""
        if not self._order:
            self._order = self.ctx.internal_order()
        return self._order

    def on_timer(self, kind: TimerKind) -> None:
        """The exchange's wait (a queue, a backoff, another request's miss) is over."""
        if self.waiting:
            attempts.waiting_timeout(self, kind)
        elif self.state is State.CACHE_WAIT:
            self.cache_resumed(timed_out=True)

    def move(self, trigger: Trigger) -> None:
        """Change state by the transition table."""
        try:
            self.state = TRANSITIONS[self.state, trigger]
        except KeyError:
            raise IllegalTransition(
                f"exchange in state {self.state.name}: {trigger.name}"
            ) from None

    def current_pool(self) -> Pool[Exchange] | None:
        """The exchange's upstream as configured now (a reload may have replaced it)."""
        pool = self.pool
        return None if pool is None else self.ctx.settings.pools.get(pool.upstream.name)

    # -- the request -------------------------------------------------------------------

    def begin(self, head: RequestHead) -> None:
        """Check, route and filter the request, then find it a server."""
        status = self._check(head)
        if status:
            self.fail(status)
            return
        if head.path == b"*":
            self.path = b"*"
        else:
            raw_path, self.query = split_target(head.path)
            normalised = normalise_path(
                raw_path, merge_slashes=self.settings.config.routing.merge_slashes
            )
            if normalised is None:
                self.ctx.log(
                    "info", "bad request from client: invalid request path", self.stream.conn
                )
                self.fail(400)
                return
            self.path = normalised
        route = self._find_route(head)
        if route is None:
            self.answer(404, [], b"404 Not Found\n")
            return
        self.route = route
        if route.timeouts is not None:
            self.timeouts = route.timeouts
        if route.max_body_bytes is not None:
            self.max_body = route.max_body_bytes
        if route.upstream is not None:
            self.pool = self.settings.pools[route.upstream]
        self._start_stages()
        self.upgrade = is_upgrade(self.request_headers)
        self._filter(0)

    def _filter(self, start: int) -> None:
        """Run the request filters from ``start``; forward the request if none answers."""
        filters = self.settings.request_filters
        for index in range(start, len(filters)):
            answer = filters[index].on_request(self)
            if answer is not None:
                if answer is WAIT:
                    self._coalesce(index + 1)
                else:
                    self._take(answer)
                return
        self._forward()

    def _take(self, answer: Answer) -> None:
        """Give the client a filter's answer."""
        if answer.error:
            self.fail(answer.status)
        elif answer.stored:
            self.serve(answer.status, answer.reason, answer.headers, answer.body)
        else:
            self.answer(answer.status, answer.headers, answer.body)

    def _coalesce(self, resume_at: int) -> None:
        """Wait for the same URI's miss in flight (at most the route's ``coalesce_timeout``)."""
        self.move(Trigger.COALESCE)
        self._resume_at = resume_at
        route = self.route
        assert route is not None
        self.ctx.timers.set(self, TimerKind.CACHE_WAIT, self.ctx.now + route.cache.coalesce_timeout)

    def cache_resumed(self, *, timed_out: bool = False) -> None:
        """The miss this exchange waited for is over (or the wait is): look again, or go on."""
        if self.state is not State.CACHE_WAIT:
            return
        ctx = self.ctx
        if not timed_out:
            ctx.timers.cancel(self)
        self.move(Trigger.RESUME)
        job = self.cache
        assert job is not None
        answer = None if timed_out else job.resumed(self)
        if timed_out:
            job.stop_waiting(self)
        if answer is not None:
            self._take(answer)
            return
        self._filter(self._resume_at)

    def _forward(self) -> None:
        """The request goes to a server of its pool."""
        pool = self.pool
        assert pool is not None
        attempts.set_affinity(self, pool)
        stream = self.stream
        if stream.expects_continue:
            stream.send_continue()
        if self.has_body:
            stream.arm_body_timer(self.timeouts.client_body)
        pool.budget.record_request(self.ctx.now)
        attempts.connect(self)

    def _start_stages(self) -> None:
        """Ask each response filter whether it takes part in this exchange."""
        stages: list[ResponseStage] = []
        for response_filter in self.settings.response_filters:
            stage = response_filter.start(self)
            if stage is not None:
                stages.append(stage)
                if stage.transforms_body:
                    self.body_stages.append(stage)
        self.stages = stages

    def _check(self, head: RequestHead) -> int:
        """The error status a request head earns, or 0 when it may go on."""
        limits = self.settings.limits
        if len(head.target) > limits.max_uri_bytes:
            return 414
        headers = head.headers
        if len(headers) > limits.max_header_count:
            return 431
        # The HTTP/1 codec counts the head's bytes as they arrive; an HTTP/2 head is
        # measured as the HTTP/1.1 head it stands for (request line, "name: value" lines).
        self.host = head.authority
        size = len(head.method) + len(head.target) + 12
        for name, value in headers:
            size += len(name) + len(value) + 4
            if name == b"user-agent":
                self.user_agent = value
            elif name == b"referer":
                self.referer = value
        if size > limits.max_header_bytes and head.http_version == b"2.0":
            return 431
        if head.method == b"CONNECT":
            # A reverse proxy opens no tunnels to arbitrary hosts; of the extended CONNECT
            # protocols (RFC 8441) only WebSocket is known, mapped before it gets here.
            return 501 if head.protocol else 405
        return 0

    def _find_route(self, head: RequestHead) -> Route | None:
        """The route for the request: the first that matches, else the listener's default."""
        settings = self.settings
        if settings.config.routes:
            route = settings.routes.find(
                host=self.host, path=self.path, method=head.method, headers=self.request_headers
            )
            if route is not None:
                return route
        return settings.listener_routes[self.stream.listener]

    def answer(self, status: int, headers: Headers, body: bytes) -> None:
        """Answer from the proxy itself (a 404, a redirect, a fixed response).

        The client's connection stays open for its next request: the request body,
        if any, is read and dropped as it arrives.
        """
        self.move(Trigger.ANSWER)
        self.replay = None
        self.status = status
        headers = local_headers(self.settings, status, headers, body)
        if status in (204, 304):
            body = b""
        stream = self.stream
        expecting_continue = stream.expects_continue
        stream.respond(status, b"", headers, head_request=self.head_request)
        if body and not self.head_request:
            stream.body(body)
            self.response_bytes = len(body)
        stream.end([])
        self._answered(expecting_continue)

    def _answered(self, expecting_continue: bool) -> None:
        """A local answer went out: finish, or read and drop the rest of the request body."""
        stream = self.stream
        if self.request_complete or expecting_continue:
            # A client that expected 100 Continue may never send its body now: the
            # stream closes after the answer rather than wait for it.
            self.end(Trigger.FINISH)
            stream.finished()
        elif self.has_body:
            stream.arm_body_timer(self.timeouts.client_body)

    def serve(self, status: int, reason: bytes, headers: Headers, body: bytes) -> None:
        """Answer with a response the proxy holds (a stored one), through the response stages.

        The stored fields are kept as they are (their Content-Length included); the
        stages rewrite them as they would a backend's. Like :meth:`answer`, the
        client's connection stays open for its next request.
        """
        self.move(Trigger.ANSWER)
        self.replay = None
        outgoing = OutgoingHead(status=status, reason=reason, headers=headers, http_version=b"1.1")
        for stage in self.stages or ():
            stage.head(self, outgoing)
        self.status = outgoing.status
        stream = self.stream
        expecting_continue = stream.expects_continue
        stream.respond(
            outgoing.status, outgoing.reason, outgoing.headers, head_request=self.head_request
        )
        if not self.head_request and outgoing.status not in (204, 304):
            if body:
                self._down(body, 0)
            self._end_stages([])
        stream.end([])
        self._answered(expecting_continue)

    def request_body(self, data: bytes, credit: int) -> None:
        """A piece of the request body arrived."""
        self.request_bytes += len(data)
        limit = self.max_body
        if limit and self.request_bytes > limit:
            self.fail(413)
            return
        stream = self.stream
        stream.touch()
        replay = self.replay
        upstream = self.upstream
        if replay is not None:
            # While the exchange waits for a server (its reading paused), the body is
            # kept whole; it is forwarded when a server is found.
            if self.request_bytes <= self.settings.limits.retry_buffer_bytes or upstream is None:
                replay.append(data)
            else:
                self.replay = None
        if upstream is not None:
            self.ctx.send(upstream, upstream.codec.send_body(data))
            if credit:
                self.owe(upstream, credit)
        elif credit:
            if self.state is State.LOCAL or self.state is State.DONE:
                stream.consumed(credit)  # dropped: nothing to wait for
            else:
                self.owe(None, credit)

    def owe(self, upstream: UpstreamConn | None, credit: int) -> None:
        """Give ``credit`` back once the upstream has written what was sent so far."""
        if self.credits is None:
            self.credits = deque()
        mark = -1 if upstream is None else upstream.written_total + upstream.unwritten
        self.credits.append((mark, credit))

    def upstream_progressed(self, upstream: UpstreamConn) -> None:
        """The upstream wrote more: pay back the window credit of what it wrote."""
        credits = self.credits
        if not credits:
            return
        written = upstream.written_total
        paid = 0
        while credits and 0 <= credits[0][0] <= written:
            paid += credits.popleft()[1]
        if paid:
            self.stream.consumed(paid)

    def _rebase_credits(self, upstream: UpstreamConn) -> None:
        """A new upstream carries the request: what is owed is paid as it writes."""
        if self.credits:
            mark = upstream.written_total + upstream.unwritten
            self.credits = deque((mark, credit) for _, credit in self.credits)

    def request_end(self, trailers: Headers) -> None:
        """The request ended (with trailers where its framing carries them)."""
        self.request_complete = True
        self.request_trailers = trailers
        stream = self.stream
        stream.cancel_body_timer()
        if self.state is State.LOCAL:
            self.end(Trigger.FINISH)
            stream.finished()
            return
        upstream = self.upstream
        if upstream is not None:
            self.ctx.send(upstream, upstream.codec.send_end(trailers))
            if upstream.connected and self.state is State.FORWARDING:
                self.arm_response_timer()

    # -- the upstream ------------------------------------------------------------------

    def attach(self, upstream: UpstreamConn) -> None:
        """Write the request (as much of it as has arrived) to ``upstream``."""
        self.upstream = upstream
        upstream.exchange = self
        upstream.written_total = 0
        assert self.upstream_head is not None
        method, target, headers = self.upstream_head
        codec = upstream.codec
        ctx = self.ctx
        ctx.send(
            upstream,
            codec.send_request(
                method, target, headers, body_length=self.body_length, has_body=self.has_body
            ),
        )
        for piece in self.replay or ():
            ctx.send(upstream, codec.send_body(piece))
        if self.request_bytes > self.settings.limits.retry_buffer_bytes:
            self.replay = None  # Kept whole only while the exchange waited.
        if self.request_complete:
            ctx.send(upstream, codec.send_end(self.request_trailers))
        self._rebase_credits(upstream)
        self.sent_at = ctx.now
        if upstream.connected and self.request_complete:
            self.arm_response_timer()

    def arm_response_timer(self) -> None:
        """The request is out: the backend has ``upstream_header`` seconds to answer."""
        upstream = self.upstream
        if upstream is None or self.probe is not None:
            return  # a probe keeps its one deadline
        self.ctx.timers.set(
            upstream, TimerKind.UPSTREAM_HEADER, self.ctx.now + self.timeouts.upstream_header
        )

    def connected(self, upstream: UpstreamConn) -> None:
        """The new upstream connection for this try is up."""
        self.move(Trigger.CONNECTED)
        self.sent_at = self.ctx.now
        if self.request_complete:
            self.arm_response_timer()

    def _first_byte(self) -> None:
        if self.ttfb is None and self.sent_at is not None:
            self.ttfb = self.ctx.now - self.sent_at

    def informational(self, head: InformationalHead) -> None:
        """A 1xx from the backend: a switch to a tunnel, or passed on."""
        self._first_byte()
        if head.status == 101:
            upstream = self.upstream
            assert upstream is not None
            if self.upgrade and self.request_complete:
                start_tunnel(self, upstream, head)
            else:
                attempts.upstream_broke(upstream, "unrequested 101", lost=False)
            return
        if head.status == 100 or self.probe is not None:
            return  # 100 was answered by the proxy itself
        headers = self.settings.rules.client_response(
            head.headers, http_version=b"1.1", upgrade=False
        )
        self.stream.informational(head.status, head.reason, headers)

    def response_head(self, head: ResponseHead) -> None:
        """The backend's final response head."""
        self._first_byte()
        upstream = self.upstream
        assert upstream is not None
        ctx = self.ctx
        pool = self.current_pool()
        if pool is not None and self.server is not None and self.probe is None:
            if pool.counts_as_failure(head.status):
                attempts.server_failed(self, f"status {head.status}")
            else:
                index = pool.index(self.server)
                if index is not None:
                    pool.success(index, ctx.now)
        if head.status in (502, 503, 504) and attempts.may_retry(self, str(head.status)):
            ctx.log(
                "info", f"upstream {upstream.server.label} answered {head.status}; trying another"
            )
            upstream.close(abort=True)
            self.upstream = None
            attempts.release(self)
            self.ttfb = None
            attempts.retry_later(self)
            return
        self.move(Trigger.RESPOND)
        self.status = head.status
        self.replay = None
        if self.probe is None:
            ctx.timers.set(upstream, TimerKind.UPSTREAM_BODY, ctx.now + self.timeouts.upstream_body)
        outgoing = OutgoingHead(
            status=head.status,
            reason=head.reason,
            headers=head.headers,
            http_version=head.http_version,
        )
        for stage in self.stages or ():
            stage.head(self, outgoing)
        self.stream.respond(
            outgoing.status, outgoing.reason, outgoing.headers, head_request=self.head_request
        )

    def response_body(self, data: bytes) -> None:
        """A piece of the response body."""
        upstream = self.upstream
        assert upstream is not None
        upstream.touch()
        self._down(data, 0)

    def _down(self, data: bytes, start: int) -> None:
        """Pass a body piece through the body stages from ``start``, then to the client."""
        stages = self.body_stages
        for index in range(start, len(stages)):
            data = stages[index].body(self, data)
            if not data:
                return  # a stage keeps it for later (an encoder's block not yet full)
        self.response_bytes += len(data)  # as sent to the client, after any encoding
        self.stream.body(data)

    def _end_stages(self, trailers: Headers) -> None:
        """Each body stage ends; what one adds at the end goes through the stages after it."""
        for index, stage in enumerate(self.body_stages):
            extra = stage.end(self, trailers)
            if extra:
                self._down(extra, index + 1)

    def response_end(self, trailers: Headers) -> None:
        """The response is complete: pool or close the upstream, finish."""
        stream = self.stream
        self._end_stages(trailers)
        stream.end(trailers)
        upstream = self.upstream
        assert upstream is not None
        upstream.exchange = None
        self.upstream = None
        self.ctx.release(upstream, HOLD_PEER)
        upstream.finished_with(reuse=self.request_complete)
        self.end(Trigger.FINISH)
        stream.finished()

    # -- backpressure ------------------------------------------------------------------

    def client_backlogged(self) -> None:
        """The client is not taking the response fast enough: stop reading the upstream."""
        upstream = self.upstream
        if upstream is not None and not upstream.holds & HOLD_PEER:
            self.ctx.hold(upstream, HOLD_PEER)

    def client_drained(self) -> None:
        """The client caught up: read the upstream again."""
        upstream = self.upstream
        if upstream is not None and upstream.holds & HOLD_PEER:
            self.ctx.release(upstream, HOLD_PEER)

    def client_progressed(self) -> None:
        """The client took response bytes: the upstream's body timer starts again."""
        upstream = self.upstream
        if upstream is not None:
            upstream.touch()

    # -- endings -----------------------------------------------------------------------

    def fail(self, status: int, *, retry_after: int | None = None) -> None:
        """Answer with the proxy's error page for ``status`` (if a response can still start)."""
        upstream = self.upstream
        if upstream is not None:
            upstream.close(abort=True)
        stream = self.stream
        if not stream.can_respond:
            self.abort()
            return
        job = self.cache
        if job is not None and self.state is not State.DONE:
            status, stand_in = job.failing(self, status)
            if stand_in is not None:
                self.upstream = None
                attempts.stop_waiting(self)
                attempts.release(self)
                self.serve(stand_in.status, stand_in.reason, stand_in.headers, stand_in.body)
                return
        reason, headers, body = error_page(self.settings, status, retry_after=retry_after)
        stream.error(status, reason, headers, body, head_request=self.head_request)
        self.status = status
        self.response_bytes = 0 if self.head_request else len(body)
        self.upstream = None
        self.end(Trigger.FAIL)
        stream.failed()

    def abort(self) -> None:
        """The response cannot be completed: reset the client's stream (or connection)."""
        self.cancel()
        self.stream.aborted()

    def cancel(self) -> None:
        """The client is gone (or the response cannot go on): drop the upstream, record it."""
        upstream = self.upstream
        if upstream is not None:
            upstream.close(abort=True)
        if self.status == 0:
            self.status = 499
        self.end(Trigger.FAIL)

    def end(self, trigger: Trigger) -> None:
        """The exchange is over: stop waiting, free its server, tell the stages."""
        if self.state is State.DONE:
            return
        attempts.stop_waiting(self)
        if self.state is State.CACHE_WAIT:
            self.ctx.timers.cancel(self)
        self.move(trigger)
        if self.probe is None:
            self.ctx.exchanges -= 1
        stream = self.stream
        stream.detach(self)
        if self.credits:
            stream.consumed(sum(credit for _, credit in self.credits))
            self.credits = None
        attempts.release(self)
        if self.stages is None:
            self._start_stages()
        for stage in self.stages or ():
            stage.finished(self)
