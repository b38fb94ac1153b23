"""Parsing ``[cache]`` and a route's ``[routes.cache]`` overrides."""

from __future__ import annotations

import re
from dataclasses import replace

from sansproxy.config._values import (
    _array,
    _bool,
    _check_keys,
    _choice,
    _Invalid,
    _key,
    _parse_network,
    _positive_number,
    _size,
    _string,
    _table,
)
from sansproxy.config.model import CacheSettings

_KEYS = (
    "enabled",
    "max_size",
    "max_object_size",
    "key_headers",
    "key_cookies",
    "default_ttl",
    "heuristic_max_age",
    "honour_request_no_cache",
    "set_cookie",
    "targeted_fields",
    "status_header",
    "coalesce",
    "coalesce_timeout",
    "purge_method",
    "purge_from",
)
_DURATION = re.compile(r"(\d+)\s*(s|m|h|d)?", re.IGNORECASE)
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_COOKIE_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_FRAMING = frozenset(("content-length", "transfer-encoding", "connection", "host", "te"))


def cache(value: object, path: str, base: CacheSettings | None = None) -> CacheSettings:
    """``base`` with the keys of the table at ``path`` applied."""
    table = _table(value, path)
    _check_keys(table, path, _KEYS)
    result = CacheSettings() if base is None else base
    changes: dict[str, object] = {}
    for name in ("enabled", "honour_request_no_cache", "status_header"):
        if name in table:
            changes[name] = _bool(table[name], _key(path, name))
    if "set_cookie" in table:
        changes["set_cookie"] = _choice(
            table["set_cookie"], _key(path, "set_cookie"), ("store", "strip", "refuse")
        )
    if "coalesce" in table:
        changes["coalesce"] = _bool(table["coalesce"], _key(path, "coalesce"))
    for name in ("max_size", "max_object_size"):
        if name in table:
            changes[name] = _size(table[name], _key(path, name), zero_allowed=False)
    if "key_headers" in table:
        changes["key_headers"] = _names(table["key_headers"], _key(path, "key_headers"))
    if "targeted_fields" in table:
        changes["targeted_fields"] = _names(table["targeted_fields"], _key(path, "targeted_fields"))
    if "key_cookies" in table:
        changes["key_cookies"] = _cookies(table["key_cookies"], _key(path, "key_cookies"))
    if "default_ttl" in table:
        changes["default_ttl"] = _default_ttl(table["default_ttl"], _key(path, "default_ttl"))
    if "heuristic_max_age" in table:
        changes["heuristic_max_age"] = duration(
            table["heuristic_max_age"], _key(path, "heuristic_max_age")
        )
    if "coalesce_timeout" in table:
        changes["coalesce_timeout"] = _positive_number(
            table["coalesce_timeout"], _key(path, "coalesce_timeout")
        )
    if "purge_method" in table:
        method = _string(table["purge_method"], _key(path, "purge_method"))
        if not _TOKEN.fullmatch(method) or method.upper() in ("GET", "HEAD", "POST", "OPTIONS"):
            raise _Invalid(
                _key(path, "purge_method"),
                f"{method!r} is not a method name of its own (such as 'PURGE')",
            )
        changes["purge_method"] = method.encode()
    if "purge_from" in table:
        networks = _array(table["purge_from"], _key(path, "purge_from"))
        changes["purge_from"] = tuple(
            _parse_network(_string(item, f"{path}.purge_from[{i}]"), f"{path}.purge_from[{i}]")
            for i, item in enumerate(networks)
        )
    result = replace(result, **changes)  # type: ignore[arg-type]
    if result.max_object_size > result.max_size:
        raise _Invalid(
            _key(path, "max_object_size"),
            f"is larger than max_size ({result.max_object_size} > {result.max_size} bytes)",
        )
    return result


def duration(value: object, path: str) -> int:
    """Whole seconds from an integer or a string such as ``"90s"``, ``"10m"`` or ``"7d"``."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        match = _DURATION.fullmatch(value.strip())
        if match is not None:
            return int(match.group(1)) * _UNITS[(match.group(2) or "").lower()]
    raise _Invalid(path, 'must be whole seconds or a duration such as "90s", "10m", "1h" or "7d"')


def _names(value: object, path: str) -> tuple[bytes, ...]:
    names: list[bytes] = []
    for index, item in enumerate(_array(value, path)):
        name = _string(item, f"{path}[{index}]").lower()
        if not _TOKEN.fullmatch(name):
            raise _Invalid(f"{path}[{index}]", f"{name!r} is not a header field name")
        if name in _FRAMING:
            raise _Invalid(f"{path}[{index}]", f"{name!r} is not a field a key can depend on")
        names.append(name.encode())
    return tuple(dict.fromkeys(names))


def _cookies(value: object, path: str) -> tuple[bytes, ...]:
    names: list[bytes] = []
    for index, item in enumerate(_array(value, path)):
        name = _string(item, f"{path}[{index}]")
        if not _COOKIE_NAME.fullmatch(name):
            raise _Invalid(f"{path}[{index}]", f"{name!r} is not a cookie name")
        names.append(name.encode())
    return tuple(dict.fromkeys(names))


def _default_ttl(value: object, path: str) -> tuple[tuple[int, int], ...]:
    table = _table(value, path)
    lifetimes: dict[int, int] = {}
    for status_text, item in table.items():
        item_path = _key(path, status_text)
        if not (status_text.isdigit() and len(status_text) == 3 and 200 <= int(status_text) <= 599):
            raise _Invalid(item_path, 'must be a status code from 200 to 599, such as "200"')
        status = int(status_text)
        if status in (206, 304):
            raise _Invalid(item_path, f"{status} responses are never stored whole")
        lifetimes[status] = duration(item, item_path)
    return tuple(sorted(lifetimes.items()))
