"""Strategies and small drivers shared by the property suites.

A :class:`RequestSpec` or :class:`ResponseSpec` describes one message as the
peer sends it; :func:`serialize_request` turns a spec into the bytes an h11
client writes, :func:`reply_of` into what a fake backend's handler returns.
:class:`Scenario` is a random script of client and backend actions that
:func:`play` runs on a fresh :class:`~tests.simnet.SimNet`; its ``protocol``
says whether the clients speak HTTP/1.1 or HTTP/2 (:data:`h2_scenarios` adds the
actions only HTTP/2 has: streams left open and finished later, stream resets,
GOAWAY from the client, PINGs, a client that stops opening its windows).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import h11
from hypothesis import strategies as st

from sansproxy.config import Http2Settings, Limits, Timeouts
from tests.simnet import (
    Chunker,
    ClientProtocol,
    FakeBackend,
    FakeClient,
    FakeH2Client,
    Handler,
    HeaderPairs,
    Reply,
    SimNet,
    cycling,
    protocol_config,
    simple_config,  # noqa: F401 - the suites import it from here
    whole,
)

BACKENDS = (("10.0.0.1", 80), ("10.0.0.2", 80))

SMALL_LIMITS = Limits(
    max_header_bytes=4096,
    buffer_high_water=2048,
    buffer_low_water=512,
    retry_buffer_bytes=1024,
)
"""Watermarks (and a head limit, which is part of the buffer bound) small enough that
a few kilobytes of body exercise backpressure."""

SMALL_HTTP2 = Http2Settings(
    max_concurrent_streams=8,
    initial_window_size=4096,
    connection_window_size=65535,
    stream_buffer=4096,
)
"""Windows and a stream buffer small enough that a few kilobytes of body cross them,
and few enough streams that :attr:`~tests.simnet.SimNet.h2_buffer_bound` is tight."""

SHORT_TIMEOUTS = Timeouts(
    client_header=5.0,
    client_keepalive=10.0,
    client_body=5.0,
    upstream_connect=2.0,
    upstream_header=10.0,
    upstream_body=10.0,
    upstream_keepalive=10.0,
    tunnel_idle=30.0,
    drain=5.0,
)

# -- message strategies ------------------------------------------------------------------

tokens = st.from_regex(r"[a-z][a-z0-9]{0,7}", fullmatch=True)
header_values = st.from_regex(r"[!-~]([ !-~]{0,20}[!-~])?", fullmatch=True)
paths = st.from_regex(r"/[A-Za-z0-9._~/-]{0,20}(\?[a-z0-9=&]{0,10})?", fullmatch=True)
extra_headers = st.lists(
    st.tuples(tokens.map(lambda t: "x-e2e-" + t), header_values),
    max_size=4,
    unique_by=lambda h: h[0],
)


def pieces_of(body: bytes, cuts: Sequence[int]) -> tuple[bytes, ...]:
    """Split ``body`` at the given offsets (out-of-range and repeated cuts are ignored)."""
    points = sorted({c for c in cuts if 0 < c < len(body)})
    bounds = [0, *points, len(body)]
    return tuple(body[a:b] for a, b in itertools.pairwise(bounds))


@dataclass(frozen=True)
class RequestSpec:
    """One request as the client sends it (body split in ``pieces`` for chunked framing)."""

    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    pieces: tuple[bytes, ...]
    chunked: bool

    @property
    def body(self) -> bytes:
        return b"".join(self.pieces)


@dataclass(frozen=True)
class ResponseSpec:
    """One response as the backend sends it."""

    status: int
    headers: tuple[tuple[str, str], ...]
    pieces: tuple[bytes, ...]
    chunked: bool

    @property
    def body(self) -> bytes:
        return b"" if self.status in (204, 304) else b"".join(self.pieces)


@st.composite
def bodies(draw: st.DrawFn, max_size: int = 3000) -> tuple[bytes, ...]:
    body = draw(st.binary(max_size=max_size))
    cuts = draw(st.lists(st.integers(0, max(len(body), 1)), max_size=5))
    return pieces_of(body, cuts)


ALL_METHODS = ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")
NO_HEAD = tuple(m for m in ALL_METHODS if m != "HEAD")


@st.composite
def requests(
    draw: st.DrawFn,
    methods: Sequence[str] = ALL_METHODS,
) -> RequestSpec:
    method = draw(st.sampled_from(methods))
    body = draw(bodies()) if method in ("POST", "PUT", "PATCH") else ()
    return RequestSpec(
        method=method,
        target=draw(paths),
        headers=tuple(draw(extra_headers)),
        pieces=body,
        chunked=draw(st.booleans()),
    )


@st.composite
def responses(draw: st.DrawFn) -> ResponseSpec:
    status = draw(st.sampled_from([200, 201, 204, 206, 301, 304, 404, 418, 500, 503]))
    return ResponseSpec(
        status=status,
        headers=tuple(draw(extra_headers)),
        pieces=draw(bodies()),
        chunked=draw(st.booleans()),
    )


def chunkers() -> st.SearchStrategy[tuple[int, ...]]:
    """Piece sizes for :func:`tests.simnet.cycling` (shrinks towards byte by byte)."""
    sizes = st.one_of(st.integers(1, 97), st.integers(98, 70_000))
    return st.lists(sizes, min_size=1, max_size=8).map(tuple)


def coarse_chunkers() -> st.SearchStrategy[tuple[int, ...]]:
    """Piece sizes of at least 50 bytes, for properties that move tens of kilobytes.

    Byte-by-byte delivery of such bodies over HTTP/2 costs a DATA frame and a
    ``Written`` per byte, seconds per example; splits down to single bytes are
    the rechunking properties' job, on small messages.
    """
    sizes = st.one_of(st.integers(50, 1000), st.integers(1001, 70_000))
    return st.lists(sizes, min_size=1, max_size=8).map(tuple)


def serialize_request(spec: RequestSpec) -> bytes:
    """The bytes an h11 client writes for ``spec`` (framing headers added)."""
    conn = h11.Connection(h11.CLIENT)
    headers: list[tuple[str, str]] = [("host", "example.com"), *spec.headers]
    if spec.chunked:
        headers.append(("transfer-encoding", "chunked"))
    elif spec.pieces or spec.method in ("POST", "PUT", "PATCH"):
        headers.append(("content-length", str(len(spec.body))))
    out = conn.send(h11.Request(method=spec.method, target=spec.target, headers=headers)) or b""
    for piece in spec.pieces:
        if piece:
            out += conn.send(h11.Data(data=piece)) or b""
    return out + (conn.send(h11.EndOfMessage()) or b"")


def reply_of(spec: ResponseSpec) -> Reply:
    """What a fake backend's handler returns for ``spec``."""
    headers: list[tuple[bytes | str, bytes | str]] = list(spec.headers)
    if spec.chunked:
        headers.append(("transfer-encoding", "chunked"))
    else:
        headers.append(("content-length", str(len(spec.body))))
    return spec.status, headers, spec.pieces


