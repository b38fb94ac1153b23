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

import difflib
import ipaddress
import json
import math
import re
import tomllib
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, fields

from sansproxy.errors import ConfigError

__all__ = [
    "LOOPS",
    "QUICK_UPSTREAM_NAME",
    "HeaderPolicy",
    "Limits",
    "Listener",
    "LogSettings",
    "ProxyConfig",
    "Server",
    "ServerSettings",
    "Timeouts",
    "Upstream",
    "parse_config",
    "parse_size",
    "quick_config",
]

KIB = 1024
MIB = 1024 * KIB


@dataclass(frozen=True, slots=True, kw_only=True)
class Listener:
    """One address the proxy accepts clients on.

    ``certificate`` and ``private_key`` (both or neither) turn on TLS
    termination; they are paths the adapter loads, the core only learns
    whether a listener is TLS (for ``X-Forwarded-Proto``).
    """

    host: str
    port: int
    upstream: str
    certificate: str | None = None
    private_key: str | None = None

    @property
    def tls(self) -> bool:
        """Whether this listener terminates TLS (it has a certificate and key)."""
        return self.certificate is not None


@dataclass(frozen=True, slots=True, kw_only=True)
class Server:
    """One backend address of an upstream (``http://host:port`` or ``https://``)."""

    host: str
    port: int
    tls: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Upstream:
    """A named group of backend servers used in turn.

    ``host_header`` replaces the client's Host on the way up (``None`` passes
    it through). ``tls_verify``/``ca_file``/``server_name`` apply to the
    ``https://`` servers of the group.
    """

    name: str
    servers: tuple[Server, ...]
    host_header: str | None = None
    tls_verify: bool = True
    ca_file: str | None = None
    server_name: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeouts:
    """Every timeout the core keeps, in seconds."""

    client_header: float = 10.0
    """From accepting a connection, or from the first byte of a kept-alive connection's
    next request, to a complete request head (slowloris)."""
    client_keepalive: float = 60.0
    """Idle time between requests on a client connection before it is closed."""
    client_body: float = 30.0
    """Longest pause while a request body is being received."""
    upstream_connect: float = 5.0
    """Establishing a backend connection, TLS included."""
    upstream_header: float = 60.0
    """From the end of the request to the backend's response head."""
    upstream_body: float = 60.0
    """Longest pause while a response body is being received."""
    upstream_keepalive: float = 60.0
    """How long an idle pooled backend connection is kept."""
    tunnel_idle: float = 300.0
    """Idle time of an upgraded (tunnelled) connection before it is closed."""
    drain: float = 10.0
    """On shutdown, how long in-flight exchanges get before they are cut."""
    client_linger: float = 5.0
    """After an error response cut a request short, how long the client's remaining
    bytes are read and discarded so that closing does not reset the response away
    (RFC 9112 §9.6)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Size and count limits; exceeding one gets a clear HTTP error."""

    max_header_bytes: int = 16 * KIB
    """Request head size (request line + headers); over it: 431."""
    max_header_count: int = 100
    """Number of request header fields; over it: 431."""
    max_uri_bytes: int = 8 * KIB
    """Request target length; over it: 414."""
    max_body_bytes: int = 100 * MIB
    """Request body size; over it: 413 (0 means unlimited)."""
    max_client_connections: int = 10_000
    """Concurrent client connections; more are answered 503 and closed."""
    max_idle_per_server: int = 32
    """Idle keep-alive connections kept per backend server."""
    buffer_high_water: int = 256 * KIB
    """Unwritten bytes on one side above which reading the other side pauses."""
    buffer_low_water: int = 64 * KIB
    """Unwritten bytes below which reading resumes."""
    retry_buffer_bytes: int = 64 * KIB
    """Request body bytes kept to resend a request on a fresh connection."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HeaderPolicy:
    """What the proxy adds to and removes from forwarded messages."""

    trusted_proxies: tuple[str, ...] = ()
    """Networks (CIDR) whose X-Forwarded-* / Forwarded values are kept and extended."""
    x_forwarded: bool = True
    """Send X-Forwarded-For, -Proto and -Host upstream."""
    forwarded: bool = True
    """Send the RFC 7239 Forwarded header upstream."""
    via: str | None = "sansproxy"
    """Pseudonym in Via headers (``None`` disables Via)."""
    server: str | None = None
    """Replacement for the backend's Server header (``None`` removes it)."""
    hide_response_headers: tuple[str, ...] = ("server", "x-powered-by")
    """Response headers removed before a response reaches the client (lower case)."""


