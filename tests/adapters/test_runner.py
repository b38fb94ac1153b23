"""Unit tests of the runner and the trio backend, driven by a fake core."""

from __future__ import annotations

import dataclasses
import logging
import socket
import struct
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

import pytest
import trio
import trio.testing

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
)
from sansproxy.events import (
    ConnectionLost,
    ConnId,
    DataReceived,
    EofReceived,
    Event,
    ShutdownRequested,
    UpstreamConnected,
    UpstreamFailed,
    Written,
)
from sansproxy_io.accesslog import (
    format_combined,
    format_extended,
    format_json,
    format_record,
)
from sansproxy_io.runner import Runner
from sansproxy_io.tls import ClientContexts
from sansproxy_trio._trio_backend import TrioBackend


@dataclass
class FakeCore:
    """Answers each event with the next scripted list of commands."""

    script: list[list[Command]] = field(default_factory=list)
    seen: list[tuple[float, Event | None]] = field(default_factory=list)
    walls: list[float | None] = field(default_factory=list)
    """The ``wall`` of each turn, in the order of :attr:`seen`."""
    deadlines: list[float | None] = field(default_factory=list)
    next_id: int = 1
    deadline: float | None = None

    def allocate_id(self) -> ConnId:
        self.next_id += 1
        return ConnId(self.next_id - 1)

    def handle(self, event: Event, now: float, *, wall: float | None = None) -> list[Command]:
        self.seen.append((now, event))
        self.walls.append(wall)
        return self.script.pop(0) if self.script else []

    def handle_timeout(self, now: float, *, wall: float | None = None) -> list[Command]:
        self.seen.append((now, None))
        self.walls.append(wall)
        return self.script.pop(0) if self.script else []

    def next_deadline(self) -> float | None:
        return self.deadlines.pop(0) if self.deadlines else self.deadline


@dataclass
class FakeTransport:
    log: list[str] = field(default_factory=list)

    def send(self, data: bytes) -> None:
        self.log.append(f"send {data!r}")

    def close(self, *, abort: bool) -> None:
        self.log.append(f"close abort={abort}")

    def shutdown_write(self) -> None:
        self.log.append("shutdown write")

    def pause_reading(self) -> None:
        self.log.append("pause")

    def resume_reading(self) -> None:
        self.log.append("resume")


@dataclass
class FakeBackend:
    armed: list[float | None] = field(default_factory=list)
    opened: dict[ConnId, FakeTransport] = field(default_factory=dict)
    shutdown: int = 0

    def open_upstream(self, command: OpenUpstream) -> FakeTransport:
        self.opened[command.conn] = FakeTransport()
        return self.opened[command.conn]

    def arm_timer(self, deadline: float | None) -> None:
        self.armed.append(deadline)

    def shutdown_complete(self) -> None:
        self.shutdown += 1


def make(core: FakeCore) -> tuple[Runner, FakeBackend]:
    backend = FakeBackend()
    clock = iter(range(1000))
    return Runner(core, lambda: float(next(clock)), backend), backend


C1, U2 = ConnId(1), ConnId(2)


def test_commands_in_order_and_events_dropped_after_close() -> None:
    core = FakeCore(
        script=[
            [Send(conn=C1, data=b"a"), PauseReading(conn=C1), ResumeReading(conn=C1)],
            [Send(conn=C1, data=b"b"), Close(conn=C1)],
        ]
    )
    runner, _ = make(core)
    client = FakeTransport()
    assert runner.accept(client, listener=0, peer=("1.2.3.4", 5), local=("127.0.0.1", 80)) == C1
    runner.dispatch(DataReceived(conn=C1, data=b"x"))
    assert client.log == ["send b'a'", "pause", "resume", "send b'b'", "close abort=False"]
    assert not runner.is_open(C1)
    runner.dispatch(Written(conn=C1, nbytes=1))
    runner.dispatch(ConnectionLost(conn=C1))
    assert len(core.seen) == 2  # nothing reached the core after Close


