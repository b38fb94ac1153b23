"""Parsing ``[[routes]]`` and ``[routing]``: what a request matches and where it goes."""

from __future__ import annotations

import re
from dataclasses import fields, replace

from sansproxy.config._cache import cache as parse_cache
from sansproxy.config._compression import compression as parse_compression
from sansproxy.config._header_edits import header_edits
from sansproxy.config._values import (
    _FIELD_VALUE,
    _TOKEN,
    _array,
    _bool,
    _check_keys,
    _host_value,
    _Invalid,
    _key,
    _positive_int,
    _positive_number,
    _size,
    _string,
    _table,
)
from sansproxy.config.model import (
    RETRY_CONDITIONS,
    CacheSettings,
    Compression,
    DirectResponse,
    Redirect,
    RetryPolicy,
    Route,
    RoutingSettings,
    Timeouts,
    Upstream,
)
from sansproxy.routing import RouteMatch, normalise_path

_ROUTE_KEYS = (
    "name",
    "host",
    "path",
    "path_prefix",
    "path_regex",
    "methods",
    "headers",
    "upstream",
    "redirect",
    "respond",
    "host_header",
    "strip_prefix",
    "add_prefix",
    "max_body_bytes",
    "timeouts",
    "retries",
    "compression",
    "cache",
    "request_headers",
    "response_headers",
)
_ROUTE_TIMEOUTS = ("client_body", "upstream_connect", "upstream_header", "upstream_body")
_REDIRECT_KEYS = ("location", "status")
_REDIRECT_STATUSES = (301, 302, 303, 307, 308)
_RESPOND_KEYS = ("status", "body", "content_type", "headers")
_RETRY_KEYS = ("tries", "on", "methods", "backoff_base", "backoff_max")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_PLACEHOLDERS = frozenset({"scheme", "host", "path", "query", "uri"})
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?"
_HOST_PATTERN = re.compile(rf"(\*\.)?{_LABEL}(?:\.{_LABEL})*|\[[0-9a-f:.]+\]")
_PATH_PREFIX = re.compile(r"/[\x21-\x7e]*")
_FRAMING = frozenset({"content-length", "transfer-encoding", "connection"})


def _routing(value: object) -> RoutingSettings:
    table = _table(value, "routing")
    _check_keys(table, "routing", [f.name for f in fields(RoutingSettings)])
    default = RoutingSettings()
    return RoutingSettings(
        merge_slashes=_bool(
            table.get("merge_slashes", default.merge_slashes), "routing.merge_slashes"
        )
    )


