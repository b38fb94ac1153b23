"""sansproxy: a reverse proxy built around a pure, sans-IO core.

The core takes events (bytes received, connections opened or closed, time passing) and returns
commands (bytes to write, connections to open or close). It never performs I/O itself, so one
core can be driven by any event loop, or by a test with a fake clock.
"""

from sansproxy.commands import (
    AccessLog,
    AccessRecord,
    Close,
    Command,
    Log,
    OpenUpstream,
    PauseReading,
    ResumeReading,
    Send,
    ShutdownComplete,
    ShutdownWrite,
    UpstreamTls,
)
from sansproxy.config import ProxyConfig, parse_config, quick_config
from sansproxy.errors import ConfigError, SansproxyError, UsageError
from sansproxy.events import (
    ConfigReloaded,
    ConnectionAccepted,
    ConnectionLost,
    ConnId,
    DataReceived,
    EofReceived,
    Event,
    ShutdownRequested,
    TlsHandshakeFailed,
    TlsInfo,
    UpstreamConnected,
    UpstreamFailed,
    Written,
)
from sansproxy.handshakes import TlsStatistics
from sansproxy.health import HealthChange, ServerHealthView
from sansproxy.pool import PoolView, ServerView
from sansproxy.proxy import Proxy, ProxyStatistics

__version__ = "0.1.0"
"""The release of sansproxy. Kept here only: ``pyproject.toml`` takes it from this line
(hatch's dynamic version), so the installed metadata and the core always agree, and the
core knows its version without reading a file."""

__all__ = [
    "AccessLog",
    "AccessRecord",
    "Close",
    "Command",
    "ConfigError",
    "ConfigReloaded",
    "ConnId",
    "ConnectionAccepted",
    "ConnectionLost",
    "DataReceived",
    "EofReceived",
    "Event",
    "HealthChange",
    "Log",
    "OpenUpstream",
    "PauseReading",
    "PoolView",
    "Proxy",
    "ProxyConfig",
    "ProxyStatistics",
    "ResumeReading",
    "SansproxyError",
    "Send",
    "ServerHealthView",
    "ServerView",
    "ShutdownComplete",
    "ShutdownRequested",
    "ShutdownWrite",
    "TlsHandshakeFailed",
    "TlsInfo",
    "TlsStatistics",
    "UpstreamConnected",
    "UpstreamFailed",
    "UpstreamTls",
    "UsageError",
    "Written",
    "__version__",
    "parse_config",
    "quick_config",
]
