"""Tests for sansproxy.config: TOML and command line parsing, validation and errors."""

from __future__ import annotations

import json
import math
import re
from dataclasses import fields
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sansproxy.config import (
    QUICK_UPSTREAM_NAME,
    CacheSettings,
    Compression,
    HeaderPolicy,
    Http2Settings,
    Limits,
    Listener,
    LogSettings,
    ProxyConfig,
    RetryBudgetSettings,
    RetryPolicy,
    Route,
    RoutingSettings,
    Server,
    ServerSettings,
    Timeouts,
    Upstream,
    parse_config,
    parse_size,
    quick_config,
)
from sansproxy.errors import ConfigError
from sansproxy.health import ActiveCheck

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"

MINIMAL = """
[[listeners]]
address = "127.0.0.1:8080"

[upstreams.app]
servers = ["http://127.0.0.1:9000"]
"""

FULL = """
[[listeners]]
address = "0.0.0.0:8080"
upstream = "app"

[[listeners]]
address = "[::1]:8443"
upstream = "api"
certificate = "cert.pem"
private_key = "key.pem"

[[listeners]]
address = "LocalHost:0"
upstream = "app"

[upstreams.app]
servers = ["http://127.0.0.1:9000", "https://Backend.Internal:8443", "http://[::1]"]
host_header = "app.internal"
tls_verify = true
ca_file = "ca.pem"
server_name = "backend.internal"

[upstreams.api]
servers = ["https://api.internal/"]
tls_verify = false

[timeouts]
client_header = 5
client_keepalive = 30.5
client_body = 20
upstream_connect = 2
upstream_header = 40
upstream_body = 50
upstream_keepalive = 45
tunnel_idle = 600
drain = 15

[limits]
max_header_bytes = "32KiB"
max_header_count = 50
max_uri_bytes = 4096
max_body_bytes = 0
max_client_connections = 500
max_idle_per_server = 8
buffer_high_water = "1MB"
buffer_low_water = "128 KiB"
retry_buffer_bytes = "1MiB"

[headers]
trusted_proxies = ["10.0.0.0/8", "192.168.1.7", "fd00::/8", "10.0.0.0/8"]
x_forwarded = false
forwarded = true
via = "edge-1"
server = "sansproxy/1.0 (edge)"
hide_response_headers = ["X-AspNet-Version", "Server", "x-runtime"]

[logging]
level = "WARNING"
access_log = false
access_log_format = "json"
"""


def _error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "test.toml")
    assert info.value.source == "test.toml"
    return info.value


# ---------------------------------------------------------------------------------------------
# Valid configurations
# ---------------------------------------------------------------------------------------------


def test_full_example_parses_to_expected_objects() -> None:
    config = parse_config(FULL, "full.toml")
    assert config == ProxyConfig(
        listeners=(
            Listener(host="0.0.0.0", port=8080, upstream="app"),
            Listener(
                host="::1",
                port=8443,
                upstream="api",
                certificate="cert.pem",
                private_key="key.pem",
            ),
            Listener(host="localhost", port=0, upstream="app"),
        ),
        upstreams={
            "app": Upstream(
                name="app",
                servers=(
                    Server(host="127.0.0.1", port=9000, tls=False),
                    Server(host="backend.internal", port=8443, tls=True),
                    Server(host="::1", port=80, tls=False),
                ),
                host_header="app.internal",
                tls_verify=True,
                ca_file="ca.pem",
                server_name="backend.internal",
            ),
            "api": Upstream(
                name="api",
                servers=(Server(host="api.internal", port=443, tls=True),),
                tls_verify=False,
            ),
        },
        timeouts=Timeouts(
            client_header=5.0,
            client_keepalive=30.5,
            client_body=20.0,
            upstream_connect=2.0,
            upstream_header=40.0,
            upstream_body=50.0,
            upstream_keepalive=45.0,
            tunnel_idle=600.0,
            drain=15.0,
        ),
        limits=Limits(
            max_header_bytes=32 * 1024,
            max_header_count=50,
            max_uri_bytes=4096,
            max_body_bytes=0,
            max_client_connections=500,
            max_idle_per_server=8,
            buffer_high_water=1_000_000,
            buffer_low_water=128 * 1024,
            retry_buffer_bytes=1024 * 1024,
        ),
        headers=HeaderPolicy(
            trusted_proxies=("10.0.0.0/8", "192.168.1.7/32", "fd00::/8"),
            x_forwarded=False,
            forwarded=True,
            via="edge-1",
            server="sansproxy/1.0 (edge)",
            hide_response_headers=("server", "x-powered-by", "x-aspnet-version", "x-runtime"),
        ),
        logging=LogSettings(level="warning", access_log=False, access_log_format="json"),
    )
    assert list(config.upstreams) == ["app", "api"]  # document order is kept
    assert [lst.tls for lst in config.listeners] == [False, True, False]
    assert isinstance(config.timeouts.client_header, float)


def test_every_listener_finds_its_upstream() -> None:
    config = parse_config(FULL)
    for listener in config.listeners:
        assert config.upstreams[listener.upstream].name == listener.upstream


def test_minimal_config_uses_dataclass_defaults() -> None:
    config = parse_config(MINIMAL)
    assert config == ProxyConfig(
        listeners=(Listener(host="127.0.0.1", port=8080, upstream="app"),),
        upstreams={
            "app": Upstream(name="app", servers=(Server(host="127.0.0.1", port=9000),)),
        },
    )
    assert config.timeouts == Timeouts()
    assert config.limits == Limits()
    assert config.headers == HeaderPolicy()
    assert config.logging == LogSettings()
    upstream = config.upstreams["app"]
    assert (upstream.host_header, upstream.tls_verify, upstream.ca_file) == (None, True, None)
    assert upstream.server_name is None
    listener = config.listeners[0]
    assert (listener.certificate, listener.private_key, listener.tls) == (None, None, False)


