"""The asyncio adapter on its own: its primitives under a scripted core, and its modes.

The shared integration suite (``test_http1.py`` and the rest) already runs on asyncio and
uvloop through the parametrised ``start_proxy`` fixture. This file covers what that suite
cannot see from outside: how ``Written`` follows the transport's buffer (the core's
backpressure), resets, half-closes, pausing, connects cancelled by ``Close``, the timer,
``serve_asyncio`` embedded in-process, and the command line on asyncio and uvloop
(``--loop``, ``server.loop``, ``python -m sansproxy_asyncio``, signals, a missing uvloop).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from backend import Backend
from conftest import LISTENING, TlsFiles, proxy_config, proxy_env, to_toml

from sansproxy.commands import (
    Close,
    Command,
    OpenUpstream,
    PauseReading,
    ResumeReading,
    Send,
    ShutdownWrite,
    UpstreamTls,
)
from sansproxy.config import Listener, ProxyConfig, Server, Upstream
from sansproxy.events import (
    ConnectionAccepted,
    ConnectionLost,
    ConnId,
    DataReceived,
    EofReceived,
    Event,
    UpstreamConnected,
    UpstreamFailed,
    Written,
)
from sansproxy_asyncio import ListenError, serve_asyncio
from sansproxy_asyncio._backend import WRITE_PIECE, AsyncioBackend, AsyncioConnection
from sansproxy_asyncio._run import loop_factory
from sansproxy_asyncio._serve import ServerNames, _server_context
from sansproxy_io.runner import Runner
from sansproxy_io.tls import ClientContexts

pytestmark = pytest.mark.timeout(60)

T = TypeVar("T")
MIB = 1024 * 1024
HAVE_UVLOOP = importlib.util.find_spec("uvloop") is not None
LOOPS = [
    pytest.param("asyncio", id="asyncio"),
    pytest.param(
        "uvloop",
        id="uvloop",
        marks=pytest.mark.skipif(not HAVE_UVLOOP, reason="uvloop is not installed"),
    ),
]


@pytest.fixture(params=LOOPS)
def loop_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def run_on(loop_name: str, main: Callable[[], Awaitable[T]]) -> T:
    """Run ``main`` on a fresh loop of that kind; whatever happens, close what it opened.

    (uvloop cannot close a loop that still has open handles while warnings are errors:
    it loops for ever. So a failing test must clean up before the loop closes.)
    """

    async def wrapped() -> T:
        try:
            return await main()
        finally:
            for harness in _HARNESSES:
                await harness.close()
            _HARNESSES.clear()
            others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)

    with asyncio.Runner(loop_factory=loop_factory(loop_name)) as runner:
        return runner.run(wrapped())


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``predicate`` on the loop until it holds or ``timeout`` passes (bounded)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


# -- a scripted core and a harness around the backend -------------------------------------


@dataclass
class ScriptedCore:
    """Records every event; ``respond`` gives the commands for each one."""

    respond: Callable[[Event], list[Command]] = lambda event: []
    events: list[Event | None] = field(default_factory=list)
    deadline: float | None = None
    next_id: int = 1

    def allocate_id(self) -> ConnId:
        self.next_id += 1
        return ConnId(self.next_id - 1)

    def handle(self, event: Event, now: float, *, wall: float | None = None) -> list[Command]:
        self.events.append(event)
        return self.respond(event)

    def handle_timeout(self, now: float, *, wall: float | None = None) -> list[Command]:
        self.events.append(None)
        return []

    def next_deadline(self) -> float | None:
        return self.deadline

    def of(self, kind: type[Any]) -> list[Any]:
        return [event for event in self.events if isinstance(event, kind)]

    def written(self) -> int:
        return sum(event.nbytes for event in self.of(Written))


class Harness:
    """A runner and an asyncio backend around a scripted core, and a listener for clients.

    :func:`run_on` closes it when the test's coroutine ends.
    """

    def __init__(self, core: ScriptedCore, *, close_timeout: float = 5.0) -> None:
        _HARNESSES.append(self)
        loop = asyncio.get_running_loop()
        self.core = core
        self.backend = AsyncioBackend(loop, ClientContexts(), close_timeout)
        self.runner = Runner(core, loop.time, self.backend, access_log_format=None)
        self.backend.attach(self.runner)
        self.accepted: list[AsyncioConnection] = []
        self.server: asyncio.Server | None = None

    async def listen(
        self, tls: ssl.SSLContext | None = None, names: ServerNames | None = None
    ) -> int:
        def protocol() -> AsyncioConnection:
            connection = self.backend.client_protocol(0, names)
            self.accepted.append(connection)
            return connection

        loop = asyncio.get_running_loop()
        self.server = await loop.create_server(protocol, "127.0.0.1", 0, ssl=tls)
        return int(self.server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        self.backend.abort_all()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.backend.wait_idle(), 5)


_HARNESSES: list[Harness] = []


def connect_client(port: int, *, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(20)
    sock.connect(("127.0.0.1", port))
    return sock


def read_exactly(sock: socket.socket | ssl.SSLSocket, count: int) -> int:
    got = 0
    while got < count:
        data = sock.recv(min(count - got, 1 << 20))
        if not data:
            break
        got += len(data)
    return got


def read_to_eof(sock: socket.socket, limit: int = 4 * MIB) -> bytes:
    data = b""
    while len(data) < limit:
        piece = sock.recv(65536)
        if not piece:
            return data
        data += piece
    return data


# -- Written follows the transport's buffer -------------------------------------------------


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
def test_written_only_for_bytes_that_left_the_buffer(
    loop_name: str, tls: bool, tls_files: TlsFiles
) -> None:
    """A client that does not read: Written stays short of what was sent, never ahead of
    the transport's buffer; once the client reads, every byte is reported, none twice."""
    size = 32 * MIB
    payload = b"x" * size
    checks: list[tuple[int, int]] = []  # (unwritten per the core, still held in asyncio)

    async def main() -> None:
        core = ScriptedCore()
        harness = Harness(core)

        def respond(event: Event) -> list[Command]:
            if isinstance(event, ConnectionAccepted):
                return [Send(conn=event.conn, data=payload)]
            if isinstance(event, Written):
                checks.append((size - core.written(), harness.accepted[0].held))
            return []

        core.respond = respond
        port = await harness.listen(tls_files.server_context if tls else None)
        go = threading.Event()
        outcome: dict[str, int] = {}

        def client() -> None:
            sock: socket.socket | ssl.SSLSocket = connect_client(port, rcvbuf=64 * 1024)
            if tls:
                sock = tls_files.client_context().wrap_socket(sock, server_hostname="localhost")
            with sock:
                go.wait(20)
                outcome["read"] = read_exactly(sock, size)

        reader = asyncio.ensure_future(asyncio.to_thread(client))
        assert await eventually(lambda: bool(core.of(ConnectionAccepted)))
        await asyncio.sleep(0.5)  # the kernel's buffers fill up; the rest stays with asyncio
        connection = harness.accepted[0]
        stalled = core.written()
        # What the kernel took is reported; the rest (most of it) is not.
        assert 0 < stalled < size // 2
        assert connection.unreported == size - stalled
        held = connection.held
        assert held <= connection.unreported
        if not tls:
            # Exact but for the last piece asyncio sent on after the last report.
            assert connection.unreported - held <= WRITE_PIECE
        go.set()
        assert await eventually(lambda: core.written() == size, 30), core.written()
        await reader
        assert outcome["read"] == size
        assert connection.unreported == 0

    run_on(loop_name, main)
    for unwritten, buffered in checks:
        assert unwritten >= buffered


