"""The one backoff: exponential with jitter, for job retries and every loop's reconnects."""

from __future__ import annotations

import random


def backoff_seconds(
    attempt: int, base: float, cap: float, rng: random.Random | None = None
) -> float:
    """Uniform in [ceiling / 2, ceiling], where ceiling = min(cap, base * 2**(attempt - 1)).

    Half the ceiling at least, so retries of many jobs spread out without any of them
    coming back at once."""
    ceiling = min(cap, base * (2 ** max(0, attempt - 1)))
    return (rng or random).uniform(ceiling / 2, ceiling)
