"""Harness: a well-formed client request, arbitrary bytes back from the backend.

The backend answers the request with the input, all at once and byte by byte
(or in 7-byte pieces when long), then either closes or stays silent; virtual
time runs until the core wants no more wake-ups. Once more with the cache on,
the client asking twice: what the backend sent is stored where it may be, and the
second request may be served from the store. ``Proxy.handle()`` must
never raise, the client (a real h11 client) must get a response or a close
and must be able to parse whatever it got, each request must end exactly
once, and nothing may be left open or leaked.
"""

from __future__ import annotations

from hypothesis import strategies as st

from fuzz._common import check_outcome, new_net, splits
from fuzz.seeds import BACKEND_SEEDS, mutated

NAME = "backend"
SEEDS = BACKEND_SEEDS


def inputs() -> st.SearchStrategy[bytes]:
    return mutated(SEEDS)


def check(data: bytes) -> None:
    for how, chunker in splits(data):
        for close in (True, False):
            net = new_net()
            backend = net.add_backend("10.0.0.1", 80)
            backend.raw_reply = data
            backend.raw_close = close
            backend.chunker = chunker
            client = net.client()
            client.request("GET", "/fuzz", headers=[("accept", "*/*")])
            net.run()
            net.quiesce()
            what = f"{len(data)} backend bytes, {how}, {'then close' if close else 'then silence'}"
            check_outcome(net, client, what=what, strict_client=True)
            if len(client.outcomes) != 1:
                raise AssertionError(f"{what}: the request ended {client.outcomes}")
    check_cached(data)


def check_cached(data: bytes) -> None:
    """The cache on: two requests in a row, each ending exactly once."""
    net = new_net(cache=True)
    backend = net.add_backend("10.0.0.1", 80)
    backend.raw_reply = data
    for attempt in range(2):
        client = net.client()
        client.request("GET", "/fuzz", headers=[("accept", "*/*")])
        net.run()
        net.quiesce()
        what = f"{len(data)} backend bytes, cached, request {attempt + 1}"
        check_outcome(net, client, what=what, strict_client=True)
        if len(client.outcomes) != 1:
            raise AssertionError(f"{what}: the request ended {client.outcomes}")


def test_one_input(data: bytes) -> None:
    """The atheris entry point."""
    check(data)
