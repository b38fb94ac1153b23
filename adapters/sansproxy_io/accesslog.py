r"""Access-log lines from the core's :class:`~sansproxy.commands.AccessRecord`.

Three formats, chosen by ``[logging] access_log_format`` (or ``--access-log-format``):

``combined`` (the default)
    Exactly the Apache/nginx combined format, so that every log tool that reads
    nginx's default ``access_log`` reads this one::

        127.0.0.1 - - [05/Mar/2025:14:02:07 +0100] "GET /a?b=1 HTTP/1.1" 200 12 "-" "curl/8.5.0"

    The fields are nginx's ``$remote_addr - $remote_user [$time_local] "$request"
    $status $body_bytes_sent "$http_referer" "$http_user_agent"``. ``$remote_user`` is
    always ``-`` (the proxy authenticates no one); the byte count is response body bytes
    as sent to the client, ``0`` when there were none (as nginx writes it; Apache's
    ``%b`` would write ``-``).

``extended``
    The combined line followed by three nginx-style ``key=value`` fields for the proxying
    side (what ``combined`` wrote before it became exact)::

        127.0.0.1 - - [05/Mar/2025:14:02:07 +0100] "GET /a?b=1 HTTP/1.1" 200 12 "-" \
        "curl/8.5.0" upstream=127.0.0.1:9000 rt=0.004 uht=0.003

    (one line; broken here only for width).

    - ``upstream`` is the backend that answered (nginx ``$upstream_addr``),
      ``-`` when none did (for example a 502 or a locally made error);
    - ``rt`` is the whole exchange in seconds, millisecond precision
      (nginx ``$request_time``);
    - ``uht`` is from sending the request head upstream to the backend's first
      response byte (nginx ``$upstream_header_time``), ``-`` without a backend.

``json``
    One JSON object per line, with the fields of :data:`JSON_FIELDS` in that order:
    ``time`` (ISO 8601 with milliseconds and the local UTC offset) and then every field
    of the record under its own name (``client`` is ``[host, port]``; ``upstream`` and
    ``upstream_ttfb`` are ``null`` without a backend). ``docs/configuration.md`` lists
    what each means.

In ``combined`` and ``extended``, quoted fields escape ``"``, ``\`` and bytes outside
printable ASCII as ``\xHH``, as nginx does, so a client cannot forge log lines.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
from datetime import datetime, tzinfo
from typing import Final

from sansproxy.commands import AccessRecord

__all__ = [
    "ACCESS_LOG_FORMATS",
    "JSON_FIELDS",
    "format_combined",
    "format_extended",
    "format_json",
    "format_record",
]

ACCESS_LOG_FORMATS: Final = ("combined", "extended", "json")

JSON_FIELDS: Final = ("time", *(field.name for field in dataclasses.fields(AccessRecord)))
"""The keys of a ``json`` line, in order."""

_UNSAFE: Final = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")
"""A character that a quoted field must escape: anything but printable ASCII, ``"`` or ``\\``."""


def format_record(record: AccessRecord, when: datetime, log_format: str) -> str:
    """Format ``record`` as one line (no newline) in ``log_format``.

    Args:
        record: What the core reported about one finished exchange.
        when: The wall-clock time to print, timezone-aware.
        log_format: ``"combined"``, ``"extended"`` or ``"json"``.

    Raises:
        ValueError: ``log_format`` is not one of :data:`ACCESS_LOG_FORMATS`.
    """
    if log_format == "combined":
        return format_combined(record, when)
    if log_format == "extended":
        return format_extended(record, when)
    if log_format == "json":
        return format_json(record, when)
    raise ValueError(f"unknown access log format {log_format!r}")


def format_combined(record: AccessRecord, when: datetime) -> str:
    """The Apache/nginx combined format, nothing more (see the module docs)."""
    version = record.http_version
    if not version.startswith("HTTP/"):
        version = f"HTTP/{version}"
    request = _escape(f"{record.method} {record.target} {version}")
    timestamp = _timestamp(when)
    return (
        f'{record.client[0]} - - [{timestamp}] "{request}" {record.status} '
        f'{record.response_bytes} "{_quoted(record.referer)}" "{_quoted(record.user_agent)}"'
    )


def format_extended(record: AccessRecord, when: datetime) -> str:
    """The combined format plus the proxying fields (see the module docs).

    ``upstream=``, ``rt=`` and ``uht=``, and ``cache=`` where the route caches.
    """
    upstream = _escape(record.upstream) if record.upstream else "-"
    ttfb = "-" if record.upstream_ttfb is None else f"{record.upstream_ttfb:.3f}"
    line = (
        f"{format_combined(record, when)} upstream={upstream} rt={record.duration:.3f} uht={ttfb}"
    )
    return line if record.cache is None else f"{line} cache={record.cache}"


def format_json(record: AccessRecord, when: datetime) -> str:
    """One JSON object: ``time`` (ISO 8601) followed by every record field."""
    fields = {"time": when.isoformat(timespec="milliseconds"), **dataclasses.asdict(record)}
    return json.dumps(fields, ensure_ascii=True, separators=(",", ":"))


def _timestamp(when: datetime) -> str:
    # A busy server writes many lines a second: format each second once.
    second = (when.year, when.month, when.day, when.hour, when.minute, when.second)
    return _format_second(second, when.fold, when.tzinfo)


@functools.lru_cache(maxsize=4)
def _format_second(second: tuple[int, ...], fold: int, zone: tzinfo | None) -> str:
    year, month, day, hour, minute, sec = second
    moment = datetime(year, month, day, hour, minute, sec, fold=fold, tzinfo=zone)
    return moment.strftime("%d/%b/%Y:%H:%M:%S %z")


def _quoted(value: str) -> str:
    return _escape(value) if value else "-"


def _escape(value: str) -> str:
    if _UNSAFE.search(value) is None:
        return value
    out: list[str] = []
    for char in value:
        code = ord(char)
        if char in '"\\' or code < 0x20 or code > 0x7E:
            out.extend(f"\\x{byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))
        else:
            out.append(char)
    return "".join(out)
