"""The in-process adapter of the core benchmark: clients and backends made of prepared bytes.

One :class:`Driver` is one pass: ``connections`` client connections with keep-alive, each
sending its share of ``exchanges`` requests one after another, through one
:class:`sansproxy.Proxy` to two backend servers with an active health check. The driver
plays the adapter the way :mod:`sansproxy_io.runner` does, with no sockets:

- every ``Send`` is reported ``Written`` in full, every ``OpenUpstream`` is answered
  ``UpstreamConnected``, ``Close`` forgets the connection and events for a forgotten
  connection are dropped; ``PauseReading`` holds a connection's incoming bytes until
  ``ResumeReading``;
- a backend answers a request head the moment it is complete, with a prepared response
  delivered in reads of 64 KiB; a health probe gets a small ``200`` and an EOF;
- a client sends its next request when the core's ``AccessLog`` for its previous one
  appears, so the timed loop holds no client-side parsing; what each client received is
  kept and checked afterwards by its wire (:mod:`benchmarks.core.wire`);
- time is virtual: every turn moves it on by :data:`TURN_SECONDS`, and
  ``handle_timeout`` runs when ``next_deadline()`` comes, so the same pass gives the same
  commands every time and the probes fire every second of virtual time.

:meth:`Driver.run` is the part to time; :meth:`Driver.check` is not.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterator

from benchmarks.core.wire import ClientWire, ExchangeError, Request
from sansproxy import (
    AccessLog,
    Close,
    Command,
    ConnectionAccepted,
    ConnId,
    DataReceived,
    EofReceived,
    Log,
    OpenUpstream,
    PauseReading,
    Proxy,
    ProxyConfig,
    ResumeReading,
    Send,
    ShutdownWrite,
    UpstreamConnected,
    Written,
    parse_config,
)

__all__ = [
    "HEALTH_PATH",
    "REQUEST_PATH",
    "SERVERS",
    "TURN_SECONDS",
    "BenchmarkError",
    "Driver",
    "bench_config",
]

TURN_SECONDS = 50e-6
"""Virtual time per turn: about what a turn costs a real adapter, so probes are as rare."""
SERVERS = ("198.51.100.1:8000", "198.51.100.2:8000")
REQUEST_PATH = "/bench/item"
HEALTH_PATH = "/healthz"
READ_SIZE = 64 * 1024
"""The size of one read from a backend, as the trio adapter reads."""

_CONFIG = """\
[[listeners]]
address = "127.0.0.1:8080"
{listener}
[upstreams.app]
servers = [{servers}]
health_check = {{ path = "{health}", interval = 1, timeout = 0.5 }}
"""
_PROBE_LINE = f"GET {HEALTH_PATH} ".encode()
_PROBE_RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"
_END_OF_HEAD = b"\r\n\r\n"

_QueuedEvent = DataReceived | Written | UpstreamConnected | EofReceived


class BenchmarkError(Exception):
    """The pass did not do what it was asked; its figures would measure something else."""


def bench_config(wire: ClientWire) -> ProxyConfig:
    """The configuration an operator would write: defaults, two servers, an active check.

    Raises:
        ConfigError: the wire's listener keys are not (yet) a valid configuration.
    """
    servers = ", ".join(f'"http://{server}"' for server in SERVERS)
    text = _CONFIG.format(listener=wire.listener_toml, servers=servers, health=HEALTH_PATH)
    return parse_config(text, source=f"core benchmark ({wire.name})")


def _backend_response(body_size: int) -> list[bytes]:
    """What a backend sends for every request, cut into reads."""
    head = (
        b"HTTP/1.1 200 OK\r\nServer: bench-backend/1.0\r\n"
        b"Date: Mon, 01 Jan 2024 00:00:00 GMT\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Length: %d\r\n\r\n" % body_size
    )
    data = head + b"x" * body_size
    return [data[start : start + READ_SIZE] for start in range(0, len(data), READ_SIZE)]


class Driver:
    """One pass of the benchmark, prepared at construction, run by :meth:`run`.

    Args:
        config: the proxy's configuration (see :func:`bench_config`).
        wire: the client protocol.
        request: what every client asks for (its ``body_size`` is the backends' too).
        connections: client connections, all open for the whole pass.
        exchanges: requests in all, shared out evenly over the connections.
        seed: the core's random seed.
    """

    def __init__(
        self,
        config: ProxyConfig,
        wire: ClientWire,
        request: Request,
        *,
        connections: int,
        exchanges: int,
        seed: int = 1,
    ) -> None:
        if connections < 1 or exchanges < connections:
            raise ValueError("need at least one connection and one exchange per connection")
        self._proxy = Proxy(config, rng=random.Random(seed))
        self._wire = wire
        self._expected_status = request.status
        self._exchanges = exchanges
        self._responses = _backend_response(request.body_size)
        self._queue: deque[_QueuedEvent] = deque()
        self._open: set[ConnId] = set()
        self._paused: set[ConnId] = set()
        self._held: dict[ConnId, list[_QueuedEvent]] = {}
        self._partial: dict[ConnId, bytes] = {}
        self._response_events: dict[ConnId, list[DataReceived]] = {}
        self._now = 0.0
        self._accepts: list[ConnectionAccepted] = []
        self._counts: list[int] = []
        self._inbox: dict[ConnId, list[bytes]] = {}
        self._next: dict[ConnId, Iterator[DataReceived]] = {}
        self._by_peer: dict[tuple[str, int], ConnId] = {}
        share, extra = divmod(exchanges, connections)
        for index in range(connections):
            conn = self._proxy.allocate_id()
            peer = ("192.0.2.10", 10_000 + index)
            count = share + (index < extra)
            self._accepts.append(
                ConnectionAccepted(
                    conn=conn, listener=0, peer=peer, local=("127.0.0.1", 8080), tls=wire.tls
                )
            )
            self._counts.append(count)
            self._inbox[conn] = []
            self._next[conn] = iter([DataReceived(conn=conn, data=d) for d in wire.requests(count)])
            self._by_peer[peer] = conn
        self.finished = 0
        """Exchanges the core logged as done."""
        self.answered = 0
        """Requests the backends answered, probes not counted."""
        self.probes = 0
        """Health probes the backends answered."""
        self.opened = 0
        """Upstream connections opened, probes' included."""
        self._statuses: dict[int, int] = {}
        self._problems: list[str] = []

    # -- the timed part --------------------------------------------------------

    def run(self) -> None:
        """Accept the clients and drive every exchange to its end."""
        proxy = self._proxy
        self._apply(proxy.handle_timeout(self._now))  # The adapter's first turn: probes start.
        for accept in self._accepts:
            self._now += TURN_SECONDS
            self._open.add(accept.conn)
            self._apply(proxy.handle(accept, self._now))
            first = next(self._next[accept.conn], None)
            if first is not None:
                self._queue.append(first)
        self._loop()

    def _loop(self) -> None:
        proxy, queue, apply = self._proxy, self._queue, self._apply
        is_open, paused = self._open, self._paused
        now = self._now
        deadline = proxy.next_deadline()
        while queue:
            event = queue.popleft()
            conn = event.conn
            if conn not in is_open:
                continue  # The core closed it; a real adapter drops such reports too.
            if paused and conn in paused and type(event) is DataReceived:
                self._held.setdefault(conn, []).append(event)
                continue
            now += TURN_SECONDS
            if deadline is not None and deadline <= now:
                apply(proxy.handle_timeout(now))
            apply(proxy.handle(event, now))
            deadline = proxy.next_deadline()
        self._now = now

    def _apply(self, commands: list[Command]) -> None:
        queue = self._queue
        for command in commands:
            if type(command) is Send:
                conn, data = command.conn, command.data
                queue.append(Written(conn=conn, nbytes=len(data)))
                inbox = self._inbox.get(conn)
                if inbox is not None:
                    inbox.append(data)
                else:
                    self._backend(conn, data)
            elif type(command) is AccessLog:
                record = command.record
                self.finished += 1
                if record.status != self._expected_status:
                    self._statuses[record.status] = self._statuses.get(record.status, 0) + 1
                following = next(self._next[self._by_peer[record.client]], None)
                if following is not None:
                    queue.append(following)
            elif type(command) is OpenUpstream:
                self.opened += 1
                self._open.add(command.conn)
                queue.append(UpstreamConnected(conn=command.conn))
            else:
                self._rare(command)

    def _rare(self, command: Command) -> None:
        """The commands a pass sees a few times at most."""
        if type(command) is Close:
            self._open.discard(command.conn)
            self._paused.discard(command.conn)
            self._response_events.pop(command.conn, None)
            if command.conn in self._inbox:
                self._problems.append(f"the core closed client connection {command.conn}")
        elif type(command) is PauseReading:
            self._paused.add(command.conn)
        elif type(command) is ResumeReading:
            self._paused.discard(command.conn)
            held = self._held.pop(command.conn, None)
            if held:
                self._queue.extendleft(reversed(held))
        elif type(command) is Log:
            if command.level in ("warning", "error"):
                self._problems.append(f"the core logged {command.level}: {command.message}")
        elif type(command) is ShutdownWrite:
            self._problems.append(f"the core half-closed connection {command.conn}")
        else:
            self._problems.append(f"unexpected command {command!r}")

    def _backend(self, conn: ConnId, data: bytes) -> None:
        """A backend server: answer each complete request head (the requests have no body)."""
        if not data.endswith(_END_OF_HEAD):
            self._partial[conn] = self._partial.get(conn, b"") + data
            return
        if self._partial:
            data = self._partial.pop(conn, b"") + data
        if data.startswith(_PROBE_LINE):
            self.probes += 1
            self._queue.append(DataReceived(conn=conn, data=_PROBE_RESPONSE))
            self._queue.append(EofReceived(conn=conn))
            return
        self.answered += 1
        events = self._response_events.get(conn)
        if events is None:
            events = [DataReceived(conn=conn, data=piece) for piece in self._responses]
            self._response_events[conn] = events
        self._queue.extend(events)

    # -- afterwards --------------------------------------------------------------

    def speaks_protocol(self) -> bool:
        """Whether the first client's first bytes back were in its wire's protocol."""
        return self._wire.speaks_protocol(b"".join(self._inbox[self._accepts[0].conn]))

    def first_bytes(self, limit: int = 60) -> bytes:
        """The start of what the first client received, to show in a message."""
        return b"".join(self._inbox[self._accepts[0].conn])[:limit]

    def check(self) -> None:
        """Check that every exchange completed correctly, as each client saw it.

        Raises:
            BenchmarkError: listing what went wrong (the first few connections' problems).
        """
        problems = list(self._problems)
        if self.finished != self._exchanges:
            problems.append(f"{self.finished} of {self._exchanges} exchanges finished")
        if self.answered != self._exchanges:
            problems.append(f"the backends answered {self.answered} of {self._exchanges}")
        if self._statuses:
            problems.append(f"statuses other than {self._expected_status}: {self._statuses}")
        if self._queue or self._held:
            problems.append("events left undelivered")
        still_open = self._proxy.statistics().exchanges
        if still_open:
            problems.append(f"{still_open} exchanges still open in the core")
        bad = 0
        for index, (accept, count) in enumerate(zip(self._accepts, self._counts, strict=True)):
            try:
                self._wire.verify(b"".join(self._inbox[accept.conn]), count)
            except ExchangeError as error:
                bad += 1
                if bad <= 3:
                    problems.append(f"client connection {index + 1}: {error}")
        if bad > 3:
            problems.append(f"... {bad} client connections in all received wrong responses")
        if problems:
            raise BenchmarkError("; ".join(problems[:12]))
