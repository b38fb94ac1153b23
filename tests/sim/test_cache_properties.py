"""Properties of the cache on the simulated network, over random workloads.

Several clients request a few URIs, at random times and in bursts (so that misses
coalesce), from a backend whose responses carry a random mix of freshness and
privacy directives and whose content changes now and then. Every response body is
unique, so a body seen twice was served from the store. Whatever the workload:

- every request gets exactly one complete response (coalesced waiters included);
- a ``no-store`` or ``private`` response is never served to another request;
- a response served as a hit without a stale allowance is fresh: its ``Age`` is
  below its ``max-age``; one served stale is within its ``stale-while-revalidate``
  window;
- a stored body is only served while the backend's content is the version it
  had, unless it was served stale or is still fresh;
- the store never holds more than its byte cap;
- the same workload gives the same run, command for command.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import h11
from hypothesis import given, settings
from hypothesis import strategies as st

from sansproxy.cache.dates import format_http_date
from sansproxy.config import CacheSettings
from tests.simnet import Reply, SimNet, protocol_config

START = 500_000.0
PATHS = ("/a", "/b", "/c")
POLICIES = (
    "max-age=5",
    "max-age=30",
    "no-store",
    "private, max-age=60",
    "no-cache",
    "max-age=3, stale-while-revalidate=6",
    "s-maxage=4, max-age=100",
    "",
)
CAP = 6000


@dataclass
class Origin:
    """Answers each path with its policy; every body is unique and names its version."""

    net: SimNet
    policies: dict[str, str]
    versions: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PATHS, 0))
    served: int = 0
    private_bodies: set[bytes] = field(default_factory=set)

    def __call__(self, request: h11.Request, body: bytes) -> Reply:
        path = request.target.decode()
        version = self.versions[path]
        etag = f'"{path}-{version}"'
        date = format_http_date(self.net.clock.now - START)
        head: list[tuple[bytes | str, bytes | str]] = [("date", date), ("etag", etag)]
        policy = self.policies[path]
        if policy:
            head.append(("cache-control", policy))
        if any(n == b"if-none-match" and v == etag.encode() for n, v in request.headers):
            return 304, head, []
        self.served += 1
        reply = b"%s v%d #%d " % (path.encode(), version, self.served) + b"x" * 600
        if "no-store" in policy or "private" in policy:
            self.private_bodies.add(reply)
        head.append(("content-length", str(len(reply))))
        return 200, head, [reply]


step = st.one_of(
    st.tuples(st.just("burst"), st.lists(st.sampled_from(PATHS), min_size=1, max_size=4)),
    st.tuples(st.just("wait"), st.integers(min_value=1, max_value=8)),
    st.tuples(st.just("change"), st.sampled_from(PATHS)),
)


def run(
    policies: dict[str, str], steps: list[tuple[str, object]]
) -> tuple[SimNet, Origin, list[tuple[str, float, dict[bytes, bytes], bytes]]]:
    config = dataclasses.replace(
        protocol_config("http/1.1"),
        cache=CacheSettings(enabled=True, max_size=CAP, max_object_size=CAP),
    )
    net = SimNet(config, start=START)
    origin = Origin(net, policies)
    net.add_backend("10.0.0.1", 80, origin)
    seen: list[tuple[str, float, dict[bytes, bytes], bytes]] = []
    for kind, value in steps:
        if kind == "wait":
            assert isinstance(value, int)
            net.advance(value)
        elif kind == "change":
            assert isinstance(value, str)
            origin.versions[value] += 1
        else:
            assert isinstance(value, list)
            clients = []
            for path in value:
                client = net.client()
                client.request("GET", path)
                clients.append((path, client))
            net.run()
            for path, client in clients:
                assert client.outcomes == ["response"], "each request gets one response"
                (response,) = client.responses
                assert response.complete
                seen.append((path, net.clock.now, dict(response.headers), response.body))
        for count in net.proxy.cache_statistics().values():
            assert count.bytes <= CAP
    return net, origin, seen


@settings(max_examples=60, deadline=None)
@given(
    policies=st.fixed_dictionaries({path: st.sampled_from(POLICIES) for path in PATHS}),
    steps=st.lists(step, max_size=14),
)
def test_the_cache_keeps_its_promises(
    policies: dict[str, str], steps: list[tuple[str, object]]
) -> None:
    _, origin, seen = run(policies, steps)
    bodies = [body for _, _, _, body in seen]
    for private in origin.private_bodies:
        assert bodies.count(private) <= 1, "a private or no-store response was served twice"
    for path, _, headers, body in seen:
        status = headers.get(b"cache-status", b"").decode()
        if "hit" not in status.split("; "):
            continue
        policy = policies[path]
        age = int(headers[b"age"])
        max_age = _seconds(policy, "s-maxage") or _seconds(policy, "max-age")
        assert max_age is not None, f"{policy!r} has no lifetime, yet {status}"
        if "stale-while-revalidate" in status:
            window = _seconds(policy, "stale-while-revalidate")
            assert window is not None
            assert max_age <= age <= max_age + window
        else:
            assert age < max_age, f"served at age {age} past max-age {max_age}"
        assert body.startswith(path.encode())


@settings(max_examples=15, deadline=None)
@given(
    policies=st.fixed_dictionaries({path: st.sampled_from(POLICIES) for path in PATHS}),
    steps=st.lists(step, max_size=10),
)
def test_the_same_workload_gives_the_same_run(
    policies: dict[str, str], steps: list[tuple[str, object]]
) -> None:
    first, _, _ = run(policies, steps)
    second, _, _ = run(policies, steps)
    assert first.trace == second.trace


def _seconds(policy: str, name: str) -> int | None:
    for part in policy.split(","):
        key, _, value = part.strip().partition("=")
        if key == name:
            return int(value)
    return None
