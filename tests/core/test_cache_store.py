"""The byte-capped in-memory store (``sansproxy.cache.store``).

RFC 9111 §2 lets a cache forget any stored response at any time; what it keeps
must be whole responses filed by key and variant (§4.1). Sizes are given
explicitly so that every cap and eviction below is exact.
"""

from __future__ import annotations

import pytest

from sansproxy.cache.keys import Variant
from sansproxy.cache.store import ENTRY_OVERHEAD, MemoryStore, StoredResponse, entry_size


def response(key: bytes, size: int, vary: Variant = (), body: bytes = b"") -> StoredResponse:
    return StoredResponse(
        key=key,
        status=200,
        reason=b"OK",
        headers=[(b"date", b"Sun, 06 Nov 1994 08:49:37 GMT")],
        body=body,
        request_time=0.0,
        response_time=0.0,
        variant=vary,
        size=size,
    )


EN: Variant = ((b"accept-language", b"en"),)
FR: Variant = ((b"accept-language", b"fr"),)
DE: Variant = ((b"accept-language", b"de"),)


def held(store: MemoryStore, *keys: bytes) -> list[list[StoredResponse]]:
    return [list(store.variants(key)) for key in keys]


# ---------------------------------------------------------------------------------------------
# Sizes.


def test_entry_size_counts_head_body_key_and_overhead() -> None:
    """The cap counts what a response costs: its fields (plus ": " and CRLF), body and key."""
    headers = [(b"date", b"x"), (b"etag", b'"a"')]
    expected = ENTRY_OVERHEAD + len(b"k") + (4 + 1 + 4) + (4 + 3 + 4) + len(b"hello")
    assert entry_size(headers, b"hello", b"k") == expected


def test_size_is_computed_when_not_given() -> None:
    """A StoredResponse without an explicit size gets its entry size."""
    stored = StoredResponse(
        key=b"k",
        status=200,
        reason=b"OK",
        headers=[],
        body=b"abc",
        request_time=0,
        response_time=0,
    )
    assert stored.size == ENTRY_OVERHEAD + 1 + 3


# ---------------------------------------------------------------------------------------------
# Filing and variants (RFC 9111 §4.1).


def test_put_and_variants() -> None:
    """RFC 9111 §4.1: a key holds one response per variant, newest first."""
    store = MemoryStore(max_bytes=10_000, max_object_bytes=10_000)
    en, fr = response(b"a", 100, EN), response(b"a", 100, FR)
    store.put(en)
    store.put(fr)
    assert store.variants(b"a") == [fr, en]
    assert store.variants(b"b") == []
    assert (len(store), store.bytes) == (2, 200)


def test_same_variant_replaces_the_stored_one() -> None:
    """RFC 9111 §4.3.3 (a newer response for the same request): it takes the old one's place."""
    store = MemoryStore(max_bytes=10_000, max_object_bytes=10_000)
    store.put(response(b"a", 100, EN))
    store.put(response(b"a", 100, FR))
    newer = response(b"a", 300, EN)
    store.put(newer)
    variants = store.variants(b"a")
    assert variants[0] is newer
    assert [v.variant for v in variants] == [EN, FR]
    assert (len(store), store.bytes, store.evictions) == (2, 400, 0)


def test_no_vary_response_replaces_the_no_vary_one() -> None:
    """RFC 9111 §4.1: without Vary there is one variant per key."""
    store = MemoryStore(max_bytes=10_000, max_object_bytes=10_000)
    store.put(response(b"a", 100))
    store.put(response(b"a", 150))
    assert (len(store), store.bytes) == (1, 150)


# ---------------------------------------------------------------------------------------------
# The object size limit.


def test_too_large_object_is_refused() -> None:
    """RFC 9111 §3: a cache MAY decline to store a response (here: larger than the limit)."""
    store = MemoryStore(max_bytes=10_000, max_object_bytes=500)
    store.put(response(b"a", 501))
    assert (len(store), store.bytes, store.variants(b"a")) == (0, 0, [])


def test_object_of_exactly_the_limit_is_stored() -> None:
    """The object limit is inclusive."""
    store = MemoryStore(max_bytes=10_000, max_object_bytes=500)
    store.put(response(b"a", 500))
    assert store.bytes == 500


def test_object_limit_is_at_most_the_store_cap() -> None:
    """One object never exceeds the store's own cap, whatever the object limit says."""
    store = MemoryStore(max_bytes=300, max_object_bytes=10_000)
    assert store.max_object_bytes == 300
    store.put(response(b"a", 301))
    assert store.bytes == 0


def test_refusing_a_too_large_object_does_not_evict() -> None:
    """A refused object costs nothing: nothing is evicted for it."""
    store = MemoryStore(max_bytes=1000, max_object_bytes=500)
    store.put(response(b"a", 400))
    store.put(response(b"b", 900))
    assert (store.bytes, store.evictions, len(store.variants(b"a"))) == (400, 0, 1)


