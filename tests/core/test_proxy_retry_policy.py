"""Playbooks of a route's retry policy: what is tried again, where, when, and how often.

A failed connect fails over at once (nothing was sent); any other retry waits a
jittered backoff drawn from the core's rng, goes to a server the request has not
tried, stays within the route's ``tries`` and the upstream's retry budget, and is
never made for a non-idempotent request once a byte of it may have reached a backend.
``test_proxy_retries.py`` covers resending on a stale pooled connection.
"""

from __future__ import annotations

from sansproxy.commands import Close, Log, OpenUpstream, PauseReading, ResumeReading, Send
from sansproxy.events import (
    ConnectionLost,
    ConnId,
    DataReceived,
    EofReceived,
    UpstreamConnected,
    UpstreamFailed,
    Written,
)
from tests.playbook import Placeholder, Playbook

A = ("10.0.0.1", 8001)
B = ("10.0.0.2", 8002)
C = ("10.0.0.3", 8003)

CONFIG = """
[[listeners]]
address = "192.0.2.1:8080"

[upstreams.app]
servers = ["http://10.0.0.1:8001", "http://10.0.0.2:8002", "http://10.0.0.3:8003"]
balance = "round_robin"
outlier = false
retry_budget = {budget}

[[routes]]
path_prefix = "/"
upstream = "app"
retries = {retries}
"""

GET = b"GET /x HTTP/1.1\r\nHost: example.com\r\n\r\n"
FWD = b"GET /x HTTP/1.1\r\nhost: example.com\r\n\r\n"
POST = b"POST /x HTTP/1.1\r\nHost: example.com\r\nContent-Length: 3\r\n\r\nabc"
FWD_POST = b"POST /x HTTP/1.1\r\nhost: example.com\r\ncontent-length: 3\r\n\r\nabc"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
OK_OUT = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
UNAVAILABLE = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy"
UNAVAILABLE_OUT = b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 4\r\n\r\nbusy"


def _pb(
    kit,
    retries: str = "{}",
    budget: str = "{ min_retries = 100 }",
    **kwargs,  # type: ignore[no-untyped-def]
) -> Playbook:
    text = CONFIG.replace("{retries}", retries).replace("{budget}", budget)
    return Playbook(kit.toml(text), **kwargs)


def _backoff(pb: Playbook, cap: float) -> float:
    """The retry waits a backoff of at most ``cap`` seconds; run the clock to its end."""
    deadline = pb.core.next_deadline()
    assert deadline is not None
    delay = deadline - pb.clock.now
    assert 0 <= delay <= cap
    return delay


def _finish(kit, pb: Playbook, c: ConnId, u: Placeholder[ConnId], response: bytes = OK) -> None:
    out = OK_OUT if response == OK else UNAVAILABLE_OUT
    assert (
        pb
        >> DataReceived(conn=u, data=response)
        << Send(conn=c, data=out)
        >> EofReceived(conn=c)
        << Close(conn=c)
        >> EofReceived(conn=u)
        << Close(conn=u)
    )
    kit.assert_clean(pb)


# ---------------------------------------------------------------------------------------------
# Connect failures and resets
# ---------------------------------------------------------------------------------------------


def test_connect_failure_fails_over_at_once_even_without_budget(kit) -> None:
    pb = _pb(kit, budget="{ ratio = 0, min_retries = 0 }")
    c = pb.accept()
    ua, ub = Placeholder(ConnId), Placeholder(ConnId)
    assert (
        pb
        >> DataReceived(conn=c, data=POST)
        << OpenUpstream(conn=ua, host=A[0], port=A[1])
        >> UpstreamFailed(conn=ua, reason="connection refused")
        # No backoff: nothing was sent, so the next server is asked in the same turn.
        << OpenUpstream(conn=ub, host=B[0], port=B[1])
        >> UpstreamConnected(conn=ub)
        << Send(conn=ub, data=FWD_POST)
    )
    _finish(kit, pb, c, ub)


