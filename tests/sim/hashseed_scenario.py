"""One long scripted scenario over much of the core, printed as a trace, one line per entry.

``tests/test_purity.py`` runs it in fresh interpreters under different ``PYTHONHASHSEED``
values and compares the output: the core must not let the iteration order of a set or dict
of ``str`` or ``bytes`` reach its commands. Run it by hand with::

    PYTHONHASHSEED=0 python -m tests.sim.hashseed_scenario > a.txt
    PYTHONHASHSEED=12345 python -m tests.sim.hashseed_scenario > b.txt
    diff a.txt b.txt

What it plays, on :mod:`tests.simnet` with a fixed ``random.Random`` seed:

- configuration errors (unknown keys with a "did you mean", bad values), their messages traced;
- a configuration parsed from TOML: two listeners, five upstreams with different balancers
  (``two_choices``, ``ring_hash`` on a header, ``random`` with weights, a sticky cookie and a
  backup, ``least_requests``, ``peak_ewma`` with a Host override), active health checks and
  outlier detection, and routes by host, path prefix (stripped), regular expression,
  methods and header, plus fixed responses and a redirect;
- several keep-alive clients, a POST with a body, a chunked PUT, a request with many
  fields whose ``Connection`` options name several of them, forwarding fields from a trusted
  and an untrusted peer, a client that reads slowly (backpressure), a 404, a 400, a 408;
- a server that refuses connections (retried elsewhere, then marked down by probes, then back),
  a server that answers too late (the response timeout fires and the request is retried),
  a server that answers 503 (retried elsewhere, then ejected), a server whose connections
  are reset, idle keep-alive timeouts on both sides;
- a configuration reload, statistics and upstream status along the way, and a shutdown that
  drains.

The script asserts that these things happened, so that it cannot silently stop covering them.
"""

from __future__ import annotations

import hashlib
import sys
from collections import Counter

import h11

from sansproxy.commands import AccessLog, Close, Log, OpenUpstream, PauseReading, Send
from sansproxy.config import parse_config
from sansproxy.errors import ConfigError
from sansproxy.events import ConfigReloaded, UpstreamFailed
from tests.simnet import FakeClient, Reply, SimNet, cycling

CONFIG = """
[[listeners]]
address = "192.0.2.1:8080"
upstream = "web"

[[listeners]]
address = "192.0.2.1:8081"          # no upstream: what no route matches gets 404

[upstreams.api]
servers = ["http://10.0.1.1:80", "http://10.0.1.2:80", "http://10.0.1.3:80", "http://10.0.1.4:80"]
balance = "two_choices"
health_check = { path = "/healthz", interval = 1, timeout = 0.5, rise = 2, fall = 2, jitter = 0.2 }
outlier = { consecutive_failures = 2, statuses = [502, 503], base_ejection = 3 }
retry_budget = { ratio = 0.5, window = 10, min_retries = 5 }

[upstreams.static]
servers = ["http://10.0.2.1:80", "http://10.0.2.2:80", "http://10.0.2.3:80"]
balance = "ring_hash"
hash_on = "header:x-user-id"

[upstreams.shop]
servers = [
  { url = "http://10.0.3.1:80", weight = 3 },
  { url = "http://10.0.3.2:80", weight = 1 },
  { url = "http://10.0.3.9:80", backup = true },
]
balance = "random"
sticky_cookie = "shop_srv"

[upstreams.slow]
servers = ["http://10.0.4.1:80", "http://10.0.4.2:80"]
balance = "least_requests"

[upstreams.web]
servers = [{ url = "http://10.0.5.1:80", weight = 2 }, "http://10.0.5.2:80", "http://10.0.5.3:80"]
balance = "peak_ewma"
host_header = "web.internal"

[[routes]]
name = "api"
host = ["example.com", "*.example.com"]
path_prefix = "/api"
strip_prefix = "/api"
upstream = "api"
retries = { tries = 4, on = ["502", "503", "504", "timeout"], backoff_base = 0.01 }

[[routes]]
name = "admin"
host = ["example.com", "*.example.com"]
path_prefix = "/admin"
respond = { status = 403, body = "forbidden\\n", headers = { "x-why" = "internal" } }

[[routes]]
name = "assets"
host = ["example.com", "*.example.com"]
path_regex = "^/[^/]+\\\\.(css|js|png)$"
methods = ["GET", "HEAD"]
upstream = "static"

[[routes]]
name = "slow"
host = "example.com"
path_prefix = "/slow"
upstream = "slow"
timeouts = { upstream_header = 1 }
retries = { tries = 2, on = ["timeout"] }

[[routes]]
name = "canary"
host = "example.com"
headers = { "x-canary" = "1" }
upstream = "web"
add_prefix = "/canary"

[[routes]]
name = "shop"
host = "shop.example.com"
upstream = "shop"

[[routes]]
name = "old"
host = "old.example.org"
redirect = { location = "https://example.com{uri}", status = 301 }

[[routes]]
name = "maintenance"
host = "beta.example.org"
respond = { status = 503, body = "down for maintenance\\n", headers = { "retry-after" = "600" } }

[timeouts]
client_header = 2
client_keepalive = 20
upstream_connect = 1
upstream_keepalive = 4
drain = 3

[limits]
buffer_high_water = "4KiB"
buffer_low_water = "1KiB"
max_idle_per_server = 2

[headers]
trusted_proxies = ["198.51.100.0/24"]
x_forwarded = true
forwarded = true
via = "edge-1"
server = "sansproxy"
hide_response_headers = ["x-powered-by", "x-runtime", "x-backend-secret"]

[logging]
level = "debug"
access_log = true
"""

