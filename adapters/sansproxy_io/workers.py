"""Multi-core workers: a supervisor process that owns the listening sockets and N workers.

Theory of operation:

- One process drives one core. ``--workers N`` starts a supervisor (the process the
  operator ran) and N worker processes; each worker is the ordinary single-process server
  (``python -m sansproxy_trio`` with the operator's own arguments) serving sockets it
  inherits instead of binding them, with its own core.
- The supervisor binds every listener once, resolving port 0 once, before any worker
  starts, and logs ``listening on ...`` once per socket. On Linux it binds one socket per
  worker per address with ``SO_REUSEPORT``, so the kernel spreads new connections evenly
  over the workers (one shared socket lets whichever worker wakes first take them, which
  is uneven under load). Elsewhere, or with ``SANSPROXY_REUSEPORT=0``, all workers share
  one inherited socket per address. Either way the supervisor keeps its copy of every
  socket for as long as it runs: a restarted worker inherits the very socket its
  predecessor had, so connections waiting in that socket's queue are served, not reset.
- Workers get their configuration from a private copy of the file that the supervisor
  validated (a "snapshot"), never from the operator's file directly, so every worker, and
  a worker restarted later, runs the configuration that the supervisor accepted last.
- Signals. SIGTERM or SIGINT: the supervisor closes its sockets and sends SIGTERM to
  every worker, each drains gracefully (``timeouts.drain``), and the supervisor exits 0
  once all have exited 0; a second signal is forwarded too (workers stop at once) and the
  exit status is 1, as it is if a worker is still alive ``timeouts.drain`` plus
  :data:`STOP_GRACE` seconds later (it is then killed). SIGHUP: the supervisor validates
  the file once; an invalid one is refused with the one-line message and no worker hears
  of it; a valid one is written to the snapshot and SIGHUP goes to every worker, which
  re-reads the snapshot. Workers run in their own process group, so a Ctrl-C in a
  terminal reaches only the supervisor, which forwards it once.
- A worker that dies is restarted at once and its death logged (``worker 2 (pid 4242)
  died: signal SIGKILL; restarting``). One that keeps dying within :data:`STABLE_AFTER`
  seconds of its start is restarted after a delay that doubles up to :data:`MAX_BACKOFF`.
  One that exits with status 2 (a configuration or usage error, which a restart does not
  cure) is not restarted until the next SIGHUP; when no worker is left, the supervisor
  exits 2.
- Workers ask the kernel (Linux ``prctl(PR_SET_PDEATHSIG)``) for SIGTERM if the
  supervisor dies, so a killed supervisor does not leave orphans serving its port.

The supervisor is plain blocking Python (``subprocess``, ``selectors``, a signal wakeup
pipe); it runs no event loop and no core.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import math
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from sansproxy.config import ProxyConfig
from sansproxy.errors import ConfigError
from sansproxy_io.listen import (
    LISTEN_BACKLOG,
    ListenError,
    bracketed,
    listening_message,
    socket_address,
)
from sansproxy_io.reload import (
    REFUSED,
    LoadedConfig,
    Reloader,
    check_loadable,
    remove_pid_file,
    restart_only_changes,
    validate_reload,
    write_pid_file,
)
from sansproxy_io.runner import LOGGER

__all__ = [
    "EXIT_CONFIG",
    "EXIT_FAILED",
    "EXIT_OK",
    "MAX_BACKOFF",
    "STABLE_AFTER",
    "STOP_GRACE",
    "ListenerSockets",
    "ServeOptions",
    "Supervisor",
    "WorkerSpec",
    "bind_listeners",
    "die_with_parent",
    "label_worker_logs",
    "parse_workers",
    "run_supervisor",
    "serve_options",
    "use_reuseport",
    "worker_count",
    "worker_sockets",
]

logger = logging.getLogger(LOGGER)

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_CONFIG: Final = 2
STABLE_AFTER: Final = 10.0
"""A worker that ran this long before dying is restarted at once, without backoff."""
FIRST_BACKOFF: Final = 0.5
MAX_BACKOFF: Final = 10.0
STOP_GRACE: Final = 10.0
"""Seconds past ``timeouts.drain`` that workers get to exit before they are killed."""
_POLL: Final = 1.0
"""Longest sleep of the supervisor loop; children are also polled after every signal."""
_PR_SET_PDEATHSIG: Final = 1


# -- the number of workers ------------------------------------------------------------------


def parse_workers(text: str) -> int:
    """The ``--workers`` option: ``auto`` (0: one per CPU) or a count from 1 to 256.

    Raises:
        ValueError: Anything else.
    """
    if text.strip().lower() == "auto":
        return 0
    if not text.strip().isdigit() or not 1 <= int(text) <= 256:
        raise ValueError('must be "auto" or a whole number from 1 to 256')
    return int(text)


def worker_count(option: int | None, configured: int) -> int:
    """How many workers to run: ``--workers`` wins over ``server.workers``; 0 is one per CPU."""
    wanted = configured if option is None else option
    return wanted if wanted > 0 else max(1, os.cpu_count() or 1)


# -- the listening sockets ------------------------------------------------------------------


def use_reuseport() -> bool:
    """Whether to give each worker its own ``SO_REUSEPORT`` socket (Linux balances those)."""
    if os.environ.get("SANSPROXY_REUSEPORT", "1") == "0":
        return False
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


@dataclass(slots=True, kw_only=True)
class ListenerSockets:
    """The supervisor's listening sockets: ``sockets[copy][listener]`` is a list per address.

    With ``SO_REUSEPORT`` there is one copy per worker; otherwise one copy all share.
    """

    sockets: list[list[list[socket.socket]]]

    def for_worker(self, index: int) -> list[list[socket.socket]]:
        """The sockets of worker ``index`` (counted from 1), one list per listener."""
        return self.sockets[(index - 1) % len(self.sockets)]

    def close(self) -> None:
        """Close every socket (the workers' copies stay open until they close them)."""
        for copy in self.sockets:
            for per_listener in copy:
                for sock in per_listener:
                    sock.close()


def bind_listeners(config: ProxyConfig, copies: int, *, reuse_port: bool) -> ListenerSockets:
    """Bind and listen on every configured address, ``copies`` times with ``SO_REUSEPORT``.

    Like ``trio.open_tcp_listeners``, a host name is resolved and every address it has is
    bound; IPv6 sockets are IPv6-only. Port 0 is resolved once per address: later copies
    bind the port the first one got.

    Raises:
        ListenError: An address cannot be bound (in use, not local, no permission).
    """
    copies = copies if reuse_port else 1
    bound: list[list[list[socket.socket]]] = [[] for _ in range(copies)]
    try:
        for listener in config.listeners:
            where = f"{bracketed(listener.host)}:{listener.port}"
            try:
                infos = socket.getaddrinfo(
                    listener.host, listener.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
                )
            except OSError as error:
                raise ListenError(
                    error.errno, f"cannot listen on {where}: {error.strerror or error}"
                ) from error
            for copy in bound:
                copy.append([])
            seen: set[tuple[int, object]] = set()
            for family, kind, proto, _, address in infos:
                if (family, address) in seen:
                    continue
                seen.add((family, address))
                port = int(address[1])
                for copy in bound:
                    sock = socket.socket(family, kind, proto)
                    copy[-1].append(sock)
                    try:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                        if reuse_port:
                            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                        if family == socket.AF_INET6:
                            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                        sock.bind((address[0], port, *address[2:]))
                        sock.listen(LISTEN_BACKLOG)
                    except OSError as error:
                        raise ListenError(
                            error.errno, f"cannot listen on {where}: {error.strerror or error}"
                        ) from error
                    port = int(sock.getsockname()[1])
    except BaseException:
        ListenerSockets(sockets=bound).close()
        raise
    return ListenerSockets(sockets=bound)


# -- what a worker is told --------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerSpec:
    """The hidden ``--worker`` argument: ``INDEX:SUPERVISOR_PID:FDS``.

    ``FDS`` lists the inherited listening sockets: listeners separated by ``;``, the
    addresses of one listener by ``,`` (``3,4;5``).
    """

    index: int
    supervisor: int
    fds: tuple[tuple[int, ...], ...]

    def encode(self) -> str:
        """The argument's text."""
        fds = ";".join(",".join(str(fd) for fd in listener) for listener in self.fds)
        return f"{self.index}:{self.supervisor}:{fds}"

    @classmethod
    def parse(cls, text: str) -> WorkerSpec:
        """Read the argument.

        Raises:
            ValueError: It is malformed.
        """
        index, supervisor, fds = text.split(":", 2)
        return cls(
            index=int(index),
            supervisor=int(supervisor),
            fds=tuple(
                tuple(int(fd) for fd in listener.split(",") if fd) for listener in fds.split(";")
            ),
        )


def worker_sockets(spec: WorkerSpec) -> list[list[socket.socket]]:
    """The inherited listening sockets of a worker, one list per listener.

    Raises:
        OSError: A descriptor is not an open socket.
    """
    return [[socket.socket(fileno=fd) for fd in listener] for listener in spec.fds]


def die_with_parent(supervisor: int) -> bool:
    """Ask for SIGTERM when the supervisor dies (Linux); report whether it is still alive.

    Elsewhere only the check is done: a worker of a killed supervisor then keeps serving
    until it is stopped itself.
    """
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    return os.getppid() == supervisor


# -- the supervisor ---------------------------------------------------------------------------


def _describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"signal {-returncode}"
    return f"exit status {returncode}"


def _ignore_hangup() -> None:
    """Run in a new worker before exec: a SIGHUP during its start-up must not kill it.

    Its reloader re-reads the snapshot once it is serving, so such a reload is not lost.
    """
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


@dataclass(slots=True, kw_only=True)
class _Slot:
    index: int
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    quick_deaths: int = 0
    restart_at: float | None = 0.0
    """When to start a process next; ``None`` while one runs or after a configuration error."""
    history: list[str] = field(default_factory=list)


class Supervisor:
    """Starts N workers, restarts those that die, forwards SIGTERM/SIGINT/SIGHUP.

    Args:
        count: How many workers.
        sockets: The bound listening sockets (the supervisor owns and finally closes them).
        command: The argv of worker ``index`` given its :class:`WorkerSpec` text.
        drain_timeout: The configuration's ``timeouts.drain``; bounds the stop.
        on_hangup: Validates a reload (and prepares it); workers get SIGHUP only if it
            returns ``True``. ``None``: there is no file to reload.
        clock: Monotonic seconds.
    """

    def __init__(
        self,
        *,
        count: int,
        sockets: ListenerSockets,
        command: Callable[[int, str], list[str]],
        drain_timeout: float,
        on_hangup: Callable[[], bool] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._slots = [_Slot(index=index) for index in range(1, count + 1)]
        self._sockets = sockets
        self._command = command
        self._drain_timeout = drain_timeout
        self._on_hangup = on_hangup
        self._clock = clock
        self._stopping: int | None = None
        """The signal that started the stop."""
        self._kill_at = 0.0
        self._forced = False
        self._unclean = False

    @property
    def pids(self) -> list[int]:
        """Process ids of the workers running now."""
        return [slot.process.pid for slot in self._slots if slot.process is not None]

    def run(self) -> int:
        """Supervise until the workers have stopped; returns the exit status.

        Must run in the main thread (it installs signal handlers, restored on return).
        """
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_read, False)
        os.set_blocking(wake_write, False)
        handled = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD)
        previous = {signum: signal.getsignal(signum) for signum in handled}
        old_wakeup = signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
        selector = selectors.DefaultSelector()
        try:
            for signum in handled:
                signal.signal(signum, _noted)
            selector.register(wake_read, selectors.EVENT_READ)
            return self._loop(selector, wake_read)
        finally:
            signal.set_wakeup_fd(old_wakeup)
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            selector.close()
            os.close(wake_read)
            os.close(wake_write)
            for slot in self._slots:
                if slot.process is not None and slot.process.poll() is None:
                    slot.process.kill()  # only reached if the loop itself failed
                    slot.process.wait()
            self._sockets.close()

    def _loop(self, selector: selectors.BaseSelector, wake_read: int) -> int:
        while True:
            now = self._clock()
            self._start_due(now)
            if self._stopping is not None and not self.pids:
                break
            if self._stopping is None and all(
                slot.process is None and slot.restart_at is None for slot in self._slots
            ):
                logger.error("no worker can start: stopping")
                self._sockets.close()
                return EXIT_CONFIG
            if self._stopping is not None and now >= self._kill_at:
                for slot in self._slots:
                    if slot.process is not None:
                        logger.error(
                            "worker %d (pid %d) still running after %.0f s: killing it",
                            slot.index,
                            slot.process.pid,
                            self._drain_timeout + STOP_GRACE,
                        )
                        slot.process.kill()
                self._forced = True
                self._kill_at = math.inf  # killed once; now wait for them to be reaped
            selector.select(self._timeout(now))
            for signum in _drain_signals(wake_read):
                self._on_signal(signum)
            self._reap()
        if self._forced or self._unclean:
            return EXIT_FAILED
        return EXIT_OK

    def _timeout(self, now: float) -> float:
        due = [slot.restart_at for slot in self._slots if slot.restart_at is not None]
        if self._stopping is not None:
            due = [self._kill_at]
        if not due:
            return _POLL
        return max(0.0, min(_POLL, min(due) - now))

    def _start_due(self, now: float) -> None:
        if self._stopping is not None:
            return
        for slot in self._slots:
            if slot.process is None and slot.restart_at is not None and slot.restart_at <= now:
                self._spawn(slot, now)

    def _spawn(self, slot: _Slot, now: float) -> None:
        sockets = self._sockets.for_worker(slot.index)
        spec = WorkerSpec(
            index=slot.index,
            supervisor=os.getpid(),
            fds=tuple(tuple(sock.fileno() for sock in listener) for listener in sockets),
        )
        argv = self._command(slot.index, spec.encode())
        try:
            slot.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                pass_fds=[fd for listener in spec.fds for fd in listener],
                process_group=0,
                preexec_fn=_ignore_hangup,  # noqa: PLW1509 - the supervisor has no threads
            )
        except OSError as error:
            logger.error("worker %d: cannot start: %s", slot.index, error)
            self._schedule_restart(slot, now)
            return
        slot.started = now
        slot.restart_at = None
        logger.info("worker %d started (pid %d)", slot.index, slot.process.pid)

    def _schedule_restart(self, slot: _Slot, now: float) -> float:
        if now - slot.started < STABLE_AFTER:
            slot.quick_deaths += 1
        else:
            slot.quick_deaths = 1
        delay = 0.0
        if slot.quick_deaths > 1:
            delay = min(MAX_BACKOFF, FIRST_BACKOFF * 2 ** (slot.quick_deaths - 2))
        slot.restart_at = now + delay
        return delay

    def _reap(self) -> None:
        now = self._clock()
        for slot in self._slots:
            if slot.process is None:
                continue
            returncode = slot.process.poll()
            if returncode is None:
                continue
            pid = slot.process.pid
            slot.process = None
            how = _describe_exit(returncode)
            if self._stopping is not None:
                if returncode not in (0, -signal.SIGTERM):
                    self._unclean = True
                    logger.warning("worker %d (pid %d) exited: %s", slot.index, pid, how)
                else:
                    logger.info("worker %d (pid %d) stopped", slot.index, pid)
                continue
            if returncode == EXIT_CONFIG:
                slot.restart_at = None
                logger.error(
                    "worker %d (pid %d) died: %s (a configuration or usage error); "
                    "not restarting it until the next reload (SIGHUP)",
                    slot.index,
                    pid,
                    how,
                )
                continue
            delay = self._schedule_restart(slot, now)
            if delay:
                logger.error(
                    "worker %d (pid %d) died: %s; restarting in %.1f s",
                    slot.index,
                    pid,
                    how,
                    delay,
                )
            else:
                logger.error("worker %d (pid %d) died: %s; restarting", slot.index, pid, how)

    def _on_signal(self, signum: int) -> None:
        if signum == signal.SIGCHLD:
            return  # _reap runs after every wake-up
        name = signal.Signals(signum).name
        if signum == signal.SIGHUP:
            self._reload(name)
            return
        if self._stopping is None:
            logger.info("%s: shutting down gracefully: stopping %d workers", name, len(self.pids))
            self._stopping = signum
            self._kill_at = self._clock() + self._drain_timeout + STOP_GRACE
            self._sockets.close()
        else:
            logger.warning("%s again: stopping the workers now", name)
            self._forced = True
        # SIGTERM whichever signal it was: a worker still starting up dies of it quietly,
        # where SIGINT would print a KeyboardInterrupt traceback.
        for slot in self._slots:
            if slot.process is not None:
                with contextlib.suppress(ProcessLookupError):
                    slot.process.send_signal(signal.SIGTERM)

    def _reload(self, name: str) -> None:
        if self._stopping is not None:
            logger.info("%s ignored: shutting down", name)
            return
        if self._on_hangup is None:
            logger.info("%s: nothing to reload (no configuration file)", name)
            return
        if not self._on_hangup():
            return
        for slot in self._slots:
            if slot.process is not None:
                with contextlib.suppress(ProcessLookupError):
                    slot.process.send_signal(signal.SIGHUP)
            elif slot.restart_at is None:
                slot.quick_deaths = 0
                slot.restart_at = self._clock()  # stopped by a configuration error: retry