def test_small_writes_are_reported_when_sent(loop_name: str) -> None:
    """No pause, no resume: bytes the kernel took at once are reported on the next pass."""

    async def main() -> None:
        core = ScriptedCore()
        core.respond = lambda event: (
            [Send(conn=event.conn, data=b"hello"), Send(conn=event.conn, data=b" world")]
            if isinstance(event, ConnectionAccepted)
            else []
        )
        harness = Harness(core)
        port = await harness.listen()
        with connect_client(port) as sock:
            assert await eventually(lambda: core.written() == 11)
            assert read_exactly(sock, 11) == 11

    run_on(loop_name, main)


def test_tls_client_reports_sni_alpn_and_version(loop_name: str, tls_files: TlsFiles) -> None:
    """The SNI name is only seen in the context's callback; it reaches ConnectionAccepted."""
    listener = Listener(
        host="127.0.0.1",
        port=0,
        upstream="app",
        certificate=str(tls_files.cert_file),
        private_key=str(tls_files.key_file),
    )
    context, names = _server_context(ProxyConfig(listeners=(listener,)), 0)

    async def main() -> None:
        core = ScriptedCore()
        harness = Harness(core)
        port = await harness.listen(context, names)

        def client() -> None:
            client_context = tls_files.client_context()
            client_context.set_alpn_protocols(["http/1.1"])
            raw = connect_client(port)
            with client_context.wrap_socket(raw, server_hostname="localhost") as sock:
                sock.sendall(b"hi")
                assert sock.recv(10) == b""

        reader = asyncio.ensure_future(asyncio.to_thread(client))
        assert await eventually(lambda: bool(core.of(DataReceived)))
        (accepted,) = core.of(ConnectionAccepted)
        harness.runner.apply([Close(conn=accepted.conn)])
        await reader
        assert accepted.tls is not None
        assert accepted.tls.server_name == "localhost"
        assert accepted.tls.alpn == "http/1.1"
        assert accepted.tls.version in {"TLSv1.2", "TLSv1.3"}
        assert len(names) == 0  # taken, not left behind

    run_on(loop_name, main)


