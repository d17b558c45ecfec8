"""The one backoff helper: exponential, capped, jittered within [ceiling / 2, ceiling]."""

from __future__ import annotations

import random

from jobs.backoff import backoff_seconds


def test_backoff_doubles_up_to_its_cap_with_jitter_in_the_upper_half() -> None:
    rng = random.Random(7)
    for attempt, ceiling in [(1, 2.0), (2, 4.0), (3, 8.0), (6, 60.0), (30, 60.0)]:
        values = [backoff_seconds(attempt, 2.0, 60.0, rng) for _ in range(200)]
        assert all(ceiling / 2 <= v <= ceiling for v in values), (attempt, min(values))
        assert max(values) - min(values) > ceiling / 4  # jittered, not fixed
    assert backoff_seconds(0, 2.0, 60.0, rng) <= 2.0  # attempt 0 is treated as the first
