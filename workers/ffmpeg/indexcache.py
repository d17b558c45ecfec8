"""Frame indexes by content digest, kept in the worker process.

Every chunk task of a chunked edit needs the same index of its source (`keyframes.
frame_index`: a PyAV demux of the whole file). A worker that runs several chunks of one
source builds it once: the runner hands a task its inputs checked against their digests, so
the digest names the bytes the index was read from. Concurrent tasks of one source wait for
one build. Entries are evicted least recently used once the cached indexes hold more than
`max_frames` frames in all (an index costs some 40 bytes a frame).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from workers.ffmpeg.keyframes import FrameIndex

Key = tuple[str, str, int]  # content digest, demuxer, video stream index
DEFAULT_MAX_FRAMES = 1_000_000  # about an hour at 30 fps; some 40 MB


class FrameIndexCache:
    def __init__(self, max_frames: int = DEFAULT_MAX_FRAMES) -> None:
        self.max_frames = max_frames
        self._items: OrderedDict[Key, FrameIndex] = OrderedDict()
        self._building: dict[Key, asyncio.Lock] = {}
        self.hits = 0
        self.misses = 0

    @property
    def frames(self) -> int:
        return sum(index.frames for index in self._items.values())

    async def get(self, key: Key, build: Callable[[], Awaitable[FrameIndex]]) -> FrameIndex:
        """The cached index of `key`, or `build()`'s (then cached); a failed build caches
        nothing and the next caller builds again."""
        found = self._take(key)
        if found is not None:
            return found
        lock = self._building.setdefault(key, asyncio.Lock())
        try:
            async with lock:
                found = self._take(key)
                if found is not None:
                    return found
                self.misses += 1
                index = await build()
                self._put(key, index)
                return index
        finally:
            if not lock.locked():
                self._building.pop(key, None)

    def _take(self, key: Key) -> FrameIndex | None:
        index = self._items.get(key)
        if index is not None:
            self._items.move_to_end(key)
            self.hits += 1
        return index

    def _put(self, key: Key, index: FrameIndex) -> None:
        if index.frames > self.max_frames:
            return  # larger than the whole budget: not kept
        self._items[key] = index
        while self.frames > self.max_frames:
            self._items.popitem(last=False)
