"""Value parsers shared by the table parsers: key paths, scalars, sizes and addresses.

Each check raises :class:`_Invalid` (key path, problem); the parsers that the command
line shares (addresses, server URLs, sizes) raise ValueError(problem) instead, and their
callers attach the key.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import math
import re
from collections.abc import Collection, Sequence

from sansproxy.config.model import Server

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
_ACCESS_LOG_FORMATS = ("combined", "extended", "json")
_ALWAYS_HIDDEN = ("server", "x-powered-by")


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


def _non_negative_int(value: object, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _Invalid(path, "must be a non-negative integer")
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


def _host_value(table: dict[str, object], key: str, path: str) -> str | None:
    """An optional ``Host`` value (``host`` or ``host:port``) at ``path.key``."""
    if key not in table:
        return None
    value = _string(table[key], f"{path}.{key}")
    try:
        _parse_authority(value, port_required=False)
    except ValueError as error:
        raise _Invalid(f"{path}.{key}", f"invalid Host value: {error}") from None
    return value


def _choice(value: object, path: str, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value.lower() not in choices:
        raise _Invalid(path, f"must be one of {', '.join(choices)}")
    return value.lower()


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
