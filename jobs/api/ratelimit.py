"""Per-tenant token buckets: a burst of requests is fine, a sustained flood gets 429.

In-process (one bucket set per API process): with N API processes a tenant's ceiling is N
times the setting. Good enough to stop a runaway client; not a billing-grade quota.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from jobs.errors import TooManyRequests


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(self, per_second: float, burst: int, max_tenants: int = 100_000) -> None:
        self.per_second = per_second
        self.burst = float(burst)
        self.max_tenants = max_tenants
        self._buckets: dict[str, _Bucket] = {}

    def check(self, tenant_id: str, now: float | None = None) -> None:
        """Take one token for `tenant_id`, or raise TooManyRequests with a Retry-After."""
        if self.per_second <= 0:
            return
        now = time.monotonic() if now is None else now
        bucket = self._buckets.get(tenant_id)
        if bucket is None:
            if len(self._buckets) >= self.max_tenants:
                self._buckets.clear()
            bucket = self._buckets[tenant_id] = _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.per_second)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return
        wait = (1 - bucket.tokens) / self.per_second
        raise TooManyRequests(
            f"too many requests: this tenant may make {self.per_second:g} per second "
            f"(bursts of {self.burst:g})",
            retry_after=max(1, math.ceil(wait)),
            details={"limit_per_second": self.per_second, "burst": self.burst},
        )
