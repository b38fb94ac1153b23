"""Client wires: the one piece of the core benchmark that knows the client's protocol.

A wire prepares the bytes one client connection sends, request after request, before
anything is timed, and afterwards checks the bytes that connection received: exactly the
responses asked for, each complete, with the expected status and body length. It also
says how the connection is accepted (plain, or TLS with an ALPN protocol) and what the
listener's configuration needs. The driver (:mod:`benchmarks.core.driver`) never looks
inside the bytes; it paces each client by the core's access-log records, so the timed loop
holds no client-side parsing at all.

:class:`Http1Wire` speaks HTTP/1.1 with keep-alive; :class:`H2Wire` speaks HTTP/2 through
the ``h2`` library in client mode, on a TLS listener that offered ``h2`` by ALPN.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import h11

from sansproxy.events import TlsInfo

__all__ = ["WIRES", "ClientWire", "ExchangeError", "H2Wire", "Http1Wire", "Request"]

SETTINGS_FRAME = 0x4
"""HTTP/2 frame type of SETTINGS, the first frame a server sends (RFC 9113 §3.4)."""

_MAX_WINDOW = 2**31 - 1


class ExchangeError(Exception):
    """A connection did not receive exactly the complete, correct responses it asked for."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """What every client asks for, and what a correct answer looks like."""

    authority: str
    path: str
    user_agent: str = "sansproxy-core-bench"
    status: int = 200
    body_size: int = 100


class ClientWire(Protocol):
    """How one protocol's clients are prepared and checked (one instance serves them all)."""

    name: ClassVar[str]
    """The ``--protocol`` value."""
    tls: ClassVar[TlsInfo | None]
    """The TLS facts of ``ConnectionAccepted``; ``None`` for a cleartext connection."""
    listener_toml: ClassVar[str]
    """Extra keys of the ``[[listeners]]`` table this protocol needs."""

    def requests(self, count: int) -> list[bytes]:
        """The bytes of ``count`` requests, in order, each sent when the previous one is done."""

    def speaks_protocol(self, received: bytes) -> bool:
        """Whether the first bytes the server sent are in this wire's protocol."""

    def verify(self, received: bytes, count: int) -> None:
        """Check that ``received`` is exactly ``count`` correct, complete responses.

        Raises:
            ExchangeError: the first problem found.
        """


class Http1Wire:
    """HTTP/1.1 with keep-alive: one request at a time, the same request every time."""

    name: ClassVar[str] = "http1"
    tls: ClassVar[TlsInfo | None] = None
    listener_toml: ClassVar[str] = ""

    def __init__(self, request: Request) -> None:
        self._request = request

    def _h11_request(self) -> h11.Request:
        return h11.Request(
            method="GET",
            target=self._request.path,
            headers=[
                ("Host", self._request.authority),
                ("User-Agent", self._request.user_agent),
                ("Accept", "*/*"),
            ],
        )

    def requests(self, count: int) -> list[bytes]:
        """``count`` times the same ``GET``, as h11 writes it."""
        client = h11.Connection(h11.CLIENT)
        data = (client.send(self._h11_request()) or b"") + (client.send(h11.EndOfMessage()) or b"")
        return [data] * count

    def speaks_protocol(self, received: bytes) -> bool:
        """Whether ``received`` starts with an HTTP/1.x status line."""
        return received.startswith(b"HTTP/1.")

    def verify(self, received: bytes, count: int) -> None:
        """Parse ``received`` with an h11 client that sent the same ``count`` requests."""
        client = h11.Connection(h11.CLIENT)
        client.receive_data(received)
        client.receive_data(b"")  # Nothing more will come: a cut response is an error.
        want = self._request
        for index in range(count):
            where = f"exchange {index + 1} of {count}"
            client.send(self._h11_request())
            client.send(h11.EndOfMessage())
            status, body = 0, 0
            while True:
                try:
                    event = client.next_event()
                except h11.RemoteProtocolError as error:
                    raise ExchangeError(f"{where}: malformed response: {error}") from None
                if type(event) is h11.Response:
                    status = event.status_code
                elif type(event) is h11.Data:
                    body += len(event.data)
                elif type(event) is h11.EndOfMessage:
                    break
                elif type(event) is h11.ConnectionClosed or event in (h11.NEED_DATA, h11.PAUSED):
                    raise ExchangeError(f"{where}: no complete response (got {status or 'none'})")
            if status != want.status or body != want.body_size:
                raise ExchangeError(
                    f"{where}: status {status} with a {body}-byte body "
                    f"(expected {want.status} with {want.body_size} bytes)"
                )
            try:
                client.start_next_cycle()
            except h11.LocalProtocolError:
                raise ExchangeError(f"{where}: the connection was not kept alive") from None
        if client.trailing_data[0]:
            raise ExchangeError(f"{len(client.trailing_data[0])} bytes after the last response")


