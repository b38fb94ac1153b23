"""Tests for the routing and balancing part of the configuration: ``[upstreams.*]``'s new keys,
``[[routes]]`` and ``[routing]``.

Valid documents parse to the exact frozen objects; every invalid one raises a
:class:`ConfigError` whose text is ``FILE: key.path: problem`` naming the key to fix.
"""

from __future__ import annotations

import dataclasses

import pytest

from sansproxy.config import (
    DirectResponse,
    Listener,
    Redirect,
    RetryBudgetSettings,
    RetryPolicy,
    Route,
    RoutingSettings,
    Server,
    Timeouts,
    Upstream,
    parse_config,
)
from sansproxy.config.model import DEFAULT_OUTLIER
from sansproxy.errors import ConfigError
from sansproxy.health import ActiveCheck, OutlierDetection
from sansproxy.routing import RouteMatch

LISTENER = '[[listeners]]\naddress = "127.0.0.1:8080"\n'
APP = '[upstreams.app]\nservers = ["http://127.0.0.1:9000"]\n'

FULL = """
[[listeners]]
address = "127.0.0.1:8080"

[[listeners]]
address = "127.0.0.1:8081"
upstream = "web"

[upstreams.web]
servers = [
  "http://10.0.0.1:8001",
  { url = "http://10.0.0.2:8002", weight = 3, max_connections = 50 },
  { url = "https://spare.internal", backup = true },
]
tls_verify = false
balance = "RING_HASH"
hash_on = "header:X-User"
sticky_cookie = "srv"
slow_start = 30
queue_size = 100
queue_timeout = 2.5
when_all_down = "use_all"

[upstreams.web.health_check]
method = "head"
path = "/healthz"
host = "web.internal"
expect_status = [200, 204]
body_contains = "ok"
interval = 10
jitter = 0.2
timeout = 3
rise = 3
fall = 4

[upstreams.web.outlier]
consecutive_failures = 7
statuses = [503, 502, 503]
base_ejection = 5
max_ejection = 60
max_ejected_percent = 25

[upstreams.web.retry_budget]
ratio = 0.1
window = 30
min_retries = 0

[upstreams.api]
servers = ["http://10.0.1.1:9000"]
balance = "ring_hash"
hash_on = "cookie:Session"
outlier = false

[routing]
merge_slashes = false

[timeouts]
upstream_header = 40

[[routes]]
name = "api"
host = ["API.example.com.", "*.api.example.com"]
path_prefix = "/v1"
methods = ["get", "POST"]
headers = { X-Canary = "on" }
upstream = "api"
host_header = "api.internal:8443"
strip_prefix = "/v1/"
add_prefix = "/internal"
max_body_bytes = "1MiB"
timeouts = { upstream_header = 5, client_body = 7 }
retries.tries = 5
retries.on = ["timeout", 503]
retries.methods = ["get", "POST"]
retries.backoff_base = 0.1
retries.backoff_max = 2

[[routes]]
host = "old.example.com"
redirect = { location = "https://new.example.com{uri}", status = 308 }

[[routes]]
path = "/maintenance"
respond.status = 503
respond.body = "later"
respond.content_type = "text/html"
respond.headers = { Retry-After = "60" }

[[routes]]
path_regex = "^/img/.*[.]png$"
respond = { status = 204 }
"""


def _error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "test.toml")
    assert info.value.source == "test.toml"
    return info.value


# ---------------------------------------------------------------------------------------------
# Valid documents
# ---------------------------------------------------------------------------------------------