def _noted(signum: int, frame: object) -> None:
    """Signal handler: the wakeup pipe carries the signal number to the loop."""


def _drain_signals(wake_read: int) -> list[int]:
    received = bytearray()
    while True:
        try:
            data = os.read(wake_read, 512)
        except BlockingIOError:
            break
        if not data:
            break
        received += data
    return list(received)


# -- one serving process: alone, or a worker -----------------------------------------------------


class _WorkerPrefix(logging.Filter):
    """Starts every diagnostic line of a worker with ``worker N:``."""

    def __init__(self, index: int) -> None:
        super().__init__()
        self._prefix = f"worker {index}: "

    def filter(self, record: logging.LogRecord) -> bool:
        """Prefix the message (once: a record may pass several handlers)."""
        message = record.getMessage()
        if not message.startswith(self._prefix):
            record.msg = self._prefix + message
            record.args = None
        return True


def label_worker_logs(index: int) -> None:
    """Prefix the diagnostics (not the access log) of worker ``index`` with ``worker N:``."""
    for handler in logging.getLogger(LOGGER).handlers:
        handler.addFilter(_WorkerPrefix(index))


@dataclass(slots=True, kw_only=True)
class ServeOptions:
    """How one serving process runs: the sockets it inherited, its reloader, SIGHUP.

    Pass ``listen_sockets`` and ``reloader`` to ``serve_trio`` / ``serve_asyncio`` and call
    :meth:`hangup` from the loop's SIGHUP handler.
    """

    listen_sockets: list[list[socket.socket]] | None = None
    """A worker's inherited listening sockets; ``None``: bind the configured listeners."""
    reloader: Reloader | None = None
    """Re-reads the configuration file; ``None`` in quick mode (there is no file)."""
    worker: int | None = None
    """The worker's number, or ``None`` for a single process."""

    def hangup(self) -> None:
        """SIGHUP: reload the configuration file, or say there is none."""
        if self.reloader is None:
            logger.info("SIGHUP: nothing to reload (no configuration file)")
        else:
            self.reloader.reload()