def _routes(
    value: object,
    upstreams: dict[str, Upstream],
    timeouts: Timeouts,
    compression: Compression,
    cache: CacheSettings,
) -> tuple[Route, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _Invalid("routes", "must be an array of tables ([[routes]])")
    routes: list[Route] = []
    for index, entry in enumerate(value):
        path = f"routes[{index}]"
        route = _route(
            _table(entry, path),
            path,
            index,
            upstreams,
            timeouts=timeouts,
            compression=compression,
            cache=cache,
        )
        for other_index, other in enumerate(routes):
            if other.name == route.name:
                raise _Invalid(f"{path}.name", f"duplicate of routes[{other_index}].name")
        routes.append(route)
    return tuple(routes)


def _route(
    table: dict[str, object],
    path: str,
    index: int,
    upstreams: dict[str, Upstream],
    *,
    timeouts: Timeouts,
    compression: Compression,
    cache: CacheSettings,
) -> Route:
    _check_keys(table, path, _ROUTE_KEYS)
    name = _string(table["name"], f"{path}.name") if "name" in table else f"route-{index}"
    match = _match(table, path)

    actions = [key for key in ("upstream", "redirect", "respond") if key in table]
    if len(actions) != 1:
        raise _Invalid(
            path,
            "needs exactly one of upstream, redirect and respond"
            + (f" (has {', '.join(actions)})" if actions else ""),
        )
    upstream = redirect = respond = None
    if "upstream" in table:
        upstream = _string(table["upstream"], f"{path}.upstream")
        if upstream not in upstreams:
            defined = ", ".join(repr(name) for name in upstreams) or "none"
            raise _Invalid(
                f"{path}.upstream", f"no upstream named {upstream!r} (defined: {defined})"
            )
    elif "redirect" in table:
        redirect = _redirect(table["redirect"], f"{path}.redirect")
    else:
        respond = _respond(table["respond"], f"{path}.respond")
    if upstream is None:
        for proxy_only in (
            "host_header",
            "strip_prefix",
            "add_prefix",
            "max_body_bytes",
            "timeouts",
            "retries",
            "compression",
            "cache",
            "request_headers",
            "response_headers",
        ):
            if proxy_only in table:
                raise _Invalid(f"{path}.{proxy_only}", "applies only to routes with an upstream")

    host_header = _host_value(table, "host_header", path)
    strip_prefix = _prefix(table, "strip_prefix", path)
    add_prefix = _prefix(table, "add_prefix", path)
    max_body_bytes = None
    if "max_body_bytes" in table:
        max_body_bytes = _size(table["max_body_bytes"], f"{path}.max_body_bytes", zero_allowed=True)
    route_timeouts = None
    if "timeouts" in table:
        timeouts_path = f"{path}.timeouts"
        overrides = _table(table["timeouts"], timeouts_path)
        _check_keys(overrides, timeouts_path, _ROUTE_TIMEOUTS)
        route_timeouts = replace(
            timeouts,
            **{
                key: _positive_number(item, f"{timeouts_path}.{key}")
                for key, item in overrides.items()
            },
        )
    retry = RetryPolicy()
    if "retries" in table:
        retry = _retry(table["retries"], f"{path}.retries")
    if "compression" in table:
        compression = parse_compression(table["compression"], f"{path}.compression", compression)
    if "cache" in table:
        cache = parse_cache(table["cache"], f"{path}.cache", cache)
    edits = {
        key: header_edits(table[key], f"{path}.{key}")
        for key in ("request_headers", "response_headers")
        if key in table
    }
    return Route(
        name=name,
        match=match,
        upstream=upstream,
        redirect=redirect,
        respond=respond,
        host_header=host_header,
        strip_prefix=strip_prefix,
        add_prefix=add_prefix,
        max_body_bytes=max_body_bytes,
        timeouts=route_timeouts,
        retry=retry,
        compression=compression,
        cache=cache,
        **edits,
    )


def _match(table: dict[str, object], path: str) -> RouteMatch:
    hosts: list[str] = []
    if "host" in table:
        raw = table["host"]
        items = raw if isinstance(raw, list) else [raw]
        for position, item in enumerate(items):
            item_path = f"{path}.host" + (f"[{position}]" if isinstance(raw, list) else "")
            host = _string(item, item_path).lower().removesuffix(".")
            if not _HOST_PATTERN.fullmatch(host):
                raise _Invalid(
                    item_path,
                    "must be a host name, a wildcard such as *.example.com, or an [IPv6] address",
                )
            hosts.append(host)
        if not hosts:
            raise _Invalid(f"{path}.host", "must not be empty")
    paths: dict[str, str] = {}
    for key in ("path", "path_prefix"):
        if key in table:
            value = _string(table[key], f"{path}.{key}")
            if not _PATH_PREFIX.fullmatch(value) or "?" in value or "#" in value:
                raise _Invalid(f"{path}.{key}", "must be a path starting with '/', without query")
            if normalise_path(value.encode(), merge_slashes=False) != value.encode():
                # Requests are matched once normalised: this spelling could never match.
                raise _Invalid(
                    f"{path}.{key}",
                    "must be a normalised path: no '.' or '..' segments, %HH only for "
                    "reserved characters and in upper case",
                )
            paths[key] = value
    if "path_regex" in table:
        pattern = _string(table["path_regex"], f"{path}.path_regex")
        try:
            re.compile(pattern)
        except re.error as error:
            raise _Invalid(f"{path}.path_regex", f"invalid regular expression: {error}") from None
        paths["path_regex"] = pattern
    if len(paths) > 1:
        raise _Invalid(
            path, f"takes at most one of path, path_prefix and path_regex, not {', '.join(paths)}"
        )
    methods: set[str] = set()
    if "methods" in table:
        for position, item in enumerate(_array(table["methods"], f"{path}.methods")):
            method = _string(item, f"{path}.methods[{position}]")
            if not _TOKEN.fullmatch(method):
                raise _Invalid(f"{path}.methods[{position}]", "must be a method name (a token)")
            methods.add(method.upper())
    headers: list[tuple[str, str]] = []
    if "headers" in table:
        headers_path = f"{path}.headers"
        for header, item in _table(table["headers"], headers_path).items():
            if not _TOKEN.fullmatch(header):
                raise _Invalid(_key(headers_path, header), "must be a header field name")
            value = _string(item, _key(headers_path, header))
            headers.append((header.lower(), value))
    try:
        return RouteMatch(
            hosts=tuple(hosts),
            methods=frozenset(methods),
            headers=tuple(headers),
            **paths,
        )
    except ValueError as error:
        raise _Invalid(path, str(error)) from None


def _check_merged_slashes(routes: tuple[Route, ...], routing: RoutingSettings) -> None:
    """With ``merge_slashes`` no request path holds ``//`` once normalised: such a route is dead."""
    if not routing.merge_slashes:
        return
    for index, route in enumerate(routes):
        for key in ("path", "path_prefix"):
            value = getattr(route.match, key)
            if value is not None and "//" in value:
                raise _Invalid(
                    f"routes[{index}].{key}",
                    "never matches while routing.merge_slashes is true (use a single '/')",
                )


def _prefix(table: dict[str, object], key: str, path: str) -> bytes | None:
    if key not in table:
        return None
    value = _string(table[key], f"{path}.{key}")
    if not _PATH_PREFIX.fullmatch(value) or "?" in value or "#" in value or value == "/":
        raise _Invalid(f"{path}.{key}", "must be a path such as /api, without query")
    if normalise_path(value.encode(), merge_slashes=False) != value.encode():
        # It applies to the normalised path: another spelling would never be stripped.
        raise _Invalid(
            f"{path}.{key}",
            "must be a normalised path: no '.' or '..' segments, %HH only for "
            "reserved characters and in upper case",
        )
    return value.rstrip("/").encode()


def _redirect(value: object, path: str) -> Redirect:
    table = _table(value, path)
    _check_keys(table, path, _REDIRECT_KEYS)
    if "location" not in table:
        raise _Invalid(f"{path}.location", 'required, such as "https://{host}{uri}"')
    location = _string(table["location"], f"{path}.location")
    for placeholder in _PLACEHOLDER.findall(location):
        if placeholder not in _PLACEHOLDERS:
            raise _Invalid(
                f"{path}.location",
                f"unknown placeholder {{{placeholder}}} (use {{scheme}}, {{host}}, {{path}}, "
                "{query} or {uri})",
            )
    if not _FIELD_VALUE.fullmatch(_PLACEHOLDER.sub("x", location)):
        raise _Invalid(f"{path}.location", "must be printable ASCII without spaces at the ends")
    status = table.get("status", 302)
    if status not in _REDIRECT_STATUSES or isinstance(status, bool):
        raise _Invalid(f"{path}.status", "must be one of 301, 302, 303, 307, 308")
    assert isinstance(status, int)
    return Redirect(location=location, status=status)


def _respond(value: object, path: str) -> DirectResponse:
    table = _table(value, path)
    _check_keys(table, path, _RESPOND_KEYS)
    status = table.get("status")
    if isinstance(status, bool) or not isinstance(status, int) or not 200 <= status <= 599:
        raise _Invalid(f"{path}.status", "required: a status from 200 to 599")
    if status in (204, 304) and table.get("body"):
        raise _Invalid(f"{path}.body", f"a {status} response has no body")
    body = b""
    if "body" in table:
        raw = table["body"]
        if not isinstance(raw, str):
            raise _Invalid(f"{path}.body", "must be a string")
        body = raw.encode()
    headers: list[tuple[bytes, bytes]] = []
    content_type = "text/plain; charset=utf-8"
    if "content_type" in table:
        content_type = _string(table["content_type"], f"{path}.content_type")
        if not _FIELD_VALUE.fullmatch(content_type):
            raise _Invalid(f"{path}.content_type", "must be a header value (printable ASCII)")
    if body:
        headers.append((b"content-type", content_type.encode()))
    if "headers" in table:
        headers_path = f"{path}.headers"
        for header, item in _table(table["headers"], headers_path).items():
            header_path = _key(headers_path, header)
            if not _TOKEN.fullmatch(header) or header.lower() in _FRAMING:
                raise _Invalid(
                    header_path,
                    "must be a header field name other than Content-Length, "
                    "Transfer-Encoding and Connection (the proxy frames the response)",
                )
            text = _string(item, header_path)
            if not _FIELD_VALUE.fullmatch(text):
                raise _Invalid(header_path, "must be a header value (printable ASCII)")
            headers.append((header.lower().encode(), text.encode()))
    return DirectResponse(status=status, body=body, headers=tuple(headers))


def _retry(value: object, path: str) -> RetryPolicy:
    table = _table(value, path)
    _check_keys(table, path, _RETRY_KEYS)
    default = RetryPolicy()
    tries = default.tries
    if "tries" in table:
        tries = _positive_int(table["tries"], f"{path}.tries")
        if tries > 10:
            raise _Invalid(f"{path}.tries", "must be at most 10")
    on: set[str] = set()
    if "on" in table:
        for position, item in enumerate(_array(table["on"], f"{path}.on")):
            condition = str(item) if isinstance(item, int) and not isinstance(item, bool) else item
            if condition not in RETRY_CONDITIONS:
                raise _Invalid(
                    f"{path}.on[{position}]", f"must be one of {', '.join(RETRY_CONDITIONS)}"
                )
            assert isinstance(condition, str)
            on.add(condition)
    methods = default.methods
    if "methods" in table:
        chosen: set[bytes] = set()
        for position, item in enumerate(_array(table["methods"], f"{path}.methods")):
            method = _string(item, f"{path}.methods[{position}]")
            if not _TOKEN.fullmatch(method):
                raise _Invalid(f"{path}.methods[{position}]", "must be a method name (a token)")
            chosen.add(method.upper().encode())
        methods = frozenset(chosen)
    numbers = {
        key: _positive_number(table[key], f"{path}.{key}")
        for key in ("backoff_base", "backoff_max")
        if key in table
    }
    policy = RetryPolicy(tries=tries, on=frozenset(on), methods=methods, **numbers)
    if policy.backoff_max < policy.backoff_base:
        raise _Invalid(f"{path}.backoff_max", "must not be less than backoff_base")
    return policy
