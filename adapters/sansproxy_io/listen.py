"""Listening sockets: bind them, name them, and say so in the same words on every loop.

An adapter whose event loop cannot bind by itself the way trio's ``open_tcp_listeners``
does (asyncio, when it must hand ``create_server`` ready sockets) uses :func:`bind_listener`:
one socket per address the host name resolves to, ``SO_REUSEADDR``, IPv6 sockets
IPv6-only, port 0 for an ephemeral port. :func:`listening_message` is the
``listening on http://HOST:PORT`` line the tests and operators read, whatever the loop.
"""

from __future__ import annotations

import contextlib
import socket
from typing import Final

__all__ = [
    "LISTEN_BACKLOG",
    "Address",
    "ListenError",
    "bind_listener",
    "bracketed",
    "listening_message",
    "socket_address",
]

Address = tuple[str, int]

LISTEN_BACKLOG: Final = 0xFFFF
"""Accept queue length asked for; the kernel caps it at ``net.core.somaxconn``."""


class ListenError(OSError):
    """A listening address could not be bound (in use, not local, no permission)."""


def bind_listener(host: str, port: int) -> list[socket.socket]:
    """Bind non-blocking TCP sockets for ``host:port`` (not yet listening).

    Every address ``host`` resolves to gets its own socket; with ``port`` 0 each gets its
    own ephemeral port, as with trio.

    Raises:
        ListenError: The name does not resolve or an address cannot be bound.
    """
    where = f"{bracketed(host)}:{port}"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise ListenError(exc.errno, f"cannot listen on {where}: {exc.strerror or exc}") from exc
    sockets: list[socket.socket] = []
    seen: set[tuple[int, object]] = set()
    try:
        for family, kind, proto, _, sockaddr in infos:
            if (family, sockaddr) in seen:
                continue
            seen.add((family, sockaddr))
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                # One socket per family, as trio does: "::" must not also grab IPv4.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(sockaddr)
            except OSError as exc:
                raise ListenError(
                    exc.errno, f"cannot listen on {where}: {exc.strerror or exc}"
                ) from exc
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.close()
        raise
    return sockets


def socket_address(sockname: object) -> Address:
    """``(host, port)`` of an IP socket address (IPv6 flow info and scope dropped).

    Raises:
        OSError: Not an IP socket address.
    """
    # AF_INET gives (host, port); AF_INET6 gives (host, port, flowinfo, scope_id).
    if not isinstance(sockname, tuple) or len(sockname) < 2:
        raise OSError(f"not an IP socket address: {sockname!r}")
    return (str(sockname[0]), int(sockname[1]))


def bracketed(host: str) -> str:
    """``host`` as it goes in a URL: IPv6 addresses in brackets."""
    return f"[{host}]" if ":" in host else host


def listening_message(tls: bool, address: Address, *, verb: str = "listening on") -> str:
    """The start-up line for one bound socket: ``listening on http://127.0.0.1:8080``.

    A worker serving sockets its supervisor bound says ``accepting on`` instead.
    """
    scheme = "https" if tls else "http"
    return f"{verb} {scheme}://{bracketed(address[0])}:{address[1]}"
