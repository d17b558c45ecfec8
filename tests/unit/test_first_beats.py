"""The runner's one timer for first heartbeats: a job that ends first never starts a beat."""

from __future__ import annotations

import asyncio
import time

from workers.runner import _FirstBeats


class Beat:
    def __init__(self, name: str, started: dict[str, float]) -> None:
        self.name, self.started = name, started
        self.added = 0.0

    def start(self) -> None:
        self.started[self.name] = time.monotonic()


async def test_beats_start_after_their_delay_in_order_unless_discarded() -> None:
    started: dict[str, float] = {}
    beats = _FirstBeats(0.3)
    a, b, c, d = (Beat(n, started) for n in "abcd")
    for beat in (a, b, c):
        beat.added = time.monotonic()
        beats.add(beat)  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
    beats.discard(c)  # type: ignore[arg-type]  # this job ended before its first beat
    async with asyncio.timeout(10):
        while len(started) < 2:
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.4)  # c would have been due by now
    assert list(started) == ["a", "b"]
    assert all(started[x.name] - x.added >= 0.29 for x in (a, b))  # each its own delay
    d.added = time.monotonic()
    beats.add(d)  # type: ignore[arg-type]  # the timer re-arms after it ran dry
    async with asyncio.timeout(10):
        while "d" not in started:
            await asyncio.sleep(0.05)
    assert started["d"] - d.added >= 0.29 and list(started) == ["a", "b", "d"]
