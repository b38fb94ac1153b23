"""A pool of failing backends and many clients around one proxy, driven by replayable steps.

A :class:`World` is a :class:`~tests.sim.watch.WatchedNet` plus a fleet of
backends whose behaviour is switched by a *mode*, and up to
:attr:`World.max_clients` keep-alive clients. Every request is named
``/sim/<rid>`` (a global counter), so each try can be traced to it; backends
echo the target in ``x-sim-target``.

Modes (a backend's behaviour for new work from then on):

``ok``
    answers 200 at once (health probes included).
``slow``
    answers 200 after :data:`SLOW_DELAY` seconds.
``down``
    the process died: open connections are reset, new connects refused.
``hang``
    reads requests and never answers them (until :meth:`World.release`).
``stall``
    stops reading its sockets: request bytes wait in the network.
``error``
    answers 503 (probes fail, passive checks count it).
``reset_head`` / ``reset_body``
    resets each connection part-way through the response head / body.

Every change to the world is a method call recorded in :attr:`World.steps`;
:meth:`World.replay` plays the same steps on a fresh world, which must give
the same trace when the seed is the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import h11

from sansproxy.config import (
    HeaderPolicy,
    Limits,
    Listener,
    LogSettings,
    ProxyConfig,
    RetryBudgetSettings,
    RetryPolicy,
    Route,
    Server,
    Timeouts,
    Upstream,
)
from sansproxy.health import ActiveCheck, OutlierDetection
from sansproxy.routing import RouteMatch
from tests.sim.watch import WatchedNet
from tests.simnet import FakeBackend, FakeClient, Handler, Reply

__all__ = ["MODES", "SLOW_DELAY", "FleetSpec", "World", "fleet_config"]

MODES = ("ok", "slow", "down", "hang", "stall", "error", "reset_head", "reset_body")
SLOW_DELAY = 0.4
BODY = b"b" * 200
DIE_AFTER = {"reset_head": 10, "reset_body": 150}
"""Bytes of the reply written before the reset (a response head is about 90 bytes)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FleetSpec:
    """The shape of one simulation: servers, algorithm, checks, retries."""

    servers: int = 3
    backups: int = 0
    algorithm: str = "round_robin"
    max_connections: int = 0
    tries: int = 3
    budget_ratio: float = 0.2
    budget_min: int = 3
    budget_window: float = 10.0
    upstream_header: float = 1.0
    interval: float = 1.0
    jitter: float = 0.2
    probe_timeout: float = 0.5
    rise: int = 2
    fall: int = 2
    consecutive_failures: int = 3
    base_ejection: float = 3.0
    backend_delay: float = 0.0


def hosts(spec: FleetSpec) -> list[tuple[str, int]]:
    """The backend addresses of a fleet."""
    return [(f"10.0.1.{i + 1}", 80) for i in range(spec.servers)]


def fleet_config(spec: FleetSpec) -> ProxyConfig:
    """One listener, one upstream ``app`` of the spec's servers (the last ``backups`` are
    backups), active and passive checks, and one route retrying idempotent requests on
    timeouts and 5xx."""
    servers = tuple(
        Server(
            host=host,
            port=port,
            backup=i >= spec.servers - spec.backups,
            max_connections=spec.max_connections,
        )
        for i, (host, port) in enumerate(hosts(spec))
    )
    upstream = Upstream(
        name="app",
        servers=servers,
        balance=spec.algorithm,
        hash_on="client_ip" if spec.algorithm == "ring_hash" else None,
        queue_size=4 if spec.max_connections else 0,
        queue_timeout=1.0,
        health_check=ActiveCheck(
            path="/health",
            interval=spec.interval,
            jitter=spec.jitter,
            timeout=spec.probe_timeout,
            rise=spec.rise,
            fall=spec.fall,
        ),
        outlier=OutlierDetection(
            consecutive_failures=spec.consecutive_failures,
            statuses=frozenset({502, 503, 504}),
            base_ejection=spec.base_ejection,
            max_ejection=4 * spec.base_ejection,
            max_ejected_fraction=0.5,
        ),
        retry_budget=RetryBudgetSettings(
            ratio=spec.budget_ratio, window=spec.budget_window, min_retries=spec.budget_min
        ),
    )
    route = Route(
        name="all",
        match=RouteMatch(),
        upstream="app",
        retry=RetryPolicy(
            tries=spec.tries, on=frozenset({"timeout", "502", "503", "504"}), backoff_max=0.1
        ),
    )
    return ProxyConfig(
        listeners=(Listener(host="127.0.0.1", port=8080, upstream="app"),),
        upstreams={"app": upstream},
        routes=(route,),
        limits=Limits(retry_buffer_bytes=1024),
        timeouts=Timeouts(
            client_header=5.0,
            client_keepalive=10.0,
            client_body=5.0,
            upstream_connect=0.5,
            upstream_header=spec.upstream_header,
            upstream_body=1.0,
            upstream_keepalive=3.0,
            drain=5.0,
        ),
        headers=HeaderPolicy(),
        logging=LogSettings(),
    )


