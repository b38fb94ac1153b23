"""Shared setup of the core's playbook tests (``tests/core/test_proxy_*.py``).

The tests reach it through one fixture, ``kit``: a :class:`ProxyKit` with
the configurations, the exact bytes of proxy-made responses, the common
opening of an exchange and the end-of-test leak check.

Most scenarios use :data:`PLAIN` headers (no Via, no X-Forwarded-*, no
Forwarded), so that a forwarded message is the received one minus its
hop-by-hop fields and a test can spell it out byte for byte. The tests that
are about forwarding fields ask for the default policy.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parent.parent.parent
if str(_ROOT) not in sys.path:  # `tests.playbook` under every pytest import mode
    sys.path.insert(0, str(_ROOT))

from sansproxy.commands import Close, OpenUpstream, Send, ShutdownWrite  # noqa: E402
from sansproxy.config import (  # noqa: E402
    HeaderPolicy,
    Limits,
    ProxyConfig,
    Timeouts,
    parse_config,
    quick_config,
)
from sansproxy.events import ConnId, DataReceived, EofReceived, UpstreamConnected  # noqa: E402
from sansproxy.proxy import Proxy, ProxyStatistics  # noqa: E402
from tests.playbook import Placeholder, Playbook  # noqa: E402

LISTEN = "192.0.2.1:8080"
SERVER_A = ("10.0.0.1", 8001)
SERVER_B = ("10.0.0.2", 8002)

PLAIN = HeaderPolicy(x_forwarded=False, forwarded=False, via=None)
"""A header policy that adds nothing, so forwarded messages are easy to spell out."""

_REASONS = {
    400: b"Bad Request",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    413: b"Content Too Large",
    414: b"URI Too Long",
    431: b"Request Header Fields Too Large",
    501: b"Not Implemented",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
    505: b"HTTP Version Not Supported",
}

_LIMIT_FIELDS = frozenset(f.name for f in dataclasses.fields(Limits))
_TIMEOUT_FIELDS = frozenset(f.name for f in dataclasses.fields(Timeouts))

ALL_CLOSED = ProxyStatistics(
    client_connections=0,
    upstream_connections=0,
    idle_upstream_connections=0,
    exchanges=0,
    timers=0,
)


class ProxyKit:
    """Helpers shared by the proxy playbook tests."""

    @staticmethod
    def config(*, servers: int = 1, plain: bool = True, **overrides: float) -> ProxyConfig:
        """A one-listener configuration with ``servers`` backends (A, then B).

        ``overrides`` are fields of :class:`Limits` or :class:`Timeouts` by name,
        for example ``config(buffer_high_water=100, client_header=5)``.
        """
        urls = [f"http://{host}:{port}" for host, port in (SERVER_A, SERVER_B)[:servers]]
        config = quick_config([LISTEN], urls)
        limits = {k: int(v) for k, v in overrides.items() if k in _LIMIT_FIELDS}
        timeouts = {k: v for k, v in overrides.items() if k in _TIMEOUT_FIELDS}
        unknown = set(overrides) - _LIMIT_FIELDS - _TIMEOUT_FIELDS
        if unknown:
            raise TypeError(f"not a limit or timeout: {sorted(unknown)}")
        return dataclasses.replace(
            config,
            limits=dataclasses.replace(config.limits, **limits),
            timeouts=dataclasses.replace(config.timeouts, **timeouts),
            headers=PLAIN if plain else config.headers,
        )

    @staticmethod
    def toml(text: str, *, plain: bool = True) -> ProxyConfig:
        """A configuration parsed from TOML ``text``, with :data:`PLAIN` headers unless asked.

        For the routing, balancing and health tests, whose settings only exist in TOML form.
        """
        config = parse_config(text, "test.toml")
        return dataclasses.replace(config, headers=PLAIN) if plain else config

    @staticmethod
    def error(status: int, *, http10: bool = False, retry_after: int | None = None) -> bytes:
        """The exact response the proxy writes when it answers ``status`` itself.

        For an HTTP/1.0 client h11 rewrites the close option as ``Connection: close``.
        ``retry_after`` is the Retry-After value of a 503 for an overloaded upstream.
        """
        reason = _REASONS[status]
        body = b"%d %s\n" % (status, reason)
        return (
            b"HTTP/1.1 %d %s\r\n" % (status, reason)
            + (b"" if retry_after is None else b"retry-after: %d\r\n" % retry_after)
            + b"content-type: text/plain; charset=utf-8\r\n"
            + b"content-length: %d\r\n" % len(body)
            + (b"Connection" if http10 else b"connection")
            + b": close\r\n\r\n"
            + body
        )

    @staticmethod
    def answered_with_error(
        pb: Playbook,
        client: ConnId,
        status: int,
        *,
        http10: bool = False,
        retry_after: int | None = None,
    ) -> None:
        """Expect the error response ``status`` next, then the end of ``client``.

        The proxy may close at once, or first linger to read and discard what the
        client is still sending (RFC 9112 §9.6) and close at the client's EOF; both
        are fine here (``test_proxy_linger.py`` pins the lingering itself).
        """
        pb << Send(conn=client, data=ProxyKit.error(status, http10=http10, retry_after=retry_after))
        if pb.actual()[-1] == Close(conn=client):
            assert pb << Close(conn=client)
        else:
            assert pb << ShutdownWrite(conn=client)
            assert pb >> EofReceived(conn=client) << Close(conn=client)

    @staticmethod
    def forward(
        pb: Playbook,
        client: ConnId,
        request: bytes,
        forwarded: bytes,
        *,
        server: tuple[str, int] = SERVER_A,
    ) -> Placeholder[ConnId]:
        """Send ``request``, expect a new connection to ``server`` that gets ``forwarded``.

        Returns the placeholder holding the upstream connection id.
        """
        upstream = Placeholder(ConnId)
        host, port = server
        assert (
            pb
            >> DataReceived(conn=client, data=request)
            << OpenUpstream(conn=upstream, host=host, port=port)
            >> UpstreamConnected(conn=upstream)
            << Send(conn=upstream, data=forwarded)
        )
        return upstream

    @staticmethod
    def assert_clean(pb: Playbook) -> None:
        """Every table of the core is empty and no timer is armed (no leak)."""
        core = pb.core
        assert isinstance(core, Proxy)
        assert core.statistics() == ALL_CLOSED
        assert core.next_deadline() is None


@pytest.fixture
def kit() -> ProxyKit:
    """The shared helpers of the proxy playbook tests."""
    return ProxyKit()
