"""A source's frame index for chunked encoding: every frame's presentation time, in order,
and which frames are keyframes, read by PyAV in a child process (`kfchild.py`) under the
same rlimits, wall clock and allowlists as ffmpeg. Nothing printed by a tool is parsed: the
child's JSON is checked value by value (integers, bounds, sorted) before it is used.

`split` turns an index into chunks: frame ranges that start on keyframes. Slot `i` starts at
the first keyframe at or after its planned start time, so every chunk task of a job computes
the same boundaries from the same bytes; the start times were fixed at submission from the
source's duration (`jobs.chunking.starts_ms`).

A chunk can be reached two ways (`Chunk.before`, `Chunk.after`). An accurate seek to half-way
back to the frame before its first lands on the keyframe before that and drops what it
decodes up to the chunk: a whole GOP decoded for nothing, every chunk. The demuxers of
`INDEXED_SEEK` seek on an index of presentation times to the last keyframe at or before the
target, so a seek to half-way on to the frame after the chunk's first lands on its own
keyframe; a `trim` at `start_pts` (half-way back, in the stream's ticks, timestamps copied)
then drops anything a demuxer's guess put before it. Other demuxers (MPEG-TS seeks by
bisecting the file and can land past the target) keep the accurate seek.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from workers.ffmpeg.probe import FORMAT_WHITELIST, INPUT_FORMATS, check_input_path, invalid
from workers.ffmpeg.run import Limits, contained, kill_group

_CHILD = Path(__file__).with_name("kfchild.py")  # run by path: imports only av and json
MAX_FRAMES = 2_000_000  # 4 h at 120 fps; more is refused, not truncated
INDEXED_SEEK = frozenset({"mov", "matroska"})  # `Probe.demuxer` names
_MAX_OUTPUT = 32 * 1024 * 1024


@dataclass(frozen=True)
class FrameIndex:
    """The frames of one video stream in presentation order."""

    time_base: Fraction
    start: Fraction  # the container's start time, in seconds (what ffmpeg's -ss counts from)
    pts: tuple[int, ...]  # every frame's presentation time, ascending
    keyframes: tuple[int, ...]  # indexes into `pts` of the keyframes, ascending

    @property
    def frames(self) -> int:
        return len(self.pts)

    def seconds(self, frame: int) -> Fraction:
        """Frame `frame`'s time from the container's start."""
        return self.pts[frame] * self.time_base - self.start


@dataclass(frozen=True)
class Chunk:
    """Frames [first, end) of the source, and where to seek for them, in seconds from the
    container's start: `before` is half-way back to the frame before `first` (an accurate
    seek's target), `after` half-way on to the frame after it (a seek that lands on the
    keyframe `first`); `start_pts` is the first tick past half-way back. All 0 for the
    first chunk, which needs no seek."""

    slot: int
    first: int
    end: int
    before: Fraction
    after: Fraction
    start_pts: int

    @property
    def frames(self) -> int:
        return self.end - self.first


def parse_index(text: str) -> FrameIndex:
    """The child's JSON, checked: anything malformed is an invalid input, never a crash."""
    try:
        raw = json.loads(text)
        num, den = (int(v) for v in raw["time_base"])
        pts = [_int(v) for v in raw["pts"]]
        keys = {_int(v) for v in raw["keyframes"]}
        start = Fraction(_int(raw["start_us"]), 1_000_000)
    except (ValueError, TypeError, KeyError) as exc:
        raise invalid("the frame index of the source could not be read") from exc
    if num <= 0 or den <= 0 or not pts or len(pts) > MAX_FRAMES:
        raise invalid("the source's video stream has no usable frames")
    pts.sort()  # decode order -> presentation order
    if any(a == b for a, b in itertools.pairwise(pts)):
        raise invalid("the source's video has two frames with the same presentation time")
    first_key = pts.index(min(keys)) if keys else None
    if first_key != 0:
        raise invalid("the source's video does not start with a keyframe")
    key_idx = tuple(i for i, p in enumerate(pts) if p in keys)
    return FrameIndex(Fraction(num, den), start, tuple(pts), key_idx)


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"not an integer: {value!r}")
    return value


def split(index: FrameIndex, times: Sequence[Fraction]) -> list[Chunk]:
    """One chunk per planned start time (seconds, ascending, the first 0), covering every
    frame once; a slot with no keyframe of its own is empty (frames 0) and its task makes
    nothing. The last slot takes the rest."""
    starts = [0]
    for time in times[1:]:
        at = next((k for k in index.keyframes if k > starts[-1] and index.seconds(k) >= time), None)
        starts.append(at if at is not None else index.frames)
    ends = [*starts[1:], index.frames]
    return [
        _chunk(index, slot, first, max(first, end))
        for slot, (first, end) in enumerate(zip(starts, ends, strict=True))
    ]


def _chunk(index: FrameIndex, slot: int, first: int, end: int) -> Chunk:
    if first <= 0 or first >= index.frames:
        return Chunk(slot, first, end, Fraction(0), Fraction(0), 0)
    at = index.seconds(first)
    back = (index.seconds(first - 1) + at) / 2
    on = (at + index.seconds(first + 1)) / 2 if first + 1 < index.frames else at + (at - back)
    start_pts = -((-index.pts[first - 1] - index.pts[first]) // 2)  # ceil of the middle
    return Chunk(slot, first, end, back, on, start_pts)


async def frame_index(
    path: Path, demuxer: str, video_index: int, limits: Limits | None = None
) -> FrameIndex:
    """Run the child on one (already preflighted) input and return its checked index."""
    limits = limits or Limits()
    check_input_path(path)
    if demuxer not in INPUT_FORMATS:
        raise invalid(f"input format {demuxer!r} is not allowed")
    argv = [sys.executable, "-I", str(_CHILD), demuxer, f"file:{path}", str(video_index)]
    argv += [FORMAT_WHITELIST, str(MAX_FRAMES)]
    command, preexec = contained(argv, limits.rlimits(limits.timeout_s))
    proc = await asyncio.create_subprocess_exec(
        *command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
        preexec_fn=preexec,
    )
    try:
        async with asyncio.timeout(limits.probe_timeout_s * 10):
            assert proc.stdout is not None
            out = await proc.stdout.read(_MAX_OUTPUT)
            await proc.wait()
    except BaseException:
        kill_group(proc.pid)
        raise
    if proc.returncode != 0:
        raise invalid("the frame index of the source could not be read")
    return parse_index(out.decode("utf-8", "replace"))
