"""Property (d): the same seed and the same inputs give the identical command trace.

A random scenario (several clients, pipelined keep-alive traffic, aborts,
stalls, dying and refusing backends, time passing) is played twice on fresh
networks from the same seed; the two traces of every event, timeout and
command must be equal, element by element. The HTTP/2 variant plays the
scenarios of :data:`~tests.properties._strategies.h2_scenarios` (many streams
per connection, resets, GOAWAY, PINGs, closed windows).
"""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from tests.properties._strategies import (
    HEAD_TO_DEAD_BACKENDS,
    Scenario,
    h2_scenarios,
    play,
    scenarios,
    scenarios_with_head,
    wind_down,
)


def check_same_trace(scenario: Scenario, seed: int) -> None:
    first = play(scenario, seed=seed)
    wind_down(first)
    second = play(scenario, seed=seed)
    wind_down(second)
    assert first.net.trace == second.net.trace
    assert first.net.clock.now == second.net.clock.now


@given(scenario=scenarios, seed=st.integers(0, 2**32 - 1))
def test_same_seed_same_trace(scenario: Scenario, seed: int) -> None:
    check_same_trace(scenario, seed)


@example(scenario=HEAD_TO_DEAD_BACKENDS, seed=1)
@given(scenario=scenarios_with_head, seed=st.integers(0, 2**32 - 1))
def test_same_seed_same_trace_with_head(scenario: Scenario, seed: int) -> None:
    check_same_trace(scenario, seed)


@given(scenario=h2_scenarios, seed=st.integers(0, 2**32 - 1))
def test_same_seed_same_trace_over_http2(scenario: Scenario, seed: int) -> None:
    """HTTP/2 clients: HPACK state, stream ids, window updates and GOAWAYs replay exactly."""
    check_same_trace(scenario, seed)
