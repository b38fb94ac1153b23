"""What both harnesses share: the fixed network, the per-input runs and the invariants."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from sansproxy.config import CacheSettings
from tests.simnet import Chunker, FakeClient, SimNet, bytewise, cycling, simple_config, whole

BYTEWISE_LIMIT = 4096
"""Inputs up to this size are also fed one byte per read; longer ones in 7-byte pieces."""


def splits(data: bytes) -> tuple[tuple[str, Chunker], ...]:
    """The ways each input is delivered: all at once, then byte by byte (or nearly)."""
    if len(data) <= BYTEWISE_LIMIT:
        return (("whole", whole), ("bytewise", bytewise))
    return (("whole", whole), ("7-byte pieces", cycling((7,))))


def new_net(*, cache: bool = False) -> SimNet:
    """The fixed world: default limits and timeouts, one backend address.

    With ``cache``, the listener's route caches (RFC 9111) with the default settings,
    so that what the backend sends also goes through the store and comes back as hits.
    """
    config = simple_config()
    if cache:
        config = dataclasses.replace(config, cache=CacheSettings(enabled=True))
    return SimNet(config)


def check_outcome(net: SimNet, client: FakeClient, *, what: str, strict_client: bool) -> None:
    """h11's invariant and ours, after time has run out.

    - the client got a response or a close;
    - nothing was sent to a closed connection and no buffer passed its bound;
    - no connection is left open and the core holds nothing (no hang, no leak);
    - ``strict_client``: a well-formed client could parse everything it got.
    """
    problems = list(net.violations)
    if not client.responses and not client.closed:
        problems.append("the client got neither a response nor a close")
    if strict_client:
        problems.extend(client.protocol_errors)
    elif client.protocol_errors and not client.responses:
        problems.append(f"not an HTTP response: {client.protocol_errors[0]}")
    if net.open_connections():
        problems.append(f"connections still open: {net.open_connections()}")
    stats = net.proxy.statistics()
    if any(
        (
            stats.client_connections,
            stats.upstream_connections,
            stats.exchanges,
            stats.timers,
        )
    ):
        problems.append(f"core not empty: {stats}")
    if problems:
        raise AssertionError(f"{what}:\n  " + "\n  ".join(problems))


Check = Callable[[bytes], None]
