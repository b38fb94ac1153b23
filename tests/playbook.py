"""Playbook: script the core event by event and check the exact commands it answers.

The DSL follows mitmproxy's ``tutils.Playbook`` (``>>`` feeds an event, ``<<``
expects a command, ``assert playbook`` checks), with the three changes of
STYLE.md section 3.6:

- the playbook owns a :class:`SimClock`; :meth:`Playbook.advance` walks the
  core's timer deadlines in order and calls ``handle_timeout`` at each exact
  deadline, so tests never sleep or monkeypatch time;
- :meth:`Playbook.accept` allocates a client id and feeds ``ConnectionAccepted``;
  upstream ids the core chooses are captured with :class:`Placeholder`;
- determinism is checked on every run: the playbook drives two cores built
  from the same seed in lockstep, and their complete traces (logs included)
  must be equal.

A typical test::

    pb = Playbook(config, seed=1)
    c = pb.accept()
    u = Placeholder(ConnId)
    assert (
        pb
        >> DataReceived(conn=c, data=b"GET / HTTP/1.1\\r\\nHost: a\\r\\n\\r\\n")
        << OpenUpstream(conn=u, host="10.0.0.1", port=80)
        >> UpstreamConnected(conn=u)
        << Send(conn=u, data=BytesMatching(rb"GET / HTTP/1\\.1\\r\\n.*"))
    )

Events are fed to the cores as soon as they are added (so ``accept`` can
return a real id and a misbehaving core raises at the line that provoked it);
the expected commands are compared with the actual ones before each new event
and at every ``assert``. Adjacent ``Send`` commands to the same connection are
merged on both sides, so a test does not depend on how the core splits its
writes. ``Log`` is ignored unless ``logs=True``, ``AccessLog`` unless
``access_logs=True``.
"""

from __future__ import annotations

import dataclasses
import difflib
import random
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Generic, Protocol, TypeVar, cast

from sansproxy.commands import AccessLog, Command, Log, Send
from sansproxy.config import ProxyConfig
from sansproxy.events import ConnectionAccepted, ConnId, Event, TlsInfo

__all__ = [
    "Advance",
    "BytesMatching",
    "Core",
    "CoreFactory",
    "Placeholder",
    "Playbook",
    "SimClock",
]

T = TypeVar("T")

MAX_TIMER_FIRINGS = 10_000
"""Bound on ``handle_timeout`` calls in one :meth:`Playbook.advance` (a runaway timer)."""


class Core(Protocol):
    """What the harness needs from a core: :class:`sansproxy.Proxy` or a test fake."""

    def allocate_id(self) -> ConnId: ...

    def handle(self, event: Event, now: float, *, wall: float | None = None) -> list[Command]: ...

    def handle_timeout(self, now: float, *, wall: float | None = None) -> list[Command]: ...

    def next_deadline(self) -> float | None: ...


CoreFactory = Callable[[random.Random], Core]
"""Builds a fresh core from a seeded ``random.Random`` (called twice per playbook)."""