def serve_options(
    *,
    worker: str | None,
    config_file: tuple[str, LoadedConfig] | None,
    adjust: Callable[[ProxyConfig], ProxyConfig] | None = None,
) -> ServeOptions:
    """Set up this process as a worker (``worker`` is the hidden ``--worker`` text) or alone.

    Args:
        worker: The ``--worker`` argument, ``None`` for a single process.
        config_file: The file to reload (a worker's snapshot) and what was read from it;
            ``None`` in quick mode.
        adjust: Command-line overrides applied to every reloaded configuration.

    Raises:
        ValueError: ``worker`` is malformed.
        OSError: An inherited descriptor is not a socket, or the supervisor is gone.
    """
    reloader = None
    if config_file is not None:
        path, loaded = config_file
        reloader = Reloader(path, loaded, adjust=adjust, announce_restart_only=worker is None)
    if worker is None:
        return ServeOptions(reloader=reloader)
    spec = WorkerSpec.parse(worker)
    if not die_with_parent(spec.supervisor):
        raise OSError(f"supervisor {spec.supervisor} is gone")
    label_worker_logs(spec.index)
    return ServeOptions(listen_sockets=worker_sockets(spec), reloader=reloader, worker=spec.index)


# -- the supervisor's entry point ---------------------------------------------------------------


