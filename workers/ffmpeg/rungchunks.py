"""A chunked package's task kinds (`jobs.chunking.plan_package_chunks`).

- `rung-chunk`: frames [slot * K, (slot + 1) * K) of one rung (the last slot: to the end),
  K = `chunk_segments` GOPs. Frames are counted on the rung's constant-frame-rate timeline
  (the `fps` filter's output ticks), so a chunk is the same frames a one-pass rendition
  makes there, and it starts on a segment boundary with the rendition's encoder settings
  (`abr.RungVideo`): every chunk starts with an IDR frame that is also a segment start.
  The input is seeked to the chunk's first tick without dropping frames (`-noaccurate_seek`:
  decoding starts at the keyframe before it) and the seek is added back to the timestamps,
  so the `fps` filter picks exactly the source frames a one-pass encode picks.
- `rung-audio`: the source's audio once, AAC stereo 48 kHz, shared by every rung.
- `rung-stitch`: one rung's chunks joined by stream copy with the audio into the
  `rendition.mp4` the package task reads, checked (frames, chunk lengths, A/V sync).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from jobs.errors import PermanentError
from jobs.packaging.specs import TaskInput, parse_task_spec
from jobs.specbase import Strict
from workers.executor import DepOutput, ExecutionContext, ExecutionResult
from workers.ffmpeg import chunks, hardened
from workers.ffmpeg.abr import RungVideo, audio_options, rung_video
from workers.ffmpeg.chunked import link_chunks, verify_stitched
from workers.ffmpeg.keyframes import frame_index
from workers.ffmpeg.probe import probe
from workers.ffmpeg.probecache import ProbeCache
from workers.ffmpeg.rendition import RENDITION_FILE, FfmpegTask

AUDIO_FILE = "audio.m4a"
_SHARED = ("width", "height", "fps", "gop", "video_codecs")  # equal in every chunk of a rung


class _Spec(Strict):
    deps: dict[str, str] = Field(default_factory=dict)  # dependency name -> task key


class _RungSpec(_Spec):
    """A rung's video settings and the chunk length, as a rung's chunks and stitch have."""

    height: int = Field(ge=2, le=2160)
    video_codec: Literal["h264"]
    video_bitrate_kbps: int = Field(ge=100, le=50_000)
    segment_seconds: int = Field(ge=1, le=30)
    chunk_segments: int = Field(ge=1, le=600)


class RungChunkSpec(_RungSpec):
    kind: Literal["rung-chunk"]
    source: dict[str, str]
    inputs: list[TaskInput] = Field(min_length=1, max_length=1)
    slot: int = Field(ge=0, lt=1000)
    last: bool


class RungAudioSpec(_Spec):
    kind: Literal["rung-audio"]
    source: dict[str, str]
    inputs: list[TaskInput] = Field(min_length=1, max_length=1)
    audio_codec: Literal["aac"]
    audio_bitrate_kbps: int = Field(ge=32, le=320)


class RungStitchSpec(_RungSpec):
    kind: Literal["rung-stitch"]
    inputs: list[TaskInput] = Field(max_length=0)
    slots: int = Field(ge=1, le=1000)
    audio: bool


def chunk_command(
    exe: str, source: Path, demuxer: str, video_index: int, rung: RungVideo, out: Path,
    first: int, end: int | None,
) -> list[str]:  # fmt: skip
    """Rung frames [first, end) (`end` None: to the end of the source), video only."""
    seek = math.floor(first * 1_000_000 / rung.fps) / 1_000_000  # at or before tick `first`
    # From the keyframe before the first tick, no frame dropped (-noaccurate_seek -ss).
    options = {"noaccurate_seek": None, "ss": f"{seek:.6f}"} if first > 0 else {}
    inp = hardened.source(source, demuxer, **options)
    video = inp[str(video_index)].filter("setpts", f"PTS+{seek:.6f}/TB")  # the one-pass clock
    trim: dict[str, Any] = {"start_pts": first}  # in ticks: the fps filter's time base is 1/fps
    opts: dict[str, Any] = {**rung.options(), "an": None, "sn": None, "format": "mp4"}
    if end is not None:
        trim["end_pts"] = end
        opts["frames:v"] = end - first
    video = rung.filters(video).filter("trim", **trim).filter("setpts", "PTS-STARTPTS")
    return hardened.compile_argv(hardened.sink([video], out, **opts), exe, progress=True)


def audio_command(exe: str, source: Path, demuxer: str, out: Path, kbps: int) -> list[str]:
    """The source's first audio stream as the rungs carry it, once for all of them."""
    audio = hardened.source(source, demuxer)["a:0"]
    opts = {**audio_options(kbps), "vn": None, "sn": None, "format": "mp4"}
    return hardened.compile_argv(hardened.sink([audio], out, **opts), exe, progress=True)


