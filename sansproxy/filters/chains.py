"""The filter chains of a configuration, in the order ``sansproxy.filters`` documents."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sansproxy.filters.access import AccessRecord
from sansproxy.filters.body_limit import BodyLimit
from sansproxy.filters.cache import CacheLookup, CacheStore
from sansproxy.filters.compress import Compress
from sansproxy.filters.forwarding import ForwardingHeaders, ResponseHeaders
from sansproxy.filters.route_actions import RouteActions
from sansproxy.filters.sticky import Stickiness

if TYPE_CHECKING:
    from sansproxy.config import ProxyConfig
    from sansproxy.filters import RequestFilter, ResponseFilter

__all__ = ["request_chain", "response_chain"]


def request_chain(config: ProxyConfig) -> tuple[RequestFilter, ...]:
    """The request filters of ``config``, in their fixed order."""
    return (RouteActions(), CacheLookup(), BodyLimit(), ForwardingHeaders())


def response_chain(config: ProxyConfig) -> tuple[ResponseFilter, ...]:
    """The response filters of ``config``, in their fixed order."""
    return (CacheStore(), ResponseHeaders(), Stickiness(), Compress(), AccessRecord())
