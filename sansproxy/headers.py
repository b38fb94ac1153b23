"""Header rules of a forwarding proxy: hop-by-hop removal, forwarding and Via.

Pure functions over header lists in the shape h11 hands them to a receiver:
``list[tuple[bytes, bytes]]`` with lower-case names and values stripped of
surrounding whitespace. Outputs have the same shape.

What happens to a message crossing the proxy:

* **Hop-by-hop fields are removed** in both directions (RFC 9110 §7.6.1):
  ``Connection`` and every field it names, plus the fields that are
  hop-by-hop by definition whether named or not (§7.6.1 lists most): ``Keep-Alive``,
  ``Proxy-Connection`` (a non-standard relic, RFC 9112 appendix C.2.2),
  ``TE`` (RFC 9110 §10.1.4), ``Transfer-Encoding`` (RFC 9112 §6.1; the core
  frames each side itself), ``Upgrade`` (RFC 9110 §7.8), ``Proxy-Authenticate``
  and ``Proxy-Authorization`` (RFC 9110 §11.7; they are meant for a proxy)
  and ``HTTP2-Settings`` (RFC 7540 §3.2.1). ``Trailer`` is end to end and kept.
* ``TE: trailers`` is re-sent upstream when the client offered it, because
  gRPC-style backends only send trailers to a peer that asked for them. No
  ``Connection: te`` goes with it: HTTP/2 forbids ``Connection`` but allows
  exactly this ``TE`` (RFC 9113 §8.2.2), and the backend's version is not known here.
* ``Upgrade`` survives, with a fresh ``Connection: upgrade``, only when the core
  decided to tunnel the exchange (``upgrade=True``).
* ``Expect`` is dropped upstream: the core, as the server of the client's
  connection, answers ``100-continue`` itself (RFC 9110 §10.1.1) once it is
  ready for the body, so a backend that honoured the expectation would only
  send a 100 the proxy has no use for, or wait for a body that is already coming.
* ``X-Forwarded-For/-Proto/-Host`` and ``Forwarded`` (RFC 7239) tell the
  backend who the client was. Values sent by a client outside
  ``trusted_proxies`` are lies until proven otherwise and are replaced; values
  from a trusted proxy are extended (its ``-Proto``/``-Host`` kept as they are).
  An IPv4-mapped IPv6 peer (``::ffff:192.0.2.1``, from a dual-stack socket) is
  treated and written as its IPv4 address; a peer that is no IP at all is
  written as ``unknown`` (RFC 7239 §6.2).
* ``Host`` is replaced in place by an upstream's ``host_header``, or added first
  if missing (RFC 9112 §3.2); the original travels in the forwarding fields.
* ``Via`` (RFC 9110 §7.6.3) records this hop in both directions.
* Backend identification (``Server``, ``X-Powered-By`` and any configured
  names) is hidden from clients, and ``Server`` optionally replaced.

Fields this module adds or rebuilds from several lines (``te``,
``connection``, ``via``, ``x-forwarded-*``, ``forwarded``, ``server``) go
after the remaining fields, one line each; everything else keeps its order
and repetitions (``Set-Cookie``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from sansproxy.config import HeaderPolicy

__all__ = [
    "HOP_BY_HOP",
    "HeaderRules",
    "Headers",
    "connection_tokens",
    "is_upgrade",
    "wants_trailers",
]

Headers = list[tuple[bytes, bytes]]
"""A header list: lower-case names, values without surrounding whitespace."""

HOP_BY_HOP: frozenset[bytes] = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"http2-settings",
    }
)
"""Fields never forwarded as received, whether or not ``Connection`` names them."""

_PROTECTED: frozenset[bytes] = frozenset({b"content-length", b"host"})
"""Fields a ``Connection`` option (or the hide list) can never remove.

