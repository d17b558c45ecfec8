"""Median and spread over interleaved rounds: how every bench prints a figure."""

from __future__ import annotations

import os
import statistics
from typing import TypeVar

T = TypeVar("T")


def spread(values: list[float], fmt: str = "{:.0f}") -> str:
    """`median (min-max)` of the rounds' values; a single value prints alone."""
    if len(values) == 1:
        return fmt.format(values[0])
    lo, mid, hi = min(values), statistics.median(values), max(values)
    return f"{fmt.format(mid)} ({fmt.format(lo)}-{fmt.format(hi)})"


def load_average() -> str:
    """The 1/5/15-minute load average, printed beside every result (a shared machine)."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.1f} / {five:.1f} / {fifteen:.1f} on {os.cpu_count()} cores"


def rotated(items: list[T], r: int) -> list[T]:
    """Round `r`'s order of the variants: each round starts one further along."""
    k = r % len(items)
    return items[k:] + items[:k]