class _Snapshot:
    """The private copy of the last accepted configuration that workers read, and its reload.

    Args:
        path: The operator's configuration file.
        loaded: What was read from it at start-up.
        running: The configuration in use (command-line overrides applied).
        adjust: The command-line overrides.
    """

    def __init__(
        self,
        path: str,
        loaded: LoadedConfig,
        running: ProxyConfig,
        adjust: Callable[[ProxyConfig], ProxyConfig] | None,
    ) -> None:
        self._source_path = path
        self._source = loaded.source
        self._running = running
        self._adjust = adjust
        self._folder = Path(tempfile.mkdtemp(prefix="sansproxy-"))
        self.path = self._folder / "config.toml"
        self._write(loaded.text)

    def _write(self, text: str) -> None:
        partial = self._folder / "config.toml.tmp"
        partial.write_text(text, encoding="utf-8")
        partial.replace(self.path)  # atomic: a worker reads the old text or the new

    def reload(self) -> bool:
        """Validate the operator's file; if it is valid, make it the snapshot.

        Returns:
            Whether the workers should reload (the snapshot changed).
        """
        try:
            new = validate_reload(
                self._source_path, self._running, source=self._source, adjust=self._adjust
            )
        except ConfigError as error:
            logger.error("%s", error)
            logger.warning("%s", REFUSED)
            return False
        for key in restart_only_changes(self._running, new.config):
            logger.warning("%s changed: it takes effect at the next start", key)
        self._write(new.text)
        self._running = new.config
        logger.info("configuration from %s is valid: reloading the workers", self._source)
        return True

    def remove(self) -> None:
        """Delete the snapshot (the supervisor is exiting)."""
        shutil.rmtree(self._folder, ignore_errors=True)


