"""``serve_trio``: bind the listeners, run one core on trio, shut down gracefully.

Shutdown, in order (started by setting the ``shutdown`` event):

1. stop accepting: the listening sockets are closed; handshakes still in progress are dropped;
2. ``ShutdownRequested`` goes to the core, which lets in-flight exchanges finish and cuts them
   at its drain deadline (``timeouts.drain``);
3. the core answers ``ShutdownComplete`` once it has closed every connection;
4. the adapter gives those closes up to ``timeouts.drain`` to flush, cancels what is left
   (the timer task) and returns.

Cancelling the task that runs ``serve_trio`` instead stops everything at once.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import ssl
from collections.abc import Sequence
from functools import partial

import trio

from sansproxy import Proxy
from sansproxy.config import ProxyConfig
from sansproxy.events import ShutdownRequested, TlsInfo
from sansproxy_io.listen import ListenError
from sansproxy_io.record import FLUSH_INTERVAL, Recorder, RecordTarget, open_recorder
from sansproxy_io.reload import Reloader
from sansproxy_io.runner import LOGGER, Runner, looks_like_tls
from sansproxy_io.tls import (
    ClientContexts,
    capture_sni,
    server_contexts,
    tls_info,
    warn_unverified_upstreams,
)
from sansproxy_trio._trio_backend import TrioBackend, set_nodelay

__all__ = ["ListenError", "serve_trio"]

logger = logging.getLogger(LOGGER)

Address = tuple[str, int]


async def serve_trio(
    config: ProxyConfig,
    *,
    seed: int | None = None,
    shutdown: trio.Event | None = None,
    record: RecordTarget | None = None,
    listen_sockets: Sequence[Sequence[socket.socket]] | None = None,
    reloader: Reloader | None = None,
    task_status: trio.TaskStatus[list[Address]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a proxy for ``config`` until cancelled or until ``shutdown`` is set.

    Use it with ``nursery.start`` to learn the bound addresses (port 0 binds an
    ephemeral port)::

        stop = trio.Event()
        addresses = await nursery.start(partial(serve_trio, config, shutdown=stop))
        ...
        stop.set()  # graceful: returns once every connection is closed

    For each bound socket one INFO line ``listening on http://HOST:PORT`` (``https://``
    for TLS listeners, IPv6 hosts in brackets) is logged on the ``sansproxy`` logger.

    Args:
        config: The validated configuration.
        seed: Seed of the core's random numbers (balancing choices, jitter); drawn from
            ``os.urandom`` when ``None``. Logged at DEBUG level so a run can be replayed.
        shutdown: Set it to shut down gracefully (see the module docs).
        record: Record every turn of the core there, for ``sansproxy replay``
            (``docs/record-replay.md``).
        listen_sockets: Listening sockets to serve instead of binding (one list per listener), as
            a worker inherits them from its supervisor; the lines are then ``accepting on
            http://HOST:PORT`` (the supervisor logs "listening on" once).
        reloader: Attached to the running core; the caller calls its ``reload()`` on SIGHUP
            (``sansproxy_io.reload``).
        task_status: Receives the list of bound ``(host, port)`` pairs, in listener order.

    Raises:
        ConfigError: A TLS certificate, key or CA file cannot be loaded, or the ``record``
            file cannot be created.
        ListenError: A listener cannot be bound.
    """
    if seed is None:
        seed = int.from_bytes(os.urandom(8), "big")
    logger.debug("rng seed %d", seed)
    contexts = server_contexts(config)
    client_contexts = ClientContexts()
    client_contexts.preload(config)
    warn_unverified_upstreams(config, logger)
    bound = await _bind(config) if listen_sockets is None else _adopt(listen_sockets)
    verb = "listening on" if listen_sockets is None else "accepting on"
    try:
        proxy = Proxy(config, rng=random.Random(seed))
        recorder = open_recorder(record, config=config, seed=seed) if record else None
        addresses: list[Address] = []
        for index, sockets in enumerate(bound):
            scheme = "https" if config.listeners[index].tls else "http"
            for listener in sockets:
                host, port = _address(listener.socket.getsockname())
                addresses.append((host, port))
                logger.info("%s %s://%s:%d", verb, scheme, _bracketed(host), port)
    except BaseException:
        for sockets in bound:
            for listener in sockets:
                listener.socket.close()
        raise

    async with trio.open_nursery() as nursery:
        backend = TrioBackend(nursery, client_contexts, close_timeout=config.timeouts.drain)
        log_format = config.logging.access_log_format if config.logging.access_log else None
        runner = Runner(
            proxy, trio.current_time, backend, access_log_format=log_format, recorder=recorder
        )
        backend.attach(runner)
        if reloader is not None:
            reloader.attach(runner, contexts)
        if recorder is not None:
            nursery.start_soon(_keep_recording, recorder)
        nursery.start_soon(backend.timer.run, runner.on_timer)
        runner.start()
        acceptor = _Acceptor(backend, config.timeouts.client_header)
        accept_scope = trio.CancelScope()
        accept_stopped = trio.Event()
        nursery.start_soon(acceptor.run, bound, contexts, nursery, accept_scope, accept_stopped)
        task_status.started(addresses)

        if shutdown is None:
            await trio.sleep_forever()
        else:
            await shutdown.wait()
        logger.info("shutting down: no new connections, draining")
        acceptor.accepting = False
        accept_scope.cancel()
        await accept_stopped.wait()
        runner.dispatch(ShutdownRequested())
        await backend.shutdown_done.wait()
        with trio.move_on_after(backend.close_timeout):
            await backend.wait_idle()
        logger.info("shutdown complete")
        nursery.cancel_scope.cancel()