def replying(specs: Sequence[ResponseSpec]) -> Handler:
    """A handler answering the n-th request with ``specs[n % len(specs)]``."""
    counter = itertools.count()

    def handle(request: h11.Request, body: bytes) -> Reply:
        return reply_of(specs[next(counter) % len(specs)])

    return handle


def send_spec(
    client: FakeClient | FakeH2Client,
    spec: RequestSpec,
    headers: HeaderPairs = (),
    *,
    end: bool = True,
) -> None:
    """Send ``spec`` from a client (``headers`` are added to the spec's).

    On HTTP/2, ``chunked`` means "no content-length", and ``end=False`` leaves
    the stream open after the body (see the ``finish`` step).
    """
    if isinstance(client, FakeH2Client):
        client.request(
            spec.method,
            spec.target,
            headers=[*spec.headers, *headers],
            body=list(spec.pieces),
            chunked=spec.chunked,
            end=end,
        )
        return
    client.request(
        spec.method,
        spec.target,
        headers=[*spec.headers, *headers],
        body=list(spec.pieces),
        chunked=spec.chunked,
    )


# -- random scenarios ------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One action of a :class:`Scenario` (``who`` is a client or backend index)."""

    kind: str
    who: int = 0
    request: RequestSpec | None = None
    seconds: float = 0.0
    flag: bool = False
    size: int = 0


