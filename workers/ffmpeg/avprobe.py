"""Stream details the command builder needs beyond `probe.py`: pixel format and bit depth,
colour primaries/transfer/matrix, field order, audio channels and sample rate.

They are read through libavformat's API (PyAV), never parsed from printed text, in a child
process (`avchild.py`, run by path so it imports nothing of vidjobs) under the same rlimits and
wall-clock limit as ffmpeg, with the same protocol and demuxer allowlists. Only the codec
parameters are read; nothing is decoded. What the child prints is still treated as
untrusted: every value is checked against a table or a bound, and unknown values become None.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from workers.ffmpeg.probe import FORMAT_WHITELIST, INPUT_FORMATS, check_input_path, invalid
from workers.ffmpeg.run import Limits, _apply_rlimits, kill_group

# libavutil's AVCOL_* numbers -> the names ffmpeg's -color_* options and zscale take.
PRIMARIES = {
    1: "bt709", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "film",
    9: "bt2020", 10: "smpte428", 11: "smpte431", 12: "smpte432",
}  # fmt: skip
TRANSFERS = {
    1: "bt709", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "linear",
    13: "iec61966-2-1", 14: "bt2020-10", 15: "bt2020-12", 16: "smpte2084", 18: "arib-std-b67",
}  # fmt: skip
MATRICES = {
    1: "bt709", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 9: "bt2020nc", 10: "bt2020c",
}  # fmt: skip
RANGES = {1: "tv", 2: "pc"}
FIELD_ORDERS = {1: "progressive", 2: "tt", 3: "bb", 4: "tb", 5: "bt"}
HDR_TRANSFERS = {"smpte2084": "pq", "arib-std-b67": "hlg"}
_MAX_OUTPUT = 64 * 1024
_CHILD = Path(__file__).with_name("avchild.py")  # run by path: imports only av and json


@dataclass(frozen=True)
class MediaInfo:
    """What one input holds, as far as colour, fields and audio layout go."""

    pix_fmt: str | None = None
    bit_depth: int | None = None
    color_primaries: str | None = None
    color_transfer: str | None = None
    color_matrix: str | None = None
    color_range: str | None = None
    field_order: str | None = None  # progressive, tt, bb, tb, bt; None: unknown
    audio_channels: int | None = None
    audio_layout: str | None = None
    audio_sample_rate: int | None = None

    @property
    def hdr(self) -> str | None:
        """'pq' or 'hlg' for an HDR transfer, else None."""
        return HDR_TRANSFERS.get(self.color_transfer or "")


def parse_info(text: str) -> MediaInfo:
    """Strictly read the child's JSON: known names and bounded numbers only."""
    try:
        data = json.loads(text)
    except ValueError:
        raise invalid("reading the stream details gave no usable answer") from None
    if not isinstance(data, dict):
        raise invalid("reading the stream details gave no usable answer")
    v: dict[str, Any] = data["video"] if isinstance(data.get("video"), dict) else {}
    a: dict[str, Any] = data["audio"] if isinstance(data.get("audio"), dict) else {}
    pix = v.get("pix_fmt")
    layout = a.get("layout")
    return MediaInfo(
        pix_fmt=pix if isinstance(pix, str) and pix.isascii() and pix.isalnum() else None,
        bit_depth=_bounded(v.get("bits"), 1, 16),
        color_primaries=PRIMARIES.get(_bounded(v.get("primaries"), 0, 255) or 0),
        color_transfer=TRANSFERS.get(_bounded(v.get("transfer"), 0, 255) or 0),
        color_matrix=MATRICES.get(_bounded(v.get("matrix"), 0, 255) or 0),
        color_range=RANGES.get(_bounded(v.get("range"), 0, 255) or 0),
        field_order=FIELD_ORDERS.get(_bounded(v.get("field_order"), 0, 255) or 0),
        audio_channels=_bounded(a.get("channels"), 1, 64),
        audio_layout=layout if isinstance(layout, str) and len(layout) <= 32 else None,
        audio_sample_rate=_bounded(a.get("rate"), 1000, 768_000),
    )


def _bounded(value: Any, lo: int, hi: int) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        return None
    return value


async def media_info(
    path: Path,
    demuxer: str,
    video_index: int | None,
    audio_index: int | None,
    limits: Limits | None = None,
) -> MediaInfo:
    """Run the child on one (already preflighted) input and return what it found."""
    limits = limits or Limits()
    check_input_path(path)
    if demuxer not in INPUT_FORMATS:
        raise invalid(f"input format {demuxer!r} is not allowed")
    argv = [sys.executable, "-I", str(_CHILD), demuxer, f"file:{path}"]
    argv += [str(-1 if video_index is None else video_index)]
    argv += [str(-1 if audio_index is None else audio_index), FORMAT_WHITELIST]
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True,
        close_fds=True,
        preexec_fn=partial(_apply_rlimits, limits.rlimits(limits.probe_timeout_s)),
    )
    try:
        async with asyncio.timeout(limits.probe_timeout_s):
            assert proc.stdout is not None
            out = await proc.stdout.read(_MAX_OUTPUT)
            await proc.wait()
    except BaseException:
        kill_group(proc.pid)
        raise
    if proc.returncode != 0:
        raise invalid("the stream details of an input could not be read")
    return parse_info(out.decode("utf-8", "replace"))
