"""The three task kinds of a chunked edit (`jobs.chunking.plan_chunks`).

- `chunk`: exactly one slot's frames of the source, with the edit's video operations and
  output encoder settings and no audio: the edit executor's own command (`build_command`)
  with a `Window`. A slot with no frames (no keyframe of its own) makes no file.
- `audio`: the edit's whole audio once: the edit itself with `video_codec: none`.
- `stitch`: the chunk files joined by stream copy with the audio, checked (frame count,
  duration against the audio) and returned as the job's output, shaped like a single pass.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import re
import shutil
from collections.abc import Awaitable, Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

from jobs.errors import PermanentError
from workers.executor import DepOutput, ExecutionContext, ExecutionResult
from workers.ffmpeg import chunks
from workers.ffmpeg.command import MEDIA_TYPES, Window, output_options, parse_spec
from workers.ffmpeg.executor import FfmpegExecutor, output_metadata
from workers.ffmpeg.indexcache import FrameIndexCache
from workers.ffmpeg.keyframes import INDEXED_SEEK, Chunk, FrameIndex, frame_index, split
from workers.ffmpeg.probe import Probe, probe
from workers.ffmpeg.run import Limits

_AUDIO_FIELDS = ("audio_codec", "audio_bitrate_kbps", "audio_sample_rate", "audio_channels")
_AUDIO_OPS = ("volume", "loudnorm")  # the chunkable operations that change the audio
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
SYNC_TOLERANCE_MS = 100  # stitched duration vs the longer of its video and its audio


def edit_of(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The canonical edit a chunked task works on, with the job's inputs (an edit spec)."""
    edit = spec.get("edit")
    if not isinstance(edit, dict) or not isinstance(spec.get("inputs"), list):
        raise PermanentError("the task's spec has no edit", code="invalid_spec")
    return {**edit, "inputs": spec["inputs"]}


def _digest(spec: Mapping[str, Any]) -> str | None:
    """The main source's content digest (what the runner checked the input against)."""
    inputs = spec.get("inputs")
    first = inputs[0] if isinstance(inputs, list) and inputs else None
    digest = first.get("digest") if isinstance(first, dict) else None
    return digest if isinstance(digest, str) and DIGEST.match(digest) else None


def _int(spec: Mapping[str, Any], name: str, low: int, high: int) -> int:
    value = spec.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise PermanentError(f"the task's {name!r} is not valid", code="invalid_spec")
    return value


def start_times(spec: Mapping[str, Any], n: int) -> list[Fraction]:
    """The chunks' planned start times in seconds (`jobs.chunking.starts_ms`), checked: `n`
    integers in ms, ascending from 0. A task planned before start times were part of the
    spec has `chunk_seconds` instead: chunks that far apart."""
    starts = spec.get("starts_ms")
    if starts is None:
        seconds = spec.get("chunk_seconds")
        if not isinstance(seconds, int | float) or not 2 <= seconds <= 600:
            raise PermanentError("the task's 'chunk_seconds' is not valid", code="invalid_spec")
        return [slot * Fraction(seconds) for slot in range(n)]
    if (
        not isinstance(starts, list)
        or len(starts) != n
        or any(isinstance(v, bool) or not isinstance(v, int) for v in starts)
        or starts[0] != 0
        or any(a >= b for a, b in itertools.pairwise(starts))
    ):
        raise PermanentError(
            f"the task's 'starts_ms' must be {n} ascending integers from 0", code="invalid_spec"
        )
    return [Fraction(v, 1000) for v in starts]


def chunk_window(chunk: Chunk, demuxer: str) -> Window:
    """How the chunk's command reaches its frames (`keyframes.Chunk`): a seek that lands on
    its keyframe where the demuxer seeks by an index (`INDEXED_SEEK`), else an accurate one."""
    if demuxer in INDEXED_SEEK:
        return Window(float(chunk.after), chunk.frames, chunk.start_pts)
    return Window(float(chunk.before), chunk.frames)


class ChunkExecutor:
    """`kind="chunk"`: one slot. Output metadata: slot, first frame, frames. The source's
    frame index is built once per source digest in this process (`indexes`)."""

    def __init__(self, edit: FfmpegExecutor, indexes: FrameIndexCache | None = None) -> None:
        self.edit = edit
        self.indexes = indexes or FrameIndexCache()

    async def plan(self, ctx: ExecutionContext) -> tuple[Chunk, Window]:
        spec = ctx.job.spec
        n = _int(spec, "slots", 1, 1000)
        slot = _int(spec, "slot", 0, n - 1)
        times = start_times(spec, n)
        digest = _digest(spec)
        main = await self.edit.preflight(ctx.inputs[0], digest)
        if main.video_index is None:
            raise PermanentError("a chunk needs a video stream", code="invalid_input")
        source, video, limits = ctx.inputs[0], main.video_index, self.edit.limits

        def build() -> Awaitable[FrameIndex]:
            return frame_index(source, main.demuxer, video, limits)

        if digest is None:
            index = await build()
        else:
            index = await self.indexes.get((digest, main.demuxer, video), build)
        chunk = split(index, times)[slot]
        return chunk, chunk_window(chunk, main.demuxer)

    async def execute(self, ctx: ExecutionContext) -> ExecutionResult:
        chunk, window = await self.plan(ctx)
        info = {"slot": chunk.slot, "first": chunk.first, "frames": chunk.frames}
        if chunk.frames == 0:
            ctx.report_progress(1.0)
            return ExecutionResult(path=None, media_type=None, metadata=info)
        made = await self.edit.encode(ctx, edit_of(ctx.job.spec), window)
        return dataclasses.replace(made, metadata={**made.metadata, **info})


