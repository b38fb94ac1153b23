"""Parsing ``[upstreams.<name>]``: servers, balancing, health checks and the retry budget."""

from __future__ import annotations

from dataclasses import fields, replace

from sansproxy.balancing import ALGORITHMS
from sansproxy.config._values import (
    _TOKEN,
    _UPSTREAM_NAME,
    _array,
    _bool,
    _check_keys,
    _choice,
    _host_value,
    _Invalid,
    _key,
    _parse_bare_host,
    _parse_server_url,
    _positive_int,
    _positive_number,
    _string,
    _table,
)
from sansproxy.config.model import RetryBudgetSettings, Server, Upstream
from sansproxy.health import ActiveCheck, OutlierDetection

_UPSTREAM_KEYS = (
    "servers",
    "host_header",
    "tls_verify",
    "ca_file",
    "server_name",
    "balance",
    "hash_on",
    "sticky_cookie",
    "slow_start",
    "queue_size",
    "queue_timeout",
    "when_all_down",
    "health_check",
    "outlier",
    "retry_budget",
)
_SERVER_KEYS = ("url", "weight", "backup", "max_connections")
_HEALTH_KEYS = (
    "method",
    "path",
    "host",
    "expect_status",
    "body_contains",
    "interval",
    "jitter",
    "timeout",
    "rise",
    "fall",
)
_OUTLIER_KEYS = (
    "consecutive_failures",
    "statuses",
    "base_ejection",
    "max_ejection",
    "max_ejected_percent",
)
_WHEN_ALL_DOWN = ("fail", "use_all")


def _upstreams(value: object, *, required: bool) -> dict[str, Upstream]:
    if value is None:
        if not required:
            return {}
        raise _Invalid("upstreams", "required: define at least one [upstreams.<name>] table")
    table = _table(value, "upstreams")
    if not table and required:
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
    servers = _servers(table, path)

    host_header = _host_value(table, "host_header", path)
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

    defaults = Upstream(name=name, servers=servers)
    balance = _choice(table.get("balance", defaults.balance), f"{path}.balance", ALGORITHMS)
    hash_on = None
    if "hash_on" in table:
        hash_on = _hash_on(table["hash_on"], f"{path}.hash_on")
        if balance != "ring_hash":
            raise _Invalid(f"{path}.hash_on", 'applies only to balance = "ring_hash"')
    elif balance == "ring_hash":
        raise _Invalid(
            f"{path}.hash_on",
            'required with balance = "ring_hash": "client_ip", "header:<name>" or "cookie:<name>"',
        )
    sticky_cookie = None
    if "sticky_cookie" in table:
        sticky_cookie = _string(table["sticky_cookie"], f"{path}.sticky_cookie")
        if not _TOKEN.fullmatch(sticky_cookie):
            raise _Invalid(f"{path}.sticky_cookie", "must be a cookie name (a token)")
    slow_start = 0.0
    if "slow_start" in table:
        slow_start = _positive_number(table["slow_start"], f"{path}.slow_start")
    queue_size = 0
    if "queue_size" in table:
        queue_size = _positive_int(table["queue_size"], f"{path}.queue_size")
    queue_timeout = defaults.queue_timeout
    if "queue_timeout" in table:
        queue_timeout = _positive_number(table["queue_timeout"], f"{path}.queue_timeout")
    if queue_size and not any(server.max_connections for server in servers):
        raise _Invalid(
            f"{path}.queue_size", "needs at least one server with max_connections to queue for"
        )
    when_all_down = _choice(
        table.get("when_all_down", defaults.when_all_down), f"{path}.when_all_down", _WHEN_ALL_DOWN
    )
    health_check = None
    if "health_check" in table:
        health_check = _health_check(table["health_check"], f"{path}.health_check")
    outlier = defaults.outlier
    if "outlier" in table:
        assert outlier is not None
        outlier = _outlier(table["outlier"], f"{path}.outlier", outlier)
    retry_budget = defaults.retry_budget
    if "retry_budget" in table:
        retry_budget = _retry_budget(table["retry_budget"], f"{path}.retry_budget")
    return Upstream(
        name=name,
        servers=servers,
        host_header=host_header,
        tls_verify=tls_verify,
        ca_file=ca_file,
        server_name=server_name,
        balance=balance,
        hash_on=hash_on,
        sticky_cookie=sticky_cookie,
        slow_start=slow_start,
        queue_size=queue_size,
        queue_timeout=queue_timeout,
        when_all_down=when_all_down,
        health_check=health_check,
        outlier=outlier,
        retry_budget=retry_budget,
    )


