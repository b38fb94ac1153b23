"""The ``[cache]`` table and ``[routes.cache]`` overrides: values, defaults and errors."""

from __future__ import annotations

import pytest

from sansproxy.config import CacheSettings, parse_config
from sansproxy.errors import ConfigError

BASE = """
[[listeners]]
address = "127.0.0.1:8080"
upstream = "app"

[upstreams.app]
servers = ["http://127.0.0.1:9000"]
"""


def _error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "test.toml")
    return info.value


def test_the_cache_is_off_by_default() -> None:
    config = parse_config(BASE)
    assert config.cache == CacheSettings()
    assert not config.cache.enabled


def test_every_key_is_read() -> None:
    config = parse_config(
        BASE
        + """
[cache]
enabled = true
max_size = "128MiB"
max_object_size = "2MiB"
key_headers = ["X-Region", "x-region"]
key_cookies = ["tenant"]
default_ttl = { "200" = "10m", "404" = 30 }
heuristic_max_age = "2h"
honour_request_no_cache = false
set_cookie = "strip"
status_header = false
coalesce = false
coalesce_timeout = 1.5
purge_method = "PURGE"
purge_from = ["10.0.0.0/8", "192.168.1.7"]
"""
    )
    cache = config.cache
    assert cache.enabled
    assert (cache.max_size, cache.max_object_size) == (128 << 20, 2 << 20)
    assert cache.key_headers == (b"x-region",)
    assert cache.key_cookies == (b"tenant",)
    assert cache.default_ttl == ((200, 600), (404, 30))
    assert cache.heuristic_max_age == 7200
    assert not cache.honour_request_no_cache
    assert cache.set_cookie == "strip"
    assert not cache.status_header
    assert not cache.coalesce
    assert cache.coalesce_timeout == 1.5
    assert cache.purge_method == b"PURGE"
    assert cache.purge_from == ("10.0.0.0/8", "192.168.1.7/32")


def test_a_route_overrides_the_global_table() -> None:
    config = parse_config(
        BASE
        + """
[cache]
max_size = "1MiB"
max_object_size = "1MiB"

[[routes]]
path_prefix = "/static/"
upstream = "app"
cache = { enabled = true, default_ttl = { "200" = "1d" } }

[[routes]]
path_prefix = "/"
upstream = "app"
"""
    )
    static, other = config.routes
    assert static.cache.enabled
    assert static.cache.max_size == 1 << 20
    assert static.cache.default_ttl == ((200, 86400),)
    assert not other.cache.enabled


@pytest.mark.parametrize(
    ("body", "key", "problem"),
    [
        ("enabled = 1", "cache.enabled", "must be true or false"),
        ("colour = 1", "cache.colour", "unknown key"),
        ("enable = true", "cache.enable", "unknown key (did you mean 'enabled'?)"),
        ("max_size = 0", "cache.max_size", "must be positive"),
        ('max_size = "lots"', "cache.max_size", None),
        (
            'max_size = "1MiB"\nmax_object_size = "2MiB"',
            "cache.max_object_size",
            "is larger than max_size (2097152 > 1048576 bytes)",
        ),
        (
            'key_headers = ["bad name"]',
            "cache.key_headers[0]",
            "'bad name' is not a header field name",
        ),
        (
            'key_headers = ["Content-Length"]',
            "cache.key_headers[0]",
            "'content-length' is not a field a key can depend on",
        ),
        ('key_cookies = ["a;b"]', "cache.key_cookies[0]", "'a;b' is not a cookie name"),
        (
            'default_ttl = { "2xx" = 10 }',
            "cache.default_ttl.2xx",
            'must be a status code from 200 to 599, such as "200"',
        ),
        (
            'default_ttl = { "304" = 10 }',
            "cache.default_ttl.304",
            "304 responses are never stored whole",
        ),
        (
            'default_ttl = { "200" = "ten minutes" }',
            "cache.default_ttl.200",
            'must be whole seconds or a duration such as "90s", "10m", "1h" or "7d"',
        ),
        ("heuristic_max_age = -1", "cache.heuristic_max_age", None),
        ("coalesce_timeout = 0", "cache.coalesce_timeout", "must be a positive number"),
        ('set_cookie = "keep"', "cache.set_cookie", "must be one of store, strip, refuse"),
        (
            'purge_method = "GET"',
            "cache.purge_method",
            "'GET' is not a method name of its own (such as 'PURGE')",
        ),
        ('purge_from = ["nowhere"]', "cache.purge_from[0]", None),
    ],
)
def test_errors_name_the_key_and_the_problem(body: str, key: str, problem: str | None) -> None:
    error = _error(BASE + f"[cache]\n{body}\n")
    assert error.key == key
    if problem is not None:
        assert error.problem == problem


def test_a_route_error_names_the_route() -> None:
    error = _error(
        BASE
        + """
[[routes]]
path = "/"
upstream = "app"
cache = { enabled = "yes" }
"""
    )
    assert (error.key, error.problem) == ("routes[0].cache.enabled", "must be true or false")


def test_a_route_without_an_upstream_has_no_cache() -> None:
    error = _error(
        BASE
        + """
[[routes]]
path = "/"
respond = { status = 204 }
cache = { enabled = true }
"""
    )
    assert (error.key, error.problem) == (
        "routes[0].cache",
        "applies only to routes with an upstream",
    )