``Connection: content-length`` or ``Connection: host`` is a known attack, not a
real use: a peer asks the proxy to strip the field that frames the body or
routes the request, so that the next hop sees a different message (request
smuggling, cache poisoning, access-control bypass). Both fields are end to end
by definition (RFC 9110 §8.6, §7.2), so such an option is ignored.
"""

_FORWARDING: frozenset[bytes] = frozenset(
    {b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"forwarded"}
)
_REQUEST_SPECIAL: frozenset[bytes] = _FORWARDING | {b"host", b"via", b"upgrade"}
"""Request fields the main loop looks at; all others are copied without a second look."""
_ALWAYS_HIDDEN: frozenset[bytes] = frozenset({b"server", b"x-powered-by"})

_TCHAR = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
"""RFC 9110 §5.6.2 token characters."""

_OWS = b" \t"
_PROTOS = {"http": b"http", "https": b"https"}
_CLIENT_CACHE_SIZE = 4096


def connection_tokens(headers: Iterable[tuple[bytes, bytes]]) -> set[bytes]:
    """Return the lower-cased options of every ``Connection`` field (RFC 9110 §7.6.1).

    Empty list elements (``close,,x-foo``) are skipped, as §5.6.1 allows.
    """
    tokens: set[bytes] = set()
    for name, value in headers:
        if name == b"connection":
            _add_tokens(tokens, value)
    return tokens


def wants_trailers(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """Whether a request's ``TE`` field offers ``trailers`` (RFC 9110 §10.1.4)."""
    return any(name == b"te" and _te_has_trailers(value) for name, value in headers)


def is_upgrade(headers: Iterable[tuple[bytes, bytes]]) -> bool:
    """Whether a message asks for a protocol switch the proxy may relay (RFC 9110 §7.8).

    Both parts are needed: an ``upgrade`` option in ``Connection`` and an
    ``Upgrade`` field. A lone ``Upgrade`` is an ordinary hop-by-hop leftover.
    An offer of ``h2c`` is never relayed (the request goes on as an ordinary one):
    RFC 9113 §3.1 deprecates that upgrade, and a backend that accepted it would be
    spoken to in HTTP/2 straight past the proxy's routes and rules.
    """
    headers = list(headers)
    offers: set[bytes] = set()
    for name, value in headers:
        if name == b"upgrade":
            for part in value.split(b","):
                protocol = part.strip(_OWS).lower()
                offers.add(protocol.split(b"/", 1)[0])
    if not offers or b"h2c" in offers:
        return False
    return b"upgrade" in connection_tokens(headers)


def _add_tokens(tokens: set[bytes], value: bytes) -> None:
    for part in value.split(b","):
        token = part.strip(_OWS)
        if token:
            tokens.add(token.lower())


def _te_has_trailers(value: bytes) -> bool:
    for part in value.split(b","):
        # t-codings = "trailers" / ( transfer-coding [ weight ] ); be lenient about a weight.
        if part.split(b";", 1)[0].strip(_OWS).lower() == b"trailers":
            return True
    return False


def _is_token(value: bytes) -> bool:
    # Deleting every token character leaves nothing exactly when value is a token.
    return bool(value) and not value.translate(None, _TCHAR)


def _quote(value: bytes) -> bytes:
    """Return ``value`` as an RFC 7239 §4 value: a token, or else a quoted-string."""
    if _is_token(value):
        return value
    return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def _join(values: list[bytes]) -> bytes:
    """Join list-field values, skipping empty ones (RFC 9110 §5.3 combining)."""
    if len(values) == 1:
        return values[0]
    return b", ".join([value for value in values if value])


@dataclass(frozen=True, slots=True, kw_only=True)
class _Client:
    """What the forwarding fields need to know about one client address."""

    trusted: bool
    xff: bytes
    """The address as written in ``X-Forwarded-For``."""
    node: bytes
    """The address as an RFC 7239 §6 node (IPv6 quoted and bracketed)."""