def test_empty_sections_equal_defaults() -> None:
    text = MINIMAL + "[timeouts]\n[limits]\n[headers]\n[logging]\n"
    config = parse_config(text)
    assert (config.timeouts, config.limits, config.headers, config.logging) == (
        Timeouts(),
        Limits(),
        HeaderPolicy(),
        LogSettings(),
    )


@pytest.mark.parametrize(
    ("address", "host", "port"),
    [
        ("127.0.0.1:8080", "127.0.0.1", 8080),
        ("[::1]:8080", "::1", 8080),
        ("[0:0:0::1]:1", "::1", 1),
        ("[fe80::1%eth0]:80", "fe80::1%eth0", 80),
        ("[::]:0", "::", 0),
        ("0.0.0.0:65535", "0.0.0.0", 65535),
        ("Example.COM.:443", "example.com.", 443),
        ("my_service:80", "my_service", 80),
    ],
)
def test_listener_addresses(address: str, host: str, port: int) -> None:
    config = parse_config(MINIMAL.replace("127.0.0.1:8080", address))
    assert (config.listeners[0].host, config.listeners[0].port) == (host, port)


@pytest.mark.parametrize(
    ("url", "server"),
    [
        ("http://127.0.0.1:9000", Server(host="127.0.0.1", port=9000, tls=False)),
        ("http://backend", Server(host="backend", port=80, tls=False)),
        ("https://backend", Server(host="backend", port=443, tls=True)),
        ("HTTPS://BACKEND:8443/", Server(host="backend", port=8443, tls=True)),
        ("http://[::1]:9000", Server(host="::1", port=9000, tls=False)),
        ("https://[2001:DB8::1]", Server(host="2001:db8::1", port=443, tls=True)),
    ],
)
def test_server_urls(url: str, server: Server) -> None:
    config = parse_config(MINIMAL.replace("http://127.0.0.1:9000", url))
    assert config.upstreams["app"].servers == (server,)


def test_port_zero_listeners_may_repeat() -> None:
    text = (
        MINIMAL + '[[listeners]]\naddress = "127.0.0.1:0"\n[[listeners]]\naddress = "127.0.0.1:0"\n'
    )
    assert [lst.port for lst in parse_config(text).listeners] == [8080, 0, 0]


def test_via_false_disables_via_and_levels_are_case_insensitive() -> None:
    text = (
        MINIMAL + '[headers]\nvia = false\n[logging]\nlevel = "Debug"\naccess_log_format = "JSON"\n'
    )
    config = parse_config(text)
    assert config.headers.via is None
    assert config.logging == LogSettings(level="debug", access_log_format="json")


def test_hidden_headers_always_include_server_and_x_powered_by() -> None:
    config = parse_config(MINIMAL + "[headers]\nhide_response_headers = []\n")
    assert config.headers.hide_response_headers == ("server", "x-powered-by")
    config = parse_config(MINIMAL + '[headers]\nhide_response_headers = ["X-Powered-By", "Via"]\n')
    assert config.headers.hide_response_headers == ("server", "x-powered-by", "via")


def test_timeouts_accept_floats_and_integers() -> None:
    config = parse_config(MINIMAL + "[timeouts]\nclient_header = 0.25\ndrain = 3\n")
    assert config.timeouts == Timeouts(client_header=0.25, drain=3.0)


# ---------------------------------------------------------------------------------------------
# Errors: each names the key path and the problem
# ---------------------------------------------------------------------------------------------

LISTENER = '[[listeners]]\naddress = "127.0.0.1:8080"\n'
APP = '[upstreams.app]\nservers = ["http://127.0.0.1:9000"]\n'
HTTPS_APP = '[upstreams.app]\nservers = ["https://backend:8443"]\n'


def _listener(extra: str) -> str:
    return f"[[listeners]]\n{extra}\n" + APP


def _address(address: str) -> str:
    return _listener(f"address = {json.dumps(address)}")


def _server(url: str) -> str:
    return LISTENER + f"[upstreams.app]\nservers = [{json.dumps(url)}]\n"


def _section(section: str, body: str) -> str:
    return MINIMAL + f"[{section}]\n{body}\n"