def test_full_document_parses_to_the_expected_objects() -> None:
    config = parse_config(FULL, "full.toml")
    assert config.listeners == (
        Listener(host="127.0.0.1", port=8080, upstream=None),  # routes, else 404
        Listener(host="127.0.0.1", port=8081, upstream="web"),
    )
    assert config.upstreams["web"] == Upstream(
        name="web",
        servers=(
            Server(host="10.0.0.1", port=8001),
            Server(host="10.0.0.2", port=8002),
            Server(host="spare.internal", port=443, tls=True),
        ),
        tls_verify=False,
        balance="ring_hash",
        hash_on="header:x-user",
        sticky_cookie="srv",
        slow_start=30.0,
        queue_size=100,
        queue_timeout=2.5,
        when_all_down="use_all",
        health_check=ActiveCheck(
            method="HEAD",
            path="/healthz",
            host="web.internal",
            expect_status=(200, 204),
            body_contains=b"ok",
            interval=10.0,
            jitter=0.2,
            timeout=3.0,
            rise=3,
            fall=4,
        ),
        outlier=OutlierDetection(
            consecutive_failures=7,
            statuses=frozenset({502, 503}),
            base_ejection=5.0,
            max_ejection=60.0,
            max_ejected_fraction=0.25,
        ),
        retry_budget=RetryBudgetSettings(ratio=0.1, window=30.0, min_retries=0),
    )
    # Balancing settings are not part of a server's identity, so check them one by one.
    servers = config.upstreams["web"].servers
    assert [(s.weight, s.backup, s.max_connections) for s in servers] == [
        (1, False, 0),
        (3, False, 50),
        (1, True, 0),
    ]
    api = config.upstreams["api"]
    assert (api.hash_on, api.outlier, api.health_check) == ("cookie:Session", None, None)
    assert config.routing == RoutingSettings(merge_slashes=False)

    api_route, redirect, maintenance, images = config.routes
    assert api_route == Route(
        name="api",
        match=RouteMatch(
            hosts=("api.example.com", "*.api.example.com"),
            path_prefix="/v1",
            methods=frozenset({"GET", "POST"}),
            headers=(("x-canary", "on"),),
        ),
        upstream="api",
        host_header="api.internal:8443",
        strip_prefix=b"/v1",
        add_prefix=b"/internal",
        max_body_bytes=1024 * 1024,
        timeouts=Timeouts(upstream_header=5.0, client_body=7.0),
        retry=RetryPolicy(
            tries=5,
            on=frozenset({"timeout", "503"}),
            methods=frozenset({b"GET", b"POST"}),
            backoff_base=0.1,
            backoff_max=2.0,
        ),
    )
    assert redirect == Route(
        name="route-1",
        match=RouteMatch(hosts=("old.example.com",)),
        redirect=Redirect(location="https://new.example.com{uri}", status=308),
    )
    assert maintenance == Route(
        name="route-2",
        match=RouteMatch(path="/maintenance"),
        respond=DirectResponse(
            status=503,
            body=b"later",
            headers=((b"content-type", b"text/html"), (b"retry-after", b"60")),
        ),
    )
    assert images == Route(
        name="route-3",
        match=RouteMatch(path_regex="^/img/.*[.]png$"),
        respond=DirectResponse(status=204),
    )


def test_route_timeouts_override_only_the_keys_given() -> None:
    config = parse_config(FULL)
    route_timeouts = config.routes[0].timeouts
    assert route_timeouts == dataclasses.replace(
        config.timeouts, upstream_header=5.0, client_body=7.0
    )
    assert config.timeouts.upstream_header == 40.0


def test_new_upstream_keys_default_as_documented() -> None:
    config = parse_config(LISTENER + APP)
    app = config.upstreams["app"]
    assert app == Upstream(name="app", servers=(Server(host="127.0.0.1", port=9000),))
    assert (app.balance, app.hash_on, app.sticky_cookie, app.when_all_down) == (
        "weighted_round_robin",
        None,
        None,
        "fail",
    )
    assert (app.slow_start, app.queue_size, app.queue_timeout) == (0.0, 0, 5.0)
    assert app.health_check is None
    assert app.outlier == DEFAULT_OUTLIER
    assert app.retry_budget == RetryBudgetSettings()
    assert (config.routes, config.routing) == ((), RoutingSettings())


def test_health_check_defaults_and_status_forms() -> None:
    for form, expected in (
        ("200", (200, 200)),
        ('"200-299"', (200, 299)),
        ("[301, 302]", (301, 302)),
    ):
        text = LISTENER + APP + f"health_check = {{ expect_status = {form} }}\n"
        check = parse_config(text).upstreams["app"].health_check
        assert check == ActiveCheck(expect_status=expected)
    text = LISTENER + APP + "health_check = {}\n"
    assert parse_config(text).upstreams["app"].health_check == ActiveCheck()