class HeaderRules:
    """The header rules of one configuration, compiled once and applied per message.

    Args:
        policy: the ``[headers]`` section of the configuration.

    Raises:
        ValueError: a value of ``policy`` cannot be used (a malformed network in
            ``trusted_proxies``, a Via pseudonym that is not a token, a Server
            value with control characters, a hidden name that is not a token).
            The configuration parser is expected to reject these first.
    """

    __slots__ = (
        "_clients",
        "_forwarded",
        "_hidden",
        "_networks",
        "_request_drop",
        "_request_drop_untrusted",
        "_response_drop",
        "_server",
        "_via",
        "_via_by_version",
        "_x_forwarded",
    )

    def __init__(self, policy: HeaderPolicy) -> None:
        try:
            self._networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = tuple(
                ipaddress.ip_network(network, strict=False) for network in policy.trusted_proxies
            )
        except ValueError as exc:
            raise ValueError(f"trusted_proxies: {exc}") from None
        self._x_forwarded = policy.x_forwarded
        self._forwarded = policy.forwarded

        self._via: bytes | None = None
        if policy.via is not None:
            via = policy.via.encode("ascii", "replace")
            # received-by = pseudonym / uri-host [ ":" port ]  (RFC 9110 §7.6.3)
            if not via or via.translate(None, _TCHAR + b":[]"):
                raise ValueError(f"via: not a token or host[:port]: {policy.via!r}")
            self._via = via
        self._via_by_version: dict[bytes, bytes] = {}

        self._server: bytes | None = None
        if policy.server is not None:
            server = policy.server.encode("ascii", "replace")
            if (
                not server
                or server != server.strip(_OWS)
                or not all(0x20 <= byte < 0x7F or byte == 0x09 for byte in server)
            ):
                raise ValueError(f"server: not a printable field value: {policy.server!r}")
            self._server = server

        hidden = set(_ALWAYS_HIDDEN)
        for name in policy.hide_response_headers:
            encoded = name.lower().encode("ascii", "replace")
            if not _is_token(encoded):
                raise ValueError(f"hide_response_headers: not a field name: {name!r}")
            hidden.add(encoded)
        # Hiding the framing field would change the meaning of the response.
        self._hidden = frozenset(hidden - _PROTECTED)

        # "close" is a reserved field name (RFC 9110 §16.3.2.1), never a real field; having it
        # in the base sets spares building a new set for every "Connection: close".
        self._request_drop = HOP_BY_HOP | {b"expect", b"close"}
        self._request_drop_untrusted = self._request_drop | _FORWARDING
        self._response_drop = HOP_BY_HOP | self._hidden | {b"close"}
        self._clients: dict[str, _Client] = {}

    # -- requests ---------------------------------------------------------

    def upstream_request(
        self,
        headers: list[tuple[bytes, bytes]],
        *,
        client_ip: str,
        proto: str,
        http_version: bytes,
        host_override: bytes | None,
        upgrade: bool,
    ) -> list[tuple[bytes, bytes]]:
        """Return the fields to send to the backend for a client's request.

        Args:
            headers: the request fields as received from the client.
            client_ip: the address of the client's connection (``"::1"``, ``"10.0.0.7"``).
            proto: ``"http"`` or ``"https"``: how the client reached the proxy.
            http_version: the client's HTTP version (``b"1.1"``), for Via.
            host_override: when given, the Host sent upstream; the original
                still goes out in ``X-Forwarded-Host`` and ``Forwarded``.
            upgrade: the core tunnels this exchange, so ``Upgrade`` is kept.

        Returns:
            A new list; ``headers`` is not modified.
        """
        tokens: set[bytes] = set()
        trailers = False
        for name, value in headers:
            if name == b"connection":
                _add_tokens(tokens, value)
            elif name == b"te" and not trailers:
                trailers = _te_has_trailers(value)
        client = self._client(client_ip)
        # An untrusted client's forwarding fields are discarded even when the proxy
        # does not send its own: a backend must not mistake them for ours.
        # A trusted proxy's fields pass through, and are extended by enabled families.
        base = self._request_drop if client.trusted else self._request_drop_untrusted
        drop = self._drop_set(base, tokens, upgrade)

        out: Headers = []
        host: bytes | None = None
        via: list[bytes] = []
        xff: list[bytes] = []
        forwarded: list[bytes] = []
        upgrades = False
        proto_seen = False
        host_seen = False
        collect_xff = client.trusted and self._x_forwarded
        collect_forwarded = client.trusted and self._forwarded
        for item in headers:
            name, value = item
            if name in drop:
                continue
            if name not in _REQUEST_SPECIAL:
                out.append(item)
            elif name == b"host":
                if host is None:
                    host = value
                    out.append(item if host_override is None else (b"host", host_override))
                elif host_override is None:
                    out.append(item)
            elif name == b"via" and self._via is not None:
                via.append(value)
            elif name == b"x-forwarded-for" and collect_xff:
                xff.append(value)
            elif name == b"forwarded" and collect_forwarded:
                forwarded.append(value)
            else:
                if name == b"upgrade":
                    upgrades = True
                elif name == b"x-forwarded-proto":
                    proto_seen = True
                elif name == b"x-forwarded-host":
                    host_seen = True
                out.append(item)

        if host is None and host_override is not None:
            # RFC 9112 §3.2: Host comes first.
            out.insert(0, (b"host", host_override))
        if trailers:
            out.append((b"te", b"trailers"))
        if upgrades:
            out.append((b"connection", b"upgrade"))
        if self._via is not None:
            via.append(self._via_entry(self._via, http_version))
            out.append((b"via", _join(via)))
        proto_bytes = _PROTOS.get(proto) or proto.encode("ascii")
        if self._x_forwarded:
            xff.append(client.xff)
            out.append((b"x-forwarded-for", _join(xff)))
            if not proto_seen:
                out.append((b"x-forwarded-proto", proto_bytes))
            if host is not None and not host_seen:
                out.append((b"x-forwarded-host", host))
        if self._forwarded:
            element = b"for=" + client.node + b";proto=" + _quote(proto_bytes)
            if host is not None:
                element += b";host=" + _quote(host)
            forwarded.append(element)
            out.append((b"forwarded", _join(forwarded)))
        return out

    # -- responses --------------------------------------------------------

    def client_response(
        self,
        headers: list[tuple[bytes, bytes]],
        *,
        http_version: bytes,
        upgrade: bool,
    ) -> list[tuple[bytes, bytes]]:
        """Return the fields to send to the client for a backend's response.

        Args:
            headers: the response fields as received from the backend.
            http_version: the backend's HTTP version (``b"1.1"``), for Via.
            upgrade: the core accepted the backend's switch (101), so
                ``Upgrade`` is kept.

        Returns:
            A new list; ``headers`` is not modified.
        """
        tokens: set[bytes] = set()
        for name, value in headers:
            if name == b"connection":
                _add_tokens(tokens, value)
        drop = self._drop_set(self._response_drop, tokens, upgrade)

        out: Headers = []
        via: list[bytes] = []
        upgrades = False
        for item in headers:
            name = item[0]
            if name in drop:
                continue
            if name == b"via" and self._via is not None:
                via.append(item[1])
                continue
            if name == b"upgrade":
                upgrades = True
            out.append(item)

        if upgrades:
            out.append((b"connection", b"upgrade"))
        if self._via is not None:
            via.append(self._via_entry(self._via, http_version))
            out.append((b"via", _join(via)))
        if self._server is not None:
            out.append((b"server", self._server))
        return out

    # -- helpers ----------------------------------------------------------

    @staticmethod
    def _drop_set(base: frozenset[bytes], tokens: set[bytes], upgrade: bool) -> frozenset[bytes]:
        """The names to remove: ``base``, plus ``Connection`` options, minus what must stay."""
        if tokens and not tokens <= base:
            extra = tokens - base - _PROTECTED
            if extra:
                base = base | extra
        drop = base
        if upgrade:
            drop = drop - {b"upgrade"}
        return drop

    def _via_entry(self, pseudonym: bytes, http_version: bytes) -> bytes:
        """``<received-protocol> <received-by>``; the protocol name HTTP is omitted (§7.6.3)."""
        entry = self._via_by_version.get(http_version)
        if entry is None:
            version = http_version.strip()
            if version.upper().startswith(b"HTTP/"):
                version = version[5:]
            if not _is_token(version):
                version = b"1.1"
            entry = version + b" " + pseudonym
            if len(self._via_by_version) < 16:
                self._via_by_version[http_version] = entry
        return entry

    def _client(self, client_ip: str) -> _Client:
        """Classify and format a client address, memoised (clients repeat a lot)."""
        client = self._clients.get(client_ip)
        if client is not None:
            return client
        try:
            address = ipaddress.ip_address(client_ip)
        except ValueError:
            # Not an IP (a Unix socket path, an empty string): RFC 7239 §6.2 "unknown".
            client = _Client(trusted=False, xff=b"unknown", node=b"unknown")
        else:
            # A dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d. The client is
            # an IPv4 one: trust rules and backends expect the IPv4 address.
            if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
                address = address.ipv4_mapped
            trusted = any(address in network for network in self._networks)
            text = str(address).encode("ascii")
            node = b'"[' + text + b']"' if address.version == 6 else text
            client = _Client(trusted=trusted, xff=text, node=node)
        if len(self._clients) >= _CLIENT_CACHE_SIZE:
            self._clients.clear()
        self._clients[client_ip] = client
        return client
