"""The configuration's frozen objects: what a validated configuration is made of.

Defaults live here, in the dataclasses; ``docs/configuration.md`` documents every key.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sansproxy.compression.decide import DEFAULT_MIN_SIZE, DEFAULT_TYPES
from sansproxy.compression.encoders import DEFAULT_LEVELS
from sansproxy.header_edits import HeaderEdits
from sansproxy.health import ActiveCheck, OutlierDetection
from sansproxy.routing import RouteMatch

KIB = 1024
MIB = 1024 * KIB


PROTOCOLS = ("h2", "http/1.1", "h2c")
"""What a listener may speak: ``h2`` and ``http/1.1`` offered by ALPN on TLS listeners,
``http/1.1`` and ``h2c`` (HTTP/2 with prior knowledge) on cleartext ones."""

TLS_PROTOCOLS = ("h2", "http/1.1")
"""The default of a TLS listener, in ALPN preference order."""
CLEARTEXT_PROTOCOLS = ("http/1.1",)
"""The default of a cleartext listener."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Listener:
    """One address the proxy accepts clients on.

    ``certificate`` and ``private_key`` (both or neither) turn on TLS
    termination; they are paths the adapter loads, the core only learns
    whether a listener is TLS (for ``X-Forwarded-Proto``) and which protocol
    the handshake chose.
    """

    host: str
    port: int
    upstream: str | None = None
    """Where requests that match no route go; ``None``: they get 404."""
    certificate: str | None = None
    private_key: str | None = None
    protocols: tuple[str, ...] = ()
    """What the listener speaks (:data:`PROTOCOLS`), on TLS the ALPN offer in order;
    empty means the default of its kind (:data:`TLS_PROTOCOLS` or :data:`CLEARTEXT_PROTOCOLS`)."""

    @property
    def tls(self) -> bool:
        """Whether this listener terminates TLS (it has a certificate and key)."""
        return self.certificate is not None

    @property
    def speaks(self) -> tuple[str, ...]:
        """The protocols in effect: the configured ones, or the default of the listener's kind."""
        if self.protocols:
            return self.protocols
        return TLS_PROTOCOLS if self.tls else CLEARTEXT_PROTOCOLS

    @property
    def alpn(self) -> tuple[str, ...]:
        """The ALPN protocols a TLS handshake offers, in order of preference."""
        return tuple(p for p in self.speaks if p != "h2c")

    @property
    def h2c(self) -> bool:
        """Whether cleartext clients may speak HTTP/2 with prior knowledge."""
        return "h2c" in self.speaks


@dataclass(frozen=True, slots=True, kw_only=True)
class Server:
    """One backend address of an upstream (``http://host:port`` or ``https://``).

    A server's identity is its address: the balancing settings (weight, backup,
    connection cap) do not take part in equality, so a reload that only changes
    them keeps the server's pooled connections and health.
    """

    host: str
    port: int
    tls: bool = False
    weight: int = field(default=1, compare=False)
    """Share of traffic relative to the other servers (weight-aware algorithms)."""
    backup: bool = field(default=False, compare=False)
    """Gets traffic only while every primary server of the upstream is down."""
    max_connections: int = field(default=0, compare=False)
    """Concurrent requests this server is given; 0 means no cap."""

    @property
    def label(self) -> str:
        """``host:port`` (IPv6 in brackets), as logs and statistics show the server."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


DEFAULT_OUTLIER = OutlierDetection(consecutive_failures=3, base_ejection=10.0)
"""Passive checks every upstream gets unless it says otherwise (nginx ejects after one)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryBudgetSettings:
    """How many retries an upstream allows.

    At most ``ratio`` of its requests over ``window`` seconds, plus ``min_retries``
    per window so that a quiet upstream can still retry.
    """

    ratio: float = 0.2
    window: float = 10.0
    min_retries: int = 3


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
    balance: str = "weighted_round_robin"
    """The algorithm (:data:`sansproxy.balancing.ALGORITHMS`)."""
    hash_on: str | None = None
    """``ring_hash`` key: ``client_ip``, ``header:<name>`` or ``cookie:<name>``."""
    sticky_cookie: str | None = None
    """Cookie the proxy sets to pin a client to the server that answered it first."""
    slow_start: float = 0.0
    """Seconds over which a server that comes back ramps up to its full weight."""
    queue_size: int = 0
    """Requests that may wait while every server is at ``max_connections``."""
    queue_timeout: float = 5.0
    """Longest wait in that queue before the client gets 503."""
    when_all_down: str = "fail"
    """``fail``: 503 while no server is available; ``use_all``: try them all anyway."""
    health_check: ActiveCheck | None = None
    """Active probes; ``None``: no probes, servers are up unless ejected."""
    outlier: OutlierDetection | None = DEFAULT_OUTLIER
    """Passive checks (ejection after consecutive failures); ``None`` turns them off."""
    retry_budget: RetryBudgetSettings = RetryBudgetSettings()
    """Cap on retries as a share of requests, so retries cannot amplify an outage."""


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
    """Request head size as received, from the request line to the empty line that ends
    the header section, line ends included; over it: 431. Also bounds a chunked body's
    trailer section and each chunk-size line."""
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


