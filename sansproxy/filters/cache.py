"""The HTTP cache in an exchange: the lookup (a request filter) and the store (a response stage).

The rules are in :mod:`sansproxy.cache`; this module applies them to one request.
On a route with the cache enabled, :class:`CacheStore` gives each exchange a
:class:`CacheJob` before the request filters run, and :class:`CacheLookup`
(after the route actions) asks it to look the request up:

* a usable stored response is served from the store (``Exchange.serve``); it
  passes the later response stages like any response (compression included);
* a stale one that must be checked is revalidated: the client's conditional
  fields are replaced by the stored response's validators, and a 304 turns back
  into the stored response (or into a 304 for the client's own condition);
* a miss is forwarded; while it is in flight, further misses for the same URI
  wait for it (request coalescing) up to ``coalesce_timeout``;
* an unsafe method that succeeds invalidates its URI and its Location and
  Content-Location URIs of the same origin (RFC 9111 §4.4);
* ``purge_method`` from ``purge_from`` removes every response of a URI.

The answers built from the store are in :mod:`.cache_answers`. As the first response
stage, the job sees the backend's response as it was
sent: it stores a copy of what it may keep while the response streams on to the
client, and it writes ``Cache-Status`` into the client's copy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from sansproxy.cache.dates import format_http_date
from sansproxy.cache.directives import cache_control
from sansproxy.cache.freshness import header_value
from sansproxy.cache.keys import primary_key, variant, vary_names
from sansproxy.cache.lookup import age_of, decide, stale_if_error
from sansproxy.cache.ranges import requested_range
from sansproxy.cache.status import CacheStatus
from sansproxy.cache.storable import refusal
from sansproxy.cache.store import StoredResponse, entry_size
from sansproxy.cache.targeted import response_directives
from sansproxy.cache.validation import (
    CONDITIONALS,
    storable_headers,
    updated_headers,
    validators,
)
from sansproxy.filters import Answer, OutgoingHead, ResponseStage
from sansproxy.filters.cache_answers import (
    conditional_holds,
    not_modified,
    not_modified_fields,
    partial,
    purge_allowed,
    purged,
    served,
    served_fields,
)
from sansproxy.filters.cache_refresh import start_refresh

if TYPE_CHECKING:
    from sansproxy._codec import Headers
    from sansproxy.cache import RouteCache
    from sansproxy.cache.lookup import Decision
    from sansproxy.exchange import Exchange

__all__ = ["WAIT", "CacheJob", "CacheLookup", "CacheStore"]

WAIT: Final = Answer(status=0)
"""What the lookup returns when the request waits for another one's response."""
_SAFE = frozenset((b"GET", b"HEAD", b"OPTIONS", b"TRACE"))
_STATUS_NAME = b"sansproxy"


class CacheStore:
    """The response filter: every client exchange of a caching route gets a job."""

    __slots__ = ()

    def start(self, exchange: Exchange) -> ResponseStage | None:
        """A job for each exchange of a route with the cache on (never for probes)."""
        route = exchange.route
        if route is None or not route.cache.enabled or exchange.probe is not None:
            return None
        cache = exchange.settings.caches.get(route.name)
        if cache is None:
            return None
        job = CacheJob(cache)
        exchange.cache = job
        return job


class CacheLookup:
    """The request filter: answers from the store, or lets the request go on."""

    __slots__ = ()

    def on_request(self, exchange: Exchange) -> Answer | None:
        """Serve, wait, or prepare the request for revalidation or storing."""
        job = exchange.cache
        return None if job is None else job.lookup(exchange)


