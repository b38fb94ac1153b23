"""How many retries a pool may make, and how long to wait before each.

A retry budget stops retries from multiplying the load on a pool that is
already failing: retries are allowed up to a share of the recent first tries,
plus a small allowance so that a quiet pool can still retry at all.

The window slides in steps of one bucket (``window / buckets`` seconds). At
``now`` it holds the current bucket and the ``buckets - 1`` before it, so it
always covers the last ``window - window / buckets`` seconds and never
anything older than ``window`` seconds.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from random import Random

__all__ = ["RetryBudget", "backoff"]

# Guards the rounding of `ratio * requests` (0.29 * 100 is 28.999999999999996).
_EPSILON = 1e-9

# 2.0 ** 1024 overflows; any larger exponent is past every cap anyway.
_MAX_EXPONENT = 1023


class RetryBudget:
    """Retries may be at most ``ratio`` of requests over a sliding ``window`` (seconds).

    Plus ``min_retries`` per window, so a quiet pool can still retry: a retry
    is allowed when, counting it, the window holds at most
    ``ratio * requests + min_retries`` retries. With 100 requests in the
    window, ``ratio=0.2`` and ``min_retries=3``, that is 23 retries. Retries
    are not requests: they never raise the budget themselves. A denied retry
    is not counted.

    Memory is one ring of ``buckets`` counter pairs; each call costs at most
    ``buckets`` steps however long the pool was idle. A ``now`` earlier than
    one already seen counts in the latest bucket.
    """

    __slots__ = (
        "_bucket",
        "_min_retries",
        "_ratio",
        "_requests",
        "_retries",
        "_total_requests",
        "_total_retries",
        "_width",
    )

    def __init__(
        self, *, ratio: float = 0.2, window: float = 10.0, min_retries: int = 3, buckets: int = 10
    ) -> None:
        if not ratio >= 0 or not math.isfinite(ratio):
            raise ValueError("ratio must be a finite number >= 0")
        if not window > 0 or not math.isfinite(window):
            raise ValueError("window must be a positive number of seconds")
        if min_retries < 0:
            raise ValueError("min_retries must not be negative")
        if buckets < 1:
            raise ValueError("buckets must be at least 1")
        self._ratio = ratio
        self._min_retries = min_retries
        self._width = window / buckets
        self._requests = [0] * buckets
        self._retries = [0] * buckets
        self._total_requests = 0
        self._total_retries = 0
        self._bucket: int | None = None  # absolute number of the current bucket

    def record_request(self, now: float) -> None:
        """Count the first try of a request (retries are counted by :meth:`try_retry`)."""
        slot = self._advance(now)
        self._requests[slot] += 1
        self._total_requests += 1

    def try_retry(self, now: float) -> bool:
        """Whether one more retry fits the budget; if so it is counted."""
        slot = self._advance(now)
        allowed = self._ratio * self._total_requests + self._min_retries + _EPSILON
        if self._total_retries + 1 > allowed:
            return False
        self._retries[slot] += 1
        self._total_retries += 1
        return True

    def stats(self, now: float) -> tuple[int, int]:
        """``(requests, retries)`` in the window ending at ``now``."""
        self._advance(now)
        return self._total_requests, self._total_retries

    def _advance(self, now: float) -> int:
        """Move the window to ``now``, zeroing the buckets it leaves; the current slot."""
        size = len(self._requests)
        target = math.floor(now / self._width)
        current = self._bucket
        if current is None or target - current >= size:
            self._requests = [0] * size
            self._retries = [0] * size
            self._total_requests = 0
            self._total_retries = 0
            current = self._bucket = target
        elif target > current:
            for number in range(current + 1, target + 1):
                slot = number % size
                self._total_requests -= self._requests[slot]
                self._total_retries -= self._retries[slot]
                self._requests[slot] = 0
                self._retries[slot] = 0
            current = self._bucket = target
        return current % size


def backoff(attempt: int, *, base: float, cap: float, rng: Random) -> float:
    """Seconds to wait before retry number ``attempt`` (1 for the first retry).

    "Full jitter": uniform between 0 and ``min(cap, base * 2 ** (attempt - 1))``,
    so that the clients of one failed server do not come back in step.
    """
    if attempt < 1:
        raise ValueError("attempt counts from 1")
    ceiling = min(cap, base * 2.0 ** min(attempt - 1, _MAX_EXPONENT))
    return rng.uniform(0.0, ceiling)