def run_supervisor(
    *,
    count: int,
    config: ProxyConfig,
    worker_command: Sequence[str],
    config_file: tuple[str, LoadedConfig] | None = None,
    adjust: Callable[[ProxyConfig], ProxyConfig] | None = None,
    pid_file: str | None = None,
) -> int:
    """Run ``count`` workers for the ``sansproxy`` command; returns its exit status.

    Args:
        count: How many workers (at least 1).
        config: The validated configuration (command-line overrides applied).
        worker_command: The argv that starts one worker, before ``--worker SPEC``
            (and ``--worker-config SNAPSHOT``) are appended: the interpreter, the module
            and the operator's own arguments.
        config_file: The configuration file's path and what was read from it; ``None`` in
            quick mode (nothing to reload).
        adjust: Command-line overrides, applied to every reloaded configuration.
        pid_file: Where to write the supervisor's pid (``sansproxy reload`` reads it).

    Returns:
        0 after a graceful stop; 1 when a listener cannot be bound, the stop was forced or a
        worker failed to drain; 2 for a configuration error.
    """
    try:
        check_loadable(config)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return EXIT_CONFIG
    reuse_port = use_reuseport()
    try:
        sockets = bind_listeners(config, count, reuse_port=reuse_port)
    except ListenError as error:
        print(f"sansproxy: {error.strerror}", file=sys.stderr)
        return EXIT_FAILED
    for listener, per_address in zip(config.listeners, sockets.for_worker(1), strict=True):
        for sock in per_address:
            logger.info("%s", listening_message(listener.tls, socket_address(sock.getsockname())))
    logger.info(
        "starting %d workers (%s)",
        count,
        "a SO_REUSEPORT socket each" if reuse_port else "sharing the listening sockets",
    )

    snapshot = None
    if config_file is not None:
        snapshot = _Snapshot(config_file[0], config_file[1], config, adjust)

    def command(index: int, spec: str) -> list[str]:
        argv = [*worker_command, "--worker", spec]
        if snapshot is not None:
            argv += ["--worker-config", str(snapshot.path)]
        return argv

    supervisor = Supervisor(
        count=count,
        sockets=sockets,
        command=command,
        drain_timeout=config.timeouts.drain,
        on_hangup=snapshot.reload if snapshot is not None else None,
    )
    try:
        if pid_file is not None:
            write_pid_file(pid_file)
        return supervisor.run()
    except OSError as error:
        print(f"sansproxy: {error}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        if pid_file is not None:
            remove_pid_file(pid_file)
        if snapshot is not None:
            snapshot.remove()
        sockets.close()
