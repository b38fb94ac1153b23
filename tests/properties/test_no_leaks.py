"""Property (e): once every connection is closed, the core holds nothing.

After a random scenario, every client closes and virtual time runs until the
proxy asks for no more wake-ups. Then no connection may be open, and
``statistics()`` must show empty tables: no client or upstream connection, no
idle pooled connection, no exchange and no timer (``next_deadline()`` is
None). This guards against the leaks of h2 #1163 and hypercorn PR #309.
"""

from __future__ import annotations

from hypothesis import example, given

from tests.properties._strategies import (
    HEAD_TO_DEAD_BACKENDS,
    Scenario,
    play,
    scenarios,
    scenarios_with_head,
    wind_down,
)


def check_nothing_left(scenario: Scenario) -> None:
    world = play(scenario)
    wind_down(world)
    net = world.net
    net.check()
    assert net.open_connections() == []
    stats = net.proxy.statistics()
    assert stats.client_connections == 0
    assert stats.upstream_connections == 0
    assert stats.idle_upstream_connections == 0
    assert stats.exchanges == 0
    assert stats.timers == 0
    assert net.proxy.next_deadline() is None
    for client in world.clients:
        assert client.closed
        assert len(client.outcomes) == client.requests_sent


@given(scenario=scenarios)
def test_nothing_is_left_after_everything_closed(scenario: Scenario) -> None:
    check_nothing_left(scenario)


@example(scenario=HEAD_TO_DEAD_BACKENDS)
@given(scenario=scenarios_with_head)
def test_nothing_is_left_after_everything_closed_with_head(scenario: Scenario) -> None:
    check_nothing_left(scenario)
