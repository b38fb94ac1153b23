"""Validated, frozen configuration objects, and the parsers that build them.

The core never reads files: an adapter reads the TOML text and hands it to
:func:`parse_config`, which returns a :class:`ProxyConfig` or raises
:class:`~sansproxy.errors.ConfigError` naming the source, the key path and
what is wrong. Unknown keys are errors, never silently ignored, because a
misspelt key that is ignored is a setting the operator believes in but does
not have. :func:`quick_config` builds the same objects from the command line
options ``--listen`` and ``--upstream``.

Every key, its type and its default is documented in
``docs/configuration.md``; the defaults live here, in the dataclasses.
"""

from __future__ import annotations

from sansproxy.config._parse import QUICK_UPSTREAM_NAME, parse_config, quick_config
from sansproxy.config._quick import quick_listen_address, quick_upstream_url
from sansproxy.config._values import parse_size
from sansproxy.config.model import (
    LOOPS,
    RETRY_CONDITIONS,
    CacheSettings,
    Compression,
    DirectResponse,
    HeaderPolicy,
    Http2Settings,
    Limits,
    Listener,
    LogSettings,
    ProxyConfig,
    Redirect,
    RetryBudgetSettings,
    RetryPolicy,
    Route,
    RoutingSettings,
    Server,
    ServerSettings,
    Timeouts,
    Upstream,
)

__all__ = [
    "LOOPS",
    "QUICK_UPSTREAM_NAME",
    "RETRY_CONDITIONS",
    "CacheSettings",
    "Compression",
    "DirectResponse",
    "HeaderPolicy",
    "Http2Settings",
    "Limits",
    "Listener",
    "LogSettings",
    "ProxyConfig",
    "Redirect",
    "RetryBudgetSettings",
    "RetryPolicy",
    "Route",
    "RoutingSettings",
    "Server",
    "ServerSettings",
    "Timeouts",
    "Upstream",
    "parse_config",
    "parse_size",
    "quick_config",
    "quick_listen_address",
    "quick_upstream_url",
]
