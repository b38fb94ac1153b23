"""TLS contexts for listeners and upstreams, and the facts a handshake leaves behind.

Server side: one :class:`ssl.SSLContext` per TLS listener (its certificate chain and key,
TLS 1.2 or newer, the ALPN offer of the listener's ``protocols``: ``h2`` then ``http/1.1``
by default). The SNI name a client asked for is only visible in the context's
``sni_callback``, which runs synchronously inside the task doing the handshake, so it is
handed back through a context variable (:func:`capture_sni`).

Client side: contexts keyed by (verify, CA file, ALPN). Verification is on unless an upstream
says ``tls_verify = false``; then a warning is logged once per upstream at start-up.
Nothing here touches a socket.
"""

from __future__ import annotations

import contextvars
import logging
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from sansproxy.commands import UpstreamTls
from sansproxy.config import ProxyConfig
from sansproxy.errors import ConfigError
from sansproxy.events import TlsInfo
from sansproxy_io.tls_files import load_listener_files

__all__ = [
    "ClientContexts",
    "HandshakeFacts",
    "capture_sni",
    "server_context",
    "server_contexts",
    "tls_info",
    "warn_unverified_upstreams",
]

_sni_box: contextvars.ContextVar[list[str]] = contextvars.ContextVar("sansproxy_sni")


def server_context(config: ProxyConfig, index: int) -> ssl.SSLContext:
    """Build the context that terminates TLS for listener ``index`` of ``config``.

    Raises:
        ConfigError: The certificate or key cannot be loaded: one line naming
            ``config.source``, the key (``listeners[0].private_key``) and the problem
            in plain words (``sansproxy_io.tls_files``).
        ValueError: The listener has no certificate (a caller bug).
    """
    listener = config.listeners[index]
    if listener.certificate is None or listener.private_key is None:
        raise ValueError("listener has no certificate")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(list(listener.alpn))
    load_listener_files(
        context, listener.certificate, listener.private_key, source=config.source, index=index
    )
    context.sni_callback = _remember_sni
    return context


def server_contexts(config: ProxyConfig) -> list[ssl.SSLContext | None]:
    """One context per listener of ``config``, ``None`` for the cleartext ones.

    Raises:
        ConfigError: As :func:`server_context`.
    """
    return [
        server_context(config, index) if listener.tls else None
        for index, listener in enumerate(config.listeners)
    ]


@contextmanager
def capture_sni() -> Iterator[list[str]]:
    """Collect the SNI name of handshakes done by the current task inside the block.

    Yields:
        A list that holds the server name once the handshake has seen one.
    """
    box: list[str] = []
    token = _sni_box.set(box)
    try:
        yield box
    finally:
        _sni_box.reset(token)


def _remember_sni(
    ssl_object: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, context: ssl.SSLContext
) -> None:
    box = _sni_box.get(None)
    if box is not None and server_name is not None:
        box.append(server_name)


class HandshakeFacts(Protocol):
    """What a finished TLS connection can tell (``ssl.SSLObject``, ``trio.SSLStream``)."""

    def selected_alpn_protocol(self) -> str | None:
        """The protocol ALPN agreed on, if any."""

    def version(self) -> str | None:
        """The TLS version in use."""


def tls_info(ssl_object: HandshakeFacts, server_name: str | None) -> TlsInfo:
    """What the core learns from a finished handshake."""
    return TlsInfo(
        server_name=server_name,
        alpn=ssl_object.selected_alpn_protocol(),
        version=ssl_object.version(),
    )


class ClientContexts:
    """Client contexts for upstream TLS, built once per distinct setting."""

    def __init__(self) -> None:
        self._contexts: dict[tuple[bool, str | None, tuple[str, ...]], ssl.SSLContext] = {}

    def preload(self, config: ProxyConfig) -> None:
        """Build the contexts the configured upstreams need, so bad CA files fail at start-up.

        Raises:
            ConfigError: A ``ca_file`` cannot be loaded.
        """
        for upstream in config.upstreams.values():
            if any(server.tls for server in upstream.servers):
                try:
                    self.get(
                        UpstreamTls(
                            server_name=upstream.server_name or "",
                            verify=upstream.tls_verify,
                            ca_file=upstream.ca_file,
                        )
                    )
                except (OSError, ssl.SSLError) as exc:
                    raise ConfigError(
                        upstream.ca_file or "tls",
                        f"upstreams.{upstream.name}.ca_file",
                        f"cannot load CA certificates: {exc}",
                    ) from exc

    def get(self, tls: UpstreamTls) -> ssl.SSLContext:
        """The context for ``tls``; pass ``tls.server_name`` as the handshake's server name.

        Raises:
            OSError, ssl.SSLError: The CA file cannot be loaded.
        """
        key = (tls.verify, tls.ca_file, tls.alpn)
        context = self._contexts.get(key)
        if context is None:
            context = _client_context(tls)
            self._contexts[key] = context
        return context


def _client_context(tls: UpstreamTls) -> ssl.SSLContext:
    if tls.verify:
        # The system store unless a CA file is named; check_hostname is on by default.
        context = ssl.create_default_context(cafile=tls.ca_file)
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.alpn:
        context.set_alpn_protocols(list(tls.alpn))
    return context


def warn_unverified_upstreams(config: ProxyConfig, log: logging.Logger) -> None:
    """Log one WARNING per upstream that talks TLS without verifying certificates."""
    for name, upstream in config.upstreams.items():
        if not upstream.tls_verify and any(server.tls for server in upstream.servers):
            log.warning("upstream %s: TLS certificates are NOT verified (tls_verify = false)", name)