ERROR_CASES: list[tuple[str, str, str]] = [
    # --- listeners
    (APP, "listeners", "required: define at least one [[listeners]] table"),
    ("listeners = []\n" + APP, "listeners", "at least one listener is required"),
    (
        '[listeners]\naddress = "127.0.0.1:8080"\n' + APP,
        "listeners",
        "must be an array of tables ([[listeners]])",
    ),
    ('listeners = ["127.0.0.1:8080"]\n' + APP, "listeners[0]", "must be a table"),
    (_listener('upstream = "app"'), "listeners[0].address", "required"),
    (_listener("address = 8080"), "listeners[0].address", "must be a string"),
    (_address(""), "listeners[0].address", "must not be empty"),
    (_address("127.0.0.1"), "listeners[0].address", "must be host:port (IPv6 as [::1]:8080)"),
    (
        _address("::1:8080"),
        "listeners[0].address",
        "an IPv6 address must be in brackets, such as [::1]:8080",
    ),
    (_address("[::1"), "listeners[0].address", "missing ']' after the IPv6 address"),
    (_address("[::1]8080"), "listeners[0].address", "expected ':port' after ']'"),
    (_address("[::1]"), "listeners[0].address", "must be host:port (IPv6 as [::1]:8080)"),
    (_address("[zz]:80"), "listeners[0].address", "invalid IPv6 address 'zz'"),
    (_address("[1.2.3.4]:80"), "listeners[0].address", "invalid IPv6 address '1.2.3.4'"),
    (
        _address("127.0.0.1:65536"),
        "listeners[0].address",
        "invalid port '65536': must be a number from 0 to 65535",
    ),
    (
        _address("127.0.0.1:http"),
        "listeners[0].address",
        "invalid port 'http': must be a number from 0 to 65535",
    ),
    (
        _address("127.0.0.1:-1"),
        "listeners[0].address",
        "invalid port '-1': must be a number from 0 to 65535",
    ),
    (
        _address("127.0.0.1:"),
        "listeners[0].address",
        "invalid port '': must be a number from 0 to 65535",
    ),
    (_address(":8080"), "listeners[0].address", "missing host"),
    (_address("999.0.0.1:80"), "listeners[0].address", "invalid IPv4 address '999.0.0.1'"),
    (_address("bad host:80"), "listeners[0].address", "invalid host name 'bad host'"),
    (_address("-bad.example:80"), "listeners[0].address", "invalid host name '-bad.example'"),
    (_address("a..b:80"), "listeners[0].address", "invalid host name 'a..b'"),
    (
        LISTENER + '[[listeners]]\naddress = "127.0.0.1:8080"\n' + APP,
        "listeners[1].address",
        "duplicate of listeners[0].address",
    ),
    (
        '[[listeners]]\naddress = "[::1]:80"\n[[listeners]]\naddress = "[0::1]:80"\n' + APP,
        "listeners[1].address",
        "duplicate of listeners[0].address",
    ),
    (
        '[[listeners]]\naddress = "localhost:80"\n'
        '[[listeners]]\naddress = "127.0.0.1:81"\n'
        '[[listeners]]\naddress = "LOCALHOST:80"\n' + APP,
        "listeners[2].address",
        "duplicate of listeners[0].address",
    ),
    (
        LISTENER + 'upstream = "nope"\n' + APP,
        "listeners[0].upstream",
        "no upstream named 'nope' (defined: 'app')",
    ),
    (LISTENER + "upstream = 1\n" + APP, "listeners[0].upstream", "must be a string"),
    (
        LISTENER + APP + '[upstreams.b]\nservers = ["http://b"]\n',
        "listeners[0].upstream",
        "required when more than one upstream is defined ('app', 'b')",
    ),
    (
        LISTENER + 'certificate = "c.pem"\n' + APP,
        "listeners[0].private_key",
        "required when certificate is set",
    ),
    (
        LISTENER + 'private_key = "k.pem"\n' + APP,
        "listeners[0].certificate",
        "required when private_key is set",
    ),
    (
        LISTENER + 'certificate = ""\nprivate_key = "k.pem"\n' + APP,
        "listeners[0].certificate",
        "must not be empty",
    ),
    (
        LISTENER + 'certificate = "c.pem"\nprivate_key = false\n' + APP,
        "listeners[0].private_key",
        "must be a string",
    ),
    # --- upstreams
    (LISTENER, "upstreams", "required: define at least one [upstreams.<name>] table"),
    ("upstreams = {}\n" + LISTENER, "upstreams", "at least one upstream is required"),
    ("upstreams = 3\n" + LISTENER, "upstreams", "must be a table"),
    (
        LISTENER + "[upstreams]\napp = 1\n",
        "upstreams.app",
        "must be a table ([upstreams.app] with a servers key)",
    ),
    (
        LISTENER + '[upstreams."my app"]\nservers = ["http://a"]\n',
        'upstreams."my app"',
        "invalid upstream name: use letters, digits, '_' and '-', not starting with '-'",
    ),
    (
        LISTENER + '[upstreams.-x]\nservers = ["http://a"]\n',
        "upstreams.-x",
        "invalid upstream name: use letters, digits, '_' and '-', not starting with '-'",
    ),
    (
        LISTENER + '[upstreams.""]\nservers = ["http://a"]\n',
        'upstreams.""',
        "invalid upstream name: use letters, digits, '_' and '-', not starting with '-'",
    ),
    (LISTENER + "[upstreams.app]\n", "upstreams.app.servers", "required"),
    (
        LISTENER + '[upstreams.app]\nservers = "http://a"\n',
        "upstreams.app.servers",
        "must be an array",
    ),
    (LISTENER + "[upstreams.app]\nservers = []\n", "upstreams.app.servers", "must not be empty"),
    (
        LISTENER + '[upstreams.app]\nservers = ["http://a", 1]\n',
        "upstreams.app.servers[1]",
        "must be a string",
    ),
    (
        _server("127.0.0.1:9000"),
        "upstreams.app.servers[0]",
        "must be a URL such as http://127.0.0.1:9000",
    ),
    (
        _server("ftp://files"),
        "upstreams.app.servers[0]",
        "scheme must be http or https, not 'ftp'",
    ),
    (_server("ws://a"), "upstreams.app.servers[0]", "scheme must be http or https, not 'ws'"),
    (_server("http://a/api"), "upstreams.app.servers[0]", "must not have a path"),
    (_server("http://a?x=1"), "upstreams.app.servers[0]", "must not have a query"),
    (_server("http://a/?x=1"), "upstreams.app.servers[0]", "must not have a path"),
    (_server("http://a#top"), "upstreams.app.servers[0]", "must not have a fragment"),
    (
        _server("http://user:pw@a"),
        "upstreams.app.servers[0]",
        "must not contain user information",
    ),
    (_server("http://a:0"), "upstreams.app.servers[0]", "port must be from 1 to 65535"),
    (_server("http://"), "upstreams.app.servers[0]", "missing host"),
    (_server("http://[::1"), "upstreams.app.servers[0]", "missing ']' after the IPv6 address"),
    (
        _server("http://::1:80"),
        "upstreams.app.servers[0]",
        "an IPv6 address must be in brackets, such as [::1]:8080",
    ),
    (
        LISTENER + '[upstreams.app]\nservers = ["http://a", "HTTP://A:80/"]\n',
        "upstreams.app.servers[1]",
        "duplicate of upstreams.app.servers[0]",
    ),
    (
        LISTENER + APP + 'host_header = "bad host"\n',
        "upstreams.app.host_header",
        "invalid Host value: invalid host name 'bad host'",
    ),
    (
        LISTENER + APP + 'host_header = "a:99999"\n',
        "upstreams.app.host_header",
        "invalid Host value: invalid port '99999': must be a number from 0 to 65535",
    ),
    (LISTENER + APP + "host_header = 5\n", "upstreams.app.host_header", "must be a string"),
    (
        LISTENER + HTTPS_APP + 'tls_verify = "yes"\n',
        "upstreams.app.tls_verify",
        "must be true or false",
    ),
    (
        LISTENER + APP + 'ca_file = "ca.pem"\n',
        "upstreams.app.ca_file",
        "applies only to https:// servers; this upstream has none",
    ),
    (
        LISTENER + APP + "tls_verify = false\n",
        "upstreams.app.tls_verify",
        "applies only to https:// servers; this upstream has none",
    ),
    (
        LISTENER + APP + 'server_name = "backend"\n',
        "upstreams.app.server_name",
        "applies only to https:// servers; this upstream has none",
    ),
    (
        LISTENER + HTTPS_APP + 'tls_verify = false\nca_file = "ca.pem"\n',
        "upstreams.app.ca_file",
        "has no effect when tls_verify is false",
    ),
    (
        LISTENER + HTTPS_APP + 'server_name = "[::1]"\n',
        "upstreams.app.server_name",
        "must be a host name or an IP address, without port",
    ),
    (
        LISTENER + HTTPS_APP + 'server_name = "a b"\n',
        "upstreams.app.server_name",
        "invalid host name 'a b'",
    ),
    (
        LISTENER + HTTPS_APP + 'server_name = "backend:443"\n',
        "upstreams.app.server_name",
        "must be a host name or an IP address, without port",
    ),
    # --- timeouts
    ("timeouts = 5\n" + MINIMAL, "timeouts", "must be a table"),
    (
        _section("timeouts", "client_header = 0"),
        "timeouts.client_header",
        "must be a positive number",
    ),
    (_section("timeouts", "drain = -1.5"), "timeouts.drain", "must be a positive number"),
    (
        _section("timeouts", 'client_body = "10"'),
        "timeouts.client_body",
        "must be a positive number",
    ),
    (
        _section("timeouts", "tunnel_idle = true"),
        "timeouts.tunnel_idle",
        "must be a positive number",
    ),
    (
        _section("timeouts", "upstream_body = nan"),
        "timeouts.upstream_body",
        "must be a positive number",
    ),
    (
        _section("timeouts", "upstream_header = inf"),
        "timeouts.upstream_header",
        "must be a finite number",
    ),
    # --- limits
    ('limits = "big"\n' + MINIMAL, "limits", "must be a table"),
    (
        _section("limits", "max_header_count = 0"),
        "limits.max_header_count",
        "must be a positive integer",
    ),
    (
        _section("limits", "max_header_count = 1.5"),
        "limits.max_header_count",
        "must be a positive integer",
    ),
    (
        _section("limits", 'max_client_connections = "10"'),
        "limits.max_client_connections",
        "must be a positive integer",
    ),
    (
        _section("limits", "max_idle_per_server = true"),
        "limits.max_idle_per_server",
        "must be a positive integer",
    ),
    (_section("limits", "max_header_bytes = 0"), "limits.max_header_bytes", "must be positive"),
    (_section("limits", 'max_uri_bytes = "0KiB"'), "limits.max_uri_bytes", "must be positive"),
    (_section("limits", "max_body_bytes = -1"), "limits.max_body_bytes", "must not be negative"),
    (
        _section("limits", "max_header_bytes = 1.5"),
        "limits.max_header_bytes",
        'must be an integer or a size string such as "16KiB"',
    ),
    (
        _section("limits", "retry_buffer_bytes = false"),
        "limits.retry_buffer_bytes",
        'must be an integer or a size string such as "16KiB"',
    ),
    (
        _section("limits", 'max_header_bytes = "1.5KiB"'),
        "limits.max_header_bytes",
        "invalid size '1.5KiB': expected a whole number with an optional unit "
        "(B, KB, MB, GB, KiB, MiB, GiB)",
    ),
    (
        _section("limits", 'max_body_bytes = "10XB"'),
        "limits.max_body_bytes",
        "invalid size '10XB': unknown unit 'XB' (use B, KB, MB, GB, KiB, MiB or GiB)",
    ),
    (
        _section("limits", 'buffer_low_water = "256KiB"'),
        "limits.buffer_low_water",
        "must be less than buffer_high_water (262144 bytes)",
    ),
    (
        _section("limits", "buffer_low_water = 100\nbuffer_high_water = 50"),
        "limits.buffer_low_water",
        "must be less than buffer_high_water (50 bytes)",
    ),
    (
        _section("limits", 'buffer_high_water = "32KiB"'),
        "limits.buffer_high_water",
        "must be greater than buffer_low_water (65536 bytes, the default)",
    ),
    # --- headers
    ("headers = []\n" + MINIMAL, "headers", "must be a table"),
    (
        _section("headers", 'trusted_proxies = "10.0.0.0/8"'),
        "headers.trusted_proxies",
        "must be an array",
    ),
    (
        _section("headers", "trusted_proxies = [1]"),
        "headers.trusted_proxies[0]",
        "must be a string",
    ),
    (
        _section("headers", 'trusted_proxies = ["10.0.0.0/8", "nope"]'),
        "headers.trusted_proxies[1]",
        "'nope' is not an IP address or a CIDR network such as 10.0.0.0/8",
    ),
    (
        _section("headers", 'trusted_proxies = ["10.0.0.0/33"]'),
        "headers.trusted_proxies[0]",
        "'10.0.0.0/33' is not an IP address or a CIDR network such as 10.0.0.0/8",
    ),
    (
        _section("headers", 'trusted_proxies = ["10.1.2.3/8"]'),
        "headers.trusted_proxies[0]",
        "'10.1.2.3/8' has host bits set (did you mean '10.0.0.0/8'?)",
    ),
    (_section("headers", "x_forwarded = 1"), "headers.x_forwarded", "must be true or false"),
    (_section("headers", 'forwarded = "no"'), "headers.forwarded", "must be true or false"),
    (_section("headers", "via = true"), "headers.via", "must be a string or false"),
    (_section("headers", "via = 3"), "headers.via", "must be a string or false"),
    (
        _section("headers", 'via = "my proxy"'),
        "headers.via",
        "must be a token (letters, digits and !#$%&'*+-.^_`|~), or false",
    ),
    (
        _section("headers", 'via = ""'),
        "headers.via",
        "must be a token (letters, digits and !#$%&'*+-.^_`|~), or false",
    ),
    (_section("headers", 'server = ""'), "headers.server", "must not be empty"),
    (_section("headers", "server = false"), "headers.server", "must be a string"),
    (
        _section("headers", 'server = "evil\\r\\nX-Injected: 1"'),
        "headers.server",
        "must be printable ASCII without control characters or surrounding spaces",
    ),
    (
        _section("headers", 'server = " padded"'),
        "headers.server",
        "must be printable ASCII without control characters or surrounding spaces",
    ),
    (
        _section("headers", 'hide_response_headers = "x-runtime"'),
        "headers.hide_response_headers",
        "must be an array",
    ),
    (
        _section("headers", 'hide_response_headers = ["ok", "bad name"]'),
        "headers.hide_response_headers[1]",
        "must be a header field name (a token)",
    ),
    (
        _section("headers", 'hide_response_headers = ["x:y"]'),
        "headers.hide_response_headers[0]",
        "must be a header field name (a token)",
    ),
    # --- logging
    ("logging = true\n" + MINIMAL, "logging", "must be a table"),
    (
        _section("logging", 'level = "verbose"'),
        "logging.level",
        "must be one of debug, info, warning, error",
    ),
    (
        _section("logging", "level = 1"),
        "logging.level",
        "must be one of debug, info, warning, error",
    ),
    (_section("logging", 'access_log = "yes"'), "logging.access_log", "must be true or false"),
    (
        _section("logging", 'access_log_format = "xml"'),
        "logging.access_log_format",
        "must be one of combined, extended, json",
    ),
]


