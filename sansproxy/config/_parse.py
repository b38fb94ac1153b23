"""Parsing a whole configuration: the TOML document and the command line.

Theory of operation: the TOML text is decoded by tomllib into plain dicts and lists; one
function per table walks it, first rejecting unknown keys (so a typo is reported before any
value), then checking each value's type and range, then building the frozen objects. Each
check raises _Invalid(key_path, problem); parse_config turns the first one into a
ConfigError carrying the source.
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import fields, replace
from typing import Any

from sansproxy.config._cache import cache as _cache
from sansproxy.config._compression import compression as _compression
from sansproxy.config._pools import _upstreams
from sansproxy.config._quick import quick_listen_address, quick_upstream_url
from sansproxy.config._routes import _check_merged_slashes, _routes, _routing
from sansproxy.config._values import (
    _ACCESS_LOG_FORMATS,
    _ALWAYS_HIDDEN,
    _FIELD_VALUE,
    _LOG_LEVELS,
    _SIZE_LIMITS,
    _TOKEN,
    _array,
    _bool,
    _check_keys,
    _choice,
    _Invalid,
    _non_negative_int,
    _parse_listen_address,
    _parse_network,
    _parse_server_url,
    _positive_int,
    _positive_number,
    _size,
    _string,
    _table,
)
from sansproxy.config.model import (
    LOOPS,
    PROTOCOLS,
    HeaderPolicy,
    Http2Settings,
    Limits,
    Listener,
    LogSettings,
    ProxyConfig,
    Server,
    ServerSettings,
    Timeouts,
    Upstream,
)
from sansproxy.errors import ConfigError

QUICK_UPSTREAM_NAME = "default"
"""The name :func:`quick_config` gives the single upstream it builds."""

_COMMAND_LINE = "command line"

_TOP_KEYS = (
    "listeners",
    "upstreams",
    "routes",
    "routing",
    "timeouts",
    "limits",
    "headers",
    "compression",
    "cache",
    "http2",
    "logging",
    "server",
)
_LISTENER_KEYS = ("address", "upstream", "certificate", "private_key", "protocols")


def parse_config(text: str, source: str = "<config>") -> ProxyConfig:
    """Parse and validate a TOML configuration.

    Args:
        text: the TOML document (already read by the caller: the core does no I/O).
        source: names the document in error messages, usually its file name.

    Returns:
        The validated configuration. Every listener's ``upstream`` is a key of
        ``upstreams``, so ``config.upstreams[listener.upstream]`` always works.

    Raises:
        ConfigError: the text is not TOML, or a key is unknown, missing, of the
            wrong type or out of range. Only the first problem is reported.
            Anything else raised is a bug.
    """
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(source, "", f"invalid TOML: {error}") from None
    try:
        return replace(_proxy_config(document), source=source)
    except _Invalid as invalid:
        raise ConfigError(source, invalid.key, invalid.problem) from None


def quick_config(listen: Sequence[str], upstreams: Sequence[str]) -> ProxyConfig:
    """Build a configuration from ``--listen`` and ``--upstream`` command line values.

    Every listener forwards to one upstream named :data:`QUICK_UPSTREAM_NAME`
    whose servers are ``upstreams``; everything else keeps its default.

    Args:
        listen: ``host:port`` addresses (IPv6 as ``[::1]:8080``; port 0 is ephemeral);
            ``:8080`` or ``8080`` listens on every IPv4 interface.
        upstreams: server URLs such as ``http://127.0.0.1:9000``; without a scheme
            (``127.0.0.1:9000``, ``localhost:9000``) ``http://`` is assumed.

    Returns:
        The configuration, as :func:`parse_config` would build it.

    Raises:
        ConfigError: with source ``"command line"`` and key ``"--listen"`` or
            ``"--upstream"``; the problem quotes the offending value.
        TypeError: ``listen`` or ``upstreams`` is a single string rather than a
            sequence of strings (a caller bug that would otherwise split it into
            characters).
    """
    if isinstance(listen, str) or isinstance(upstreams, str):
        raise TypeError("listen and upstreams must be sequences of strings, not a str")
    if not listen:
        raise ConfigError(_COMMAND_LINE, "--listen", "at least one is required")
    if not upstreams:
        raise ConfigError(_COMMAND_LINE, "--upstream", "at least one is required")
    listeners: list[Listener] = []
    for address in listen:
        try:
            host, port = _parse_listen_address(quick_listen_address(address))
        except ValueError as error:
            raise ConfigError(_COMMAND_LINE, "--listen", f"{address!r}: {error}") from None
        if port != 0 and any((lst.host, lst.port) == (host, port) for lst in listeners):
            raise ConfigError(_COMMAND_LINE, "--listen", f"{address!r}: given twice")
        listeners.append(Listener(host=host, port=port, upstream=QUICK_UPSTREAM_NAME))
    servers: list[Server] = []
    for url in upstreams:
        try:
            server = _parse_server_url(quick_upstream_url(url))
        except ValueError as error:
            raise ConfigError(_COMMAND_LINE, "--upstream", f"{url!r}: {error}") from None
        if server in servers:
            raise ConfigError(_COMMAND_LINE, "--upstream", f"{url!r}: given twice")
        servers.append(server)
    upstream = Upstream(name=QUICK_UPSTREAM_NAME, servers=tuple(servers))
    return ProxyConfig(
        listeners=tuple(listeners), upstreams={upstream.name: upstream}, source=_COMMAND_LINE
    )


def _proxy_config(document: dict[str, object]) -> ProxyConfig:
    _check_keys(document, "", _TOP_KEYS)
    has_routes = bool(document.get("routes"))
    upstreams = _upstreams(document.get("upstreams"), required=not has_routes)
    timeouts = _timeouts(document.get("timeouts", {}))
    compression = _compression(document.get("compression", {}), "compression")
    cache = _cache(document.get("cache", {}), "cache")
    routes = _routes(document.get("routes"), upstreams, timeouts, compression, cache)
    routing = _routing(document.get("routing", {}))
    _check_merged_slashes(routes, routing)
    listeners = _listeners(document.get("listeners"), upstreams, has_routes=has_routes)
    return ProxyConfig(
        listeners=listeners,
        upstreams=upstreams,
        routes=routes,
        routing=routing,
        timeouts=timeouts,
        limits=_limits(document.get("limits", {})),
        headers=_headers(document.get("headers", {})),
        compression=compression,
        cache=cache,
        http2=_http2(document.get("http2", {})),
        logging=_logging(document.get("logging", {})),
        server=_server(document.get("server", {})),
    )


def _listeners(
    value: object, upstreams: dict[str, Upstream], *, has_routes: bool
) -> tuple[Listener, ...]:
    if value is None:
        raise _Invalid("listeners", "required: define at least one [[listeners]] table")
    if not isinstance(value, list):
        raise _Invalid("listeners", "must be an array of tables ([[listeners]])")
    if not value:
        raise _Invalid("listeners", "at least one listener is required")
    listeners: list[Listener] = []
    for index, entry in enumerate(value):
        path = f"listeners[{index}]"
        listener = _listener(_table(entry, path), path, upstreams, has_routes=has_routes)
        if listener.port != 0:
            for other_index, other in enumerate(listeners):
                if (other.host, other.port) == (listener.host, listener.port):
                    raise _Invalid(
                        f"{path}.address", f"duplicate of listeners[{other_index}].address"
                    )
        listeners.append(listener)
    return tuple(listeners)


def _listener(
    table: dict[str, object], path: str, upstreams: dict[str, Upstream], *, has_routes: bool
) -> Listener:
    _check_keys(table, path, _LISTENER_KEYS)
    address_path = f"{path}.address"
    if "address" not in table:
        raise _Invalid(address_path, "required")
    try:
        host, port = _parse_listen_address(_string(table["address"], address_path))
    except ValueError as error:
        raise _Invalid(address_path, str(error)) from None

    upstream_path = f"{path}.upstream"
    defined = ", ".join(repr(name) for name in upstreams)
    upstream: str | None
    if "upstream" in table:
        upstream = _string(table["upstream"], upstream_path)
        if upstream not in upstreams:
            raise _Invalid(upstream_path, f"no upstream named {upstream!r} (defined: {defined})")
    elif has_routes:
        upstream = None  # Requests that match no route get 404.
    elif len(upstreams) == 1:
        (upstream,) = upstreams
    else:
        raise _Invalid(
            upstream_path, f"required when more than one upstream is defined ({defined})"
        )

    certificate = private_key = None
    if "certificate" in table:
        certificate = _string(table["certificate"], f"{path}.certificate")
    if "private_key" in table:
        private_key = _string(table["private_key"], f"{path}.private_key")
    if certificate is not None and private_key is None:
        raise _Invalid(f"{path}.private_key", "required when certificate is set")
    if private_key is not None and certificate is None:
        raise _Invalid(f"{path}.certificate", "required when private_key is set")
    protocols: tuple[str, ...] = ()
    if "protocols" in table:
        protocols = _protocols(table["protocols"], f"{path}.protocols", tls=certificate is not None)
    return Listener(
        host=host,
        port=port,
        upstream=upstream,
        certificate=certificate,
        private_key=private_key,
        protocols=protocols,
    )


def _protocols(value: object, path: str, *, tls: bool) -> tuple[str, ...]:
    """A listener's protocols: TLS ones are offered by ALPN in this order."""
    items = _array(value, path)
    if not items:
        raise _Invalid(path, "at least one protocol is required")
    protocols: list[str] = []
    for index, item in enumerate(items):
        item_path = f"{path}[{index}]"
        name = _choice(item, item_path, PROTOCOLS)
        if name in protocols:
            raise _Invalid(item_path, f"{name!r} is listed twice")
        if tls and name == "h2c":
            raise _Invalid(item_path, "'h2c' is HTTP/2 without TLS; a TLS listener offers 'h2'")
        if not tls and name == "h2":
            raise _Invalid(
                item_path,
                "'h2' needs TLS (set certificate and private_key); for HTTP/2 without TLS "
                "use 'h2c' (prior knowledge)",
            )
        protocols.append(name)
    return tuple(protocols)


