"""Parsing ``[compression]`` and a route's ``[routes.compression]`` overrides."""

from __future__ import annotations

from dataclasses import replace

from sansproxy.compression.encoders import CODINGS, available
from sansproxy.config._values import (
    _array,
    _bool,
    _check_keys,
    _Invalid,
    _key,
    _size,
    _string,
    _table,
)
from sansproxy.config.model import Compression

_KEYS = ("enabled", "encodings", "levels", "min_size", "types")
_LEVELS = {"gzip": (1, 9), "deflate": (1, 9), "br": (0, 11), "zstd": (1, 19)}
"""The level range of each coding (zstd's 20 to 22 need windows beyond RFC 9659's 8 MiB)."""
_EXTRA = {"br": "brotli", "zstd": "zstandard"}


def compression(value: object, path: str, base: Compression | None = None) -> Compression:
    """``base`` with the keys of the table at ``path`` applied.

    An encoding whose library is missing is an error only when it is named: the
    default list simply leaves it out.
    """
    table = _table(value, path)
    _check_keys(table, path, _KEYS)
    result = Compression() if base is None else base
    if "enabled" in table:
        result = replace(result, enabled=_bool(table["enabled"], _key(path, "enabled")))
    if "encodings" in table:
        result = replace(result, encodings=_encodings(table["encodings"], _key(path, "encodings")))
    if "levels" in table:
        result = replace(result, levels=_levels(table["levels"], _key(path, "levels"), result))
    if "min_size" in table:
        size = _size(table["min_size"], _key(path, "min_size"), zero_allowed=True)
        result = replace(result, min_size=size)
    if "types" in table:
        result = replace(result, types=_types(table["types"], _key(path, "types")))
    return result


def _encodings(value: object, path: str) -> tuple[str, ...]:
    items = _array(value, path)
    if not items:
        raise _Invalid(path, "must name at least one encoding (or set enabled = false)")
    codings: list[str] = []
    for index, item in enumerate(items):
        coding = _string(item, f"{path}[{index}]").lower()
        if coding not in CODINGS:
            raise _Invalid(
                f"{path}[{index}]", f"unknown encoding {coding!r} (known: {', '.join(CODINGS)})"
            )
        if coding not in available():
            raise _Invalid(
                f"{path}[{index}]",
                f"{coding!r} needs the {_EXTRA[coding]} package "
                "(pip install 'sansproxy[compression]')",
            )
        if coding in codings:
            raise _Invalid(f"{path}[{index}]", f"{coding!r} is listed twice")
        codings.append(coding)
    return tuple(codings)


def _levels(value: object, path: str, base: Compression) -> tuple[tuple[str, int], ...]:
    table = _table(value, path)
    _check_keys(table, path, tuple(_LEVELS))
    levels = dict(base.levels)
    for coding, item in table.items():
        low, high = _LEVELS[coding]
        if isinstance(item, bool) or not isinstance(item, int) or not low <= item <= high:
            raise _Invalid(_key(path, coding), f"must be an integer from {low} to {high}")
        levels[coding] = item
    return tuple(levels.items())


def _types(value: object, path: str) -> tuple[str, ...]:
    types: list[str] = []
    for index, item in enumerate(_array(value, path)):
        media = _string(item, f"{path}[{index}]").lower()
        kind, slash, subtype = media.partition("/")
        if not slash or kind in ("", "*") or not subtype or "/" in subtype or ";" in media:
            raise _Invalid(
                f"{path}[{index}]",
                f"{media!r} is not a media type such as 'text/html', 'text/*' or "
                "'application/*+json'",
            )
        types.append(media)
    return tuple(types)
