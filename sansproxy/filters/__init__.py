"""Request and response filters: the rules an exchange applies, in a fixed order.

Theory of operation
-------------------
An :class:`~sansproxy.exchange.Exchange` does not know what is done to the
messages it carries: it runs two chains of filters, built once per
configuration by :mod:`sansproxy.filters.chains`.

**Request filters** run in one turn once the request head has been checked and
routed (``exchange.route`` and ``exchange.pool`` are set, the normalised
``exchange.path`` and ``exchange.query`` are known). Each may answer the request
itself by returning an :class:`Answer`; the chain stops there and nothing is
forwarded. The order:

1. ``RouteActions`` (:mod:`.route_actions`): a route's redirect or fixed response.
2. ``CacheLookup`` (:mod:`.cache`): a stored response, where the route caches; or the
   request waits for the same URI's miss in flight (:data:`~.cache.WAIT`).
3. ``BodyLimit`` (:mod:`.body_limit`): a declared body over the route's limit gets 413.
4. ``ForwardingHeaders`` (:mod:`.forwarding`): the head that goes upstream: path
   rewrites, Host, hop-by-hop removal, forwarding fields and Via, then the route's
   ``request_headers``.

Access control, rate limits and authentication go between 1 and 2 (in that
order) when they exist.

An answer marked ``stored`` (a cache hit) is served through the response stages
like a backend's response, so that it gets the same header rules and compression.

**Response filters** see a response from a backend. :meth:`ResponseFilter.start`
decides, per exchange, whether the filter takes part and returns its
:class:`ResponseStage`, which may rewrite the head, transform each body piece and
add bytes at the end; every stage also hears when the exchange is finished, for
whatever reason (a local answer and an error included). The order:

1. ``CacheStore`` (:mod:`.cache`): keeps a copy of what the backend sent, where the
   route caches, and turns a 304 to a revalidation back into the stored response.
2. ``ResponseHeaders`` (:mod:`.forwarding`): hop-by-hop removal, Via, hiding
   the backend's identity, then the route's ``response_headers``.
3. ``Stickiness`` (:mod:`.sticky`): the sticky-session cookie.
4. ``Compress`` (:mod:`.compress`): gzip, Brotli or Zstandard, where the route
   enables it and the client accepts it.
5. ``AccessRecord`` (:mod:`.access`): the access-log record, when the exchange ends.

Bytes a stage adds at the end pass through the stages after it. Stages that
transform the body say so with ``transforms_body``, so that the common case (no
body transform) costs nothing per piece.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Protocol

if TYPE_CHECKING:
    from sansproxy._codec import Headers
    from sansproxy.exchange import Exchange

__all__ = [
    "Answer",
    "OutgoingHead",
    "RequestFilter",
    "ResponseFilter",
    "ResponseStage",
]


@dataclass(slots=True, kw_only=True)
class Answer:
    """A response the proxy gives itself instead of forwarding the request.

    An ordinary answer keeps the client's connection for its next request; an
    ``error`` answer is the proxy's generic error page for ``status``, after which
    an HTTP/1.1 connection is not kept (its request may not have been read whole).
    """

    status: int
    headers: Headers = field(default_factory=list)
    body: bytes = b""
    error: bool = False
    stored: bool = False
    """A stored response (a cache hit): it passes the response stages, with its own fields."""
    reason: bytes = b""


@dataclass(slots=True, kw_only=True)
class OutgoingHead:
    """A backend's response head on its way to the client; stages may change it."""

    status: int
    reason: bytes
    headers: Headers
    http_version: bytes
    """The backend's HTTP version (for Via)."""


class RequestFilter(Protocol):
    """A rule applied to a routed request before it is forwarded."""

    def on_request(self, exchange: Exchange) -> Answer | None:
        """Let the request go on (None), or answer it."""


class ResponseStage:
    """One filter's part in one exchange's response; every hook does nothing by default."""

    __slots__ = ()

    transforms_body: ClassVar[bool] = False
    """Whether :meth:`body` and :meth:`end` change anything (else they are skipped)."""

    def head(self, exchange: Exchange, head: OutgoingHead) -> None:
        """Rewrite the response head in place."""

    def body(self, exchange: Exchange, data: bytes) -> bytes:
        """Transform one body piece (possibly to nothing, kept for later)."""
        return data

    def end(self, exchange: Exchange, trailers: Headers) -> bytes:
        """Bytes to add at the end of the body."""
        return b""

    def finished(self, exchange: Exchange) -> None:
        """The exchange is over (answered, failed or aborted)."""


class ResponseFilter(Protocol):
    """A rule applied to the responses of the exchanges it takes part in."""

    def start(self, exchange: Exchange) -> ResponseStage | None:
        """The stage for ``exchange``, or None to stay out of it."""
