"""Playbooks of health: passive ejection, active probes, the status snapshot and its logs.

Probes start on the core's first turn; these playbooks give it that turn with
``handle_timeout(0)`` when the proxy is built (as the runner's ``start`` does), then
walk the probe timers on the playbook's clock. Probes use ``jitter = 0`` so that
every probe after the first comes exactly one interval after the previous one.
"""

from __future__ import annotations

import dataclasses
import random

from sansproxy import Proxy
from sansproxy.commands import Close, Log, OpenUpstream, PauseReading, Send
from sansproxy.events import (
    ConfigReloaded,
    ConnId,
    DataReceived,
    EofReceived,
    UpstreamConnected,
    UpstreamFailed,
)
from sansproxy.health import HealthChange
from tests.playbook import Core, Placeholder, Playbook

A = ("10.0.0.1", 8001)
B = ("10.0.0.2", 8002)
NAMES = {A: "a", B: "b"}

LISTENER = """
[[listeners]]
address = "192.0.2.1:8080"
"""

GET = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"
FWD = b"GET / HTTP/1.1\r\nhost: example.com\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
OK_CLOSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
OK_OUT = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
BROKEN = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n"

PROBE_A = (
    b"GET /health HTTP/1.1\r\nhost: 10.0.0.1:8001\r\nuser-agent: sansproxy-health-check\r\n"
    b"connection: close\r\n\r\n"
)

PASSIVE = """
[upstreams.app]
servers = ["http://10.0.0.1:8001", "http://10.0.0.2:8002"]
balance = "round_robin"
outlier = { consecutive_failures = 2, base_ejection = 10, max_ejection = 25 }
"""

ACTIVE = """
[upstreams.app]
servers = ["http://10.0.0.1:8001"]
health_check = { path = "/health", interval = 5, jitter = 0, timeout = 1, rise = 2, fall = 2 }
"""


def _started(config) -> object:
    """A core factory whose proxies have had their first turn (probes are armed)."""

    def build(rng: random.Random) -> Core:
        proxy = Proxy(config, rng=rng)
        assert proxy.handle_timeout(0.0) == []
        return proxy

    return build


def _served(pb: Playbook, *, refused: bool = False) -> list[str]:
    """A fresh client's GET; the servers it was sent to (the first may refuse)."""
    c = pb.accept()
    pb >> DataReceived(conn=c, data=GET)
    tried = []
    for attempt in range(2 if refused else 1):
        u = Placeholder(ConnId)
        host = Placeholder(str)
        port = Placeholder(int)
        assert pb << OpenUpstream(conn=u, host=host, port=port)
        tried.append(NAMES[host(), port()])
        if refused and attempt == 0:
            pb >> UpstreamFailed(conn=u, reason="connection refused")
    assert (
        pb
        >> UpstreamConnected(conn=u)
        << Send(conn=u, data=FWD)
        >> DataReceived(conn=u, data=OK_CLOSE)
        << Send(conn=c, data=OK_OUT)
        << Close(conn=u)
        >> EofReceived(conn=c)
        << Close(conn=c)
    )
    return tried


def _status(pb: Playbook):  # type: ignore[no-untyped-def]
    core = pb.core
    assert isinstance(core, Proxy)
    (pool,) = core.upstream_status()
    return pool


# ---------------------------------------------------------------------------------------------
# Passive checks
# ---------------------------------------------------------------------------------------------


def test_consecutive_connect_failures_eject_a_server_until_its_time_is_up(kit) -> None:
    pb = Playbook(kit.toml(LISTENER + PASSIVE))
    assert _served(pb, refused=True) == ["a", "b"]
    assert _served(pb, refused=True) == ["a", "b"]  # the second failure in a row ejects a
    assert [_served(pb)[0] for _ in range(4)] == ["b"] * 4
    pb.advance(9.9)
    assert _served(pb) == ["b"]
    pb.advance(0.1)
    assert [_served(pb)[0] for _ in range(4)] == ["a", "b", "a", "b"]
    kit.assert_clean(pb)


def test_a_success_between_failures_resets_the_count(kit) -> None:
    pb = Playbook(kit.toml(LISTENER + PASSIVE))
    assert _served(pb, refused=True) == ["a", "b"]
    assert _served(pb) == ["a"]
    assert _served(pb) == ["b"]
    assert _served(pb, refused=True) == ["a", "b"]
    assert _served(pb) == ["a"]  # one failure in a row: not ejected