# -- closing, half-closing, pausing ---------------------------------------------------------


def test_abort_resets_the_client(loop_name: str) -> None:
    async def main() -> None:
        core = ScriptedCore()
        core.respond = lambda event: (
            [Close(conn=event.conn, abort=True)] if isinstance(event, DataReceived) else []
        )
        harness = Harness(core)
        port = await harness.listen()
        with connect_client(port) as sock:
            sock.sendall(b"bye")
            assert await eventually(lambda: bool(core.of(DataReceived)))
            with pytest.raises(ConnectionResetError):
                await asyncio.to_thread(read_to_eof, sock)
        # The core closed it: it hears nothing more about that connection.
        await asyncio.sleep(0.1)
        assert core.of(ConnectionLost) == []

    run_on(loop_name, main)


def test_graceful_close_flushes_everything_first(loop_name: str) -> None:
    payload = bytes(range(256)) * 8192  # 2 MiB

    async def main() -> None:
        core = ScriptedCore()
        core.respond = lambda event: (
            [Send(conn=event.conn, data=payload), Close(conn=event.conn)]
            if isinstance(event, ConnectionAccepted)
            else []
        )
        harness = Harness(core)
        port = await harness.listen()
        with connect_client(port, rcvbuf=64 * 1024) as sock:
            await asyncio.sleep(0.2)
            assert await asyncio.to_thread(read_to_eof, sock) == payload
        assert await eventually(lambda: harness.backend.runner.open_connections == 0)

    run_on(loop_name, main)


def test_graceful_close_is_bounded_by_close_timeout(loop_name: str) -> None:
    """A peer that never reads cannot hold a closed connection open for ever."""

    async def main() -> None:
        core = ScriptedCore()
        core.respond = lambda event: (
            [Send(conn=event.conn, data=b"y" * (16 * MIB)), Close(conn=event.conn)]
            if isinstance(event, ConnectionAccepted)
            else []
        )
        harness = Harness(core, close_timeout=0.5)
        port = await harness.listen()
        with connect_client(port, rcvbuf=64 * 1024) as sock:
            assert await eventually(lambda: bool(core.of(ConnectionAccepted)))
            # Reset after close_timeout: no connection is left, though the client never read.
            await asyncio.wait_for(harness.backend.wait_idle(), 5)
            with pytest.raises(ConnectionResetError):
                await asyncio.to_thread(read_to_eof, sock, 64 * MIB)

    run_on(loop_name, main)


