"""Properties of HTTP/2 streams: interleaving, and body bytes crossing small windows.

One HTTP/2 connection carries several requests whose frames (HEADERS, each
DATA piece, the end: END_STREAM on HEADERS, on the last DATA, as an empty DATA
frame, or as trailers) go out in a random interleaving across the streams,
with the network left to run at random points in between. Bodies have random
sizes (empty included) and cross the proxy's windows and stream buffer
(:data:`~tests.properties._strategies.SMALL_HTTP2`); the client's bytes and the
backend's are cut into random reads. The backend echoes each request's target
and body, so that a response that went to the wrong stream, or lost or
reordered a byte, cannot pass:

- every stream gets exactly its own response, complete, with its own body;
- the backend gets each request exactly as sent: method, target, body and
  trailers (forwarded as chunked trailers: a request with trailers carries no
  content-length here);
- the backend's response trailers reach the client as a trailing HEADERS frame;
- no connection's unwritten bytes pass the network's bounds.
"""

from __future__ import annotations

from dataclasses import dataclass

import h11
from hypothesis import given
from hypothesis import strategies as st

from tests.properties._strategies import (
    SMALL_HTTP2,
    SMALL_LIMITS,
    coarse_chunkers,
    pieces_of,
)
from tests.simnet import ClientProtocol, Reply, SimNet, cycling, protocol_config

MAX_STREAMS = 5  # below SMALL_HTTP2.max_concurrent_streams: no stream is refused

# Plain alphabets: the regular-expression strategies cost more to draw than an example runs.
_names = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=8)
_values = (
    st.text(
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 !#$%&*+-.;=?@^_~",
        min_size=1,
        max_size=16,
    )
    .map(str.strip)
    .filter(bool)
)
trailer_fields = st.lists(
    st.tuples(_names.map(lambda t: "x-t-" + t), _values), max_size=2, unique_by=lambda f: f[0]
)


@dataclass(frozen=True)
class Plan:
    """One request stream: what it sends, and how it ends its request."""

    method: str
    target: str
    pieces: tuple[bytes, ...]
    trailers: tuple[tuple[str, str], ...]
    length: bool
    """Send content-length (never together with trailers)."""
    end: str
    """``headers``: END_STREAM on HEADERS (no body, no trailers); ``data``: on the last
    DATA frame; ``empty``: an empty DATA frame; ``trailers``: the trailers carry it."""

    @property
    def body(self) -> bytes:
        return b"".join(self.pieces)

    def ops(self) -> int:
        """Frames sent apart: HEADERS, each piece, and the end unless it rides on another."""
        return 1 + len(self.pieces) + (self.end in ("empty", "trailers"))


@st.composite
def plans(draw: st.DrawFn, index: int) -> Plan:
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE"]))
    size = draw(st.sampled_from([0, 1, 100, 2000, 5000]))
    body = bytes((i * 7 + index) % 251 for i in range(size))
    pieces = pieces_of(body, draw(st.lists(st.integers(0, size), max_size=4)))
    trailers = tuple(draw(trailer_fields))
    if trailers:
        end = "trailers"
    elif pieces:
        end = draw(st.sampled_from(["data", "empty"]))
    else:
        end = draw(st.sampled_from(["headers", "empty"]))
    return Plan(
        method=method,
        target=f"/s{index}/{method.lower()}",
        pieces=pieces,
        trailers=trailers,
        length=not trailers and draw(st.booleans()),
        end=end,
    )


@st.composite
def interleavings(draw: st.DrawFn) -> tuple[list[Plan], list[int], list[bool]]:
    """Plans, the order of their frames (stream indices), and where the network runs."""
    count = draw(st.integers(1, MAX_STREAMS))
    streams = [draw(plans(i)) for i in range(count)]
    slots = [i for i, plan in enumerate(streams) for _ in range(plan.ops())]
    order = draw(st.permutations(slots))
    runs = draw(st.lists(st.booleans(), min_size=len(order), max_size=len(order)))
    return streams, list(order), runs


def echo_target(chunked: bool):  # type: ignore[no-untyped-def]
    def handle(request: h11.Request, body: bytes) -> Reply:
        framing = (
            ("transfer-encoding", "chunked") if chunked else ("content-length", str(len(body)))
        )
        return 200, [("x-echo-target", bytes(request.target)), framing], [body]

    return handle


@given(
    case=interleavings(),
    protocol=st.sampled_from(["h2", "h2c"]),
    response_chunked=st.booleans(),
    response_trailers=trailer_fields,
    client_sizes=coarse_chunkers(),
    backend_sizes=coarse_chunkers(),
    read_size=st.sampled_from([256, 4096, 65536]),
)
def test_interleaved_streams_each_get_their_own_response(
    *,
    case: tuple[list[Plan], list[int], list[bool]],
    protocol: ClientProtocol,
    response_chunked: bool,
    response_trailers: list[tuple[str, str]],
    client_sizes: tuple[int, ...],
    backend_sizes: tuple[int, ...],
    read_size: int,
) -> None:
    streams, order, runs = case
    config = protocol_config(protocol, limits=SMALL_LIMITS, http2=SMALL_HTTP2)
    net = SimNet(config, read_size=read_size)
    backend = net.add_backend("10.0.0.1", 80, echo_target(response_chunked))
    backend.chunker = cycling(backend_sizes)
    backend.trailers = response_trailers
    client = net.h2_client(chunker=cycling(client_sizes))
    ids: dict[int, int] = {}  # plan index -> stream id
    done = [0] * len(streams)  # frames of each plan sent so far
    for index, run in zip(order, runs, strict=True):
        plan = streams[index]
        step = done[index]
        done[index] += 1
        if step == 0:
            headers = [("content-length", str(len(plan.body)))] if plan.length else []
            ids[index] = client.open_stream(
                plan.method, plan.target, headers, end=plan.end == "headers"
            )
        elif step <= len(plan.pieces):
            last = step == len(plan.pieces)
            client.send_body(ids[index], plan.pieces[step - 1], end=last and plan.end == "data")
        elif plan.end == "trailers":
            client.send_trailers(ids[index], plan.trailers)
        else:
            client.end_stream(ids[index])
        if run:
            net.run()
    net.run()
    net.check()

    for index, plan in enumerate(streams):
        stream = client.streams[ids[index]]
        assert stream.outcome == "response", (plan, stream)
        response = stream.response
        assert response is not None
        assert response.status == 200
        assert response.complete
        assert response.header(b"x-echo-target") == plan.target.encode()
        assert response.body == plan.body
        expected = response_trailers if response_chunked else []
        assert response.trailers == [(n.encode(), v.encode()) for n, v in expected]

    received = {r.target.decode(): r for r in backend.requests}
    assert len(received) == len(backend.requests) == len(streams)
    for plan in streams:
        request = received[plan.target]
        assert request.complete
        assert request.method == plan.method.encode()
        assert request.body == plan.body
        assert request.trailers == [(n.encode(), v.encode()) for n, v in plan.trailers]
        if plan.length:
            assert request.header(b"content-length") == str(len(plan.body)).encode()
