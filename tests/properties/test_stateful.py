"""Property (f): a hypothesis state machine over the simulated network.

Rules: a client sends a request (GET, or POST with a body; HEAD too in
:class:`HeadProxyMachine`; on HTTP/2 streams of one connection in
:class:`Http2ProxyMachine`, which can also reset a stream or send GOAWAY), a client aborts,
a client stalls or resumes reading, a backend stalls or resumes reading, a
backend answers a held request, a backend dies (idle, or part-way through a
response), virtual time passes.

Invariants after every step:

- each request ends in at most one outcome (a response or a close), and at
  teardown in exactly one;
- every response from a backend reaches the client that asked for it (the
  backend echoes the request target) with the body the backend sent, and
  every request body reaches the backend unchanged;
- nothing is sent to a closed connection (the network records it);
- no connection's unwritten bytes exceed high water + one read + one head
  (plus a little chunked framing), from the config's limits.

At teardown every client closes and time runs out; then the core must hold
nothing (as in ``test_no_leaks``).
"""

from __future__ import annotations

import itertools

import h11
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from tests.properties._strategies import BACKENDS, SHORT_TIMEOUTS, SMALL_HTTP2, SMALL_LIMITS
from tests.simnet import (
    ClientProtocol,
    FakeBackend,
    FakeClient,
    FakeH2Client,
    ReceivedResponse,
    Reply,
    SimNet,
    protocol_config,
)

READ_SIZE = 1024
MAX_CLIENTS = 5


def pattern(n: int, salt: int) -> bytes:
    return bytes((i + salt) % 251 for i in range(n))


def unreachable_handler(request: h11.Request, body: bytes) -> Reply:
    raise AssertionError("backends hold every request; the machine releases them")


class ProxyMachine(RuleBasedStateMachine):
    HEAD = False
    """Whether clients send HEAD requests (see :class:`HeadProxyMachine`)."""
    PROTOCOL: ClientProtocol = "http/1.1"
    """What the clients speak (see :class:`Http2ProxyMachine`)."""

    def __init__(self) -> None:
        super().__init__()
        config = protocol_config(
            self.PROTOCOL,
            BACKENDS,
            limits=SMALL_LIMITS,
            timeouts=SHORT_TIMEOUTS,
            http2=SMALL_HTTP2,
        )
        self.net = SimNet(config, read_size=READ_SIZE)
        self.backends: list[FakeBackend] = []
        for host, port in BACKENDS:
            backend = self.net.add_backend(host, port, unreachable_handler)
            backend.hold = True
            self.backends.append(backend)
        self.clients: list[FakeClient | FakeH2Client] = []
        self.targets: dict[int, list[str]] = {}  # client conn -> targets, in order
        self.sent_bodies: dict[str, bytes] = {}
        self.replied_bodies: dict[str, bytes] = {}
        self.serial = itertools.count()

    # -- helpers --

    def live_clients(self) -> list[FakeClient | FakeH2Client]:
        return [c for c in self.clients if not c.closed]

    def answered(self, client: FakeClient | FakeH2Client) -> list[tuple[str, ReceivedResponse]]:
        """(target, complete response) pairs of ``client``'s requests."""
        targets = self.targets.get(client.conn, [])
        if isinstance(client, FakeH2Client):
            # One stream per request, in the order they were sent.
            return [
                (target, stream.response)
                for target, stream in zip(targets, client.streams.values(), strict=True)
                if stream.response is not None and stream.response.complete
            ]
        finished = [r for r in client.responses if r.complete]
        return list(zip(targets, finished, strict=False))

    def held(self) -> list[tuple[FakeBackend, int]]:
        return [(b, i) for b in self.backends for i in range(len(b.held))]

    def reply(self, target: str, size: int, chunked: bool, status: int) -> Reply:
        body = pattern(size, len(target))
        framing = ("transfer-encoding", "chunked") if chunked else ("content-length", str(size))
        pieces = [body[i : i + 7000] for i in range(0, size, 7000)]
        return status, [("x-echo-target", target), framing], pieces

    # -- rules --

    @rule(
        which=st.integers(0, MAX_CLIENTS),
        method=st.sampled_from(["GET", "POST", "HEAD"]),
        size=st.sampled_from([0, 1, 100, 3000, 20_000]),
        chunked=st.booleans(),
    )
    def client_sends_request(self, which: int, method: str, size: int, chunked: bool) -> None:
        if method == "HEAD" and not self.HEAD:
            method = "GET"
        idle = [c for c in self.live_clients() if c.idle]
        if which < len(idle):
            client = idle[which]
        elif len(self.clients) < MAX_CLIENTS:
            client = self.net.connect(self.PROTOCOL)
            self.clients.append(client)
        else:
            return
        target = f"/c{client.conn}/r{next(self.serial)}"
        self.targets.setdefault(client.conn, []).append(target)
        if method == "POST":
            body = pattern(size, client.conn)
            self.sent_bodies[target] = body
            client.request("POST", target, body=body, chunked=chunked)
        else:
            self.sent_bodies[target] = b""
            if method == "HEAD":
                # A HEAD answer is complete at its head, even from a backend that dies next.
                self.replied_bodies[target] = b""
            client.request(method, target)
        self.net.run()

    @precondition(lambda self: self.live_clients())
    @rule(which=st.integers(0, MAX_CLIENTS))
    def client_aborts(self, which: int) -> None:
        clients = self.live_clients()
        clients[which % len(clients)].abort()
        self.net.run()

    @precondition(lambda self: self.live_clients())
    @rule(which=st.integers(0, MAX_CLIENTS), reading=st.booleans())
    def client_stalls_or_resumes(self, which: int, reading: bool) -> None:
        clients = self.live_clients()
        clients[which % len(clients)].reading = reading
        self.net.run()

    @rule(which=st.integers(0, 1), reading=st.booleans())
    def backend_stalls_or_resumes(self, which: int, reading: bool) -> None:
        self.backends[which].reading = reading
        self.net.run()

    @precondition(lambda self: self.held())
    @rule(
        which=st.integers(0, 10),
        size=st.sampled_from([0, 5, 2000, 20_000]),
        chunked=st.booleans(),
        status=st.sampled_from([200, 404, 500]),
    )
    def backend_responds(self, which: int, size: int, chunked: bool, status: int) -> None:
        held = self.held()
        backend, index = held[which % len(held)]
        conn, received, _ = backend.held[index]
        target = received.target.decode()
        reply = self.reply(target, size, chunked, status)
        if not conn.closed:
            bodyless = received.method == b"HEAD" or status in (204, 304)
            self.replied_bodies[target] = b"" if bodyless else pattern(size, len(target))
        backend.release(index, reply)
        self.net.run()

    @rule(which=st.integers(0, 10), midway=st.booleans(), cut=st.integers(1, 3000))
    def backend_dies(self, which: int, midway: bool, cut: int) -> None:
        held = self.held()
        if midway and held:
            backend, index = held[which % len(held)]
            _, received, _ = backend.held[index]
            target = received.target.decode()
            backend.release(index, self.reply(target, 4000, False, 200), die_after=cut)
        else:
            conns = [c for b in self.backends for c in b.open_connections]
            if not conns:
                return
            conns[which % len(conns)].kill()
        self.net.run()

    @rule(seconds=st.sampled_from([0.1, 1.0, 2.5, 5.0, 10.0, 30.0]))
    def advance_clock(self, seconds: float) -> None:
        self.net.advance(seconds)

    # -- invariants --

    @invariant()
    def nothing_sent_to_closed_connections_and_peers_parse_everything(self) -> None:
        self.net.check()

    @invariant()
    def buffers_are_bounded(self) -> None:
        assert self.net.max_unwritten(http2=False) <= self.net.buffer_bound
        assert self.net.max_unwritten(http2=True) <= self.net.h2_buffer_bound
        assert self.net.max_unwritten_data() <= self.net.h2_data_bound

    @invariant()
    def each_request_ends_at_most_once(self) -> None:
        for client in self.clients:
            assert len(client.outcomes) <= client.requests_sent
            complete = [r for r in client.responses if r.complete]
            assert client.outcomes.count("response") == len(complete)

    @invariant()
    def responses_go_to_their_requests(self) -> None:
        for client in self.clients:
            for target, response in self.answered(client):
                echoed = response.header(b"x-echo-target")
                if echoed is None:
                    continue  # the proxy's own error response
                assert echoed.decode() == target
                assert response.body == self.replied_bodies[target]

    @invariant()
    def request_bodies_reach_the_backend_unchanged(self) -> None:
        for backend in self.backends:
            for request in backend.requests:
                if request.complete:
                    assert request.body == self.sent_bodies[request.target.decode()]

    def teardown(self) -> None:
        if self.net.crashed is not None:
            return  # the exception from the core is the failure; nothing more to check
        for backend in self.backends:
            backend.reading = True
        for client in self.clients:
            client.reading = True
            if not client.closed:
                client.close()
        self.net.quiesce()
        self.net.check()
        for client in self.clients:
            assert len(client.outcomes) == client.requests_sent, (client.conn, client.outcomes)
        assert self.net.open_connections() == []
        stats = self.net.proxy.statistics()
        assert (
            stats.client_connections,
            stats.upstream_connections,
            stats.idle_upstream_connections,
            stats.exchanges,
            stats.timers,
        ) == (0, 0, 0, 0, 0)
        assert self.net.proxy.next_deadline() is None


