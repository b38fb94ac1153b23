"""The HTTP cache: RFC 9111's rules for a shared cache, and the store they file responses in.

Theory of operation
-------------------
Everything here is pure. The rules are functions of a request, stored
responses and the wall clock, split by the part of RFC 9111 they come from:

* :mod:`.directives` reads Cache-Control (§5.2) and Pragma (§5.4);
* :mod:`.dates` reads and writes HTTP dates;
* :mod:`.freshness` computes a response's age and freshness lifetime (§4.2);
* :mod:`.storable` says whether a response may be stored (§3);
* :mod:`.keys` files responses under their URI and selects a variant by Vary (§4.1);
* :mod:`.lookup` decides what a request gets: a hit, a stale response, a
  revalidation or a miss (§4, RFC 5861);
* :mod:`.validation` builds the conditional request, merges a 304 into the
  stored response (§4.3.4) and answers a client's own conditional request;
* :mod:`.status` writes the ``Cache-Status`` field (RFC 9211);
* :mod:`.store` is the store interface and the byte-capped in-memory store.

The exchange meets the cache through one request filter and one response
stage (:mod:`sansproxy.filters.cache`), which apply these rules to one request.
:class:`RouteCache` is what one route's cache keeps between requests: its
store, the misses in flight (for request coalescing) and its counters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sansproxy.cache.lookup import Policy
from sansproxy.cache.store import MemoryStore

if TYPE_CHECKING:
    from sansproxy.config import CacheSettings
    from sansproxy.exchange import Exchange

__all__ = ["CacheCount", "RouteCache"]


@dataclass(slots=True)
class CacheCount:
    """What one route's cache did (for statistics and metrics)."""

    hits: int = 0
    misses: int = 0
    stale: int = 0
    """Stale responses served (max-stale, stale-while-revalidate, stale-if-error)."""
    revalidations: int = 0
    """Validation requests sent to the backend."""
    revalidated: int = 0
    """Of those, the ones answered 304 (the stored response was good)."""
    coalesced: int = 0
    """Requests that waited for another request's response."""
    stored: int = 0
    invalidations: int = 0
    purges: int = 0
    hit_bytes: int = 0
    """Body bytes served from the store."""
    bytes: int = 0
    """Bytes the store holds now (filled in by ``Proxy.cache_statistics``)."""
    objects: int = 0
    """Responses the store holds now."""
    evictions: int = 0
    """Responses dropped to stay under the store's cap."""


@dataclass(slots=True, eq=False)
class RouteCache:
    """One route's cache between requests."""

    settings: CacheSettings
    store: MemoryStore
    policy: Policy
    count: CacheCount = field(default_factory=CacheCount)
    inflight: dict[bytes, list[Exchange]] = field(default_factory=dict)
    """Primary key -> the exchanges waiting for the miss in flight for that key."""
    refreshing: set[bytes] = field(default_factory=set)
    """Primary keys with a background refresh in flight (stale-while-revalidate)."""

    @classmethod
    def create(cls, settings: CacheSettings) -> RouteCache:
        """An empty cache for a route with ``settings``."""
        return cls(
            settings=settings,
            store=MemoryStore(
                max_bytes=settings.max_size, max_object_bytes=settings.max_object_size
            ),
            policy=Policy(
                defaults=dict(settings.default_ttl),
                heuristic_max=settings.heuristic_max_age,
                honour_no_cache=settings.honour_request_no_cache,
                targeted=settings.targeted_fields,
            ),
        )
