"""Tests of the Playbook harness itself, against a tiny fake core.

The fake core does not depend on proxy behaviour, so these tests pin the
harness: mismatch detection, Send merging, placeholders, the clock walk,
the unfinished check and the determinism check.
"""

from __future__ import annotations

import gc
import itertools
import random
import sys
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:  # `tests.playbook` under every pytest import mode
    sys.path.insert(0, str(_ROOT))

from sansproxy.commands import (  # noqa: E402
    AccessLog,
    AccessRecord,
    Close,
    Command,
    Log,
    OpenUpstream,
    Send,
)
from sansproxy.events import (  # noqa: E402
    ConnectionAccepted,
    ConnId,
    DataReceived,
    Event,
    UpstreamConnected,
    Written,
)
from tests.playbook import (  # noqa: E402
    BytesMatching,
    Placeholder,
    Playbook,
    SimClock,
)

RECORD = AccessRecord(
    client=("203.0.113.7", 50000),
    method="GET",
    target="/",
    http_version="1.1",
    status=200,
    request_bytes=0,
    response_bytes=0,
    upstream=None,
    duration=0.0,
    upstream_ttfb=None,
)


class FakeCore:
    """A toy core with a few scripted reactions.

    - ``DataReceived(c, b"open")``: opens an upstream (id from the counter).
    - ``UpstreamConnected(u)``: sends ``b"hello"`` to ``u``.
    - other ``DataReceived``: echoes the data back in two ``Send`` commands,
      then a ``Log`` and an ``AccessLog``, and arms a 10 s idle timer.
    - the idle timer closes the connection.
    - ``DataReceived(c, b"roll")``: answers with a random number from ``rng``.
    """

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.next_id = 1
        self.timers: dict[ConnId, float] = {}
        self.fired: list[float] = []

    def allocate_id(self) -> ConnId:
        conn = ConnId(self.next_id)
        self.next_id += 1
        return conn

    def handle(self, event: Event, now: float) -> list[Command]:
        if isinstance(event, ConnectionAccepted):
            return []
        if isinstance(event, UpstreamConnected):
            return [Send(conn=event.conn, data=b"hello")]
        if isinstance(event, DataReceived):
            if event.data == b"open":
                return [OpenUpstream(conn=self.allocate_id(), host="10.0.0.1", port=80)]
            if event.data == b"roll":
                return [Send(conn=event.conn, data=b"%d" % self.rng.randrange(1_000_000))]
            self.timers[event.conn] = now + 10
            half = len(event.data) // 2
            return [
                Send(conn=event.conn, data=event.data[:half]),
                Send(conn=event.conn, data=event.data[half:]),
                Log(level="debug", message="echoed", conn=event.conn),
                AccessLog(record=RECORD),
            ]
        return []

    def handle_timeout(self, now: float) -> list[Command]:
        self.fired.append(now)
        due = sorted((t, c) for c, t in self.timers.items() if t <= now)
        for _, conn in due:
            del self.timers[conn]
        return [Close(conn=conn) for _, conn in due]

    def next_deadline(self) -> float | None:
        return min(self.timers.values(), default=None)


def fake(rng: random.Random) -> FakeCore:
    return FakeCore(rng)


def test_happy_path_with_merged_sends() -> None:
    pb = Playbook(fake)
    c = pb.accept()
    assert c == 1
    assert pb >> DataReceived(conn=c, data=b"abcd") << Send(conn=c, data=b"abcd")


def test_expected_sends_are_merged_too() -> None:
    pb = Playbook(fake)
    c = pb.accept()
    assert (
        pb
        >> DataReceived(conn=c, data=b"abcd")
        << Send(conn=c, data=b"a")
        << Send(conn=c, data=b"bc")
        << Send(conn=c, data=BytesMatching(rb"d"))
    )


def test_sends_are_not_merged_across_events() -> None:
    pb = Playbook(fake)
    c = pb.accept()
    assert (
        pb
        >> DataReceived(conn=c, data=b"ab")
        << Send(conn=c, data=b"ab")
        >> DataReceived(conn=c, data=b"cd")
        << Send(conn=c, data=b"cd")
    )
    sends = [x for x in pb.actual() if isinstance(x, Send)]
    assert sends == [Send(conn=c, data=b"ab"), Send(conn=c, data=b"cd")]


