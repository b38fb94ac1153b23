"""Where stored responses live: the :class:`Store` interface and the in-memory store.

The cache's rules never ask a store to decide anything: a store files the
variants of each primary key and gives them back. The in-memory store answers
at once, inside the core's turn. A store that does I/O (files, or Redis shared
between proxies) would be reached the way upstreams are: the exchange waits in
a state of its own while a command asks the adapter for the variants of a key,
and an event brings them back; ``docs/caching.md`` describes that shape.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from sansproxy._codec import Headers
    from sansproxy.cache.keys import Variant

__all__ = ["MemoryStore", "Store", "StoredResponse", "entry_size"]

ENTRY_OVERHEAD = 256
"""Bytes counted for each stored response besides its head and body (its bookkeeping)."""


@dataclass(slots=True, kw_only=True, eq=False)
class StoredResponse:
    """One stored response: a variant of its key."""

    key: bytes
    status: int
    reason: bytes
    headers: Headers
    """The header section as stored (a Date always among them)."""
    body: bytes
    request_time: float
    """Wall-clock time the request that fetched it was sent."""
    response_time: float
    """Wall-clock time its head arrived."""
    variant: Variant = ()
    encoded: dict[str, bytes] = field(default_factory=dict)
    facts: object = field(default=None, repr=False)
    """What the reuse rules read from its fields, worked out once (``cache.lookup``)."""
    """The body already compressed, by coding, as the first hit that asked for it made it."""
    size: int = field(default=0)

    def __post_init__(self) -> None:
        if not self.size:
            self.size = entry_size(self.headers, self.body, self.key) + sum(
                len(data) for data in self.encoded.values()
            )


def entry_size(headers: Headers, body: bytes, key: bytes) -> int:
    """The bytes a stored response counts against its store's cap."""
    head = sum(len(name) + len(value) + 4 for name, value in headers)
    return ENTRY_OVERHEAD + len(key) + head + len(body)


class Store(Protocol):
    """The variants of each key; a store may forget anything at any time."""

    max_object_bytes: int
    """The largest response (head and body) it keeps."""

    def variants(self, key: bytes) -> list[StoredResponse]:
        """The key's stored responses, most recently stored first (a use counts as recent)."""

    def put(self, response: StoredResponse) -> None:
        """File ``response``, replacing the stored one of the same variant."""

    def replace(self, old: StoredResponse, new: StoredResponse) -> None:
        """``new`` (an updated copy, after a 304) takes the place of ``old``."""

    def remove(self, key: bytes) -> int:
        """Forget every variant of ``key``; how many there were."""

    def add_encoding(self, response: StoredResponse, coding: str, data: bytes) -> None:
        """Keep ``data``, the body of ``response`` compressed with ``coding``, beside it."""


class MemoryStore:
    """A byte-capped store in memory; the least recently used keys go first.

    ``evictions`` and ``bytes`` are the counters the cache reports.
    """

    __slots__ = ("_keys", "bytes", "evictions", "max_bytes", "max_object_bytes")

    def __init__(self, *, max_bytes: int, max_object_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.max_object_bytes = min(max_object_bytes, max_bytes)
        self._keys: OrderedDict[bytes, list[StoredResponse]] = OrderedDict()
        self.bytes = 0
        self.evictions = 0

    def __len__(self) -> int:
        return sum(len(variants) for variants in self._keys.values())

    def variants(self, key: bytes) -> list[StoredResponse]:
        """The key's variants, newest first; the key becomes the most recently used."""
        found = self._keys.get(key)
        if found is None:
            return []
        self._keys.move_to_end(key)
        return found

    def put(self, response: StoredResponse) -> None:
        """Store ``response`` (over any stored one of its variant), then evict to the cap."""
        if response.size > self.max_object_bytes:
            return
        variants = self._keys.setdefault(response.key, [])
        self._keys.move_to_end(response.key)
        for index, old in enumerate(variants):
            if old.variant == response.variant:
                del variants[index]
                self.bytes -= old.size
                break
        variants.insert(0, response)
        self.bytes += response.size
        self._evict(keep=response.key)

    def replace(self, old: StoredResponse, new: StoredResponse) -> None:
        """Put ``new`` in place of ``old``, as the newest variant (``old`` may be gone already)."""
        variants = self._keys.get(old.key)
        if variants is None or old not in variants:
            self.put(new)
            return
        if new.size > self.max_object_bytes:
            variants.remove(old)
            self.bytes -= old.size
            if not variants:
                del self._keys[old.key]
            return
        # The update is the most recently stored variant: first, so eviction takes it last.
        variants.remove(old)
        variants.insert(0, new)
        self.bytes += new.size - old.size
        self._keys.move_to_end(old.key)
        self._evict(keep=old.key)

    def remove(self, key: bytes) -> int:
        """Forget every variant of ``key``."""
        variants = self._keys.pop(key, None)
        if not variants:
            return 0
        self.bytes -= sum(v.size for v in variants)
        return len(variants)

    def add_encoding(self, response: StoredResponse, coding: str, data: bytes) -> None:
        """Keep the encoded body with ``response`` while it is stored and still fits."""
        variants = self._keys.get(response.key)
        if variants is None or response not in variants or coding in response.encoded:
            return
        if response.size + len(data) > self.max_object_bytes:
            return
        response.encoded[coding] = data
        response.size += len(data)
        self.bytes += len(data)
        self._evict(keep=response.key)

    def _evict(self, *, keep: bytes) -> None:
        """Drop least recently used keys (or the oldest variants of ``keep``) to the cap."""
        keys = self._keys
        while self.bytes > self.max_bytes:
            oldest = next(iter(keys))
            if oldest == keep:
                variants = keys[keep]
                if len(variants) <= 1:
                    return  # cannot happen: one object never exceeds the cap
                dropped = variants.pop()
                self.bytes -= dropped.size
                self.evictions += 1
                continue
            for dropped in keys.pop(oldest):
                self.bytes -= dropped.size
                self.evictions += 1