def test_partial_outlier_table_keeps_the_other_defaults() -> None:
    text = LISTENER + APP + "outlier = { consecutive_failures = 1 }\n"
    outlier = parse_config(text).upstreams["app"].outlier
    assert outlier == dataclasses.replace(DEFAULT_OUTLIER, consecutive_failures=1)


def test_routes_without_upstreams_need_no_upstream_table() -> None:
    text = LISTENER + '[[routes]]\nrespond = { status = 200, body = "hi" }\n'
    config = parse_config(text)
    assert config.upstreams == {}
    assert config.listeners[0].upstream is None
    assert config.routes[0].respond == DirectResponse(
        status=200, body=b"hi", headers=((b"content-type", b"text/plain; charset=utf-8"),)
    )


def test_a_listener_keeps_its_upstream_as_the_fallback_next_to_routes() -> None:
    text = LISTENER + 'upstream = "app"\n' + APP + '[[routes]]\npath = "/x"\nupstream = "app"\n'
    assert parse_config(text).listeners[0].upstream == "app"


# ---------------------------------------------------------------------------------------------
# Errors: FILE: key.path: problem
# ---------------------------------------------------------------------------------------------


def _up(body: str) -> str:
    """The app upstream with extra keys."""
    return LISTENER + APP + body + "\n"


def _servers(items: str) -> str:
    return LISTENER + f"[upstreams.app]\nservers = [{items}]\n"


def _route(body: str) -> str:
    """One route (to the app upstream unless it says otherwise)."""
    return LISTENER + APP + "[[routes]]\n" + body + "\n"


def _proxied(body: str) -> str:
    return _route('upstream = "app"\n' + body)


def _check(text: str, key: str, problem: str) -> None:
    error = _error(text)
    assert (error.key, error.problem) == (key, problem)
    assert str(error) == f"test.toml: {key}: {problem}"


NUMBER = "must be a positive number"
COUNT = "must be a positive integer"
STATUS = 'must be a status (200), a range ("200-399") or [low, high] within 100-599'
HASH_ON = 'must be "client_ip", "header:<name>" or "cookie:<name>"'
HOST = "must be a host name, a wildcard such as *.example.com, or an [IPv6] address"
PATH = "must be a path starting with '/', without query"
PREFIX = "must be a path such as /api, without query"
LOCATION = "must be printable ASCII without spaces at the ends"
REDIRECT_STATUS = "must be one of 301, 302, 303, 307, 308"
RESPOND_STATUS = "required: a status from 200 to 599"
VALUE = "must be a header value (printable ASCII)"
FRAMING = (
    "must be a header field name other than Content-Length, Transfer-Encoding and Connection "
    "(the proxy frames the response)"
)
EXACTLY_ONE = "needs exactly one of upstream, redirect and respond"
PROXY_ONLY = "applies only to routes with an upstream"
METHOD = "must be a method name (a token)"
RETRY_ON = "must be one of timeout, 502, 503, 504"
SAFE = "must be a safe method such as GET or HEAD"
ORIGIN = "must be an origin-form path such as /health"
PERCENT = "must be a percentage from 1 to 100"
ALGORITHMS = (
    "must be one of round_robin, weighted_round_robin, least_requests, two_choices, "
    "peak_ewma, ring_hash, random"
)


@pytest.mark.parametrize(
    ("items", "key", "problem"),
    [
        ('{ url = "http://a", weigth = 2 }', "[0].weigth", "unknown key (did you mean 'weight'?)"),
        ("{ weight = 2 }", "[0].url", "required"),
        ('{ url = "ftp://a" }', "[0].url", "scheme must be http or https, not 'ftp'"),
        ('{ url = "http://a", weight = 0 }', "[0].weight", COUNT),
        ('{ url = "http://a", weight = 1.5 }', "[0].weight", COUNT),
        ('{ url = "http://a", weight = 1001 }', "[0].weight", "must be at most 1000"),
        ('{ url = "http://a", backup = "yes" }', "[0].backup", "must be true or false"),
        ('"http://a", { url = "http://a" }', "[1]", "duplicate of upstreams.app.servers[0]"),
        ('{ url = "http://a", max_connections = -1 }', "[0].max_connections", COUNT),
        (
            '{ url = "http://a", backup = true }',
            "",
            "needs at least one server that is not a backup",
        ),
    ],
)
def test_server_errors(items: str, key: str, problem: str) -> None:
    _check(_servers(items), "upstreams.app.servers" + key, problem)


