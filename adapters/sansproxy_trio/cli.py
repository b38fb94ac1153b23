"""The ``sansproxy`` command: run the proxy on trio from a TOML file or the command line.

Usage::

    sansproxy --config proxy.toml
    sansproxy --check-config proxy.toml
    sansproxy --listen 127.0.0.1:8080 --upstream http://127.0.0.1:9000 [--upstream ...]
    sansproxy demo [--port 8080]

Common options: ``--log-level debug|info|warning|error`` (default: the config's
``logging.level``), ``--access-log-format combined|json`` (default: the config's),
``--seed N`` (the core's random seed; drawn from ``os.urandom`` and logged at DEBUG otherwise).

Diagnostics go to stderr, one compact line each (``2025-03-05T14:02:07 INFO listening on
http://127.0.0.1:8080``); the access log goes to stdout. SIGINT or SIGTERM starts a graceful
shutdown; a second one stops at once.

Exit status: 0 after a graceful shutdown (and for a valid ``--check-config``); 1 when a
listener cannot be bound or the stop was forced; 2 for any configuration or usage error,
reported in one line without a traceback.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import replace
from pathlib import Path

import trio

from sansproxy.config import ProxyConfig, parse_config, quick_config
from sansproxy.errors import ConfigError
from sansproxy_io.accesslog import ACCESS_LOG_FORMATS
from sansproxy_io.runner import ACCESS_LOGGER, LOGGER
from sansproxy_io.tls import ClientContexts, server_context
from sansproxy_trio._demo import run_demo
from sansproxy_trio._serve import ListenError, serve_trio

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2
_LOG_LEVELS = ("debug", "info", "warning", "error")
_LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"
_DATE_FORMAT = "%Y-%m-%dT%H:%M:%S"

logger = logging.getLogger(LOGGER)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``sansproxy`` command with ``argv`` (default: ``sys.argv[1:]``).

    Returns:
        The exit status (see the module docs).
    """
    args = _parser().parse_args(argv)
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
            config = _load(args.config)
        elif args.listen or args.upstream:
            config = quick_config(args.listen or [], args.upstream or [])
        else:
            raise ConfigError(
                "command line", "", "give --config FILE, --check-config FILE or --listen/--upstream"
            )
    except ConfigError as error:
        print(error, file=sys.stderr)
        return EXIT_CONFIG
    log_format = getattr(args, "access_log_format", None)
    if log_format is not None:
        config = replace(config, logging=replace(config.logging, access_log_format=log_format))
    _configure_logging(getattr(args, "log_level", None) or config.logging.level)
    seed = getattr(args, "seed", None)
    return _run(lambda stop: serve_trio(config, seed=seed, shutdown=stop))


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
    parser.add_argument("--config", metavar="FILE", help="run with this TOML configuration")
    parser.add_argument(
        "--check-config", metavar="FILE", help="validate FILE, print 'FILE: OK' and exit"
    )
    parser.add_argument(
        "--listen",
        action="append",
        metavar="HOST:PORT",
        help="quick mode: listen here ([::1]:PORT for IPv6)",
    )
    parser.add_argument(
        "--upstream", action="append", metavar="URL", help="quick mode: a backend (repeatable)"
    )
    commands = parser.add_subparsers(dest="command", metavar="{demo}")
    demo = commands.add_parser(
        "demo", parents=[common], help="run three local backends behind the proxy"
    )
    demo.add_argument("--port", type=int, default=8080, help="proxy port (default 8080)")
    return parser


def _load(path: str) -> ProxyConfig:
    """Read and parse a config file; every failure is a one-line :class:`ConfigError`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(path, "", f"cannot read: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise ConfigError(path, "", "not UTF-8 text") from None
    return parse_config(text, source=path)


def _check(config: ProxyConfig) -> None:
    """What start-up would load besides the TOML: certificates, keys, CA files."""
    for listener in config.listeners:
        if listener.tls:
            server_context(listener)
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


def _run(serve: Callable[[trio.Event], Awaitable[None]]) -> int:
    try:
        return trio.run(_serve_until_signalled, serve)
    except KeyboardInterrupt:
        # Ctrl-C before the signal handlers were in place (during start-up).
        return EXIT_FAILED


async def _serve_until_signalled(serve: Callable[[trio.Event], Awaitable[None]]) -> int:
    stop = trio.Event()
    forced = False

    async def watch(signals: AsyncIterator[int], cancel: trio.CancelScope) -> None:
        nonlocal forced
        async for signum in signals:
            if not stop.is_set():
                logger.info("%s: shutting down gracefully", signal.Signals(signum).name)
                stop.set()
            else:
                logger.warning("%s again: stopping now", signal.Signals(signum).name)
                forced = True
                cancel.cancel()

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
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


def _expected(raised: BaseException) -> ConfigError | ListenError | None:
    """The start-up error inside ``raised`` (nurseries wrap it in groups), if that is all."""
    while isinstance(raised, BaseExceptionGroup) and len(raised.exceptions) == 1:
        raised = raised.exceptions[0]
    return raised if isinstance(raised, ConfigError | ListenError) else None