LOOPS = ("trio", "asyncio", "uvloop")
"""Event loops the server script can run the core on."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerSettings:
    """How the server script runs the core: which event loop, how many processes.

    ``workers`` is a count, or 0 for one worker per CPU (``"auto"`` in TOML).
    Both are read once at start-up; a reload does not change them.
    """

    loop: str = "trio"
    workers: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class LogSettings:
    """Where logs go; the core only emits records, the adapter writes them."""

    level: str = "info"
    access_log: bool = True
    access_log_format: str = "combined"
    """``combined`` (Apache/nginx combined format) or ``json`` (one object per line)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxyConfig:
    """The whole validated configuration."""

    listeners: tuple[Listener, ...]
    upstreams: dict[str, Upstream] = field(default_factory=dict)
    timeouts: Timeouts = Timeouts()
    limits: Limits = Limits()
    headers: HeaderPolicy = HeaderPolicy()
    logging: LogSettings = LogSettings()
    server: ServerSettings = ServerSettings()


# --------------------------------------------------------------------------------------------
# Parsing.
#
# Theory of operation: the TOML text is decoded by tomllib into plain dicts and lists; one
# function per table walks it, first rejecting unknown keys (so a typo is reported before any
# value), then checking each value's type and range, then building the frozen objects. Each
# check raises _Invalid(key_path, problem); parse_config turns the first one into a
# ConfigError carrying the source. Value parsers that the command line shares (addresses,
# server URLs, sizes) raise ValueError(problem) instead, and their callers attach the key.
# --------------------------------------------------------------------------------------------

QUICK_UPSTREAM_NAME = "default"
"""The name :func:`quick_config` gives the single upstream it builds."""

_COMMAND_LINE = "command line"

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
"""TOML bare keys; other key names are quoted in key paths."""

_UPSTREAM_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
"""RFC 9110 section 5.6.2 token: field names and Via pseudonyms."""

_FIELD_VALUE = re.compile(r"[\x21-\x7e](?:[\x20-\x7e\t]*[\x21-\x7e])?")
"""RFC 9110 section 5.5 field value, restricted to ASCII (no obs-text)."""

_HOST_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")
"""A DNS label (RFC 1123 section 2.1), also allowing '_' as container and service names do."""

_DOTTED_DIGITS = re.compile(r"[0-9.]+")
_PORT = re.compile(r"[0-9]{1,5}")
_SIZE = re.compile(r"\s*([0-9]+)\s*([A-Za-z]*)\s*")

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
}

_SIZE_LIMITS = frozenset(
    {
        "max_header_bytes",
        "max_uri_bytes",
        "max_body_bytes",
        "buffer_high_water",
        "buffer_low_water",
        "retry_buffer_bytes",
    }
)
"""Limits fields that are byte sizes; every other Limits field is a count."""

_LOG_LEVELS = ("debug", "info", "warning", "error")
_ACCESS_LOG_FORMATS = ("combined", "json")
_ALWAYS_HIDDEN = ("server", "x-powered-by")

_TOP_KEYS = ("listeners", "upstreams", "timeouts", "limits", "headers", "logging", "server")
_LISTENER_KEYS = ("address", "upstream", "certificate", "private_key")
_UPSTREAM_KEYS = ("servers", "host_header", "tls_verify", "ca_file", "server_name")


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
        return _proxy_config(document)
    except _Invalid as invalid:
        raise ConfigError(source, invalid.key, invalid.problem) from None


