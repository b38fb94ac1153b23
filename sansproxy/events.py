"""Events: everything the core learns from the world.

An adapter turns what happens on its sockets into these facts and passes
each one to :meth:`sansproxy.Proxy.handle` with the current monotonic time.
Events are facts in the past tense; they are frozen so that a recorded run
can be replayed exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NewType

if TYPE_CHECKING:
    from sansproxy.config import ProxyConfig

__all__ = [
    "ConfigReloaded",
    "ConnId",
    "ConnectionAccepted",
    "ConnectionLost",
    "DataReceived",
    "EofReceived",
    "Event",
    "ShutdownRequested",
    "TlsHandshakeFailed",
    "TlsInfo",
    "UpstreamConnected",
    "UpstreamFailed",
    "Written",
]

ConnId = NewType("ConnId", int)
"""Names one connection, client or upstream, for the life of a :class:`Proxy`."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsInfo:
    """What the adapter learned from a finished TLS handshake."""

    server_name: str | None = None
    alpn: str | None = None
    version: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionAccepted:
    """A client connected to listener number ``listener`` (an index into the config).

    On a TLS listener the adapter reports the connection after a finished handshake,
    with ``tls`` set, or, when the client's first byte is not the start of a TLS
    handshake record (0x16, RFC 8446 §5.1), at once with ``not_tls=True`` and no
    handshake tried: that is almost always plain HTTP sent to an ``https`` port. The
    core then answers a plain-text ``400 The plain HTTP request was sent to HTTPS
    port`` (nginx's words) and closes, and counts it (:meth:`Proxy.tls_statistics`).
    The adapter looks at that one byte only; whether the bytes are HTTP is the core's
    business.
    """

    conn: ConnId
    listener: int
    peer: tuple[str, int]
    local: tuple[str, int]
    tls: TlsInfo | None = None
    not_tls: bool = False
    """The listener expects TLS, but the client's first byte is not a TLS handshake."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TlsHandshakeFailed:
    """A client's TLS handshake on listener ``listener`` failed or timed out.

    No connection id was allocated: the connection is gone before the core heard of it.
    The core counts it (:meth:`Proxy.tls_statistics`) and logs it at debug level, at
    most one line every few seconds, so a scan of the port cannot flood the log.
    """

    listener: int
    peer: tuple[str, int]
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class DataReceived:
    """Bytes arrived on a connection (never empty)."""

    conn: ConnId
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class EofReceived:
    """The peer closed its sending side cleanly."""

    conn: ConnId


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionLost:
    """The connection broke (reset, write error) or the adapter closed it.

    After this event the connection is gone: the core sends nothing more to it.
    """

    conn: ConnId
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamConnected:
    """An :class:`~sansproxy.commands.OpenUpstream` succeeded (TLS included)."""

    conn: ConnId
    tls: TlsInfo | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamFailed:
    """An :class:`~sansproxy.commands.OpenUpstream` failed; the connection is gone."""

    conn: ConnId
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Written:
    """``nbytes`` of the bytes sent to ``conn`` reached the operating system.

    The core counts unwritten bytes per connection from :class:`Send` minus
    these, which is how it knows when to pause and resume reading.
    """

    conn: ConnId
    nbytes: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ShutdownRequested:
    """Stop taking new requests, let in-flight ones finish, then close everything.

    ``drain_timeout`` overrides the configured drain time.
    """

    drain_timeout: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigReloaded:
    """The operator changed the configuration; new requests follow ``config``.

    Connections and exchanges in flight finish as they started (a tunnel is not
    cut, a request keeps its upstream group); idle pooled connections to servers
    that are gone are closed. The listeners must be the same ones, in the same
    order: the adapter owns the sockets and refuses other changes.
    """

    config: ProxyConfig


Event = (
    ConnectionAccepted
    | DataReceived
    | EofReceived
    | ConnectionLost
    | UpstreamConnected
    | UpstreamFailed
    | Written
    | ShutdownRequested
    | ConfigReloaded
    | TlsHandshakeFailed
)
