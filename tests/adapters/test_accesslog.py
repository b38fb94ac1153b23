"""The access-log formatter's shortcuts change nothing it writes, and cost nothing when off."""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sansproxy.commands import AccessLog, AccessRecord
from sansproxy.config import parse_config
from sansproxy.events import ConnId, Event
from sansproxy_io import runner as runner_module
from sansproxy_io.accesslog import (
    ACCESS_LOG_FORMATS,
    JSON_FIELDS,
    format_combined,
    format_record,
)
from sansproxy_io.runner import ACCESS_LOGGER, Runner

WHEN = datetime(2025, 3, 5, 14, 2, 7, tzinfo=timezone(timedelta(hours=1)))


def _record(**fields: object) -> AccessRecord:
    base: dict[str, object] = {
        "client": ("127.0.0.1", 1),
        "method": "GET",
        "target": "/",
        "http_version": "1.1",
        "status": 200,
        "request_bytes": 0,
        "response_bytes": 5,
        "upstream": "127.0.0.1:9000",
        "duration": 0.25,
        "upstream_ttfb": 0.125,
    }
    base.update(fields)
    return AccessRecord(**base)  # type: ignore[arg-type]


def _escaped_char_by_char(value: str) -> str:
    """The escaping as specified (nginx style), one character at a time."""
    out: list[str] = []
    for char in value:
        if char in '"\\' or not 0x20 <= ord(char) <= 0x7E:
            out.extend(f"\\x{byte:02X}" for byte in char.encode("utf-8", "surrogatepass"))
        else:
            out.append(char)
    return "".join(out)


@given(
    target=st.text(max_size=30),
    referer=st.text(max_size=10),
    agent=st.one_of(st.just(""), st.text(alphabet=st.characters(max_codepoint=0xFF), max_size=10)),
)
def test_quoted_fields_are_escaped_exactly_as_specified(
    target: str, referer: str, agent: str
) -> None:
    line = format_combined(_record(target=target, referer=referer, user_agent=agent), WHEN)
    request = _escaped_char_by_char(f"GET {target} HTTP/1.1")
    assert f'"{request}" 200 5 ' in line
    assert f'"{_escaped_char_by_char(referer) or "-"}" "{_escaped_char_by_char(agent) or "-"}"' in (
        line
    )


def test_every_line_gets_its_own_second_and_zone() -> None:
    record = _record()
    stamps = [
        format_combined(record, when).split("[", 1)[1].split("]", 1)[0]
        for when in (
            WHEN,
            WHEN + timedelta(microseconds=999_999),
            WHEN + timedelta(seconds=1),
            WHEN.astimezone(UTC),
            WHEN,
        )
    ]
    assert stamps == [
        "05/Mar/2025:14:02:07 +0100",
        "05/Mar/2025:14:02:07 +0100",
        "05/Mar/2025:14:02:08 +0100",
        "05/Mar/2025:13:02:07 +0000",
        "05/Mar/2025:14:02:07 +0100",
    ]


def test_the_repeated_hour_of_a_dst_change_keeps_its_offset() -> None:
    zone = ZoneInfo("Europe/Paris")
    first = datetime(2025, 10, 26, 2, 30, 0, tzinfo=zone, fold=0)
    second = datetime(2025, 10, 26, 2, 30, 0, tzinfo=zone, fold=1)
    assert "26/Oct/2025:02:30:00 +0200" in format_combined(_record(), first)
    assert "26/Oct/2025:02:30:00 +0100" in format_combined(_record(), second)


class _Core:
    def __init__(self, record: AccessRecord) -> None:
        self.record = record

    def allocate_id(self) -> ConnId:
        return ConnId(1)

    def handle(self, event: Event, now: float, *, wall: float | None = None) -> list[AccessLog]:
        return [AccessLog(record=self.record)]

    def handle_timeout(self, now: float, *, wall: float | None = None) -> list[AccessLog]:
        return [AccessLog(record=self.record)]

    def next_deadline(self) -> float | None:
        return None