@pytest.mark.parametrize(
    ("body", "key", "problem"),
    [
        # --- balancing
        ('balance = "fastest"', "balance", ALGORITHMS),
        ('hash_on = "client_ip"', "hash_on", 'applies only to balance = "ring_hash"'),
        (
            'balance = "ring_hash"',
            "hash_on",
            'required with balance = "ring_hash": "client_ip", "header:<name>" or "cookie:<name>"',
        ),
        ('balance = "ring_hash"\nhash_on = "header:"', "hash_on", HASH_ON),
        ('balance = "ring_hash"\nhash_on = "query:id"', "hash_on", HASH_ON),
        ('sticky_cookie = "my cookie"', "sticky_cookie", "must be a cookie name (a token)"),
        ("slow_start = 0", "slow_start", NUMBER),
        (
            "queue_size = 10",
            "queue_size",
            "needs at least one server with max_connections to queue for",
        ),
        ("queue_size = -1", "queue_size", COUNT),
        ('queue_timeout = "5s"', "queue_timeout", NUMBER),
        ('when_all_down = "panic"', "when_all_down", "must be one of fail, use_all"),
        # --- health checks
        ("health_check = true", "health_check", "must be a table"),
        ("health_check = { url = 1 }", "health_check.url", "unknown key"),
        ('health_check = { method = "POST" }', "health_check.method", SAFE),
        ('health_check = { method = "G T" }', "health_check.method", SAFE),
        ('health_check = { path = "health" }', "health_check.path", ORIGIN),
        ('health_check = { path = "/a b" }', "health_check.path", ORIGIN),
        (
            'health_check = { host = "a b" }',
            "health_check.host",
            "invalid Host value: invalid host name 'a b'",
        ),
        ('health_check = { expect_status = "2xx" }', "health_check.expect_status", STATUS),
        ('health_check = { expect_status = "399-200" }', "health_check.expect_status", STATUS),
        ("health_check = { expect_status = [200] }", "health_check.expect_status", STATUS),
        ("health_check = { expect_status = 600 }", "health_check.expect_status", STATUS),
        ("health_check = { body_contains = 1 }", "health_check.body_contains", "must be a string"),
        ("health_check = { interval = 0 }", "health_check.interval", NUMBER),
        ("health_check = { rise = 0 }", "health_check.rise", COUNT),
        ("health_check = { fall = 2.0 }", "health_check.fall", COUNT),
        (
            "health_check = { jitter = 1 }",
            "health_check.jitter",
            "must be a fraction of the interval, from 0 to 0.99",
        ),
        (
            "health_check = { interval = 2, timeout = 2 }",
            "health_check.timeout",
            "must be shorter than the interval (2.0 s)",
        ),
        # --- outlier detection
        ("outlier = true", "outlier", "must be a table"),
        ("outlier = { failures = 3 }", "outlier.failures", "unknown key"),
        ("outlier = { consecutive_failures = 0 }", "outlier.consecutive_failures", COUNT),
        ("outlier = { statuses = 503 }", "outlier.statuses", "must be an array"),
        ("outlier = { statuses = [503, 404] }", "outlier.statuses[1]", "must be a 5xx status"),
        ("outlier = { base_ejection = -1 }", "outlier.base_ejection", NUMBER),
        (
            "outlier = { base_ejection = 60, max_ejection = 30 }",
            "outlier.max_ejection",
            "must not be less than base_ejection (60.0 s)",
        ),
        ("outlier = { max_ejected_percent = 0 }", "outlier.max_ejected_percent", PERCENT),
        ("outlier = { max_ejected_percent = 101 }", "outlier.max_ejected_percent", PERCENT),
        # --- retry budget
        ("retry_budget = { percent = 20 }", "retry_budget.percent", "unknown key"),
        ("retry_budget = { ratio = 1.5 }", "retry_budget.ratio", "must be a fraction from 0 to 1"),
        ("retry_budget = { window = 0 }", "retry_budget.window", NUMBER),
        (
            "retry_budget = { min_retries = -1 }",
            "retry_budget.min_retries",
            "must be a whole number, 0 or more",
        ),
    ],
)
def test_upstream_errors(body: str, key: str, problem: str) -> None:
    _check(_up(body), "upstreams.app." + key, problem)


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        (
            LISTENER + APP + "[routing]\nmerge_slashes = 1\n",
            "routing.merge_slashes",
            "must be true or false",
        ),
        (LISTENER + APP + "[routing]\nmerge = true\n", "routing.merge", "unknown key"),
        ("routes = 1\n" + LISTENER + APP, "routes", "must be an array of tables ([[routes]])"),
        ("routes = [1]\n" + LISTENER + APP, "routes[0]", "must be a table"),
        (
            _route('name = "x"\nupstream = "app"\n[[routes]]\nname = "x"\nupstream = "app"'),
            "routes[1].name",
            "duplicate of routes[0].name",
        ),
        (_route('path = "/x"'), "routes[0]", EXACTLY_ONE),
        (
            _route('upstream = "app"\nrespond = { status = 200 }'),
            "routes[0]",
            EXACTLY_ONE + " (has upstream, respond)",
        ),
        (
            _route('upstream = "nope"'),
            "routes[0].upstream",
            "no upstream named 'nope' (defined: 'app')",
        ),
        (
            LISTENER + '[[routes]]\nupstream = "nope"\n',
            "routes[0].upstream",
            "no upstream named 'nope' (defined: none)",
        ),
        (
            _route('respond = { status = 200 }\nstrip_prefix = "/a"'),
            "routes[0].strip_prefix",
            PROXY_ONLY,
        ),
        (
            _route('redirect = { location = "/x" }\nretries = { tries = 1 }'),
            "routes[0].retries",
            PROXY_ONLY,
        ),
    ],
)
def test_routes_and_routing_errors(text: str, key: str, problem: str) -> None:
    _check(text, key, problem)