class CacheJob(ResponseStage):
    """What the cache does for one exchange, from lookup to the end of the response."""

    __slots__ = (
        "body_size",
        "cache",
        "client_headers",
        "entry",
        "key",
        "leading",
        "may_wait",
        "pieces",
        "ranged",
        "refresh_after",
        "replacement",
        "request_time",
        "served",
        "serving",
        "status",
        "unsafe",
        "validating",
        "waiting_on",
    )

    transforms_body = True

    def __init__(self, cache: RouteCache) -> None:
        self.cache = cache
        self.key = b""
        self.status = CacheStatus()
        self.request_time = 0.0
        self.client_headers: Headers | None = None
        """The client's request fields, when the ones sent upstream differ (a revalidation)."""
        self.validating: StoredResponse | None = None
        self.entry: StoredResponse | None = None
        """The response being stored (its body gathered in ``pieces``)."""
        self.pieces: list[bytes] | None = None
        self.body_size = 0
        self.replacement: bytes | None = None
        """A stored body sent instead of the backend's (after a 304, or stale-if-error)."""
        self.serving = False
        self.served: StoredResponse | None = None
        """The stored response whose whole body this exchange sends (for compression)."""
        self.unsafe = False
        self.waiting_on: bytes | None = None
        """The key whose miss in flight this exchange waits for (coalescing)."""
        self.leading = False
        """Whether other misses for the key wait for this one's response."""
        self.may_wait = True
        self.ranged = False
        """A range request forwarded: its (partial) response is not stored."""
        self.refresh_after = False
        """Start a background refresh once the stale response is out."""

    # -- the request -------------------------------------------------------------------

    def lookup(self, exchange: Exchange) -> Answer | None:
        """The request filter's work (see the module docstring)."""
        cache = self.cache
        settings = cache.settings
        method = exchange.method
        scheme = b"https" if exchange.stream.tls is not None else b"http"
        self.key = key = primary_key(
            scheme=scheme, host=exchange.host, target=exchange.path + exchange.query
        )
        if settings.purge_method is not None and method == settings.purge_method:
            return self._purge(exchange)
        if method not in (b"GET", b"HEAD"):
            self.unsafe = method not in _SAFE
            self.status.fwd = "method"
            return None
        headers = exchange.request_headers
        self.request_time = exchange.ctx.wall
        if any(name in (b"if-match", b"if-unmodified-since") for name, _ in headers):
            self.status.fwd = "request"
            self.status.detail = "precondition"
            return None
        ranged = any(name == b"range" for name, _ in headers)
        decision = decide(
            request_headers=headers,
            variants=cache.store.variants(key),
            now=exchange.ctx.wall,
            policy=cache.policy,
        )
        action = decision.action
        if getattr(exchange.stream, "refresh", False):
            # A background refresh: the stored response is what it is there to replace.
            self.may_wait = False
            if action in {"hit", "stale"}:
                action = decision.action = "validate"
                decision.fwd, decision.detail = "stale", "stale-while-revalidate"
        if ranged and (
            action not in {"hit", "stale"}
            or decision.response is None
            or decision.response.status != 200
        ):
            # Only a complete stored response answers a range; otherwise the request
            # goes through as it is, and its partial response is not stored.
            self.status.fwd = "partial" if action in {"hit", "stale"} else decision.fwd
            self.status.detail = "range request"
            self.ranged = True
            return None
        if action in {"hit", "stale"}:
            if action == "hit":
                cache.count.hits += 1
            else:
                cache.count.stale += 1
                self.status.detail = decision.detail
            return self._answer_from_store(exchange, decision)
        if action == "only-if-cached":
            self.status.fwd = decision.fwd
            self.status.detail = "only-if-cached"
            body = b"504 Gateway Timeout\n"
            return Answer(
                status=504,
                headers=[(b"content-type", b"text/plain; charset=utf-8")],
                body=body,
            )
        self.status.fwd = decision.fwd
        if decision.detail:
            self.status.detail = decision.detail
        if action == "validate":
            stored = decision.response
            assert stored is not None
            self.validating = stored
            self.client_headers = headers
            exchange.request_headers = [
                (name, value) for name, value in headers if name not in CONDITIONALS
            ] + validators(stored.headers)
            cache.count.revalidations += 1
            return None
        if settings.coalesce and self.may_wait and method == b"GET" and not exchange.has_body:
            waiters = cache.inflight.get(key)
            if waiters is not None:
                waiters.append(exchange)
                self.waiting_on = key
                cache.count.coalesced += 1  # a hit or a miss once the wait is over
                return WAIT
            cache.inflight[key] = []
            self.leading = True
        cache.count.misses += 1
        return None

    def _answer_from_store(self, exchange: Exchange, decision: Decision) -> Answer:
        stored = decision.response
        assert stored is not None
        self.serving = True
        self.refresh_after = decision.refresh
        self.status.ttl = decision.ttl  # negative when served stale
        self.status.hit = True
        if conditional_holds(exchange.request_headers, stored):
            return not_modified(stored, decision.age)
        answer = None
        if any(name == b"range" for name, _ in exchange.request_headers):
            span = requested_range(exchange.request_headers, stored.headers, len(stored.body))
            if span is not None:
                answer = partial(stored, decision.age, span)
        if answer is None:
            answer = served(stored, decision.age)
            self.served = stored
        self.cache.count.hit_bytes += 0 if exchange.head_request else len(answer.body)
        return answer

    def _purge(self, exchange: Exchange) -> Answer:
        """Remove every stored response of the URI, for a client of ``purge_from``."""
        cache = self.cache
        if not purge_allowed(exchange.stream.peer[0], cache.settings.purge_from):
            return purged(None)
        cache.count.purges += 1
        return purged(cache.store.remove(self.key))

    def resumed(self, exchange: Exchange) -> Answer | None:
        """The miss this exchange waited for is over: look again (a hit now, or forward)."""
        self.waiting_on = None
        self.may_wait = False
        self.status = CacheStatus(collapsed=True)
        return self.lookup(exchange)

    def stop_waiting(self, exchange: Exchange) -> None:
        """The wait timed out: the exchange leaves the queue and goes to the backend itself."""
        self.finished_waiting(exchange)
        self.may_wait = False
        self.status.collapsed = True
        self.status.detail = "coalescing timed out"
        self.cache.count.misses += 1

    # -- the response ------------------------------------------------------------------

    def head(self, exchange: Exchange, head: OutgoingHead) -> None:
        """Store what may be stored, turn a 304 back into the stored response, say what was done."""
        if not self.serving:
            self._forwarded(exchange, head)
        if head.status >= 200 and self.cache.settings.status_header:
            head.headers.append((b"cache-status", self.status.render(_STATUS_NAME)))

    def _forwarded(self, exchange: Exchange, head: OutgoingHead) -> None:
        cache = self.cache
        status = head.status
        ctx = exchange.ctx
        if self.unsafe:
            if 200 <= status < 400:
                self._invalidate(exchange, head.headers)
            return
        if not any(name == b"date" for name, _ in head.headers):
            head.headers.append((b"date", format_http_date(ctx.wall)))  # RFC 9110 §6.6.1
        stored = self.validating
        if stored is not None:
            self.status.fwd_status = status
            if status == 304:
                self._revalidated(exchange, head, stored)
                return
            if status >= 500 and stale_if_error(
                stored, self.client_headers or [], ctx.wall, cache.policy
            ):
                self._stand_in(exchange, head, stored, "stale-if-error")
                return
        if exchange.method != b"GET" or self.ranged:
            if self.ranged:
                self._release_waiters(exchange)
            return
        request_headers = self.client_headers or exchange.request_headers
        request_cc = cache_control(request_headers)
        directives = response_directives(head.headers, cache.policy.targeted)
        reason = (
            "request no-store"
            if "no-store" in request_cc
            else refusal(
                status=status,
                request_headers=request_headers,
                response_headers=head.headers,
                directives=directives,
                has_default=status in cache.policy.defaults,
                store_set_cookie=cache.settings.set_cookie != "refuse",
            )
        )
        length = header_value(head.headers, b"content-length")
        limit = cache.store.max_object_bytes
        if (
            not reason
            and length is not None
            and length.isdigit()
            and entry_size(head.headers, b"", self.key) + int(length) > limit
        ):
            reason = "too large"
        if reason:
            self.status.detail = reason
            self._release_waiters(exchange)
            return
        leave_out = (directives.field_names("private") or frozenset()) | (
            directives.field_names("no-cache") or frozenset()
        )
        if cache.settings.set_cookie == "strip":
            leave_out |= {b"set-cookie"}
        names = vary_names(head.headers)
        settings = cache.settings
        self.entry = StoredResponse(
            key=self.key,
            status=status,
            reason=head.reason,
            headers=storable_headers(head.headers, leave_out=leave_out) + _age_of(head.headers),
            body=b"",
            request_time=self.request_time,
            response_time=ctx.wall,
            variant=variant(
                request_headers,
                names,
                key_headers=settings.key_headers,
                key_cookies=settings.key_cookies,
            ),
        )
        self.pieces = []
        self.status.stored = True

    def _revalidated(self, exchange: Exchange, head: OutgoingHead, stored: StoredResponse) -> None:
        """A 304: the stored response, freshened, stands for the answer (§4.3.4)."""
        cache = self.cache
        cache.count.revalidated += 1
        directives = response_directives(head.headers, cache.policy.targeted)
        leave_out = (directives.field_names("private") or frozenset()) | (
            directives.field_names("no-cache") or frozenset()
        )
        headers = updated_headers(stored.headers, head.headers, leave_out=leave_out)
        fresh = StoredResponse(
            key=stored.key,
            status=stored.status,
            reason=stored.reason,
            headers=[(n, v) for n, v in headers if n != b"age"] + _age_of(head.headers),
            body=stored.body,
            request_time=self.request_time,
            response_time=exchange.ctx.wall,
            variant=stored.variant,
            encoded=dict(stored.encoded),  # a 304 says the body, and so its encodings, hold
        )
        if "no-store" in directives:
            cache.store.remove(stored.key)
        else:
            cache.store.replace(stored, fresh)
        self._stand_in(exchange, head, fresh, "")

    def _stand_in(
        self, exchange: Exchange, head: OutgoingHead, stored: StoredResponse, detail: str
    ) -> None:
        """Answer with ``stored`` instead of the backend's response head and body."""
        if detail:
            self.cache.count.stale += 1
            self.status.detail = detail
        age = age_of(stored, exchange.ctx.wall)
        client = self.client_headers or exchange.request_headers
        if conditional_holds(client, stored):
            head.status, head.reason = 304, b"Not Modified"
            head.headers = not_modified_fields(stored, age)
            self.replacement = b""
            return
        head.status, head.reason = stored.status, stored.reason
        head.headers = served_fields(stored, age)
        self.served = stored
        self.replacement = b"" if exchange.head_request else stored.body

    def _invalidate(self, exchange: Exchange, headers: Headers) -> None:
        """Forget the target URI and the same-origin URIs the response points to (§4.4)."""
        store = self.cache.store
        removed = store.remove(self.key)
        origin = self.key[: len(self.key) - len(exchange.path + exchange.query)]
        for name in (b"location", b"content-location"):
            value = header_value(headers, name)
            if value is None:
                continue
            if value.startswith(b"/") and not value.startswith(b"//"):
                removed += store.remove(origin + value)
            elif value.lower().startswith(origin.lower() + b"/"):
                removed += store.remove(origin + value[len(origin) :])
        if removed:
            self.cache.count.invalidations += removed

    def body(self, exchange: Exchange, data: bytes) -> bytes:
        """Keep a copy of the piece while it goes on (or drop it, when the store answers)."""
        if self.replacement is not None:
            return b""
        pieces = self.pieces
        if pieces is not None:
            self.body_size += len(data)
            entry = self.entry
            assert entry is not None
            if entry.size + self.body_size > self.cache.store.max_object_bytes:
                self.pieces = self.entry = None  # grew too large: the client's copy goes on
                self._release_waiters(exchange)
            else:
                pieces.append(data)
        return data

    def end(self, exchange: Exchange, trailers: Headers) -> bytes:
        """File the complete response; or send the stored body in place of the backend's."""
        replacement = self.replacement
        if replacement is not None:
            self.replacement = None
            return replacement
        entry = self.entry
        if entry is not None and self.pieces is not None:
            entry.body = b"".join(self.pieces)
            entry.size = entry_size(entry.headers, entry.body, entry.key)
            self.cache.store.put(entry)
            self.cache.count.stored += 1
        self.entry = self.pieces = None
        return b""

    def finished(self, exchange: Exchange) -> None:
        """Whatever happened, the misses waiting for this one go on; a waiter leaves its queue."""
        self.entry = self.pieces = None  # a response that did not end is not stored
        self.finished_waiting(exchange)
        self._release_waiters(exchange)
        if self.refresh_after:
            self.refresh_after = False
            start_refresh(exchange, self.cache, self.key)

    def finished_waiting(self, exchange: Exchange) -> None:
        """Leave the queue of the miss this exchange waits for, if it waits."""
        waited = self.waiting_on
        if waited is not None:
            waiters = self.cache.inflight.get(waited)
            if waiters is not None and exchange in waiters:
                waiters.remove(exchange)
            self.waiting_on = None

    def _release_waiters(self, exchange: Exchange) -> None:
        """This miss is over, or its response will not be stored: its waiters go on."""
        if not self.leading:
            return
        self.leading = False
        waiters = self.cache.inflight.pop(self.key, None)
        for waiter in waiters or ():
            waiter.cache_resumed()

    def encoding(self, coding: str) -> bytes | None:
        """The served stored body, already compressed with ``coding``, if a hit made it."""
        served = self.served
        return None if served is None else served.encoded.get(coding)

    def keep_encoding(self, coding: str, data: bytes) -> None:
        """The served stored body compressed with ``coding``: keep it for the next hits."""
        served = self.served
        if served is not None:
            self.cache.store.add_encoding(served, coding, data)

    def outcome(self) -> str:
        """What the cache did, in one word, for the access log (like nginx's cache status)."""
        status = self.status
        if self.serving or self.replacement is not None:
            if status.detail in ("stale-if-error", "stale-while-revalidate", "request max-stale"):
                return "stale"
            return "revalidated" if status.fwd_status == 304 else "hit"
        if status.fwd_status == 304:
            return "revalidated"
        if self.validating is not None:
            return "expired"
        if status.fwd in ("method", "request") and not self.validating:
            return "bypass"
        return "miss"

    # -- failures ----------------------------------------------------------------------

    def failing(self, exchange: Exchange, status: int) -> tuple[int, Answer | None]:
        """A forwarded request fails with ``status``: the stale stand-in, or the status to send.

        A revalidation that cannot reach the backend answers from the store where
        ``stale-if-error`` allows it, and otherwise 504 (RFC 9111 §5.2.2.2).
        """
        stored = self.validating
        if stored is None or status < 500:
            return status, None
        if stale_if_error(stored, self.client_headers or [], exchange.ctx.wall, self.cache.policy):
            self.cache.count.stale += 1
            self.serving = True
            self.status.fwd = "stale"
            self.status.detail = "stale-if-error"
            self.served = stored
            return status, served(stored, age_of(stored, exchange.ctx.wall))
        return 504, None


def _age_of(headers: Headers) -> Headers:
    """The backend's Age, kept with the stored response for §4.2.3 (its first line: §5.1)."""
    value = next((value for name, value in headers if name == b"age"), None)
    return [] if value is None else [(b"age", value)]
