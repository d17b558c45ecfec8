"""The worker's frame index cache: one build per source digest, even for concurrent tasks;
a failed build is not kept; least recently used indexes go once the frame budget is full."""

from __future__ import annotations

import asyncio
from fractions import Fraction

import pytest

from workers.ffmpeg.indexcache import FrameIndexCache
from workers.ffmpeg.keyframes import FrameIndex


def index(frames: int) -> FrameIndex:
    return FrameIndex(Fraction(1, 25), Fraction(0), tuple(range(frames)), (0,))


def key(n: int) -> tuple[str, str, int]:
    return (f"sha256:{n:064x}", "mov", 0)


async def test_concurrent_tasks_of_one_source_build_its_index_once() -> None:
    cache = FrameIndexCache()
    builds = 0

    async def build() -> FrameIndex:
        nonlocal builds
        builds += 1
        await asyncio.sleep(0.05)
        return index(100)

    got = await asyncio.gather(*(cache.get(key(1), build) for _ in range(5)))
    assert builds == 1 and all(g is got[0] for g in got)
    assert (cache.misses, cache.hits) == (1, 4)
    other = await cache.get(key(2), build)
    assert builds == 2 and other is not got[0]


async def test_a_failed_build_is_not_kept() -> None:
    cache = FrameIndexCache()

    async def broken() -> FrameIndex:
        raise RuntimeError("unreadable")

    with pytest.raises(RuntimeError):
        await cache.get(key(1), broken)

    async def fine() -> FrameIndex:
        return index(10)

    assert (await cache.get(key(1), fine)).frames == 10 and cache.misses == 2


async def test_least_recently_used_indexes_go_when_the_budget_is_full() -> None:
    cache = FrameIndexCache(max_frames=250)
    for n in (1, 2):
        await cache.get(key(n), lambda: asyncio.sleep(0, index(100)))
    await cache.get(key(1), lambda: asyncio.sleep(0, index(100)))  # 1 is now the newest
    await cache.get(key(3), lambda: asyncio.sleep(0, index(100)))  # 300 > 250: 2 goes
    assert cache.frames == 200 and cache.misses == 3
    await cache.get(key(1), lambda: asyncio.sleep(0, index(100)))
    assert cache.misses == 3  # still there
    await cache.get(key(4), lambda: asyncio.sleep(0, index(1000)))  # over the whole budget
    assert cache.frames == 200 and cache.misses == 4
