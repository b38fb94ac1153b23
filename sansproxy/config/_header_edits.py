"""Parsing a route's ``request_headers`` and ``response_headers`` tables.

Each is ``{ set = { name = "value" }, add = { name = "value" }, remove = ["name"] }``;
names are field names (tokens, case-insensitive), values printable ASCII with
``{variable}`` placeholders (:data:`sansproxy.header_edits.VARIABLES`). A name that
frames or routes the message is refused with a message that says why and what to use
instead; so is a name that is both removed and set or added (a contradiction), or set
twice.
"""

from __future__ import annotations

import re

from sansproxy.config._values import (
    _FIELD_VALUE,
    _TOKEN,
    _array,
    _check_keys,
    _Invalid,
    _key,
    _string,
    _table,
)
from sansproxy.header_edits import UNEDITABLE, VARIABLES, HeaderEdits, ValueTemplate

__all__ = ["header_edits"]

_KEYS = ("set", "add", "remove")
_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_WHY = {
    b"host": "Host is the proxy's to write (use the route's host_header)",
    b"content-length": "the proxy frames each message itself",
    b"transfer-encoding": "the proxy frames each message itself",
    b"trailer": "the proxy frames each message itself",
    b"expect": "the proxy answers Expect: 100-continue itself",
}


def header_edits(value: object, path: str) -> HeaderEdits:
    """The edits of one ``request_headers`` or ``response_headers`` table at ``path``."""
    table = _table(value, path)
    _check_keys(table, path, _KEYS)
    remove: set[bytes] = set()
    if "remove" in table:
        remove_path = f"{path}.remove"
        for position, item in enumerate(_array(table["remove"], remove_path)):
            item_path = f"{remove_path}[{position}]"
            remove.add(_name(_string(item, item_path), item_path))
    edits: dict[str, list[tuple[bytes, ValueTemplate]]] = {"set": [], "add": []}
    for kind in ("set", "add"):
        if kind not in table:
            continue
        kind_path = f"{path}.{kind}"
        for text, item in _table(table[kind], kind_path).items():
            item_path = _key(kind_path, text)
            name = _name(text, item_path)
            if name in remove:
                raise _Invalid(item_path, f"{text!r} is also in {path}.remove: keep one of the two")
            if kind == "set" and any(name == other for other, _ in edits["set"]):
                raise _Invalid(item_path, f"{text!r} is set twice (names ignore case)")
            edits[kind].append((name, _value(_string(item, item_path), item_path)))
    return HeaderEdits(remove=frozenset(remove), set=tuple(edits["set"]), add=tuple(edits["add"]))


def _name(text: str, path: str) -> bytes:
    if not _TOKEN.fullmatch(text):
        raise _Invalid(path, f"{text!r} is not a header field name")
    name = text.lower().encode("ascii")
    if name in UNEDITABLE:
        why = _WHY.get(name, "it is hop-by-hop: it concerns one connection, not the message")
        raise _Invalid(path, f"{text} cannot be edited: {why}")
    return name


def _value(text: str, path: str) -> ValueTemplate:
    for placeholder in _PLACEHOLDER.findall(text):
        if placeholder not in VARIABLES:
            known = ", ".join(f"{{{name}}}" for name in VARIABLES)
            raise _Invalid(path, f"unknown variable {{{placeholder}}} (known: {known})")
    if text and not _FIELD_VALUE.fullmatch(_PLACEHOLDER.sub("x", text)):
        raise _Invalid(path, "must be a header value: printable ASCII, no spaces at the ends")
    return ValueTemplate.parse(text)
