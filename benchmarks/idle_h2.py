"""Idle HTTP/2 connections: what a proxy holds for a client that made one request and waits.

Each connection does what a browser tab left open does: the TLS handshake with ALPN ``h2``,
the connection preface, one ``GET`` on stream 1, the whole answer read, then nothing. The
client keeps reading (through the ``h2`` library, acknowledging SETTINGS and PINGs), so a
GOAWAY or a close from the proxy marks the connection as lost rather than going unseen.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
from collections.abc import Callable

import h2.config
import h2.connection
import h2.events
import h2.exceptions

from benchmarks.load import Held, Sample, hold_connections

__all__ = ["hold_idle_h2"]

_READ = 65536


def _client_context() -> ssl.SSLContext:
    # The certificate is the run's own throwaway one; what is measured is the proxy's memory.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    return context


class _Http2Held:
    """An open HTTP/2 connection whose one exchange is done; it reads until the proxy leaves."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        connection: h2.connection.H2Connection,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._connection = connection
        self._lost = False
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            while data := await self._reader.read(_READ):
                events = self._connection.receive_data(data)
                self._writer.write(self._connection.data_to_send())
                if any(isinstance(event, h2.events.ConnectionTerminated) for event in events):
                    break
        except (OSError, h2.exceptions.ProtocolError):
            pass
        self._lost = True

    def alive(self) -> bool:
        return not self._lost

    async def close(self) -> None:
        self._task.cancel()
        self._writer.close()
        with contextlib.suppress(OSError, asyncio.CancelledError):
            await self._task
        with contextlib.suppress(OSError, ssl.SSLError):
            await self._writer.wait_closed()


async def _exchange(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    connection: h2.connection.H2Connection,
    authority: str,
    path: str,
) -> bool:
    """Send one GET on stream 1; whether a 200 with its whole body came back."""
    connection.initiate_connection()
    stream = connection.get_next_available_stream_id()
    headers = [(":method", "GET"), (":scheme", "https"), (":authority", authority)]
    connection.send_headers(stream, [*headers, (":path", path)], end_stream=True)
    writer.write(connection.data_to_send())
    status = b""
    while data := await reader.read(_READ):
        for event in connection.receive_data(data):
            if isinstance(event, h2.events.ResponseReceived):
                status = dict(event.headers or []).get(b":status", b"")
            elif isinstance(event, h2.events.DataReceived) and event.stream_id is not None:
                connection.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                writer.write(connection.data_to_send())
                return status == b"200"
            elif isinstance(event, h2.events.StreamReset | h2.events.ConnectionTerminated):
                return False
        writer.write(connection.data_to_send())
    return False


async def _open_h2(port: int, context: ssl.SSLContext, path: str) -> Held | None:
    connection = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="localhost"),
            30,
        )
    except (OSError, ssl.SSLError, TimeoutError):
        return None
    chosen = writer.get_extra_info("ssl_object")
    try:
        if chosen is None or chosen.selected_alpn_protocol() != "h2":
            raise ConnectionError("ALPN did not choose h2")
        if not await asyncio.wait_for(
            _exchange(reader, writer, connection, f"127.0.0.1:{port}", path), 30
        ):
            raise ConnectionError("no 200 answer")
    except (OSError, ssl.SSLError, TimeoutError, h2.exceptions.ProtocolError):
        writer.close()
        return None
    return _Http2Held(reader, writer, connection)


def hold_idle_h2(
    port: int, count: int, measure: Callable[[], int], path: str = "/100b", settle: float = 2.0
) -> Sample:
    """Open ``count`` HTTP/2 connections over TLS, one ``GET path`` each, and keep them open.

    See :func:`benchmarks.load.hold_connections` for how the sample is made.
    """
    opener = functools.partial(_open_h2, port, _client_context(), path)
    return hold_connections(opener, count, measure, settle)
