"""Probes of a worker's inputs, remembered by content digest.

A task's inputs are verified, content-addressed copies (`workers.inputs`), so a source
already probed under its digest is not read again: the chunks of one source, its rungs and
its sprites, and later jobs of it, reuse the probe. Every check of `preflight` still runs on
each use against the caller's limits, and a file whose size differs from the remembered
probe's is probed again. One cache serves a worker process's executors
(`workers.compose.make_executor`).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

from workers.ffmpeg.probe import Probe, preflight
from workers.ffmpeg.run import Limits

PROBE_CACHE_SIZE = 4096  # probes of distinct sources kept (about 1 KiB each)


class ProbeCache:
    def __init__(self, size: int = PROBE_CACHE_SIZE) -> None:
        self.size = size
        self._found: OrderedDict[str, Probe] = OrderedDict()

    def digests(self) -> list[str]:
        """The digests remembered, least recently used first."""
        return list(self._found)

    async def preflight(
        self, path: Path, digest: str | None, limits: Limits, *, ffmpeg: str, **checks: Any
    ) -> Probe:
        """`preflight(path, limits, ...)` of an input whose content digest is `digest` (None
        or empty: not known, probed and not remembered)."""
        known = self._found.get(digest) if digest else None
        found = await preflight(path, limits, ffmpeg=ffmpeg, known=known, **checks)
        if digest:
            self._found[digest] = found
            self._found.move_to_end(digest)
            while len(self._found) > self.size:
                self._found.popitem(last=False)
        return found
