"""Failover under a hypothesis state machine: many clients, N backends that fail and recover.

Each example builds a pool of 3 to 5 servers (some of them backups) with
active probes every second and passive ejection, and one route that retries
idempotent requests on timeouts and 5xx within a retry budget. Rules: clients
send GETs and POSTs (each named ``/sim/<rid>``), clients abort, a backend
changes mode (``ok``, ``slow``, ``down``, ``hang``, ``stall``, ``error``,
``reset_head``, ``reset_body``; see :mod:`tests.sim.world`), a backend
resets its connections or answers what it held, virtual time passes.

Invariants, after every step (from :class:`tests.sim.watch.WatchedNet`):

- no request goes to a server that ``upstream_status()`` calls unavailable
  (down or ejected), probes aside; the health account replayed from the logs
  agrees with ``upstream_status()`` after every call;
- a backup server is tried only while no primary is available;
- each request has at most one outcome (a response or a close), and a
  response carrying a backend's ``x-sim-target`` answers that very request.

At teardown, after every backend recovers and time passes:

- each request has exactly one outcome;
- no POST was tried again once a byte of it may have reached a backend, and
  no two backends parsed the same POST;
- the tries of a request stay within the route's ``tries`` (resends after a
  stale pooled connection aside);
- budgeted retries (all but the immediate failover after a failed connect)
  never exceed ``ratio * requests + min_retries`` in the budget's window;
- replaying the same steps from the same seed gives the identical trace.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from sansproxy.balancing import ALGORITHMS
from tests.sim.world import MODES, FleetSpec, World

specs = st.builds(
    FleetSpec,
    servers=st.integers(3, 5),
    backups=st.integers(0, 2),
    algorithm=st.sampled_from(ALGORITHMS),
    max_connections=st.sampled_from([0, 0, 2]),
    tries=st.integers(1, 4),
    budget_ratio=st.sampled_from([0.0, 0.2, 0.5]),
    budget_min=st.sampled_from([0, 1, 3]),
    budget_window=st.sampled_from([2.0, 10.0]),
    upstream_header=st.sampled_from([1.0, 4.0]),
)

SETTLE = 20.0
"""Seconds after healing every backend: more than any timeout, backoff and ejection."""


def check_world(world: World) -> None:
    """The invariants that hold after every step."""
    net = world.net
    net.check()
    assert not net.failures, "\n".join(net.failures[:10])
    for client in world.clients:
        assert len(client.outcomes) <= client.requests_sent
        rids = world.rids.get(client.conn, [])
        for rid, response in zip(rids, client.responses, strict=False):
            echoed = response.header(b"x-sim-target")
            if echoed is not None:
                assert echoed == f"/sim/{rid}".encode()


def check_end(world: World) -> None:
    """The invariants of a whole run, once every request is over."""
    net = world.net
    check_world(world)
    unfinished = {rid: got for rid, got in world.outcomes().items() if len(got) != 1}
    assert unfinished == {}
    breaches = net.audit(world.spec.tries)
    assert not breaches, "\n".join(breaches[:10])
    assert {rid: n for rid, n in net.post_deliveries().items() if n > 1} == {}


class FailoverMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.world: World | None = None

    @initialize(spec=specs, seed=st.integers(0, 2**32 - 1))
    def build(self, spec: FleetSpec, seed: int) -> None:
        self.world = World(spec, seed=seed)

    def _world(self) -> World:
        assert self.world is not None
        return self.world

    @rule(
        which=st.integers(0, 7),
        method=st.sampled_from(["GET", "POST"]),
        size=st.sampled_from([0, 100, 3000]),
    )
    def client_sends(self, which: int, method: str, size: int) -> None:
        self._world().step("send", which, method, size)

    @rule(count=st.integers(2, 6), post_every=st.integers(0, 3))
    def clients_send_a_burst(self, count: int, post_every: int) -> None:
        self._world().step("burst", count, post_every)

    @rule(which=st.integers(0, 7))
    def client_aborts(self, which: int) -> None:
        self._world().step("abort", which)

    @rule(index=st.integers(0, 4), mode=st.sampled_from(MODES))
    def backend_changes_mode(self, index: int, mode: str) -> None:
        world = self._world()
        world.step("set_mode", index % len(world.backends), mode)

    @rule(index=st.integers(0, 4))
    def backend_resets_connections(self, index: int) -> None:
        world = self._world()
        world.step("kill", index % len(world.backends))

    @rule(index=st.integers(0, 4))
    def backend_answers_held(self, index: int) -> None:
        world = self._world()
        held = [i for i, b in enumerate(world.backends) if b.held]
        if held:
            world.step("release", held[index % len(held)])

    @rule(seconds=st.sampled_from([0.05, 0.2, 0.6, 1.5, 3.0]))
    def time_passes(self, seconds: float) -> None:
        self._world().step("advance", seconds)

    @invariant()
    def decisions_are_sound(self) -> None:
        if self.world is not None:
            check_world(self.world)

    def teardown(self) -> None:
        world = self.world
        if world is None or world.net.crashed is not None:
            return
        world.heal(SETTLE)
        check_end(world)
        twin = world.replay()
        assert twin.net.trace == world.net.trace


# Half the profile's examples (the `fast` profile: 50, about 15 s on one core);
# HYPOTHESIS_PROFILE=deep hunts with 2500.
FailoverMachine.TestCase.settings = settings(
    max_examples=max(10, settings().max_examples // 2),
    stateful_step_count=40,
    suppress_health_check=[HealthCheck.too_slow],
)
TestFailoverMachine = FailoverMachine.TestCase
