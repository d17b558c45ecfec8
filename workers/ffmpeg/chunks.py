"""Chunked encoding's three commands: one chunk's exact frame range, the whole audio once,
and the stitch that joins the chunks by stream copy and verifies what it made.

Commands are built with ffmpeg-python's graph API (an argument list, never a shell) and run
by the hardened runner. A chunk seeks its input half-way back to the frame before its first
frame (`keyframes.Chunk.seek`), so the first frame shown is exactly its first, then takes
exactly its frame count with timestamps passed through (variable frame rate kept). Every
chunk is its own encoder run, so it starts with an IDR frame: a closed GOP at each boundary.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import ffmpeg

from jobs.errors import PermanentError
from workers.ffmpeg.keyframes import Chunk, FrameIndex, frame_index
from workers.ffmpeg.run import Limits, raise_for_exit, run_ffmpeg

GLOBAL_ARGS = ("-nostdin", "-hide_banner", "-loglevel", "error", "-nostats")
CHUNK_NAME = re.compile(r"^chunk-\d{4}\.(mp4|mkv|mov)$")
VideoChain = Callable[[Any], Any]  # an ffmpeg-python video stream in, the edit's chain out


def _compiled(node: Any, exe: str) -> list[str]:
    argv: list[str] = node.global_args(*GLOBAL_ARGS).overwrite_output().compile(cmd=exe)
    return argv


def _input(path: Path, demuxer: str, **options: Any) -> Any:
    return ffmpeg.input(f"file:{path}", f=demuxer, protocol_whitelist="file", **options)


def chunk_command(
    exe: str, src: Path, demuxer: str, chunk: Chunk, out: Path,
    encoder: Mapping[str, Any], chain: VideoChain | None = None,
) -> list[str]:
    """Frames [chunk.first, chunk.end) of `src`, video only, encoded with `encoder`."""
    seek = {"ss": f"{float(chunk.seek):.6f}"} if chunk.seek else {}
    video = _input(src, demuxer, **seek).video
    if chain is not None:
        video = chain(video)
    video = video.filter("setpts", "PTS-STARTPTS")  # each chunk from 0: the concat adds them up
    options = {"frames:v": chunk.frames, "fps_mode": "passthrough", **encoder}
    return _compiled(ffmpeg.output(video, f"file:{out}", an=None, sn=None, **options), exe)


def audio_command(
    exe: str, src: Path, demuxer: str, out: Path, encoder: Mapping[str, Any]
) -> list[str]:
    """The source's whole audio, once (chunked audio would click and gap at boundaries)."""
    audio = _input(src, demuxer).audio
    return _compiled(ffmpeg.output(audio, f"file:{out}", vn=None, sn=None, **encoder), exe)


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
