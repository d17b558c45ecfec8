"""A worker process's verified inputs, kept on its local disk by content digest.

A chunked edit's chunk and audio tasks, a ladder's rungs and a retry all read the same
source. Without this, every one of them fetched and hashed the whole file again: on S3 a
full download per task (a 60 s source in 12 chunks came down 13 times). Here the first task
to need a digest fetches it as before (`Storage.fetch` or a pinned S3 version, both verify
the bytes against the digest while they stream) into the cache dir; it and every later task
get a hard link of that file in their own scratch dir. A digest names its bytes, so a file
verified once in this process's private dir needs no second check. So a pinned S3 source
overwritten after submission still runs from here if this worker holds its bytes: the job
gets exactly the bytes its key names, as before, but no `source_changed`.

The dir is this process's (`inputs-<host>-<pid>-...` in the scratch dir): removed when the
runner stops, and a killed worker's is swept with its attempt dirs (`Scratch.clean_orphans`).
Its size is bounded (`input_cache_bytes`, least recently used out first; 0: no cache).
Removing an entry never disturbs a task that uses it: the task's link keeps the file. One
digest is fetched once at a time: a second task for it waits for the first's copy.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path

from jobs.storage.base import DIGEST

Fetch = Callable[[Path], Awaitable[int]]  # writes the verified bytes to the path; their size


class InputCache:
    def __init__(self, make_dir: Callable[[], Path], max_bytes: int) -> None:
        self._make_dir = make_dir
        self._dir: Path | None = None
        self.max_bytes = max_bytes
        self._sizes: OrderedDict[str, int] = OrderedDict()  # digest -> size, oldest use first
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}  # digest -> lock, its users
        self.fetches = 0  # digests fetched (misses)
        self.hits = 0

    @property
    def held_bytes(self) -> int:
        return sum(self._sizes.values())

    async def place(self, digest: str, dest: Path, fetch: Fetch) -> None:
        """`dest` holds the verified bytes of `digest`: a link of the cached copy, fetched
        with `fetch` first when this process has none."""
        m = DIGEST.match(digest)
        if self.max_bytes <= 0 or m is None:
            await fetch(dest)
            return
        lock, users = self._locks.get(digest, (asyncio.Lock(), 0))
        self._locks[digest] = (lock, users + 1)
        try:
            async with lock:
                cached = self._root() / m.group(1)
                if digest in self._sizes and _link(cached, dest):
                    self._sizes.move_to_end(digest)
                    self.hits += 1
                    return
                self._sizes.pop(digest, None)  # gone from disk (swept): fetch it again
                self.fetches += 1
                part = cached.with_suffix(".part")
                try:
                    size = await fetch(part)
                    if size > self.max_bytes:  # too large to keep: this task's copy only
                        os.replace(part, dest)
                        return
                    os.chmod(part, 0o444)  # as the local store's own files: read only
                    os.replace(part, cached)
                finally:
                    part.unlink(missing_ok=True)
                self._sizes[digest] = size
                self._evict()
                if not _link(cached, dest):
                    raise FileNotFoundError(f"the cached copy of {digest} vanished")
        finally:
            lock, users = self._locks[digest]
            if users > 1:
                self._locks[digest] = (lock, users - 1)
            else:
                del self._locks[digest]

    def close(self) -> None:
        """Remove the cache dir (tasks' links keep their files)."""
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        self._sizes.clear()

    def _root(self) -> Path:
        if self._dir is None or not self._dir.is_dir():
            self._dir = self._make_dir()
            self._sizes.clear()
        return self._dir

    def _evict(self) -> None:
        """Least recently used entries out until the rest fits (the newest always stays)."""
        while self.held_bytes > self.max_bytes and len(self._sizes) > 1:
            old, _ = self._sizes.popitem(last=False)
            m = DIGEST.match(old)
            if m is not None and self._dir is not None:
                (self._dir / m.group(1)).unlink(missing_ok=True)


def _link(cached: Path, dest: Path) -> bool:
    """A hard link of the cached file at `dest`; False if the cached file is gone."""
    try:
        os.link(cached, dest)
    except FileNotFoundError:
        return False
    return True