def _refuse_on_a(pb: Playbook) -> None:
    """Requests until one goes to a: a refuses it and b serves it (b's serve the others)."""
    for _ in range(3):
        c = pb.accept()
        u, host, port = Placeholder(ConnId), Placeholder(str), Placeholder(int)
        assert pb >> DataReceived(conn=c, data=GET) << OpenUpstream(conn=u, host=host, port=port)
        refused = (host(), port()) == A
        if refused:
            first, u = u, Placeholder(ConnId)
            assert (
                pb
                >> UpstreamFailed(conn=first, reason="connection refused")
                << OpenUpstream(conn=u, host=B[0], port=B[1])
            )
        assert (
            pb
            >> UpstreamConnected(conn=u)
            << Send(conn=u, data=FWD)
            >> DataReceived(conn=u, data=OK_CLOSE)
            << Send(conn=c, data=OK_OUT)
            << Close(conn=u)
            >> EofReceived(conn=c)
            << Close(conn=c)
        )
        if refused:
            return
    raise AssertionError("round robin never chose a")


def test_an_ejection_lasts_longer_each_time_up_to_the_cap(kit) -> None:
    text = PASSIVE.replace("consecutive_failures = 2", "consecutive_failures = 1")
    pb = Playbook(kit.toml(LISTENER + text))
    lengths = []
    for _ in range(3):
        start = pb.clock.now
        _refuse_on_a(pb)
        until = _status(pb).servers[0].health.ejected_until
        assert until is not None
        lengths.append(until - start)
        # While a is ejected, b takes everything.
        assert [_served(pb)[0] for _ in range(2)] == ["b", "b"]
        assert pb.advance(until - start)
    # 10 s, then 20 s, then min(30, 25) s.
    assert lengths == [10.0, 20.0, 25.0]


SOLE = """
[upstreams.app]
servers = ["http://10.0.0.1:8001"]
"""


def test_a_sole_server_is_never_ejected_and_serves_the_moment_it_answers(kit) -> None:
    # The quick-mode shape: one backend, the default passive checks. Its backend restarts.
    pb = Playbook(kit.toml(LISTENER + SOLE), logs=True)
    refused = "upstream 10.0.0.1:8001 connect failed: connection refused"
    for _ in range(12):  # far more than consecutive_failures
        c = pb.accept()
        u = Placeholder(ConnId)
        (
            pb
            >> DataReceived(conn=c, data=GET)
            << OpenUpstream(conn=u, host=A[0], port=A[1])
            >> UpstreamFailed(conn=u, reason="connection refused")
            << Log(level="warning", message=refused, conn=u)
        )
        # A 502 for this request, and no "is down" line: the server stays in.
        kit.answered_with_error(pb, c, 502)
        pb.advance(0.1)
    health = _status(pb).servers[0].health
    assert (health.healthy, health.ejected_until, health.history) == (True, None, ())
    # The backend is back: the very next request reaches it, not a 503.
    c = pb.accept()
    kit.forward(pb, c, GET, FWD, server=A)


def test_of_two_servers_one_is_still_ejected_and_the_other_never(kit) -> None:
    text = LISTENER + PASSIVE.replace("max_ejection = 25", "max_ejected_percent = 100")
    pb = Playbook(kit.toml(text))
    for _ in range(2):  # both refuse every request
        c = pb.accept()
        pb >> DataReceived(conn=c, data=GET)
        for server in (A, B):
            u = Placeholder(ConnId)
            pb << OpenUpstream(conn=u, host=server[0], port=server[1])
            pb >> UpstreamFailed(conn=u, reason="connection refused")
        kit.answered_with_error(pb, c, 502)
    assert [s.health.healthy for s in _status(pb).servers] == [False, True]
    # b failed as often, but it is the last one available: it keeps getting the traffic.
    for _ in range(3):
        c = pb.accept()
        u = Placeholder(ConnId)
        pb >> DataReceived(conn=c, data=GET) << OpenUpstream(conn=u, host=B[0], port=B[1])
        pb >> UpstreamFailed(conn=u, reason="connection refused")
        kit.answered_with_error(pb, c, 502)
    assert _status(pb).servers[1].health.healthy
    assert _served(pb) == ["b"]