class RungChunkExecutor(FfmpegTask):
    """`kind="rung-chunk"`. Output: the chunk file; metadata: slot, first, frames and the
    rung's size, frame rate, GOP and codec string. A slot past the end makes no file."""

    async def execute(self, ctx: ExecutionContext) -> ExecutionResult:
        spec = parse_task_spec(RungChunkSpec, ctx.job.spec)
        exe, source = self.ffmpeg, ctx.inputs[0]
        main = await self.preflight(source, spec.inputs[0].digest)
        assert main.video_index is not None  # preflight refuses a source without video
        rung = rung_video(main, spec.height, spec.video_bitrate_kbps, spec.segment_seconds)
        size = spec.chunk_segments * rung.gop
        first = spec.slot * size
        end = None if spec.last else first + size
        out = ctx.workdir / f"chunk-{spec.slot:04d}.mp4"
        argv = chunk_command(exe, source, main.demuxer, main.video_index, rung, out, first, end)
        info: dict[str, Any] = {
            "slot": spec.slot, "first": first, "width": rung.width, "height": rung.height,
            "fps": rung.fps, "gop": rung.gop, "video_codecs": rung.video_codecs,
        }  # fmt: skip
        ctx.report_progress(0.0)
        try:
            await self.run(ctx, argv)
            made = await probe(out, self.output_limits, ffmpeg=exe, label="the chunk")
            if made.video_index is None:  # the source ended before this slot
                out.unlink(missing_ok=True)
                ctx.report_progress(1.0)
                return ExecutionResult(path=None, media_type=None, metadata={**info, "frames": 0})
            index = await frame_index(out, made.demuxer, made.video_index, self.output_limits)
            if end is not None and index.frames > size:
                raise PermanentError(
                    f"chunk {spec.slot} has {index.frames} frames, more than {size}",
                    code="invalid_output",
                )
        except BaseException:
            out.unlink(missing_ok=True)
            raise
        ctx.report_progress(1.0)
        metadata = {**info, "frames": index.frames, "size_bytes": made.size_bytes}
        return ExecutionResult(path=out, media_type="video/mp4", metadata=metadata)


class RungAudioExecutor(FfmpegTask):
    """`kind="rung-audio"`. Output: `audio.m4a`; metadata: its duration."""

    async def execute(self, ctx: ExecutionContext) -> ExecutionResult:
        spec = parse_task_spec(RungAudioSpec, ctx.job.spec)
        exe, source = self.ffmpeg, ctx.inputs[0]
        main = await self.preflight(source, spec.inputs[0].digest)
        if not main.has_audio:
            raise PermanentError("the source has no audio stream", code="invalid_input")
        out = ctx.workdir / AUDIO_FILE
        argv = audio_command(exe, source, main.demuxer, out, spec.audio_bitrate_kbps)
        ctx.report_progress(0.0)
        try:
            await self.run(ctx, argv, expected_duration_ms=main.duration_ms)
            made = await probe(out, self.output_limits, ffmpeg=exe, label="the audio")
        except BaseException:
            out.unlink(missing_ok=True)
            raise
        ctx.report_progress(1.0)
        metadata = {"duration_ms": made.duration_ms, "size_bytes": made.size_bytes}
        return ExecutionResult(path=out, media_type="audio/mp4", metadata=metadata)


