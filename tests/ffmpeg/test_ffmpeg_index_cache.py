"""The chunk executor reads a source's frame index and probe once per digest (real PyAV,
real file): the chunks of one source planned in one worker share one index build and one
probe, and equal what an index built for each gives; another digest builds its own."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from tests.ffmpeg.test_ffmpeg_chunks import sources
from tests.support.packages import context
from workers.ffmpeg.chunked import ChunkExecutor
from workers.ffmpeg.executor import FfmpegExecutor
from workers.ffmpeg.keyframes import frame_index, split
from workers.ffmpeg.probe import probe

__all__ = ["sources"]

pytestmark = pytest.mark.ffmpeg


async def test_the_chunks_of_one_source_share_one_index_build(
    ffmpeg_bin: str, sources: dict[str, Path], tmp_path: Path
) -> None:
    src = sources["closed_gop"]  # 7.3 s: 4 slots of 2 s
    executor = ChunkExecutor(FfmpegExecutor(ffmpeg=ffmpeg_bin))
    digest = "sha256:" + "c" * 64

    def spec(slot: int, digest: str = digest) -> dict[str, object]:
        return {"kind": "chunk", "inputs": [{"digest": digest}], "chunk_seconds": 2,
                "slots": 4, "slot": slot}  # fmt: skip

    planned = [
        (await executor.plan(context(spec(i), [src], tmp_path / str(i))))[0] for i in range(4)
    ]
    assert (executor.indexes.misses, executor.indexes.hits) == (1, 3)
    # The source's probe too is remembered by its digest, not read again by each chunk.
    assert executor.edit.probes is not None
    assert executor.edit.probes.digests() == [digest]
    p = await probe(src, ffmpeg=ffmpeg_bin)
    assert p.video_index is not None
    fresh = split(
        await frame_index(src, p.demuxer, p.video_index), [Fraction(2 * i) for i in range(4)]
    )
    assert planned == fresh and [c.frames for c in planned] == [50, 50, 50, 33]
    await executor.plan(context(spec(0, "sha256:" + "d" * 64), [src], tmp_path / "other"))
    assert executor.indexes.misses == 2
