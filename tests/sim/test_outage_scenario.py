"""A scripted outage: many clients, three backends, one dies and comes back.

Sixteen keep-alive clients send GETs in a closed loop (each sends its next
request at the first tick after its previous answer). At ``KILL_AT`` backend
``10.0.1.2`` dies (its connections reset, new connects refused); at
``RESTART_AT`` it comes back. Active probes run every second (10 % jitter),
``fall = 3``, ``rise = 2``; passive checks eject after 3 failures in a row.

Expected, and asserted: every GET gets a 200 (in-flight requests on the dead
backend are retried elsewhere, connects to it fail over at once); the dead
backend is marked down by probes within ``fall * interval * (1 + jitter)``
and back within ``rise * interval * (1 + jitter)`` of its restart, after
``rise`` passing probes; it gets no request while down and traffic again
once up; every invariant of :mod:`tests.sim.watch` holds. The figures are
printed (``pytest -s``).
"""

from __future__ import annotations

from collections import Counter

from tests.sim.world import FleetSpec, World

SPEC = FleetSpec(
    servers=3,
    algorithm="round_robin",
    interval=1.0,
    jitter=0.1,
    probe_timeout=0.5,
    rise=2,
    fall=3,
    consecutive_failures=3,
    base_ejection=10.0,
    backend_delay=0.02,
)
CLIENTS = 16
TICK = 0.125
KILL_AT = 5.0
RESTART_AT = 20.0
END_AT = 30.0
DEAD = "10.0.1.2:80"


def run_outage(seed: int) -> World:
    """Play the script; the kill and the restart fall between a tick's requests and answers."""
    world = World(SPEC, seed=seed, max_clients=CLIENTS)
    for tick in range(round(END_AT / TICK)):
        world.step("burst", CLIENTS, 0)
        world.step("advance", TICK / 10)  # the requests are in flight (answers take 0.02 s)
        if tick == round(KILL_AT / TICK):
            world.step("set_mode", 1, "down")
        elif tick == round(RESTART_AT / TICK):
            world.step("set_mode", 1, "ok")
        world.step("advance", TICK - TICK / 10)
    world.step("advance", 5.0)  # the last answers
    return world


def test_one_of_three_backends_dies_and_comes_back() -> None:
    world = run_outage(seed=7)
    net = world.net
    interval, jitter = SPEC.interval, SPEC.jitter

    statuses = Counter(r.status for c in world.clients for r in c.responses)
    outcomes = Counter(tuple(got) for got in world.outcomes().values())
    sent = sum(c.requests_sent for c in world.clients)
    failed = sent - statuses[200]

    changes = [(t, up, why) for t, server, up, why in net.health_changes if server == DEAD]
    first_down = next(t for t, up, _ in changes if not up and t >= KILL_AT)
    probes_down = next(t for t, up, why in changes if "failed probes" in why and t >= KILL_AT)
    back_up, why_up = next((t, why) for t, up, why in changes if up and t >= RESTART_AT)
    kinds = Counter(t.kind for tries in net.tries.values() for t in tries)
    served = Counter(
        ("before" if t.at < KILL_AT else "outage" if t.at < back_up else "after", t.server)
        for tries in net.tries.values()
        for t in tries
    )

    print(f"\nrequests sent {sent}, answered 200: {statuses[200]}, failed: {failed}")
    print(f"tries by kind: {dict(kinds)}; health probes sent: {net.probes}")
    print(f"killed at {KILL_AT}: marked down after {first_down - KILL_AT:.3f} s ({changes})")
    print(f"  by probes after {probes_down - KILL_AT:.3f} s")
    print(f"restarted at {RESTART_AT}: back up after {back_up - RESTART_AT:.3f} s ({why_up})")
    print(f"tries per period and server: {dict(sorted(served.items()))}")

    assert sent > 3000
    assert failed == 0
    assert outcomes == {("response",): sent}
    assert net.audit(SPEC.tries) == []
    assert net.failures == []
    assert first_down - KILL_AT <= probes_down - KILL_AT <= SPEC.fall * interval * (1 + jitter)
    assert why_up == f"{SPEC.rise} probes passed"
    assert back_up - RESTART_AT <= SPEC.rise * interval * (1 + jitter)
    # The requests in flight on the dead backend were tried again (a resend on a fresh
    # connection, then a failover when that connect was refused); nothing else went to
    # it while it was down (net.failures checks every decision).
    assert kinds["resend"] + kinds["retry"] > 0
    assert served["outage", DEAD] <= CLIENTS
    assert served["after", DEAD] > 0.9 * served["after", "10.0.1.1:80"]
