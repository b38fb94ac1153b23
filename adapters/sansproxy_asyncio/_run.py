"""The ``sansproxy`` command's asyncio and uvloop modes: a fresh loop, signals, the serve call.

SIGINT or SIGTERM sets the ``shutdown`` event (graceful drain); a second one cancels the
serve task, which stops at once. SIGHUP calls the reload callback. Errors the serve call
raises (a bad certificate, a port in use) propagate, so the command reports them exactly as
on trio.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import importlib
import logging
import signal
from collections.abc import Awaitable, Callable

from sansproxy_io.runner import LOGGER

__all__ = ["LOOPS", "LoopUnavailable", "loop_factory", "run_until_signalled"]

LOOPS = ("asyncio", "uvloop")
"""The ``--loop`` values this module runs."""

logger = logging.getLogger(LOGGER)

Serve = Callable[[asyncio.Event], Awaitable[None]]

TLS_READ_BUFFER = 64 * 1024
"""The read buffer of each TLS connection on the standard asyncio loop, in bytes.

asyncio allocates ``SSLProtocol.max_size`` (256 KiB) per TLS connection up front,
idle or not: about 300 KiB of memory per idle HTTP/2 client. A TLS record carries
at most 16 KiB, so 64 KiB costs no speed. It is a class attribute, so it is set only
here, where the ``sansproxy`` command owns the process, never by ``serve_asyncio``
in an application's loop.
"""


class LoopUnavailable(Exception):
    """The event loop asked for is not installed."""


def loop_factory(loop: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """What makes a new event loop of kind ``loop`` (``"asyncio"`` or ``"uvloop"``).

    Raises:
        LoopUnavailable: ``loop`` is ``"uvloop"`` and uvloop cannot be imported.
        ValueError: ``loop`` is neither.
    """
    if loop == "asyncio":
        return asyncio.new_event_loop
    if loop == "uvloop":
        try:
            # Imported by name: uvloop is an optional extra, unknown to the type checker.
            uvloop = importlib.import_module("uvloop")
        except ImportError as exc:
            raise LoopUnavailable(
                "--loop uvloop needs the uvloop package (pip install 'sansproxy[uvloop]')"
            ) from exc
        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
        return factory
    raise ValueError(f"not an asyncio event loop: {loop!r}")


def run_until_signalled(
    serve: Serve, *, loop: str, on_hangup: Callable[[], None] | None = None
) -> bool:
    """Run ``serve(shutdown)`` on a new loop of kind ``loop`` until it returns.

    SIGHUP calls ``on_hangup`` (a live reload, ``sansproxy_io.reload``) unless shutting down.

    Returns:
        True if a second signal forced the stop, False after a graceful one.

    Raises:
        LoopUnavailable: See :func:`loop_factory`.
        KeyboardInterrupt: Ctrl-C came before the signal handlers were in place.
        Exception: Whatever ``serve`` raised.
    """
    if loop == "asyncio":
        asyncio.sslproto.SSLProtocol.max_size = TLS_READ_BUFFER
    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        return runner.run(_serve_until_signalled(serve, on_hangup))


async def _serve_until_signalled(serve: Serve, on_hangup: Callable[[], None] | None) -> bool:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    forced = False
    task = asyncio.ensure_future(serve(stop))

    def on_signal(signum: signal.Signals) -> None:
        nonlocal forced
        if signum == signal.SIGHUP:
            if stop.is_set():
                logger.info("SIGHUP ignored: shutting down")
            elif on_hangup is None:
                logger.info("SIGHUP: nothing to reload (no configuration file)")
            else:
                on_hangup()  # sansproxy_io.reload: re-read, validate, apply or refuse
        elif not stop.is_set():
            logger.info("%s: shutting down gracefully", signum.name)
            stop.set()
        else:
            logger.warning("%s again: stopping now", signum.name)
            forced = True
            task.cancel()

    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    for signum in signals:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        await task
    except asyncio.CancelledError:
        if not forced:
            raise
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
    return forced