def quick_config(listen: Sequence[str], upstreams: Sequence[str]) -> ProxyConfig:
    """Build a configuration from ``--listen`` and ``--upstream`` command line values.

    Every listener forwards to one upstream named :data:`QUICK_UPSTREAM_NAME`
    whose servers are ``upstreams``; everything else keeps its default.

    Args:
        listen: ``host:port`` addresses (IPv6 as ``[::1]:8080``; port 0 is ephemeral).
        upstreams: server URLs such as ``http://127.0.0.1:9000``.

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
            host, port = _parse_listen_address(address)
        except ValueError as error:
            raise ConfigError(_COMMAND_LINE, "--listen", f"{address!r}: {error}") from None
        if port != 0 and any((lst.host, lst.port) == (host, port) for lst in listeners):
            raise ConfigError(_COMMAND_LINE, "--listen", f"{address!r}: given twice")
        listeners.append(Listener(host=host, port=port, upstream=QUICK_UPSTREAM_NAME))
    servers: list[Server] = []
    for url in upstreams:
        try:
            server = _parse_server_url(url)
        except ValueError as error:
            raise ConfigError(_COMMAND_LINE, "--upstream", f"{url!r}: {error}") from None
        if server in servers:
            raise ConfigError(_COMMAND_LINE, "--upstream", f"{url!r}: given twice")
        servers.append(server)
    upstream = Upstream(name=QUICK_UPSTREAM_NAME, servers=tuple(servers))
    return ProxyConfig(listeners=tuple(listeners), upstreams={upstream.name: upstream})


def parse_size(text: str) -> int:
    """Parse a byte size such as ``"512"``, ``"16KiB"``, ``"100 MiB"`` or ``"1MB"``.

    ``KiB``/``MiB``/``GiB`` are binary (1024-based), ``KB``/``MB``/``GB`` decimal
    (1000-based), ``B`` or no unit means bytes. Units are case-insensitive; the
    number must be a whole number.

    Raises:
        ValueError: the text is not a size; the message says why.
    """
    match = _SIZE.fullmatch(text)
    if match is None:
        raise ValueError(
            f"invalid size {text!r}: expected a whole number with an optional unit "
            "(B, KB, MB, GB, KiB, MiB, GiB)"
        )
    number, unit = match.groups()
    multiplier = _SIZE_UNITS.get(unit.lower())
    if multiplier is None:
        raise ValueError(
            f"invalid size {text!r}: unknown unit {unit!r} (use B, KB, MB, GB, KiB, MiB or GiB)"
        )
    return int(number) * multiplier


class _Invalid(Exception):
    """One problem at one key path; parse_config adds the source."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(key, problem)
        self.key = key
        self.problem = problem


def _key(parent: str, name: str) -> str:
    """Extend a dotted key path, quoting names that are not TOML bare keys."""
    part = name if _BARE_KEY.fullmatch(name) else json.dumps(name, ensure_ascii=False)
    return f"{parent}.{part}" if parent else part