class RungStitchExecutor(FfmpegTask):
    """`kind="rung-stitch"`: a rung's chunks (deps `<rung>-chunk-NNNN`, in slot order) and
    the audio (dep `audio`) as the rung's `rendition.mp4`, with the rendition's metadata."""

    async def execute(self, ctx: ExecutionContext) -> ExecutionResult:
        spec = parse_task_spec(RungStitchSpec, ctx.job.spec)
        names = sorted(n for n in ctx.deps if n != "audio")
        if len(names) != spec.slots:
            raise PermanentError(
                f"the stitch has {len(names)} chunks, not {spec.slots}", code="invalid_spec"
            )
        deps = [ctx.deps[n] for n in names]
        shared = _shared(deps)
        files, counts = link_chunks(ctx.workdir, deps, "mp4")
        _check_lengths(counts, spec.chunk_segments * int(shared["gop"]))
        expected = sum(counts)
        audio_dep = ctx.deps.get("audio") if spec.audio else None
        audio = audio_dep.path if audio_dep is not None else None
        if spec.audio and audio is None:
            raise PermanentError("the audio task made no file", code="stitch_mismatch")
        listing = chunks.write_listing(ctx.workdir, files)
        out = ctx.workdir / RENDITION_FILE
        muxer = {"movflags": "+faststart", "map_metadata": -1, "f": "mp4"}
        ctx.report_progress(0.0)
        try:
            await self.run(ctx, chunks.stitch_command(self.ffmpeg, listing, audio, out, muxer))
            made = await verify_stitched(out, expected, audio_dep, self.output_limits)
        except BaseException:
            out.unlink(missing_ok=True)
            raise
        ctx.report_progress(1.0)
        metadata = {
            **{k: shared[k] for k in ("width", "height", "fps", "gop", "video_codecs")},
            "video_bitrate_kbps": spec.video_bitrate_kbps,
            "has_audio": audio is not None,
            "duration_ms": made.duration_ms,
            "size_bytes": made.size_bytes,
            "frames": expected,
            "chunks": len(files),
        }
        return ExecutionResult(
            path=None, media_type=None, metadata=metadata, files={RENDITION_FILE: out}
        )


def _shared(deps: list[DepOutput]) -> dict[str, Any]:
    """The rung's settings, which every chunk must report alike."""
    first = {k: deps[0].output.get(k) for k in _SHARED}
    for i, dep in enumerate(deps):
        if {k: dep.output.get(k) for k in _SHARED} != first:
            raise PermanentError(f"chunk {i} was encoded differently", code="stitch_mismatch")
    if not isinstance(first["gop"], int) or first["gop"] < 1:
        raise PermanentError("the chunks report no GOP", code="stitch_mismatch")
    return first


def _check_lengths(counts: list[int], size: int) -> None:
    """Every chunk is full (`size` frames) up to the one where the source ends, and the
    slots after it are empty."""
    ended = False
    for slot, frames in enumerate(counts):
        if ended and frames:
            raise PermanentError(
                f"chunk {slot} has frames after a chunk shorter than {size}",
                code="stitch_mismatch",
            )
        if slot < len(counts) - 1 and frames > size:
            raise PermanentError(
                f"chunk {slot} has {frames} frames, more than {size}", code="stitch_mismatch"
            )
        ended = ended or frames < size


def rung_chunk_executors(
    limits: Any = None, *, ffmpeg: str | None = None, probes: ProbeCache | None = None
) -> dict[str, Any]:
    """{"rung-chunk", "rung-audio", "rung-stitch"} -> executor, sharing one probe cache."""
    probes = probes or ProbeCache()
    return {
        "rung-chunk": RungChunkExecutor(limits, ffmpeg=ffmpeg, probes=probes),
        "rung-audio": RungAudioExecutor(limits, ffmpeg=ffmpeg, probes=probes),
        "rung-stitch": RungStitchExecutor(limits, ffmpeg=ffmpeg, probes=probes),
    }

