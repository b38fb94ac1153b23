"""Property (b): body bytes are conserved in both directions.

Random request and response bodies, with Content-Length or chunked framing,
cross the proxy under small watermarks and arbitrary read splits; a slow
client or a slow backend makes the proxy pause and resume the other side.
Whatever the path, the backend gets exactly the request body and the client
exactly the response body, and no unwritten buffer passes the bound.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tests.properties._strategies import (
    SMALL_LIMITS,
    ResponseSpec,
    chunkers,
    pieces_of,
    reply_of,
    simple_config,
)
from tests.simnet import SimNet, cycling

big_bodies = st.one_of(
    st.binary(max_size=64),
    st.binary(min_size=1000, max_size=12_000),
    st.integers(0, 40_000).map(lambda n: bytes(i % 251 for i in range(n))),
)


@given(
    request_body=big_bodies,
    request_cuts=st.lists(st.integers(0, 40_000), max_size=6),
    request_chunked=st.booleans(),
    response_body=big_bodies,
    response_cuts=st.lists(st.integers(0, 40_000), max_size=6),
    response_chunked=st.booleans(),
    client_sizes=chunkers(),
    backend_sizes=chunkers(),
    read_size=st.sampled_from([64, 1000, 65536]),
    slow_client=st.booleans(),
    slow_backend=st.booleans(),
    requests=st.integers(1, 2),
)
def test_body_bytes_are_conserved(
    *,
    request_body: bytes,
    request_cuts: list[int],
    request_chunked: bool,
    response_body: bytes,
    response_cuts: list[int],
    response_chunked: bool,
    client_sizes: tuple[int, ...],
    backend_sizes: tuple[int, ...],
    read_size: int,
    slow_client: bool,
    slow_backend: bool,
    requests: int,
) -> None:
    net = SimNet(simple_config(limits=SMALL_LIMITS), read_size=read_size)
    spec = ResponseSpec(200, (), pieces_of(response_body, response_cuts), response_chunked)
    backend = net.add_backend("10.0.0.1", 80, lambda head, body: reply_of(spec))
    backend.chunker = cycling(backend_sizes)
    client = net.client(chunker=cycling(client_sizes))
    for n in range(requests):
        client.reading = not slow_client
        backend.reading = not slow_backend
        client.request(
            "POST",
            f"/upload/{n}",
            body=list(pieces_of(request_body, request_cuts)),
            chunked=request_chunked,
        )
        net.run()
        # A stalled side holds everything up; let it read again.
        backend.reading = True
        net.run()
        client.reading = True
        net.run()
        assert backend.requests[n].body == request_body
        assert backend.requests[n].complete
        response = client.responses[n]
        assert response.status == 200
        assert response.complete
        assert response.body == response_body
    assert client.outcomes == ["response"] * requests
    net.check()
