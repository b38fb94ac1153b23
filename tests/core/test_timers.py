"""The timer table: one slot per owner, lazily pushed-back deadlines."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sansproxy._timers import TimerKind, TimerTable

KIND = TimerKind.CLIENT_HEADER


class Owner(int):
    """A timer owner that is its own tie-break number (owners are objects in the core)."""

    @property
    def order(self) -> int:
        return int(self)

    def on_timer(self, kind: TimerKind) -> None:
        raise AssertionError("the table never calls its owners")


operations = st.lists(
    st.tuples(
        st.sampled_from(["set", "cancel", "expire", "poll"]),
        st.integers(min_value=1, max_value=5),
        st.integers(min_value=0, max_value=20),
    ),
    max_size=60,
)


def _run(ops: list[tuple[str, int, int]], *, poll: bool) -> list[object]:
    table: TimerTable[Owner] = TimerTable()
    now = 0
    seen: list[object] = []
    for op, number, value in ops:
        owner = Owner(number)
        if op == "set":
            table.set(owner, KIND, now + value)
        elif op == "cancel":
            table.cancel(owner)
        elif op == "expire":
            now += value
            seen.append(table.expired(now))
        elif poll:
            table.next_deadline()
    seen.append(table.expired(10**6))
    return seen


@given(operations)
def test_firing_does_not_depend_on_polling_next_deadline(ops: list[tuple[str, int, int]]) -> None:
    assert _run(ops, poll=True) == _run(ops, poll=False)


@given(operations)
def test_every_due_timer_fires_exactly_once(ops: list[tuple[str, int, int]]) -> None:
    table: TimerTable[Owner] = TimerTable()
    live: dict[int, int] = {}
    now = 0
    for op, number, value in ops:
        owner = Owner(number)
        if op == "set":
            table.set(owner, KIND, now + value)
            live[owner] = now + value
        elif op == "cancel":
            table.cancel(owner)
            live.pop(owner, None)
        elif op == "expire":
            now += value
            due = sorted((d, o) for o, d in live.items() if d <= now)
            assert table.expired(now) == [(o, KIND) for _, o in due]
            for _, o in due:
                del live[o]
        else:
            deadline = table.next_deadline()
            if live:
                assert deadline is not None
                assert deadline <= min(live.values())
    assert len(table) == len(live)


def test_pushing_back_a_deadline_moves_it() -> None:
    table: TimerTable[Owner] = TimerTable()
    table.set(Owner(1), KIND, 5.0)
    table.set(Owner(1), KIND, 9.0)
    assert table.expired(6.0) == []
    assert table.expired(9.0) == [(Owner(1), KIND)]
    assert table.next_deadline() is None


def test_equal_deadlines_fire_in_owner_order_whatever_the_polling() -> None:
    # A cancelled-and-reset timer used to fire before or after its peer depending on
    # whether next_deadline() had cleaned the heap in between (found by replaying).
    ops = [("set", 1, 10), ("set", 2, 10), ("cancel", 1, 0), ("poll", 0, 0), ("set", 1, 10)]
    ops.append(("expire", 0, 10))
    assert _run(ops, poll=True) == _run(ops, poll=False) == [[(1, KIND), (2, KIND)], []]
