"""Playbooks of load balancing through the proxy: spread, backups, affinity, caps and queue.

The algorithms themselves are unit-tested in ``test_balancing.py``; these tests check
that the proxy feeds them the right servers and keys and acts on their choice. Each
request comes from a fresh client and the backend closes after answering, so every
try shows up as an ``OpenUpstream`` naming the chosen server.
"""

from __future__ import annotations

import re

from sansproxy.commands import Close, OpenUpstream, PauseReading, ResumeReading, Send
from sansproxy.events import (
    ConfigReloaded,
    ConnectionLost,
    ConnId,
    DataReceived,
    EofReceived,
    UpstreamConnected,
    UpstreamFailed,
    Written,
)
from tests.playbook import BytesMatching, Placeholder, Playbook

A = ("10.0.0.1", 8001)
B = ("10.0.0.2", 8002)
C = ("10.0.0.3", 8003)
NAMES = {A: "a", B: "b", C: "c"}

LISTENER = """
[[listeners]]
address = "192.0.2.1:8080"
"""

GET = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"
FWD = b"GET / HTTP/1.1\r\nhost: example.com\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
OK_CLOSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
OK_OUT = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


def _served(
    pb: Playbook, request: bytes = GET, *, refused: int = 0, response: object = OK_OUT
) -> list[str]:
    """A fresh client's request, answered by the backend that then closes.

    The first ``refused`` connection attempts fail. Returns the names of the servers
    tried, in order (the last one answered).
    """
    c = pb.accept()
    tried: list[str] = []
    pb >> DataReceived(conn=c, data=request)
    for attempt in range(refused + 1):
        u = Placeholder(ConnId)
        host = Placeholder(str)
        port = Placeholder(int)
        assert pb << OpenUpstream(conn=u, host=host, port=port)
        tried.append(NAMES[host(), port()])
        if attempt < refused:
            pb >> UpstreamFailed(conn=u, reason="connection refused")
    assert (
        pb
        >> UpstreamConnected(conn=u)
        << Send(conn=u, data=BytesMatching(re.escape(request.split(b"\r\n")[0]) + rb"\r\n.*"))
        >> DataReceived(conn=u, data=OK_CLOSE)
        << Send(conn=c, data=response)  # type: ignore[arg-type]
        << Close(conn=u)
        >> EofReceived(conn=c)
        << Close(conn=c)
    )
    return tried


def _spread(pb: Playbook, count: int, request: bytes = GET) -> list[str]:
    return [_served(pb, request)[0] for _ in range(count)]


def test_smooth_weighted_round_robin_spreads_the_heavy_server(kit) -> None:
    pb = Playbook(
        kit.toml(
            LISTENER
            + """
[upstreams.app]
servers = [
  { url = "http://10.0.0.1:8001", weight = 5 },
  "http://10.0.0.2:8002",
  "http://10.0.0.3:8003",
]
"""
        )
    )
    assert "".join(_spread(pb, 14)) == "aabacaa" * 2
    kit.assert_clean(pb)


def test_round_robin_ignores_weights(kit) -> None:
    pb = Playbook(
        kit.toml(
            LISTENER
            + """
[upstreams.app]
balance = "round_robin"
servers = [{ url = "http://10.0.0.1:8001", weight = 5 }, "http://10.0.0.2:8002"]
"""
        )
    )
    assert "".join(_spread(pb, 6)) == "ababab"


def test_random_balance_follows_the_weights(kit) -> None:
    pb = Playbook(
        kit.toml(
            LISTENER
            + """
[upstreams.app]
balance = "random"
servers = [{ url = "http://10.0.0.1:8001", weight = 3 }, "http://10.0.0.2:8002"]
"""
        ),
        seed=7,
    )
    picks = _spread(pb, 48)
    # 36 expected; the binomial standard deviation is 3: allow three either way.
    assert 27 <= picks.count("a") <= 45
    assert "b" in picks


