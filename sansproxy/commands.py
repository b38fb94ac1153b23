"""Commands: everything the core asks the world to do.

:meth:`sansproxy.Proxy.handle` returns a complete list of these; the adapter
carries them out in order, without awaiting anything in between.
Commands are imperatives; they are frozen so a run can be recorded and compared.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sansproxy.events import ConnId

__all__ = [
    "AccessLog",
    "AccessRecord",
    "Close",
    "Command",
    "Log",
    "OpenUpstream",
    "PauseReading",
    "ResumeReading",
    "Send",
    "ShutdownComplete",
    "ShutdownWrite",
    "UpstreamTls",
]

LogLevel = Literal["debug", "info", "warning", "error"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Send:
    """Write ``data`` to ``conn``, after everything sent to it before.

    The adapter reports progress with :class:`~sansproxy.events.Written`.
    """

    conn: ConnId
    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class UpstreamTls:
    """How to speak TLS to a backend: verify against ``ca_file`` (or the system store)."""

    server_name: str
    verify: bool = True
    ca_file: str | None = None
    alpn: tuple[str, ...] = ("http/1.1",)


@dataclass(frozen=True, slots=True, kw_only=True)
class OpenUpstream:
    """Open a connection to a backend and name it ``conn``.

    Answer with :class:`~sansproxy.events.UpstreamConnected` or
    :class:`~sansproxy.events.UpstreamFailed`. The connect timeout is kept by
    the core; an adapter may also give up earlier.
    """

    conn: ConnId
    host: str
    port: int
    tls: UpstreamTls | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Close:
    """Close ``conn``: gracefully after writing what was sent, or at once with ``abort``.

    An abort resets the connection (SO_LINGER 0 where possible), which tells a
    client that the response it was receiving is incomplete. The core sends no
    further command for ``conn``; the adapter needs to report nothing more,
    though a late :class:`~sansproxy.events.ConnectionLost` is harmless.
    """

    conn: ConnId
    abort: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ShutdownWrite:
    """After writing what was sent, end ``conn``'s sending side but keep reading.

    TCP sends FIN (``shutdown(SHUT_WR)``); over TLS, where a half-close does not
    exist, the adapter may do nothing. The core uses it before a lingering close
    (RFC 9112 §9.6): the client sees the end of the response at once while its
    remaining request bytes are still drained. A :class:`Close` follows.
    """

    conn: ConnId


@dataclass(frozen=True, slots=True, kw_only=True)
class PauseReading:
    """Stop reading from ``conn`` until :class:`ResumeReading` (backpressure)."""

    conn: ConnId


@dataclass(frozen=True, slots=True, kw_only=True)
class ResumeReading:
    """Read from ``conn`` again."""

    conn: ConnId


@dataclass(frozen=True, slots=True, kw_only=True)
class Log:
    """A diagnostic message for the adapter's :mod:`logging` logger."""

    level: LogLevel
    message: str
    conn: ConnId | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessRecord:
    """One finished exchange, for the access log.

    Times are in seconds; ``upstream_ttfb`` is from handing the request head to
    a connected backend connection to the backend's first response byte,
    ``None`` when no backend answered.
    ``request_bytes`` and ``response_bytes`` count body bytes; ``response_bytes`` as
    sent to the client (compressed, where compression applied: nginx's
    ``$body_bytes_sent``).
    """

    client: tuple[str, int]
    method: str
    target: str
    http_version: str
    status: int
    request_bytes: int
    response_bytes: int
    upstream: str | None
    duration: float
    upstream_ttfb: float | None
    host: str = ""
    referer: str = ""
    user_agent: str = ""
    cache: str | None = None
    """What the route's cache did (``hit``, ``stale``, ``revalidated``, ``expired``,
    ``miss``, ``bypass``), None where the route does not cache."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AccessLog:
    """Write ``record`` to the access log."""

    record: AccessRecord


@dataclass(frozen=True, slots=True, kw_only=True)
class ShutdownComplete:
    """After :class:`~sansproxy.events.ShutdownRequested`: every connection is closed."""


Command = (
    Send
    | OpenUpstream
    | Close
    | ShutdownWrite
    | PauseReading
    | ResumeReading
    | Log
    | AccessLog
    | ShutdownComplete
)