def test_eof_keeps_the_connection_writable(loop_name: str) -> None:
    """After the client's FIN the answer still goes out (RFC 9112 §9.6 half-close)."""

    async def main() -> None:
        core = ScriptedCore()
        core.respond = lambda event: (
            [Send(conn=event.conn, data=b"answer"), Close(conn=event.conn)]
            if isinstance(event, EofReceived)
            else []
        )
        harness = Harness(core)
        port = await harness.listen()
        with connect_client(port) as sock:
            sock.sendall(b"question")
            sock.shutdown(socket.SHUT_WR)
            assert await asyncio.to_thread(read_to_eof, sock) == b"answer"
        assert [type(e) for e in core.events] == [ConnectionAccepted, DataReceived, EofReceived]

    run_on(loop_name, main)


def test_shutdown_write_sends_fin_and_keeps_reading(loop_name: str) -> None:
    async def main() -> None:
        core = ScriptedCore()
        core.respond = lambda event: (
            [Send(conn=event.conn, data=b"last words"), ShutdownWrite(conn=event.conn)]
            if isinstance(event, ConnectionAccepted)
            else []
        )
        harness = Harness(core)
        port = await harness.listen()
        with connect_client(port) as sock:
            assert await asyncio.to_thread(read_to_eof, sock) == b"last words"
            sock.sendall(b"still heard")
            assert await eventually(lambda: bool(core.of(DataReceived)))
        assert b"".join(e.data for e in core.of(DataReceived)) == b"still heard"

    run_on(loop_name, main)


def test_pause_and_resume_reading(loop_name: str) -> None:
    async def main() -> None:
        core = ScriptedCore()
        core.respond = lambda event: (
            [PauseReading(conn=event.conn)] if isinstance(event, ConnectionAccepted) else []
        )
        harness = Harness(core)
        port = await harness.listen()
        with connect_client(port) as sock:
            sock.sendall(b"held back")
            await asyncio.sleep(0.3)
            assert core.of(DataReceived) == []
            (accepted,) = core.of(ConnectionAccepted)
            harness.runner.apply([ResumeReading(conn=accepted.conn)])
            assert await eventually(lambda: bool(core.of(DataReceived)))
        assert core.of(DataReceived)[0].data == b"held back"

    run_on(loop_name, main)


# -- upstream connections -------------------------------------------------------------------


def test_open_upstream_connects_and_fails(loop_name: str, closed_port: int) -> None:
    async def main() -> None:
        core = ScriptedCore()
        harness = Harness(core)
        port = await harness.listen()  # plays the backend here
        harness.runner.apply(
            [
                OpenUpstream(conn=ConnId(100), host="127.0.0.1", port=port),
                OpenUpstream(conn=ConnId(101), host="127.0.0.1", port=closed_port),
            ]
        )
        assert await eventually(lambda: len(core.of(UpstreamConnected | UpstreamFailed)) == 2)
        (connected,) = core.of(UpstreamConnected)
        (failed,) = core.of(UpstreamFailed)
        assert (connected.conn, connected.tls) == (ConnId(100), None)
        assert failed.conn == ConnId(101)
        assert "Connect" in failed.reason or "refused" in failed.reason
        assert not harness.runner.is_open(ConnId(101))

    run_on(loop_name, main)


def test_close_while_connecting_cancels_the_connect(loop_name: str) -> None:
    async def main() -> None:
        core = ScriptedCore()
        harness = Harness(core)
        port = await harness.listen()
        harness.runner.apply(
            [
                OpenUpstream(conn=ConnId(100), host="127.0.0.1", port=port),
                Close(conn=ConnId(100)),
            ]
        )
        assert harness.backend.runner.open_connections == 0
        await asyncio.wait_for(harness.backend.wait_idle(), 1)
        await asyncio.sleep(0.2)
        assert core.events == []  # neither connected nor failed: the core forgot it

    run_on(loop_name, main)


