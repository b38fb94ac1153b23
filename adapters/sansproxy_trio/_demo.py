"""``sansproxy demo``: three tiny local backends with the proxy in front of them.

Each backend is a few lines of trio and h11 on an ephemeral 127.0.0.1 port and answers every
request with one line naming itself, such as ``hello from backend 2 (GET /path)``, so a
few requests through the proxy show the load being spread. The proxy probes them
(:data:`HEALTH_CHECK`), and every backend also answers ``POST /_demo/backends/N/stop``
and ``POST /_demo/backends/N/start``: stopping backend N closes its listening socket and
its connections, so it refuses connections as a crashed server does; the proxy's log shows
it go down while the traffic moves to the others, and come back up once it is started
again. The last running backend cannot be stopped, so that a ``start`` still gets through.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

import h11
import trio

from sansproxy.config import QUICK_UPSTREAM_NAME, quick_config
from sansproxy.health import ActiveCheck
from sansproxy_io.runner import LOGGER
from sansproxy_trio._serve import serve_trio

__all__ = ["BACKENDS", "HEALTH_CHECK", "DemoBackends", "run_demo"]

BACKENDS = 3
HEALTH_CHECK = ActiveCheck(path="/health", interval=1.0, timeout=0.5, rise=2, fall=2)
"""The demo's probes: a stopped backend is down within about two seconds, and back as fast."""
_CONTROL = re.compile(r"/_demo/backends/(\d+)/(stop|start)")
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
    async with trio.open_nursery() as nursery:
        backends = DemoBackends(nursery, BACKENDS)
        for number in range(1, BACKENDS + 1):
            await backends.start(number)
        ports = list(backends.ports)
        config = quick_config([f"127.0.0.1:{port}"], [f"http://127.0.0.1:{p}" for p in ports])
        upstream = replace(config.upstreams[QUICK_UPSTREAM_NAME], health_check=HEALTH_CHECK)
        # Cleartext HTTP/2 with prior knowledge too, so the demo shows both protocols.
        listeners = tuple(replace(x, protocols=("h2c", "http/1.1")) for x in config.listeners)
        config = replace(config, listeners=listeners, upstreams={QUICK_UPSTREAM_NAME: upstream})
        if access_log_format is not None:
            settings = replace(config.logging, access_log_format=access_log_format)
            config = replace(config, logging=settings)
        async with trio.open_nursery() as proxy:
            addresses = await proxy.start(partial(serve_trio, config, seed=seed, shutdown=shutdown))
            _, bound = addresses[0]
            print(_instructions(bound, ports), flush=True)
        nursery.cancel_scope.cancel()


def _instructions(port: int, ports: list[int]) -> str:
    url = f"http://127.0.0.1:{port}"
    return (
        f"sansproxy demo: {url}/ balances over {len(ports)} backends "
        f"on ports {', '.join(map(str, ports))}\n"
        f"try:    curl {url}/hello   (run it a few times; Ctrl-C stops)\n"
        f"http/2: curl --http2-prior-knowledge {url}/hello   (HTTP/2 without TLS)\n"
        f"stop:   curl -X POST {url}/_demo/backends/2/stop    (backend 2 now refuses "
        "connections: the log shows it go down, curl keeps working on 1 and 3)\n"
        f"start:  curl -X POST {url}/_demo/backends/2/start   (it is back after "
        f"{HEALTH_CHECK.rise} passing health checks)"
    )