_HTTP2_SIZES = (
    "initial_window_size",
    "connection_window_size",
    "max_frame_size",
    "max_header_list_size",
    "stream_buffer",
)
_HTTP2_RATES = ("control_frame_rate", "reset_rate")
_MAX_WINDOW = 2**31 - 1
"""RFC 9113 §6.9.1: a flow-control window never exceeds 2^31-1 octets."""


def _http2(value: object) -> Http2Settings:
    table = _table(value, "http2")
    _check_keys(table, "http2", [f.name for f in fields(Http2Settings)])
    values: dict[str, Any] = {}
    for name, item in table.items():
        path = f"http2.{name}"
        if name in _HTTP2_SIZES:
            values[name] = _size(item, path, zero_allowed=False)
        elif name in _HTTP2_RATES:
            values[name] = _positive_number(item, path)
        elif name == "header_table_size":  # 0 is valid: no dynamic table (RFC 7541 §4.2)
            values[name] = _non_negative_int(item, path)
        else:  # counts
            values[name] = _positive_int(item, path)
    settings = Http2Settings(**values)
    if not 16 * 1024 <= settings.max_frame_size <= 16 * 1024 * 1024 - 1:
        raise _Invalid("http2.max_frame_size", "must be from 16KiB to 16MiB - 1 (RFC 9113 §6.5.2)")
    if settings.initial_window_size > _MAX_WINDOW:
        raise _Invalid("http2.initial_window_size", "must be at most 2^31 - 1 bytes")
    if settings.connection_window_size > _MAX_WINDOW:
        raise _Invalid("http2.connection_window_size", "must be at most 2^31 - 1 bytes")
    if settings.connection_window_size < 65535:
        raise _Invalid(
            "http2.connection_window_size", "must be at least 65535 bytes (the initial window)"
        )
    return settings


