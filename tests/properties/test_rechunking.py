"""Property (a): how bytes are split into reads never changes the messages.

Pipelined requests from a raw client and the backend's responses are cut into
arbitrary pieces (shrinking towards byte by byte, as in h11's fuzz harness);
the backend must receive the same requests and the client the same responses
as when every write arrives whole. The HTTP/2 variant sends its requests on
concurrent streams of one connection (over TLS, or h2c, where even the preface
may arrive a byte at a time while the core sniffs it).
"""

from __future__ import annotations

import h11
from hypothesis import given
from hypothesis import strategies as st

from tests.properties._strategies import (
    ALL_METHODS,
    RequestSpec,
    ResponseSpec,
    bodies,
    chunkers,
    extra_headers,
    paths,
    reply_of,
    replying,
    requests,
    responses,
    send_spec,
    serialize_request,
    simple_config,
)
from tests.simnet import (
    Chunker,
    ClientProtocol,
    ReceivedRequest,
    ReceivedResponse,
    Reply,
    SimNet,
    cycling,
    protocol_config,
    whole,
)

# HEAD is left out: a raw client parses answers as answers to GET.
NO_HEAD = ("GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS")


def exchange(
    reqs: list[RequestSpec],
    resps: list[ResponseSpec],
    *,
    client: Chunker,
    backend: Chunker,
    read_size: int,
) -> tuple[list[ReceivedRequest], list[ReceivedResponse]]:
    net = SimNet(simple_config(), read_size=read_size)
    origin = net.add_backend("10.0.0.1", 80, replying(resps))
    origin.chunker = backend
    peer = net.client(raw=True, chunker=client)
    peer.send_raw(b"".join(serialize_request(r) for r in reqs))
    net.run()
    net.check()
    assert not peer.protocol_errors
    return origin.requests, peer.responses


@given(
    reqs=st.lists(requests(NO_HEAD), min_size=1, max_size=3),
    resps=st.lists(responses(), min_size=1, max_size=3),
    client_sizes=chunkers(),
    backend_sizes=chunkers(),
    read_size=st.sampled_from([1, 7, 100, 65536]),
)
def test_any_split_gives_the_same_messages(
    reqs: list[RequestSpec],
    resps: list[ResponseSpec],
    client_sizes: tuple[int, ...],
    backend_sizes: tuple[int, ...],
    read_size: int,
) -> None:
    base_requests, base_responses = exchange(
        reqs, resps, client=whole, backend=whole, read_size=65536
    )
    # Sanity: every pipelined request was forwarded and answered, in order.
    assert [r.method.decode() for r in base_requests] == [r.method for r in reqs]
    assert [r.status for r in base_responses] == [
        resps[i % len(resps)].status for i in range(len(reqs))
    ]
    split_requests, split_responses = exchange(
        reqs,
        resps,
        client=cycling(client_sizes),
        backend=cycling(backend_sizes),
        read_size=read_size,
    )
    assert split_requests == base_requests
    assert split_responses == base_responses


@st.composite
def small_requests(draw: st.DrawFn) -> RequestSpec:
    """Requests with bodies of at most a few hundred bytes (byte by byte must stay cheap)."""
    method = draw(st.sampled_from(ALL_METHODS))
    return RequestSpec(
        method=method,
        target=draw(paths),
        headers=tuple(draw(extra_headers)),
        pieces=draw(bodies(max_size=300)) if method in ("POST", "PUT", "PATCH") else (),
        chunked=draw(st.booleans()),
    )


@st.composite
def small_responses(draw: st.DrawFn) -> ResponseSpec:
    spec = draw(responses())
    return ResponseSpec(spec.status, spec.headers, draw(bodies(max_size=300)), spec.chunked)


def h2_exchange(
    protocol: ClientProtocol,
    reqs: list[RequestSpec],
    resps: list[ResponseSpec],
    *,
    client: Chunker,
    backend: Chunker,
    read_size: int,
) -> tuple[list[ReceivedRequest], list[tuple[str | None, ReceivedResponse | None]]]:
    """Every request on its own stream of one HTTP/2 connection, all sent at once.

    Request ``i`` carries ``x-index: i`` and is answered with ``resps[i % len]``,
    whatever order the backend sees the requests in (a field, not the path: the proxy
    normalises dot segments away).
    """
    net = SimNet(protocol_config(protocol), read_size=read_size)

    def handle(request: h11.Request, body: bytes) -> Reply:
        index = int(dict(request.headers)[b"x-index"])
        return reply_of(resps[index % len(resps)])

    origin = net.add_backend("10.0.0.1", 80, handle)
    origin.chunker = backend
    peer = net.h2_client(chunker=client)
    for index, spec in enumerate(reqs):
        send_spec(peer, spec, (("x-index", str(index)),))
    net.run()
    net.check()
    received = sorted(origin.requests, key=lambda r: int(dict(r.headers)[b"x-index"]))
    answered = [(s.outcome, s.response) for s in peer.streams.values()]
    return received, answered


@given(
    protocol=st.sampled_from(["h2", "h2c"]),
    reqs=st.lists(small_requests(), min_size=1, max_size=3),
    resps=st.lists(small_responses(), min_size=1, max_size=3),
    client_sizes=chunkers(),
    backend_sizes=chunkers(),
    read_size=st.sampled_from([1, 7, 100, 65536]),
)
def test_any_split_gives_the_same_messages_over_http2(
    *,
    protocol: ClientProtocol,
    reqs: list[RequestSpec],
    resps: list[ResponseSpec],
    client_sizes: tuple[int, ...],
    backend_sizes: tuple[int, ...],
    read_size: int,
) -> None:
    """Concurrent streams: the preface, HPACK blocks and frames may be cut anywhere."""
    base_requests, base_responses = h2_exchange(
        protocol, reqs, resps, client=whole, backend=whole, read_size=65536
    )
    assert len(base_requests) == len(reqs)
    assert [outcome for outcome, _ in base_responses] == ["response"] * len(reqs)
    split_requests, split_responses = h2_exchange(
        protocol,
        reqs,
        resps,
        client=cycling(client_sizes),
        backend=cycling(backend_sizes),
        read_size=read_size,
    )
    assert split_requests == base_requests
    assert split_responses == base_responses
