"""The recording format and the replayer, without sockets.

A scripted session is driven through the shared :class:`Runner` with fake transports and a
fake clock, recorded into memory and replayed; then the recording is damaged in the ways a
real file can be (cut off, corrupted, altered, from another version) and each case must be
reported as the format documents.
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import json
import logging
import random
import re
from pathlib import Path
from typing import Any, get_args

import pytest

from sansproxy import Proxy, parse_config, quick_config
from sansproxy.commands import (
    AccessLog,
    AccessRecord,
    Close,
    Command,
    Log,
    OpenUpstream,
    PauseReading,
    ResumeReading,
    Send,
    ShutdownComplete,
    ShutdownWrite,
    UpstreamTls,
)
from sansproxy.errors import UsageError
from sansproxy.events import (
    ConfigReloaded,
    ConnectionAccepted,
    ConnectionLost,
    ConnId,
    DataReceived,
    EofReceived,
    Event,
    ShutdownRequested,
    TlsHandshakeFailed,
    TlsInfo,
    UpstreamConnected,
    UpstreamFailed,
    Written,
)
from sansproxy_io import record as record_module
from sansproxy_io.record import (
    FORMAT_VERSION,
    Recorder,
    RecordingError,
    RecordTarget,
    config_entry,
    config_from_entry,
    decode_event,
    encode_command,
    encode_event,
    open_recorder,
    quick_config_toml,
    replay,
    replay_lines,
    replay_main,
    worker_record_path,
)
from sansproxy_io.runner import Runner

LISTEN = ["127.0.0.1:8080"]
UPSTREAMS = ["http://127.0.0.1:9000", "http://127.0.0.1:9001"]
TEXT = quick_config_toml(LISTEN, UPSTREAMS)
CONFIG = quick_config(LISTEN, UPSTREAMS)
CLIENT_PEER = ("192.0.2.7", 50000)
LOCAL = ("127.0.0.1", 8080)


# -- a runner with fake I/O ---------------------------------------------------------------


class FakeTransport:
    def __init__(self) -> None:
        self.sent = bytearray()
        self.everything = bytearray()
        self.closed: bool | None = None

    def send(self, data: bytes) -> None:
        self.sent += data
        self.everything += data

    def close(self, *, abort: bool) -> None:
        self.closed = abort

    def shutdown_write(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class FakeBackend:
    def __init__(self) -> None:
        self.opened: list[tuple[OpenUpstream, FakeTransport]] = []
        self.deadline: float | None = None
        self.done = False

    def open_upstream(self, command: OpenUpstream) -> FakeTransport:
        transport = FakeTransport()
        self.opened.append((command, transport))
        return transport

    def arm_timer(self, deadline: float | None) -> None:
        self.deadline = deadline

    def shutdown_complete(self) -> None:
        self.done = True


class Clock:
    """The monotonic clock (call it) and the wall clock (:meth:`wall_clock`), both fake."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.wall = 1_741_183_327.0
        self.walls_read: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, dt: float) -> None:
        self.now += dt
        self.wall += dt

    def wall_clock(self) -> float:
        self.walls_read.append(self.wall)
        return self.wall