BAD_CONFIGS = [
    "[[listeners]]\naddress = '127.0.0.1:1'\n[upstreams.a]\nservers = ['http://h']\nbalanse = 'x'",
    "[[listeners]]\naddress = '127.0.0.1:1'\n[upstreams.a]\nservers = ['http://h']\n"
    "[limits]\nmax_body = 1",
    "[[listeners]]\naddress = '127.0.0.1:1'\n[upstreams.a]\nservers = ['http://h']\n"
    "health_check = { pathh = '/' }",
    "[[listeners]]\naddress = '127.0.0.1:1'\n[upstreams.a]\nservers = ['http://h']\n"
    "[[routes]]\nupstream = 'a'\nretries = { on = ['500'] }",
    "[[listeners]]\naddress = '127.0.0.1:1'\n[upstreams.a]\nservers = ['ftp://h']",
    "[[listeners]]\naddress = '127.0.0.1:1'\n[upstreams.a]\nservers = ['http://h']\n"
    "[[routes]]\nupstream = 'a'\nmethods = ['GET', 'get ']",
    "[[listeners]]\naddress = '127.0.0.1:1'\n[upstreams.a]\nservers = ['http://h']\n"
    "[headers]\ntrusted_proxy = ['10.0.0.0/8']",
]

TRUSTED_PEER = ("198.51.100.7", 41000)

MANY_FIELDS = [
    ("user-agent", "hashseed/1"),
    ("accept", "*/*"),
    ("accept-encoding", "gzip, br"),
    ("accept-language", "en, de;q=0.5"),
    ("connection", "keep-alive, x-alpha, X-Beta, x-gamma"),
    ("x-alpha", "1"),
    ("x-beta", "2"),
    ("x-gamma", "3"),
    ("x-delta", "4"),
    ("connection", "x-epsilon, x-zeta,, x-eta"),
    ("x-epsilon", "5"),
    ("x-zeta", "6"),
    ("x-eta", "7"),
    ("x-theta", "8"),
    ("keep-alive", "timeout=5"),
    ("proxy-connection", "keep-alive"),
    ("te", "trailers, deflate"),
    ("x-forwarded-for", "192.0.2.200"),
    ("forwarded", "for=192.0.2.201"),
    ("via", "1.1 somewhere"),
    ("cookie", "a=1; b=2"),
    ("x-request-id", "r-1"),
    ("upgrade", "h2c"),
    ("referer", "https://example.com/start"),
]


def reply_with_fields(request: h11.Request, body: bytes) -> Reply:
    """Answer 200 and list the request's fields, in order, in the body."""
    listed = b"".join(b"%s: %s\n" % (name, value) for name, value in request.headers)
    payload = b"%s %s\n%s%s" % (request.method, request.target, listed, body)
    headers = [
        ("content-length", str(len(payload))),
        ("connection", "x-private, x-runtime"),
        ("x-private", "hop"),
        ("x-runtime", "0.1"),
        ("x-powered-by", "sim"),
        ("x-backend-secret", "s"),
        ("keep-alive", "timeout=9"),
        ("set-cookie", "session=1"),
        ("vary", "accept-encoding"),
    ]
    return 200, headers, [payload]


def big(request: h11.Request, body: bytes) -> Reply:
    """Answer 200 with 20 000 bytes in several pieces (more than the high-water mark)."""
    pieces = [bytes([65 + i]) * 2000 for i in range(10)]
    return 200, [("content-length", "20000")], pieces


