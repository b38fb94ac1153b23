"""The short forms quick mode accepts on the command line, as Caddy users type them.

``sansproxy --listen :8080 --upstream localhost:9000`` should just work, as
``caddy reverse-proxy --from :8080 --to localhost:9000`` does. These functions turn the
short forms into the full ones a configuration file uses, so that quick mode and the TOML
it is recorded as (``sansproxy_io.record.quick_config_toml``) mean the same thing:

- a listen address without a host, ``:8080`` or ``8080``, listens on every IPv4
  interface (``0.0.0.0:8080``), as Go's ``:8080`` does; ``[::]:8080`` is the IPv6 form;
- an upstream without a scheme, ``127.0.0.1:9000`` or ``localhost:9000``, is ``http://``.

Anything else is passed on unchanged, to be checked (and, if wrong, reported) as usual.
"""

from __future__ import annotations

import re

__all__ = ["ALL_INTERFACES", "quick_listen_address", "quick_upstream_url"]

ALL_INTERFACES = "0.0.0.0"
"""The host a listen address without one gets."""

_PORT_ONLY = re.compile(r":?[0-9]+")


def quick_listen_address(text: str) -> str:
    """``text`` as ``host:port``: a bare port (``8080``, ``:8080``) gets every interface."""
    if _PORT_ONLY.fullmatch(text):
        return f"{ALL_INTERFACES}:{text.removeprefix(':')}"
    return text


def quick_upstream_url(text: str) -> str:
    """``text`` as a URL: ``host:port`` without a scheme is taken as ``http://host:port``."""
    if "://" in text or not text:
        return text
    return f"http://{text}"
