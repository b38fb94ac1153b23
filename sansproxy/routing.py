"""Which route a request takes: path normalisation and host / path / method / header matching.

Pure functions and one immutable table. The proxy normalises the request path
once with :func:`normalise_path`, routes on the result, and forwards that same
result upstream, so the backend always sees the path the routing decision was
made on (a client cannot reach ``/admin`` through ``/public/%2e%2e/admin`` by
having the proxy route one spelling and the backend resolve another).

Path normalisation (:func:`normalise_path`), in this order:

1. The path must start with ``/`` and consist of visible ASCII only; a raw
   ``?`` or ``#`` is refused too (the query is split off before, and a fragment
   never belongs in a request target, RFC 9112 §3.2). Invalid means ``None``,
   which the proxy answers with 400.
2. Every ``%`` must start a ``%HH`` escape. ``%HH`` of an unreserved character
   (``A-Z a-z 0-9 - . _ ~``, RFC 3986 §2.3) is decoded; any other escape is kept
   with upper-case hex, so ``%2f`` becomes ``%2F`` and never a path separator.
   ``%00`` is refused. A backslash is an ordinary byte.
3. With ``merge_slashes`` (the default), runs of ``/`` become one.
4. Dot segments are removed as in RFC 3986 §5.2.4, after decoding: ``/a/%2e%2e/b``
   is ``/b``, ``/..`` is ``/``, and a trailing slash is kept.

Route evaluation order (:meth:`RouteTable.find`):

1. Host: the Host value is lower-cased and its port removed (IPv6 literal
   ``[::1]:80`` -> ``[::1]``; a trailing dot removed). The most specific host
   group that has at least one route wins: an exact host name, else the longest
   matching wildcard suffix, else routes with no host constraint. Once a host
   group is chosen, only its routes are considered (like nginx server blocks /
   Envoy virtual hosts): no fall-through to a less specific host group.
2. Within the group: exact ``path`` routes first, then the longest matching
   ``path_prefix``, then ``path_regex`` routes in configuration order, then
   routes with no path constraint. Routes whose method or header conditions
   fail are skipped (the next candidate by this order is tried). Among
   otherwise equal candidates, more conditions (methods + headers) first, then
   configuration order.
3. Nothing matches -> None (the proxy answers 404).

Details of the conditions:

* A wildcard host ``*.example.com`` matches any depth of subdomain
  (``a.example.com``, ``a.b.example.com``) but not ``example.com`` itself.
* A ``path_prefix`` that ends with ``/`` is a plain string prefix; any other
  prefix is segment-aware: ``/api`` matches ``/api`` and ``/api/...`` but not
  ``/apix``.
* A ``path_regex`` is anchored at the start of the path but not at its end
  (Python's ``re.match``): ``/img/`` matches ``/img/a.png``; write ``$`` to pin
  the end. The path it sees is the normalised one, and never holds a newline.
  Routes with the same pattern count as one regex, placed where it first appears.
* ``methods`` compare exactly: HTTP methods are case-sensitive (RFC 9110 §9.1).
* ``headers`` pairs must all be present; a pair is met when any field line of
  that name carries exactly that value (as a whole; lists are not split). Values
  are compared as UTF-8 bytes.
* "More conditions" counts a non-empty ``methods`` as one, plus one per header pair.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = [
    "RouteMatch",
    "RouteTable",
    "normalise_host",
    "normalise_path",
    "rewrite_path",
    "split_target",
]

T = TypeVar("T")

_HEX = b"0123456789abcdefABCDEF"
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
# Visible ASCII minus the two delimiters that can never be part of a path.
_INVALID_PATH_BYTE = re.compile(rb"[^\x21-\x7e]|[?#]")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HOST = re.compile(r"(?:\*\.)?[a-z0-9_-]+(?:\.[a-z0-9_-]+)*|\[[0-9a-f:.]+\]")


def split_target(target: bytes) -> tuple[bytes, bytes]:
    """Split an origin-form target into path and query, the query keeping its leading ``?``.

    Only the path is normalised and routed on; the query travels unchanged.
    """
    path, mark, query = target.partition(b"?")
    return path, mark + query


def normalise_path(path: bytes, *, merge_slashes: bool = True) -> bytes | None:
    """Return the path the proxy routes on and forwards, or None if it is invalid (400).

    See the module docstring for the rules and why they are applied in this order.
    """
    if not path.startswith(b"/") or _INVALID_PATH_BYTE.search(path) is not None:
        return None
    if b"%" in path:
        decoded = _decode_unreserved(path)
        if decoded is None:
            return None
        path = decoded
    return _remove_dot_segments(path, merge_slashes=merge_slashes)


def _decode_unreserved(path: bytes) -> bytes | None:
    """Decode ``%HH`` of unreserved characters, upper-case the others; None if malformed."""
    pieces = path.split(b"%")
    out = [pieces[0]]
    for piece in pieces[1:]:
        if len(piece) < 2 or piece[0] not in _HEX or piece[1] not in _HEX:
            return None
        octet = int(piece[:2], 16)
        if octet == 0:
            return None
        if octet in _UNRESERVED:
            out.append(bytes((octet,)))
        else:
            out.append(b"%" + piece[:2].upper())
        out.append(piece[2:])
    return b"".join(out)


def _remove_dot_segments(path: bytes, *, merge_slashes: bool) -> bytes:
    """RFC 3986 §5.2.4 on an absolute path, optionally dropping empty segments on the way."""
    segments = path[1:].split(b"/")
    last = len(segments) - 1
    out: list[bytes] = []
    for index, segment in enumerate(segments):
        if segment == b".":
            pass
        elif segment == b"..":
            if out:
                out.pop()
        elif segment or not merge_slashes:
            out.append(segment)
            continue
        elif index != last:
            continue  # an empty segment merged away (a trailing one is the trailing slash)
        if index == last:
            out.append(b"")  # "/a/.." and "/a/." end in a slash
    return b"/" + b"/".join(out)


def rewrite_path(
    path: bytes, *, strip_prefix: bytes | None = None, add_prefix: bytes | None = None
) -> bytes:
    """Strip one prefix from a normalised path, then add another, keeping a single ``/`` between.

    Stripping is segment-aware like a ``path_prefix`` match: ``/api`` leaves ``/``
    of ``/api`` and ``/x`` of ``/api/x``, and leaves ``/apix`` alone, as it does any
    path the prefix does not match. Adding concatenates without doubling the
    slash: ``/v2`` (or ``/v2/``) before ``/x`` gives ``/v2/x``, before ``/`` gives ``/v2/``.

    Raises:
        ValueError: a prefix does not start with ``/``.
    """
    for prefix in (strip_prefix, add_prefix):
        if prefix is not None and not prefix.startswith(b"/"):
            raise ValueError(f"a path prefix must start with '/': {prefix!r}")
    if strip_prefix is not None:
        base = strip_prefix.rstrip(b"/")
        if path == base:
            path = b"/"
        elif path.startswith(base + b"/"):
            path = path[len(base) :]
    if add_prefix is not None:
        path = add_prefix.rstrip(b"/") + path
    return path


def normalise_host(host: bytes) -> bytes:
    """Lower-case a Host value and drop its port and trailing dot (``[::1]:80`` -> ``[::1]``)."""
    host = host.lower()
    if host.startswith(b"["):
        end = host.find(b"]")
        return host if end == -1 else host[: end + 1]
    name, colon, port = host.rpartition(b":")
    if colon and (not port or port.isdigit()):
        host = name
    if host.endswith(b"."):
        host = host[:-1]
    return host


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteMatch:
    """The conditions a request must meet to take a route; empty conditions match anything.

    ``hosts`` are lower-case names, exact (``api.example.com``) or wildcard
    (``*.example.com``, subdomains of any depth but not the apex); IDN names in
    their ``xn--`` form. ``path`` is an exact normalised path, ``path_prefix`` a
    prefix (segment-aware unless it ends with ``/``) and ``path_regex`` a pattern
    anchored at the start of the path; at most one of the three. ``methods``
    are upper-case method names. ``headers`` are (lower-case name, exact value)
    pairs that must all be present.

    Raises:
        ValueError: a condition is malformed, so it could never match as written.
    """

    hosts: tuple[str, ...] = ()
    path: str | None = None
    path_prefix: str | None = None
    path_regex: str | None = None
    methods: frozenset[str] = frozenset()
    headers: tuple[tuple[str, str], ...] = ()
    _regex: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        given = [
            name
            for name in ("path", "path_prefix", "path_regex")
            if getattr(self, name) is not None
        ]
        if len(given) > 1:
            raise ValueError(f"a route takes at most one of path, path_prefix, path_regex: {given}")
        for host in self.hosts:
            _check_host(host)
        for name in ("path", "path_prefix"):
            value = getattr(self, name)
            if value is not None:
                _check_path(name, value)
        if self.path_regex is not None:
            try:
                compiled = re.compile(self.path_regex)
            except re.error as exc:
                raise ValueError(f"path_regex {self.path_regex!r} is invalid: {exc}") from None
            object.__setattr__(self, "_regex", compiled)
        for method in self.methods:
            if _TOKEN.fullmatch(method) is None or method != method.upper():
                raise ValueError(f"method {method!r} is not an upper-case HTTP method name")
        for name, _value in self.headers:
            if _TOKEN.fullmatch(name) is None or name != name.lower():
                raise ValueError(f"header name {name!r} is not a lower-case field name")

    @property
    def conditions(self) -> int:
        """How many method and header conditions the route has (the tie-break)."""
        return (1 if self.methods else 0) + len(self.headers)


def _check_host(host: str) -> None:
    """Raise ValueError unless ``host`` is a name as the table compares it."""
    if _HOST.fullmatch(host) is None:
        raise ValueError(
            f"host {host!r} must be a lower-case name without port or trailing dot,"
            " '*.' and a name, or a bracketed IPv6 literal (IDN names in xn-- form)"
        )


def _check_path(key: str, value: str) -> None:
    """Raise ValueError unless ``value`` is already a normalised path (else it never matches)."""
    encoded = value.encode("utf-8")
    if normalise_path(encoded, merge_slashes=False) != encoded:
        raise ValueError(
            f"{key} {value!r} must be a normalised path: starting with '/', visible ASCII,"
            " no dot segments, %HH in upper case and only for reserved characters"
        )


@dataclass(frozen=True, slots=True)
class _Entry(Generic[T]):
    """One route inside a host group, with its conditions pre-encoded for the request's bytes."""

    order: int
    conditions: int
    methods: frozenset[bytes]
    headers: tuple[tuple[bytes, bytes], ...]
    target: T


