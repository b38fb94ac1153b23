"""What one configuration compiles to at run time.

A :class:`Settings` is built when the core starts and again on every reload: the
header rules, the route tables, the filter chains and the upstream pools.
Pools carry state (health, load, queues), so a reload hands each new pool its
predecessor; everything else is rebuilt from the new configuration. Exchanges
keep the settings they started with, so a reload never changes a request in flight.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sansproxy.cache import RouteCache
from sansproxy.config import Route
from sansproxy.filters.chains import request_chain, response_chain
from sansproxy.headers import HeaderRules
from sansproxy.pool import Pool
from sansproxy.routing import RouteMatch, RouteTable

if TYPE_CHECKING:
    from sansproxy.config import ProxyConfig, Server, Upstream
    from sansproxy.exchange import Exchange
    from sansproxy.filters import RequestFilter, ResponseFilter

__all__ = ["Settings"]


class Settings:
    """The compiled form of one configuration."""

    __slots__ = (
        "caches",
        "config",
        "limits",
        "listener_routes",
        "pools",
        "request_filters",
        "response_filters",
        "routes",
        "rules",
        "servers",
        "timeouts",
    )

    def __init__(self, config: ProxyConfig, previous: Settings | None = None) -> None:
        self.config = config
        self.limits = config.limits
        self.timeouts = config.timeouts
        self.rules = HeaderRules(config.headers)
        self.routes: RouteTable[Route] = RouteTable([(r.match, r) for r in config.routes])
        self.listener_routes: list[Route | None] = [
            None
            if listener.upstream is None
            else Route(
                name=f"listener-{i}",
                match=RouteMatch(),
                upstream=listener.upstream,
                compression=config.compression,
                cache=config.cache,
            )
            for i, listener in enumerate(config.listeners)
        ]
        self.servers: frozenset[Server] = frozenset(
            server for upstream in config.upstreams.values() for server in upstream.servers
        )
        self.pools: dict[str, Pool[Exchange]] = {}
        old_pools = {} if previous is None else previous.pools
        for name, group in config.upstreams.items():
            old = old_pools.get(name)
            if old is not None and _same_upstream(old.upstream, group):
                self.pools[name] = old  # Unchanged: health, load and queue carry on.
            else:
                self.pools[name] = Pool(group, previous=old)
                if old is not None:
                    self.pools[name].queue.extend(old.queue)
        self.caches: dict[str, RouteCache] = _caches(
            [r for r in (*config.routes, *self.listener_routes) if r is not None],
            {} if previous is None else previous.caches,
        )
        """The cache of each route that has one, by route name (kept across a reload
        while the route's cache settings stay the same)."""
        self.request_filters: tuple[RequestFilter, ...] = request_chain(config)
        self.response_filters: tuple[ResponseFilter, ...] = response_chain(config)

    def removed_pools(self, previous: Settings) -> list[Pool[Exchange]]:
        """Pools of ``previous`` whose upstream this configuration no longer has."""
        return [pool for name, pool in previous.pools.items() if name not in self.pools]


def _same_upstream(old: Upstream, new: Upstream) -> bool:
    """Whether a reload left an upstream as it was, servers' balancing settings included.

    A server's weight, backup flag and cap are not part of its equality (so that its
    pooled connections survive a change of them), but a change of them is a change.
    """
    settings = [(s.weight, s.backup, s.max_connections) for s in old.servers]
    return old == new and settings == [(s.weight, s.backup, s.max_connections) for s in new.servers]


def _caches(routes: list[Route], previous: dict[str, RouteCache]) -> dict[str, RouteCache]:
    caches: dict[str, RouteCache] = {}
    for route in routes:
        if not route.cache.enabled:
            continue
        old = previous.get(route.name)
        caches[route.name] = (
            old
            if old is not None and old.settings == route.cache
            else RouteCache.create(route.cache)
        )
    return caches