# ---------------------------------------------------------------------------------------------
# LRU eviction under the byte cap (RFC 9111 §2: a cache may remove responses at any time).


def test_least_recently_stored_key_is_evicted() -> None:
    """Over the cap, the least recently used key goes first."""
    store = MemoryStore(max_bytes=250, max_object_bytes=250)
    for key in (b"a", b"b", b"c"):
        store.put(response(key, 100))
    assert held(store, b"a", b"b", b"c") == [[], *held(store, b"b", b"c")]
    assert (store.bytes, store.evictions, len(store)) == (200, 1, 2)


def test_a_use_makes_a_key_recent() -> None:
    """``variants`` counts as a use: the key read last is evicted last."""
    store = MemoryStore(max_bytes=250, max_object_bytes=250)
    store.put(response(b"a", 100))
    store.put(response(b"b", 100))
    store.variants(b"a")
    store.put(response(b"c", 100))
    assert store.variants(b"b") == []
    assert len(store.variants(b"a")) == 1


def test_a_put_makes_a_key_recent() -> None:
    """Storing a new variant of a key makes the key recent."""
    store = MemoryStore(max_bytes=350, max_object_bytes=350)
    store.put(response(b"a", 100, EN))
    store.put(response(b"b", 100))
    store.put(response(b"a", 100, FR))
    store.put(response(b"c", 100))
    assert store.variants(b"b") == []
    assert len(store.variants(b"a")) == 2


def test_eviction_counts_each_response() -> None:
    """Evicting a key with two variants counts two evictions."""
    store = MemoryStore(max_bytes=300, max_object_bytes=300)
    store.put(response(b"a", 100, EN))
    store.put(response(b"a", 100, FR))
    store.put(response(b"b", 200))
    assert (store.evictions, store.bytes, store.variants(b"a")) == (2, 200, [])


def test_several_keys_evicted_for_one_large_object() -> None:
    """Eviction goes on until the store is under its cap."""
    store = MemoryStore(max_bytes=300, max_object_bytes=300)
    for key in (b"a", b"b", b"c"):
        store.put(response(key, 100))
    store.put(response(b"d", 250))
    assert [len(v) for v in held(store, b"a", b"b", b"c", b"d")] == [0, 0, 0, 1]
    assert (store.evictions, store.bytes) == (3, 250)


def test_oldest_variants_of_the_only_key_are_evicted() -> None:
    """With one key left, its oldest variants go and the newest stays."""
    store = MemoryStore(max_bytes=250, max_object_bytes=250)
    en, fr, de = response(b"a", 100, EN), response(b"a", 100, FR), response(b"a", 100, DE)
    for item in (en, fr, de):
        store.put(item)
    assert store.variants(b"a") == [de, fr]
    assert (store.evictions, store.bytes) == (1, 200)


def test_full_store_of_exact_fit() -> None:
    """The cap is inclusive: exactly max_bytes stays."""
    store = MemoryStore(max_bytes=300, max_object_bytes=300)
    for key in (b"a", b"b", b"c"):
        store.put(response(key, 100))
    assert (store.bytes, store.evictions) == (300, 0)


# ---------------------------------------------------------------------------------------------
# replace (after a 304, RFC 9111 §4.3.4).


def test_replace_puts_the_update_in_place() -> None:
    """RFC 9111 §4.3.4: the updated response takes the stored one's place."""
    store = MemoryStore(max_bytes=10_000, max_object_bytes=10_000)
    old = response(b"a", 100, EN)
    store.put(old)
    new = response(b"a", 120, EN)
    store.replace(old, new)
    assert store.variants(b"a") == [new]
    assert (store.bytes, len(store)) == (120, 1)


def test_replace_after_eviction_stores_the_update() -> None:
    """RFC 9111 §4.3.4: if the old response was evicted meanwhile, the update is stored anew."""
    store = MemoryStore(max_bytes=200, max_object_bytes=200)
    old = response(b"a", 100)
    store.put(old)
    store.put(response(b"b", 100))
    store.put(response(b"c", 100))  # evicts a
    assert store.variants(b"a") == []
    new = response(b"a", 100)
    store.replace(old, new)
    assert store.variants(b"a") == [new]
    assert store.bytes == 200
    assert store.variants(b"b") == []  # b, now least recently used, made room


def test_replace_with_a_too_large_update_drops_the_old() -> None:
    """RFC 9111 §4.3.4: the old copy is outdated, and the update cannot be kept: drop both."""
    store = MemoryStore(max_bytes=1000, max_object_bytes=300)
    old_en, fr = response(b"a", 100, EN), response(b"a", 100, FR)
    store.put(old_en)
    store.put(fr)
    store.replace(old_en, response(b"a", 301, EN))
    assert store.variants(b"a") == [fr]
    assert (store.bytes, len(store)) == (100, 1)


