"""The ``sansproxy`` command: run the proxy on trio from a TOML file or the command line.

Usage::

    sansproxy --config proxy.toml
    sansproxy --check-config proxy.toml
    sansproxy --version
    sansproxy --listen 127.0.0.1:8080 --upstream http://127.0.0.1:9000 [--upstream ...]
    sansproxy --listen :8080 --upstream localhost:9000      (every interface; http assumed)
    sansproxy demo [--port 8080]
    sansproxy replay FILE [FILE ...]
    sansproxy reload --pid-file FILE

Common options: ``--log-level debug|info|warning|error`` (default: the config's
``logging.level``), ``--access-log-format combined|extended|json`` (default: the config's),
``--seed N`` (the core's random seed; drawn from ``os.urandom`` and logged at DEBUG otherwise).

``--loop trio|asyncio|uvloop`` chooses the event loop (default: the config's ``server.loop``,
which defaults to trio); uvloop is the optional extra ``sansproxy[uvloop]``, and asking for
it without it installed is a usage error (exit 2).

Diagnostics go to stderr, one compact line each (``2025-03-05T14:02:07 INFO listening on
http://127.0.0.1:8080``); the access log goes to stdout. SIGINT or SIGTERM starts a graceful
shutdown; a second one stops at once.

Exit status: 0 after a graceful shutdown (and for a valid ``--check-config``); 1 when a
listener cannot be bound or the stop was forced; 2 for any configuration or usage error,
reported in one line without a traceback.

``--record FILE`` records every event the core receives (and the commands it returned) to
FILE; ``sansproxy replay FILE`` feeds it to a fresh core and exits 0 when every turn gives
the same commands, 1 at the first difference (printed), 2 when FILE cannot be replayed.
See docs/record-replay.md.

``--workers N|auto`` runs N worker processes under a supervisor (sansproxy_io.workers);
``--pid-file FILE`` writes the server's pid for ``sansproxy reload --pid-file FILE``, which
sends it SIGHUP: the configuration file is re-read and applied, or refused with its one-line
message while the running one stays (sansproxy_io.reload). See docs/operations.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import trio

from sansproxy.config import ProxyConfig, parse_config, quick_config
from sansproxy.errors import ConfigError
from sansproxy_asyncio import serve_asyncio
from sansproxy_asyncio._run import LoopUnavailable, run_until_signalled
from sansproxy_io.accesslog import ACCESS_LOG_FORMATS
from sansproxy_io.record import RecordTarget, quick_config_toml, replay_main
from sansproxy_io.reload import LoadedConfig, remove_pid_file, signal_reload, write_pid_file
from sansproxy_io.runner import ACCESS_LOGGER, LOGGER
from sansproxy_io.tls import ClientContexts, server_contexts
from sansproxy_io.version import version_line
from sansproxy_io.workers import (
    ServeOptions,
    parse_workers,
    run_supervisor,
    serve_options,
    worker_count,
)
from sansproxy_trio._demo import run_demo
from sansproxy_trio._serve import ListenError, serve_trio

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
_LOG_LEVELS = ("debug", "info", "warning", "error")
_LOOPS = ("trio", "asyncio", "uvloop")
_LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"
_DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"

logger = logging.getLogger(LOGGER)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``sansproxy`` command with ``argv`` (default: ``sys.argv[1:]``).

    Returns:
        The exit status (see the module docs).
    """
    args = _parser().parse_args(argv)
    if args.command == "replay":
        return replay_main(args.files)
    if args.command == "reload":
        return _send_reload(args.pid_file)
    if args.command == "demo":
        level = getattr(args, "log_level", None) or "info"
        _configure_logging(level)
        port = int(args.port)
        seed = getattr(args, "seed", None)
        log_format = getattr(args, "access_log_format", None)
        return _run(
            lambda stop: run_demo(port, seed=seed, access_log_format=log_format, shutdown=stop)
        )

    if args.check_config is not None:
        try:
            _check(_load(args.check_config))
        except ConfigError as error:
            print(error, file=sys.stderr)
            return EXIT_CONFIG
        print(f"{args.check_config}: OK")
        return EXIT_OK

    try:
        if args.config is not None:
            if args.listen or args.upstream:
                raise ConfigError("command line", "--config", "cannot be combined with --listen")
            # A worker reads the supervisor's snapshot of the file, named as the file.
            config_text, config_source = _read(args.worker_config or args.config), args.config
            config = parse_config(config_text, source=config_source)
        elif args.listen or args.upstream:
            config = quick_config(args.listen or [], args.upstream or [])
            config_text = quick_config_toml(args.listen or [], args.upstream or [])
            config_source = "command line"
        else:
            raise ConfigError(
                "command line", "", "give --config FILE, --check-config FILE or --listen/--upstream"
            )
    except ConfigError as error:
        print(error, file=sys.stderr)
        return EXIT_CONFIG
    config_file = None
    if args.config is not None:
        loaded = LoadedConfig(text=config_text, config=config, source=config_source)
        config_file = (args.worker_config or args.config, loaded)
    overrides = _overrides(args)
    config = overrides(config)
    _configure_logging(getattr(args, "log_level", None) or config.logging.level)
    seed = getattr(args, "seed", None)
    record = None
    if args.record is not None:
        record = RecordTarget(
            file=args.record, config_text=config_text, config_source=config_source
        )
    workers = worker_count(args.workers, config.server.workers)
    if args.worker is None and workers > 1:
        if record is not None:
            print("command line: --record: records one core; use --workers 1", file=sys.stderr)
            return EXIT_CONFIG
        return run_supervisor(
            count=workers,
            config=config,
            worker_command=[sys.executable, "-m", "sansproxy_trio", *_argv(argv)],
            config_file=config_file,
            adjust=overrides,
            pid_file=args.pid_file,
        )
    try:
        process = serve_options(worker=args.worker, config_file=config_file, adjust=overrides)
    except (OSError, ValueError) as error:
        print(f"sansproxy: worker: {error}", file=sys.stderr)
        return EXIT_FAILED
    with _pid_file(args.pid_file if args.worker is None else None) as written:
        if not written:
            return EXIT_FAILED
        return _serve_on(args.loop or config.server.loop, config, seed, record, process)