def test_lost_and_failed_connections_are_forgotten() -> None:
    core = FakeCore(script=[[OpenUpstream(conn=U2, host="h", port=1)], [], []])
    runner, backend = make(core)
    client = FakeTransport()
    runner.accept(client, listener=0, peer=("a", 1), local=("b", 2))
    assert runner.is_open(U2)
    runner.dispatch(UpstreamFailed(conn=U2, reason="refused"))
    assert not runner.is_open(U2)
    assert backend.opened[U2].log == ["close abort=True"]
    runner.dispatch(ConnectionLost(conn=C1, reason="reset"))
    assert client.log == ["close abort=True"]
    assert runner.open_connections == 0


def test_timer_is_rearmed_only_when_the_deadline_changes() -> None:
    core = FakeCore(deadlines=[5.0, 5.0, 7.0, None, None])
    runner, backend = make(core)
    runner.dispatch(ShutdownRequested())
    runner.dispatch(ShutdownRequested())
    runner.dispatch(ShutdownRequested())
    runner.on_timer()
    runner.dispatch(ShutdownRequested())
    assert backend.armed == [5.0, 7.0]
    assert core.seen[3] == (3.0, None)


def test_shutdown_complete_and_unknown_connection() -> None:
    core = FakeCore(script=[[ShutdownComplete()], [Send(conn=ConnId(9), data=b"x")]])
    runner, backend = make(core)
    runner.dispatch(ShutdownRequested())
    assert backend.shutdown == 1
    with pytest.raises(RuntimeError, match="closed connection"):
        runner.dispatch(ShutdownRequested())


def test_reentrant_dispatch_is_refused() -> None:
    class Reentrant(FakeBackend):
        def shutdown_complete(self) -> None:
            runner.dispatch(ShutdownRequested())

    core = FakeCore(script=[[ShutdownComplete()]])
    runner = Runner(core, lambda: 0.0, Reentrant())
    with pytest.raises(RuntimeError, match="re-entered"):
        runner.dispatch(ShutdownRequested())


@dataclass
class FakeWallClock:
    """Hands out the scripted wall times in turn (the system clock may be set back)."""

    times: list[float]
    reads: int = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.times.pop(0)


@dataclass
class FakeRecorder:
    turns: list[tuple[float, float, Event | None]] = field(default_factory=list)

    def allocated(self, conn: ConnId) -> None:
        pass

    def turn(
        self,
        now: float,
        event: Event | None,
        commands: object,
        *,
        wall: float,
        raised: BaseException | None = None,
    ) -> None:
        self.turns.append((now, wall, event))

    def record_reload(self, config: object, *, text: str, source: str) -> None:
        pass


def test_every_turn_passes_the_wall_clock_to_the_core_and_the_recorder() -> None:
    walls = [1_741_183_327.5, 1_741_183_328.0, 1_741_179_728.0, 1_741_179_729.25]
    wall_clock = FakeWallClock(list(walls))
    monotonic = iter([10.0, 11.0, 12.0, 13.0])
    core, recorder = FakeCore(), FakeRecorder()
    runner = Runner(
        core,
        lambda: next(monotonic),
        FakeBackend(),
        wall_clock=wall_clock,
        recorder=recorder,  # type: ignore[arg-type]
    )
    runner.start()
    client = runner.accept(FakeTransport(), listener=0, peer=("a", 1), local=("b", 2))
    runner.dispatch(DataReceived(conn=client, data=b"x"))  # the clock was set back an hour
    runner.on_timer()
    assert core.walls == walls
    assert [now for now, _ in core.seen] == [10.0, 11.0, 12.0, 13.0]
    assert [(now, wall) for now, wall, _ in recorder.turns] == list(
        zip([10.0, 11.0, 12.0, 13.0], walls, strict=True)
    )
    assert wall_clock.reads == 4  # once a turn, and only for a turn