def _tie_break(entry: _Entry[T]) -> tuple[int, int]:
    return (-entry.conditions, entry.order)


class _Group(Generic[T]):
    """The routes of one host group, indexed by kind of path condition."""

    __slots__ = ("catch_all", "exact", "regexes", "segment_prefixes", "slash_prefixes")

    def __init__(self) -> None:
        self.exact: dict[bytes, list[_Entry[T]]] = {}
        self.slash_prefixes: dict[bytes, list[_Entry[T]]] = {}  # plain prefixes ending in "/"
        self.segment_prefixes: dict[bytes, list[_Entry[T]]] = {}  # segment-aware prefixes
        self.regexes: dict[str, tuple[re.Pattern[str], list[_Entry[T]]]] = {}
        self.catch_all: list[_Entry[T]] = []

    def add(self, match: RouteMatch, entry: _Entry[T]) -> None:
        if match.path is not None:
            self.exact.setdefault(match.path.encode("ascii"), []).append(entry)
        elif match.path_prefix is not None:
            prefix = match.path_prefix.encode("ascii")
            table = self.slash_prefixes if prefix.endswith(b"/") else self.segment_prefixes
            table.setdefault(prefix, []).append(entry)
        elif match.path_regex is not None:
            assert match._regex is not None
            self.regexes.setdefault(match.path_regex, (match._regex, []))[1].append(entry)
        else:
            self.catch_all.append(entry)

    def sort(self) -> None:
        lists = [
            *self.exact.values(),
            *self.slash_prefixes.values(),
            *self.segment_prefixes.values(),
            *(entries for _pattern, entries in self.regexes.values()),
            self.catch_all,
        ]
        for entries in lists:
            entries.sort(key=_tie_break)

    def candidates(self, path: bytes) -> list[list[_Entry[T]]]:
        """The lists of routes whose path condition ``path`` meets, best first."""
        found: list[list[_Entry[T]]] = []
        exact = self.exact.get(path)
        if exact is not None:
            found.append(exact)
        if self.slash_prefixes or self.segment_prefixes:
            # Every prefix that can match ends where the path does or just before or after
            # one of its slashes; trying those spots from the end gives longest first.
            entries = self.segment_prefixes.get(path)
            if entries is not None:
                found.append(entries)
            end = path.rfind(b"/")
            while end >= 0:
                for entries_or_none in (
                    self.slash_prefixes.get(path[: end + 1]),
                    self.segment_prefixes.get(path[:end]) if end else None,
                ):
                    if entries_or_none is not None:
                        found.append(entries_or_none)
                end = path.rfind(b"/", 0, end)
        if self.regexes:
            text = path.decode("latin-1")
            for pattern, entries in self.regexes.values():
                if pattern.match(text) is not None:
                    found.append(entries)
        if self.catch_all:
            found.append(self.catch_all)
        return found


