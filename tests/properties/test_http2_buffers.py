"""Property: an HTTP/2 client that does not read cannot make the proxy buffer without end.

The client opens several streams whose responses are larger than anything the
proxy may hold, stops reading, and goes on sending PINGs (each owes it an ACK,
which is not flow-controlled). It may have opened huge windows first, so that
only the proxy's own caps stand between the backends and its buffers. The
network records the largest unwritten buffer of every connection:

- on the HTTP/2 client connection, its DATA frames stay within
  :attr:`~tests.simnet.SimNet.h2_data_bound` and all its bytes within
  :attr:`~tests.simnet.SimNet.h2_buffer_bound` (the docstring of
  :class:`~tests.simnet.SimNet` derives both from ``limits`` and ``[http2]``);
- on the upstream connections within :attr:`~tests.simnet.SimNet.buffer_bound`;
- once the client reads again, every response arrives complete and intact.

With huge windows, the responses would put up to 200 KB in the buffer if the
proxy framed every byte the windows allow; the DATA bound is about 2 KB.
"""

from __future__ import annotations

import h2.settings
import h11
from hypothesis import given
from hypothesis import strategies as st

from tests.properties._strategies import SMALL_HTTP2, SMALL_LIMITS, coarse_chunkers
from tests.simnet import ClientProtocol, Reply, SimNet, cycling, protocol_config

HUGE = 2**31 - 1 - 65_535  # the largest window increment that keeps a window legal


def pattern(size: int, salt: int) -> bytes:
    return bytes((i + salt) % 251 for i in range(size))


def sized(request: h11.Request, body: bytes) -> Reply:
    """``/<size>/<salt>``: that many bytes of a pattern, chunked or not as the target says."""
    _, size, salt, framing = bytes(request.target).split(b"/")
    payload = pattern(int(size), int(salt))
    head = (
        ("transfer-encoding", "chunked")
        if framing == b"chunked"
        else ("content-length", str(len(payload)))
    )
    return 200, [head], [payload[i : i + 5000] for i in range(0, len(payload), 5000)]


@given(
    protocol=st.sampled_from(["h2", "h2c"]),
    sizes=st.lists(st.sampled_from([0, 3000, 20_000, 40_000]), min_size=1, max_size=5),
    chunked=st.booleans(),
    huge_windows=st.booleans(),
    pings=st.sampled_from([0, 10, 400]),
    read_size=st.sampled_from([512, 4096, 65536]),
    backend_sizes=coarse_chunkers(),
)
def test_a_client_that_does_not_read_is_bounded(
    *,
    protocol: ClientProtocol,
    sizes: list[int],
    chunked: bool,
    huge_windows: bool,
    pings: int,
    read_size: int,
    backend_sizes: tuple[int, ...],
) -> None:
    config = protocol_config(protocol, limits=SMALL_LIMITS, http2=SMALL_HTTP2)
    net = SimNet(config, read_size=read_size)
    backend = net.add_backend("10.0.0.1", 80, sized)
    backend.chunker = cycling(backend_sizes)
    windows = {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1} if huge_windows else None
    client = net.h2_client(settings=windows)
    if huge_windows:
        client.open_window(HUGE)
    net.run()
    client.reading = False
    framing = "chunked" if chunked else "length"
    for salt, size in enumerate(sizes):
        client.request("GET", f"/{size}/{salt}/{framing}")
        net.run()
    for _ in range(pings):
        client.ping()
    net.run()

    assert net.max_unwritten_data() <= net.h2_data_bound
    assert net.max_unwritten(http2=True) <= net.h2_buffer_bound
    assert net.max_unwritten(http2=False) <= net.buffer_bound

    client.reading = True
    net.run()
    net.check()
    assert client.outcomes == ["response"] * len(sizes)
    for salt, (size, response) in enumerate(zip(sizes, client.responses, strict=True)):
        assert response.complete
        assert response.body == pattern(size, salt)
    assert client.pings_acked == pings