def test_least_requests_avoids_the_server_with_a_request_in_flight(kit) -> None:
    pb = Playbook(
        kit.toml(
            LISTENER
            + """
[upstreams.app]
balance = "least_requests"
servers = ["http://10.0.0.1:8001", "http://10.0.0.2:8002"]
"""
        )
    )
    c1 = pb.accept()
    u1 = Placeholder(ConnId)
    host1 = Placeholder(str)
    port1 = Placeholder(int)
    assert (
        pb
        >> DataReceived(conn=c1, data=GET)
        << OpenUpstream(conn=u1, host=host1, port=port1)
        >> UpstreamConnected(conn=u1)
        << Send(conn=u1, data=FWD)
    )
    busy = NAMES[host1(), port1()]
    # Whichever server the tie went to, the next requests go to the other one.
    assert _spread(pb, 3) == ["b" if busy == "a" else "a"] * 3
    assert (
        pb
        >> DataReceived(conn=u1, data=OK_CLOSE)
        << Send(conn=c1, data=OK_OUT)
        << Close(conn=u1)
        >> EofReceived(conn=c1)
        << Close(conn=c1)
    )
    kit.assert_clean(pb)


# ---------------------------------------------------------------------------------------------
# Backups
# ---------------------------------------------------------------------------------------------

BACKUP = """
[upstreams.app]
servers = [
  "http://10.0.0.1:8001",
  "http://10.0.0.2:8002",
  { url = "http://10.0.0.3:8003", backup = true },
]
outlier = { consecutive_failures = 1, base_ejection = 10, max_ejected_percent = 100 }
"""


def test_backup_gets_traffic_only_while_every_primary_is_down(kit) -> None:
    pb = Playbook(kit.toml(LISTENER + BACKUP))
    assert _spread(pb, 4) == ["a", "b", "a", "b"]
    # a refuses: it is ejected and the request fails over to b, not to the backup.
    assert _served(pb, refused=1) == ["a", "b"]
    assert _spread(pb, 3) == ["b", "b", "b"]
    pb.advance(1)
    # b refuses too: now every primary is down and the backup takes over.
    assert _served(pb, refused=1) == ["b", "c"]
    assert _spread(pb, 3) == ["c", "c", "c"]
    # a's ejection (from t=0) ends at t=10, b's at t=11.
    pb.advance(9)
    assert _spread(pb, 3) == ["a", "a", "a"]
    pb.advance(1)
    assert sorted(_spread(pb, 4)) == ["a", "a", "b", "b"]
    kit.assert_clean(pb)


def test_a_request_may_reach_the_backup_through_failover_in_one_go(kit) -> None:
    pb = Playbook(kit.toml(LISTENER + BACKUP))
    assert _served(pb, refused=2) == ["a", "b", "c"]
    assert _spread(pb, 2) == ["c", "c"]


# ---------------------------------------------------------------------------------------------
# Affinity: sticky cookie and consistent hashing
# ---------------------------------------------------------------------------------------------

STICKY = """
[upstreams.app]
servers = ["http://10.0.0.1:8001", "http://10.0.0.2:8002", "http://10.0.0.3:8003"]
sticky_cookie = "srv"
"""
SET_COOKIE = (
    rb"HTTP/1\.1 200 OK\r\ncontent-length: 2\r\n"
    rb"set-cookie: srv=([0-9a-f]{16}); Path=/; HttpOnly; SameSite=Lax\r\n\r\nok"
)


def _with_cookie(value: bytes) -> bytes:
    return b"GET / HTTP/1.1\r\nHost: example.com\r\nCookie: theme=dark; srv=%s\r\n\r\n" % value


def _cookie_set(pb: Playbook) -> bytes:
    """The sticky cookie's value in the latest response to a client."""
    for entry in reversed(pb.actual()):
        if isinstance(entry, Send) and entry.data.startswith(b"HTTP/1.1 200"):
            match = re.fullmatch(SET_COOKIE, entry.data)
            assert match is not None
            return match.group(1)
    raise AssertionError("no response found")