TestProxyMachine = ProxyMachine.TestCase


class HeadProxyMachine(ProxyMachine):
    """The same machine with HEAD requests, which start with one that earns a 502."""

    HEAD = True

    @initialize()
    def head_to_dead_backends(self) -> None:
        for backend in self.backends:
            backend.refuse = True
        client = self.net.connect(self.PROTOCOL)
        self.clients.append(client)
        self.targets[client.conn] = ["/head"]
        self.sent_bodies["/head"] = b""
        client.request("HEAD", "/head")
        self.net.run()
        for backend in self.backends:
            backend.refuse = False


TestHeadProxyMachine = HeadProxyMachine.TestCase


class Http2ProxyMachine(ProxyMachine):
    """The same machine with HTTP/2 clients: several streams in flight per connection.

    The backends answer held requests in any order, so responses come back out
    of order on one connection, and every one must still reach its own stream.
    Two more rules: a client resets one of its streams still waiting, and a
    client sends GOAWAY (the proxy then ends that connection at once).
    """

    PROTOCOL = "h2"

    def waiting_streams(self) -> list[tuple[FakeH2Client, int]]:
        return [
            (c, number)
            for c in self.live_clients()
            if isinstance(c, FakeH2Client)
            for number, stream in c.streams.items()
            if stream.outcome is None
        ]

    @precondition(lambda self: self.waiting_streams())
    @rule(which=st.integers(0, 20))
    def client_resets_a_stream(self, which: int) -> None:
        streams = self.waiting_streams()
        client, number = streams[which % len(streams)]
        client.reset_stream(number)
        self.net.run()

    @precondition(lambda self: self.live_clients())
    @rule(which=st.integers(0, MAX_CLIENTS))
    def client_sends_goaway(self, which: int) -> None:
        clients = self.live_clients()
        client = clients[which % len(clients)]
        assert isinstance(client, FakeH2Client)
        client.goaway()
        self.net.run()


TestHttp2ProxyMachine = Http2ProxyMachine.TestCase