@dataclass(frozen=True, slots=True, kw_only=True)
class Http2Settings:
    """HTTP/2 to clients: the SETTINGS the proxy advertises, and its defences."""

    max_concurrent_streams: int = 100
    """Streams a client may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS)."""
    initial_window_size: int = 256 * KIB
    """Request bytes a client may send on one stream before the proxy reopens its window."""
    connection_window_size: int = 1 * MIB
    """Request bytes a client may send on all its streams before the windows are reopened."""
    max_frame_size: int = 16 * KIB
    """Largest frame payload the proxy accepts (SETTINGS_MAX_FRAME_SIZE, 16 KiB to 16 MiB)."""
    max_header_list_size: int = 64 * KIB
    """Largest header block (RFC 9113 size: names, values, 32 per field); past it, the
    connection ends (ENHANCE_YOUR_CALM). ``limits.max_header_bytes`` still gives 431 below it."""
    header_table_size: int = 4096
    """HPACK dynamic table the client may make the proxy keep (SETTINGS_HEADER_TABLE_SIZE)."""
    stream_buffer: int = 64 * KIB
    """Response bytes kept per stream while the client's window is closed; past it, that
    stream's backend is not read until the client opens the window again."""
    control_frame_burst: int = 1000
    """Control frames (SETTINGS, PING, PRIORITY, WINDOW_UPDATE, empty DATA, unknown types)
    a client may send in a burst before the connection is ended as a flood."""
    control_frame_rate: float = 100.0
    """Control frames per second that refill the burst (plus one per DATA frame sent)."""
    reset_burst: int = 100
    """Streams a client may reset before their response is complete, in a burst (rapid
    reset, CVE-2023-44487)."""
    reset_rate: float = 10.0
    """Such resets per second that refill the burst."""


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
    """``combined`` (exactly the Apache/nginx combined format), ``extended`` (combined plus
    upstream and times) or ``json`` (one object per line); see ``sansproxy_io.accesslog``."""


