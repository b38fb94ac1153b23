"""The reference relay: the smallest honest HTTP/1.1 reverse proxy on asyncio and h11.

Targets are set against it: sansproxy should beat a proxy that does only the essential
work. It parses both sides with h11 (as the core does) and re-serialises every message,
drops hop-by-hop headers, keeps connections alive on both sides with a pool of idle
upstream connections, streams bodies, and stops reading one side while the other side's
transport is above its write-buffer high-water mark. It has no timeouts, limits, header
rules, retries or access log. Run it alone with::

    python -m benchmarks.relay --port 8081 --upstream 127.0.0.1:9000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from collections.abc import Sequence
from typing import cast

import h11

__all__ = ["Relay", "main"]

_HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te", b"upgrade"})
_Headers = list[tuple[bytes, bytes]]


def _end_to_end(headers: Sequence[tuple[bytes, bytes]]) -> _Headers:
    return [(name, value) for name, value in headers if name not in _HOP_BY_HOP]


class Relay:
    """Shared state of one relay: where the upstream is and its idle connections."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.idle: list[_Upstream] = []
        self.connecting: set[asyncio.Task[None]] = set()

    async def connect(self) -> _Upstream:
        """A fresh upstream connection (the pool is tried first by the caller)."""
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(lambda: _Upstream(self), self.host, self.port)
        return protocol


class _Side(asyncio.Protocol):
    """What both sides share: an h11 connection, a transport and a peer for backpressure."""

    def __init__(self, role: type[h11.CLIENT] | type[h11.SERVER]) -> None:
        self.h11 = h11.Connection(role)
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass

    def send(self, event: h11.Event) -> None:
        assert self.transport is not None
        if isinstance(event, h11.Data):
            self.transport.writelines(self.h11.send_with_data_passthrough(event) or ())
        else:
            self.transport.write(self.h11.send(event) or b"")

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()


class _Upstream(_Side):
    """A connection to the backend: responses go to the bound client connection."""

    def __init__(self, relay: Relay) -> None:
        super().__init__(h11.CLIENT)
        self.relay = relay
        self.closed = False

    def data_received(self, data: bytes) -> None:
        self.h11.receive_data(data)
        while self.peer is not None:
            event = self.h11.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Response):
                headers = _end_to_end(event.headers)
                self.peer.send(h11.Response(status_code=event.status_code, headers=headers))
            elif isinstance(event, h11.Data | h11.EndOfMessage):
                client = self.peer
                client.send(event)
                if isinstance(event, h11.EndOfMessage):
                    self._release()
                    assert isinstance(client, _Downstream)
                    client.exchange_done()
            elif isinstance(event, h11.ConnectionClosed):
                return

    def _release(self) -> None:
        self.peer = None
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
            self.relay.idle.append(self)
        elif self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        with contextlib.suppress(ValueError):
            self.relay.idle.remove(self)
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.abort()  # a response cut short must not look complete


class _Downstream(_Side):
    """A client connection: each request is relayed on a pooled upstream connection."""

    def __init__(self, relay: Relay) -> None:
        super().__init__(h11.SERVER)
        self.relay = relay
        self.waiting = False  # connecting upstream: later events stay in h11's buffer

    def data_received(self, data: bytes) -> None:
        self.h11.receive_data(data)
        self._relay_events()

    def _relay_events(self) -> None:
        while not self.waiting and self.transport is not None:
            try:
                event = self.h11.next_event()
            except h11.RemoteProtocolError:
                self.transport.close()
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Request):
                self._start(event)
            elif isinstance(event, h11.Data | h11.EndOfMessage) and self.peer is not None:
                self.peer.send(event)
            elif isinstance(event, h11.ConnectionClosed):
                self.transport.close()
                return

    def _start(self, request: h11.Request) -> None:
        relayed = h11.Request(
            method=request.method, target=request.target, headers=_end_to_end(request.headers)
        )
        while self.relay.idle:
            upstream = self.relay.idle.pop()
            if not upstream.closed:
                self._bind(upstream, relayed)
                return
        self.waiting = True
        assert self.transport is not None
        self.transport.pause_reading()
        task = asyncio.ensure_future(self._connect(relayed))
        self.relay.connecting.add(task)
        task.add_done_callback(self.relay.connecting.discard)

    async def _connect(self, request: h11.Request) -> None:
        try:
            upstream = await self.relay.connect()
        except OSError:
            if self.transport is not None:
                self.transport.abort()
            return
        self.waiting = False
        if self.transport is None or self.transport.is_closing():
            upstream.relay.idle.append(upstream)
            return
        self._bind(upstream, request)
        self.transport.resume_reading()
        self._relay_events()

    def _bind(self, upstream: _Upstream, request: h11.Request) -> None:
        upstream.peer, self.peer = self, upstream
        upstream.send(request)

    def exchange_done(self) -> None:
        """The response was relayed in full: keep the connection alive or close it."""
        self.peer = None
        if self.h11.our_state is h11.MUST_CLOSE or self.h11.their_state is not h11.DONE:
            if self.transport is not None:
                self.transport.close()
            return
        self.h11.start_next_cycle()
        self._relay_events()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.peer is not None and self.peer.transport is not None:
            self.peer.peer = None
            self.peer.transport.close()  # mid-exchange: the upstream cannot be reused


async def serve(host: str, port: int, upstream_host: str, upstream_port: int) -> None:
    """Relay ``host:port`` to the upstream until cancelled."""
    relay = Relay(upstream_host, upstream_port)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Downstream(relay), host, port, backlog=4096)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    """Run the relay from the command line (see the module docs)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.relay")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, metavar="HOST:PORT")
    args = parser.parse_args(argv)
    upstream_host, _, upstream_port = args.upstream.rpartition(":")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.host, args.port, upstream_host, int(upstream_port)))


if __name__ == "__main__":
    main()
