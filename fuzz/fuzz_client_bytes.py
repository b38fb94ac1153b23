"""Harness: arbitrary bytes from a client, against a fixed backend.

Each input is sent all at once and byte by byte (or in 7-byte pieces when
long), each time with and without a clean EOF after it; then virtual time
runs until the core wants no more wake-ups. Once more, whole, with the cache on
and a backend whose answers may be stored, so that pipelined requests meet hits,
revalidations and coalescing. ``Proxy.handle()`` must never
raise, the client must get a response or a close, and nothing may be left
open or leaked (see :func:`fuzz._common.check_outcome`).
"""

from __future__ import annotations

from hypothesis import strategies as st

from fuzz._common import check_outcome, new_net, splits
from fuzz.seeds import CLIENT_SEEDS, mutated
from tests.simnet import ok

NAME = "client"
SEEDS = CLIENT_SEEDS


def inputs() -> st.SearchStrategy[bytes]:
    return mutated(SEEDS)


def check(data: bytes) -> None:
    for how, chunker in splits(data):
        for eof in (False, True):
            net = new_net()
            net.add_backend("10.0.0.1", 80, ok(b"fuzz"))
            client = net.client(raw=True, chunker=chunker)
            if data:
                client.send_raw(data)
            if eof:
                client.close()
            net.run()
            net.quiesce()
            what = f"{len(data)} client bytes, {how}, {'with' if eof else 'without'} EOF"
            check_outcome(net, client, what=what, strict_client=False)
    net = new_net(cache=True)
    net.add_backend("10.0.0.1", 80, ok(b"fuzz", headers=[("cache-control", "max-age=60")]))
    client = net.client(raw=True)
    if data:
        client.send_raw(data)
    client.close()
    net.run()
    net.quiesce()
    check_outcome(net, client, what=f"{len(data)} client bytes, cached", strict_client=False)


def test_one_input(data: bytes) -> None:
    """The atheris entry point."""
    check(data)