@pytest.mark.parametrize(("text", "key", "problem"), ERROR_CASES)
def test_errors_name_key_and_problem(text: str, key: str, problem: str) -> None:
    error = _error(text)
    assert (error.key, error.problem) == (key, problem)
    assert str(error) == f"test.toml: {key}: {problem}"


@pytest.mark.parametrize(
    "text",
    [
        "[[listeners]\n",
        'a = "unterminated\n',
        "a = 1\na = 2\n",
        MINIMAL + "[timeouts]\nclient_header = \n",
    ],
)
def test_toml_syntax_errors_become_config_errors(text: str) -> None:
    error = _error(text)
    assert error.key == ""
    assert error.problem.startswith("invalid TOML: ")
    assert re.search(r"line \d+|end of document", error.problem)
    assert str(error) == f"test.toml: {error.problem}"


def test_default_source_name() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("")
    assert info.value.source == "<config>"


# ---------------------------------------------------------------------------------------------
# Unknown keys, at every level
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("listen = 1\n" + MINIMAL, "listen", "unknown key (did you mean 'listeners'?)"),
        ("zzz = 1\n" + MINIMAL, "zzz", "unknown key"),
        (MINIMAL + '[tls]\ncert = "x"\n', "tls", "unknown key"),
        (
            LISTENER + 'adress = "x"\n' + APP,
            "listeners[0].adress",
            "unknown key (did you mean 'address'?)",
        ),
        (
            LISTENER + APP + '[[listeners]]\naddress = "127.0.0.1:1"\nweight = 1\n',
            "listeners[1].weight",
            "unknown key",
        ),
        (
            LISTENER + APP + "server = 1\n",
            "upstreams.app.server",
            "unknown key (did you mean 'servers'?)",
        ),
        (
            LISTENER + APP + "hostheader = 1\n",
            "upstreams.app.hostheader",
            "unknown key (did you mean 'host_header'?)",
        ),
        (
            _section("timeouts", "client_heder = 1"),
            "timeouts.client_heder",
            "unknown key (did you mean 'client_header'?)",
        ),
        (_section("timeouts", "read = 1"), "timeouts.read", "unknown key"),
        (
            _section("limits", "max_body = 1"),
            "limits.max_body",
            "unknown key (did you mean 'max_body_bytes'?)",
        ),
        (_section("headers", "hsts = true"), "headers.hsts", "unknown key"),
        (_section("logging", 'file = "x.log"'), "logging.file", "unknown key"),
        (_section("logging", '"log file" = "x.log"'), 'logging."log file"', "unknown key"),
        (_section("timeouts", "[timeouts.nested]\nx = 1"), "timeouts.nested", "unknown key"),
    ],
)
def test_unknown_keys(text: str, key: str, problem: str) -> None:
    error = _error(text)
    assert (error.key, error.problem) == (key, problem)