def _timeouts(value: object) -> Timeouts:
    table = _table(value, "timeouts")
    names = [f.name for f in fields(Timeouts)]
    _check_keys(table, "timeouts", names)
    values = {name: _positive_number(item, f"timeouts.{name}") for name, item in table.items()}
    return Timeouts(**values)


def _limits(value: object) -> Limits:
    table = _table(value, "limits")
    names = [f.name for f in fields(Limits)]
    _check_keys(table, "limits", names)
    values: dict[str, int] = {}
    for name, item in table.items():
        path = f"limits.{name}"
        if name in _SIZE_LIMITS:
            values[name] = _size(item, path, zero_allowed=name == "max_body_bytes")
        else:
            values[name] = _positive_int(item, path)
    limits = Limits(**values)
    if limits.buffer_low_water >= limits.buffer_high_water:
        # Blame the key the operator wrote; if both are written, the low mark.
        if "buffer_low_water" in table:
            raise _Invalid(
                "limits.buffer_low_water",
                f"must be less than buffer_high_water ({limits.buffer_high_water} bytes)",
            )
        raise _Invalid(
            "limits.buffer_high_water",
            f"must be greater than buffer_low_water ({limits.buffer_low_water} bytes, the default)",
        )
    return limits


def _headers(value: object) -> HeaderPolicy:
    table = _table(value, "headers")
    _check_keys(table, "headers", [f.name for f in fields(HeaderPolicy)])
    default = HeaderPolicy()

    trusted: list[str] = []
    if "trusted_proxies" in table:
        items = _array(table["trusted_proxies"], "headers.trusted_proxies")
        for index, item in enumerate(items):
            path = f"headers.trusted_proxies[{index}]"
            network = _parse_network(_string(item, path), path)
            if network not in trusted:
                trusted.append(network)

    via = default.via
    if "via" in table:
        raw_via = table["via"]
        if raw_via is False:
            via = None
        elif isinstance(raw_via, str):
            # RFC 9110 section 7.6.3: received-by is a pseudonym, which is a token.
            if not _TOKEN.fullmatch(raw_via):
                raise _Invalid(
                    "headers.via",
                    "must be a token (letters, digits and !#$%&'*+-.^_`|~), or false",
                )
            via = raw_via
        else:
            raise _Invalid("headers.via", "must be a string or false")

    server = default.server
    if "server" in table:
        server = _string(table["server"], "headers.server")
        if not _FIELD_VALUE.fullmatch(server):
            raise _Invalid(
                "headers.server",
                "must be printable ASCII without control characters or surrounding spaces",
            )

    hidden = list(_ALWAYS_HIDDEN)
    if "hide_response_headers" in table:
        items = _array(table["hide_response_headers"], "headers.hide_response_headers")
        for index, item in enumerate(items):
            path = f"headers.hide_response_headers[{index}]"
            name = _string(item, path)
            # RFC 9110 section 5.1: a field name is a token, compared case-insensitively.
            if not _TOKEN.fullmatch(name):
                raise _Invalid(path, "must be a header field name (a token)")
            if name.lower() not in hidden:
                hidden.append(name.lower())

    return HeaderPolicy(
        trusted_proxies=tuple(trusted),
        x_forwarded=_bool(table.get("x_forwarded", default.x_forwarded), "headers.x_forwarded"),
        forwarded=_bool(table.get("forwarded", default.forwarded), "headers.forwarded"),
        via=via,
        server=server,
        hide_response_headers=tuple(hidden),
    )


def _server(value: object) -> ServerSettings:
    table = _table(value, "server")
    _check_keys(table, "server", [f.name for f in fields(ServerSettings)])
    default = ServerSettings()
    workers = table.get("workers", default.workers)
    if workers == "auto":
        workers = 0
    elif isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= 256:
        raise _Invalid("server.workers", 'must be "auto" or a whole number from 1 to 256')
    return ServerSettings(
        loop=_choice(table.get("loop", default.loop), "server.loop", LOOPS),
        workers=workers,
    )


def _logging(value: object) -> LogSettings:
    table = _table(value, "logging")
    _check_keys(table, "logging", [f.name for f in fields(LogSettings)])
    default = LogSettings()
    return LogSettings(
        level=_choice(table.get("level", default.level), "logging.level", _LOG_LEVELS),
        access_log=_bool(table.get("access_log", default.access_log), "logging.access_log"),
        access_log_format=_choice(
            table.get("access_log_format", default.access_log_format),
            "logging.access_log_format",
            _ACCESS_LOG_FORMATS,
        ),
    )