def test_sticky_cookie_is_set_on_the_first_response_and_honoured_after(kit) -> None:
    pb = Playbook(kit.toml(LISTENER + STICKY))
    assert _served(pb, response=BytesMatching(SET_COOKIE)) == ["a"]
    token_a = _cookie_set(pb)
    # Round robin would move on; the cookie keeps the client on a, and is not set again.
    for _ in range(4):
        assert _served(pb, _with_cookie(token_a)) == ["a"]
    # A client without the cookie is balanced (the sticky picks did not move the rotation).
    assert _served(pb, response=BytesMatching(SET_COOKIE)) == ["b"]
    token_b = _cookie_set(pb)
    assert token_b != token_a
    assert _served(pb, _with_cookie(token_b)) == ["b"]
    # A value that names no server is ignored, and replaced.
    assert _served(pb, _with_cookie(b"0123456789abcdef"), response=BytesMatching(SET_COOKIE)) == [
        "c"
    ]


def test_sticky_server_down_sends_the_client_elsewhere_with_a_new_cookie(kit) -> None:
    pb = Playbook(
        kit.toml(LISTENER + STICKY + "outlier = { consecutive_failures = 1, base_ejection = 10 }\n")
    )
    assert _served(pb, response=BytesMatching(SET_COOKIE)) == ["a"]
    token_a = _cookie_set(pb)
    # a refuses: the request fails over, and the answering server re-pins the client.
    assert _served(pb, _with_cookie(token_a), refused=1, response=BytesMatching(SET_COOKIE)) == [
        "a",
        "b",
    ]
    assert _cookie_set(pb) != token_a
    # While a is ejected its cookie is ignored; after the ejection it is honoured again.
    assert _served(pb, _with_cookie(token_a), response=BytesMatching(SET_COOKIE))[0] != "a"
    pb.advance(10)
    assert _served(pb, _with_cookie(token_a)) == ["a"]


RING = """
[upstreams.app]
servers = ["http://10.0.0.1:8001", "http://10.0.0.2:8002", "http://10.0.0.3:8003"]
balance = "ring_hash"
hash_on = "header:X-User"
outlier = { consecutive_failures = 1, base_ejection = 100 }
"""


def _user(key: int) -> bytes:
    return b"GET / HTTP/1.1\r\nHost: example.com\r\nX-User: user-%d\r\n\r\n" % key


def test_ring_hash_on_a_header_sends_equal_keys_to_the_same_server(kit) -> None:
    pb = Playbook(kit.toml(LISTENER + RING))
    keys = range(12)
    first = {key: _served(pb, _user(key))[0] for key in keys}
    again = {key: _served(pb, _user(key))[0] for key in reversed(keys)}
    assert again == first
    assert set(first.values()) == {"a", "b", "c"}
    # Another proxy (another seed) maps the keys the same way: no randomness involved.
    other = Playbook(kit.toml(LISTENER + RING), seed=99)
    assert {key: _served(other, _user(key))[0] for key in keys} == first


def test_ring_hash_moves_only_the_keys_of_a_server_that_went_down(kit) -> None:
    pb = Playbook(kit.toml(LISTENER + RING))
    keys = range(12)
    before = {key: _served(pb, _user(key))[0] for key in keys}
    victim_key = next(key for key in keys if before[key] == "b")
    tried = _served(pb, _user(victim_key), refused=1)  # b is ejected
    assert tried[0] == "b"
    after = {key: _served(pb, _user(key))[0] for key in keys}
    for key in keys:
        if before[key] == "b":
            assert after[key] != "b"
        else:
            assert after[key] == before[key]


def test_ring_hash_request_without_the_header_is_still_served(kit) -> None:
    pb = Playbook(kit.toml(LISTENER + RING))
    assert _served(pb)[0] in {"a", "b", "c"}
    kit.assert_clean(pb)


# ---------------------------------------------------------------------------------------------
# Connection caps and the wait queue
# ---------------------------------------------------------------------------------------------

CAPPED = """
[upstreams.app]
servers = [{ url = "http://10.0.0.1:8001", max_connections = 1 }]
queue_size = {size}
queue_timeout = 4.5
"""


def _capped(kit, size: int = 1) -> Playbook:
    return Playbook(kit.toml(LISTENER + CAPPED.replace("{size}", str(size))))


def _busy_first(kit, pb: Playbook) -> tuple[ConnId, Placeholder[ConnId]]:
    """A first client holds the only slot of server a."""
    c1 = pb.accept()
    return c1, kit.forward(pb, c1, GET, FWD, server=A)