def test_mismatch_shows_a_diff_with_arrows() -> None:
    pb = Playbook(fake)
    c = pb.accept()
    pb >> DataReceived(conn=c, data=b"abcd") << Send(conn=c, data=b"wrong")
    with pytest.raises(AssertionError) as info:
        assert pb
    text = str(info.value)
    assert "mismatch at entry 2" in text
    assert "- << Send(conn=1, data=b'wrong')" in text
    assert "+ << Send(conn=1, data=b'abcd')" in text
    assert "  >> DataReceived(conn=1, data=b'abcd')" in text


def test_asserted_until_here_marker() -> None:
    pb = Playbook(fake)
    c = pb.accept()
    assert pb >> DataReceived(conn=c, data=b"ab") << Send(conn=c, data=b"ab")
    pb >> DataReceived(conn=c, data=b"cd") << Send(conn=c, data=b"xx")
    with pytest.raises(AssertionError) as info:
        assert pb
    lines = str(info.value).splitlines()
    marker = lines.index("==== asserted until here ====")
    assert lines[marker - 1] == "  << Send(conn=1, data=b'ab')"
    assert lines[marker + 1] == "  >> DataReceived(conn=1, data=b'cd')"


def test_unexpected_commands_fail() -> None:
    pb = Playbook(fake)
    c = pb.accept()
    pb >> DataReceived(conn=c, data=b"ab")
    with pytest.raises(AssertionError, match="unexpected"):
        assert pb


def test_unfinished_playbook_fails() -> None:
    pb = Playbook(fake)
    c = pb.accept()
    pb >> DataReceived(conn=c, data=b"ab") << Send(conn=c, data=b"ab") << Close(conn=c)
    with pytest.raises(AssertionError, match="unfinished: 1 expected"):
        assert pb


def test_mismatch_before_a_later_event_stops_feeding() -> None:
    pb = Playbook(fake)
    c = pb.accept()
    pb >> DataReceived(conn=c, data=b"ab") << Send(conn=c, data=b"zz")
    pb >> DataReceived(conn=c, data=b"cd")  # recorded, never fed
    with pytest.raises(AssertionError) as info:
        assert pb
    assert "- >> DataReceived(conn=1, data=b'cd')" in str(info.value)
    assert len(pb.trace()) == 6  # accept, the first data and its four commands, nothing more


def test_never_asserted_playbook_is_reported() -> None:
    pb = Playbook(fake)
    pb.accept()
    with pytest.raises(RuntimeError, match="Unfinished playbook"):
        pb.__del__()
    pb.run()  # now checked: the real __del__ is silent
    del pb
    gc.collect()


def test_placeholder_captures_the_upstream_id() -> None:
    pb = Playbook(fake)
    c = pb.accept()
    u = Placeholder(ConnId)
    assert (
        pb
        >> DataReceived(conn=c, data=b"open")
        << OpenUpstream(conn=u, host="10.0.0.1", port=80)
        >> UpstreamConnected(conn=u)
        << Send(conn=u, data=b"hello")
    )
    assert u() == 2
    # A captured placeholder must match the same value from then on.
    pb >> Written(conn=u, nbytes=5) >> DataReceived(conn=c, data=b"open")
    pb << OpenUpstream(conn=u, host="10.0.0.1", port=80)
    with pytest.raises(AssertionError, match="mismatch"):
        assert pb


def test_placeholder_checks_the_type() -> None:
    pb = Playbook(fake)
    c = pb.accept()
    host = Placeholder(bytes)  # the core gives a str
    pb >> DataReceived(conn=c, data=b"open") << OpenUpstream(conn=ConnId(2), host=host, port=80)  # type: ignore[arg-type]
    with pytest.raises(AssertionError, match="mismatch"):
        assert pb
    assert not host.is_set


def test_placeholder_used_before_capture_is_an_error() -> None:
    pb = Playbook(fake)
    pb.accept()
    u = Placeholder(ConnId)
    with pytest.raises(RuntimeError, match="before an expected command captured it"):
        pb >> UpstreamConnected(conn=u)  # type: ignore[arg-type]


def test_bytes_matching_is_a_full_match() -> None:
    pb = Playbook(fake)
    c = pb.accept()
    assert (
        pb
        >> DataReceived(conn=c, data=b"GET /\r\nx")
        << Send(conn=c, data=BytesMatching(rb"GET /\r\n."))
    )
    pb >> DataReceived(conn=c, data=b"GET /x") << Send(conn=c, data=BytesMatching(rb"GET"))
    with pytest.raises(AssertionError):
        assert pb


