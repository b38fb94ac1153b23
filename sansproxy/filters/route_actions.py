"""Route-local actions: a route that redirects, or answers with a fixed response."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from sansproxy.filters import Answer
from sansproxy.routing import normalise_host

if TYPE_CHECKING:
    from sansproxy.exchange import Exchange

__all__ = ["RouteActions", "redirect_location"]

_PLACEHOLDER = re.compile(r"\{(scheme|host|path|query|uri)\}")


class RouteActions:
    """Answers for a route with ``respond`` or ``redirect`` instead of an upstream."""

    __slots__ = ()

    def on_request(self, exchange: Exchange) -> Answer | None:
        """The route's fixed response or redirect, or None for a route that forwards."""
        route = exchange.route
        if route is None:
            return None
        if route.respond is not None:
            respond = route.respond
            return Answer(status=respond.status, headers=list(respond.headers), body=respond.body)
        if route.redirect is not None:
            location = redirect_location(route.redirect.location, exchange)
            return Answer(status=route.redirect.status, headers=[(b"location", location)])
        return None


def redirect_location(template: str, exchange: Exchange) -> bytes:
    """``template`` with ``{scheme}``, ``{host}``, ``{path}``, ``{query}`` and ``{uri}`` filled in.

    ``{host}`` is the request's host name without its port; the path is the
    normalised one the request was routed on.
    """
    path, query = exchange.path, exchange.query
    values = {
        "scheme": "https" if exchange.stream.tls is not None else "http",
        "host": normalise_host(exchange.host).decode("latin-1"),
        "path": path.decode("latin-1"),
        "query": query.decode("latin-1"),
        "uri": (path + query).decode("latin-1"),
    }
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template).encode("latin-1")