def _servers(table: dict[str, object], path: str) -> tuple[Server, ...]:
    servers_path = f"{path}.servers"
    if "servers" not in table:
        raise _Invalid(servers_path, "required")
    items = _array(table["servers"], servers_path)
    if not items:
        raise _Invalid(servers_path, "must not be empty")
    servers: list[Server] = []
    for index, item in enumerate(items):
        item_path = f"{servers_path}[{index}]"
        server = _server_entry(item, item_path)
        if server in servers:
            raise _Invalid(item_path, f"duplicate of {servers_path}[{servers.index(server)}]")
        servers.append(server)
    if all(server.backup for server in servers):
        raise _Invalid(servers_path, "needs at least one server that is not a backup")
    return tuple(servers)


def _server_entry(item: object, path: str) -> Server:
    """A server as ``"http://host:port"`` or ``{ url = ..., weight = ..., ... }``."""
    if isinstance(item, dict):
        _check_keys(item, path, _SERVER_KEYS)
        if "url" not in item:
            raise _Invalid(f"{path}.url", "required")
        url_path = f"{path}.url"
        url = item["url"]
    else:
        url_path = path
        url = item
    try:
        server = _parse_server_url(_string(url, url_path))
    except ValueError as error:
        raise _Invalid(url_path, str(error)) from None
    if not isinstance(item, dict):
        return server
    weight = 1
    if "weight" in item:
        weight = _positive_int(item["weight"], f"{path}.weight")
        if weight > 1000:
            raise _Invalid(f"{path}.weight", "must be at most 1000")
    max_connections = 0
    if "max_connections" in item:
        max_connections = _positive_int(item["max_connections"], f"{path}.max_connections")
    return Server(
        host=server.host,
        port=server.port,
        tls=server.tls,
        weight=weight,
        backup=_bool(item.get("backup", False), f"{path}.backup"),
        max_connections=max_connections,
    )


def _hash_on(value: object, path: str) -> str:
    text = _string(value, path)
    if text == "client_ip":
        return text
    kind, separator, name = text.partition(":")
    if separator and kind in ("header", "cookie") and _TOKEN.fullmatch(name):
        return f"{kind}:{name.lower() if kind == 'header' else name}"
    raise _Invalid(path, 'must be "client_ip", "header:<name>" or "cookie:<name>"')


def _health_check(value: object, path: str) -> ActiveCheck:
    table = _table(value, path)
    _check_keys(table, path, _HEALTH_KEYS)
    default = ActiveCheck()
    method = default.method
    if "method" in table:
        method = _string(table["method"], f"{path}.method")
        if not _TOKEN.fullmatch(method) or method.upper() in ("CONNECT", "POST", "PATCH"):
            raise _Invalid(f"{path}.method", "must be a safe method such as GET or HEAD")
        method = method.upper()
    probe_path = default.path
    if "path" in table:
        probe_path = _string(table["path"], f"{path}.path")
        if not probe_path.startswith("/") or any(c in probe_path for c in " \t\r\n#"):
            raise _Invalid(f"{path}.path", "must be an origin-form path such as /health")
    host = _host_value(table, "host", path)
    expect_status = default.expect_status
    if "expect_status" in table:
        expect_status = _status_range(table["expect_status"], f"{path}.expect_status")
    body_contains = None
    if "body_contains" in table:
        body_contains = _string(table["body_contains"], f"{path}.body_contains").encode()
    interval = default.interval
    if "interval" in table:
        interval = _positive_number(table["interval"], f"{path}.interval")
    timeout = default.timeout
    if "timeout" in table:
        timeout = _positive_number(table["timeout"], f"{path}.timeout")
    rise = _positive_int(table["rise"], f"{path}.rise") if "rise" in table else default.rise
    fall = _positive_int(table["fall"], f"{path}.fall") if "fall" in table else default.fall
    jitter = default.jitter
    if "jitter" in table:
        raw = table["jitter"]
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0 <= raw < 1:
            raise _Invalid(f"{path}.jitter", "must be a fraction of the interval, from 0 to 0.99")
        jitter = float(raw)
    check = ActiveCheck(
        method=method,
        path=probe_path,
        host=host,
        expect_status=expect_status,
        body_contains=body_contains,
        interval=interval,
        jitter=jitter,
        timeout=timeout,
        rise=rise,
        fall=fall,
    )
    if check.timeout >= check.interval:
        raise _Invalid(f"{path}.timeout", f"must be shorter than the interval ({check.interval} s)")
    return check


