"""Property (b): body bytes are conserved in both directions, over both client protocols.

Random request and response bodies, with Content-Length or chunked framing,
cross the proxy under small watermarks and arbitrary read splits; a slow
client or a slow backend makes the proxy pause and resume the other side.
Whatever the path, the backend gets exactly the request body and the client
exactly the response body, and no unwritten buffer passes the bound.

Over HTTP/2 the bodies are also larger than every window on the way: the
proxy's stream and connection windows and its per-stream buffer
(:data:`~tests.properties._strategies.SMALL_HTTP2`), and the client's own
stream window (a SETTINGS the client may send). A slow HTTP/2 client either
stops reading, or reads but stops opening its windows for a while.
"""

from __future__ import annotations

import h2.settings
from hypothesis import given
from hypothesis import strategies as st

from tests.properties._strategies import (
    SMALL_HTTP2,
    SMALL_LIMITS,
    ResponseSpec,
    chunkers,
    coarse_chunkers,
    pieces_of,
    reply_of,
)
from tests.simnet import ClientProtocol, FakeH2Client, SimNet, cycling, protocol_config

big_bodies = st.one_of(
    st.binary(max_size=64),
    st.binary(min_size=1000, max_size=12_000),
    st.integers(0, 40_000).map(lambda n: bytes(i % 251 for i in range(n))),
)


def check_conservation(
    protocol: ClientProtocol,
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
    closed_windows: bool = False,
    client_window: int | None = None,
) -> None:
    config = protocol_config(protocol, limits=SMALL_LIMITS, http2=SMALL_HTTP2)
    net = SimNet(config, read_size=read_size)
    spec = ResponseSpec(200, (), pieces_of(response_body, response_cuts), response_chunked)
    backend = net.add_backend("10.0.0.1", 80, lambda head, body: reply_of(spec))
    backend.chunker = cycling(backend_sizes)
    client = (
        net.client(chunker=cycling(client_sizes))
        if protocol == "http/1.1"
        else net.h2_client(
            chunker=cycling(client_sizes),
            settings=(
                {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: client_window}
                if client_window is not None
                else None
            ),
        )
    )
    for n in range(requests):
        client.reading = not slow_client
        if isinstance(client, FakeH2Client):
            client.acknowledge = not closed_windows
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
        if isinstance(client, FakeH2Client):
            client.acknowledge = True
            net.run()
        assert backend.requests[n].body == request_body
        assert backend.requests[n].complete
        response = client.responses[n]
        assert response.status == 200
        assert response.complete
        assert response.body == response_body
    assert client.outcomes == ["response"] * requests
    net.check()


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
    check_conservation(
        "http/1.1",
        request_body=request_body,
        request_cuts=request_cuts,
        request_chunked=request_chunked,
        response_body=response_body,
        response_cuts=response_cuts,
        response_chunked=response_chunked,
        client_sizes=client_sizes,
        backend_sizes=backend_sizes,
        read_size=read_size,
        slow_client=slow_client,
        slow_backend=slow_backend,
        requests=requests,
    )


@given(
    protocol=st.sampled_from(["h2", "h2c"]),
    request_body=big_bodies,
    request_cuts=st.lists(st.integers(0, 40_000), max_size=6),
    request_chunked=st.booleans(),
    response_body=big_bodies,
    response_cuts=st.lists(st.integers(0, 40_000), max_size=6),
    response_chunked=st.booleans(),
    client_sizes=coarse_chunkers(),
    backend_sizes=coarse_chunkers(),
    read_size=st.sampled_from([256, 4096, 65536]),
    slow_client=st.booleans(),
    slow_backend=st.booleans(),
    closed_windows=st.booleans(),
    client_window=st.sampled_from([None, 1000, 16_384]),
    requests=st.integers(1, 2),
)
def test_body_bytes_are_conserved_over_http2(
    *,
    protocol: ClientProtocol,
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
    closed_windows: bool,
    client_window: int | None,
    requests: int,
) -> None:
    check_conservation(
        protocol,
        request_body=request_body,
        request_cuts=request_cuts,
        request_chunked=request_chunked,
        response_body=response_body,
        response_cuts=response_cuts,
        response_chunked=response_chunked,
        client_sizes=client_sizes,
        backend_sizes=backend_sizes,
        read_size=read_size,
        slow_client=slow_client,
        slow_backend=slow_backend,
        requests=requests,
        closed_windows=closed_windows,
        client_window=client_window,
    )
