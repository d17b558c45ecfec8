"""Reading media through libavformat's API (PyAV), never from printed text.

`avchild.py` runs by path in a child process (it imports nothing of vidjobs, and `avpool.py`
keeps it for the next file) under the same rlimits and wall-clock limit as ffmpeg, with the
same protocol and demuxer allowlists, and prints JSON: the container, its duration and
streams, and the main streams' details (pixel format and bit depth, colour
primaries/transfer/matrix, field order, display rotation, HDR10 mastering display and
content light level, audio channels and sample rate). The child, not the worker, parses the
untrusted file, so a crash or a runaway allocation in libav* costs one child. What it prints
is still treated as untrusted: every value is checked against a table or a bound here (and
in `probe.py`, `hdr10.py`), and unknown values become None.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jobs.errors import PermanentError
from workers.ffmpeg.avpool import CHILDREN, Died
from workers.ffmpeg.hdr10 import Hdr10
from workers.ffmpeg.hdr10 import parse as parse_hdr10
from workers.ffmpeg.run import Limits

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
_MAX_OUTPUT = 1024 * 1024  # a file with thousands of streams is refused, not misread


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
    hdr10: Hdr10 | None = None  # mastering display and content light level, checked

    @property
    def hdr(self) -> str | None:
        """'pq' or 'hlg' for an HDR transfer, else None."""
        return HDR_TRANSFERS.get(self.color_transfer or "")


def parse_info(data: dict[str, Any]) -> MediaInfo:
    """Strictly read the child's stream details: known names and bounded numbers only."""
    v: dict[str, Any] = data["video"] if isinstance(data.get("video"), dict) else {}
    a: dict[str, Any] = data["audio"] if isinstance(data.get("audio"), dict) else {}
    pix = v.get("pix_fmt")
    layout = a.get("layout")
    return MediaInfo(
        pix_fmt=pix if isinstance(pix, str) and pix.isascii() and pix.isalnum() else None,
        bit_depth=bounded(v.get("bits"), 1, 16),
        color_primaries=PRIMARIES.get(bounded(v.get("primaries"), 0, 255) or 0),
        color_transfer=TRANSFERS.get(bounded(v.get("transfer"), 0, 255) or 0),
        color_matrix=MATRICES.get(bounded(v.get("matrix"), 0, 255) or 0),
        color_range=RANGES.get(bounded(v.get("range"), 0, 255) or 0),
        field_order=FIELD_ORDERS.get(bounded(v.get("field_order"), 0, 255) or 0),
        audio_channels=bounded(a.get("channels"), 1, 64),
        audio_layout=layout if isinstance(layout, str) and len(layout) <= 32 else None,
        audio_sample_rate=bounded(a.get("rate"), 1000, 768_000),
        hdr10=parse_hdr10(v.get("mastering"), v.get("light")),
    )


def bounded(value: Any, lo: int, hi: int) -> int | None:
    """`value` if it is an int (not a bool) within lo..hi, else None."""
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        return None
    return value


async def read_media(
    path: Path, format_whitelist: str, limits: Limits, label: str = "the source"
) -> dict[str, Any]:
    """Ask a probe child about one (already checked) input file; its JSON answer as a dict."""
    args: list[str | int] = [f"file:{path}", format_whitelist, limits.max_pixels]
    rlimits = limits.rlimits(limits.probe_timeout_s)
    try:
        answer = await asyncio.to_thread(
            CHILDREN.ask, args, rlimits, limits.probe_timeout_s, _MAX_OUTPUT
        )
    except TimeoutError:
        raise PermanentError(
            f"reading {label} took longer than {limits.probe_timeout_s:g} s and was stopped",
            code="invalid_input",
        ) from None
    if isinstance(answer, Died):
        if answer.returncode < 0:
            why = f"was stopped by a resource limit (signal {-answer.returncode})"
        else:
            why = "failed"
        raise PermanentError(f"probing {label} {why}", code="invalid_input")
    try:
        data = json.loads(answer.decode("utf-8", "replace"))
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise PermanentError(f"probing {label} gave no usable answer", code="invalid_input")
    return data