def test_a_queued_request_goes_when_the_slot_frees(kit) -> None:
    pb = _capped(kit)
    c1, u = _busy_first(kit, pb)
    c2 = pb.accept()
    get2 = b"GET /2 HTTP/1.1\r\nHost: example.com\r\n\r\n"
    # c2 waits for a's slot, not reading anything more meanwhile.
    assert pb >> DataReceived(conn=c2, data=get2) << PauseReading(conn=c2)
    assert pb.advance(4)
    assert (
        pb
        >> DataReceived(conn=u, data=OK)
        << Send(conn=c1, data=OK_OUT)
        # The slot is free and the connection idle: the queued request takes both.
        << ResumeReading(conn=c2)
        << Send(conn=u, data=b"GET /2 HTTP/1.1\r\nhost: example.com\r\n\r\n")
        >> DataReceived(conn=u, data=OK)
        << Send(conn=c2, data=OK_OUT)
        >> EofReceived(conn=c1)
        << Close(conn=c1)
        >> EofReceived(conn=c2)
        << Close(conn=c2)
        >> EofReceived(conn=u)
        << Close(conn=u)
    )
    kit.assert_clean(pb)


def test_a_full_queue_is_503_with_retry_after(kit) -> None:
    pb = _capped(kit)
    _busy_first(kit, pb)
    c2 = pb.accept()
    assert pb >> DataReceived(conn=c2, data=GET) << PauseReading(conn=c2)
    c3 = pb.accept()
    pb >> DataReceived(conn=c3, data=GET)
    kit.answered_with_error(pb, c3, 503, retry_after=5)


def test_queue_timeout_is_503_with_retry_after(kit) -> None:
    pb = _capped(kit)
    c1, u = _busy_first(kit, pb)
    c2 = pb.accept()
    assert pb >> DataReceived(conn=c2, data=GET) << PauseReading(conn=c2)
    assert pb.advance(4.4)
    pb.advance(0.1) << ResumeReading(conn=c2)
    kit.answered_with_error(pb, c2, 503, retry_after=5)
    # The first request is unaffected, and the freed slot finds nobody waiting.
    assert (
        pb
        >> DataReceived(conn=u, data=OK)
        << Send(conn=c1, data=OK_OUT)
        >> EofReceived(conn=c1)
        << Close(conn=c1)
        >> EofReceived(conn=u)
        << Close(conn=u)
    )
    kit.assert_clean(pb)


def test_the_queue_is_first_in_first_out(kit) -> None:
    pb = _capped(kit, size=2)
    c1, u = _busy_first(kit, pb)
    waiting = []
    for n in (2, 3):
        c = pb.accept()
        request = b"GET /%d HTTP/1.1\r\nHost: e\r\n\r\n" % n
        assert pb >> DataReceived(conn=c, data=request) << PauseReading(conn=c)
        waiting.append(c)
    c4 = pb.accept()
    pb >> DataReceived(conn=c4, data=GET)
    kit.answered_with_error(pb, c4, 503, retry_after=5)
    assert (
        pb
        >> DataReceived(conn=u, data=OK)
        << Send(conn=c1, data=OK_OUT)
        << ResumeReading(conn=waiting[0])
        << Send(conn=u, data=b"GET /2 HTTP/1.1\r\nhost: e\r\n\r\n")
        >> DataReceived(conn=u, data=OK)
        << Send(conn=waiting[0], data=OK_OUT)
        << ResumeReading(conn=waiting[1])
        << Send(conn=u, data=b"GET /3 HTTP/1.1\r\nhost: e\r\n\r\n")
        >> DataReceived(conn=u, data=OK)
        << Send(conn=waiting[1], data=OK_OUT)
    )


def test_a_queued_upload_is_not_read_until_it_has_a_server(kit) -> None:
    pb = _capped(kit)
    c1, u = _busy_first(kit, pb)
    c2 = pb.accept()
    post = b"POST /up HTTP/1.1\r\nHost: e\r\nContent-Length: 4\r\n\r\n"
    assert (
        pb
        >> DataReceived(conn=c2, data=post)
        << PauseReading(conn=c2)
        >> DataReceived(conn=u, data=OK)
        << Send(conn=c1, data=OK_OUT)
        << ResumeReading(conn=c2)
        << Send(conn=u, data=b"POST /up HTTP/1.1\r\nhost: e\r\ncontent-length: 4\r\n\r\n")
        >> DataReceived(conn=c2, data=b"data")
        << Send(conn=u, data=b"data")
        >> Written(conn=u, nbytes=4)
        >> DataReceived(conn=u, data=OK)
        << Send(conn=c2, data=OK_OUT)
    )