def test_ejection_and_return_are_logged_and_kept_in_the_history(kit) -> None:
    pb = Playbook(kit.toml(LISTENER + PASSIVE), logs=True)
    c = pb.accept()
    ua, ub = Placeholder(ConnId), Placeholder(ConnId)
    refused = "upstream 10.0.0.1:8001 connect failed: connection refused"
    assert (
        pb
        >> DataReceived(conn=c, data=GET)
        << OpenUpstream(conn=ua, host=A[0], port=A[1])
        >> UpstreamFailed(conn=ua, reason="connection refused")
        << Log(level="warning", message=refused, conn=ua)
        << OpenUpstream(conn=ub, host=B[0], port=B[1])
        >> UpstreamConnected(conn=ub)
        << Send(conn=ub, data=FWD)
        >> DataReceived(conn=ub, data=OK)
        << Send(conn=c, data=OK_OUT)
    )
    pb.advance(1)
    ua2 = Placeholder(ConnId)
    assert (
        pb
        >> DataReceived(conn=c, data=GET)
        << OpenUpstream(conn=ua2, host=A[0], port=A[1])
        >> UpstreamFailed(conn=ua2, reason="connection refused")
        << Log(level="warning", message=refused, conn=ua2)
        << Log(
            level="warning",
            message="upstream app: server 10.0.0.1:8001 is down: "
            "ejected for 10s after 2 consecutive failures (last: connect)",
        )
        # The pooled connection to b is idle: the request takes it.
        << Send(conn=ub, data=FWD)
        >> DataReceived(conn=ub, data=OK)
        << Send(conn=c, data=OK_OUT)
    )
    # The return is logged when the ejection ends, not when traffic next arrives.
    assert pb.advance(10) << Log(
        level="info", message="upstream app: server 10.0.0.1:8001 is up: ejection ended"
    )
    history = _status(pb).servers[0].health.history
    assert history == (
        HealthChange(
            at=1.0,
            server="10.0.0.1:8001",
            healthy=False,
            reason="ejected for 10s after 2 consecutive failures (last: connect)",
        ),
        HealthChange(at=11.0, server="10.0.0.1:8001", healthy=True, reason="ejection ended"),
    )


def test_configured_statuses_count_as_failures(kit) -> None:
    text = LISTENER + PASSIVE.replace("max_ejection = 25", "statuses = [500]")
    pb = Playbook(kit.toml(text))
    for _ in range(2):
        c = pb.accept()
        u = kit.forward(pb, c, GET, FWD, server=A)
        out = b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n"
        assert pb >> DataReceived(conn=u, data=BROKEN) << Send(conn=c, data=out)
        assert pb >> EofReceived(conn=c) << Close(conn=c) >> EofReceived(conn=u) << Close(conn=u)
        assert _served(pb) == ["b"]
    assert not _status(pb).servers[0].health.healthy
    assert [_served(pb)[0] for _ in range(3)] == ["b"] * 3


def test_every_server_down_is_503_or_a_last_resort_per_pool(kit) -> None:
    # Passive checks never take out the last server, so "all down" comes from the probes.
    text = ACTIVE.replace("rise = 2, fall = 2", "rise = 1, fall = 1")
    for last_resort in (False, True):
        setting = 'when_all_down = "use_all"\n' if last_resort else ""
        pb = _probing(kit, text + setting)
        p = _next_probe(pb)
        assert pb >> UpstreamFailed(conn=p, reason="connection refused")
        assert not _status(pb).servers[0].health.healthy
        c = pb.accept()
        if last_resort:
            # The server is down, yet the request is tried on it: it may have recovered.
            kit.forward(pb, c, GET, FWD, server=A)
        else:
            pb >> DataReceived(conn=c, data=GET)
            kit.answered_with_error(pb, c, 503, retry_after=1)


def test_at_most_the_configured_share_of_a_pool_is_ejected(kit) -> None:
    pb = Playbook(kit.toml(LISTENER + PASSIVE))  # default cap: half of two servers
    assert _served(pb, refused=True) == ["a", "b"]
    assert _served(pb, refused=True) == ["a", "b"]  # a is ejected
    c = pb.accept()
    u = kit.forward(pb, c, GET, FWD, server=B)
    assert pb >> EofReceived(conn=u) << Close(conn=u, abort=True)
    c2 = pb.accept()
    u2 = kit.forward(pb, c2, GET, FWD, server=B)
    assert pb >> EofReceived(conn=u2) << Close(conn=u2, abort=True)
    # b failed twice too, but ejecting it would take out more than half the pool.
    assert _status(pb).servers[1].health.healthy
    assert _status(pb).servers[1].health.consecutive_failures >= 2