class AudioExecutor:
    """`kind="audio"`: the edit's audio operations over the whole source, audio only."""

    def __init__(self, edit: FfmpegExecutor) -> None:
        self.edit = edit

    async def execute(self, ctx: ExecutionContext) -> ExecutionResult:
        spec = edit_of(ctx.job.spec)
        output = {k: v for k, v in spec["output"].items() if k in _AUDIO_FIELDS and v is not None}
        output |= {"container": "mkv", "video_codec": "none"}  # holds any audio codec we make
        ops = [op for op in spec["operations"] if op.get("op") in _AUDIO_OPS]
        audio = {**spec, "operations": ops, "output": output, "inputs": spec["inputs"][:1]}
        main_only = ExecutionContext(  # the watermark, if any, is the chunks' business
            ctx.job, ctx.inputs[:1], ctx.report_progress, make_workdir=lambda: ctx.workdir
        )
        return await self.edit.encode(main_only, audio)


class StitchExecutor:
    """`kind="stitch"`: the chunks (deps `chunk-NNNN`) and the audio (dep `audio`) as one."""

    def __init__(self, edit: FfmpegExecutor) -> None:
        self.edit = edit

    async def execute(self, ctx: ExecutionContext) -> ExecutionResult:
        spec = ctx.job.spec
        n = _int(spec, "slots", 1, 1000)
        req = parse_spec(edit_of(spec))
        container = req.output.container
        ext = container.value if container.value in ("mp4", "mkv", "mov") else "mkv"
        deps = [ctx.deps.get(f"chunk-{slot:04d}") for slot in range(n)]
        files, counts = link_chunks(ctx.workdir, deps, ext)
        expected = sum(counts)
        audio_dep = ctx.deps.get("audio") if spec.get("audio") else None
        audio = audio_dep.path if audio_dep is not None else None
        if spec.get("audio") and audio is None:
            raise PermanentError("the audio task made no file", code="stitch_mismatch")
        listing = chunks.write_listing(ctx.workdir, files)
        out = ctx.workdir / f"stitched.{container.value}"
        exe, limits = self.edit.ffmpeg, self.edit.limits
        ctx.report_progress(0.0)
        try:
            argv = chunks.stitch_command(exe, listing, audio, out, output_options(container))
            await chunks.run(argv, limits, {str(ctx.workdir): "<workdir>", exe: "ffmpeg"})
            out_limits = dataclasses.replace(limits, max_input_bytes=limits.max_output_bytes)
            made = await verify_stitched(out, expected, audio_dep, out_limits)
        except BaseException:
            out.unlink(missing_ok=True)
            raise
        ctx.report_progress(1.0)
        metadata = {
            **output_metadata(made),
            "frames": expected,
            "chunks": len(files),
        }
        return ExecutionResult(path=out, media_type=MEDIA_TYPES[container], metadata=metadata)


def link_chunks(
    workdir: Path, deps: Sequence[DepOutput | None], ext: str
) -> tuple[list[Path], list[int]]:
    """The chunk files (deps in slot order) under their chunk names in `workdir`, and each
    slot's frame count (0: the slot made no file)."""
    files: list[Path] = []
    counts: list[int] = []
    for slot, dep in enumerate(deps):
        frames = dep.output.get("frames") if dep is not None else None
        if dep is None or isinstance(frames, bool) or not isinstance(frames, int) or frames < 0:
            raise PermanentError(f"chunk {slot} has no usable result", code="stitch_mismatch")
        counts.append(frames)
        if frames == 0:
            continue
        if dep.path is None:
            raise PermanentError(f"chunk {slot} made no file", code="stitch_mismatch")
        dest = workdir / f"chunk-{slot:04d}.{ext}"
        try:
            os.link(dep.path, dest)
        except OSError:
            shutil.copyfile(dep.path, dest)
        files.append(dest)
    if not files:
        raise PermanentError("no chunk made any frames", code="stitch_mismatch")
    return files, counts


async def verify_stitched(
    out: Path, expected: int, audio: DepOutput | None, limits: Limits
) -> Probe:
    """The stitched file, probed: exactly `expected` frames, its audio in sync."""
    made = await probe(out, limits, label="the stitched output")
    index = await chunks.verify_frames(out, made.demuxer, expected, limits)
    check_sync(made.duration_ms, index, audio)
    return made


def check_sync(duration_ms: int | None, index: Any, audio: DepOutput | None) -> None:
    """The stitched file lasts as long as the longer of its video and its audio."""
    last = index.frames - 1
    step = index.seconds(last) - index.seconds(last - 1) if last > 0 else 0
    video_ms = round(float(index.seconds(last) + step) * 1000)
    audio_ms = audio.output.get("duration_ms") if audio is not None else None
    longest = max(video_ms, audio_ms if isinstance(audio_ms, int) else 0)
    if duration_ms is None or abs(duration_ms - longest) > SYNC_TOLERANCE_MS:
        raise PermanentError(
            f"the stitched output lasts {duration_ms} ms, its video {video_ms} ms and its "
            f"audio {audio_ms} ms: out of sync",
            code="stitch_mismatch",
        )


def chunked_executors(edit: FfmpegExecutor) -> dict[str, Any]:
    """{"chunk", "audio", "stitch"} -> executor, sharing the edit executor (and its probes)."""
    return {
        "chunk": ChunkExecutor(edit),
        "audio": AudioExecutor(edit),
        "stitch": StitchExecutor(edit),
    }