@pytest.mark.parametrize(
    ("body", "key", "problem"),
    [
        ("prefix = 1", ".prefix", "unknown key (did you mean 'add_prefix'?)"),
        ("bogus = 1", ".bogus", "unknown key"),
        ("name = 1", ".name", "must be a string"),
        # --- matching
        ('host = "a b"', ".host", HOST),
        ('host = ["a.com", "*.*.b.com"]', ".host[1]", HOST),
        ('host = ["a.com:80"]', ".host[0]", HOST),
        ("host = []", ".host", "must not be empty"),
        ('path = "x"', ".path", PATH),
        ('path_prefix = "/a?b"', ".path_prefix", PATH),
        (
            'path_regex = "(unclosed"',
            ".path_regex",
            "invalid regular expression: missing ), unterminated subpattern at position 0",
        ),
        (
            'path = "/a"\npath_prefix = "/b"',
            "",
            "takes at most one of path, path_prefix and path_regex, not path, path_prefix",
        ),
        ('methods = "GET"', ".methods", "must be an array"),
        ('methods = ["GET", "BAD METHOD"]', ".methods[1]", METHOD),
        ('headers = { "x y" = "1" }', '.headers."x y"', "must be a header field name"),
        ("headers = { x-a = 1 }", ".headers.x-a", "must be a string"),
        # --- per-route settings
        ('host_header = "a/b"', ".host_header", "invalid Host value: invalid host name 'a/b'"),
        ('strip_prefix = "/"', ".strip_prefix", PREFIX),
        ('add_prefix = "v2"', ".add_prefix", PREFIX),
        ("max_body_bytes = -1", ".max_body_bytes", "must not be negative"),
        (
            'max_body_bytes = "1 parsec"',
            ".max_body_bytes",
            "invalid size '1 parsec': unknown unit 'parsec' (use B, KB, MB, GB, KiB, MiB or GiB)",
        ),
        ("timeouts = 5", ".timeouts", "must be a table"),
        (
            "timeouts = { client_header = 5 }",
            ".timeouts.client_header",
            "unknown key (did you mean 'client_body'?)",
        ),
        ("timeouts = { drain = 5 }", ".timeouts.drain", "unknown key"),
        ("timeouts = { upstream_header = 0 }", ".timeouts.upstream_header", NUMBER),
        # --- retries
        ("retries = { attempts = 2 }", ".retries.attempts", "unknown key"),
        ("retries = { tries = 0 }", ".retries.tries", COUNT),
        ("retries = { tries = 11 }", ".retries.tries", "must be at most 10"),
        ('retries = { on = ["500"] }', ".retries.on[0]", RETRY_ON),
        ('retries = { on = ["timeout", true] }', ".retries.on[1]", RETRY_ON),
        ('retries = { methods = ["G T"] }', ".retries.methods[0]", METHOD),
        ("retries = { backoff_base = 0 }", ".retries.backoff_base", NUMBER),
        (
            "retries = { backoff_base = 1, backoff_max = 0.5 }",
            ".retries.backoff_max",
            "must not be less than backoff_base",
        ),
    ],
)
def test_proxied_route_errors(body: str, key: str, problem: str) -> None:
    _check(_proxied(body), "routes[0]" + key, problem)


