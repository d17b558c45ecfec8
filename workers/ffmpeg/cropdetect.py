"""`"crop": "auto"`: find the picture area with ffmpeg's cropdetect, read strictly.

cropdetect reports only as log lines, so its output is treated as untrusted text: the last
line of the form `[Parsed_cropdetect_N @ 0x...] ... crop=W:H:X:Y` counts, its numbers are
bounded by the frame, and a missing or malformed report fails the job clearly. With
`reset=0` the area is the union over every analysed frame, so a dark scene does not shrink
it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from workers.ffmpeg import hardened
from workers.ffmpeg.graph import secs
from workers.ffmpeg.probe import Probe, invalid

ANALYSE_MS = 60_000  # at most the first minute of the (trimmed) source is looked at
KEEP_LINES = 20
_LINE = re.compile(
    r"^\[Parsed_cropdetect_\d{1,3} @ 0x[0-9a-f]{1,16}\] .{0,300}"
    r" crop=(?P<w>-?\d{1,5}):(?P<h>-?\d{1,5}):(?P<x>-?\d{1,5}):(?P<y>-?\d{1,5})\s*$"
)


@dataclass(frozen=True)
class Detected:
    width: int
    height: int
    x: int
    y: int


def argv(ffmpeg: str, source: Path, main: Probe, start_ms: int, end_ms: int | None) -> list[str]:
    """The analysis run: decode the trimmed source's video, report, write nothing."""
    window = ANALYSE_MS if end_ms is None else min(ANALYSE_MS, end_ms - start_ms)
    seek = {"ss": secs(start_ms)} if start_ms else {}
    inp = hardened.source(source, main.demuxer, t=secs(window), **seek)
    video = inp[str(main.video_index)].filter("cropdetect", limit=24, round=2, reset=0)
    return hardened.compile_argv(hardened.null_sink([video], an=None), ffmpeg, loglevel="info")


def parse(lines: Sequence[str], width: int, height: int) -> Detected | None:
    """The detected area, None when no picture was found (e.g. an all-black source)."""
    found = [m for line in lines if (m := _LINE.match(line.strip()))]
    if not found:
        raise invalid("crop detection printed no result")
    m = found[-1]
    w, h, x, y = (int(m.group(k)) for k in ("w", "h", "x", "y"))
    # An all-black source reports an inverted (negative) box: no picture area.
    if w < 16 or h < 16 or x < 0 or y < 0 or x + w > width or y + h > height:
        return None
    return Detected(w, h, x, y)
