"""A chunked rung's frames on real ffmpeg: the chunks of a rung (`rungchunks.chunk_command`),
stitched, decode to exactly the frames of a one-pass rendition of the same rung, on sources
with closed and open GOPs, B-frames, a variable frame rate and intra-only frames.

Both sides are encoded losslessly here (the rung's bitrate options swapped for `-qp 0`, the
only change to the commands), so any frame dropped, doubled or shifted at a chunk boundary
changes the framemd5 list; and every chunk starts on a keyframe at a whole GOP."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.ffmpeg.test_ffmpeg_chunks import framemd5, sources
from workers.ffmpeg import chunks
from workers.ffmpeg.abr import rendition_command, rung_video
from workers.ffmpeg.keyframes import frame_index
from workers.ffmpeg.probe import probe
from workers.ffmpeg.run import Limits
from workers.ffmpeg.rungchunks import chunk_command

__all__ = ["sources"]

pytestmark = pytest.mark.ffmpeg

_RATE = ("-b:v", "-maxrate", "-bufsize", "-profile:v")  # lossless is not High profile


def lossless(argv: list[str]) -> list[str]:
    """The same command with x264's rate control swapped for lossless (and no audio)."""
    out: list[str] = []
    skip = False
    for i, arg in enumerate(argv):
        if skip:
            skip = False
            continue
        if arg in (*_RATE, "-c:a", "-b:a", "-ar", "-ac", "-map") and i < len(argv) - 1:
            if arg == "-map" and argv[i + 1] != "a:0" and not argv[i + 1].endswith(":a:0"):
                out.append(arg)
                continue
            skip = True
            continue
        out.append(arg)
    return [*out[:-1], "-qp", "0", "-an", out[-1]]


@pytest.mark.parametrize("name", ["closed_gop", "open_gop", "vfr", "intra"])
async def test_a_stitched_rung_is_frame_for_frame_its_one_pass_rendition(
    ffmpeg_bin: str, sources: dict[str, Path], tmp_path: Path, name: str
) -> None:
    src = sources[name]
    limits = Limits()
    p = await probe(src, ffmpeg=ffmpeg_bin)
    assert p.video_index is not None and p.height
    rung = rung_video(p, p.height, 800, 1)
    whole = tmp_path / "one-pass.mp4"
    plan = rendition_command(
        ffmpeg_bin, src, p, whole, height=p.height, video_kbps=800, audio_kbps=128,
        segment_seconds=1,
    )  # fmt: skip
    await chunks.run(lossless(plan.argv), limits, {})
    expected = framemd5(ffmpeg_bin, whole)
    size = 2 * rung.gop  # chunks of 2 segments, the last to the end, one more past it
    n = -(-len(expected) // size)
    made, counts = [], []
    for slot in range(n + 1):
        out = tmp_path / f"chunk-{slot:04d}.mp4"
        end = None if slot == n - 1 else slot * size + size
        argv = chunk_command(ffmpeg_bin, src, p.demuxer, p.video_index, rung, out, slot * size, end)
        await chunks.run(lossless(argv), limits, {})
        got = await probe(out, ffmpeg=ffmpeg_bin)
        if slot == n:
            assert got.video_index is None  # past the end: an empty file, a chunk of 0 frames
            break
        assert got.video_index is not None
        index = await frame_index(out, got.demuxer, got.video_index, limits)
        assert index.keyframes[0] == 0  # every chunk starts on a keyframe
        made.append(out)
        counts.append(index.frames)
    assert n >= 2 and counts[:-1] == [size] * (n - 1) and 0 < counts[-1] <= size, counts
    stitched = tmp_path / "stitched.mp4"
    listing = chunks.write_listing(tmp_path, made)
    await chunks.run(chunks.stitch_command(ffmpeg_bin, listing, None, stitched, {}), limits, {})
    assert framemd5(ffmpeg_bin, stitched) == expected
