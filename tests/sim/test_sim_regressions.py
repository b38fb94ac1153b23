"""Failures the failover state machine found, replayed step by step (each fixed in the core)."""

from __future__ import annotations

from tests.sim.test_failover_sim import check_end, check_world
from tests.sim.world import FleetSpec, World


def test_stale_resend_does_not_go_to_a_server_marked_down() -> None:
    # A GET waits on a pooled connection to a backend that hangs; probes time
    # out and mark the backend down; then the backend dies and resets the
    # connection. The core took that for a stale pooled connection and resent
    # the GET to the same server, now down. It must retry elsewhere instead.
    spec = FleetSpec(servers=3, algorithm="round_robin", upstream_header=4.0)
    world = World(spec, seed=0)
    world.step("send", 0, "GET", 0)  # rid 0 on 10.0.1.1; the connection is pooled
    world.step("set_mode", 0, "hang")
    world.step("send", 0, "GET", 0)  # rid 1 on 10.0.1.2
    world.step("advance", 1.5)
    world.step("send", 0, "GET", 0)  # rid 2 on 10.0.1.3
    world.step("send", 0, "GET", 0)  # rid 3 on the pooled connection to 10.0.1.1: held
    world.step("advance", 1.5)
    assert not world.net.available["10.0.1.1:80"]
    world.step("set_mode", 0, "down")
    world.step("advance", 0.2)  # the retry's backoff
    check_world(world)
    assert [t.server for t in world.net.tries[3]] == ["10.0.1.1:80", "10.0.1.2:80"]
    assert [t.kind for t in world.net.tries[3]] == ["first", "retry"]
    client = world.clients[0]
    assert [r.status for r in client.responses] == [200, 200, 200, 200]
    world.heal(20.0)
    check_end(world)