def test_upstream_tls_reports_the_handshake(loop_name: str, tls_files: TlsFiles) -> None:
    async def main() -> None:
        core = ScriptedCore()
        harness = Harness(core)
        port = await harness.listen(tls_files.server_context)
        tls = UpstreamTls(server_name="localhost", ca_file=str(tls_files.ca_file))
        harness.runner.apply([OpenUpstream(conn=ConnId(100), host="127.0.0.1", port=port, tls=tls)])
        assert await eventually(lambda: bool(core.of(UpstreamConnected)))
        (connected,) = core.of(UpstreamConnected)
        assert connected.tls is not None
        assert connected.tls.server_name == "localhost"
        assert connected.tls.version in {"TLSv1.2", "TLSv1.3"}

    run_on(loop_name, main)


def test_timer_fires_at_the_deadline_and_rearms(loop_name: str) -> None:
    async def main() -> None:
        core = ScriptedCore()
        harness = Harness(core)
        loop = asyncio.get_running_loop()
        start = loop.time()
        core.deadline = start + 0.1
        harness.runner.dispatch(UpstreamFailed(conn=ConnId(5)))  # dropped: unknown connection
        harness.runner.apply([])
        harness.backend.arm_timer(core.deadline)
        assert await eventually(lambda: None in core.events, 5)
        assert loop.time() >= start + 0.1 - 0.002
        core.deadline = None
        harness.backend.arm_timer(None)

    run_on(loop_name, main)


# -- serve_asyncio embedded ----------------------------------------------------------------


def make_config(backend_port: int, host: str = "127.0.0.1") -> ProxyConfig:
    return ProxyConfig(
        listeners=(Listener(host=host, port=0, upstream="app"),),
        upstreams={
            "app": Upstream(name="app", servers=(Server(host="127.0.0.1", port=backend_port),))
        },
    )


def http_get(url: str) -> httpx.Response:
    with httpx.Client(trust_env=False, timeout=10) as client:
        return client.get(url)


@pytest.mark.integration
@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_serve_asyncio_embedded_next_to_other_tasks(
    loop_name: str, backend: Backend, host: str
) -> None:
    async def main() -> None:
        ticks = 0

        async def own_task() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        other = asyncio.create_task(own_task())
        stop = asyncio.Event()
        bound: asyncio.Future[list[tuple[str, int]]] = asyncio.get_running_loop().create_future()
        proxy = asyncio.create_task(
            serve_asyncio(
                make_config(backend.port, host), seed=7, shutdown=stop, started=bound.set_result
            )
        )
        ((bound_host, port),) = await asyncio.wait_for(bound, 10)
        assert bound_host == host
        assert port != 0
        url = f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"
        response = await asyncio.to_thread(http_get, url)
        assert (response.status_code, response.text) == (200, "backend a\n")
        slow = asyncio.ensure_future(asyncio.to_thread(http_get, url + "slow?delay=0.5"))
        await eventually(lambda: bool(backend.requests_to("/slow")))
        stop.set()  # graceful: the request in flight still gets its answer
        await asyncio.wait_for(proxy, 10)
        assert (await slow).status_code == 200
        assert ticks > 10
        other.cancel()
        with pytest.raises(httpx.ConnectError):  # no longer listening
            await asyncio.to_thread(http_get, url)

    run_on(loop_name, main)