def failing(request: h11.Request, body: bytes) -> Reply:
    """Answer 503 (an outlier status) to traffic, 200 to health probes."""
    if request.target == b"/healthz":
        return reply_with_fields(request, body)
    return 503, [("content-length", "4")], [b"busy"]


def main() -> None:
    """Play the scenario and print its trace."""
    lines: list[str] = []
    out = lines.append

    for text in BAD_CONFIGS:
        try:
            parse_config(text, "bad.toml")
        except ConfigError as error:
            out(f"config error: {error}")
        else:
            raise AssertionError(f"accepted: {text!r}")

    config = parse_config(CONFIG, "proxy.toml")
    net = SimNet(config, seed=20240601, chunker=cycling([1, 7, 64, 1000, 3]), read_size=1500)
    backends = {}
    for name, upstream in config.upstreams.items():
        for server in upstream.servers:
            backends[server.host] = net.add_backend(server.host, server.port)
            out(f"backend {name} {server.host}:{server.port}")
    for host, backend in backends.items():
        backend.handler = reply_with_fields
        if host.startswith("10.0.2."):
            backend.handler = big
    backends["10.0.1.3"].refuse = True  # connect refused: retried elsewhere, probes mark it down
    backends["10.0.1.4"].handler = failing  # 503s: retried elsewhere, then ejected
    backends["10.0.4.1"].delay = 5.0  # answers after the route's 1 s response timeout
    backends["10.0.3.1"].connect_delay = 0.2

    def snapshot(label: str) -> None:
        out(f"-- {label} at {net.clock.now!r}: {net.proxy.statistics()!r}")
        for view in net.proxy.upstream_status():
            out(f"   {view!r}")

    clients: list[FakeClient] = [net.client(peer=("203.0.113.1", 50001 + i)) for i in range(4)]
    trusted = net.client(peer=TRUSTED_PEER)
    other = net.client(1, peer=("2001:db8::5", 50100))
    a, b, c, d = clients

    # Keep-alive: several requests on one connection, over several routes and upstreams.
    for target in ("/api/users", "/api/users/7?full=1", "/api/orders", "/app.js", "/"):
        a.request("GET", target, host="example.com")
        net.run()
        net.advance(0.05)
    b.request("POST", "/api/orders", [("content-type", "application/json")], b'{"n": 1}' * 300)
    c.request("GET", "/anything", MANY_FIELDS, host="www.example.com")
    d.request("PUT", "/api/items/1", [("x-canary", "1")], [b"part1-", b"part2"], chunked=True)
    trusted.request("GET", "/", MANY_FIELDS[:8], host="web.example.net")
    other.request("GET", "/nowhere", host="unknown.example")
    net.advance(0.5)
    snapshot("after the first requests")

    # Fixed answers, a redirect, a canary by header, the shop with its cookie.
    for target, host, fields in (
        ("/admin/panel", "example.com", []),
        ("/some/page?x=1", "old.example.org", []),
        ("/", "beta.example.org", []),
        ("/home", "example.com", [("x-canary", "1")]),
        ("/cart", "shop.example.com", []),
        ("/style.css", "cdn.example.com", [("x-user-id", "u-42")]),
    ):
        for client in (b, c):
            client.request("GET", target, fields, host=host)
            net.advance(0.3)
    shop_cookie = next(
        value
        for response in b.responses
        for name, value in response.headers
        if name == b"set-cookie" and value.startswith(b"shop_srv=")
    )
    c.request(
        "GET", "/cart", [("cookie", shop_cookie.split(b";")[0].decode())], host="shop.example.com"
    )
    net.advance(0.3)

    # A slow client: the 20 kB response waits in its buffer; the proxy pauses the backend.
    d.reading = False
    d.request("GET", "/logo.png", [("x-user-id", "u-7")], host="example.com")
    net.advance(0.2)
    d.reading = True
    net.advance(0.2)

    # The response timeout fires on the slow server; the retry goes to the other one.
    for _ in range(3):
        a.request("GET", "/slow/report", host="example.com")
        net.advance(1.5)
    snapshot("after the slow requests")

    # Probes run; the refusing server goes down, the failing one is ejected.
    for i in range(12):
        (a, b, c)[i % 3].request("GET", f"/api/poll/{i}", host="api.example.com")
        net.advance(0.4)
    snapshot("with 10.0.1.3 down")

    # A server's connections are reset mid-way; then the refusing server comes back.
    backends["10.0.1.2"].die_after = 40
    for i in range(4):
        b.request("GET", f"/api/reset/{i}", host="example.com")
        net.advance(0.3)
    backends["10.0.1.2"].die_after = None
    backends["10.0.1.3"].refuse = False
    net.advance(3.0)
    snapshot("with 10.0.1.3 back")

    # Malformed and slow request heads: 400 and 408.
    raw = net.client(raw=True, peer=("203.0.113.9", 50200))
    raw.send_raw(b"GET / HTTP/1.1\r\nHost: example.com\r\nBad Header\r\n\r\n")
    raw2 = net.client(raw=True, peer=("203.0.113.9", 50201))
    raw2.send_raw(b"GET /api/x HTTP/1.1\r\nHost: exa")
    net.advance(3.0)

    # A reload: the web upstream loses a server and gains one.
    reloaded = parse_config(
        CONFIG.replace('"http://10.0.5.3:80"]', '"http://10.0.5.4:80"]'), "proxy.toml"
    )
    net.add_backend("10.0.5.4", 80, reply_with_fields)
    net._handle(ConfigReloaded(config=reloaded))  # simnet has no reload step of its own
    net.run()
    proxied = net.client(peer=(TRUSTED_PEER[0], TRUSTED_PEER[1] + 1))
    for i in range(4):
        proxied.request("GET", f"/after-reload/{i}", MANY_FIELDS[16:], host="www.example.net")
        net.advance(0.2)

    # Idle connections time out on both sides; new clients come and go.
    net.advance(21.0)
    late = [net.client(peer=("203.0.113.50", 50300 + i)) for i in range(3)]
    for i, client in enumerate(late):
        client.request("POST", f"/api/late/{i}", body=b"x" * (100 * i + 1), host="example.com")
    late[0].abort()
    net.run()

    # Shutdown: in-flight requests drain, the rest is closed.
    late[1].request("GET", "/slow/last", host="example.com")
    net.run()
    net.shutdown()
    net.advance(10.0)
    snapshot("after shutdown")
    net.check()

    _assert_covered(net)
    for now, kind, value in net.trace:
        # A reload's config holds frozensets; it is an input, and printing it proves nothing.
        shown = "ConfigReloaded(...)" if isinstance(value, ConfigReloaded) else repr(value)
        out(f"{now!r} {kind} {shown}")
    for client in net.clients:
        out(f"client {client.conn}: {client.outcomes} {[r.status for r in client.responses]}")
    digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()
    out(f"sha256 {digest} over {len(lines)} lines")
    sys.stdout.write("\n".join(lines) + "\n")