def test_unknown_key_is_reported_before_bad_values() -> None:
    error = _error(_section("timeouts", "client_header = -1\nbogus = 1"))
    assert (error.key, error.problem) == ("timeouts.bogus", "unknown key")


# ---------------------------------------------------------------------------------------------
# quick_config (command line)
# ---------------------------------------------------------------------------------------------


def test_quick_config_happy_path() -> None:
    config = quick_config(
        ["127.0.0.1:8080", "[::1]:0"], ["http://127.0.0.1:9000", "https://backend.internal"]
    )
    assert config == ProxyConfig(
        listeners=(
            Listener(host="127.0.0.1", port=8080, upstream=QUICK_UPSTREAM_NAME),
            Listener(host="::1", port=0, upstream=QUICK_UPSTREAM_NAME),
        ),
        upstreams={
            QUICK_UPSTREAM_NAME: Upstream(
                name=QUICK_UPSTREAM_NAME,
                servers=(
                    Server(host="127.0.0.1", port=9000, tls=False),
                    Server(host="backend.internal", port=443, tls=True),
                ),
            )
        },
    )
    for listener in config.listeners:
        assert config.upstreams[listener.upstream].servers


def test_quick_config_equals_the_same_toml() -> None:
    text = (
        '[[listeners]]\naddress = "127.0.0.1:8080"\n[upstreams.default]\nservers = ["http://a:1"]\n'
    )
    assert quick_config(["127.0.0.1:8080"], ["http://a:1"]) == parse_config(text)