def test_a_core_failure_is_recorded_with_its_wall_time(caplog: pytest.LogCaptureFixture) -> None:
    core, recorder = _RaisingCore(), FakeRecorder()
    runner = Runner(
        core,
        lambda: 5.0,
        FakeBackend(),
        wall_clock=lambda: 1_741_183_327.0,
        recorder=recorder,  # type: ignore[arg-type]
    )
    client = runner.accept(FakeTransport(), listener=0, peer=("a", 1), local=("b", 2))
    with caplog.at_level(logging.CRITICAL, logger="sansproxy"):
        runner.dispatch(DataReceived(conn=client, data=b"boom"))
    assert recorder.turns[-1] == (5.0, 1_741_183_327.0, DataReceived(conn=client, data=b"boom"))


def _access_record() -> AccessRecord:
    return AccessRecord(
        client=("10.0.0.1", 4000),
        method="GET",
        target="/",
        http_version="1.1",
        status=200,
        request_bytes=0,
        response_bytes=2,
        upstream="127.0.0.1:9000",
        duration=0.5,
        upstream_ttfb=None,
    )


def test_access_lines_carry_the_wall_time_of_their_turn(caplog: pytest.LogCaptureFixture) -> None:
    first = datetime(2025, 3, 5, 14, 2, 7, tzinfo=UTC)
    second = datetime(2025, 3, 5, 13, 0, 0, tzinfo=UTC)  # the clock was set back
    core = FakeCore(script=[[AccessLog(record=_access_record())]] * 2)
    runner = Runner(
        core,
        lambda: 1.0,
        FakeBackend(),
        access_log_format="json",
        wall_clock=FakeWallClock([first.timestamp(), second.timestamp()]),
    )
    with caplog.at_level(logging.INFO, logger="sansproxy.access"):
        runner.dispatch(ShutdownRequested())
        runner.dispatch(ShutdownRequested())
    lines = [r.getMessage() for r in caplog.records if r.name == "sansproxy.access"]
    assert lines == [
        format_json(_access_record(), first.astimezone()),
        format_json(_access_record(), second.astimezone()),
    ]
    assert core.walls == [first.timestamp(), second.timestamp()]


def test_the_default_wall_clock_is_the_system_clock() -> None:
    core = FakeCore()
    runner = Runner(core, lambda: 1.0, FakeBackend())
    before = time.time()
    runner.start()
    after = time.time()
    [wall] = core.walls
    assert wall is not None
    assert before <= wall <= after


def test_logs_and_access_logs(caplog: pytest.LogCaptureFixture) -> None:
    record = AccessRecord(
        client=("10.0.0.1", 4000),
        method="GET",
        target='/a"b\n',
        http_version="1.1",
        status=200,
        request_bytes=0,
        response_bytes=12,
        upstream="127.0.0.1:9000",
        duration=0.0123,
        upstream_ttfb=0.01,
        user_agent="ua/1",
    )
    core = FakeCore(
        script=[
            [
                Log(level="warning", message="careful", conn=C1),
                Log(level="debug", message="detail"),
                AccessLog(record=record),
            ]
        ]
    )
    runner, _ = make(core)
    with caplog.at_level(logging.DEBUG):
        runner.dispatch(ShutdownRequested())
    got = [(r.name, r.levelname, r.getMessage()) for r in caplog.records]
    assert got[0] == ("sansproxy", "WARNING", "conn 1: careful")
    assert got[1] == ("sansproxy", "DEBUG", "detail")
    assert got[2][0] == "sansproxy.access"
    assert got[2][2].endswith('"GET /a\\x22b\\x0A HTTP/1.1" 200 12 "-" "ua/1"')


def test_access_log_formats() -> None:
    record = AccessRecord(
        client=("::1", 1),
        method="POST",
        target="/p",
        http_version="HTTP/2",
        status=502,
        request_bytes=3,
        response_bytes=0,
        upstream=None,
        duration=1.5,
        upstream_ttfb=None,
        referer="http://r/",
    )
    when = datetime(2025, 3, 5, 14, 2, 7, tzinfo=timezone(timedelta(hours=1)))
    combined = '::1 - - [05/Mar/2025:14:02:07 +0100] "POST /p HTTP/2" 502 0 "http://r/" "-"'
    assert format_combined(record, when) == combined
    assert format_record(record, when, "combined") == combined
    extended = f"{combined} upstream=- rt=1.500 uht=-"
    assert format_extended(record, when) == extended
    assert format_record(record, when, "extended") == extended
    served = dataclasses.replace(record, upstream="10.0.0.1:80", upstream_ttfb=0.0125)
    assert format_extended(served, when).endswith(" upstream=10.0.0.1:80 rt=1.500 uht=0.013")
    line = format_json(record, when)
    assert line.startswith('{"time":"2025-03-05T14:02:07.000+01:00","client":["::1",1],')