@dataclass(frozen=True)
class Scenario:
    """A random script of actions against a proxy with two backends."""

    steps: tuple[Step, ...]
    client_sizes: tuple[int, ...] = (65536,)
    backend_sizes: tuple[int, ...] = (65536,)
    read_size: int = 65536
    response: ResponseSpec = field(
        default_factory=lambda: ResponseSpec(200, (), (b"ok",), chunked=False)
    )
    protocol: ClientProtocol = "http/1.1"


def steps(methods: Sequence[str]) -> st.SearchStrategy[Step]:
    """One scenario step; requests use ``methods``."""
    request_steps = st.builds(
        Step, kind=st.just("request"), who=st.integers(0, 3), request=requests(methods)
    )
    return st.one_of(
        request_steps,
        request_steps,
        request_steps,
        st.builds(
            Step, kind=st.sampled_from(["abort", "close", "stall", "resume"]), who=st.integers(0, 3)
        ),
        st.builds(
            Step,
            kind=st.just("advance"),
            seconds=st.sampled_from([0.0, 0.5, 1.0, 2.5, 5.0, 10.0, 11.0, 30.0]),
        ),
        st.builds(Step, kind=st.sampled_from(["kill", "slow"]), who=st.integers(0, 1)),
        st.builds(Step, kind=st.just("refuse"), who=st.integers(0, 1), flag=st.booleans()),
        st.builds(
            Step,
            kind=st.just("die_midway"),
            who=st.integers(0, 1),
            size=st.sampled_from([0, 10, 60, 200, 1000]),
        ),
    )


big_bodies = st.integers(0, 12_000).map(lambda n: (bytes(i % 251 for i in range(n)),))
scenario_responses = st.one_of(
    responses(),
    st.builds(
        ResponseSpec,
        status=st.just(200),
        headers=st.just(()),
        pieces=big_bodies,
        chunked=st.booleans(),
    ),
)


def h2_steps(methods: Sequence[str]) -> st.SearchStrategy[Step]:
    """One step of an HTTP/2 scenario: the HTTP/1.1 steps and the HTTP/2-only ones.

    A ``request`` step with ``flag`` set leaves its stream open (no END_STREAM);
    ``finish`` ends one such stream; ``reset`` cancels a stream still waiting;
    ``goaway`` and ``ping`` are the client's frames; ``windows`` flips whether a
    client reopens its windows.
    """
    request_steps = st.builds(
        Step,
        kind=st.just("request"),
        who=st.integers(0, 3),
        request=requests(methods),
        flag=st.booleans(),
    )
    http2_only = st.builds(
        Step,
        kind=st.sampled_from(["finish", "finish", "reset", "reset", "goaway", "ping", "windows"]),
        who=st.integers(0, 7),
    )
    return st.one_of(steps(methods), request_steps, request_steps, http2_only, http2_only)


def scenarios_of(
    methods: Sequence[str], protocols: Sequence[ClientProtocol] = ("http/1.1",)
) -> st.SearchStrategy[Scenario]:
    http2 = "http/1.1" not in protocols
    return st.builds(
        Scenario,
        # HTTP/2 scenarios start with a few steps: a stream alone shows little.
        steps=st.lists(
            h2_steps(methods) if http2 else steps(methods), min_size=4 if http2 else 0, max_size=30
        ).map(tuple),
        # HTTP/2: each backend read becomes a DATA frame, each client read a Written; a
        # 12 KB response a byte at a time costs tens of seconds (coarse_chunkers).
        client_sizes=coarse_chunkers() if http2 else chunkers(),
        backend_sizes=coarse_chunkers() if http2 else chunkers(),
        read_size=st.sampled_from([512, 4096, 65536] if http2 else [16, 512, 4096, 65536]),
        response=scenario_responses,
        protocol=st.sampled_from(protocols),
    )