def test_replace_with_a_too_large_update_of_the_only_variant_forgets_the_key() -> None:
    """No key is left without responses."""
    store = MemoryStore(max_bytes=1000, max_object_bytes=300)
    old = response(b"a", 100)
    store.put(old)
    store.replace(old, response(b"a", 301))
    assert (store.variants(b"a"), store.bytes, len(store), store.remove(b"a")) == ([], 0, 0, 0)


def test_replace_growing_past_the_cap_evicts_other_keys() -> None:
    """A grown update is kept; least recently used keys make room for it."""
    store = MemoryStore(max_bytes=300, max_object_bytes=300)
    old = response(b"a", 100)
    store.put(old)
    store.put(response(b"b", 100))
    store.put(response(b"c", 100))
    new = response(b"a", 200)
    store.replace(old, new)
    assert store.variants(b"a") == [new]
    assert store.variants(b"b") == []
    assert (store.bytes, store.evictions) == (300, 1)


def test_replace_keeps_the_refreshed_variant_over_older_siblings() -> None:
    """The update just validated is the most recently stored variant: its siblings go first."""
    store = MemoryStore(max_bytes=1000, max_object_bytes=1000)
    old_en, fr = response(b"a", 400, EN), response(b"a", 400, FR)
    store.put(old_en)
    store.put(fr)  # [fr, en]: en is the oldest
    new_en = response(b"a", 700, EN)
    store.replace(old_en, new_en)
    assert store.variants(b"a") == [new_en]
    assert (store.bytes, store.evictions) == (700, 1)


# ---------------------------------------------------------------------------------------------
# remove (invalidation and purges, RFC 9111 §4.4).


def test_remove_counts_the_variants() -> None:
    """RFC 9111 §4.4: invalidating a URI removes every response stored for it."""
    store = MemoryStore(max_bytes=10_000, max_object_bytes=10_000)
    store.put(response(b"a", 100, EN))
    store.put(response(b"a", 100, FR))
    store.put(response(b"b", 100))
    assert store.remove(b"a") == 2
    assert (store.bytes, len(store), store.variants(b"a")) == (100, 1, [])
    assert store.remove(b"a") == 0
    assert store.remove(b"never") == 0
    assert store.evictions == 0


@pytest.mark.parametrize("count", [1, 3])
def test_remove_then_put_again(count: int) -> None:
    """A removed key can be stored again from nothing."""
    store = MemoryStore(max_bytes=10_000, max_object_bytes=10_000)
    for vary in (EN, FR, DE)[:count]:
        store.put(response(b"a", 100, vary))
    assert store.remove(b"a") == count
    store.put(response(b"a", 50))
    assert (store.bytes, len(store)) == (50, 1)


# ---------------------------------------------------------------------------------------------
# Encoded bodies kept beside a stored response (compression, issue 11).


def test_add_encoding_counts_against_the_cap() -> None:
    """An encoded copy of the body is part of what the stored response costs."""
    store = MemoryStore(max_bytes=10_000, max_object_bytes=10_000)
    stored = response(b"a", 100)
    store.put(stored)
    store.add_encoding(stored, "gzip", b"x" * 40)
    assert (stored.size, store.bytes, stored.encoded) == (140, 140, {"gzip": b"x" * 40})
    store.add_encoding(stored, "gzip", b"y" * 10)  # one copy per coding
    assert (stored.size, store.bytes) == (140, 140)
    assert store.remove(b"a") == 1
    assert store.bytes == 0


def test_add_encoding_respects_the_object_limit() -> None:
    """An encoding that would make the response too large is not kept."""
    store = MemoryStore(max_bytes=10_000, max_object_bytes=120)
    stored = response(b"a", 100)
    store.put(stored)
    store.add_encoding(stored, "br", b"x" * 21)
    assert (stored.size, store.bytes, stored.encoded) == (100, 100, {})


def test_add_encoding_to_a_response_no_longer_stored() -> None:
    """A response evicted or replaced meanwhile gets nothing, and costs nothing."""
    store = MemoryStore(max_bytes=10_000, max_object_bytes=10_000)
    stored = response(b"a", 100)
    store.put(stored)
    store.put(response(b"a", 100))
    store.add_encoding(stored, "gzip", b"x" * 10)
    assert (stored.size, store.bytes) == (100, 100)


def test_add_encoding_evicts_to_the_cap() -> None:
    """Growing a response by its encoding evicts least recently used keys."""
    store = MemoryStore(max_bytes=300, max_object_bytes=300)
    store.put(response(b"a", 100))
    stored = response(b"b", 150)
    store.put(stored)
    store.add_encoding(stored, "gzip", b"x" * 100)
    assert (store.variants(b"a"), store.bytes, store.evictions) == ([], 250, 1)
