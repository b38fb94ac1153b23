"""A route's own header rules: set, add and remove fields of requests and responses.

The operator's version of nginx's ``proxy_set_header`` / ``add_header`` and Caddy's
``header_up`` / ``header_down``. Each route has one :class:`HeaderEdits` for the request
that goes to the backend and one for the response that comes back from it; they run after
the proxy's own rules (hop-by-hop removal, forwarding fields, Via, hiding the backend), so
an edit sees, and may change, what those added: ``remove = ["x-forwarded-for"]`` keeps
it from the backend. In each, in this order:

1. ``remove``: every field of these names goes;
2. ``set``: every field of the name goes, then one line with the value is added;
3. ``add``: one more line is added, whatever is there already (``Set-Cookie``, ``Link``).

Values may use :data:`VARIABLES`, written ``{client_ip}``; anything else in braces was
refused when the configuration was read. A request ID is not among them: the proxy does
not make one yet.

Fields that frame or route the message (``Content-Length``, ``Transfer-Encoding``,
``Host``, ``Connection`` and the other hop-by-hop fields) cannot be edited: the
configuration refuses them (:data:`UNEDITABLE`), because the proxy frames each side
itself, and a value set here could not be true of the bytes it sends.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["UNEDITABLE", "VARIABLES", "HeaderEdits", "ValueTemplate", "variables_for"]

Headers = list[tuple[bytes, bytes]]

VARIABLES: Mapping[str, str] = {
    "client_ip": "the client's IP address (of the connection, as X-Forwarded-For adds it)",
    "client_port": "the client's port",
    "scheme": "http or https: how the client reached the proxy",
    "host": "the Host the client asked for (before a host_header rewrite)",
}
"""The names a value may use in braces, and what each stands for."""

UNEDITABLE: frozenset[bytes] = frozenset(
    {
        # Hop-by-hop (sansproxy.headers.HOP_BY_HOP; a test keeps the two in step).
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"http2-settings",
        # Framing and routing: the proxy writes these to match what it sends.
        b"content-length",
        b"trailer",
        b"host",
        b"expect",
    }
)
"""Fields no route may set, add or remove: framing, routing and hop-by-hop fields.

(``sansproxy.headers`` is not imported for its list: the configuration model imports this
module, and ``sansproxy.headers`` imports the configuration.)"""

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


@dataclass(frozen=True, slots=True)
class ValueTemplate:
    """A field value with variables: literal pieces and variable names, alternating.

    ``parts[0]``, ``parts[2]``... are literal bytes; ``parts[1]``, ``parts[3]``... are
    variable names (as bytes), so a value without variables is one literal.
    """

    parts: tuple[bytes, ...]

    @classmethod
    def parse(cls, text: str) -> ValueTemplate:
        """Split ``text`` at its ``{name}`` placeholders (checked by the caller)."""
        return cls(tuple(piece.encode("ascii") for piece in _PLACEHOLDER.split(text)))

    def render(self, variables: Mapping[bytes, bytes]) -> bytes:
        """The value with each variable replaced."""
        parts = self.parts
        if len(parts) == 1:
            return parts[0]
        return b"".join(
            part if index % 2 == 0 else variables[part] for index, part in enumerate(parts)
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class HeaderEdits:
    """What one route does to the fields of one direction (see the module docs)."""

    remove: frozenset[bytes] = frozenset()
    set: tuple[tuple[bytes, ValueTemplate], ...] = ()
    add: tuple[tuple[bytes, ValueTemplate], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.remove or self.set or self.add)

    def apply(self, headers: Headers, variables: Mapping[bytes, bytes]) -> Headers:
        """``headers`` edited: removed, then set, then added (names are lower case)."""
        gone = self.remove | {name for name, _ in self.set}
        edited = [field for field in headers if field[0] not in gone]
        edited.extend((name, value.render(variables)) for name, value in self.set)
        edited.extend((name, value.render(variables)) for name, value in self.add)
        return edited


def variables_for(peer: tuple[str, int], *, tls: bool, host: bytes) -> dict[bytes, bytes]:
    """The values of :data:`VARIABLES` for one exchange."""
    return {
        b"client_ip": peer[0].encode("ascii", "replace"),
        b"client_port": str(peer[1]).encode("ascii"),
        b"scheme": b"https" if tls else b"http",
        b"host": host,
    }
