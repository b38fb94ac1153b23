"""Cache-Control (RFC 9111 §5.2) as a cache reads it, and Pragma's one meaning.

Directive names are case-insensitive; arguments are tokens or quoted strings.
A delta-seconds argument too large to represent is 2**31 (§1.2.2). A directive
given twice with different arguments, or a delta-seconds argument that is not
a non-negative integer, makes :meth:`CacheControl.seconds` answer
:data:`INVALID`: the freshness rules read that as "stale", the most restrictive
reading §4.2.1 allows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable

    from sansproxy._codec import Headers

__all__ = [
    "INVALID",
    "MAX_DELTA",
    "CacheControl",
    "cache_control",
    "parse_delta",
    "pragma_no_cache",
]

INVALID = -1
"""What :meth:`CacheControl.seconds` answers for an unusable delta-seconds argument."""
MAX_DELTA = 2**31
"""The largest delta-seconds a cache represents (RFC 9111 §1.2.2)."""


class CacheControl:
    """The directives of one message's Cache-Control fields.

    ``targeted`` is True when they came from a targeted field (RFC 9213), which
    also stands in for ``Expires``.
    """

    __slots__ = ("_conflicts", "_items", "targeted")

    @classmethod
    def of(cls, items: dict[str, bytes | None], *, targeted: bool) -> CacheControl:
        """Directives already parsed (from a targeted field)."""
        directives = cls(())
        directives._items = dict(items)
        directives.targeted = targeted
        return directives

    def __init__(self, values: Iterable[bytes]) -> None:
        self.targeted = False
        items: dict[str, bytes | None] = {}
        conflicts: set[str] = set()
        for value in values:
            for name, argument in _directives(value):
                if name in items:
                    if items[name] != argument:
                        conflicts.add(name)
                else:
                    items[name] = argument
        self._items = items
        self._conflicts = conflicts

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def __bool__(self) -> bool:
        return bool(self._items)

    def names(self) -> list[str]:
        """The directives present, in the order first seen."""
        return list(self._items)

    def argument(self, name: str) -> bytes | None:
        """The (first) argument of ``name``, or None when it has none or is absent."""
        return self._items.get(name)

    def seconds(self, name: str) -> int | None:
        """A delta-seconds directive: None when absent, :data:`INVALID` when unusable."""
        if name not in self._items:
            return None
        if name in self._conflicts:
            return INVALID
        argument = self._items[name]
        return INVALID if argument is None else parse_delta(argument)

    def field_names(self, name: str) -> frozenset[bytes] | None:
        """The field names argument of ``no-cache`` or ``private``: None when unqualified.

        Conflicting duplicates (``private="a", private``) read as unqualified, the
        most restrictive reading (§4.2.1): an unqualified one anywhere must win.
        """
        argument = self._items.get(name)
        if argument is None or name in self._conflicts:
            return None
        names = frozenset(n.strip().lower() for n in argument.split(b",") if n.strip())
        return names or None


def cache_control(headers: Headers) -> CacheControl:
    """The Cache-Control directives of a header section."""
    return CacheControl(value for name, value in headers if name == b"cache-control")


def parse_delta(value: bytes) -> int:
    """A delta-seconds value (capped at 2**31), or :data:`INVALID`."""
    if not value or not value.isdigit() or not value.isascii():
        return INVALID
    if len(value) > 10:
        return MAX_DELTA
    return min(int(value), MAX_DELTA)


def pragma_no_cache(headers: Headers) -> bool:
    """Whether a request's Pragma says ``no-cache`` (honoured without Cache-Control, §5.4)."""
    for name, value in headers:
        if name == b"pragma" and any(
            part.strip().lower() == b"no-cache" for part in value.split(b",")
        ):
            return True
    return False


def _directives(value: bytes) -> Iterable[tuple[str, bytes | None]]:
    """``(name, argument)`` of each list member of one field value."""
    index = 0
    length = len(value)
    while index < length:
        # The name runs to '=' or ','.
        end = index
        while end < length and value[end] not in b"=,":
            end += 1
        name = value[index:end].strip().lower().decode("latin-1")
        argument: bytes | None = None
        if end < length and value[end] == 0x3D:  # '='
            start = end + 1
            while start < length and value[start] in b" \t":
                start += 1
            if start < length and value[start] == 0x22:  # '"'
                argument, end = _quoted(value, start)
                while end < length and value[end] != 0x2C:
                    end += 1
            else:
                end = start
                while end < length and value[end] != 0x2C:
                    end += 1
                argument = value[start:end].strip()
        if name:
            yield name, argument
        index = end + 1


def _quoted(value: bytes, start: int) -> tuple[bytes, int]:
    """The unescaped content of the quoted string at ``start``, and the index after it."""
    out = bytearray()
    index = start + 1
    length = len(value)
    while index < length:
        byte = value[index]
        if byte == 0x5C and index + 1 < length:  # backslash
            out.append(value[index + 1])
            index += 2
            continue
        if byte == 0x22:
            return bytes(out), index + 1
        out.append(byte)
        index += 1
    return bytes(out), index