def _assert_covered(net: SimNet) -> None:
    """Fail if the scenario stopped exercising what its docstring promises."""
    statuses = Counter(r.status for c in net.clients for r in c.responses)
    commands = [value for _, kind, value in net.trace if kind == "command"]
    events = [value for _, kind, value in net.trace if kind == "event"]
    opened = Counter(f"{o.host}:{o.port}" for o in commands if isinstance(o, OpenUpstream))
    logs = [c.message for c in commands if isinstance(c, Log)]
    assert {200, 301, 400, 403, 404, 408, 503} <= set(statuses), statuses
    assert len(net.clients) >= 10
    assert any(isinstance(e, UpstreamFailed) for e in events), "no refused connect"
    assert any(kind == "timeout" for _, kind, _ in net.trace), "no timer fired"
    assert len(opened) >= 12, opened  # servers of every upstream, probes included
    assert sum(isinstance(c, AccessLog) for c in commands) > 40
    assert any("10.0.1.3:80 is down: 2 failed probes" in m for m in logs), logs
    assert any("10.0.1.3:80 is up: 2 probes passed" in m for m in logs), logs
    assert any("10.0.1.4:80 is down: ejected" in m for m in logs), logs
    assert any("10.0.4.1:80 response header timeout" in m for m in logs), logs
    assert any(isinstance(c, PauseReading) for c in commands), "no backpressure"
    assert sum(isinstance(c, Close) for c in commands) > 20
    assert any(isinstance(e, ConfigReloaded) for e in events)
    assert net.shutdown_complete
    assert not net.open_connections()
    assert max(len(c.data) for c in commands if isinstance(c, Send)) > 1000


def control() -> None:
    """Print a set of strings: its order changes with the hash seed, proving the seed took."""
    sys.stdout.write(" ".join({f"field-{i}" for i in range(32)}) + "\n")


if __name__ == "__main__":
    if sys.argv[1:] == ["--control"]:
        control()
    else:
        main()
