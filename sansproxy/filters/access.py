"""The access record: one ``AccessLog`` command per finished exchange."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sansproxy.commands import AccessLog
from sansproxy.commands import AccessRecord as Record
from sansproxy.filters import ResponseStage

if TYPE_CHECKING:
    from sansproxy.exchange import Exchange

__all__ = ["AccessRecord"]


class AccessRecord(ResponseStage):
    """Writes what happened to every client exchange, however it ended."""

    __slots__ = ()

    def start(self, exchange: Exchange) -> ResponseStage | None:
        """Every exchange with a client takes part (probes and cache refreshes have none)."""
        return None if exchange.stream.conn is None else self

    def finished(self, exchange: Exchange) -> None:
        """Emit the record."""
        server = exchange.server
        ctx = exchange.ctx
        cache = exchange.cache
        ctx.emit(
            AccessLog(
                record=Record(
                    client=exchange.stream.peer,
                    method=exchange.method.decode("latin-1"),
                    target=exchange.target.decode("latin-1"),
                    http_version=exchange.http_version.decode("latin-1"),
                    status=exchange.status,
                    request_bytes=exchange.request_bytes,
                    response_bytes=exchange.response_bytes,
                    upstream=None if server is None else f"{server.host}:{server.port}",
                    duration=ctx.now - exchange.started_at,
                    upstream_ttfb=exchange.ttfb,
                    host=exchange.host.decode("latin-1"),
                    referer=exchange.referer.decode("latin-1"),
                    user_agent=exchange.user_agent.decode("latin-1"),
                    cache=None if cache is None else cache.outcome(),
                )
            )
        )