class SimClock:
    """A monotonic clock that only moves when a test says so."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def advance_to(self, when: float) -> None:
        """Move to ``when``; monotonic time never goes back."""
        if when < self.now:
            raise ValueError(f"clock cannot go back from {self.now} to {when}")
        self.now = when

    def __repr__(self) -> str:
        return f"SimClock(now={self.now!r})"


class Placeholder(Generic[T]):
    """A value the core chooses, captured the first time an expected command meets it.

    ``u = Placeholder(ConnId)`` used in ``<< OpenUpstream(conn=u, ...)`` matches
    any connection id there and remembers it; later events such as
    ``>> UpstreamConnected(conn=u)`` are sent with the captured value, and later
    expected commands must carry the same value. ``u()`` returns it.
    """

    def __init__(self, kind: Callable[..., T]) -> None:
        self._kind = kind
        # A NewType (such as ConnId) is checked against the type it wraps.
        self._check: type = cast(type, getattr(kind, "__supertype__", kind))
        self._name: str = getattr(kind, "__name__", repr(kind))
        self._value: T | None = None
        self._set = False

    @property
    def is_set(self) -> bool:
        return self._set

    def __call__(self) -> T:
        if not self._set:
            raise RuntimeError(f"{self!r} has not been captured yet")
        return cast(T, self._value)

    def _accepts(self, value: object) -> bool:
        if self._set:
            return bool(self._value == value)
        return isinstance(value, self._check)

    def _capture(self, value: object) -> None:
        self._value = cast(T, value)
        self._set = True

    def _reset(self) -> None:
        self._value = None
        self._set = False

    def __repr__(self) -> str:
        if self._set:
            return f"Placeholder({self._name}={self._value!r})"
        return f"Placeholder({self._name})"


class BytesMatching:
    """Matches ``bytes`` that the regular expression matches in full (``re.DOTALL``)."""

    def __init__(self, pattern: bytes) -> None:
        self.pattern = pattern
        self._regex = re.compile(pattern, re.DOTALL)

    def matches(self, data: object) -> bool:
        return isinstance(data, bytes) and self._regex.fullmatch(data) is not None

    def __repr__(self) -> str:
        return f"BytesMatching({self.pattern!r})"


@dataclasses.dataclass(frozen=True, slots=True)
class Advance:
    """Entry for a :meth:`Playbook.advance` call: the clock moved to ``until``."""

    seconds: float
    until: float


Entry = Any
"""An event, a command or an :class:`Advance`, possibly holding placeholders or matchers."""

_TraceItem = tuple[str, float, object]


def _is_event(entry: object) -> bool:
    return type(entry).__module__ == "sansproxy.events"


def _render(entry: Entry) -> str:
    if isinstance(entry, Advance):
        return f"-- advance({entry.seconds!r}) -> now={entry.until!r}"
    return (">> " if _is_event(entry) else "<< ") + repr(entry)


def _as_pattern(data: object) -> bytes:
    if isinstance(data, BytesMatching):
        return data.pattern
    return re.escape(cast(bytes, data))


def _merge_sends(entries: Iterable[Entry]) -> list[Entry]:
    """Join adjacent ``Send`` entries to one connection (plain bytes or matchers)."""
    out: list[Entry] = []
    for entry in entries:
        prev = out[-1] if out else None
        if isinstance(entry, Send) and isinstance(prev, Send) and _same(prev.conn, entry.conn):
            # `data` may hold a BytesMatching in an expected entry.
            first: object = prev.data
            second: object = entry.data
            if isinstance(first, bytes) and isinstance(second, bytes):
                data: object = first + second
            else:
                data = BytesMatching(_as_pattern(first) + _as_pattern(second))
            out[-1] = Send(conn=prev.conn, data=cast(bytes, data))
        else:
            out.append(entry)
    return out


def _same(a: object, b: object) -> bool:
    if a is b:
        return True
    if isinstance(a, Placeholder):
        if not a.is_set:
            return False  # unresolved: keep separate rather than guess
        a = a()
    if isinstance(b, Placeholder):
        if not b.is_set:
            return False
        b = b()
    return bool(a == b)


def _match(expected: Entry, actual: Entry) -> bool:
    """Compare one entry; placeholders are captured only if the whole entry matches."""
    if type(expected) is not type(actual):
        return False
    if not dataclasses.is_dataclass(expected):
        return bool(expected == actual)
    captures: list[tuple[Placeholder[Any], object]] = []
    for f in dataclasses.fields(expected):
        want = getattr(expected, f.name)
        got = getattr(actual, f.name)
        if isinstance(want, Placeholder):
            pending = [v for p, v in captures if p is want]
            if pending:
                if pending[0] != got:
                    return False
            elif not want._accepts(got):
                return False
            elif not want.is_set:
                captures.append((want, got))
        elif isinstance(want, BytesMatching):
            if not want.matches(got):
                return False
        elif dataclasses.is_dataclass(want) and not isinstance(want, type):
            if not _match(want, got):
                return False
        elif want != got:
            return False
    for placeholder, value in captures:
        placeholder._capture(value)
    return True


def _resolve(event: Entry) -> Entry:
    """Replace placeholders in an event's fields by their captured values."""
    changes: dict[str, object] = {}
    for f in dataclasses.fields(event):
        value = getattr(event, f.name)
        if isinstance(value, Placeholder):
            if not value.is_set:
                raise RuntimeError(
                    f"{value!r} used in {event!r} before an expected command captured it"
                )
            changes[f.name] = value()
    return dataclasses.replace(event, **changes) if changes else event


