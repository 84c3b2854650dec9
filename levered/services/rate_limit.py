"""A token bucket per client (Turner 1986's leaky bucket as a meter), in process memory.

Each client key has a bucket of ``burst`` tokens that refills at ``rate`` tokens per second; a
request takes one token or is refused with the time until one is available (the 429's
``Retry-After``). Buckets live in one dict per process: with N worker processes a client gets
up to N × rate in total (each worker meters what it sees). Memory is bounded: beyond
``max_clients`` keys, full (idle) buckets are dropped first, and if that is not enough the
table is cleared, which only ever errs towards letting requests through.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Final

MAX_CLIENTS: Final = 100_000


class TokenBucketLimiter:
    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        max_clients: int = MAX_CLIENTS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive (leave the limiter out to disable it)")
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self.rate = float(rate)
        self.burst = float(burst)
        self.max_clients = max_clients
        self._clock = clock
        self._buckets: dict[str, list[float]] = {}  # key -> [tokens, last refill time]

    def acquire(self, key: str) -> float:
        """Take a token for ``key``: 0.0 when allowed, else the seconds until one is free."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_clients:
                self._evict(now)
            self._buckets[key] = [self.burst - 1.0, now]
            return 0.0
        tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return 0.0
        bucket[0] = tokens
        return (1.0 - tokens) / self.rate

    def retry_after(self, wait: float) -> int:
        """Whole seconds for a ``Retry-After`` header (at least 1)."""
        return max(1, math.ceil(wait))

    def _evict(self, now: float) -> None:
        refill = self.burst / self.rate
        idle = [k for k, (_, last) in self._buckets.items() if now - last >= refill]
        for key in idle:
            del self._buckets[key]
        if len(self._buckets) >= self.max_clients:
            self._buckets.clear()
