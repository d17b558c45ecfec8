"""What the chunk executor's frame index cache saves: one PyAV frame index of a source (what
every chunk task built for itself before) against a cache hit, per chunk task.

    .venv/bin/python -m bench.frame_index [--rounds 5] [--seconds 60] [--chunk-seconds 10]

A 60 s 720p25 h264/aac test source is indexed `rounds` times by `keyframes.frame_index` (the
sandboxed PyAV child: a demux of every packet) and read as often from a `FrameIndexCache`
holding it, interleaved; median and spread (min-max). The saving per chunked job is
(chunks - 1) x one build per worker process that runs its chunks. Not part of the suite.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import tempfile
import time
from pathlib import Path

from bench.stats import load_average, spread
from workers.ffmpeg.indexcache import FrameIndexCache
from workers.ffmpeg.keyframes import frame_index
from workers.ffmpeg.probe import probe
from workers.ffmpeg.testmedia import make_clip


async def main(rounds: int, seconds: float, chunk_seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        src = make_clip(Path(tmp) / "src.mp4", seconds=seconds, size="1280x720", rate=25)
        p = await probe(src)
        assert p.video_index is not None
        video = p.video_index

        cache = FrameIndexCache()
        key = ("sha256:" + "0" * 64, p.demuxer, video)
        await cache.get(key, lambda: frame_index(src, p.demuxer, video))
        built: list[float] = []
        hit: list[float] = []
        frames = 0
        for _ in range(rounds):
            t = time.perf_counter()
            frames = (await frame_index(src, p.demuxer, video)).frames
            built.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            await cache.get(key, lambda: frame_index(src, p.demuxer, video))
            hit.append((time.perf_counter() - t) * 1000)
        chunks = math.ceil(seconds / chunk_seconds)
        print(f"source: {seconds:g} s 1280x720 25 fps, {frames} frames; {load_average()}")
        print(f"index build (PyAV child), ms: {spread(built, '{:.0f}')}")
        print(f"cache hit, ms: {spread(hit, '{:.3f}')}")
        saved = (chunks - 1) * sorted(built)[len(built) // 2] / 1000
        print(f"{chunks} chunks of {chunk_seconds:g} s on one worker: {saved:.1f} s of index "
              "builds saved per job")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--chunk-seconds", type=float, default=10)
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.seconds, args.chunk_seconds))