async def _keep_recording(recorder: Recorder) -> None:
    """Flush the recording every second; close it (end line) when the server stops."""
    try:
        while True:
            await trio.sleep(FLUSH_INTERVAL)
            recorder.flush()
    finally:
        recorder.close()


def _adopt(sockets: Sequence[Sequence[socket.socket]]) -> list[list[trio.SocketListener]]:
    """Serve listening sockets bound elsewhere (inherited from a supervisor)."""
    return [
        [trio.SocketListener(trio.socket.from_stdlib_socket(sock)) for sock in listener]
        for listener in sockets
    ]


async def _bind(config: ProxyConfig) -> list[list[trio.SocketListener]]:
    bound: list[list[trio.SocketListener]] = []
    try:
        for listener in config.listeners:
            try:
                sockets = await trio.open_tcp_listeners(listener.port, host=listener.host)
            except OSError as exc:
                where = f"{_bracketed(listener.host)}:{listener.port}"
                raise ListenError(
                    exc.errno, f"cannot listen on {where}: {exc.strerror or exc}"
                ) from exc
            bound.append(sockets)
    except BaseException:
        for sockets in bound:
            for socket_listener in sockets:
                socket_listener.socket.close()
        raise
    return bound


class _Acceptor:
    """Accepts clients, does the TLS handshake, and hands each connection to the runner."""

    def __init__(self, backend: TrioBackend, handshake_timeout: float) -> None:
        self.accepting = True
        self._backend = backend
        self._handshake_timeout = handshake_timeout

    async def run(
        self,
        bound: list[list[trio.SocketListener]],
        contexts: list[ssl.SSLContext | None],
        handler_nursery: trio.Nursery,
        scope: trio.CancelScope,
        stopped: trio.Event,
    ) -> None:
        try:
            with scope:
                async with trio.open_nursery() as nursery:
                    for index, sockets in enumerate(bound):
                        handler = partial(self._client, index, contexts[index])
                        nursery.start_soon(
                            partial(
                                trio.serve_listeners,
                                handler,
                                sockets,
                                handler_nursery=handler_nursery,
                            )
                        )
        finally:
            # serve_listeners closes its sockets on the way out; make sure of it.
            for sockets in bound:
                for listener in sockets:
                    listener.socket.close()
            stopped.set()

    async def _client(
        self, index: int, context: ssl.SSLContext | None, raw: trio.SocketStream
    ) -> None:
        try:
            set_nodelay(raw)
            peer = _address(raw.socket.getpeername())
            local = _address(raw.socket.getsockname())
        except OSError:
            await trio.aclose_forcefully(raw)  # gone before we looked at it
            return
        stream: trio.abc.Stream = raw
        tls: TlsInfo | None = None
        not_tls = False
        if context is not None:
            runner = self._backend.runner
            failure = "timed out"
            with trio.move_on_after(self._handshake_timeout):
                try:
                    # Peek, so that a TLS client's bytes stay for the handshake.
                    first = await raw.socket.recv(1, socket.MSG_PEEK)
                except OSError:
                    first = b""
                    failure = ""  # reset before it said anything: not a handshake
                if not first:
                    failure = ""  # connected and closed (a TCP check): not a handshake
                elif not looks_like_tls(first):
                    not_tls = True  # the core answers it (plain HTTP, most likely)
                else:
                    ssl_stream = trio.SSLStream(raw, context, server_side=True)
                    with capture_sni() as names:
                        try:
                            await ssl_stream.do_handshake()
                        except trio.BrokenResourceError as exc:
                            failure = _reason(exc.__cause__)
                        else:
                            tls = tls_info(ssl_stream, names[0] if names else None)
                            stream = ssl_stream
            if tls is None and not not_tls:
                if failure and self.accepting:
                    runner.handshake_failed(listener=index, peer=peer, reason=failure)
                await trio.aclose_forcefully(raw)
                return
        if not self.accepting:
            await trio.aclose_forcefully(raw)
            return
        connection = self._backend.new_connection(raw)
        connection.conn = self._backend.runner.accept(
            connection, listener=index, peer=peer, local=local, tls=tls, not_tls=not_tls
        )
        # Only from here on is the connection "live": shutdown waits for it, not for handshakes.
        await self._backend.track(lambda: connection.serve_client(stream))


def _reason(error: BaseException | None) -> str:
    """Why a handshake failed, in OpenSSL's short words (``wrong version number``)."""
    if isinstance(error, ssl.SSLError) and error.reason:
        return error.reason.lower().replace("_", " ")
    return str(error) if error is not None else "connection closed"


def _address(sockname: object) -> Address:
    # AF_INET gives (host, port); AF_INET6 gives (host, port, flowinfo, scope_id).
    if not isinstance(sockname, tuple) or len(sockname) < 2:
        raise OSError(f"not an IP socket address: {sockname!r}")
    return (str(sockname[0]), int(sockname[1]))


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host