class RouteTable(Generic[T]):
    """An immutable set of routes, each a :class:`RouteMatch` and the value to route to.

    Built once per configuration; :meth:`find` then costs a few dictionary
    look-ups per request plus one pass over the regex routes of the chosen host
    group. The evaluation order is in the module docstring.
    """

    __slots__ = ("_any_host", "_exact_hosts", "_wildcard_hosts")

    def __init__(self, entries: Sequence[tuple[RouteMatch, T]]) -> None:
        self._exact_hosts: dict[bytes, _Group[T]] = {}
        self._wildcard_hosts: dict[bytes, _Group[T]] = {}  # keyed by the suffix after "*."
        self._any_host: _Group[T] = _Group()
        for order, (match, target) in enumerate(entries):
            entry = _Entry(
                order=order,
                conditions=match.conditions,
                methods=frozenset(method.encode("ascii") for method in match.methods),
                headers=tuple(
                    (name.encode("ascii"), value.encode("utf-8")) for name, value in match.headers
                ),
                target=target,
            )
            if not match.hosts:
                self._any_host.add(match, entry)
            for host in dict.fromkeys(match.hosts):  # a host listed twice is one route
                if host.startswith("*."):
                    table, key = self._wildcard_hosts, host[2:].encode("ascii")
                else:
                    table, key = self._exact_hosts, host.encode("ascii")
                group = table.get(key)
                if group is None:
                    group = table[key] = _Group()
                group.add(match, entry)
        for group in (*self._exact_hosts.values(), *self._wildcard_hosts.values()):
            group.sort()
        self._any_host.sort()

    def find(
        self, *, host: bytes, path: bytes, method: bytes, headers: Sequence[tuple[bytes, bytes]]
    ) -> T | None:
        """The value of the first route the request meets, or None (the proxy answers 404).

        ``host`` is the Host value as received (or the target's authority),
        ``path`` the output of :func:`normalise_path`, ``headers`` the request's
        field lines.
        """
        group = self._host_group(normalise_host(host))
        fields: dict[bytes, set[bytes]] | None = None
        for entries in group.candidates(path):
            for entry in entries:
                if entry.methods and method not in entry.methods:
                    continue
                if entry.headers:
                    if fields is None:
                        fields = {}
                        for name, value in headers:
                            fields.setdefault(name.lower(), set()).add(value)
                    if not all(value in fields.get(name, ()) for name, value in entry.headers):
                        continue
                return entry.target
        return None

    def _host_group(self, host: bytes) -> _Group[T]:
        """The most specific host group for a normalised host (see the module docstring)."""
        group = self._exact_hosts.get(host)
        if group is not None:
            return group
        if self._wildcard_hosts:
            dot = host.find(b".")
            while dot != -1:
                group = self._wildcard_hosts.get(host[dot + 1 :])
                if group is not None and dot > 0:
                    return group
                dot = host.find(b".", dot + 1)
        return self._any_host