def test_logs_are_ignored_unless_asked_for() -> None:
    pb = Playbook(fake, logs=True, access_logs=True)
    c = pb.accept()
    assert (
        pb
        >> DataReceived(conn=c, data=b"ab")
        << Send(conn=c, data=b"ab")
        << Log(level="debug", message="echoed", conn=c)
        << AccessLog(record=RECORD)
    )
    quiet = Playbook(fake)
    with pytest.raises(ValueError, match="logs=True"):
        quiet << Log(level="debug", message="echoed")
    with pytest.raises(ValueError, match="access_logs=True"):
        quiet << AccessLog(record=RECORD)


def test_advance_fires_timers_at_their_exact_deadlines() -> None:
    pb = Playbook(fake, start=100.0)
    a = pb.accept()
    b = pb.accept(peer=("203.0.113.8", 40000))
    assert pb >> DataReceived(conn=a, data=b"x") << Send(conn=a, data=b"x")
    assert pb.advance(3) >> DataReceived(conn=b, data=b"y") << Send(conn=b, data=b"y")
    assert pb.advance(30) << Close(conn=a) << Close(conn=b)
    assert pb.clock.now == 133.0
    core = pb.core
    assert isinstance(core, FakeCore)
    assert core.fired == [110.0, 113.0]
    timeouts = [(t, x) for kind, t, x in pb.trace() if kind == "timeout"]
    assert timeouts == [(110.0, 110.0), (113.0, 113.0)]


def test_advance_shows_in_the_diff() -> None:
    pb = Playbook(fake)
    c = pb.accept()
    pb >> DataReceived(conn=c, data=b"x") << Send(conn=c, data=b"x")
    pb.advance(5) << Close(conn=c)
    with pytest.raises(AssertionError) as info:
        assert pb
    assert "-- advance(5) -> now=5.0" in str(info.value)


def test_accept_uses_the_arguments() -> None:
    pb = Playbook(fake)
    c = pb.accept(listener=0, peer=("198.51.100.1", 1234), local=("127.0.0.1", 80))
    (event,) = [x for kind, _, x in pb.trace() if kind == "event"]
    assert event == ConnectionAccepted(
        conn=c, listener=0, peer=("198.51.100.1", 1234), local=("127.0.0.1", 80)
    )
    assert pb


def test_seeded_randomness_is_deterministic() -> None:
    first = Playbook(fake, seed=7)
    c = first.accept()
    first >> DataReceived(conn=c, data=b"roll")
    expected = random.Random(7).randrange(1_000_000)
    first << Send(conn=c, data=b"%d" % expected)
    assert first


_GLOBAL_COUNTER = itertools.count()


class LeakyCore(FakeCore):
    """Depends on module-level state: two instances answer differently."""

    def handle(self, event: Event, now: float) -> list[Command]:
        if isinstance(event, DataReceived):
            return [Send(conn=event.conn, data=b"%d" % next(_GLOBAL_COUNTER))]
        return []


def test_nondeterminism_is_detected() -> None:
    pb = Playbook(LeakyCore)
    c = pb.accept()
    pb >> DataReceived(conn=c, data=b"x") << Send(conn=c, data=BytesMatching(rb"\d+"))
    with pytest.raises(AssertionError, match="nondeterministic") as info:
        assert pb
    assert "first core" in str(info.value)


class CrashingCore(FakeCore):
    def handle(self, event: Event, now: float) -> list[Command]:
        if isinstance(event, DataReceived):
            raise ValueError("boom")
        return []


def test_core_exceptions_propagate_at_the_event() -> None:
    pb = Playbook(CrashingCore)
    c = pb.accept()
    with pytest.raises(ValueError, match="boom"):
        pb >> DataReceived(conn=c, data=b"x")


class RunawayCore(FakeCore):
    def next_deadline(self) -> float | None:
        return 1.0


def test_runaway_timer_is_bounded() -> None:
    pb = Playbook(RunawayCore)
    with pytest.raises(RuntimeError, match="timer firings"):
        pb.advance(2)


def test_operators_reject_the_wrong_kind() -> None:
    pb = Playbook(fake)
    with pytest.raises(TypeError):
        pb >> Send(conn=ConnId(1), data=b"x")  # type: ignore[operator]
    with pytest.raises(TypeError):
        pb << Written(conn=ConnId(1), nbytes=1)  # type: ignore[operator]
    assert pb


def test_sim_clock_is_monotonic() -> None:
    clock = SimClock(5.0)
    clock.advance_to(6.0)
    with pytest.raises(ValueError, match="go back"):
        clock.advance_to(1.0)
    assert clock.now == 6.0
