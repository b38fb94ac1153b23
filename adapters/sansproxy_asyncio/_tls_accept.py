"""Accepting on a TLS listener: look at the first byte, then hand the socket to asyncio.

``loop.create_server(ssl=...)`` starts the handshake on whatever the client sends, so a
client that speaks plain HTTP to the TLS port is dropped without a word. Instead, each
TLS listener gets an accept loop of its own:

1. ``sock_accept`` takes the connection;
2. the first byte is peeked (``MSG_PEEK``: it stays in the socket for the handshake),
   waiting for it with ``add_reader`` (the socket has no transport yet, so the loop
   lets us watch it), within ``timeouts.client_header``;
3. a TLS handshake record (0x16) goes to ``connect_accepted_socket(ssl=...)``, asyncio's
   own TLS, as before; anything else is connected without TLS and reported to the core
   as ``not_tls``, and the core answers it (the adapter parses no HTTP);
4. a handshake that fails or times out is reported as ``TlsHandshakeFailed``; a client
   that closes before sending anything is not (a TCP health check does that).

Both asyncio's loop and uvloop offer these calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Coroutine, MutableMapping
from typing import TYPE_CHECKING, Any

from sansproxy_io.listen import LISTEN_BACKLOG, socket_address
from sansproxy_io.runner import looks_like_tls

if TYPE_CHECKING:
    from sansproxy_asyncio._backend import AsyncioBackend

__all__ = ["TlsAcceptor"]

ServerNames = MutableMapping[ssl.SSLObject, str]


class TlsAcceptor:
    """Accepts on the sockets of one TLS listener until :meth:`close`."""

    def __init__(
        self,
        backend: AsyncioBackend,
        index: int,
        context: ssl.SSLContext,
        names: ServerNames,
        *,
        handshake_timeout: float,
        shutdown_timeout: float,
    ) -> None:
        self._backend = backend
        self._index = index
        self._context = context
        self._names = names
        self._handshake_timeout = handshake_timeout
        self._shutdown_timeout = shutdown_timeout
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def serve(self, sock: socket.socket) -> None:
        """Start accepting on ``sock`` (bound; made to listen here)."""
        sock.setblocking(False)
        sock.listen(LISTEN_BACKLOG)
        self._spawn(self._accept_loop(sock))

    def close(self) -> None:
        """Stop accepting; connections still before or in their handshake are dropped."""
        self._closed = True
        for task in list(self._tasks):
            task.cancel()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = self._backend.loop.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept_loop(self, sock: socket.socket) -> None:
        loop = self._backend.loop
        while not self._closed:
            try:
                client, _ = await loop.sock_accept(sock)
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                continue
            except OSError:
                return  # the listening socket was closed
            self._spawn(self._first_byte(client))

    async def _first_byte(self, client: socket.socket) -> None:
        loop = self._backend.loop
        handed_over = False
        try:
            client.setblocking(False)
            try:
                peer = socket_address(client.getpeername())
            except OSError:
                return  # gone before we looked at it
            start = loop.time()
            try:
                first = await asyncio.wait_for(_peek(loop, client), self._handshake_timeout)
            except TimeoutError:
                self._failed(peer, "timed out")
                return
            except OSError:
                return  # reset before it sent anything: not a handshake
            if not first or not self._backend.accepting:
                return  # connected and closed without a word (a TCP check)
            if not looks_like_tls(first):
                handed_over = True
                await loop.connect_accepted_socket(
                    lambda: self._backend.client_protocol(self._index, None, not_tls=True),
                    client,
                )
                return
            left = max(0.001, self._handshake_timeout - (loop.time() - start))
            handed_over = True
            try:
                await loop.connect_accepted_socket(
                    lambda: self._backend.client_protocol(self._index, self._names),
                    client,
                    ssl=self._context,
                    ssl_handshake_timeout=left,
                    ssl_shutdown_timeout=self._shutdown_timeout,
                )
            except (OSError, ssl.SSLError, TimeoutError, ConnectionError) as error:
                self._failed(peer, _reason(error))
                with contextlib.suppress(OSError):
                    client.close()
        finally:
            if not handed_over:
                with contextlib.suppress(OSError):
                    client.close()

    def _failed(self, peer: tuple[str, int], reason: str) -> None:
        if self._backend.accepting and not self._closed:
            self._backend.runner.handshake_failed(listener=self._index, peer=peer, reason=reason)


async def _peek(loop: asyncio.AbstractEventLoop, client: socket.socket) -> bytes:
    """The client's first byte, left in the socket; ``b""`` if it closed first."""
    while True:
        try:
            return client.recv(1, socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            pass
        readable = loop.create_future()
        fd = client.fileno()
        loop.add_reader(fd, _wake, readable)
        try:
            await readable
        finally:
            loop.remove_reader(fd)


def _wake(readable: asyncio.Future[None]) -> None:
    """The socket is readable (the loop may say so again before the reader is removed)."""
    if not readable.done():
        readable.set_result(None)


def _reason(error: BaseException) -> str:
    """Why a handshake failed, in OpenSSL's short words (``wrong version number``)."""
    if isinstance(error, ssl.SSLError) and error.reason:
        return error.reason.lower().replace("_", " ")
    if isinstance(error, TimeoutError):
        return "timed out"
    return str(error) or type(error).__name__