@pytest.mark.integration
def test_cancelling_serve_asyncio_stops_at_once(loop_name: str, backend: Backend) -> None:
    async def main() -> None:
        bound: asyncio.Future[list[tuple[str, int]]] = asyncio.get_running_loop().create_future()
        proxy = asyncio.create_task(
            serve_asyncio(make_config(backend.port), started=bound.set_result)
        )
        ((_, port),) = await asyncio.wait_for(bound, 10)
        client = await asyncio.to_thread(connect_client, port)
        with client:
            client.sendall(b"GET /slow?delay=2 HTTP/1.1\r\nHost: x\r\n\r\n")
            await eventually(lambda: bool(backend.requests_to("/slow")))
            proxy.cancel()
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(proxy, 2)
            # The client's connection was reset, not left hanging.
            with contextlib.suppress(ConnectionResetError):
                assert await asyncio.to_thread(read_to_eof, client) == b""

    run_on(loop_name, main)


def test_listen_error_names_the_address(loop_name: str) -> None:
    with contextlib.closing(socket.socket()) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = ProxyConfig(
            listeners=(Listener(host="127.0.0.1", port=port, upstream="app"),),
            upstreams={"app": Upstream(name="app", servers=(Server(host="127.0.0.1", port=9),))},
        )
        with pytest.raises(ListenError, match=f"cannot listen on 127.0.0.1:{port}"):
            run_on(loop_name, lambda: serve_asyncio(config))


# -- the command line on asyncio and uvloop ------------------------------------------------


@dataclass
class Cli:
    popen: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def wait_listening(self) -> int:
        deadline = time.monotonic() + 15
        while True:
            found = LISTENING.findall(self.stderr())
            if found:
                return int(found[0][2])
            if self.popen.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"no listening line (exit {self.popen.poll()}):\n{self.stderr()}")
            time.sleep(0.05)

    def wait_exit(self, timeout: float = 15) -> int | None:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[Callable[..., Cli]]:
    """Start ``python -m MODULE ARGS``; every process is killed by PID at teardown."""
    started: list[Cli] = []

    def start(*args: str, module: str = "sansproxy_trio", pythonpath: str = "") -> Cli:
        n = len(started)
        out, err = tmp_path / f"cli{n}.stdout", tmp_path / f"cli{n}.stderr"
        env = proxy_env()
        if pythonpath:
            env["PYTHONPATH"] = pythonpath + ":" + env["PYTHONPATH"]
        with out.open("wb") as stdout, err.open("wb") as stderr:
            popen = subprocess.Popen(
                [sys.executable, "-m", module, *args],
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                cwd=tmp_path,
                env=env,
            )
        started.append(Cli(popen, out, err))
        return started[-1]

    yield start
    for proc in started:
        if proc.popen.poll() is None:
            proc.popen.kill()
            proc.popen.wait(5)


LOOP_CLASS = {"asyncio": "asyncio.unix_events._UnixSelectorEventLoop", "uvloop": "uvloop.Loop"}


@pytest.mark.integration
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_cli_loop_option_serves_and_drains_on_signal(
    cli: Callable[..., Cli], loop_name: str, signum: int
) -> None:
    with Backend("cli") as backend:
        proc = cli(
            "--loop", loop_name, "--log-level", "debug", "--listen", "127.0.0.1:0",
            "--upstream", backend.url,
        )  # fmt: skip
        port = proc.wait_listening()
        assert http_get(f"http://127.0.0.1:{port}/").text == "backend cli\n"
        result: dict[str, httpx.Response] = {}
        slow = threading.Thread(
            target=lambda: result.update(r=http_get(f"http://127.0.0.1:{port}/slow?delay=1"))
        )
        slow.start()
        deadline = time.monotonic() + 10
        while not backend.requests_to("/slow") and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.popen.send_signal(signum)
        assert proc.wait_exit() == 0
        slow.join(10)
    assert result["r"].status_code == 200
    stderr = proc.stderr()
    assert "Traceback" not in stderr
    assert f"DEBUG event loop {LOOP_CLASS[loop_name]}" in stderr
    assert f"{signal.Signals(signum).name}: shutting down gracefully" in stderr
    assert "shutdown complete" in stderr
    assert len(proc.stdout().splitlines()) == 2  # one access-log line per exchange


