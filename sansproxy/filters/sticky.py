"""Sticky sessions: the cookie that pins a client to the server that answered it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sansproxy.filters import OutgoingHead, ResponseStage

if TYPE_CHECKING:
    from sansproxy.exchange import Exchange

__all__ = ["Stickiness"]


class Stickiness(ResponseStage):
    """Sets the upstream's ``sticky_cookie`` unless the client's cookie already names the server.

    The cookie holds an opaque digest of the server (``Pool.sticky_token``), never
    its address. Reading it on the way in is part of choosing a server
    (``exchange.sticky``).
    """

    __slots__ = ()

    def start(self, exchange: Exchange) -> ResponseStage | None:
        """Only exchanges of upstreams with a sticky cookie take part."""
        pool = exchange.pool
        if pool is None or pool.upstream.sticky_cookie is None:
            return None
        return self

    def head(self, exchange: Exchange, head: OutgoingHead) -> None:
        """Add ``Set-Cookie`` for the server that answered."""
        pool = exchange.current_pool()
        if pool is None or pool.upstream.sticky_cookie is None:
            return
        index = None if exchange.server is None else pool.index(exchange.server)
        if index is None or index == exchange.sticky:
            return
        cookie = b"%s=%s; Path=/; HttpOnly; SameSite=Lax" % (
            pool.upstream.sticky_cookie.encode(),
            pool.sticky_token(index),
        )
        head.headers.append((b"set-cookie", cookie))
