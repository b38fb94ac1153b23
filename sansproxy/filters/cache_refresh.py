"""Background refreshes (RFC 5861 ``stale-while-revalidate``): exchanges with no client.

When the cache serves a stale response that ``stale-while-revalidate`` allows,
it refreshes the stored response behind the client's back: a new exchange for
the same request, whose stream is a :class:`RefreshSink` that drops what it is
sent. The exchange takes the ordinary path (routing, balancing, retries,
revalidation with the stored validators, the store stage), so the refreshed
response is filed like any other. One refresh per URI is in flight at a time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sansproxy._codec import RequestHead
from sansproxy.cache.validation import CONDITIONALS
from sansproxy.downstream.clientless import ClientlessStream

if TYPE_CHECKING:
    from sansproxy._codec import Headers
    from sansproxy.cache import RouteCache
    from sansproxy.events import TlsInfo
    from sansproxy.exchange import Exchange

__all__ = ["RefreshSink", "start_refresh"]


def start_refresh(exchange: Exchange, cache: RouteCache, key: bytes) -> None:
    """Refresh the response ``exchange`` was served stale, unless a refresh is under way."""
    if key in cache.refreshing:
        return
    from sansproxy.exchange import Exchange  # noqa: PLC0415 (the exchange module imports this one)

    cache.refreshing.add(key)
    headers = [(n, v) for n, v in exchange.request_headers if n not in CONDITIONALS]
    sink = RefreshSink(cache, key, exchange)
    head = RequestHead(
        stream=0,
        method=b"GET",
        target=exchange.target,
        path=exchange.path + exchange.query,
        headers=headers,
        http_version=exchange.http_version,
        authority=exchange.host,
    )
    refresh = Exchange(exchange.ctx, sink, head)
    refresh.begin(head)


class RefreshSink(ClientlessStream):
    """The stream of a refresh: it has no client, and only says when it is over."""

    __slots__ = ("cache", "key", "listener", "peer", "tls")

    refresh = True
    """The lookup revalidates for this stream instead of serving it the stale response."""

    def __init__(self, cache: RouteCache, key: bytes, served: Exchange) -> None:
        self.cache = cache
        self.key = key
        stream = served.stream
        self.peer: tuple[str, int] = stream.peer
        self.tls: TlsInfo | None = stream.tls
        self.listener: int = stream.listener

    def _over(self) -> None:
        self.cache.refreshing.discard(self.key)

    def respond(self, status: int, reason: bytes, headers: Headers, *, head_request: bool) -> None:
        """Dropped: the store stage has seen the head."""

    def body(self, data: bytes) -> None:
        """Dropped: the store stage has kept what it may."""

    def end(self, trailers: Headers) -> None:
        """Dropped."""

    def error(
        self, status: int, reason: bytes, headers: Headers, body: bytes, *, head_request: bool
    ) -> None:
        """The refresh failed; the stale response stays until it may no longer be served."""

    def finished(self) -> None:
        """The refresh is over."""
        self._over()

    def failed(self) -> None:
        """The refresh is over."""
        self._over()

    def aborted(self) -> None:
        """The refresh is over."""
        self._over()

    def detach(self, exchange: Exchange) -> None:
        """The refresh is over, however it ended."""
        self._over()