# ---------------------------------------------------------------------------------------------
# Active probes
# ---------------------------------------------------------------------------------------------


def _probing(kit, text: str = ACTIVE, **kwargs) -> Playbook:  # type: ignore[no-untyped-def]
    return Playbook(_started(kit.toml(LISTENER + text)), **kwargs)


def _next_probe(pb: Playbook, server=A) -> Placeholder[ConnId]:  # type: ignore[no-untyped-def]
    """Let the clock run to the next probe; it opens a connection of its own to ``server``."""
    deadline = pb.core.next_deadline()
    assert deadline is not None
    p = Placeholder(ConnId)
    assert pb.advance(deadline - pb.clock.now) << OpenUpstream(
        conn=p, host=server[0], port=server[1]
    )
    return p


def _answer(
    pb: Playbook, p: Placeholder[ConnId], response: bytes, request: bytes = PROBE_A
) -> None:
    assert (
        pb
        >> UpstreamConnected(conn=p)
        << Send(conn=p, data=request)
        >> DataReceived(conn=p, data=response)
        << Close(conn=p)
    )


def test_first_probe_comes_within_the_first_interval_then_every_interval(kit) -> None:
    pb = _probing(kit)
    first = pb.core.next_deadline()
    assert first is not None
    assert 0 <= first < 5
    times = []
    for _ in range(3):
        p = _next_probe(pb)
        times.append(pb.clock.now)
        _answer(pb, p, OK)
    assert times == [first, first + 5, first + 10]
    # Probes are not traffic: the core holds nothing else.
    assert pb.core.statistics().timers == 0
    assert pb.core.statistics().upstream_connections == 0


def test_fall_failed_probes_take_a_server_down_and_rise_passing_ones_bring_it_back(kit) -> None:
    pb = _probing(kit, logs=True)
    p = _next_probe(pb)
    _answer(pb, p, BROKEN)
    assert _status(pb).servers[0].health.healthy  # one failure: not yet
    p = _next_probe(pb)
    assert (
        pb
        >> UpstreamConnected(conn=p)
        << Send(conn=p, data=PROBE_A)
        >> DataReceived(conn=p, data=BROKEN)
        << Close(conn=p)
        << Log(
            level="warning",
            message="upstream app: server 10.0.0.1:8001 is down: 2 failed probes: status 500",
        )
    )
    c = pb.accept()
    pb >> DataReceived(conn=c, data=GET)
    pb << Log(level="warning", message="upstream app: no server is available")
    kit.answered_with_error(pb, c, 503, retry_after=1)
    p = _next_probe(pb)
    _answer(pb, p, OK)
    assert not _status(pb).servers[0].health.healthy  # one pass: not yet
    p = _next_probe(pb)
    assert (
        pb
        >> UpstreamConnected(conn=p)
        << Send(conn=p, data=PROBE_A)
        >> DataReceived(conn=p, data=OK)
        << Close(conn=p)
        << Log(level="info", message="upstream app: server 10.0.0.1:8001 is up: 2 probes passed")
    )
    c = pb.accept()
    kit.forward(pb, c, GET, FWD, server=A)
    reasons = [(h.healthy, h.reason) for h in _status(pb).servers[0].health.history]
    assert reasons == [(False, "2 failed probes: status 500"), (True, "2 probes passed")]


def test_alternating_results_never_flip_the_state(kit) -> None:
    pb = _probing(kit)
    for response in (BROKEN, OK, BROKEN, OK, BROKEN, OK):
        _answer(pb, _next_probe(pb), response)
        assert _status(pb).servers[0].health.healthy


def test_refused_and_timed_out_probes_fail(kit) -> None:
    pb = _probing(kit, logs=True)
    p = _next_probe(pb)
    assert pb >> UpstreamFailed(conn=p, reason="connection refused")
    p = _next_probe(pb)
    assert pb >> UpstreamConnected(conn=p) << Send(conn=p, data=PROBE_A)
    assert pb.advance(0.9)
    assert (
        pb.advance(0.1)
        << Close(conn=p, abort=True)
        << Log(
            level="warning",
            message="upstream app: server 10.0.0.1:8001 is down: 2 failed probes: timed out",
        )
    )
    history = _status(pb).servers[0].health.history
    assert [h.reason for h in history] == ["2 failed probes: timed out"]