@pytest.mark.parametrize(
    ("listen", "upstreams", "key", "problem"),
    [
        ([], ["http://a"], "--listen", "at least one is required"),
        (["127.0.0.1:8080"], [], "--upstream", "at least one is required"),
        ([], [], "--listen", "at least one is required"),
        (
            ["localhost"],
            ["http://a"],
            "--listen",
            "'localhost': must be host:port (IPv6 as [::1]:8080)",
        ),
        (
            [":99999"],
            ["http://a"],
            "--listen",
            "':99999': invalid port '99999': must be a number from 0 to 65535",
        ),
        (
            [":8080", "8080"],
            ["http://a"],
            "--listen",
            "'8080': given twice",
        ),
        (
            ["127.0.0.1:8080", "::1:80"],
            ["http://a"],
            "--listen",
            "'::1:80': an IPv6 address must be in brackets, such as [::1]:8080",
        ),
        (
            ["127.0.0.1:8080", "127.0.0.1:8080"],
            ["http://a"],
            "--listen",
            "'127.0.0.1:8080': given twice",
        ),
        (
            ["127.0.0.1:8080"],
            ["http://a", "ftp://b"],
            "--upstream",
            "'ftp://b': scheme must be http or https, not 'ftp'",
        ),
        (
            ["127.0.0.1:8080"],
            ["localhost:9000/api"],
            "--upstream",
            "'localhost:9000/api': must not have a path",
        ),
        (
            ["127.0.0.1:8080"],
            ["127.0.0.1:9000", "http://127.0.0.1:9000"],
            "--upstream",
            "'http://127.0.0.1:9000': given twice",
        ),
        (
            ["127.0.0.1:8080"],
            [""],
            "--upstream",
            "'': must be a URL such as http://127.0.0.1:9000",
        ),
        (
            ["127.0.0.1:8080"],
            ["http://a/x"],
            "--upstream",
            "'http://a/x': must not have a path",
        ),
        (
            ["127.0.0.1:8080"],
            ["http://a", "http://a:80"],
            "--upstream",
            "'http://a:80': given twice",
        ),
    ],
)
def test_quick_config_errors(
    listen: list[str], upstreams: list[str], key: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as info:
        quick_config(listen, upstreams)
    assert (info.value.source, info.value.key, info.value.problem) == ("command line", key, problem)
    assert str(info.value) == f"command line: {key}: {problem}"


@pytest.mark.parametrize(
    ("listen", "host", "port"),
    [
        (":8080", "0.0.0.0", 8080),
        ("8080", "0.0.0.0", 8080),
        (":0", "0.0.0.0", 0),
        ("127.0.0.1:8080", "127.0.0.1", 8080),
        ("[::]:8080", "::", 8080),
        ("localhost:8080", "localhost", 8080),
    ],
)
def test_quick_config_takes_caddy_style_listen_addresses(listen: str, host: str, port: int) -> None:
    (listener,) = quick_config([listen], ["http://a"]).listeners
    assert (listener.host, listener.port) == (host, port)


@pytest.mark.parametrize(
    ("upstream", "server"),
    [
        ("127.0.0.1:9000", Server(host="127.0.0.1", port=9000, tls=False)),
        ("localhost:9000", Server(host="localhost", port=9000, tls=False)),
        ("localhost", Server(host="localhost", port=80, tls=False)),
        ("[::1]:9000", Server(host="::1", port=9000, tls=False)),
        ("http://127.0.0.1:9000", Server(host="127.0.0.1", port=9000, tls=False)),
        ("https://api.example", Server(host="api.example", port=443, tls=True)),
    ],
)
def test_quick_config_assumes_http_for_an_upstream_without_scheme(
    upstream: str, server: Server
) -> None:
    config = quick_config(["127.0.0.1:8080"], [upstream])
    assert config.upstreams[QUICK_UPSTREAM_NAME].servers == (server,)


def test_quick_config_port_zero_may_repeat() -> None:
    config = quick_config(["127.0.0.1:0", "127.0.0.1:0"], ["http://a"])
    assert [lst.port for lst in config.listeners] == [0, 0]


def test_quick_config_rejects_a_bare_string() -> None:
    with pytest.raises(TypeError):
        quick_config("127.0.0.1:8080", ["http://a"])
    with pytest.raises(TypeError):
        quick_config(["127.0.0.1:8080"], "http://a")


# ---------------------------------------------------------------------------------------------
# Size strings
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512", 512),
        ("0", 0),
        ("512B", 512),
        ("16KiB", 16 * 1024),
        ("16kib", 16 * 1024),
        ("100MiB", 100 * 1024**2),
        ("2GiB", 2 * 1024**3),
        ("1KB", 1000),
        ("1kB", 1000),
        ("1MB", 1_000_000),
        ("3GB", 3_000_000_000),
        ("128 KiB", 128 * 1024),
        (" 7 ", 7),
    ],
)
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "expected a whole number"),
        ("KiB", "expected a whole number"),
        ("-1", "expected a whole number"),
        ("1.5MiB", "expected a whole number"),
        ("1 000", "expected a whole number"),
        ("10K", "unknown unit 'K'"),
        ("10Mb/s", "expected a whole number"),
        ("10TiB", "unknown unit 'TiB'"),
    ],
)
def test_parse_size_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_size(text)


