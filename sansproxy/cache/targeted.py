"""Targeted cache-control fields (RFC 9213): ``CDN-Cache-Control`` and the like.

A targeted field speaks to one class of caches and, when it is valid, takes the
place of ``Cache-Control`` and ``Expires`` for them. Its value is a Structured
Field Dictionary (RFC 8941 §3.2); a value that does not parse, or a directive
whose value has the wrong type (``max-age="10"``), makes the whole field
invalid, and the cache then ignores it and reads ``Cache-Control`` as usual.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sansproxy.cache.directives import CacheControl, cache_control

if TYPE_CHECKING:
    from collections.abc import Sequence

    from sansproxy._codec import Headers

__all__ = ["response_directives", "targeted_directives"]

_SECONDS = frozenset(("max-age", "s-maxage", "stale-while-revalidate", "stale-if-error"))
_FIELD_LISTS = frozenset(("no-cache", "private"))
_KEY_FIRST = frozenset(b"abcdefghijklmnopqrstuvwxyz*")
_KEY_REST = _KEY_FIRST | frozenset(b"0123456789_-.")
_TOKEN_FIRST = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ*")
_TOKEN_REST = _TOKEN_FIRST | frozenset(b"0123456789!#$%&'+-.^_`|~:/")
_BASE64 = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
_DIGITS = frozenset(b"0123456789")


def response_directives(headers: Headers, targeted: Sequence[bytes]) -> CacheControl:
    """The directives a cache follows: the first valid targeted field's, else Cache-Control."""
    for name in targeted:
        directives = targeted_directives(headers, name)
        if directives is not None:
            return directives
    return cache_control(headers)


def targeted_directives(headers: Headers, name: bytes) -> CacheControl | None:
    """The directives of the targeted field ``name``; None when absent or invalid."""
    values = [value for field, value in headers if field == name]
    if not values:
        return None
    members = _dictionary(b", ".join(values))
    if members is None:
        return None
    items: dict[str, bytes | None] = {}
    for key, (kind, value) in members.items():
        if key in _SECONDS:
            if kind != "integer" or not isinstance(value, int) or value < 0:
                return None
            items[key] = b"%d" % value
        elif kind == "boolean":
            if value:
                items[key] = None
        elif key in _FIELD_LISTS and kind == "list":
            assert isinstance(value, list)
            items[key] = b", ".join(value)
        elif key in _FIELD_LISTS or key in ("no-store", "public", "must-revalidate"):
            return None  # a known directive with a value of the wrong type
    return CacheControl.of(items, targeted=True)


# -- RFC 8941 Dictionary parsing ------------------------------------------------------------

Member = tuple[str, object]
"""``(kind, value)``: ``integer``, ``decimal``, ``string``, ``token``, ``bytes``,
``boolean``, or ``list`` (an inner list: the values of its strings and tokens)."""


class _Invalid(Exception):
    pass


def _dictionary(text: bytes) -> dict[str, Member] | None:
    parser = _Parser(text)
    try:
        return parser.dictionary()
    except _Invalid:
        return None


class _Parser:
    __slots__ = ("at", "text")

    def __init__(self, text: bytes) -> None:
        self.text = text.strip(b" ")
        self.at = 0

    def peek(self) -> int:
        return self.text[self.at] if self.at < len(self.text) else -1

    def dictionary(self) -> dict[str, Member]:
        members: dict[str, Member] = {}
        text = self.text
        while self.at < len(text):
            key = self.key()
            if self.peek() == 0x3D:  # '='
                self.at += 1
                member = self.inner_list() if self.peek() == 0x28 else self.bare_item()
            else:
                member = ("boolean", True)
            self.parameters()
            members[key] = member
            while self.peek() in (0x20, 0x09):
                self.at += 1
            if self.at >= len(text):
                break
            if self.peek() != 0x2C:  # ','
                raise _Invalid
            self.at += 1
            while self.peek() in (0x20, 0x09):
                self.at += 1
            if self.at >= len(text):
                raise _Invalid  # a trailing comma
        return members

    def key(self) -> str:
        start = self.at
        if self.peek() not in _KEY_FIRST:
            raise _Invalid
        while self.peek() in _KEY_REST:
            self.at += 1
        return self.text[start : self.at].decode("ascii")

    def parameters(self) -> None:
        while self.peek() == 0x3B:  # ';'
            self.at += 1
            while self.peek() == 0x20:
                self.at += 1
            self.key()
            if self.peek() == 0x3D:
                self.at += 1
                self.bare_item()

    def inner_list(self) -> Member:
        self.at += 1  # '('
        values: list[bytes] = []
        while True:
            while self.peek() == 0x20:
                self.at += 1
            if self.peek() == 0x29:  # ')'
                self.at += 1
                return ("list", values)
            kind, value = self.bare_item()
            self.parameters()
            if kind in ("string", "token") and isinstance(value, bytes):
                values.append(value)
            if self.peek() not in (0x20, 0x29):
                raise _Invalid

    def bare_item(self) -> Member:
        char = self.peek()
        if char == 0x2D or char in _DIGITS:
            return self.number()
        if char == 0x22:
            return self.string()
        if char in _TOKEN_FIRST:
            return self.token()
        if char == 0x3A:
            return self.byte_sequence()
        if char == 0x3F:
            return self.boolean()
        raise _Invalid

    def number(self) -> Member:
        text = self.text
        start = self.at
        if self.peek() == 0x2D:
            self.at += 1
        digits_start = self.at
        while self.peek() in _DIGITS:
            self.at += 1
        whole = self.at - digits_start
        if whole == 0:
            raise _Invalid
        if self.peek() != 0x2E:  # '.'
            if whole > 15:
                raise _Invalid
            return ("integer", int(text[start : self.at]))
        if whole > 12:
            raise _Invalid
        self.at += 1
        fraction_start = self.at
        while self.peek() in _DIGITS:
            self.at += 1
        if not 1 <= self.at - fraction_start <= 3:
            raise _Invalid
        return ("decimal", float(text[start : self.at]))

    def string(self) -> Member:
        self.at += 1
        out = bytearray()
        while True:
            char = self.peek()
            if char == -1:
                raise _Invalid
            self.at += 1
            if char == 0x5C:  # backslash
                escaped = self.peek()
                if escaped not in (0x22, 0x5C):
                    raise _Invalid
                out.append(escaped)
                self.at += 1
            elif char == 0x22:
                return ("string", bytes(out))
            elif not 0x20 <= char <= 0x7E:
                raise _Invalid
            else:
                out.append(char)

    def token(self) -> Member:
        start = self.at
        self.at += 1
        while self.peek() in _TOKEN_REST:
            self.at += 1
        return ("token", self.text[start : self.at])

    def byte_sequence(self) -> Member:
        self.at += 1
        start = self.at
        while self.peek() in _BASE64:
            self.at += 1
        if self.peek() != 0x3A:
            raise _Invalid
        value = self.text[start : self.at]
        self.at += 1
        return ("bytes", value)

    def boolean(self) -> Member:
        self.at += 1
        char = self.peek()
        if char not in (0x30, 0x31):
            raise _Invalid
        self.at += 1
        return ("boolean", char == 0x31)