def test_probe_that_connects_but_never_answers_times_out_too(kit) -> None:
    pb = _probing(kit)
    for _ in range(2):
        p = _next_probe(pb)
        pb.advance(1) << Close(conn=p, abort=True)
        assert pb
    assert not _status(pb).servers[0].health.healthy


def test_probe_settings_shape_the_request_and_the_verdict(kit) -> None:
    text = """
[upstreams.app]
servers = ["http://10.0.0.1:8001"]
host_header = "app.internal"
health_check.method = "head"
health_check.path = "/ready?full=1"
health_check.expect_status = "200-204"
health_check.interval = 5
health_check.jitter = 0
health_check.timeout = 1
health_check.fall = 1
health_check.rise = 1
"""
    pb = _probing(kit, text)
    probe = (
        b"HEAD /ready?full=1 HTTP/1.1\r\nhost: app.internal\r\n"
        b"user-agent: sansproxy-health-check\r\nconnection: close\r\n\r\n"
    )
    _answer(pb, _next_probe(pb), b"HTTP/1.1 204 No Content\r\n\r\n", probe)
    assert _status(pb).servers[0].health.healthy
    _answer(pb, _next_probe(pb), b"HTTP/1.1 301 Moved\r\nLocation: /\r\n\r\n", probe)
    assert not _status(pb).servers[0].health.healthy
    history = _status(pb).servers[0].health.history
    assert history[-1].reason == "1 failed probe: status 301"


def test_body_contains_must_be_in_the_probe_response(kit) -> None:
    extra = 'rise = 1, fall = 1, host = "health.local", body_contains = "ready" }'
    text = ACTIVE.replace("rise = 2, fall = 2 }", extra)
    pb = _probing(kit, text)
    probe = PROBE_A.replace(b"10.0.0.1:8001", b"health.local")
    _answer(pb, _next_probe(pb), b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nnot yet, no", probe)
    assert [h.reason for h in _status(pb).servers[0].health.history] == [
        "1 failed probe: expected text not in the body"
    ]
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nall\r\n4\r\n rea\r\n3\r\ndy!\r\n0\r\n\r\n"
    )
    _answer(pb, _next_probe(pb), chunked, probe)
    assert _status(pb).servers[0].health.healthy


def test_a_server_down_by_probes_gets_no_traffic_but_its_probes(kit) -> None:
    text = """
[upstreams.app]
servers = ["http://10.0.0.1:8001", "http://10.0.0.2:8002"]
balance = "round_robin"
health_check = { interval = 5, jitter = 0, timeout = 1, rise = 1, fall = 1 }
"""
    pb = _probing(kit, text)

    def probe_round(up: set[str]) -> list[str]:
        """One interval of probes: the servers in ``up`` pass, the others refuse."""
        probed = []
        for _ in range(2):
            deadline = pb.core.next_deadline()
            assert deadline is not None
            p, host, port = Placeholder(ConnId), Placeholder(str), Placeholder(int)
            assert pb.advance(deadline - pb.clock.now) << OpenUpstream(conn=p, host=host, port=port)
            name = NAMES[host(), port()]
            probed.append(name)
            if name not in up:
                assert pb >> UpstreamFailed(conn=p, reason="connection refused")
                continue
            label = b"%s:%d" % (host().encode(), port())
            request = PROBE_A.replace(b"/health", b"/").replace(b"10.0.0.1:8001", label)
            assert pb >> UpstreamConnected(conn=p) << Send(conn=p, data=request)
            assert pb >> DataReceived(conn=p, data=OK) << Close(conn=p)
        return sorted(probed)

    assert probe_round({"b"}) == ["a", "b"]
    assert [s.health.healthy for s in _status(pb).servers] == [False, True]
    assert [_served(pb)[0] for _ in range(4)] == ["b"] * 4
    # a is still probed while down, and comes back when it passes.
    assert probe_round({"a", "b"}) == ["a", "b"]
    assert sorted(_served(pb)[0] for _ in range(4)) == ["a", "a", "b", "b"]