@pytest.mark.parametrize(
    ("body", "key", "problem"),
    [
        ("redirect = 1", ".redirect", "must be a table"),
        (
            "redirect = { status = 301 }",
            ".redirect.location",
            'required, such as "https://{host}{uri}"',
        ),
        ('redirect = { location = "/x", code = 301 }', ".redirect.code", "unknown key"),
        (
            'redirect = { location = "https://{hostname}/" }',
            ".redirect.location",
            "unknown placeholder {hostname} (use {scheme}, {host}, {path}, {query} or {uri})",
        ),
        ('redirect = { location = "/a b " }', ".redirect.location", LOCATION),
        ('redirect = { location = "/x\\r\\nSet-Cookie: a=b" }', ".redirect.location", LOCATION),
        ('redirect = { location = "/x", status = 200 }', ".redirect.status", REDIRECT_STATUS),
        ('redirect = { location = "/x", status = true }', ".redirect.status", REDIRECT_STATUS),
        ('respond = { body = "x" }', ".respond.status", RESPOND_STATUS),
        ("respond = { status = 101 }", ".respond.status", RESPOND_STATUS),
        ('respond = { status = 204, body = "x" }', ".respond.body", "a 204 response has no body"),
        ("respond = { status = 200, body = 1 }", ".respond.body", "must be a string"),
        ('respond = { status = 200, type = "x" }', ".respond.type", "unknown key"),
        ('respond = { status = 200, content_type = "a\\nb" }', ".respond.content_type", VALUE),
        (
            'respond = { status = 200, headers = { Content-Length = "5" } }',
            ".respond.headers.Content-Length",
            FRAMING,
        ),
        (
            'respond = { status = 200, headers = { X-A = "b\\r\\nc" } }',
            ".respond.headers.X-A",
            VALUE,
        ),
    ],
)
def test_redirect_and_respond_errors(body: str, key: str, problem: str) -> None:
    _check(_route(body), "routes[0]" + key, problem)


NORMALISED = (
    "must be a normalised path: no '.' or '..' segments, %HH only for reserved characters "
    "and in upper case"
)


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        (_proxied('path = "/a/../b"'), "routes[0].path", NORMALISED),
        (_proxied('path_prefix = "/a/./b"'), "routes[0].path_prefix", NORMALISED),
        (_proxied('path = "/%7euser"'), "routes[0].path", NORMALISED),
        (_proxied('path = "/a%2fb"'), "routes[0].path", NORMALISED),
        (_proxied('strip_prefix = "/api/.."'), "routes[0].strip_prefix", NORMALISED),
        (
            _proxied('path_prefix = "/a//b"'),
            "routes[0].path_prefix",
            "never matches while routing.merge_slashes is true (use a single '/')",
        ),
        (
            _proxied('host = "a..b.com"'),
            "routes[0].host",
            "must be a host name, a wildcard such as *.example.com, or an [IPv6] address",
        ),
    ],
)
def test_conditions_that_could_never_match_name_their_key(
    text: str, key: str, problem: str
) -> None:
    _check(text, key, problem)


def test_double_slashes_are_allowed_when_slashes_are_not_merged() -> None:
    text = _proxied('path_prefix = "/a//b"') + "[routing]\nmerge_slashes = false\n"
    assert parse_config(text).routes[0].match.path_prefix == "/a//b"
