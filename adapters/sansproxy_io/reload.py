"""Live reload: re-read the configuration file, check it, and hand it to a running core.

Theory of operation:

- A reload is refused, and the running configuration stays, when the new file cannot be
  read or parsed, when a TLS certificate, key or CA file it names cannot be loaded, or when
  its listeners differ from the running ones. Every refusal is one
  :class:`~sansproxy.errors.ConfigError` line, the same line ``--check-config`` and
  start-up print (``proxy.toml: timeouts.client_header: must be a positive number``).
- Listeners are compared on what the adapter owns: their number and order, addresses and
  TLS files. The sockets were bound at start-up (and, with workers, are shared by every
  process), so changing them needs a restart. A listener's ``upstream`` may change: that
  is routing, the core's business.
- A valid configuration goes to the core as one ``ConfigReloaded`` event through
  :meth:`Runner.reload <sansproxy_io.runner.Runner.reload>`, between two turns of the event
  loop; the core applies it to new requests and lets exchanges and tunnels in flight finish
  as they began. Server certificates of unchanged TLS listeners are re-read into the live
  contexts, so a renewed certificate at the same path is served to new connections.
- Everything here is synchronous and loop-neutral: an adapter calls :meth:`Reloader.reload`
  from its loop's signal handler (trio's signal receiver, asyncio's ``add_signal_handler``).
  Reading a small file there blocks the loop for a moment, as nginx's master does.
- ``sansproxy reload --pid-file FILE`` finds the server through the pid file it wrote at
  start-up (``--pid-file FILE``) and sends it SIGHUP (:func:`signal_reload`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

from sansproxy.config import Listener, ProxyConfig, parse_config
from sansproxy.errors import ConfigError
from sansproxy_io.runner import LOGGER
from sansproxy_io.tls import ClientContexts, server_contexts
from sansproxy_io.tls_files import load_listener_files

__all__ = [
    "LoadedConfig",
    "Reloadable",
    "Reloader",
    "check_loadable",
    "check_same_listeners",
    "load_config_file",
    "read_pid_file",
    "remove_pid_file",
    "restart_only_changes",
    "signal_reload",
    "validate_reload",
    "write_pid_file",
]

logger = logging.getLogger(LOGGER)

REFUSED: Final = "reload refused: the running configuration stays"
"""Logged at WARNING after the one-line reason of a refused reload."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadedConfig:
    """A configuration file as read and validated: its text (to record or pass on) and value."""

    text: str
    config: ProxyConfig
    source: str
    """The name used in messages: the file name the operator gave."""


class Reloadable(Protocol):
    """What a reload drives: :class:`sansproxy_io.runner.Runner` has this method."""

    def reload(self, config: ProxyConfig, *, text: str | None = None, source: str = "") -> None:
        """Apply ``config`` to the running core (``ConfigReloaded``)."""