def test_get_reset_before_the_response_is_retried_on_another_server_after_a_backoff(kit) -> None:
    pb = _pb(kit, retries="{ backoff_base = 0.5, backoff_max = 0.5 }")
    c = pb.accept()
    ua = kit.forward(pb, c, GET, FWD, server=A)
    assert pb >> Written(conn=ua, nbytes=len(FWD)) >> ConnectionLost(conn=ua, reason="reset")
    delay = _backoff(pb, 0.5)
    ub = Placeholder(ConnId)
    assert pb.advance(delay) << OpenUpstream(conn=ub, host=B[0], port=B[1])
    assert pb >> UpstreamConnected(conn=ub) << Send(conn=ub, data=FWD)
    _finish(kit, pb, c, ub)


def test_get_closed_before_the_response_is_retried_too(kit) -> None:
    pb = _pb(kit)
    c = pb.accept()
    ua = kit.forward(pb, c, GET, FWD, server=A)
    assert pb >> EofReceived(conn=ua) << Close(conn=ua, abort=True)
    ub = Placeholder(ConnId)
    assert pb.advance(_backoff(pb, 0.025)) << OpenUpstream(conn=ub, host=B[0], port=B[1])


def test_post_reset_after_bytes_were_written_is_not_retried(kit) -> None:
    pb = _pb(kit)
    c = pb.accept()
    ua = kit.forward(pb, c, POST, FWD_POST, server=A)
    assert pb >> Written(conn=ua, nbytes=1)
    pb >> ConnectionLost(conn=ua, reason="reset")
    kit.answered_with_error(pb, c, 502)
    assert pb.core.next_deadline() is None  # no backoff timer: nothing will be resent
    kit.assert_clean(pb)


def test_post_reset_before_any_byte_left_is_retried(kit) -> None:
    pb = _pb(kit)
    c = pb.accept()
    ua = kit.forward(pb, c, POST, FWD_POST, server=A)
    assert pb >> ConnectionLost(conn=ua, reason="reset")  # no Written: nothing reached A
    ub = Placeholder(ConnId)
    assert pb.advance(_backoff(pb, 0.025)) << OpenUpstream(conn=ub, host=B[0], port=B[1])
    assert pb >> UpstreamConnected(conn=ub) << Send(conn=ub, data=FWD_POST)
    _finish(kit, pb, c, ub)


def test_configured_methods_may_retry_a_post_after_a_reset(kit) -> None:
    pb = _pb(kit, retries='{ methods = ["GET", "POST"] }')
    c = pb.accept()
    ua = kit.forward(pb, c, POST, FWD_POST, server=A)
    assert pb >> Written(conn=ua, nbytes=len(FWD_POST)) >> ConnectionLost(conn=ua, reason="reset")
    ub = Placeholder(ConnId)
    assert pb.advance(_backoff(pb, 0.025)) << OpenUpstream(conn=ub, host=B[0], port=B[1])


def test_a_held_upload_waits_out_the_backoff_unread(kit) -> None:
    pb = _pb(kit)
    c = pb.accept()
    head = b"PUT /x HTTP/1.1\r\nHost: example.com\r\nContent-Length: 6\r\n\r\n"
    fwd = b"PUT /x HTTP/1.1\r\nhost: example.com\r\ncontent-length: 6\r\n\r\n"
    ua = kit.forward(pb, c, head + b"abc", fwd + b"abc", server=A)
    ub = Placeholder(ConnId)
    assert (
        pb
        >> ConnectionLost(conn=ua, reason="reset")
        << PauseReading(conn=c)
        >> DataReceived(conn=c, data=b"def")  # already on its way when reading paused
    )
    assert (
        pb.advance(_backoff(pb, 0.025))
        << ResumeReading(conn=c)
        << OpenUpstream(conn=ub, host=B[0], port=B[1])
        >> UpstreamConnected(conn=ub)
        << Send(conn=ub, data=fwd + b"abcdef")
    )
    _finish(kit, pb, c, ub)


# ---------------------------------------------------------------------------------------------
# Conditions: 502/503/504 and timeouts, for idempotent requests only
# ---------------------------------------------------------------------------------------------


def test_on_503_retries_a_get_on_another_server(kit) -> None:
    pb = _pb(kit, retries='{ on = ["503"] }')
    c = pb.accept()
    ua = kit.forward(pb, c, GET, FWD, server=A)
    ub = Placeholder(ConnId)
    assert pb >> DataReceived(conn=ua, data=UNAVAILABLE) << Close(conn=ua, abort=True)
    assert pb.advance(_backoff(pb, 0.025)) << OpenUpstream(conn=ub, host=B[0], port=B[1])
    assert pb >> UpstreamConnected(conn=ub) << Send(conn=ub, data=FWD)
    _finish(kit, pb, c, ub)