def _serve_on(
    loop: str,
    config: ProxyConfig,
    seed: int | None,
    record: RecordTarget | None,
    process: ServeOptions,
) -> int:
    if loop != "trio":
        return _run_asyncio(
            loop,
            lambda stop: serve_asyncio(
                config,
                seed=seed,
                shutdown=stop,
                record=record,
                listen_sockets=process.listen_sockets,
                reloader=process.reloader,
            ),
            on_hangup=process.hangup,
        )
    return _run(
        lambda stop: serve_trio(
            config,
            seed=seed,
            shutdown=stop,
            record=record,
            listen_sockets=process.listen_sockets,
            reloader=process.reloader,
        ),
        on_hangup=process.hangup,
    )


def _argv(argv: Sequence[str] | None) -> list[str]:
    return list(sys.argv[1:] if argv is None else argv)


def _overrides(args: argparse.Namespace) -> Callable[[ProxyConfig], ProxyConfig]:
    """Command-line settings that win over the file, at start-up and on every reload."""
    log_format = getattr(args, "access_log_format", None)

    def adjust(config: ProxyConfig) -> ProxyConfig:
        if log_format is None:
            return config
        return replace(config, logging=replace(config.logging, access_log_format=log_format))

    return adjust


@contextlib.contextmanager
def _pid_file(path: str | None) -> Iterator[bool]:
    """Write this process's pid to ``path`` for ``sansproxy reload``; remove it on exit."""
    if path is None:
        yield True
        return
    try:
        write_pid_file(path)
    except OSError as error:
        print(
            f"sansproxy: cannot write pid file {path}: {error.strerror or error}", file=sys.stderr
        )
        yield False
        return
    try:
        yield True
    finally:
        remove_pid_file(path)


