"""``sansproxy demo``: three tiny local backends with the proxy in front of them.

Each backend is a few lines of trio and h11 on an ephemeral 127.0.0.1 port and answers every
request with one line naming itself, such as ``hello from backend 2 (GET /path)``, so a
few requests through the proxy show the load being spread.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from functools import partial

import h11
import trio

from sansproxy.config import quick_config
from sansproxy_io.runner import LOGGER
from sansproxy_trio._serve import serve_trio

__all__ = ["BACKENDS", "run_demo", "serve_demo_backend"]

BACKENDS = 3
logger = logging.getLogger(LOGGER)


async def run_demo(
    port: int,
    *,
    seed: int | None,
    access_log_format: str | None,
    shutdown: trio.Event,
) -> None:
    """Start the backends and the proxy on ``127.0.0.1:port``; return after ``shutdown``.

    Raises:
        ListenError: ``port`` is taken.
    """
    async with trio.open_nursery() as backends:
        ports = [
            await backends.start(serve_demo_backend, number) for number in range(1, BACKENDS + 1)
        ]
        config = quick_config([f"127.0.0.1:{port}"], [f"http://127.0.0.1:{p}" for p in ports])
        if access_log_format is not None:
            settings = replace(config.logging, access_log_format=access_log_format)
            config = replace(config, logging=settings)
        async with trio.open_nursery() as proxy:
            addresses = await proxy.start(partial(serve_trio, config, seed=seed, shutdown=shutdown))
            _, bound = addresses[0]
            print(
                f"sansproxy demo: http://127.0.0.1:{bound}/ balances over {BACKENDS} backends "
                f"on ports {', '.join(map(str, ports))}\n"
                f"try:  curl http://127.0.0.1:{bound}/hello   (run it a few times; Ctrl-C stops)",
                flush=True,
            )
        backends.cancel_scope.cancel()


async def serve_demo_backend(
    number: int, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve backend ``number`` on an ephemeral port (given to ``task_status``) until cancelled."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = int(listeners[0].socket.getsockname()[1])
    logger.debug("demo backend %d on 127.0.0.1:%d", number, port)
    task_status.started(port)
    await trio.serve_listeners(partial(_answer, number), listeners)


async def _answer(number: int, stream: trio.SocketStream) -> None:
    connection = h11.Connection(h11.SERVER)
    try:
        request: h11.Request | None = None
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                connection.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.EndOfMessage) and request is not None:
                method, target = request.method.decode(), request.target.decode()
                body = f"hello from backend {number} ({method} {target})\n".encode()
                headers = [
                    ("Content-Type", "text/plain; charset=utf-8"),
                    ("Content-Length", str(len(body))),
                    ("X-Demo-Backend", str(number)),
                ]
                replies: list[h11.Response | h11.Data | h11.EndOfMessage] = [
                    h11.Response(status_code=200, headers=headers)
                ]
                if method != "HEAD":
                    replies.append(h11.Data(data=body))
                replies.append(h11.EndOfMessage())
                for reply in replies:
                    await stream.send_all(connection.send(reply) or b"")
                if connection.our_state is not h11.DONE or connection.their_state is not h11.DONE:
                    return
                connection.start_next_cycle()
                request = None
            elif isinstance(event, h11.ConnectionClosed):
                return
    except (h11.ProtocolError, trio.BrokenResourceError, trio.ClosedResourceError):
        return  # a demo backend just hangs up on anything odd
    finally:
        await trio.aclose_forcefully(stream)
