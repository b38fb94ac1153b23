"""The proxy's bookkeeping: client connections, upstream connections, exchanges.

These are plain mutable records owned by :class:`~sansproxy.proxy.Proxy`;
nothing here decides anything. Backpressure is counted per connection:
``unwritten`` is bytes handed out in ``Send`` (or queued before a connect)
minus bytes the adapter reported ``Written``.
"""

from __future__ import annotations

from enum import Enum, auto
from typing import TYPE_CHECKING

from sansproxy._codec.http1 import ClientCodec, ServerCodec
from sansproxy.events import ConnId, TlsInfo

if TYPE_CHECKING:
    from sansproxy.config import Route, Server, Timeouts
    from sansproxy.pool import Pool

__all__ = ["ClientConn", "ClientState", "Exchange", "Probe", "UpstreamConn", "UpstreamState"]


class ClientState(Enum):
    WAITING = auto()
    """Between requests (or before the first one)."""
    ACTIVE = auto()
    """An exchange is in progress."""
    TUNNEL = auto()
    """Switched protocols: bytes are relayed as they are."""
    LINGER = auto()
    """An error response is out; the rest of the request is read and dropped until close."""


class UpstreamState(Enum):
    CONNECTING = auto()
    ACTIVE = auto()
    IDLE = auto()
    """In the pool, waiting for the next exchange."""
    TUNNEL = auto()


class _Side:
    """What client and upstream connections share: flow-control counters."""

    __slots__ = ("conn", "hold_peer", "reading_paused", "unwritten", "written_total")

    def __init__(self, conn: ConnId) -> None:
        self.conn = conn
        self.unwritten = 0
        self.written_total = 0
        self.reading_paused = False
        self.hold_peer = False
        """We paused *this* side's reading because its peer's buffer is full."""


class ClientConn(_Side):
    __slots__ = (
        "codec",
        "eof",
        "exchange",
        "hold_pipeline",
        "listener",
        "peer",
        "pipelined_bytes",
        "state",
        "tls",
    )

    def __init__(
        self,
        conn: ConnId,
        *,
        listener: int,
        peer: tuple[str, int],
        tls: TlsInfo | None,
        max_header_bytes: int,
    ) -> None:
        super().__init__(conn)
        self.listener = listener
        """Index of the listener in the configuration (which a reload may replace)."""
        self.peer = peer
        self.tls = tls
        self.codec = ServerCodec(max_header_bytes=max_header_bytes)
        self.state = ClientState.WAITING
        self.exchange: Exchange | None = None
        self.eof = False
        self.pipelined_bytes = 0
        self.hold_pipeline = False


class Probe:
    """An active health check in flight on an upstream connection of its own."""

    __slots__ = ("body", "index", "owner", "pool", "status")

    def __init__(self, pool: str, index: int, owner: ConnId) -> None:
        self.pool = pool
        self.index = index
        self.owner = owner
        """Timer owner that schedules this server's probes."""
        self.status = 0
        self.body = b""


class UpstreamConn(_Side):
    __slots__ = (
        "codec",
        "exchange",
        "pending",
        "probe",
        "reusable",
        "reused",
        "server",
        "state",
    )

    def __init__(self, conn: ConnId, server: Server, probe: Probe | None = None) -> None:
        super().__init__(conn)
        self.server = server
        self.probe = probe
        """Set when this connection carries a health probe rather than traffic."""
        self.codec = ClientCodec()
        self.state = UpstreamState.CONNECTING
        self.exchange: Exchange | None = None
        self.pending: list[bytes] = []
        self.reused = False
        self.reusable = True
        """False once the backend sent something that makes the connection untrustworthy."""


class Exchange:
    """One request and its response, from the request head to the last log line."""

    __slots__ = (
        "attempts",
        "chunked_request",
        "client",
        "client_version",
        "counted",
        "declared_length",
        "has_body",
        "hash_key",
        "head_request",
        "host",
        "local",
        "max_body",
        "method",
        "pool",
        "referer",
        "replay",
        "request_bytes",
        "request_complete",
        "request_trailers",
        "response_bytes",
        "response_started",
        "route",
        "sent_at",
        "server",
        "server_index",
        "set_cookie",
        "started_at",
        "status",
        "sticky",
        "target",
        "timeouts",
        "tried",
        "ttfb",
        "upgrade",
        "upstream",
        "upstream_head",
        "user_agent",
        "wait",
    )

    def __init__(
        self,
        client: ClientConn,
        *,
        method: bytes,
        target: bytes,
        client_version: bytes,
        started_at: float,
        timeouts: Timeouts,
        max_body: int,
    ) -> None:
        self.client = client
        self.method = method
        self.target = target
        self.client_version = client_version
        self.started_at = started_at
        self.timeouts = timeouts
        """The route's timeouts (the global ones until a route is chosen)."""
        self.max_body = max_body
        self.route: Route | None = None
        self.pool: Pool[Exchange] | None = None
        self.server_index: int | None = None
        """The pool's index of the server of the current try."""
        self.counted = False
        """Whether the current try counts in the pool's outstanding requests."""
        self.attempts = 0
        """Tries handed to a server so far (resends of a stale pooled connection excluded)."""
        self.wait: ConnId | None = None
        """Timer owner while the exchange waits: for a retry's backoff or in the queue."""
        self.local = False
        """Answered by the proxy itself (404, redirect, fixed response)."""
        self.declared_length = 0
        """The request's Content-Length (0 when absent)."""
        self.hash_key: bytes | None = None
        self.sticky: int | None = None
        self.set_cookie: bytes | None = None
        self.head_request = method == b"HEAD"
        self.upgrade = False
        self.chunked_request = False
        self.has_body = False
        self.host = b""
        self.referer = b""
        self.user_agent = b""
        self.upstream: UpstreamConn | None = None
        self.upstream_head: tuple[bytes, bytes, list[tuple[bytes, bytes]]] | None = None
        self.replay: list[bytes] | None = []
        """Request body pieces kept for a resend; None once they outgrew the buffer."""
        self.request_bytes = 0
        self.request_complete = False
        self.request_trailers: list[tuple[bytes, bytes]] = []
        self.response_started = False
        self.response_bytes = 0
        self.status = 0
        self.tried: set[Server] = set()
        self.server: Server | None = None
        """The server the last try went to (for the access log)."""
        self.sent_at: float | None = None
        self.ttfb: float | None = None