def _parser() -> argparse.ArgumentParser:
    # The common options live on a parent parser with SUPPRESS defaults, so they may be
    # given before or after ``demo`` without one position's default hiding the other's value.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--log-level",
        choices=_LOG_LEVELS,
        default=argparse.SUPPRESS,
        help="stderr log level (default: the config's logging.level, else info)",
    )
    common.add_argument(
        "--access-log-format",
        choices=ACCESS_LOG_FORMATS,
        default=argparse.SUPPRESS,
        help="access log on stdout (default: the config's logging.access_log_format)",
    )
    common.add_argument(
        "--seed",
        type=int,
        metavar="N",
        default=argparse.SUPPRESS,
        help="seed of the proxy's random choices (default: random, logged at debug level)",
    )

    parser = argparse.ArgumentParser(
        prog="sansproxy",
        description="A reverse proxy around a pure, sans-IO core, served on trio.",
        parents=[common],
    )
    parser.add_argument(
        "--version", action="version", version=version_line(), help="print the version and exit"
    )
    parser.add_argument("--config", metavar="FILE", help="run with this TOML configuration")
    parser.add_argument(
        "--check-config", metavar="FILE", help="validate FILE, print 'FILE: OK' and exit"
    )
    parser.add_argument(
        "--listen",
        action="append",
        metavar="HOST:PORT",
        help="quick mode: listen here ([::1]:PORT for IPv6; :PORT or PORT: every interface)",
    )
    parser.add_argument(
        "--upstream",
        action="append",
        metavar="URL",
        help="quick mode: a backend, http://HOST:PORT or HOST:PORT (http) (repeatable)",
    )
    parser.add_argument(
        "--loop",
        choices=_LOOPS,
        help="event loop: trio, asyncio or uvloop (default: the config's server.loop, else trio)",
    )
    parser.add_argument(
        "--record",
        metavar="FILE",
        help="record every event the core gets to FILE, for 'sansproxy replay FILE'",
    )
    parser.add_argument(
        "--workers",
        type=_workers_option,
        metavar="N|auto",
        help="worker processes sharing the listeners (default: the config's server.workers, "
        "else 1; auto: one per CPU)",
    )
    parser.add_argument(
        "--pid-file", metavar="FILE", help="write the server's pid to FILE (for 'reload')"
    )
    # A worker started by the supervisor: INDEX:SUPERVISOR_PID:FDS, and the config snapshot.
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--worker-config", help=argparse.SUPPRESS)
    commands = parser.add_subparsers(dest="command", metavar="{demo,replay,reload}")
    demo = commands.add_parser(
        "demo", parents=[common], help="run three local backends behind the proxy"
    )
    demo.add_argument("--port", type=int, default=8080, help="proxy port (default 8080)")
    replay = commands.add_parser(
        "replay", help="feed recordings to a fresh core; exit 0 if the commands are identical"
    )
    replay.add_argument("files", nargs="+", metavar="FILE", help="a --record file")
    reload = commands.add_parser(
        "reload", help="make a running server re-read its configuration (SIGHUP)"
    )
    reload.add_argument("--pid-file", required=True, metavar="FILE", help="the server's --pid-file")
    return parser


