"""The proxy's bookkeeping: client connections, upstream connections, exchanges.

These are plain mutable records owned by :class:`~sansproxy.proxy.Proxy`;
nothing here decides anything. Backpressure is counted per connection:
``unwritten`` is bytes handed out in ``Send`` (or queued before a connect)
minus bytes the adapter reported ``Written``.
"""

from __future__ import annotations

from enum import Enum, auto

from sansproxy._codec.http1 import ClientCodec, ServerCodec
from sansproxy.config import Server, Upstream
from sansproxy.events import ConnId, TlsInfo

__all__ = ["ClientConn", "ClientState", "Exchange", "UpstreamConn", "UpstreamState"]


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


class UpstreamConn(_Side):
    __slots__ = ("codec", "exchange", "pending", "reusable", "reused", "server", "state")

    def __init__(self, conn: ConnId, server: Server) -> None:
        super().__init__(conn)
        self.server = server
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
        "chunked_request",
        "client",
        "client_version",
        "has_body",
        "head_request",
        "host",
        "method",
        "referer",
        "replay",
        "request_bytes",
        "request_complete",
        "request_trailers",
        "response_bytes",
        "response_started",
        "sent_at",
        "server",
        "started_at",
        "status",
        "target",
        "tried",
        "ttfb",
        "upgrade",
        "upstream",
        "upstream_group",
        "upstream_head",
        "user_agent",
    )

    def __init__(
        self,
        client: ClientConn,
        *,
        method: bytes,
        target: bytes,
        client_version: bytes,
        upstream_group: Upstream,
        started_at: float,
    ) -> None:
        self.client = client
        self.method = method
        self.target = target
        self.client_version = client_version
        self.upstream_group = upstream_group
        self.started_at = started_at
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