def _status_range(value: object, path: str) -> tuple[int, int]:
    """``200``, ``"200-399"`` or ``[200, 399]`` as an inclusive range."""
    problem = 'must be a status (200), a range ("200-399") or [low, high] within 100-599'
    low: object
    high: object
    if isinstance(value, int) and not isinstance(value, bool):
        low = high = value
    elif isinstance(value, str):
        low_text, _, high_text = value.partition("-")
        if not (low_text.strip().isdigit() and (high_text or low_text).strip().isdigit()):
            raise _Invalid(path, problem)
        low, high = int(low_text), int(high_text or low_text)
    elif isinstance(value, list) and len(value) == 2:
        low, high = value
    else:
        raise _Invalid(path, problem)
    if not (
        isinstance(low, int)
        and isinstance(high, int)
        and not isinstance(low, bool)
        and not isinstance(high, bool)
        and 100 <= low <= high <= 599
    ):
        raise _Invalid(path, problem)
    return low, high


def _outlier(value: object, path: str, default: OutlierDetection) -> OutlierDetection | None:
    if value is False:
        return None
    table = _table(value, path)
    _check_keys(table, path, _OUTLIER_KEYS)
    values: dict[str, object] = {}
    if "consecutive_failures" in table:
        values["consecutive_failures"] = _positive_int(
            table["consecutive_failures"], f"{path}.consecutive_failures"
        )
    for name in ("base_ejection", "max_ejection"):
        if name in table:
            values[name] = _positive_number(table[name], f"{path}.{name}")
    if "statuses" in table:
        statuses: set[int] = set()
        for index, item in enumerate(_array(table["statuses"], f"{path}.statuses")):
            if isinstance(item, bool) or not isinstance(item, int) or not 500 <= item <= 599:
                raise _Invalid(f"{path}.statuses[{index}]", "must be a 5xx status")
            statuses.add(item)
        values["statuses"] = frozenset(statuses)
    if "max_ejected_percent" in table:
        raw = table["max_ejected_percent"]
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0 < raw <= 100:
            raise _Invalid(f"{path}.max_ejected_percent", "must be a percentage from 1 to 100")
        values["max_ejected_fraction"] = raw / 100
    outlier = replace(default, **values)  # type: ignore[arg-type]
    if outlier.max_ejection < outlier.base_ejection:
        raise _Invalid(
            f"{path}.max_ejection",
            f"must not be less than base_ejection ({outlier.base_ejection} s)",
        )
    return outlier


def _retry_budget(value: object, path: str) -> RetryBudgetSettings:
    table = _table(value, path)
    _check_keys(table, path, [f.name for f in fields(RetryBudgetSettings)])
    default = RetryBudgetSettings()
    ratio = default.ratio
    if "ratio" in table:
        raw = table["ratio"]
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not 0 <= raw <= 1:
            raise _Invalid(f"{path}.ratio", "must be a fraction from 0 to 1")
        ratio = float(raw)
    window = default.window
    if "window" in table:
        window = _positive_number(table["window"], f"{path}.window")
    min_retries = default.min_retries
    if "min_retries" in table:
        raw = table["min_retries"]
        if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
            raise _Invalid(f"{path}.min_retries", "must be a whole number, 0 or more")
        min_retries = raw
    return RetryBudgetSettings(ratio=ratio, window=window, min_retries=min_retries)