UNITS = {
    "": 1,
    "B": 1,
    "KB": 1000,
    "MB": 10**6,
    "GB": 10**9,
    "KiB": 2**10,
    "MiB": 2**20,
    "GiB": 2**30,
}


@given(number=st.integers(min_value=0, max_value=10**12), unit=st.sampled_from(sorted(UNITS)))
def test_parse_size_property(number: int, unit: str) -> None:
    assert parse_size(f"{number}{unit}") == number * UNITS[unit]
    assert parse_size(f"{number} {unit.lower()}") == number * UNITS[unit]


def test_every_limits_field_accepts_a_size_or_a_count() -> None:
    # A new Limits field must be classified; this catches a size parsed as a count.
    sizes = {f.name for f in fields(Limits) if f.name.endswith("_bytes") or "_water" in f.name}
    assert sizes == {
        "max_header_bytes",
        "max_uri_bytes",
        "max_body_bytes",
        "buffer_high_water",
        "buffer_low_water",
        "retry_buffer_bytes",
    }
    for f in fields(Limits):
        body = f'{f.name} = "1KiB"'
        if f.name == "buffer_high_water":
            body += "\nbuffer_low_water = 512"
        text = _section("limits", body)
        if f.name in sizes:
            assert getattr(parse_config(text).limits, f.name) == 1024
        else:
            assert _error(text).problem == "must be a positive integer"


# ---------------------------------------------------------------------------------------------
# Robustness: any well-formed TOML gives a ProxyConfig or a ConfigError, nothing else
# ---------------------------------------------------------------------------------------------


def _toml_string(text: str) -> str:
    # TOML basic string: escape quotes, backslashes and control characters (TOML 1.0 "String").
    escaped = "".join(
        f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7F or c in '"\\' else c for c in text
    )
    return f'"{escaped}"'


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, str):
        return _toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    assert isinstance(value, dict)
    items = ", ".join(f"{_toml_string(k)} = {_toml_value(v)}" for k, v in value.items())
    return "{" + items + "}"


def _toml_document(document: dict[str, object]) -> str:
    return "".join(f"{_toml_string(k)} = {_toml_value(v)}\n" for k, v in document.items())


