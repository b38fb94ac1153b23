"""A client of either protocol that drives a :class:`sansproxy.Proxy` directly.

For scripted tests that are about exchanges rather than bytes: the same test runs
over HTTP/1.1 and HTTP/2 (``protocol`` is ``"http1"`` or ``"h2"``), sends requests,
plays the backends (every ``OpenUpstream`` connects at once; what the core writes
upstream is collected per connection) and reads the responses at the event level.
Time moves 1 ms per event.
"""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import h11

from sansproxy import (
    ConnectionAccepted,
    DataReceived,
    OpenUpstream,
    Proxy,
    Send,
    TlsInfo,
    UpstreamConnected,
)
from sansproxy._codec import Headers
from sansproxy.commands import Command
from sansproxy.events import ConnId, Event

__all__ = ["Client"]


class Client:
    """One client connection in either protocol, with what it received parsed."""

    def __init__(self, proxy: Proxy, protocol: str) -> None:
        self.proxy = proxy
        self.protocol = protocol
        self.now = 0.0
        self.conn = proxy.allocate_id()
        alpn = "h2" if protocol == "h2" else "http/1.1"
        self.upstream_bytes: dict[ConnId, bytes] = {}
        """What the core wrote to each upstream connection still waiting for an answer."""
        self.opened: list[OpenUpstream] = []
        """Every upstream connection the core asked for, in order."""
        self.responses: list[tuple[int, Headers, bytes]] = []
        if protocol == "h2":
            self.h2 = h2.connection.H2Connection(
                h2.config.H2Configuration(client_side=True, header_encoding=None)
            )
            self.h2.initiate_connection()
            self._bodies: dict[int, bytes] = {}
            self._heads: dict[int, tuple[int, Headers]] = {}
        else:
            self.h11 = h11.Connection(h11.CLIENT)
            self._h1_sent: list[bytes] = []
        self._apply(
            self._handle(
                ConnectionAccepted(
                    conn=self.conn,
                    listener=0,
                    peer=("203.0.113.7", 50000),
                    local=("192.0.2.1", 443),
                    tls=TlsInfo(alpn=alpn),
                )
            )
        )

    def handle(self, event: Event) -> None:
        """Feed ``event`` to the core (1 ms after the last one) and play out what it says."""
        self._apply(self._handle(event))

    def _handle(self, event: Event) -> list[Command]:
        self.now += 0.001
        return self.proxy.handle(event, self.now)

    def request(self, path: bytes) -> None:
        if self.protocol == "h2":
            stream = self.h2.get_next_available_stream_id()
            fields = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", b"a")]
            self.h2.send_headers(stream, [*fields, (b":path", path)], end_stream=True)
            data = self.h2.data_to_send()
        else:
            # Written by hand, so that requests can be pipelined; the h11 connection that
            # reads the responses is told of each request once it may send one.
            data = b"GET %s HTTP/1.1\r\nhost: a\r\n\r\n" % path
            self._h1_sent.append(path)
            self._tell_h11()
        self._apply(self._handle(DataReceived(conn=self.conn, data=data)))

    def _tell_h11(self) -> None:
        if self._h1_sent and self.h11.our_state is h11.IDLE:
            path = self._h1_sent.pop(0)
            self.h11.send(h11.Request(method=b"GET", target=path, headers=[(b"host", b"a")]))
            self.h11.send(h11.EndOfMessage())

    def backend_answers(self, response: bytes, upstream: ConnId | None = None) -> None:
        """The backend of ``upstream`` (default: the only one waiting) sends ``response``."""
        if upstream is None:
            (upstream,) = self.upstream_bytes
        del self.upstream_bytes[upstream]
        self._apply(self._handle(DataReceived(conn=upstream, data=response)))

    def _apply(self, commands: list[Command]) -> None:
        for command in commands:
            if isinstance(command, OpenUpstream):
                self.opened.append(command)
                self.upstream_bytes[command.conn] = b""
                self._apply(self._handle(UpstreamConnected(conn=command.conn)))
            elif isinstance(command, Send) and command.conn == self.conn:
                self._client_received(command.data)
            elif isinstance(command, Send) and command.conn in self.upstream_bytes:
                self.upstream_bytes[command.conn] += command.data

    def _client_received(self, data: bytes) -> None:
        if self.protocol == "h2":
            for event in self.h2.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived):
                    fields = list(event.headers)
                    status = int(dict(fields)[b":status"])
                    self._heads[event.stream_id] = (status, fields)
                elif isinstance(event, h2.events.DataReceived):
                    self._bodies[event.stream_id] = self._bodies.get(event.stream_id, b"") + (
                        event.data
                    )
                elif isinstance(event, h2.events.StreamEnded):
                    status, fields = self._heads.pop(event.stream_id)
                    self.responses.append((status, fields, self._bodies.pop(event.stream_id, b"")))
            return
        self.h11.receive_data(data)
        while True:
            event = self.h11.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Response):
                self._status, self._fields, self._body = event.status_code, list(event.headers), b""
            elif isinstance(event, h11.Data):
                self._body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                self.responses.append((self._status, self._fields, self._body))
                if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
                    self.h11.start_next_cycle()
                    self._tell_h11()