class Playbook:
    """A scripted conversation with the core: ``>>`` events in, ``<<`` commands out.

    Args:
        core: a :class:`~sansproxy.config.ProxyConfig` (a :class:`sansproxy.Proxy`
            is built from it) or a :data:`CoreFactory`.
        seed: seeds the ``random.Random`` given to each of the two cores.
        logs: compare ``Log`` commands too (otherwise they are dropped).
        access_logs: compare ``AccessLog`` commands too.
        start: the initial monotonic time.
    """

    def __init__(
        self,
        core: ProxyConfig | CoreFactory,
        *,
        seed: int = 1,
        logs: bool = False,
        access_logs: bool = False,
        start: float = 0.0,
    ) -> None:
        self.config: ProxyConfig | None = None
        if isinstance(core, ProxyConfig):
            self.config = core
            factory = _proxy_factory(core)
        else:
            factory = core
        self.seed = seed
        self.logs = logs
        self.access_logs = access_logs
        self.clock = SimClock(start)
        self._cores: tuple[Core, Core] = (
            factory(random.Random(seed)),
            factory(random.Random(seed)),
        )
        self._expected: list[Entry] = []
        self._actual: list[Entry] = []
        self._traces: tuple[list[_TraceItem], list[_TraceItem]] = ([], [])
        self._asserted = 0
        self._matched = 0
        self._problem: str | None = None
        self._errored = False

    # -- building the script ----------------------------------------------------------

    @property
    def core(self) -> Core:
        """The first of the two cores (for ``statistics()`` and the like)."""
        return self._cores[0]

    def __rshift__(self, event: Event) -> Playbook:
        """Feed ``event`` to the cores (after checking the commands expected so far)."""
        if not _is_event(event):
            raise TypeError(f"`>>` takes an event, got {event!r}")
        self._step(event, lambda: self._feed(_resolve(event)))
        return self

    def __lshift__(self, command: Command) -> Playbook:
        """Expect ``command`` as the next (merged, filtered) command of the core."""
        if _is_event(command) or isinstance(command, Advance):
            raise TypeError(f"`<<` takes a command, got {command!r}")
        if isinstance(command, Log) and not self.logs:
            raise ValueError("expecting Log commands needs Playbook(..., logs=True)")
        if isinstance(command, AccessLog) and not self.access_logs:
            raise ValueError("expecting AccessLog commands needs Playbook(..., access_logs=True)")
        self._expected.append(command)
        return self

    def accept(
        self,
        listener: int = 0,
        peer: tuple[str, int] = ("203.0.113.7", 50000),
        *,
        local: tuple[str, int] | None = None,
        tls: TlsInfo | None = None,
        not_tls: bool = False,
    ) -> ConnId:
        """Allocate a client id and feed ``ConnectionAccepted`` for it; returns the id."""
        if local is None:
            if self.config is not None and listener < len(self.config.listeners):
                spec = self.config.listeners[listener]
                local = (spec.host, spec.port)
            else:
                local = ("192.0.2.1", 8080)
        conn = self._cores[0].allocate_id()
        twin = self._cores[1].allocate_id()
        if conn != twin:
            self._nondeterministic(f"allocate_id() gave {conn!r} and {twin!r}")
        event = ConnectionAccepted(
            conn=conn, listener=listener, peer=peer, local=local, tls=tls, not_tls=not_tls
        )
        self._step(event, lambda: self._feed(event))
        return conn

    def advance(self, seconds: float) -> Playbook:
        """Let ``seconds`` pass, firing every timer that falls due, at its exact deadline."""
        if seconds < 0:
            raise ValueError("time does not go back")
        until = self.clock.now + seconds
        self._step(Advance(seconds, until), lambda: self._advance(seconds, until))
        return self

    # -- checking -----------------------------------------------------------------------

    def __bool__(self) -> bool:
        self.run()
        return True

    def run(self) -> None:
        """Check everything scripted so far; raise ``AssertionError`` with a diff if it differs."""
        if self._errored:
            raise AssertionError("this playbook already failed")
        self._sync()
        if self._problem is not None:
            self._errored = True
            raise AssertionError(self._report())
        self._asserted = len(self._expected)

    def actual(self) -> list[Entry]:
        """The filtered, merged entries observed so far (what ``<<`` is compared with)."""
        return self._view()

    def trace(self) -> list[_TraceItem]:
        """The complete raw trace of the first core: ``(kind, now, event_or_command)``."""
        return list(self._traces[0])

    def __del__(self) -> None:
        # Like mitmproxy: a playbook extended after its last assert was never checked.
        if not getattr(self, "_errored", True) and len(self._expected) > self._asserted:
            raise RuntimeError("Unfinished playbook: entries were added after the last assert")

    # -- machinery ----------------------------------------------------------------------

    def _step(self, entry: Entry, action: Callable[[], None]) -> None:
        """Check what is expected so far, then (if all matched) run ``action``."""
        self._sync()
        if self._problem is not None:
            self._expected.append(entry)  # shown in the diff, never fed
            return
        if isinstance(entry, Advance):
            self._expected.append(entry)
        try:
            action()
        except BaseException:
            self._errored = True
            raise
        if not isinstance(entry, Advance):
            # Show the event as actually fed (placeholders resolved).
            self._expected.append(self._actual[self._last_fed_index])

    _last_fed_index = -1

    def _call(self, kind: str, arg: object, call: Callable[[Core], list[Command]]) -> None:
        now = self.clock.now
        outputs: list[list[Command]] = []
        errors: list[BaseException | None] = []
        for core, trace in zip(self._cores, self._traces, strict=True):
            trace.append((kind, now, arg))
            try:
                cmds = call(core)
            except Exception as exc:  # noqa: BLE001 - compared between the twins, then re-raised
                errors.append(exc)
                outputs.append([])
                trace.append(("raised", now, type(exc).__name__))
                continue
            errors.append(None)
            outputs.append(list(cmds))
            trace.extend(("command", now, c) for c in cmds)
        first, second = errors
        if (first is None) != (second is None) or (
            first is not None and type(first) is not type(second)
        ):
            self._nondeterministic(f"only one twin raised: {first!r} / {second!r}")
        if first is not None:
            raise first
        if outputs[0] != outputs[1]:
            self._nondeterministic(self._trace_diff())
        self._actual.extend(outputs[0])

    def _feed(self, event: Event) -> None:
        self._actual.append(event)
        self._last_fed_index = len(self._actual) - 1
        self._call("event", event, lambda core: core.handle(event, self.clock.now))

    def _advance(self, seconds: float, until: float) -> None:
        self._actual.append(Advance(seconds, until))
        firings = 0
        while True:
            deadline = self._cores[0].next_deadline()
            twin = self._cores[1].next_deadline()
            if deadline != twin:
                self._nondeterministic(f"next_deadline() gave {deadline!r} and {twin!r}")
            if deadline is None or deadline > until:
                break
            firings += 1
            if firings > MAX_TIMER_FIRINGS:
                raise RuntimeError(
                    f"more than {MAX_TIMER_FIRINGS} timer firings before {until}: "
                    f"the core keeps a deadline at {deadline} after handle_timeout"
                )
            self.clock.advance_to(max(deadline, self.clock.now))
            self._call("timeout", self.clock.now, self._timeout_call(self.clock.now))
        self.clock.advance_to(until)

    @staticmethod
    def _timeout_call(now: float) -> Callable[[Core], list[Command]]:
        def call(core: Core) -> list[Command]:
            return core.handle_timeout(now)

        return call

    def _nondeterministic(self, detail: str) -> None:
        if self._problem is None or not self._problem.startswith("nondeterministic"):
            self._problem = "nondeterministic: the two cores built from seed " + (
                f"{self.seed} diverged\n{detail}"
            )

    def _trace_diff(self) -> str:
        a = [f"{k} @{t!r}: {x!r}" for k, t, x in self._traces[0]]
        b = [f"{k} @{t!r}: {x!r}" for k, t, x in self._traces[1]]
        return "\n".join(difflib.unified_diff(a, b, "first core", "second core", lineterm=""))

    def _keep(self, entry: Entry) -> bool:
        if isinstance(entry, Log):
            return self.logs
        if isinstance(entry, AccessLog):
            return self.access_logs
        return True

    def _view(self) -> list[Entry]:
        return _merge_sends(e for e in self._actual if self._keep(e))

    def _sync(self) -> None:
        """Compare expected with actual entries so far; record the first difference."""
        if self._problem is not None:
            return
        expected = _merge_sends(self._expected)
        actual = self._view()
        for i, (want, got) in enumerate(zip(expected, actual, strict=False)):
            if not _match(want, got):
                self._problem = f"mismatch at entry {i}"
                return
            self._matched = i + 1
        if len(expected) < len(actual):
            self._problem = (
                f"unexpected: the core produced {len(actual) - len(expected)} "
                "more entries than expected"
            )
        elif len(expected) > len(actual):
            self._problem = (
                f"unfinished: {len(expected) - len(actual)} expected entries were not produced"
            )

    def _report(self) -> str:
        actual = [_render(e) for e in self._view()]
        # Entries that matched are shown as they happened (placeholders and patterns filled in).
        expected = actual[: self._matched] + [
            _render(e) for e in _merge_sends(self._expected)[self._matched :]
        ]
        diff = list(difflib.ndiff(expected, actual))
        diff = list(_insert_marker(diff, len(_merge_sends(self._expected[: self._asserted]))))
        legend = "('- ' expected only, '+ ' actual only; >> event, << command, -- clock)"
        return f"Playbook failed: {self._problem}\n{legend}\n\n" + "\n".join(diff)


def _insert_marker(diff: Sequence[str], asserted: int) -> Iterator[str]:
    """Yield ``diff`` with a marker after the last entry an earlier assert accepted."""
    seen = 0
    marked = asserted == 0
    for line in diff:
        if not marked and seen == asserted and line[:2] in ("  ", "- "):
            yield "==== asserted until here ===="
            marked = True
        yield line
        if line[:2] in ("  ", "- "):
            seen += 1
    if not marked and asserted > 0:
        yield "==== asserted until here ===="


def _proxy_factory(config: ProxyConfig) -> CoreFactory:
    from sansproxy import Proxy

    def build(rng: random.Random) -> Core:
        return Proxy(config, rng=rng)

    return build