def _paths(value: object, path: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    found = [path]
    if isinstance(value, dict):
        for k, v in value.items():
            found += _paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += _paths(v, (*path, i))
    return found


def _replace(value: object, path: tuple[object, ...], new: object) -> object:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        copy = dict(value)
        copy[str(head)] = _replace(value[str(head)], rest, new)
        return copy
    assert isinstance(value, list)
    assert isinstance(head, int)
    items = list(value)
    items[head] = _replace(value[head], rest, new)
    return items


_SAMPLE = {
    "listeners": [{"address": "127.0.0.1:8080", "upstream": "app"}],
    "upstreams": {
        "app": {
            "servers": ["http://127.0.0.1:9000", "https://b:8443"],
            "host_header": "app",
            "server_name": "b",
        }
    },
    "timeouts": {"client_header": 5},
    "limits": {"max_header_bytes": "16KiB", "max_header_count": 10},
    "headers": {"trusted_proxies": ["10.0.0.0/8"], "via": "x", "hide_response_headers": ["a"]},
    "logging": {"level": "info"},
}
_SCALARS = (
    st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["127.0.0.1:0", "[::1]:1", "http://x", "https://[::1]", "1KiB", "app"])
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


@given(path=st.sampled_from(_paths(_SAMPLE)[1:]), new=_VALUES)
def test_mutated_documents_give_config_or_config_error(
    path: tuple[object, ...], new: object
) -> None:
    document = _replace(_SAMPLE, path, new)
    assert isinstance(document, dict)
    text = _toml_document(document)
    try:
        config = parse_config(text, "fuzz.toml")
    except ConfigError as caught:
        error: ConfigError | None = caught
    else:
        error = None
        for listener in config.listeners:
            assert listener.upstream in config.upstreams
    if error is not None:
        assert error.source == "fuzz.toml"
        assert error.key  # the serialiser writes valid TOML, so a key is always named
        assert error.problem


@given(text=st.text(max_size=200))
def test_arbitrary_text_gives_config_or_config_error(text: str) -> None:
    try:
        parse_config(text, "any.toml")
    except ConfigError as caught:
        assert caught.source == "any.toml"  # noqa: PT017 (a property, not one expected error)


def test_sample_document_is_valid() -> None:
    assert parse_config(_toml_document(_SAMPLE)).listeners[0].upstream == "app"


# ---------------------------------------------------------------------------------------------
# The documentation stays true
# ---------------------------------------------------------------------------------------------


def _doc_toml_blocks() -> list[str]:
    return re.findall(r"```toml\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.DOTALL)


def test_documented_examples_parse() -> None:
    blocks = _doc_toml_blocks()
    assert len(blocks) >= 2  # at least the minimal and the complete example
    for block in blocks:
        parse_config(block, str(DOCS))


def test_every_key_is_documented() -> None:
    text = DOCS.read_text(encoding="utf-8")
    sections = {
        "timeouts": Timeouts,
        "limits": Limits,
        "headers": HeaderPolicy,
        "compression": Compression,
        "cache": CacheSettings,
        "http2": Http2Settings,
        "logging": LogSettings,
        "server": ServerSettings,
    }
    for section, cls in sections.items():
        for f in fields(cls):
            assert f"`{section}.{f.name}`" in text, f"{section}.{f.name} is not documented"
    for f in fields(ProxyConfig):  # the top-level table names every section
        if f.name == "source":
            continue  # not a key: the name parse_config was given for the text
        assert f"| `{f.name}` |" in text, f"top-level key {f.name} is not documented"
    listener_keys = ["address"] + [
        f.name for f in fields(Listener) if f.name not in ("host", "port")
    ]
    for key in listener_keys:
        assert f"`listeners[].{key}`" in text, f"listeners[].{key} is not documented"
    for key in ("servers", "host_header", "tls_verify", "ca_file", "server_name"):
        assert f"`upstreams.<name>.{key}`" in text


def test_every_routing_and_balancing_key_is_documented() -> None:
    text = DOCS.read_text(encoding="utf-8")
    upstream_keys = [f.name for f in fields(Upstream) if f.name != "name"]
    for key in upstream_keys:
        assert f"`upstreams.<name>.{key}`" in text, f"upstreams.<name>.{key} is not documented"
    tables = {
        "servers[]": ("url", "weight", "backup", "max_connections"),
        "health_check": [f.name for f in fields(ActiveCheck)],
        "outlier": (
            "consecutive_failures",
            "statuses",
            "base_ejection",
            "max_ejection",
            "max_ejected_percent",
        ),
        "retry_budget": [f.name for f in fields(RetryBudgetSettings)],
    }
    for table, keys in tables.items():
        for key in keys:
            assert f"`upstreams.<name>.{table}.{key}`" in text, f"{table}.{key} is not documented"
    route_keys = [f.name for f in fields(Route) if f.name not in ("match", "retry")]
    route_keys += ["host", "path", "path_prefix", "path_regex", "methods", "headers", "retries"]
    for key in route_keys:
        assert f"`routes[].{key}`" in text, f"routes[].{key} is not documented"
    for key in [f.name for f in fields(RetryPolicy)]:
        assert f"`routes[].retries.{key}`" in text, f"routes[].retries.{key} is not documented"
    for f in fields(RoutingSettings):
        assert f"`routing.{f.name}`" in text


MINIMAL = '[[listeners]]\naddress = "127.0.0.1:8080"\n[upstreams.app]\nservers = ["http://127.0.0.1:9000"]\n'


@pytest.mark.parametrize(
    ("server", "loop", "workers"),
    [
        ("", "trio", 1),
        ('loop = "asyncio"\nworkers = 4', "asyncio", 4),
        ('loop = "UVLOOP"\nworkers = "auto"', "uvloop", 0),
    ],
)
def test_server_section(server: str, loop: str, workers: int) -> None:
    config = parse_config(MINIMAL + "[server]\n" + server, "p.toml")
    assert (config.server.loop, config.server.workers) == (loop, workers)


WORKERS_PROBLEM = 'p.toml: server.workers: must be "auto" or a whole number from 1 to 256'


@pytest.mark.parametrize(
    ("server", "message"),
    [
        ('loop = "gevent"', "p.toml: server.loop: must be one of trio, asyncio, uvloop"),
        ("workers = 0", WORKERS_PROBLEM),
        (
            "workers = true",
            'p.toml: server.workers: must be "auto" or a whole number from 1 to 256',
        ),
        (
            'workers = "many"',
            'p.toml: server.workers: must be "auto" or a whole number from 1 to 256',
        ),
        ("threads = 2", "p.toml: server.threads: unknown key"),
    ],
)
def test_server_section_errors(server: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(MINIMAL + "[server]\n" + server, "p.toml")
    assert str(raised.value).startswith(message)