def load_config_file(path: str | os.PathLike[str], *, source: str | None = None) -> LoadedConfig:
    """Read and parse a configuration file.

    Args:
        path: The file to read.
        source: The name used in messages (default: ``path``); a worker reads a private copy
            but names the operator's file.

    Raises:
        ConfigError: The file cannot be read, is not UTF-8, or does not validate; one line.
    """
    name = str(path) if source is None else source
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(name, "", f"cannot read: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise ConfigError(name, "", "not UTF-8 text") from None
    return LoadedConfig(text=text, config=parse_config(text, source=name), source=name)


def check_loadable(config: ProxyConfig) -> None:
    """Load what the configuration names besides itself: certificates, keys, CA files.

    Raises:
        ConfigError: One of them cannot be loaded (named by path).
    """
    server_contexts(config)
    ClientContexts().preload(config)


def _socket_facts(listener: Listener) -> tuple[str, int, str | None, str | None]:
    return (listener.host, listener.port, listener.certificate, listener.private_key)


def check_same_listeners(running: ProxyConfig, new: ProxyConfig, source: str) -> None:
    """Refuse a configuration whose listeners are not the running ones.

    Raises:
        ConfigError: The number, order, address or TLS files of the listeners changed.
    """
    if len(new.listeners) != len(running.listeners):
        raise ConfigError(
            source,
            "listeners",
            f"{len(new.listeners)} listeners instead of {len(running.listeners)}: "
            "adding or removing a listener needs a restart",
        )
    for index, (old, listener) in enumerate(zip(running.listeners, new.listeners, strict=True)):
        if _socket_facts(old) != _socket_facts(listener):
            what = "address" if old.host != listener.host or old.port != listener.port else "TLS"
            raise ConfigError(
                source,
                f"listeners[{index}]",
                f"{what} changed: changing a listener's address or TLS files needs a restart",
            )


def restart_only_changes(running: ProxyConfig, new: ProxyConfig) -> list[str]:
    """Settings that differ but only take effect at the next start (``[server]``)."""
    changed = []
    if new.server.loop != running.server.loop:
        changed.append("server.loop")
    if new.server.workers != running.server.workers:
        changed.append("server.workers")
    return changed


def validate_reload(
    path: str | os.PathLike[str],
    running: ProxyConfig,
    *,
    source: str | None = None,
    adjust: Callable[[ProxyConfig], ProxyConfig] | None = None,
) -> LoadedConfig:
    """Everything a reload checks before it applies anything.

    Args:
        path: The file to read.
        running: The configuration in use (its listeners must not change).
        source: The name used in messages (default: ``path``).
        adjust: Applied to the parsed configuration, e.g. command-line overrides that must
            keep winning over the file.

    Raises:
        ConfigError: The reload must be refused; the one line says why.
    """
    loaded = load_config_file(path, source=source)
    config = loaded.config if adjust is None else adjust(loaded.config)
    check_same_listeners(running, config, loaded.source)
    check_loadable(config)
    return LoadedConfig(text=loaded.text, config=config, source=loaded.source)


class Reloader:
    """Re-reads one configuration file on request and applies it to a running core.

    The server script makes one, passes it to ``serve_trio`` / ``serve_asyncio``
    (``reloader=``), which call :meth:`attach` once their runner exists, and calls
    :meth:`reload` on SIGHUP.

    Args:
        path: The configuration file to re-read.
        loaded: What was read from it at start-up (its text and validated configuration).
        adjust: Applied to each newly parsed configuration (command-line overrides).
        announce_restart_only: Log a warning when ``[server]`` settings changed; a worker
            leaves that to its supervisor.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        loaded: LoadedConfig,
        *,
        adjust: Callable[[ProxyConfig], ProxyConfig] | None = None,
        announce_restart_only: bool = True,
    ) -> None:
        self._path = path
        self._source = loaded.source
        self._text = loaded.text
        self._config = loaded.config if adjust is None else adjust(loaded.config)
        self._adjust = adjust
        self._announce = announce_restart_only
        self._target: Reloadable | None = None
        self._server_contexts: list[ssl.SSLContext | None] = []

    @property
    def config(self) -> ProxyConfig:
        """The configuration in use: the start-up one until a reload is applied."""
        return self._config

    @property
    def source(self) -> str:
        """The configuration file's name in messages."""
        return self._source

    def attach(
        self, target: Reloadable, server_contexts: Sequence[ssl.SSLContext | None] = ()
    ) -> None:
        """Connect the running server: its runner and its listeners' live TLS contexts.

        If the file changed between start-up and now (a reload asked for while the server
        was still starting is otherwise lost), it is reloaded at once.

        Args:
            target: The runner of the core.
            server_contexts: One entry per listener, ``None`` for plain TCP ones.
        """
        self._target = target
        self._server_contexts = list(server_contexts)
        with contextlib.suppress(OSError, UnicodeDecodeError):
            if Path(self._path).read_text(encoding="utf-8") != self._text:
                self.reload()

    def reload(self) -> bool:
        """Re-read the file and apply it, or log why not.

        Returns:
            Whether the new configuration was applied.
        """
        if self._target is None:
            logger.warning("reload asked for before the server started: it is applied on start")
            return False
        try:
            loaded = validate_reload(
                self._path, self._config, source=self._source, adjust=self._adjust
            )
        except ConfigError as error:
            logger.error("%s", error)
            logger.warning("%s", REFUSED)
            return False
        if self._announce:
            for key in restart_only_changes(self._config, loaded.config):
                logger.warning("%s changed: it takes effect at the next start", key)
        self._reload_certificates(loaded.config)
        self._target.reload(loaded.config, text=loaded.text, source=loaded.source)
        self._config = loaded.config
        self._text = loaded.text
        logger.info("configuration reloaded from %s", self._source)
        return True

    def _reload_certificates(self, config: ProxyConfig) -> None:
        pairs = zip(config.listeners, self._server_contexts, strict=False)
        for index, (listener, context) in enumerate(pairs):
            if context is None or listener.certificate is None or listener.private_key is None:
                continue
            try:
                load_listener_files(
                    context,
                    listener.certificate,
                    listener.private_key,
                    source=config.source,
                    index=index,
                )
            except ConfigError as error:
                # validate_reload loaded the same files a moment ago; they changed since.
                logger.warning("%s; keeping the previous certificate", error)


# -- the pid file and ``sansproxy reload`` ------------------------------------------------


def write_pid_file(path: str | os.PathLike[str]) -> None:
    """Write this process's id to ``path`` (replaced atomically, so readers never see half).

    Raises:
        OSError: The file cannot be written.
    """
    target = Path(path)
    partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    partial.write_text(f"{os.getpid()}\n", encoding="ascii")
    partial.replace(target)


def remove_pid_file(path: str | os.PathLike[str]) -> None:
    """Remove ``path`` if it still names this process (a newer server may own it now)."""
    with contextlib.suppress(OSError, ValueError):
        if read_pid_file(path) == os.getpid():
            Path(path).unlink()


def read_pid_file(path: str | os.PathLike[str]) -> int:
    """The process id in a pid file.

    Raises:
        OSError: The file cannot be read.
        ValueError: It does not hold a positive process id.
    """
    text = Path(path).read_text(encoding="ascii").strip()
    if not text.isdigit() or int(text) <= 0:
        raise ValueError(f"{path}: not a process id: {text[:40]!r}")
    return int(text)


def signal_reload(pid_file: str | os.PathLike[str]) -> int:
    """Send SIGHUP to the server whose pid ``pid_file`` holds.

    Returns:
        The process id signalled.

    Raises:
        OSError: The pid file cannot be read, or the process does not exist (stale file)
            or belongs to another user.
        ValueError: The pid file is malformed.
    """
    pid = read_pid_file(pid_file)
    os.kill(pid, signal.SIGHUP)
    return pid