def record_session(
    stream: io.StringIO | None = None,
    *,
    seed: int = 7,
    clock: Clock | None = None,
    core_type: type[Proxy] = Proxy,
) -> tuple[str, Recorder, FakeBackend]:
    """Record a session: two keep-alive requests, an upload, a dead backend, a timeout."""
    stream = io.StringIO() if stream is None else stream
    recorder = Recorder(
        stream, config=CONFIG, config_text=TEXT, config_source="command line", seed=seed
    )
    clock = Clock() if clock is None else clock
    backend = FakeBackend()
    runner = Runner(
        core_type(CONFIG, rng=random.Random(seed)),
        clock,
        backend,
        access_log_format=None,
        wall_clock=clock.wall_clock,
        recorder=recorder,
    )
    client_transport = FakeTransport()
    client = runner.accept(client_transport, listener=0, peer=CLIENT_PEER, local=LOCAL)

    def step(event: Event, dt: float = 0.01) -> None:
        clock.advance(dt)
        runner.dispatch(event)

    def flush_writes() -> None:
        # Report every queued byte as written, as an adapter does.
        for _command, transport in backend.opened:
            if transport.sent:
                step(Written(conn=_command.conn, nbytes=len(transport.sent)))
                transport.sent.clear()
        if client_transport.sent:
            step(Written(conn=client, nbytes=len(client_transport.sent)))
            client_transport.sent.clear()

    # 1. A GET to the first server; the response comes back; the connection is kept.
    step(DataReceived(conn=client, data=b"GET /a HTTP/1.1\r\nHost: example\r\n\r\n"))
    first, _ = backend.opened[-1]
    step(UpstreamConnected(conn=first.conn))
    flush_writes()
    step(DataReceived(conn=first.conn, data=b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"))
    flush_writes()
    clock.wall -= 3600.0  # the system clock is set back an hour: only the wall clock jumps
    # 2. An upload on the same client connection goes to the second server, which fails.
    body = bytes(range(256)) * 8
    head = b"POST /up HTTP/1.1\r\nHost: example\r\ncontent-length: %d\r\n\r\n" % len(body)
    step(DataReceived(conn=client, data=head + body[:1000]))
    second, _ = backend.opened[-1]
    step(UpstreamFailed(conn=second.conn, reason="connection refused"))
    # The request is retried on the first server's pooled connection.
    [upstream] = [command.conn for command, t in backend.opened if b"POST /up" in t.everything]
    assert upstream == first.conn
    step(DataReceived(conn=client, data=body[1000:]))
    flush_writes()
    step(DataReceived(conn=upstream, data=b"HTTP/1.1 201 Created\r\ncontent-length: 0\r\n\r\n"))
    flush_writes()
    assert b"HTTP/1.1 201 Created" in client_transport.everything
    # 3. The client goes quiet; the keep-alive timer closes it.
    for _ in range(5):
        if backend.deadline is None or not runner.is_open(client):
            break
        clock.advance(backend.deadline + 0.001 - clock.now)
        runner.on_timer()
    assert not runner.is_open(client)
    # 4. Shut down.
    step(ShutdownRequested())
    recorder.close()
    return stream.getvalue(), recorder, backend


@pytest.fixture(scope="module")
def recording() -> str:
    return record_session()[0]


def lines_of(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def records(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def first_turn(text: str, predicate: Any) -> int:
    """The turn number (line index, the header being line 0) of the first matching record."""
    for index, record in enumerate(records(text)):
        if index and predicate(record):
            return index
    raise AssertionError("no such turn")


# -- the session replays -------------------------------------------------------------------


def test_a_recorded_session_replays_identically(recording: str) -> None:
    result = replay_lines(lines_of(recording))
    assert result.identical
    assert result.first_difference is None
    assert not result.truncated
    assert result.complete
    steps = records(recording)[1:-1]
    assert result.turns == len(steps)
    assert result.report().splitlines()[0] == f"replayed {len(steps)} turns: identical"


def test_the_recording_holds_every_kind_of_step(recording: str) -> None:
    header, *steps, end = records(recording)
    assert header["format"] == "sansproxy-recording"
    assert header["version"] == FORMAT_VERSION
    assert header["seed"] == 7
    assert header["config"] == {"source": "command line", "text": TEXT}
    assert end == {"end": {"turns": len(steps)}}
    assert steps[0] == {"allocate": 1}
    kinds = {step["event"]["type"] for step in steps if "event" in step}
    assert {
        "ConnectionAccepted",
        "DataReceived",
        "UpstreamConnected",
        "UpstreamFailed",
        "Written",
        "ShutdownRequested",
    } <= kinds
    assert any(step.get("timeout") for step in steps)
    assert all(isinstance(step["t"], float) for step in steps if "allocate" not in step)
    assert all(isinstance(step["w"], float) for step in steps if "allocate" not in step)
    sends = [c for step in steps for c in step.get("commands", []) if c["type"] == "Send"]
    assert sends
    assert all(set(send["data"]) == {"len", "sha256"} for send in sends)


def timed_steps(text: str) -> list[dict[str, Any]]:
    """The event and timer-turn lines of a recording (not allocations, header or end)."""
    return [record for record in records(text)[1:] if "t" in record]


def test_every_turn_records_the_wall_time_the_core_was_given() -> None:
    clock = Clock()
    text, _, _ = record_session(clock=clock)
    steps = timed_steps(text)
    assert [step["w"] for step in steps] == clock.walls_read
    assert len(steps) == len(clock.walls_read)
    # The clock was set back during the session: monotonic time went on, wall time did not.
    jumps = [(a, b) for a, b in itertools.pairwise(steps) if b["w"] < a["w"]]
    assert len(jumps) == 1
    assert jumps[0][1]["t"] > jumps[0][0]["t"]


def build_replay_cores(monkeypatch: pytest.MonkeyPatch, core_type: type[Proxy]) -> list[Any]:
    """Make the replayer build ``core_type`` cores; the list fills with those it builds."""
    built: list[Any] = []

    def build(config: Any, *, rng: random.Random) -> Proxy:
        core = core_type(config, rng=rng)
        built.append(core)
        return core

    monkeypatch.setattr(record_module, "Proxy", build)
    return built


class TimesSeen(Proxy):
    """A real core that notes the times of every turn it is given."""

    def __init__(self, config: Any, *, rng: random.Random) -> None:
        super().__init__(config, rng=rng)
        self.times: list[tuple[float, float | None]] = []

    def handle(self, event: Event, now: float, *, wall: float | None = None) -> list[Command]:
        self.times.append((now, wall))
        return super().handle(event, now, wall=wall)

    def handle_timeout(self, now: float, *, wall: float | None = None) -> list[Command]:
        self.times.append((now, wall))
        return super().handle_timeout(now, wall=wall)


class EchoesWall(Proxy):
    """A core whose commands depend on the wall time, as an HTTP cache's will."""

    def handle(self, event: Event, now: float, *, wall: float | None = None) -> list[Command]:
        return [*super().handle(event, now, wall=wall), Log(level="debug", message=f"{wall!r}")]

    def handle_timeout(self, now: float, *, wall: float | None = None) -> list[Command]:
        return [*super().handle_timeout(now, wall=wall), Log(level="debug", message=f"{wall!r}")]


def with_wall(text: str, turn: int, wall: float) -> list[str]:
    """The recording's lines with turn ``turn``'s recorded wall time replaced by ``wall``."""
    lines = lines_of(text)
    record = json.loads(lines[turn])
    record["w"] = wall
    lines[turn] = json.dumps(record) + "\n"
    return lines


def test_a_replay_gives_the_core_the_recorded_wall_times(
    recording: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = build_replay_cores(monkeypatch, TimesSeen)
    assert replay_lines(lines_of(recording)).identical
    [core] = built
    assert core.times == [(step["t"], step["w"]) for step in timed_steps(recording)]


def test_a_changed_wall_time_reaches_the_core_and_differs_only_if_its_commands_do(
    recording: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    turn = first_turn(recording, lambda r: r.get("event", {}).get("type") == "DataReceived")
    tampered = with_wall(recording, turn, 86_400.5)
    # The core as it is: it took the changed wall time, and its commands did not change.
    built = build_replay_cores(monkeypatch, TimesSeen)
    assert replay_lines(tampered).identical
    assert (records(recording)[turn]["t"], 86_400.5) in built[0].times
    # A core whose commands follow the wall time reports the change at that turn.
    text = record_session(core_type=EchoesWall)[0]
    assert first_turn(text, lambda r: r.get("event", {}).get("type") == "DataReceived") == turn
    build_replay_cores(monkeypatch, EchoesWall)
    assert replay_lines(lines_of(text)).identical
    result = replay_lines(with_wall(text, turn, 86_400.5))
    assert not result.identical
    assert result.turns == turn
    assert result.first_difference is not None
    assert f'expected: Log(level="debug", message="{records(text)[turn]["w"]!r}"' in (
        result.first_difference
    )
    assert 'actual:   Log(level="debug", message="86400.5"' in result.first_difference


def test_a_turn_without_its_wall_time_is_an_error(recording: str) -> None:
    turn = first_turn(recording, lambda r: r.get("timeout") is True)
    lines = lines_of(recording)
    record = json.loads(lines[turn])
    del record["w"]
    lines[turn] = json.dumps(record) + "\n"
    with pytest.raises(RecordingError, match=rf"^rec\.jsonl: line {turn + 1}: no wall time 'w'$"):
        replay_lines(lines, name="rec.jsonl")


def test_the_documented_example_is_a_recording_of_this_version() -> None:
    page = (Path(__file__).resolve().parents[2] / "docs" / "record-replay.md").read_text()
    [example] = re.findall(r"## The file format .*?```json\n(.*?)```", page, re.S)
    header, *steps, end = records(example)
    assert f"## The file format (version {FORMAT_VERSION})" in page
    assert header["version"] == FORMAT_VERSION
    assert end == {"end": {"turns": len(steps)}}
    for step in steps:
        if "allocate" not in step:
            assert isinstance(step["t"], float)
            assert isinstance(step["w"], float)
            assert "event" in step or step["timeout"] is True


def test_the_seed_and_recorder_count_are_recorded() -> None:
    text, recorder, _ = record_session(seed=12345)
    assert records(text)[0]["seed"] == 12345
    assert recorder.turns == len(records(text)) - 2
    assert recorder.closed


# -- damaged recordings --------------------------------------------------------------------


def test_a_cut_off_last_line_is_ignored_and_reported(recording: str) -> None:
    lines = lines_of(recording)[:-1]  # the end line is gone, as after a kill
    cut = [*lines[:-1], lines[-1][: len(lines[-1]) // 2]]
    result = replay_lines(cut)
    assert result.identical
    assert result.truncated
    assert result.turns == len(lines) - 2
    assert "the last line was cut off" in result.report()


def test_a_recording_without_end_line_says_so(recording: str) -> None:
    result = replay_lines(lines_of(recording)[:-1])
    assert result.identical
    assert not result.complete
    assert not result.truncated
    assert "no end line" in result.report()


def test_a_corrupt_line_before_the_last_is_an_error(recording: str) -> None:
    lines = lines_of(recording)
    lines[3] = lines[3][:10] + "\n"
    with pytest.raises(RecordingError, match="line 4: not a JSON object"):
        replay_lines(lines, name="rec.jsonl")


@pytest.mark.parametrize(
    ("version", "recorded_by", "message"),
    [
        (
            FORMAT_VERSION + 1,
            "9.9.9",
            "rec.jsonl: recording format version 3 cannot be replayed: this sansproxy replays "
            "version 2 only (replay it with sansproxy 9.9.9, which recorded it)",
        ),
        (
            FORMAT_VERSION + 1,
            "unknown",
            "rec.jsonl: recording format version 3 cannot be replayed: this sansproxy replays "
            "version 2 only",
        ),
        (
            None,
            "9.9.9",
            "rec.jsonl: recording format version None cannot be replayed: this sansproxy "
            "replays version 2 only",
        ),
    ],
)
def test_another_format_version_is_refused(
    recording: str, version: int | None, recorded_by: str, message: str
) -> None:
    lines = lines_of(recording)
    header = json.loads(lines[0])
    header["version"] = version
    header["sansproxy"] = recorded_by
    lines[0] = json.dumps(header) + "\n"
    with pytest.raises(RecordingError) as raised:
        replay_lines(lines, name="rec.jsonl")
    assert str(raised.value) == message


def version_1_recording(recorded_by: str) -> str:
    """A recording as sansproxy wrote it before the wall clock: no ``w`` on its turns."""
    header = {
        "format": "sansproxy-recording",
        "version": 1,
        "sansproxy": recorded_by,
        "seed": 7,
        "worker": None,
        "recorded_at": "2025-03-05T14:02:07+00:00",
        "config": {"source": "command line", "text": TEXT},
    }
    accepted = encode_event(
        ConnectionAccepted(conn=ConnId(1), listener=0, peer=CLIENT_PEER, local=LOCAL)
    )
    steps = [{"allocate": 1}, {"t": 1000.0, "event": accepted, "commands": []}]
    lines = [header, *steps, {"end": {"turns": len(steps)}}]
    return "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines)


@pytest.mark.parametrize(
    ("recorded_by", "advice"),
    [
        ("unknown", "record the run again"),
        ("0.0.1", "replay it with sansproxy 0.0.1, which recorded it, or record the run again"),
    ],
)
def test_a_version_1_recording_is_refused_in_one_line_with_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], recorded_by: str, advice: str
) -> None:
    path = tmp_path / "old.jsonl"
    path.write_text(version_1_recording(recorded_by))
    assert replay_main([str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"sansproxy replay: {path}: recording format version 1 cannot be replayed: "
        f"this sansproxy replays version 2 only ({advice})\n"
    )


def test_a_version_1_recording_would_replay_but_for_its_version() -> None:
    # The refusal is about the version alone: the same steps with "w" and version 2 replay.
    header, *steps = records(version_1_recording("unknown"))
    header["version"] = FORMAT_VERSION
    for step in steps:
        if "t" in step:
            step["w"] = 0.0
    text = "".join(json.dumps(line) + "\n" for line in [header, *steps])
    assert replay_lines(lines_of(text)).identical


@pytest.mark.parametrize("first_line", ["", "{}\n", "not json\n", '{"format": "sansproxy-r'])
def test_not_a_recording_is_refused(first_line: str) -> None:
    with pytest.raises(RecordingError, match="not a"):
        replay_lines([first_line] if first_line else [])


def test_an_end_line_with_the_wrong_count_is_an_error(recording: str) -> None:
    lines = lines_of(recording)
    lines[-1] = json.dumps({"end": {"turns": 3}}) + "\n"
    with pytest.raises(RecordingError, match="end line counts 3 turns"):
        replay_lines(lines)


def test_an_altered_send_is_reported_at_its_turn(recording: str) -> None:
    turn = first_turn(recording, lambda r: any(c["type"] == "Send" for c in r.get("commands", [])))
    lines = lines_of(recording)
    record = json.loads(lines[turn])
    send = next(c for c in record["commands"] if c["type"] == "Send")
    send["data"]["sha256"] = "0" * 64
    lines[turn] = json.dumps(record) + "\n"
    result = replay_lines(lines)
    assert not result.identical
    assert result.turns == turn
    assert result.first_difference is not None
    difference = result.first_difference
    assert difference.startswith(f"turn {turn} (line {turn + 1}) at t={record['t']!r}: ")
    assert "expected: Send(conn=" in difference
    assert "sha256 000000000000" in difference
    assert "actual:   Send(conn=" in difference
    assert "GET /a HTTP/1.1" in difference  # a preview of the bytes the replay produced
    assert result.report().startswith(f"replayed {turn} turns: different\n")


def test_an_altered_event_shows_where_the_commands_diverge(recording: str) -> None:
    # The request target changes: the turn that reads it still opens an upstream connection,
    # the difference shows when the request is sent upstream.
    target = first_turn(recording, lambda r: r.get("event", {}).get("type") == "DataReceived")
    lines = lines_of(recording)
    record = json.loads(lines[target])
    event = decode_event(record["event"])
    assert isinstance(event, DataReceived)
    record["event"] = encode_event(
        DataReceived(conn=event.conn, data=event.data.replace(b"/a", b"/b"))
    )
    lines[target] = json.dumps(record) + "\n"
    result = replay_lines(lines)
    assert not result.identical
    sent = first_turn(recording, lambda r: r.get("event", {}).get("type") == "UpstreamConnected")
    assert result.turns == sent
    assert result.first_difference is not None
    assert "UpstreamConnected" in result.first_difference.splitlines()[0]


def test_an_altered_allocation_is_reported(recording: str) -> None:
    lines = lines_of(recording)
    assert json.loads(lines[1]) == {"allocate": 1}
    lines[1] = '{"allocate":5}\n'
    result = replay_lines(lines)
    assert not result.identical
    assert result.first_difference == (
        "turn 1 (line 2): allocate_id() returned 1, the recording has 5"
    )


def test_a_changed_configuration_is_reported(recording: str) -> None:
    lines = lines_of(recording)
    header = json.loads(lines[0])
    header["config"]["text"] = header["config"]["text"].replace("9000", "9100")
    lines[0] = json.dumps(header) + "\n"
    result = replay_lines(lines)
    assert not result.identical
    assert result.first_difference is not None
    assert "expected: OpenUpstream(conn=2" in result.first_difference
    assert '"port":9000' not in result.first_difference  # values are shown as JSON
    assert "port=9000" in result.first_difference
    assert "port=9100" in result.first_difference


def test_a_configuration_that_no_longer_parses_is_an_error(recording: str) -> None:
    lines = lines_of(recording)
    header = json.loads(lines[0])
    header["config"]["text"] += "\nunknown_key = 1\n"
    lines[0] = json.dumps(header) + "\n"
    with pytest.raises(
        RecordingError, match=r"no longer parses: command line: upstreams\.default\.unknown_key"
    ):
        replay_lines(lines, name="rec.jsonl")


# -- core failures, reloads, overrides -----------------------------------------------------


def test_a_core_failure_is_recorded_and_replayed() -> None:
    stream = io.StringIO()
    recorder = Recorder(stream, config=CONFIG, config_text=TEXT, config_source="x", seed=1)
    proxy = Proxy(CONFIG, rng=random.Random(1))
    bogus = DataReceived(conn=ConnId(42), data=b"x")
    with pytest.raises(UsageError) as raised:
        proxy.handle(bogus, 1.0)
    recorder.turn(1.0, bogus, [], wall=1_741_183_327.0, raised=raised.value)
    recorder.close()
    assert records(stream.getvalue())[1]["raised"].startswith("UsageError: ")
    assert replay_lines(lines_of(stream.getvalue())).identical

    lines = lines_of(stream.getvalue())
    record = json.loads(lines[1])
    del record["raised"]
    lines[1] = json.dumps(record) + "\n"
    result = replay_lines(lines)
    assert not result.identical
    assert result.first_difference is not None
    assert "expected: the core returned normally" in result.first_difference
    assert "actual:   the core raised UsageError: " in result.first_difference


def reload_text() -> str:
    return TEXT + '\n[headers]\nvia = "other"\n'


def test_a_reload_is_recorded_with_its_text_and_replays() -> None:
    stream = io.StringIO()
    recorder = Recorder(stream, config=CONFIG, config_text=TEXT, config_source="x", seed=1)
    clock = Clock()
    backend = FakeBackend()
    runner = Runner(
        Proxy(CONFIG, rng=random.Random(1)),
        clock,
        backend,
        access_log_format=None,
        recorder=recorder,
    )
    new = parse_config(reload_text(), source="proxy.toml")
    runner.reload(new, text=reload_text(), source="proxy.toml")
    client = runner.accept(FakeTransport(), listener=0, peer=CLIENT_PEER, local=LOCAL)
    clock.now += 1
    runner.dispatch(DataReceived(conn=client, data=b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"))
    upstream = backend.opened[-1][0].conn
    runner.dispatch(UpstreamConnected(conn=upstream))
    assert b"via: 1.1 other" in backend.opened[-1][1].sent
    recorder.close()
    reloaded = records(stream.getvalue())[1]
    assert reloaded["event"] == {
        "type": "ConfigReloaded",
        "config": {"source": "proxy.toml", "text": reload_text()},
    }
    assert replay_lines(lines_of(stream.getvalue())).identical


def test_a_reload_without_its_text_stops_the_replay_clearly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stream = io.StringIO()
    recorder = Recorder(stream, config=CONFIG, config_text=TEXT, config_source="x", seed=1)
    event = ConfigReloaded(config=parse_config(reload_text()))
    with caplog.at_level(logging.WARNING, logger="sansproxy"):
        recorder.turn(1.0, event, [], wall=1_741_183_327.0)
    assert "record_reload was not called" in caplog.text
    recorder.close()
    with pytest.raises(RecordingError, match=r"Recorder\.record_reload"):
        replay_lines(lines_of(stream.getvalue()), name="rec.jsonl")


def test_a_reload_text_that_does_not_match_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorder = Recorder(io.StringIO(), config=CONFIG, config_text=TEXT, config_source="x", seed=1)
    with caplog.at_level(logging.ERROR, logger="sansproxy"):
        recorder.record_reload(CONFIG, text=reload_text().replace("9000", "9999"), source="p")
    assert "does not match its text" in caplog.text


def test_scalar_overrides_from_the_command_line_are_kept() -> None:
    config = dataclasses.replace(
        CONFIG,
        logging=dataclasses.replace(CONFIG.logging, access_log_format="json", level="debug"),
    )
    entry = config_entry(config, TEXT, "command line")
    assert entry["overrides"] == {"logging.level": "debug", "logging.access_log_format": "json"}
    assert config_from_entry(json.loads(json.dumps(entry))) == config


def test_a_text_that_does_not_give_the_configuration_is_refused() -> None:
    other = quick_config(LISTEN, UPSTREAMS[:1])
    with pytest.raises(ValueError, match="upstreams"):
        config_entry(other, TEXT, "command line")


def test_an_unknown_override_is_an_error() -> None:
    entry = {"source": "s", "text": TEXT, "overrides": {"logging.colour": "red"}}
    with pytest.raises(RecordingError, match="no such setting"):
        config_from_entry(entry)


@pytest.mark.parametrize(
    ("listen", "upstreams"),
    [
        (["127.0.0.1:0"], ["http://127.0.0.1:9000"]),
        (["[::1]:8080", "0.0.0.0:8081"], ["http://[::1]:9000", "https://api.example:8443/"]),
        ([":8080", "8081"], ["127.0.0.1:9000", "localhost:9001"]),
    ],
)
def test_quick_config_toml_parses_to_quick_config(listen: list[str], upstreams: list[str]) -> None:
    text = quick_config_toml(listen, upstreams)
    assert parse_config(text, source="command line") == quick_config(listen, upstreams)


# -- encoding of every event and command ---------------------------------------------------

TLS = TlsInfo(server_name="example.com", alpn="http/1.1", version="TLSv1.3")
EVENTS: list[Event] = [
    ConnectionAccepted(conn=ConnId(1), listener=0, peer=CLIENT_PEER, local=LOCAL),
    ConnectionAccepted(conn=ConnId(2), listener=1, peer=("::1", 1), local=("::1", 2), tls=TLS),
    DataReceived(conn=ConnId(1), data=bytes(range(256))),
    EofReceived(conn=ConnId(1)),
    ConnectionLost(conn=ConnId(1), reason="reset by peer"),
    ConnectionLost(conn=ConnId(1)),
    UpstreamConnected(conn=ConnId(3)),
    UpstreamConnected(conn=ConnId(3), tls=TlsInfo(alpn="http/1.1")),
    UpstreamFailed(conn=ConnId(3), reason="connection refused"),
    Written(conn=ConnId(3), nbytes=1234),
    ShutdownRequested(),
    ShutdownRequested(drain_timeout=2.5),
    ConnectionAccepted(conn=ConnId(4), listener=1, peer=CLIENT_PEER, local=LOCAL, not_tls=True),
    TlsHandshakeFailed(listener=1, peer=("::1", 3), reason="wrong version number"),
    TlsHandshakeFailed(listener=0, peer=CLIENT_PEER),
]


def test_a_recording_from_before_not_tls_still_decodes() -> None:
    encoded = encode_event(EVENTS[0])
    del encoded["not_tls"]
    assert decode_event(encoded) == EVENTS[0]


def test_the_event_samples_cover_every_event_type() -> None:
    covered = {type(event) for event in EVENTS} | {ConfigReloaded}
    assert covered == set(get_args(Event))


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_every_event_round_trips(event: Event) -> None:
    line = json.dumps(encode_event(event))
    assert "\n" not in line
    assert decode_event(json.loads(line)) == event


def test_a_config_reload_round_trips() -> None:
    config = parse_config(reload_text(), source="proxy.toml")
    encoded = encode_event(
        ConfigReloaded(config=config), config=config_entry(config, reload_text(), "proxy.toml")
    )
    decoded = decode_event(json.loads(json.dumps(encoded)))
    assert decoded == ConfigReloaded(config=config)


def test_event_data_is_stored_as_base64() -> None:
    encoded = encode_event(DataReceived(conn=ConnId(1), data=b"GET /"))
    assert encoded == {"type": "DataReceived", "conn": 1, "data": "R0VUIC8="}


@pytest.mark.parametrize(
    "obj",
    [
        {"type": "Nope", "conn": 1},
        {"type": "DataReceived", "conn": 1},
        {"type": "DataReceived", "conn": "1", "data": ""},
        {"type": "DataReceived", "conn": 1, "data": "not base64!"},
        {"type": "ConnectionAccepted", "conn": 1, "listener": 0, "peer": ["h"], "local": []},
        ["DataReceived"],
    ],
)
def test_malformed_events_are_refused(obj: object) -> None:
    with pytest.raises(RecordingError):
        decode_event(obj)


RECORD = AccessRecord(
    client=CLIENT_PEER,
    method="GET",
    target="/a",
    http_version="1.1",
    status=200,
    request_bytes=0,
    response_bytes=2,
    upstream="127.0.0.1:9000",
    duration=0.125,
    upstream_ttfb=None,
    host="example",
)
COMMANDS: list[Command] = [
    Send(conn=ConnId(1), data=b"HTTP/1.1 200 OK\r\n\r\n"),
    OpenUpstream(conn=ConnId(2), host="127.0.0.1", port=9000),
    OpenUpstream(
        conn=ConnId(2),
        host="10.0.0.1",
        port=443,
        tls=UpstreamTls(server_name="api", verify=False, ca_file="/ca.pem", alpn=("h2", "x")),
    ),
    Close(conn=ConnId(1)),
    Close(conn=ConnId(1), abort=True),
    ShutdownWrite(conn=ConnId(1)),
    PauseReading(conn=ConnId(1)),
    ResumeReading(conn=ConnId(1)),
    Log(level="warning", message='backend said "no"\n', conn=ConnId(2)),
    Log(level="info", message="hello"),
    AccessLog(record=RECORD),
    ShutdownComplete(),
]


def test_the_command_samples_cover_every_command_type() -> None:
    assert {type(command) for command in COMMANDS} == set(get_args(Command))


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: type(c).__name__)
def test_every_command_round_trips(command: Command) -> None:
    encoded = encode_command(command)
    line = json.dumps(encoded)
    assert "\n" not in line
    assert json.loads(line) == encoded
    assert encoded["type"] == type(command).__name__


def test_send_data_is_stored_as_length_and_sha256() -> None:
    encoded = encode_command(Send(conn=ConnId(1), data=b"abc"))
    assert encoded == {
        "type": "Send",
        "conn": 1,
        "data": {
            "len": 3,
            "sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        },
    }
    # One changed byte, same length: a different record.
    assert encode_command(Send(conn=ConnId(1), data=b"abd")) != encoded


@pytest.mark.parametrize(
    ("a", "b"),
    [
        (Close(conn=ConnId(1)), Close(conn=ConnId(1), abort=True)),
        (Close(conn=ConnId(1)), Close(conn=ConnId(2))),
        (AccessLog(record=RECORD), AccessLog(record=dataclasses.replace(RECORD, status=201))),
        (
            AccessLog(record=RECORD),
            AccessLog(record=dataclasses.replace(RECORD, duration=0.1250001)),
        ),
        (Log(level="info", message="a"), Log(level="info", message="b")),
        (PauseReading(conn=ConnId(1)), ResumeReading(conn=ConnId(1))),
    ],
)
def test_different_commands_encode_differently(a: Command, b: Command) -> None:
    assert json.loads(json.dumps(encode_command(a))) != json.loads(json.dumps(encode_command(b)))


# -- files, workers, flushing, failures, the command ---------------------------------------


def test_worker_record_paths() -> None:
    assert worker_record_path("run.jsonl", 1) == Path("run.jsonl.1")
    assert worker_record_path(Path("/tmp/run"), 2, restart=3) == Path("/tmp/run.2.3")
    with pytest.raises(ValueError, match="worker counts from 1"):
        worker_record_path("run", 0)


def test_open_recorder_writes_a_file_and_closes_it(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    target = RecordTarget(file=path, config_text=TEXT, config_source="command line", worker=2)
    recorder = open_recorder(target, config=CONFIG, seed=3)
    recorder.allocated(ConnId(1))
    recorder.close()
    recorder.close()  # idempotent
    header, allocate, end = records(path.read_text())
    assert header["worker"] == 2
    assert allocate == {"allocate": 1}
    assert end == {"end": {"turns": 1}}
    result = replay(path)
    assert result.identical
    assert result.turns == 1


def test_open_recorder_reports_an_unwritable_path(tmp_path: Path) -> None:
    target = RecordTarget(file=tmp_path / "missing" / "rec.jsonl", config_text=TEXT)
    with pytest.raises(Exception, match="cannot write the recording") as raised:
        open_recorder(target, config=CONFIG, seed=3)
    assert str(raised.value).startswith(str(tmp_path / "missing" / "rec.jsonl"))


def test_open_recorder_checks_the_text_before_creating_the_file(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    target = RecordTarget(file=path, config_text=quick_config_toml(LISTEN, UPSTREAMS[:1]))
    with pytest.raises(ValueError, match="upstreams"):
        open_recorder(target, config=CONFIG, seed=3)
    assert not path.exists()


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


def test_turns_flush_about_once_a_second() -> None:
    stream = CountingStream()
    recorder = Recorder(stream, config=CONFIG, config_text=TEXT, config_source="x", seed=1)
    for tenth in range(31):
        recorder.turn(100.0 + tenth / 10, None, [], wall=1_741_183_327.0 + tenth / 10)
    assert 2 <= stream.flushes <= 3
    recorder.close()


class BrokenStream(io.StringIO):
    def __init__(self, fail_after: int) -> None:
        super().__init__()
        self.writes = 0
        self.fail_after = fail_after

    def write(self, text: str) -> int:
        self.writes += 1
        if self.writes > self.fail_after:
            raise OSError(28, "No space left on device")
        return super().write(text)


def test_a_failing_write_stops_recording_without_raising(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stream = BrokenStream(fail_after=2)
    recorder = Recorder(stream, config=CONFIG, config_text=TEXT, config_source="x", seed=1)
    with caplog.at_level(logging.ERROR, logger="sansproxy"):
        recorder.allocated(ConnId(1))
        recorder.allocated(ConnId(2))
        recorder.allocated(ConnId(3))
        recorder.close()
    assert recorder.closed
    assert caplog.text.count("recording stopped: cannot write: No space left on device") == 1
    assert stream.writes == 3


def test_replay_main_reports_and_sets_the_exit_status(
    tmp_path: Path, recording: str, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.jsonl"
    good.write_text(recording)
    turns = len(records(recording)) - 2
    assert replay_main([str(good)]) == 0
    assert capsys.readouterr().out == f"replayed {turns} turns: identical\n"

    lines = lines_of(recording)
    lines[1] = '{"allocate":9}\n'
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(lines))
    assert replay_main([str(good), str(bad)]) == 1
    out = capsys.readouterr().out
    assert f"{good}: replayed {turns} turns: identical\n" in out
    assert f"{bad}: replayed 1 turns: different\nturn 1 (line 2): allocate_id()" in out

    assert replay_main([str(tmp_path / "nope.jsonl")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("sansproxy replay: ")
    assert "cannot read" in captured.err