@pytest.mark.integration
def test_cli_second_signal_stops_at_once(cli: Callable[..., Cli], loop_name: str) -> None:
    with Backend("cli") as backend:
        proc = cli("--loop", loop_name, "--listen", "127.0.0.1:0", "--upstream", backend.url)
        port = proc.wait_listening()
        with connect_client(port) as client:
            client.sendall(b"GET /slow?delay=3 HTTP/1.1\r\nHost: x\r\n\r\n")
            deadline = time.monotonic() + 10
            while not backend.requests_to("/slow") and time.monotonic() < deadline:
                time.sleep(0.02)
            proc.popen.send_signal(signal.SIGTERM)
            time.sleep(0.3)
            proc.popen.send_signal(signal.SIGTERM)
            assert proc.wait_exit(5) == 1
    assert "SIGTERM again: stopping now" in proc.stderr()
    assert "Traceback" not in proc.stderr()


@pytest.mark.integration
def test_cli_port_in_use_is_one_line_exit_1(cli: Callable[..., Cli], loop_name: str) -> None:
    with contextlib.closing(socket.socket()) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = cli(
            "--loop", loop_name, "--listen", f"127.0.0.1:{port}", "--upstream", "http://127.0.0.1:9"
        )
        assert proc.wait_exit() == 1
    assert (
        proc.stderr() == f"sansproxy: cannot listen on 127.0.0.1:{port}: Address already in use\n"
    )


@pytest.mark.integration
@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_config_server_loop_chooses_the_loop(
    cli: Callable[..., Cli], tmp_path: Path, backend: Backend, loop: str
) -> None:
    if loop == "uvloop" and not HAVE_UVLOOP:
        pytest.skip("uvloop is not installed")
    config = proxy_config(backend.url, server={"loop": loop})
    path = tmp_path / "proxy.toml"
    path.write_text(to_toml(config))
    proc = cli("--config", str(path), "--log-level", "debug")
    port = proc.wait_listening()
    assert http_get(f"http://127.0.0.1:{port}/").status_code == 200
    proc.popen.send_signal(signal.SIGTERM)
    assert proc.wait_exit() == 0
    assert f"DEBUG event loop {LOOP_CLASS[loop]}" in proc.stderr()


@pytest.mark.integration
def test_python_m_sansproxy_asyncio(cli: Callable[..., Cli], backend: Backend) -> None:
    proc = cli(
        "--log-level", "debug", "--listen", "127.0.0.1:0", "--upstream", backend.url,
        module="sansproxy_asyncio",
    )  # fmt: skip
    port = proc.wait_listening()
    assert http_get(f"http://127.0.0.1:{port}/").status_code == 200
    proc.popen.send_signal(signal.SIGINT)
    assert proc.wait_exit() == 0
    assert f"DEBUG event loop {LOOP_CLASS['asyncio']}" in proc.stderr()
    assert re.search(r"INFO listening on http://127\.0\.0\.1:\d+\n", proc.stderr())


@pytest.mark.integration
@pytest.mark.parametrize("how", ["option", "config"])
def test_uvloop_missing_is_one_clear_line(
    cli: Callable[..., Cli], tmp_path: Path, how: str
) -> None:
    """An import of uvloop that fails (a stand-in package shadows the real one)."""
    shadow = tmp_path / "shadow" / "uvloop"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('no uvloop here')\n")
    if how == "option":
        args: tuple[str, ...] = (
            "--loop",
            "uvloop",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            "http://127.0.0.1:9",
        )
    else:
        path = tmp_path / "proxy.toml"
        path.write_text(to_toml(proxy_config("http://127.0.0.1:9", server={"loop": "uvloop"})))
        args = ("--config", str(path))
    proc = cli(*args, pythonpath=str(shadow.parent))
    assert proc.wait_exit() == 2
    assert proc.stderr() == (
        "sansproxy: --loop uvloop needs the uvloop package (pip install 'sansproxy[uvloop]')\n"
    )
