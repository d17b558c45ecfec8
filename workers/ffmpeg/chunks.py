"""Chunked encoding's stitch: the chunk files joined by stream copy with the audio, and the
check of what it made (every chunk frame once).

The chunks and the audio are the edit's own commands (`command.build_command`, with a
`Window` for a chunk): a chunk seeks its input so that the first frame shown is exactly its
first (`chunked.chunk_window`: onto its own keyframe where the demuxer seeks by an index, else
accurately to half-way back to the frame before it), then takes exactly its frame count
with timestamps passed through (variable frame rate kept). Every chunk is its own encoder
run, so it starts with an IDR frame: a closed GOP at each boundary.
The stitch is built with ffmpeg-python's graph API (an argument list, never a shell) and run
by the hardened runner.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ffmpeg

from jobs.errors import PermanentError
from workers.ffmpeg.keyframes import FrameIndex, frame_index
from workers.ffmpeg.run import Limits, raise_for_exit, run_ffmpeg

GLOBAL_ARGS = ("-nostdin", "-hide_banner", "-loglevel", "error", "-nostats")
CHUNK_NAME = re.compile(r"^chunk-\d{4}\.(mp4|mkv|mov)$")


def _compiled(node: Any, exe: str) -> list[str]:
    argv: list[str] = node.global_args(*GLOBAL_ARGS).overwrite_output().compile(cmd=exe)
    return argv


def write_listing(workdir: Path, chunk_files: Sequence[Path]) -> Path:
    """The concat demuxer's list, of our own chunk names only (safe mode refuses others)."""
    lines = []
    for path in chunk_files:
        if path.parent != workdir or not CHUNK_NAME.match(path.name):
            raise ValueError(f"not a chunk file of this attempt: {path.name!r}")
        lines.append(f"file '{path.name}'\n")
    listing = workdir / "chunks.txt"
    listing.write_text("".join(lines))
    return listing


def stitch_command(
    exe: str, listing: Path, audio: Path | None, out: Path, muxer: Mapping[str, Any]
) -> list[str]:
    """The chunks joined by stream copy, the audio muxed beside them."""
    video = ffmpeg.input(f"file:{listing}", f="concat", safe=1, protocol_whitelist="file")
    streams = [video.video]
    if audio is not None:
        streams.append(ffmpeg.input(f"file:{audio}", protocol_whitelist="file").audio)
    return _compiled(ffmpeg.output(*streams, f"file:{out}", c="copy", **muxer), exe)


async def run(argv: list[str], limits: Limits, redact: Mapping[str, str]) -> None:
    result = await run_ffmpeg(argv, limits, timeout_s=limits.timeout_s)
    raise_for_exit(result, redact, limits)


async def verify_frames(path: Path, demuxer: str, expected: int, limits: Limits) -> FrameIndex:
    """The stitched file holds exactly the expected number of frames, or the task fails."""
    index = await frame_index(path, demuxer, 0, limits)
    if index.frames != expected:
        raise PermanentError(
            f"the stitched video has {index.frames} frames, the chunks should make {expected}",
            code="stitch_mismatch",
        )
    return index