def _check_keys(table: dict[str, object], path: str, allowed: Collection[str]) -> None:
    for name in table:
        if name not in allowed:
            close = difflib.get_close_matches(name, list(allowed), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise _Invalid(_key(path, name), f"unknown key{hint}")


def _table(value: object, path: str) -> dict[str, object]:
    if not isinstance(value, dict):
        raise _Invalid(path, "must be a table")
    return value


def _array(value: object, path: str) -> list[object]:
    if not isinstance(value, list):
        raise _Invalid(path, "must be an array")
    return value


def _string(value: object, path: str) -> str:
    if not isinstance(value, str):
        raise _Invalid(path, "must be a string")
    if not value:
        raise _Invalid(path, "must not be empty")
    return value


def _bool(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(path, "must be true or false")
    return value


def _positive_number(value: object, path: str) -> float:
    # bool is a subclass of int; `true` is not a number of seconds.
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise _Invalid(path, "must be a positive number")
    if not math.isfinite(value):
        raise _Invalid(path, "must be a finite number")
    return float(value)


def _positive_int(value: object, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise _Invalid(path, "must be a positive integer")
    return value


def _size(value: object, path: str, *, zero_allowed: bool) -> int:
    if isinstance(value, str):
        try:
            size = parse_size(value)
        except ValueError as error:
            raise _Invalid(path, str(error)) from None
    elif isinstance(value, int) and not isinstance(value, bool):
        size = value
    else:
        raise _Invalid(path, 'must be an integer or a size string such as "16KiB"')
    if size < 0 or (size == 0 and not zero_allowed):
        raise _Invalid(path, "must not be negative" if zero_allowed else "must be positive")
    return size


def _choice(value: object, path: str, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value.lower() not in choices:
        raise _Invalid(path, f"must be one of {', '.join(choices)}")
    return value.lower()


def _proxy_config(document: dict[str, object]) -> ProxyConfig:
    _check_keys(document, "", _TOP_KEYS)
    upstreams = _upstreams(document.get("upstreams"))
    listeners = _listeners(document.get("listeners"), upstreams)
    return ProxyConfig(
        listeners=listeners,
        upstreams=upstreams,
        timeouts=_timeouts(document.get("timeouts", {})),
        limits=_limits(document.get("limits", {})),
        headers=_headers(document.get("headers", {})),
        logging=_logging(document.get("logging", {})),
        server=_server(document.get("server", {})),
    )


def _upstreams(value: object) -> dict[str, Upstream]:
    if value is None:
        raise _Invalid("upstreams", "required: define at least one [upstreams.<name>] table")
    table = _table(value, "upstreams")
    if not table:
        raise _Invalid("upstreams", "at least one upstream is required")
    upstreams: dict[str, Upstream] = {}
    for name, entry in table.items():
        path = _key("upstreams", name)
        if not _UPSTREAM_NAME.fullmatch(name):
            raise _Invalid(
                path,
                "invalid upstream name: use letters, digits, '_' and '-', not starting with '-'",
            )
        if not isinstance(entry, dict):
            raise _Invalid(path, f"must be a table ([{path}] with a servers key)")
        upstreams[name] = _upstream(name, entry, path)
    return upstreams


def _upstream(name: str, table: dict[str, object], path: str) -> Upstream:
    _check_keys(table, path, _UPSTREAM_KEYS)
    servers_path = f"{path}.servers"
    if "servers" not in table:
        raise _Invalid(servers_path, "required")
    items = _array(table["servers"], servers_path)
    if not items:
        raise _Invalid(servers_path, "must not be empty")
    servers: list[Server] = []
    for index, item in enumerate(items):
        item_path = f"{servers_path}[{index}]"
        try:
            server = _parse_server_url(_string(item, item_path))
        except ValueError as error:
            raise _Invalid(item_path, str(error)) from None
        if server in servers:
            raise _Invalid(item_path, f"duplicate of {servers_path}[{servers.index(server)}]")
        servers.append(server)

    host_header = None
    if "host_header" in table:
        host_header = _string(table["host_header"], f"{path}.host_header")
        try:
            _parse_authority(host_header, port_required=False)
        except ValueError as error:
            raise _Invalid(f"{path}.host_header", f"invalid Host value: {error}") from None
    tls_verify = _bool(table.get("tls_verify", True), f"{path}.tls_verify")
    ca_file = None
    if "ca_file" in table:
        ca_file = _string(table["ca_file"], f"{path}.ca_file")
        if not tls_verify:
            raise _Invalid(f"{path}.ca_file", "has no effect when tls_verify is false")
    server_name = None
    if "server_name" in table:
        server_name_path = f"{path}.server_name"
        try:
            server_name = _parse_bare_host(_string(table["server_name"], server_name_path))
        except ValueError as error:
            raise _Invalid(server_name_path, str(error)) from None

    # TLS settings on an all-http group are almost surely a mistake: the operator
    # believes the backend traffic is verified TLS when it is plaintext.
    if not any(server.tls for server in servers):
        for tls_key in ("tls_verify", "ca_file", "server_name"):
            if tls_key in table:
                raise _Invalid(
                    f"{path}.{tls_key}", "applies only to https:// servers; this upstream has none"
                )
    return Upstream(
        name=name,
        servers=tuple(servers),
        host_header=host_header,
        tls_verify=tls_verify,
        ca_file=ca_file,
        server_name=server_name,
    )


def _listeners(value: object, upstreams: dict[str, Upstream]) -> tuple[Listener, ...]:
    if value is None:
        raise _Invalid("listeners", "required: define at least one [[listeners]] table")
    if not isinstance(value, list):
        raise _Invalid("listeners", "must be an array of tables ([[listeners]])")
    if not value:
        raise _Invalid("listeners", "at least one listener is required")
    listeners: list[Listener] = []
    for index, entry in enumerate(value):
        path = f"listeners[{index}]"
        listener = _listener(_table(entry, path), path, upstreams)
        if listener.port != 0:
            for other_index, other in enumerate(listeners):
                if (other.host, other.port) == (listener.host, listener.port):
                    raise _Invalid(
                        f"{path}.address", f"duplicate of listeners[{other_index}].address"
                    )
        listeners.append(listener)
    return tuple(listeners)


def _listener(table: dict[str, object], path: str, upstreams: dict[str, Upstream]) -> Listener:
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
    if "upstream" in table:
        upstream = _string(table["upstream"], upstream_path)
        if upstream not in upstreams:
            raise _Invalid(upstream_path, f"no upstream named {upstream!r} (defined: {defined})")
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
    return Listener(
        host=host, port=port, upstream=upstream, certificate=certificate, private_key=private_key
    )


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


def _parse_network(text: str, path: str) -> str:
    """Validate a trusted proxy as an IP address or CIDR network; return it as CIDR."""
    try:
        return str(ipaddress.ip_network(text))
    except ValueError:
        pass
    try:
        loose = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise _Invalid(
            path, f"{text!r} is not an IP address or a CIDR network such as 10.0.0.0/8"
        ) from None
    # "10.1.2.3/8" is ambiguous (a host or a network?); in a trust list, ask rather than guess.
    raise _Invalid(path, f"{text!r} has host bits set (did you mean {str(loose)!r}?)")


def _parse_listen_address(text: str) -> tuple[str, int]:
    """Parse a listener's ``host:port``; port 0 asks for an ephemeral port."""
    host, port = _parse_authority(text, port_required=True)
    assert port is not None  # port_required guarantees it
    return host, port


def _parse_server_url(text: str) -> Server:
    """Parse ``http://host[:port]`` or ``https://host[:port]`` into a :class:`Server`."""
    scheme, separator, rest = text.partition("://")
    if not separator:
        raise ValueError("must be a URL such as http://127.0.0.1:9000")
    scheme = scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"scheme must be http or https, not {scheme!r}")
    end = min((i for i in (rest.find(c) for c in "/?#") if i != -1), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    if tail.startswith("?"):
        raise ValueError("must not have a query")
    if tail.startswith("#"):
        raise ValueError("must not have a fragment")
    if tail not in ("", "/"):
        # The client's request target is forwarded unchanged; there is no prefix rewriting.
        raise ValueError("must not have a path")
    if "@" in authority:
        raise ValueError("must not contain user information")
    tls = scheme == "https"
    host, port = _parse_authority(authority, port_required=False)
    if port is None:
        port = 443 if tls else 80
    if port == 0:
        raise ValueError("port must be from 1 to 65535")
    return Server(host=host, port=port, tls=tls)


def _parse_authority(text: str, *, port_required: bool) -> tuple[str, int | None]:
    """Split ``host[:port]`` (RFC 3986 section 3.2) into a normalised host and a port.

    IPv6 addresses must be bracketed and are returned without brackets; host
    names are lower-cased.
    """
    port_text: str | None
    if text.startswith("["):
        end = text.find("]")
        if end == -1:
            raise ValueError("missing ']' after the IPv6 address")
        host_text, rest = text[1:end], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError("expected ':port' after ']'")
        port_text = rest[1:] if rest else None
        parse_host = _parse_ipv6
    else:
        if text.count(":") > 1:
            raise ValueError("an IPv6 address must be in brackets, such as [::1]:8080")
        host_text, separator, after = text.partition(":")
        port_text = after if separator else None
        parse_host = _parse_name_or_ipv4
    # A missing port is the likelier mistake ("8080" alone), so it is reported first.
    if port_text is None and port_required:
        raise ValueError("must be host:port (IPv6 as [::1]:8080)")
    host = parse_host(host_text)
    if port_text is None:
        return host, None
    if not _PORT.fullmatch(port_text) or int(port_text) > 65535:
        raise ValueError(f"invalid port {port_text!r}: must be a number from 0 to 65535")
    return host, int(port_text)


def _parse_bare_host(text: str) -> str:
    """A host name or an IP address without brackets or port (a TLS server name)."""
    if ":" in text:
        try:
            return _parse_ipv6(text)
        except ValueError:
            raise ValueError("must be a host name or an IP address, without port") from None
    return _parse_name_or_ipv4(text)


def _parse_ipv6(text: str) -> str:
    try:
        address = ipaddress.IPv6Address(text)
    except ValueError:
        raise ValueError(f"invalid IPv6 address {text!r}") from None
    return str(address)


def _parse_name_or_ipv4(text: str) -> str:
    if not text:
        raise ValueError("missing host")
    if _DOTTED_DIGITS.fullmatch(text):
        try:
            return str(ipaddress.IPv4Address(text))
        except ValueError:
            raise ValueError(f"invalid IPv4 address {text!r}") from None
    name = text.removesuffix(".")
    labels = name.split(".")
    if len(name) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"invalid host name {text!r}")
    return text.lower()