def _workers_option(text: str) -> int:
    try:
        return parse_workers(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _send_reload(pid_file: str) -> int:
    """``sansproxy reload``: SIGHUP to the pid in ``pid_file``; the server logs the outcome."""
    try:
        pid = signal_reload(pid_file)
    except (OSError, ValueError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        print(f"sansproxy: reload: {pid_file}: {reason}", file=sys.stderr)
        return EXIT_FAILED
    print(f"sent SIGHUP to {pid}: its log says whether the configuration was applied")
    return EXIT_OK


def _load(path: str) -> ProxyConfig:
    """Read and parse a config file; every failure is a one-line :class:`ConfigError`."""
    return parse_config(_read(path), source=path)


def _read(path: str) -> str:
    """A config file's text; a failure is a one-line :class:`ConfigError`."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(path, "", f"cannot read: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise ConfigError(path, "", "not UTF-8 text") from None


def _check(config: ProxyConfig) -> None:
    """What start-up would load besides the TOML: certificates, keys, CA files."""
    server_contexts(config)
    ClientContexts().preload(config)


def _configure_logging(level: str) -> None:
    errors = logging.StreamHandler(sys.stderr)
    errors.setFormatter(logging.Formatter(_LOG_FORMAT, _DATE_FORMAT))
    main_logger = logging.getLogger(LOGGER)
    main_logger.handlers[:] = [errors]
    main_logger.setLevel(level.upper())
    main_logger.propagate = False

    access = logging.StreamHandler(sys.stdout)
    access.setFormatter(logging.Formatter("%(message)s"))
    access_logger = logging.getLogger(ACCESS_LOGGER)
    access_logger.handlers[:] = [access]
    access_logger.setLevel(logging.INFO)
    access_logger.propagate = False


def _run(
    serve: Callable[[trio.Event], Awaitable[None]], on_hangup: Callable[[], None] | None = None
) -> int:
    try:
        return trio.run(_serve_until_signalled, serve, on_hangup)
    except KeyboardInterrupt:
        # Ctrl-C before the signal handlers were in place (during start-up).
        return EXIT_FAILED


async def _serve_until_signalled(
    serve: Callable[[trio.Event], Awaitable[None]], on_hangup: Callable[[], None] | None
) -> int:
    stop = trio.Event()
    forced = False

    async def watch(signals: AsyncIterator[int], cancel: trio.CancelScope) -> None:
        nonlocal forced
        async for signum in signals:
            if signum == signal.SIGHUP:
                if stop.is_set():
                    logger.info("SIGHUP ignored: shutting down")
                elif on_hangup is None:
                    logger.info("SIGHUP: nothing to reload (no configuration file)")
                else:
                    on_hangup()  # sansproxy_io.reload: re-read, validate, apply or refuse
            elif not stop.is_set():
                logger.info("%s: shutting down gracefully", signal.Signals(signum).name)
                stop.set()
            else:
                logger.warning("%s again: stopping now", signal.Signals(signum).name)
                forced = True
                cancel.cancel()

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch, signals, nursery.cancel_scope)
            try:
                await serve(stop)
            except (ConfigError, ListenError, BaseExceptionGroup) as raised:
                error = _expected(raised)
                if error is None:
                    raise
                if isinstance(error, ListenError):
                    print(f"sansproxy: {error.strerror}", file=sys.stderr)
                    return EXIT_FAILED
                print(error, file=sys.stderr)
                return EXIT_CONFIG
            finally:
                nursery.cancel_scope.cancel()
    return EXIT_FAILED if forced else EXIT_OK


def _run_asyncio(
    loop: str,
    serve: Callable[[asyncio.Event], Awaitable[None]],
    on_hangup: Callable[[], None] | None = None,
) -> int:
    """:func:`_run` on an asyncio loop (``"asyncio"`` or ``"uvloop"``): same signals, codes."""
    try:
        forced = run_until_signalled(serve, loop=loop, on_hangup=on_hangup)
    except LoopUnavailable as error:
        print(f"sansproxy: {error}", file=sys.stderr)
        return EXIT_CONFIG
    except ListenError as error:
        print(f"sansproxy: {error.strerror}", file=sys.stderr)
        return EXIT_FAILED
    except ConfigError as error:
        print(error, file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return EXIT_FAILED  # Ctrl-C before the signal handlers were in place
    return EXIT_FAILED if forced else EXIT_OK


def _expected(raised: BaseException) -> ConfigError | ListenError | None:
    """The start-up error inside ``raised`` (nurseries wrap it in groups), if that is all."""
    while isinstance(raised, BaseExceptionGroup) and len(raised.exceptions) == 1:
        raised = raised.exceptions[0]
    return raised if isinstance(raised, ConfigError | ListenError) else None