# ---------------------------------------------------------------------------------------------
# Snapshot and reload
# ---------------------------------------------------------------------------------------------


def test_upstream_status_shows_weights_load_queue_and_budget(kit) -> None:
    text = """
[upstreams.app]
servers = [
  { url = "http://10.0.0.1:8001", weight = 3, max_connections = 1 },
  { url = "http://10.0.0.2:8002", backup = true },
]
queue_size = 2
"""
    pb = Playbook(kit.toml(LISTENER + text))
    c1 = pb.accept()
    kit.forward(pb, c1, GET, FWD, server=A)
    c2 = pb.accept()
    assert pb >> DataReceived(conn=c2, data=GET) << PauseReading(conn=c2)
    pool = _status(pb)
    assert (pool.name, pool.algorithm, pool.queued) == ("app", "weighted_round_robin", 1)
    assert (pool.requests_in_window, pool.retries_in_window) == (2, 0)
    a, b = pool.servers
    assert (a.server, a.weight, a.effective_weight, a.backup, a.outstanding) == (
        "10.0.0.1:8001",
        3,
        3.0,
        False,
        1,
    )
    assert (b.server, b.weight, b.backup, b.outstanding) == ("10.0.0.2:8002", 1, True, 0)
    assert a.health.healthy
    assert a.health.history == ()


def test_reload_keeps_the_health_of_an_unchanged_pool(kit) -> None:
    text = LISTENER + PASSIVE
    pb = Playbook(kit.toml(text))
    _served(pb, refused=True)
    _served(pb, refused=True)  # a is ejected until t=10
    reloaded = dataclasses.replace(kit.toml(text), timeouts=kit.config(client_header=3).timeouts)
    assert pb >> ConfigReloaded(config=reloaded)
    assert not _status(pb).servers[0].health.healthy
    assert [_served(pb)[0] for _ in range(3)] == ["b"] * 3
    pb.advance(10)
    assert [_served(pb)[0] for _ in range(2)] == ["a", "b"]


def test_reload_restarts_probes_and_keeps_a_down_server_down(kit) -> None:
    pb = _probing(kit, ACTIVE.replace("fall = 2", "fall = 1"))
    _answer(pb, _next_probe(pb), BROKEN)
    assert not _status(pb).servers[0].health.healthy
    in_flight = _next_probe(pb)
    assert (
        pb
        >> ConfigReloaded(config=kit.toml(LISTENER + ACTIVE.replace("fall = 2", "fall = 1")))
        << Close(conn=in_flight, abort=True)
    )
    assert not _status(pb).servers[0].health.healthy
    _answer(pb, _next_probe(pb), OK)
    _answer(pb, _next_probe(pb), OK)
    assert _status(pb).servers[0].health.healthy


# ---------------------------------------------------------------------------------------------
# Determinism
# ---------------------------------------------------------------------------------------------


def _probe_run(kit, seed: int) -> list[tuple[str, float, object]]:  # type: ignore[no-untyped-def]
    """The complete trace (logs included) of five probes with jitter."""
    pb = _probing(kit, ACTIVE.replace("jitter = 0", "jitter = 0.5"), seed=seed)
    for response in (BROKEN, BROKEN, OK, OK, OK):
        _answer(pb, _next_probe(pb), response)
    return pb.trace()


def test_the_same_seed_replays_the_same_probe_schedule(kit) -> None:
    assert _probe_run(kit, 5) == _probe_run(kit, 5)
    assert _probe_run(kit, 5) != _probe_run(kit, 6)  # the jitter comes from the rng


def test_reload_that_changes_only_weights_keeps_health_and_applies_the_weights(kit) -> None:
    pb = Playbook(kit.toml(LISTENER + PASSIVE))
    _served(pb, refused=True)
    _served(pb, refused=True)  # a is ejected until t=10
    heavier = PASSIVE.replace(
        '"http://10.0.0.1:8001"', '{ url = "http://10.0.0.1:8001", weight = 3 }'
    )
    heavier = heavier.replace('balance = "round_robin"', 'balance = "weighted_round_robin"')
    assert pb >> ConfigReloaded(config=kit.toml(LISTENER + heavier))
    assert [_served(pb)[0] for _ in range(2)] == ["b"] * 2
    pb.advance(10)
    assert [_served(pb)[0] for _ in range(8)].count("a") == 6