RETRY_CONDITIONS = ("timeout", "502", "503", "504")
"""Conditions on which an idempotent request may be tried again (besides failed connects
and connections reset before any response byte, which are always retried when safe)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """How one route tries a request again on another server."""

    tries: int = 3
    """Most tries in all, the first included (1 turns retries off)."""
    on: frozenset[str] = frozenset()
    """Extra conditions from :data:`RETRY_CONDITIONS` for idempotent requests."""
    methods: frozenset[bytes] = frozenset(
        {b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"}
    )
    """Methods treated as idempotent (RFC 9110 section 9.2.2)."""
    backoff_base: float = 0.025
    """Backoff before try n is uniform in [0, min(backoff_max, backoff_base * 2**(n-2))]."""
    backoff_max: float = 0.25


@dataclass(frozen=True, slots=True, kw_only=True)
class Redirect:
    """Answer with a redirect instead of proxying.

    ``location`` may use ``{scheme}``, ``{host}`` (the request's host name, without
    port), ``{path}``, ``{query}`` (with its ``?``) and ``{uri}`` (path and query).
    """

    location: str
    status: int = 302


@dataclass(frozen=True, slots=True, kw_only=True)
class DirectResponse:
    """Answer with a fixed response (a maintenance page, a health endpoint)."""

    status: int
    body: bytes = b""
    headers: tuple[tuple[bytes, bytes], ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Compression:
    """Response compression (``[compression]``, and ``[routes.compression]`` per route).

    ``docs/compression.md`` explains the choices behind the defaults.
    """

    enabled: bool = False
    encodings: tuple[str, ...] = ()
    """The codings offered, best first; empty: zstd, br, gzip, those whose library is
    installed (``sansproxy.compression.negotiate.default_preference``)."""
    levels: tuple[tuple[str, int], ...] = tuple(DEFAULT_LEVELS.items())
    """``(coding, level)``: the compression level (Brotli's quality) of each coding."""
    min_size: int = DEFAULT_MIN_SIZE
    """Responses with a ``Content-Length`` below this many bytes are sent as they are."""
    types: tuple[str, ...] = DEFAULT_TYPES
    """Compressible media types: exact, ``type/*`` or ``type/*+suffix``."""

    def level(self, coding: str) -> int:
        """The level ``coding`` is encoded at."""
        return dict(self.levels)[coding]


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheSettings:
    """The HTTP cache of a route (``[cache]`` defaults, ``[routes.cache]`` per route).

    ``docs/caching.md`` explains every key. Each route that enables the cache has
    a store of its own of ``max_size`` bytes.
    """

    enabled: bool = False
    max_size: int = 64 * MIB
    """Bytes of heads and bodies the route's store keeps (least recently used go first)."""
    max_object_size: int = 8 * MIB
    """The largest response stored; a larger one is forwarded and not kept."""
    key_headers: tuple[bytes, ...] = ()
    """Request fields whose values become part of the key (lower-case names)."""
    key_cookies: tuple[bytes, ...] = ()
    """Cookies whose values become part of the key."""
    default_ttl: tuple[tuple[int, int], ...] = ()
    """``(status, seconds)``: lifetimes for responses without freshness information."""
    heuristic_max_age: int = 86400
    """The cap on a heuristic lifetime (10 % of the time since Last-Modified)."""
    honour_request_no_cache: bool = True
    """Whether a client's ``no-cache`` (or ``Pragma: no-cache``) forces a revalidation."""
    set_cookie: str = "store"
    """Responses that set cookies: ``store`` them as they are (RFC 9111 §7.3: Set-Cookie
    does not inhibit caching), ``strip`` the cookie from the stored copy, or ``refuse``
    to store them."""
    targeted_fields: tuple[bytes, ...] = (b"cdn-cache-control",)
    """Targeted fields (RFC 9213), first match first, that stand in for Cache-Control."""
    status_header: bool = True
    """Send ``Cache-Status`` (RFC 9211) on the route's responses."""
    coalesce: bool = True
    """Concurrent misses for one key wait for one backend request."""
    coalesce_timeout: float = 5.0
    """How long a request waits for another's response before going to the backend itself."""
    purge_method: bytes | None = None
    """A request method (e.g. ``PURGE``) that removes a URI from the store."""
    purge_from: tuple[str, ...] = ("127.0.0.1/32", "::1/128")
    """Networks allowed to purge."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """Where requests that match go, and what is done to them on the way.

    Exactly one of ``upstream``, ``redirect`` and ``respond`` is set.
    """

    name: str
    match: RouteMatch
    upstream: str | None = None
    redirect: Redirect | None = None
    respond: DirectResponse | None = None
    host_header: str | None = None
    """Replaces the client's Host on the way up (over the upstream's ``host_header``)."""
    strip_prefix: bytes | None = None
    add_prefix: bytes | None = None
    max_body_bytes: int | None = None
    """Overrides ``limits.max_body_bytes`` for this route (0: unlimited)."""
    timeouts: Timeouts | None = None
    """The global timeouts with this route's overrides applied."""
    retry: RetryPolicy = RetryPolicy()
    compression: Compression = Compression()
    """The global ``[compression]`` with this route's overrides applied."""
    cache: CacheSettings = CacheSettings()
    """The global ``[cache]`` with this route's overrides applied."""
    request_headers: HeaderEdits = field(default_factory=HeaderEdits)
    """Fields set, added and removed on the request sent to the backend."""
    response_headers: HeaderEdits = field(default_factory=HeaderEdits)
    """Fields set, added and removed on the backend's response to the client."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RoutingSettings:
    """How request paths are normalised before matching."""

    merge_slashes: bool = True
    """Treat runs of '/' as one, as nginx does."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProxyConfig:
    """The whole validated configuration."""

    listeners: tuple[Listener, ...]
    upstreams: dict[str, Upstream] = field(default_factory=dict)
    routes: tuple[Route, ...] = ()
    routing: RoutingSettings = RoutingSettings()
    timeouts: Timeouts = Timeouts()
    limits: Limits = Limits()
    headers: HeaderPolicy = HeaderPolicy()
    compression: Compression = Compression()
    cache: CacheSettings = CacheSettings()
    http2: Http2Settings = Http2Settings()
    logging: LogSettings = LogSettings()
    server: ServerSettings = ServerSettings()
    source: str = field(default="<config>", compare=False)
    """Where the configuration came from (its file name, ``command line``), so that an
    adapter's errors about the files it names (certificates, keys) name it too. Not
    compared: the same settings from two places are the same configuration."""