def test_on_503_does_not_retry_a_post(kit) -> None:
    pb = _pb(kit, retries='{ on = ["503"] }')
    c = pb.accept()
    ua = kit.forward(pb, c, POST, FWD_POST, server=A)
    _finish(kit, pb, c, ua, UNAVAILABLE)


def test_a_503_is_passed_on_unless_the_route_lists_it(kit) -> None:
    pb = _pb(kit, retries='{ on = ["502", "504"] }')
    c = pb.accept()
    ua = kit.forward(pb, c, GET, FWD, server=A)
    _finish(kit, pb, c, ua, UNAVAILABLE)


def test_the_last_tries_503_reaches_the_client(kit) -> None:
    pb = _pb(kit, retries='{ on = ["503"], tries = 2 }')
    c = pb.accept()
    ua = kit.forward(pb, c, GET, FWD, server=A)
    ub = Placeholder(ConnId)
    assert pb >> DataReceived(conn=ua, data=UNAVAILABLE) << Close(conn=ua, abort=True)
    assert pb.advance(_backoff(pb, 0.025)) << OpenUpstream(conn=ub, host=B[0], port=B[1])
    assert pb >> UpstreamConnected(conn=ub) << Send(conn=ub, data=FWD)
    # Two tries used up: b's answer is the answer, although c was never asked.
    _finish(kit, pb, c, ub, UNAVAILABLE)


def test_on_timeout_retries_a_get_whose_response_never_came(kit) -> None:
    text = CONFIG.replace("{retries}", '{ on = ["timeout"] }').replace("{budget}", "{}")
    pb = Playbook(kit.toml(text + "[timeouts]\nupstream_header = 3\n"))
    c = pb.accept()
    ua = kit.forward(pb, c, GET, FWD, server=A)
    assert pb.advance(3) << Close(conn=ua, abort=True)
    ub = Placeholder(ConnId)
    assert pb.advance(_backoff(pb, 0.025)) << OpenUpstream(conn=ub, host=B[0], port=B[1])


def test_a_response_timeout_is_504_unless_the_route_lists_it(kit) -> None:
    text = CONFIG.replace("{retries}", "{}").replace("{budget}", "{}")
    pb = Playbook(kit.toml(text + "[timeouts]\nupstream_header = 3\n"))
    c = pb.accept()
    ua = kit.forward(pb, c, GET, FWD, server=A)
    pb.advance(3) << Close(conn=ua, abort=True)
    kit.answered_with_error(pb, c, 504)
    kit.assert_clean(pb)


# ---------------------------------------------------------------------------------------------
# Limits: tries and the retry budget
# ---------------------------------------------------------------------------------------------


def test_tries_limits_connect_failover(kit) -> None:
    pb = _pb(kit, retries="{ tries = 2 }")
    c = pb.accept()
    ua, ub = Placeholder(ConnId), Placeholder(ConnId)
    pb >> DataReceived(conn=c, data=GET) << OpenUpstream(conn=ua, host=A[0], port=A[1])
    pb >> UpstreamFailed(conn=ua, reason="refused") << OpenUpstream(conn=ub, host=B[0], port=B[1])
    pb >> UpstreamFailed(conn=ub, reason="refused")
    kit.answered_with_error(pb, c, 502)  # c is never tried
    kit.assert_clean(pb)


def test_one_try_means_no_retry(kit) -> None:
    pb = _pb(kit, retries="{ tries = 1 }")
    c = pb.accept()
    ua = Placeholder(ConnId)
    pb >> DataReceived(conn=c, data=GET) << OpenUpstream(conn=ua, host=A[0], port=A[1])
    pb >> UpstreamFailed(conn=ua, reason="refused")
    kit.answered_with_error(pb, c, 502)


def test_each_server_is_tried_at_most_once(kit) -> None:
    pb = _pb(kit, retries="{ tries = 10 }")
    c = pb.accept()
    pb >> DataReceived(conn=c, data=GET)
    for server in (A, B, C):
        u = Placeholder(ConnId)
        pb << OpenUpstream(conn=u, host=server[0], port=server[1])
        pb >> UpstreamFailed(conn=u, reason="refused")
    kit.answered_with_error(pb, c, 502)