def test_caps_count_per_server(kit) -> None:
    pb = Playbook(
        kit.toml(
            LISTENER
            + """
[upstreams.app]
servers = [
  { url = "http://10.0.0.1:8001", max_connections = 1 },
  { url = "http://10.0.0.2:8002", max_connections = 1 },
]
queue_size = 1
queue_timeout = 1
"""
        )
    )
    c1 = pb.accept()
    kit.forward(pb, c1, GET, FWD, server=A)
    c2 = pb.accept()
    kit.forward(pb, c2, GET, FWD, server=B)
    c3 = pb.accept()
    assert pb >> DataReceived(conn=c3, data=GET) << PauseReading(conn=c3)
    pb.advance(1) << ResumeReading(conn=c3)
    kit.answered_with_error(pb, c3, 503, retry_after=1)


def test_a_queued_client_that_leaves_gives_up_its_place(kit) -> None:
    pb = _capped(kit, size=2)
    c1, u = _busy_first(kit, pb)
    gone = pb.accept()
    assert pb >> DataReceived(conn=gone, data=GET) << PauseReading(conn=gone)
    c3 = pb.accept()
    get3 = b"GET /3 HTTP/1.1\r\nHost: e\r\n\r\n"
    assert pb >> DataReceived(conn=c3, data=get3) << PauseReading(conn=c3)
    assert pb >> EofReceived(conn=gone) >> ConnectionLost(conn=gone, reason="reset")
    assert (
        pb
        >> DataReceived(conn=u, data=OK)
        << Send(conn=c1, data=OK_OUT)
        << ResumeReading(conn=c3)
        << Send(conn=u, data=b"GET /3 HTTP/1.1\r\nhost: e\r\n\r\n")
    )


# ---------------------------------------------------------------------------------------------
# Slow start
# ---------------------------------------------------------------------------------------------


def test_a_server_back_from_ejection_ramps_up_over_slow_start(kit) -> None:
    pb = Playbook(
        kit.toml(
            LISTENER
            + """
[upstreams.app]
servers = ["http://10.0.0.1:8001", "http://10.0.0.2:8002"]
slow_start = 10
outlier = { consecutive_failures = 1, base_ejection = 10 }
"""
        )
    )
    assert _served(pb, refused=1) == ["a", "b"]
    assert pb.advance(10)  # a's ejection ends: it comes back at a tenth of its weight
    core = pb.core
    (pool,) = core.upstream_status()  # type: ignore[attr-defined]
    assert [s.effective_weight for s in pool.servers] == [0.1, 1.0]
    assert _spread(pb, 11).count("a") <= 1  # weights 0.1 and 1
    pb.advance(5)
    picks = _spread(pb, 12)
    (pool,) = core.upstream_status()  # type: ignore[attr-defined]
    assert pool.servers[0].effective_weight == 0.5
    assert 3 <= picks.count("a") <= 5  # weights 0.5 and 1: a third of the traffic
    pb.advance(5)
    assert 5 <= _spread(pb, 12).count("a") <= 7
    (pool,) = core.upstream_status()  # type: ignore[attr-defined]
    assert pool.servers[0].effective_weight == 1.0


def test_a_reload_that_only_changes_weights_takes_effect(kit) -> None:
    text = (
        LISTENER + '[upstreams.app]\nservers = ["http://10.0.0.1:8001", "http://10.0.0.2:8002"]\n'
    )
    pb = Playbook(kit.toml(text))
    assert _spread(pb, 4) == ["a", "b", "a", "b"]
    heavier = text.replace('"http://10.0.0.1:8001"', '{ url = "http://10.0.0.1:8001", weight = 3 }')
    assert pb >> ConfigReloaded(config=kit.toml(heavier))
    assert _spread(pb, 8).count("a") == 6
