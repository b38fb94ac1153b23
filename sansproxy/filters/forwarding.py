"""The header rules of a forwarding proxy, as one request and one response filter.

The rules themselves live in :mod:`sansproxy.headers`; these filters apply them
to the head that goes upstream (path rewrites and Host included) and to the
response head that comes back. A route's own edits (``request_headers``,
``response_headers``: :mod:`sansproxy.header_edits`) come after them, so that they
see the head as it would otherwise leave.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sansproxy.filters import Answer, OutgoingHead, ResponseStage
from sansproxy.header_edits import variables_for
from sansproxy.routing import rewrite_path

if TYPE_CHECKING:
    from sansproxy.exchange import Exchange

__all__ = ["ForwardingHeaders", "ResponseHeaders"]


class ForwardingHeaders:
    """Builds ``exchange.upstream_head``: the request line and fields a backend receives."""

    __slots__ = ()

    def on_request(self, exchange: Exchange) -> Answer | None:
        """Set the upstream head; never answers."""
        route = exchange.route
        pool = exchange.pool
        assert route is not None
        assert pool is not None
        group = pool.upstream
        path = exchange.path
        if path != b"*":
            path = rewrite_path(path, strip_prefix=route.strip_prefix, add_prefix=route.add_prefix)
        host_override = route.host_header or group.host_header
        stream = exchange.stream
        headers = exchange.settings.rules.upstream_request(
            exchange.request_headers,
            client_ip=stream.peer[0],
            proto="https" if stream.tls is not None else "http",
            http_version=exchange.http_version,
            host_override=host_override.encode() if host_override is not None else None,
            upgrade=exchange.upgrade,
        )
        if not any(name == b"host" for name, _ in headers):
            # An HTTP/1.0 client may omit Host; HTTP/1.1 backends require one.
            headers.append((b"host", group.servers[0].label.encode()))
        edits = route.request_headers
        if edits:
            headers = edits.apply(headers, _variables(exchange))
        exchange.upstream_head = (exchange.method, path + exchange.query, headers)
        return None


class ResponseHeaders(ResponseStage):
    """Hop-by-hop removal, Via and hiding the backend, on every forwarded response."""

    __slots__ = ()

    def start(self, exchange: Exchange) -> ResponseStage | None:
        """Every exchange with a backend takes part."""
        return self

    def head(self, exchange: Exchange, head: OutgoingHead) -> None:
        """Rebuild the fields for the client, then apply the route's own edits."""
        head.headers = exchange.settings.rules.client_response(
            head.headers, http_version=head.http_version, upgrade=False
        )
        route = exchange.route
        if route is not None and route.response_headers:
            head.headers = route.response_headers.apply(head.headers, _variables(exchange))


def _variables(exchange: Exchange) -> dict[bytes, bytes]:
    """The values a route's header edits may use (``sansproxy.header_edits.VARIABLES``)."""
    stream = exchange.stream
    return variables_for(stream.peer, tls=stream.tls is not None, host=exchange.host)