def test_backoff_grows_with_each_retry_and_is_capped(kit) -> None:
    pb = _pb(kit, retries="{ backoff_base = 1, backoff_max = 1.5 }")
    c = pb.accept()
    ua = kit.forward(pb, c, GET, FWD, server=A)
    assert pb >> ConnectionLost(conn=ua, reason="reset")
    ub = Placeholder(ConnId)
    assert pb.advance(_backoff(pb, 1.0)) << OpenUpstream(conn=ub, host=B[0], port=B[1])
    assert pb >> UpstreamConnected(conn=ub) << Send(conn=ub, data=FWD)
    assert pb >> ConnectionLost(conn=ub, reason="reset")
    uc = Placeholder(ConnId)
    assert pb.advance(_backoff(pb, 1.5)) << OpenUpstream(conn=uc, host=C[0], port=C[1])


def test_backoff_jitter_comes_from_the_seed(kit) -> None:
    delays = []
    for seed in (1, 1, 2, 3):
        pb = _pb(kit, retries="{ backoff_base = 1, backoff_max = 1 }", seed=seed)
        c = pb.accept()
        ua = kit.forward(pb, c, GET, FWD, server=A)
        assert pb >> ConnectionLost(conn=ua, reason="reset")
        delays.append(_backoff(pb, 1.0))
    assert delays[0] == delays[1]
    assert len(set(delays)) == 3


def test_an_exhausted_retry_budget_gives_the_failure_status(kit) -> None:
    pb = _pb(kit, budget="{ ratio = 0, min_retries = 1, window = 10 }", logs=True)
    # The first reset is retried: the budget allows one retry per window.
    c = pb.accept()
    ua = kit.forward(pb, c, GET, FWD, server=A)
    assert (
        pb
        >> ConnectionLost(conn=ua, reason="reset")
        << Log(level="warning", message="upstream 10.0.0.1:8001 connection lost before responding")
    )
    ub = Placeholder(ConnId)
    assert pb.advance(_backoff(pb, 0.025)) << OpenUpstream(conn=ub, host=B[0], port=B[1])
    assert pb >> UpstreamConnected(conn=ub) << Send(conn=ub, data=FWD)
    assert pb >> DataReceived(conn=ub, data=OK) << Send(conn=c, data=OK_OUT)
    # The second is not: the client gets the failure itself.
    c2 = pb.accept()
    uc = kit.forward(pb, c2, GET, FWD, server=C)
    pb >> ConnectionLost(conn=uc, reason="reset")
    pb << Log(level="warning", message="upstream 10.0.0.3:8003 connection lost before responding")
    pb << Log(level="warning", message="upstream app: retry budget exhausted")
    kit.answered_with_error(pb, c2, 502)
    core = pb.core
    (pool,) = core.upstream_status()  # type: ignore[attr-defined]
    assert (pool.requests_in_window, pool.retries_in_window) == (2, 1)


def test_an_exhausted_budget_passes_the_503_on(kit) -> None:
    pb = _pb(kit, retries='{ on = ["503"] }', budget="{ ratio = 0, min_retries = 0 }")
    c = pb.accept()
    ua = kit.forward(pb, c, GET, FWD, server=A)
    _finish(kit, pb, c, ua, UNAVAILABLE)


def test_the_budget_refills_as_the_window_slides(kit) -> None:
    pb = _pb(kit, retries='{ on = ["503"] }', budget="{ ratio = 0, min_retries = 1, window = 10 }")
    for expect_retry in (True, False):
        c = pb.accept()
        u = kit.forward(pb, c, GET, FWD, server=A if expect_retry else C)
        if expect_retry:
            assert pb >> DataReceived(conn=u, data=UNAVAILABLE) << Close(conn=u, abort=True)
            ub = Placeholder(ConnId)
            assert pb.advance(_backoff(pb, 0.025)) << OpenUpstream(conn=ub, host=B[0], port=B[1])
            assert pb >> UpstreamConnected(conn=ub) << Send(conn=ub, data=FWD)
            _finish(kit, pb, c, ub)
        else:
            _finish(kit, pb, c, u, UNAVAILABLE)
    pb.advance(10)
    c = pb.accept()
    u = kit.forward(pb, c, GET, FWD, server=A)
    assert pb >> DataReceived(conn=u, data=UNAVAILABLE) << Close(conn=u, abort=True)