# -- trio backend with real loopback sockets ------------------------------------------------


async def _pair() -> tuple[trio.SocketListener, trio.SocketStream, trio.SocketStream]:
    (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listener.socket.getsockname()[1]
    client = await trio.open_tcp_stream("127.0.0.1", port)
    server = await listener.accept()
    assert isinstance(server, trio.SocketStream)
    return listener, client, server


async def case_trio_connection_reads_writes_pauses_and_closes() -> None:
    listener, peer, raw = await _pair()
    core = FakeCore()
    async with trio.open_nursery() as nursery:
        backend = TrioBackend(nursery, ClientContexts(), close_timeout=5)
        runner = Runner(core, trio.current_time, backend)
        backend.attach(runner)
        connection = backend.new_connection(raw)
        core.script = [[Send(conn=C1, data=b"hello "), Send(conn=C1, data=b"world")]]
        connection.conn = runner.accept(
            connection, listener=0, peer=("127.0.0.1", 1), local=("127.0.0.1", 2)
        )
        nursery.start_soon(connection.serve_client, raw)
        got = b""
        while len(got) < 11:
            got += await peer.receive_some(100)
        assert got == b"hello world"
        await trio.testing.wait_all_tasks_blocked()
        assert [e for _, e in core.seen][-1] == Written(conn=C1, nbytes=11)

        runner.apply([PauseReading(conn=C1)])
        await peer.send_all(b"ping")
        await trio.testing.wait_all_tasks_blocked()
        # One receive may already be in flight; after it nothing more is read while paused.
        before = len(core.seen)
        await peer.send_all(b"more")
        await trio.sleep(0.05)
        await trio.testing.wait_all_tasks_blocked()
        paused_events = core.seen[before:]
        runner.apply([ResumeReading(conn=C1)])
        await trio.sleep(0.05)
        data = b"".join(e.data for _, e in core.seen if isinstance(e, DataReceived))
        assert data == b"pingmore"
        assert all(not isinstance(e, DataReceived) or e.data != b"more" for _, e in paused_events)

        core.script = [[Send(conn=C1, data=b"bye"), Close(conn=C1)]]
        await peer.send_eof()
        rest = b""
        while chunk := await peer.receive_some(100):
            rest += chunk
        assert rest == b"bye"
        assert [e for _, e in core.seen][-1] == EofReceived(conn=C1)
    await peer.aclose()
    await listener.aclose()


async def case_abort_resets_the_peer() -> None:
    listener, peer, raw = await _pair()
    core = FakeCore(script=[[Send(conn=C1, data=b"partial"), Close(conn=C1, abort=True)]])
    async with trio.open_nursery() as nursery:
        backend = TrioBackend(nursery, ClientContexts(), close_timeout=5)
        runner = Runner(core, trio.current_time, backend)
        backend.attach(runner)
        connection = backend.new_connection(raw)
        connection.conn = runner.accept(connection, listener=0, peer=("a", 1), local=("b", 2))
        nursery.start_soon(connection.serve_client, raw)
        with pytest.raises(trio.BrokenResourceError):  # ECONNRESET
            await _read_until_eof(peer)
    await peer.aclose()
    await listener.aclose()


async def case_upstream_connect_success_failure_and_cancel() -> None:
    (listener,) = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listener.socket.getsockname()[1]
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    refused_port = closed.getsockname()[1]
    closed.close()
    core = FakeCore(
        script=[
            [
                OpenUpstream(conn=ConnId(2), host="127.0.0.1", port=port),
                OpenUpstream(conn=ConnId(3), host="127.0.0.1", port=refused_port),
                OpenUpstream(conn=ConnId(4), host="127.0.0.1", port=port),
                Close(conn=ConnId(4)),
            ],
        ]
    )
    async with trio.open_nursery() as nursery:
        backend = TrioBackend(nursery, ClientContexts(), close_timeout=5)
        runner = Runner(core, trio.current_time, backend)
        backend.attach(runner)
        runner.dispatch(ShutdownRequested())
        server = await listener.accept()
        with trio.fail_after(5):
            while len(core.seen) < 3:
                await trio.sleep(0.01)
        await trio.sleep(0.1)
        events = [e for _, e in core.seen[1:]]
        assert UpstreamConnected(conn=ConnId(2)) in events
        assert any(isinstance(e, UpstreamFailed) and e.conn == ConnId(3) for e in events)
        assert all(getattr(e, "conn", None) != ConnId(4) for e in events)
        runner.apply([Close(conn=ConnId(2))])
        assert await server.receive_some(10) == b""
        await server.aclose()
        with trio.fail_after(5):
            await backend.wait_idle()
        nursery.cancel_scope.cancel()
    await listener.aclose()


async def case_timer_fires_at_deadlines_with_mock_clock() -> None:
    fired: list[float] = []
    core = FakeCore()
    async with trio.open_nursery() as nursery:
        backend = TrioBackend(nursery, ClientContexts(), close_timeout=5)
        runner = Runner(core, trio.current_time, backend)
        backend.attach(runner)
        nursery.start_soon(
            backend.timer.run, lambda: (fired.append(trio.current_time()), runner.on_timer())
        )
        start = trio.current_time()
        core.deadline = start + 10
        runner.dispatch(ShutdownRequested())  # arms 10 s ahead
        core.deadline = start + 3
        runner.dispatch(ShutdownRequested())  # moved earlier
        await trio.sleep(2.9)
        assert fired == []
        core.deadline = None  # after firing there is nothing more
        await trio.sleep(0.2)
        assert fired == [start + 3]
        await trio.sleep(100)
        assert len(fired) == 1
        nursery.cancel_scope.cancel()


async def _read_until_eof(stream: trio.SocketStream) -> None:
    while await stream.receive_some(100):
        pass


def test_mock_clock_timer() -> None:
    trio.run(
        case_timer_fires_at_deadlines_with_mock_clock,
        clock=trio.testing.MockClock(autojump_threshold=0),
    )


def test_trio_pieces() -> None:
    for test in (
        case_trio_connection_reads_writes_pauses_and_closes,
        case_abort_resets_the_peer,
        case_upstream_connect_success_failure_and_cancel,
    ):
        trio.run(test)


_ = struct


@dataclass
class _RaisingCore(FakeCore):
    """A core with a bug: it raises on one particular piece of data."""

    def handle(self, event: Event, now: float, *, wall: float | None = None) -> list[Command]:
        if isinstance(event, DataReceived) and event.data == b"boom":
            raise ZeroDivisionError("a bug in the core")
        return super().handle(event, now, wall=wall)


def test_a_core_bug_resets_one_connection_and_keeps_serving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    core = _RaisingCore(script=[[], [], [Send(conn=ConnId(2), data=b"ok")]])
    runner, _ = make(core)
    bad, good = FakeTransport(), FakeTransport()
    bad_id = runner.accept(bad, listener=0, peer=("a", 1), local=("b", 2))
    good_id = runner.accept(good, listener=0, peer=("a", 3), local=("b", 2))
    with caplog.at_level(logging.ERROR, logger="sansproxy"):
        runner.dispatch(DataReceived(conn=bad_id, data=b"boom"))
    assert "the core raised" in caplog.text
    assert bad.log == ["close abort=True"]
    assert not runner.is_open(bad_id)
    # A late command for the reset connection is ignored; the other one still works.
    runner.apply([Send(conn=bad_id, data=b"late"), Close(conn=bad_id)])
    assert bad.log == ["close abort=True"]
    runner.dispatch(DataReceived(conn=good_id, data=b"fine"))
    assert good.log == ["send b'ok'"]
