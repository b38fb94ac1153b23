"""``serve_asyncio``: bind the listeners, run one core on asyncio, shut down gracefully.

Shutdown, in order (started by setting the ``shutdown`` event), as in ``serve_trio``:

1. stop accepting: the servers stop listening; a TLS handshake that finishes later is reset;
2. ``ShutdownRequested`` goes to the core, which lets in-flight exchanges finish and cuts them
   at its drain deadline (``timeouts.drain``);
3. the core answers ``ShutdownComplete`` once it has closed every connection;
4. the adapter gives those closes up to ``timeouts.drain`` to flush, resets what is left and
   returns.

Cancelling the task that runs ``serve_asyncio`` instead stops everything at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import ssl
import weakref
from collections.abc import Callable, MutableMapping, Sequence

from sansproxy import Proxy
from sansproxy.config import ProxyConfig
from sansproxy.events import ShutdownRequested
from sansproxy_asyncio._backend import AsyncioBackend
from sansproxy_asyncio._tls_accept import TlsAcceptor
from sansproxy_io.listen import (
    LISTEN_BACKLOG,
    Address,
    bind_listener,
    listening_message,
    socket_address,
)
from sansproxy_io.record import FLUSH_INTERVAL, Recorder, RecordTarget, open_recorder
from sansproxy_io.reload import Reloader
from sansproxy_io.runner import LOGGER, Runner
from sansproxy_io.tls import ClientContexts, server_context, warn_unverified_upstreams

__all__ = ["serve_asyncio"]

logger = logging.getLogger(LOGGER)

ServerNames = MutableMapping[ssl.SSLObject, str]


async def serve_asyncio(
    config: ProxyConfig,
    *,
    seed: int | None = None,
    shutdown: asyncio.Event | None = None,
    started: Callable[[list[Address]], None] | None = None,
    record: RecordTarget | None = None,
    listen_sockets: Sequence[Sequence[socket.socket]] | None = None,
    reloader: Reloader | None = None,
) -> None:
    """Run a proxy for ``config`` on the running asyncio loop until cancelled or ``shutdown``.

    It runs next to the application's own tasks (any asyncio loop, uvloop included)::

        stop = asyncio.Event()
        bound = asyncio.get_running_loop().create_future()
        proxy = asyncio.create_task(serve_asyncio(config, shutdown=stop, started=bound.set_result))
        addresses = await bound  # [(host, port), ...]; port 0 binds an ephemeral port
        ...
        stop.set()
        await proxy  # graceful: returns once every connection is closed

    (If start-up fails, ``proxy`` raises and ``bound`` stays pending: wait for the first of
    the two, as ``examples/embed_asyncio.py`` does.)

    For each bound socket one INFO line ``listening on http://HOST:PORT`` (``https://``
    for TLS listeners, IPv6 hosts in brackets) is logged on the ``sansproxy`` logger.

    Args:
        config: The validated configuration.
        seed: Seed of the core's random numbers (balancing choices, jitter); drawn from
            ``os.urandom`` when ``None``. Logged at DEBUG level so a run can be replayed.
        shutdown: Set it to shut down gracefully (see the module docs).
        started: Called once every listener is bound and accepting, with the bound
            ``(host, port)`` pairs in listener order.
        record: Record every turn of the core there, for ``sansproxy replay``
            (``docs/record-replay.md``).
        listen_sockets: Listening sockets to serve instead of binding (one list per
            listener), as a worker inherits them from its supervisor; the lines are then
            ``accepting on http://HOST:PORT`` (the supervisor logs "listening on" once).
        reloader: Attached to the running core; the caller calls its ``reload()`` on SIGHUP
            (``sansproxy_io.reload``).

    Raises:
        ConfigError: A TLS certificate, key or CA file cannot be loaded, or the ``record``
            file cannot be created.
        ListenError: A listener cannot be bound.
    """
    loop = asyncio.get_running_loop()
    if seed is None:
        seed = int.from_bytes(os.urandom(8), "big")
    logger.debug("rng seed %d", seed)
    logger.debug("event loop %s.%s", type(loop).__module__, type(loop).__qualname__)
    server_contexts = [
        _server_context(config, index) if listener.tls else None
        for index, listener in enumerate(config.listeners)
    ]
    client_contexts = ClientContexts()
    client_contexts.preload(config)
    warn_unverified_upstreams(config, logger)
    if listen_sockets is None:
        bound, verb = _bind(config), "listening on"
    else:
        bound, verb = [list(sockets) for sockets in listen_sockets], "accepting on"
    servers: list[asyncio.Server | TlsAcceptor] = []
    backend = AsyncioBackend(loop, client_contexts, close_timeout=config.timeouts.drain)
    recorder: Recorder | None = None
    flushing: asyncio.Task[None] | None = None
    try:
        proxy = Proxy(config, rng=random.Random(seed))
        recorder = open_recorder(record, config=config, seed=seed) if record else None
        log_format = config.logging.access_log_format if config.logging.access_log else None
        runner = Runner(proxy, loop.time, backend, access_log_format=log_format, recorder=recorder)
        backend.attach(runner)
        runner.start()
        if reloader is not None:
            reloader.attach(runner, [tls[0] if tls else None for tls in server_contexts])
        if recorder is not None:
            flushing = loop.create_task(_keep_flushing(recorder))
        addresses: list[Address] = []
        for index, sockets in enumerate(bound):
            tls = server_contexts[index]
            acceptor = None
            if tls is not None:
                acceptor = TlsAcceptor(
                    backend,
                    index,
                    tls[0],
                    tls[1],
                    handshake_timeout=config.timeouts.client_header,
                    shutdown_timeout=config.timeouts.drain,
                )
                servers.append(acceptor)
            for sock in sockets:
                address = socket_address(sock.getsockname())
                if acceptor is None:
                    servers.append(await _start_server(backend, index, sock))
                else:
                    acceptor.serve(sock)
                addresses.append(address)
                logger.info("%s", listening_message(tls is not None, address, verb=verb))
        if started is not None:
            started(addresses)

        if shutdown is None:
            await loop.create_future()  # until cancelled
        else:
            await shutdown.wait()
        logger.info("shutting down: no new connections, draining")
        backend.accepting = False
        for server in servers:
            server.close()
        runner.dispatch(ShutdownRequested())
        await backend.shutdown_done.wait()
        with contextlib.suppress(TimeoutError):  # what is left is reset below
            await asyncio.wait_for(backend.wait_idle(), backend.close_timeout)
        logger.info("shutdown complete")
    finally:
        backend.accepting = False
        for server in servers:
            server.close()
        for sockets in bound:
            for sock in sockets:
                sock.close()  # those create_server never took over
        backend.abort_all()
        if flushing is not None:
            flushing.cancel()
        if recorder is not None:
            recorder.close()


async def _keep_flushing(recorder: Recorder) -> None:
    """Flush the recording every second, as the trio adapter does."""
    while True:
        await asyncio.sleep(FLUSH_INTERVAL)
        recorder.flush()


def _bind(config: ProxyConfig) -> list[list[socket.socket]]:
    bound: list[list[socket.socket]] = []
    try:
        for listener in config.listeners:
            bound.append(bind_listener(listener.host, listener.port))
    except BaseException:
        for sockets in bound:
            for sock in sockets:
                sock.close()
        raise
    return bound


async def _start_server(backend: AsyncioBackend, index: int, sock: socket.socket) -> asyncio.Server:
    """Serve a cleartext listener's socket (TLS ones: ``_tls_accept.TlsAcceptor``)."""
    return await backend.loop.create_server(
        lambda: backend.client_protocol(index, None), sock=sock, backlog=LISTEN_BACKLOG
    )


def _server_context(config: ProxyConfig, index: int) -> tuple[ssl.SSLContext, ServerNames]:
    """The listener's context, with an SNI callback that leaves each name by its SSL object.

    asyncio runs handshakes in protocol callbacks, not in a task of ours, so the context
    variable ``sansproxy_io.tls.capture_sni`` relies on is not there; the SSL object is,
    and ``connection_made`` finds the same one in ``get_extra_info("ssl_object")``.
    """
    context = server_context(config, index)
    names: ServerNames = weakref.WeakKeyDictionary()

    def remember(
        ssl_object: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _: ssl.SSLContext
    ) -> None:
        if server_name is not None and isinstance(ssl_object, ssl.SSLObject):
            names[ssl_object] = server_name

    context.sni_callback = remember
    return context, names