class World:
    """A watched network, a fleet of backends with modes, and the clients.

    Args:
        spec: the fleet's shape.
        seed: the proxy's rng seed.
        max_clients: clients opened at most (each has one request at a time).
    """

    def __init__(self, spec: FleetSpec, *, seed: int, max_clients: int = 6) -> None:
        self.spec = spec
        self.seed = seed
        self.max_clients = max_clients
        self.net = WatchedNet(fleet_config(spec), seed=seed)
        self.backends: list[FakeBackend] = []
        self.modes: list[str] = []
        for index, (host, port) in enumerate(hosts(spec)):
            backend = self.net.add_backend(host, port, self._handler(index))
            backend.delay = spec.backend_delay
            self.backends.append(backend)
            self.modes.append("ok")
        self.clients: list[FakeClient] = []
        self.rids: dict[int, list[int]] = {}
        """Client conn -> the rids it sent, in order."""
        self.steps: list[tuple[str, tuple[object, ...]]] = []
        self._next_rid = 0
        self.net.run()

    def _handler(self, index: int) -> Handler:
        def handle(request: h11.Request, body: bytes) -> Reply:
            status = 503 if self.modes[index] == "error" else 200
            head: list[tuple[bytes | str, bytes | str]] = [
                ("x-sim-target", bytes(request.target)),
                ("content-length", str(len(BODY))),
            ]
            return status, head, [BODY]

        return handle

    # -- steps (each recorded, so a run can be replayed) -------------------------------------

    def step(self, name: str, *args: object) -> None:
        """Do step ``name`` (a method below) and record it."""
        self.steps.append((name, args))
        getattr(self, name)(*args)

    def send(self, which: int, method: str, size: int) -> None:
        """An idle client (number ``which`` of them, or a new one) sends a request."""
        self._send(which, method, size)
        self.net.run()

    def burst(self, count: int, post_every: int) -> None:
        """Up to ``count`` idle (or new) clients send at once; every ``post_every``-th a POST.

        ``post_every=0``: GETs only.
        """
        for number in range(count):
            post = post_every > 0 and number % post_every == post_every - 1
            if not self._send(0, "POST" if post else "GET", 100):
                break
        self.net.run()

    def _send(self, which: int, method: str, size: int) -> bool:
        idle = [c for c in self.clients if c.idle]
        if which < len(idle):
            client = idle[which]
        elif len(self.clients) < self.max_clients:
            client = self.net.client(peer=(f"203.0.113.{len(self.clients) + 1}", 40000))
            self.clients.append(client)
        else:
            return False
        rid = self._next_rid
        self._next_rid += 1
        self.net.methods[rid] = method
        self.rids.setdefault(client.conn, []).append(rid)
        target = f"/sim/{rid}"
        if method == "POST":
            client.request("POST", target, body=b"p" * size)
        else:
            client.request(method, target)
        return True

    def abort(self, which: int) -> None:
        """A client with a request in flight resets its connection."""
        waiting = [c for c in self.clients if c.waiting and not c.closed]
        if waiting:
            waiting[which % len(waiting)].abort()
            self.net.run()

    def set_mode(self, index: int, mode: str) -> None:
        """Switch backend ``index`` to ``mode`` (see the module docstring)."""
        backend = self.backends[index]
        self.modes[index] = mode
        backend.refuse = mode == "down"
        backend.hold = mode == "hang"
        backend.reading = mode != "stall"
        backend.delay = SLOW_DELAY if mode == "slow" else self.spec.backend_delay
        backend.die_after = DIE_AFTER.get(mode)
        if mode == "down":
            backend.kill()
            backend.held.clear()
        self.net.run()

    def kill(self, index: int) -> None:
        """Backend ``index`` resets every connection it has open (it stays up)."""
        self.backends[index].kill()
        self.net.run()

    def release(self, index: int) -> None:
        """Backend ``index`` answers every request it held (as its mode now says)."""
        backend = self.backends[index]
        while backend.held:
            backend.release(0)
        self.net.run()

    def advance(self, seconds: float) -> None:
        """Let virtual time pass."""
        self.net.advance(seconds)

    # -- ending and replaying -------------------------------------------------------------------

    def heal(self, settle: float) -> None:
        """Every backend back to ``ok`` (held requests answered), then ``settle`` seconds."""
        for index in range(len(self.backends)):
            self.step("set_mode", index, "ok")
            self.step("release", index)
        self.step("advance", settle)

    def replay(self) -> World:
        """A fresh world with the same spec and seed, after the same steps."""
        twin = World(self.spec, seed=self.seed, max_clients=self.max_clients)
        for name, args in self.steps:
            twin.step(name, *args)
        return twin

    def outcomes(self) -> dict[int, Sequence[str]]:
        """rid -> what its client got: ``[]`` (nothing yet), ``["response"]`` or ``["closed"]``."""
        found: dict[int, Sequence[str]] = {}
        for client in self.clients:
            for position, rid in enumerate(self.rids.get(client.conn, [])):
                found[rid] = client.outcomes[position : position + 1]
        return found
