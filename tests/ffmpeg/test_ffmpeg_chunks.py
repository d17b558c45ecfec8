"""Chunked encoding's pieces on real ffmpeg: the PyAV frame index, keyframe-aligned splits,
frame-exact chunk encodes and the stream-copy stitch. Chunks and the audio are made by the
edit's own command builder (`build_command` with a `Window`), as the chunk and audio tasks do.

The strongest check is per-frame: with a lossless encoder the stitched output must decode to
exactly the frames a single-pass decode of the source gives (framemd5), every frame once, in
order, on sources with closed and open GOPs, B-frames, a variable frame rate and an odd final
chunk. PSNR parity of lossy chunked encodes is measured on real footage.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Mapping
from fractions import Fraction
from pathlib import Path

import pytest

from jobs.canonical import canonical_edit
from jobs.chunking import starts_ms
from jobs.errors import PermanentError
from jobs.spec import EditRequest
from tests.ffmpeg.conftest import lavfi_av, make_clip, make_context
from tests.support.realmedia import BIKES, real_clip
from workers.ffmpeg import chunks
from workers.ffmpeg.binary import encoders
from workers.ffmpeg.chunked import chunk_window
from workers.ffmpeg.command import Window, build_command
from workers.ffmpeg.executor import FfmpegExecutor
from workers.ffmpeg.keyframes import (
    INDEXED_SEEK,
    Chunk,
    FrameIndex,
    frame_index,
    parse_index,
    split,
)
from workers.ffmpeg.probe import Probe, probe
from workers.ffmpeg.run import Limits

pytestmark = pytest.mark.ffmpeg

LOSSLESS = {"container": "mp4", "video_codec": "h264", "crf": 0, "preset": "ultrafast"}
LOSSY = {"container": "mp4", "video_codec": "h264", "crf": 23, "preset": "veryfast"}
AUDIO = {"container": "mkv", "video_codec": "none", "audio_codec": "aac"}  # the audio task's
DIGEST = "sha256:" + "3" * 64


def x264(*params: str) -> list[str]:
    return ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", *params]


@pytest.fixture(scope="module")
def sources(ffmpeg_bin: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("chunk-sources")
    return {
        # 7.3 s at 25 fps, closed GOPs of 1 s with B-frames: chunks of 2 s leave an odd last one.
        "closed_gop": make_clip(
            ffmpeg_bin, d / "closed.mp4", *lavfi_av(7.3), *x264("-g", "25", "-bf", "2"),
            "-c:a", "aac", "-shortest",
        ),
        # Open GOPs: leading B-frames of each I-frame reference the GOP before it.
        "open_gop": make_clip(
            ffmpeg_bin, d / "open.mp4", *lavfi_av(6.0, audio=False),
            *x264("-bf", "3", "-x264-params", "open-gop=1:keyint=25:min-keyint=25:scenecut=0"),
        ),
        # Matroska with B-frames: ffmpeg's seek guesses from dts and lands on the keyframe
        # before the chunk's own, so only the chunk's `trim` keeps that GOP out.
        "mkv_bf": make_clip(
            ffmpeg_bin, d / "bf.mkv", *lavfi_av(6.0, audio=False), *x264("-g", "30", "-bf", "3"),
        ),
        # Variable frame rate: every fifth frame dropped, timestamps kept (mkv, ms ticks).
        "vfr": make_clip(
            ffmpeg_bin, d / "vfr.mkv", *lavfi_av(6.0, audio=False),
            "-vf", "select='not(eq(mod(n\\,5)\\,3))'", "-fps_mode", "passthrough",
            *x264("-g", "20"),
        ),
        # Intra-only: every frame a keyframe.
        "intra": make_clip(
            ffmpeg_bin, d / "intra.mkv", *lavfi_av(4.2, audio=False), "-c:v", "mjpeg",
            "-q:v", "3", "-pix_fmt", "yuvj420p",
        ),
        # MPEG-TS (a start time of 1.4 s, B-frames): its seek bisects the file and can land
        # past the target, so its chunks keep the accurate seek.
        "mpegts": make_clip(
            ffmpeg_bin, d / "ts.ts", *lavfi_av(6.0), *x264("-g", "25", "-bf", "2"),
            "-c:a", "aac", "-shortest", "-f", "mpegts",
        ),
    }


INDEXED = ["closed_gop", "open_gop", "vfr", "intra", "mkv_bf"]  # mp4 and Matroska: `INDEXED_SEEK`
LANDS = ["closed_gop", "open_gop", "vfr", "intra"]  # seeks that land on the chunk's keyframe


def framemd5(ffmpeg: str, path: Path) -> list[str]:
    out = subprocess.run(
        [ffmpeg, "-nostdin", "-v", "error", "-i", str(path), "-map", "0:v:0", "-pix_fmt",
         "yuv420p", "-f", "framemd5", "-"],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    return [line.rsplit(",", 1)[1].strip() for line in out.splitlines() if not line.startswith("#")]


def ffprobe_streams(ffmpeg: str, path: Path) -> list[dict[str, object]]:
    exe = str(Path(ffmpeg).with_name("ffprobe"))
    out = subprocess.run(
        [exe, "-v", "error", "-show_streams", "-of", "json", str(path)],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    return list(json.loads(out)["streams"])


def edit_argv(
    ffmpeg: str, src: Path, p: Probe, out: Path, output: Mapping[str, object],
    window: Window | None = None,
) -> list[str]:
    """The argv the edit executor builds for `output` of `src` (one chunk with `window`)."""
    req = EditRequest.model_validate(
        {"source": {"digest": DIGEST}, "operations": [], "output": output}
    )
    spec = canonical_edit(req, [DIGEST])
    return build_command(ffmpeg, spec, [src], [p], out, encoders(ffmpeg), window=window).argv


async def chunked(
    ffmpeg: str, src: Path, work: Path, chunk_seconds: float, output: Mapping[str, object],
    accurate: bool = False,
) -> tuple[Path, FrameIndex, list[Chunk]]:
    """What the chunk, audio and stitch tasks do, in one process; `accurate`: every chunk
    with the accurate seek, whatever the demuxer."""
    limits = Limits()
    p = await probe(src, ffmpeg=ffmpeg)
    assert p.video_index is not None and p.duration_ms
    index = await frame_index(src, p.demuxer, p.video_index, limits)
    times = [Fraction(ms, 1000) for ms in starts_ms(p.duration_ms, chunk_seconds)]
    planned = split(index, times)
    work.mkdir(parents=True, exist_ok=True)
    made = []
    for c in planned:
        if c.frames == 0:
            continue
        out = work / f"chunk-{c.slot:04d}.mp4"
        window = Window(float(c.before), c.frames) if accurate else chunk_window(c, p.demuxer)
        await chunks.run(edit_argv(ffmpeg, src, p, out, output, window), limits, {})
        made.append(out)
    audio = None
    if p.has_audio:
        audio = work / "audio.mkv"
        await chunks.run(edit_argv(ffmpeg, src, p, audio, AUDIO), limits, {})
    listing = chunks.write_listing(work, made)
    stitched = work / "stitched.mp4"
    await chunks.run(chunks.stitch_command(ffmpeg, listing, audio, stitched, {}), limits, {})
    await chunks.verify_frames(stitched, "mp4", index.frames, limits)
    return stitched, index, planned


@pytest.mark.parametrize(
    ("name", "accurate"), [(name, False) for name in [*INDEXED, "mpegts"]] + [
        (name, True) for name in INDEXED
    ],
)  # fmt: skip
async def test_every_source_frame_comes_out_once_in_order(
    name: str, accurate: bool, sources: dict[str, Path], ffmpeg_bin: str, tmp_path: Path
) -> None:
    src = sources[name]
    work = tmp_path / "work"
    stitched, index, planned = await chunked(ffmpeg_bin, src, work, 2.0, LOSSLESS, accurate)
    assert sum(c.frames for c in planned) == index.frames
    assert [c.first for c in planned if c.frames] == sorted({c.first for c in planned if c.frames})
    assert len([c for c in planned if c.frames]) >= 3, "the source was really split"
    assert all(c.first in index.keyframes for c in planned if c.frames)
    assert framemd5(ffmpeg_bin, stitched) == framemd5(ffmpeg_bin, src)


@pytest.mark.parametrize("name", LANDS)
async def test_an_indexed_seek_lands_on_the_chunks_own_keyframe(
    name: str, sources: dict[str, Path], ffmpeg_bin: str
) -> None:
    # What the chunk's seek saves: decoding starts at the chunk's first frame, not at the
    # keyframe before it (then thrown away). Decoded with the chunk's own input options and
    # no trim, timestamps copied: the first frame shown is the chunk's first.
    src = sources[name]
    p = await probe(src, ffmpeg=ffmpeg_bin)
    assert p.video_index is not None and p.demuxer in INDEXED_SEEK
    index = await frame_index(src, p.demuxer, p.video_index, Limits())
    chunk = split(index, [Fraction(2 * slot) for slot in range(3)])[2]
    window = chunk_window(chunk, p.demuxer)
    assert window.start_pts == chunk.start_pts and chunk.first in index.keyframes
    opts = window.input_options()
    options = [arg for k, v in opts.items() for arg in (f"-{k}", *([] if v is None else [v]))]
    shown = subprocess.run(
        [ffmpeg_bin, "-nostdin", "-hide_banner", "-copyts", *options, "-i", str(src),
         "-map", f"0:{p.video_index}", "-vf", "showinfo", "-frames:v", "1", "-f", "null", "-"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stderr  # fmt: skip
    assert int(re.findall(r" pts:\s*(-?\d+)", shown)[0]) == index.pts[chunk.first]


async def test_mpegts_chunks_keep_the_accurate_seek(
    sources: dict[str, Path], ffmpeg_bin: str
) -> None:
    p = await probe(sources["mpegts"], ffmpeg=ffmpeg_bin)
    assert p.demuxer == "mpegts" and p.video_index is not None
    index = await frame_index(sources["mpegts"], p.demuxer, p.video_index, Limits())
    chunk = split(index, [Fraction(2 * slot) for slot in range(3)])[2]
    window = chunk_window(chunk, p.demuxer)
    assert window == Window(float(chunk.before), chunk.frames)
    assert "noaccurate_seek" not in window.input_options()


async def test_the_odd_final_chunk_and_audio_stay_in_sync(
    sources: dict[str, Path], ffmpeg_bin: str, tmp_path: Path
) -> None:
    src = sources["closed_gop"]
    stitched, _, planned = await chunked(ffmpeg_bin, src, tmp_path / "work", 2.0, LOSSY)
    assert [c.frames for c in planned] == [50, 50, 50, 33]  # 7.3 s at 25 fps, cut on 1 s GOPs
    streams = ffprobe_streams(ffmpeg_bin, stitched)
    video = next(s for s in streams if s["codec_type"] == "video")
    audio = next(s for s in streams if s["codec_type"] == "audio")
    frame = 1 / 25
    assert abs(float(str(video["duration"])) - 7.32) <= frame
    assert abs(float(str(audio["duration"])) - float(str(video["duration"]))) <= 2 * frame
    assert abs(float(str(audio["start_time"])) - float(str(video["start_time"]))) <= frame


async def test_vfr_timestamps_survive_the_stitch(
    sources: dict[str, Path], ffmpeg_bin: str, tmp_path: Path
) -> None:
    src = sources["vfr"]
    stitched, index, _ = await chunked(ffmpeg_bin, src, tmp_path / "work", 2.0, LOSSY)
    made = await frame_index(stitched, "mp4", 0, Limits())
    gaps_in = [float((b - a) * index.time_base) for a, b in zip(index.pts, index.pts[1:], strict=False)]
    gaps_out = [float((b - a) * made.time_base) for a, b in zip(made.pts, made.pts[1:], strict=False)]
    assert len(gaps_out) == len(gaps_in)
    assert max(abs(a - b) for a, b in zip(gaps_in, gaps_out, strict=True)) <= 0.002


async def test_chunked_quality_is_within_half_a_db_of_single_pass(
    ffmpeg_bin: str, tmp_path: Path
) -> None:
    src = real_clip(BIKES)
    stitched, _, planned = await chunked(ffmpeg_bin, src, tmp_path / "work", 2.0, LOSSY)
    assert len([c for c in planned if c.frames]) >= 4
    single = tmp_path / "single.mp4"  # the same edit in one pass
    p = await probe(src, ffmpeg=ffmpeg_bin)
    await chunks.run(edit_argv(ffmpeg_bin, src, p, single, LOSSY), Limits(), {})

    def psnr(made: Path) -> float:
        proc = subprocess.run(
            [ffmpeg_bin, "-nostdin", "-hide_banner", "-nostats", "-i", str(made), "-i", str(src),
             "-filter_complex", "[0:v][1:v]psnr", "-f", "null", "-"],
            capture_output=True, text=True, timeout=120, check=True,
        )  # fmt: skip
        return float(re.findall(r"average:(\d+(?:\.\d+)?)", proc.stderr)[-1])

    assert abs(psnr(stitched) - psnr(single)) <= 0.5


def test_a_crafted_index_is_refused_not_trusted() -> None:
    good = {"time_base": [1, 25], "start_us": 0, "pts": [0, 1, 2], "keyframes": [0]}
    assert parse_index(json.dumps(good)).frames == 3
    for bad in (
        {**good, "pts": [0, "1", 2]},
        {**good, "pts": [0, 1, 1]},
        {**good, "keyframes": [1]},  # does not start on a keyframe
        {**good, "time_base": [0, 25]},
        {**good, "pts": []},
        {"pts": [0]},
    ):
        with pytest.raises(PermanentError):
            parse_index(json.dumps(bad))
    with pytest.raises(PermanentError):
        parse_index("not json")


def test_slots_that_hold_no_keyframe_are_empty_and_the_rest_is_covered() -> None:
    # Keyframes every 5 s, chunks of 2 s: the last three slots find no keyframe of their own.
    index = FrameIndex(Fraction(1, 10), Fraction(0), tuple(range(120)), (0, 50, 100))
    planned = split(index, [Fraction(2 * slot) for slot in range(6)])
    assert [(c.first, c.end) for c in planned] == [
        (0, 50), (50, 100), (100, 120), (120, 120), (120, 120), (120, 120),
    ]  # fmt: skip
    assert sum(c.frames for c in planned) == 120
    assert planned[1].before == Fraction(49 + 50, 2) / 10  # half-way back to the frame before
    assert planned[1].after == Fraction(50 + 51, 2) / 10  # half-way on to the frame after
    assert planned[1].start_pts == 50  # the first tick past half-way back (49.5)
    assert (planned[0].before, planned[0].after, planned[0].start_pts) == (Fraction(0), Fraction(0), 0)


async def test_a_chunk_is_its_frames_only_without_audio_even_with_loudnorm(
    sources: dict[str, Path], tmp_path: Path
) -> None:
    # The audio task makes the sound (and measures it); a chunk of a loudnorm edit has no
    # audio to measure, so the edit executor must not run a measuring pass for it.
    ctx = make_context(tmp_path / "work", [sources["closed_gop"]], [{"op": "loudnorm"}], LOSSY)
    made = await FfmpegExecutor().encode(ctx, ctx.job.spec, Window(0.98, 30))
    assert made.path is not None
    found = await probe(made.path)
    assert not found.has_audio
    index = await frame_index(made.path, found.demuxer, 0, Limits())
    assert index.frames == 30
    assert index.pts[0] == 0  # each chunk from 0: the stitch's concat adds them up