scenarios = scenarios_of(NO_HEAD)
scenarios_with_head = scenarios_of(ALL_METHODS)
h2_scenarios = scenarios_of(ALL_METHODS, ("h2", "h2c"))
"""HTTP/2 clients (over TLS or h2c), HEAD included: on HTTP/2 a HEAD's answer needs
no special parsing."""

HEAD_TO_DEAD_BACKENDS = Scenario(
    steps=(
        Step("refuse", who=0, flag=True),
        Step("refuse", who=1, flag=True),
        Step("request", request=RequestSpec("HEAD", "/", (), (), chunked=False)),
    )
)
"""A HEAD that earns a proxy-made 502 (its error response must have no body)."""


@dataclass
class World:
    """A network built for a scenario."""

    net: SimNet
    backends: list[FakeBackend]
    clients: list[FakeClient | FakeH2Client]
    client_chunker: Chunker = whole
    protocol: ClientProtocol = "http/1.1"


def build(scenario: Scenario, *, seed: int = 0) -> World:
    """A fresh network for ``scenario``: two backends, small limits, short timeouts."""
    config = protocol_config(
        scenario.protocol,
        BACKENDS,
        limits=SMALL_LIMITS,
        timeouts=SHORT_TIMEOUTS,
        http2=SMALL_HTTP2,
    )
    net = SimNet(config, seed=seed, read_size=scenario.read_size)
    handler = replying([scenario.response])
    backends = []
    for host, port in BACKENDS:
        backend = net.add_backend(host, port, handler)
        backend.chunker = cycling(scenario.backend_sizes)
        backends.append(backend)
    return World(net, backends, [], cycling(scenario.client_sizes), scenario.protocol)


def play(scenario: Scenario, *, seed: int = 0) -> World:
    """Run every step of ``scenario`` (steps that make no sense at the time are skipped)."""
    world = build(scenario, seed=seed)
    net = world.net
    for step in scenario.steps:
        apply_step(world, step)
        net.run()
    return world


def apply_step(world: World, step: Step) -> None:
    net = world.net
    if step.kind == "advance":
        net.advance(step.seconds)
        return
    if step.kind in ("kill", "refuse", "slow", "die_midway"):
        backend = world.backends[step.who % len(world.backends)]
        if step.kind == "kill":
            backend.kill()
        elif step.kind == "refuse":
            backend.refuse = step.flag
        elif step.kind == "slow":
            backend.delay = 0.0 if backend.delay else 3.0
        else:
            backend.die_after = step.size or None
        return
    clients = [c for c in world.clients if not c.closed]
    if step.kind == "request":
        idle = [c for c in clients if c.idle]
        if step.who < len(idle):
            client = idle[step.who]
        elif len(world.clients) < 6:
            client = net.connect(world.protocol, chunker=world.client_chunker)
            world.clients.append(client)
        else:
            return
        assert step.request is not None
        send_spec(client, step.request, end=not step.flag)
        return
    if step.kind in ("finish", "reset"):
        streams = [
            (c, s)
            for c in clients
            if isinstance(c, FakeH2Client)
            for s in c.streams.values()
            if s.outcome is None and (step.kind == "reset" or not s.ended)
        ]
        if streams:
            h2_client, stream = streams[step.who % len(streams)]
            if step.kind == "finish":
                h2_client.end_stream(stream.stream_id)
            else:
                h2_client.reset_stream(stream.stream_id)
        return
    if not clients:
        return
    client = clients[step.who % len(clients)]
    if isinstance(client, FakeH2Client):
        if step.kind == "goaway":
            client.goaway()
        elif step.kind == "ping":
            client.ping()
        elif step.kind == "windows":
            client.acknowledge = not client.acknowledge
    if step.kind == "abort":
        client.abort()
    elif step.kind == "close":
        client.close()
    elif step.kind == "stall":
        client.reading = False
    elif step.kind == "resume":
        client.reading = True


def wind_down(world: World) -> None:
    """Let every client read, close every client, and let time run out."""
    for client in world.clients:
        client.reading = True
        if isinstance(client, FakeH2Client):
            client.acknowledge = True
        if not client.closed:
            client.close()
    world.net.quiesce()
