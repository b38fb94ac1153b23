"""Property (a): how bytes are split into reads never changes the messages.

Pipelined requests from a raw client and the backend's responses are cut into
arbitrary pieces (shrinking towards byte by byte, as in h11's fuzz harness);
the backend must receive the same requests and the client the same responses
as when every write arrives whole.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tests.properties._strategies import (
    RequestSpec,
    ResponseSpec,
    chunkers,
    replying,
    requests,
    responses,
    serialize_request,
    simple_config,
)
from tests.simnet import Chunker, ReceivedRequest, ReceivedResponse, SimNet, cycling, whole

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