class DemoBackends:
    """The demo's backends, numbered from 1, each of which can be stopped and started again.

    Stopping one cancels its task, which closes its listening socket and its connections,
    so that it refuses connections the way a crashed server does; starting it listens on
    its old port again (trio sets ``SO_REUSEADDR``).
    """

    def __init__(self, nursery: trio.Nursery, count: int) -> None:
        self._nursery = nursery
        self._running: dict[int, trio.CancelScope] = {}
        self.ports = [0] * count
        """Each backend's port, at index ``number - 1``; kept across a stop and start."""

    def running(self, number: int) -> bool:
        """Whether backend ``number`` is listening."""
        return number in self._running

    def running_count(self) -> int:
        """How many backends are listening."""
        return len(self._running)

    async def start(self, number: int) -> None:
        """Serve backend ``number``, on its old port if it had one; nothing if it runs.

        Raises:
            OSError: the port cannot be bound (again).
        """
        if number in self._running:
            return
        again = self.ports[number - 1] != 0
        self.ports[number - 1] = int(await self._nursery.start(self._serve, number))
        if again:
            port = self.ports[number - 1]
            logger.info("demo backend %d started again on 127.0.0.1:%d", number, port)

    def stop(self, number: int) -> None:
        """Close backend ``number``'s listener and connections; nothing if it is stopped."""
        scope = self._running.pop(number, None)
        if scope is not None:
            scope.cancel()
            port = self.ports[number - 1]
            logger.info("demo backend %d stopped: 127.0.0.1:%d refuses connections", number, port)

    async def _serve(
        self, number: int, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        with trio.CancelScope() as scope:
            listeners = await trio.open_tcp_listeners(self.ports[number - 1], host="127.0.0.1")
            port = int(listeners[0].socket.getsockname()[1])
            self._running[number] = scope
            logger.debug("demo backend %d on 127.0.0.1:%d", number, port)
            task_status.started(port)
            await trio.serve_listeners(partial(_answer, number, self), listeners)


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    text: str
    headers: tuple[tuple[str, str], ...] = ()
    then: Callable[[], None] | None = None
    """Done once the reply is sent (a backend that stops itself must answer first)."""


async def _reply(number: int, backends: DemoBackends, method: str, target: str) -> _Reply:
    control = _CONTROL.fullmatch(target)
    if control is None:
        return _Reply(200, f"hello from backend {number} ({method} {target})\n")
    which, action = int(control.group(1)), control.group(2)
    if method != "POST":
        return _Reply(405, f"use POST {target}\n", (("Allow", "POST"),))
    if not 1 <= which <= len(backends.ports):
        return _Reply(404, f"no backend {which}: there are 1 to {len(backends.ports)}\n")
    address = f"127.0.0.1:{backends.ports[which - 1]}"
    if action == "start":
        if backends.running(which):
            return _Reply(200, f"backend {which} is already running on {address}\n")
        try:
            await backends.start(which)
        except OSError as error:
            return _Reply(500, f"backend {which} cannot listen on {address}: {error.strerror}\n")
        return _Reply(
            200,
            f"backend {which} started again on {address}; the proxy takes it back after "
            f"{HEALTH_CHECK.rise} passing health checks\n",
        )
    if not backends.running(which):
        return _Reply(200, f"backend {which} is already stopped\n")
    if backends.running_count() == 1:
        return _Reply(409, f"backend {which} is the last one running: start another first\n")
    return _Reply(
        200,
        f"backend {which} stopped: {address} refuses connections (answered by backend {number})\n",
        then=partial(backends.stop, which),
    )


async def _answer(number: int, backends: DemoBackends, stream: trio.SocketStream) -> None:
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
                reply = await _reply(number, backends, method, target)
                body = reply.text.encode()
                headers = [
                    ("Content-Type", "text/plain; charset=utf-8"),
                    ("Content-Length", str(len(body))),
                    ("X-Demo-Backend", str(number)),
                    *reply.headers,
                ]
                replies: list[h11.Response | h11.Data | h11.EndOfMessage] = [
                    h11.Response(status_code=reply.status, headers=headers)
                ]
                if method != "HEAD":
                    replies.append(h11.Data(data=body))
                replies.append(h11.EndOfMessage())
                for event_out in replies:
                    await stream.send_all(connection.send(event_out) or b"")
                if reply.then is not None:
                    reply.then()
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