class _Backend:
    def open_upstream(self, command: object) -> object:
        raise AssertionError("no upstream here")

    def arm_timer(self, deadline: float | None) -> None:
        pass

    def shutdown_complete(self) -> None:
        pass


def test_access_lines_are_records_of_the_access_logger(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runner = Runner(
        _Core(_record(target="/50%")),  # type: ignore[arg-type]
        lambda: 0.0,
        _Backend(),  # type: ignore[arg-type]
        wall_clock=WHEN.timestamp,
    )
    with caplog.at_level(logging.INFO, logger=ACCESS_LOGGER):
        runner.on_timer()
    (record,) = caplog.records
    assert (record.name, record.levelno) == (ACCESS_LOGGER, logging.INFO)
    # The wall seconds are shown in the local time zone.
    assert record.getMessage() == format_combined(_record(target="/50%"), WHEN.astimezone())


def test_a_silenced_access_logger_costs_no_formatting(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_formatting(*args: object) -> str:
        raise AssertionError("a line nobody logs was formatted")

    monkeypatch.setattr(runner_module, "format_record", no_formatting)
    runner = Runner(_Core(_record()), lambda: 0.0, _Backend(), wall_clock=WHEN.timestamp)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger=ACCESS_LOGGER):
        runner.on_timer()
    assert caplog.records == []


# -- the formats, exactly -------------------------------------------------------------------

COMBINED = re.compile(
    r"(?P<addr>\S+) - - \[(?P<time>\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4})\] "
    r'"(?P<request>[^"]*)" (?P<status>\d{3}) (?P<bytes>\d+) "(?P<referer>[^"]*)" '
    r'"(?P<agent>[^"]*)"'
)
"""nginx's ``log_format combined``, as log parsers (goaccess, awstats) read it: nothing after."""


def test_combined_is_exactly_the_combined_format() -> None:
    line = format_combined(_record(referer="http://r/", user_agent="curl/8.5.0"), WHEN)
    assert line == (
        '127.0.0.1 - - [05/Mar/2025:14:02:07 +0100] "GET / HTTP/1.1" 200 5 "http://r/" "curl/8.5.0"'
    )
    assert COMBINED.fullmatch(line)
    empty = format_combined(_record(response_bytes=0, upstream=None, upstream_ttfb=None), WHEN)
    assert COMBINED.fullmatch(empty)
    assert empty.endswith('" 200 0 "-" "-"')  # nginx writes 0 bytes as 0


def test_extended_is_combined_plus_the_proxying_fields() -> None:
    record = _record()
    line = format_record(record, WHEN, "extended")
    assert line == f"{format_combined(record, WHEN)} upstream=127.0.0.1:9000 rt=0.250 uht=0.125"
    cached = format_record(_record(cache="hit"), WHEN, "extended")
    assert cached == f"{line} cache=hit"  # only on routes that cache


def test_json_keys_are_the_documented_ones_in_order() -> None:
    line = format_record(_record(), WHEN, "json")
    assert tuple(json.loads(line)) == JSON_FIELDS
    docs = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()
    section = docs.split("### Access log formats", 1)[1].split("\n## ", 1)[0]
    json_table = section.split("**`json`**", 1)[1]
    documented = tuple(re.findall(r"^\| `(\w+)` \|", json_table, re.M))
    assert documented == JSON_FIELDS


def test_every_format_is_accepted_by_the_config_and_the_command_line() -> None:
    assert set(ACCESS_LOG_FORMATS) == {"combined", "extended", "json"}
    for name in ACCESS_LOG_FORMATS:
        text = '[[listeners]]\naddress = "127.0.0.1:0"\n[upstreams.a]\nservers = ["http://a"]\n'
        text += f'[logging]\naccess_log_format = "{name}"\n'
        assert parse_config(text).logging.access_log_format == name
    with pytest.raises(ValueError, match="unknown access log format"):
        format_record(_record(), WHEN, "common")