class H2Wire:
    """HTTP/2 over TLS (ALPN ``h2``): one stream at a time, the h2 library as the client.

    The client opens both flow-control windows to their maximum in its preface, so it never
    has to send WINDOW_UPDATE while it is timed; a connection may therefore receive at most
    2 GiB of bodies. It acknowledges the server's SETTINGS with its second request.
    """

    name: ClassVar[str] = "h2"
    tls: ClassVar[TlsInfo | None] = TlsInfo(
        server_name="bench.example", alpn="h2", version="TLSv1.3"
    )
    # The core learns only that the listener terminates TLS; these files are never read.
    listener_toml: ClassVar[str] = 'certificate = "bench-cert.pem"\nprivate_key = "bench-key.pem"\n'

    def __init__(self, request: Request) -> None:
        self._request = request
        self._headers = [
            (b":method", b"GET"),
            (b":scheme", b"https"),
            (b":authority", request.authority.encode()),
            (b":path", request.path.encode()),
            (b"user-agent", request.user_agent.encode()),
            (b"accept", b"*/*"),
        ]

    @staticmethod
    def _client() -> h2.connection.H2Connection:
        """A client connection after its preface: no push, the largest windows."""
        client = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        client.initiate_connection()
        client.update_settings(
            {
                h2.settings.SettingCodes.ENABLE_PUSH: 0,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: _MAX_WINDOW,
            }
        )
        client.increment_flow_control_window(_MAX_WINDOW - client.outbound_flow_control_window)
        return client

    def requests(self, count: int) -> list[bytes]:
        """The preface with the first ``GET``, then one HEADERS frame per stream.

        Raises:
            ValueError: the bodies of ``count`` responses would not fit in the window.
        """
        if count * self._request.body_size > _MAX_WINDOW:
            raise ValueError("HTTP/2: at most 2 GiB of response bodies per connection")
        client = self._client()
        settings_ack = b"\x00\x00\x00\x04\x01\x00\x00\x00\x00"
        out: list[bytes] = []
        for index in range(count):
            client.send_headers(2 * index + 1, self._headers, end_stream=True)
            data = client.data_to_send()
            out.append(settings_ack + data if index == 1 else data)
        return out

    def speaks_protocol(self, received: bytes) -> bool:
        """Whether ``received`` starts with a SETTINGS frame on stream 0."""
        return (
            len(received) >= 9
            and received[3] == SETTINGS_FRAME
            and int.from_bytes(received[5:9]) & _MAX_WINDOW == 0
        )

    def verify(self, received: bytes, count: int) -> None:
        """Feed ``received`` to an h2 client that opened the same ``count`` streams."""
        client = self._client()
        for index in range(count):
            client.send_headers(2 * index + 1, self._headers, end_stream=True)
        try:
            events = client.receive_data(received)
        except h2.exceptions.ProtocolError as error:
            raise ExchangeError(f"malformed HTTP/2: {error!r}") from None
        status: dict[int, int] = {}
        body: dict[int, int] = {}
        ended: set[int] = set()
        for event in events:
            if isinstance(event, h2.events.ResponseReceived) and event.stream_id is not None:
                found = dict(event.headers or []).get(b":status", b"0")
                status[event.stream_id] = int(found)
            elif isinstance(event, h2.events.DataReceived) and event.stream_id is not None:
                body[event.stream_id] = body.get(event.stream_id, 0) + len(event.data or b"")
            elif isinstance(event, h2.events.StreamEnded) and event.stream_id is not None:
                ended.add(event.stream_id)
            elif isinstance(event, h2.events.StreamReset | h2.events.ConnectionTerminated):
                raise ExchangeError(f"the server ended a stream or the connection: {event}")
        want = self._request
        for index in range(count):
            stream = 2 * index + 1
            where = f"exchange {index + 1} of {count} (stream {stream})"
            if stream not in ended:
                raise ExchangeError(f"{where}: no complete response")
            got, size = status.get(stream, 0), body.get(stream, 0)
            if got != want.status or size != want.body_size:
                raise ExchangeError(
                    f"{where}: status {got} with a {size}-byte body "
                    f"(expected {want.status} with {want.body_size} bytes)"
                )


WIRES: dict[str, Callable[[Request], ClientWire]] = {"http1": Http1Wire, "h2": H2Wire}
"""The client wires by ``--protocol`` name."""
