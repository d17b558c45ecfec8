"""Ladders: the rungs a package is encoded at, and the bitrate each rung gets.

`"ladder": "auto"` follows MediaConvert's automated ABR in shape (a standard set of rungs no
taller than the source, bitrates by resolution, a top and a bottom bitrate, at most N rungs)
with a fixed table instead of per-title analysis. The table is Apple's HLS authoring
guidance for H.264 at 30 fps, rounded: 1080p 6 Mb/s, 720p 3 Mb/s, 540p 2 Mb/s, 360p 0.8 Mb/s.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from jobs.packaging.models import Package

# (height, video kbps), tallest first: the standard set "auto" picks from.
STANDARD: tuple[tuple[int, int], ...] = (
    (2160, 16_000),
    (1440, 10_000),
    (1080, 6_000),
    (720, 3_000),
    (540, 2_000),
    (360, 800),
    (240, 400),
)
AUTO_MAX_RUNGS = 4
AUTO_MAX_KBPS = 8_000  # MediaConvert's default maxAbrBitrate
AUTO_MIN_KBPS = 600  # MediaConvert's default minAbrBitrate


@dataclass(frozen=True)
class PlannedRung:
    height: int
    video_bitrate_kbps: int


def bitrate_for(height: int) -> int:
    """The table's bitrate for a height, linear between the table's points (by height)."""
    points = sorted(STANDARD)
    if height <= points[0][0]:
        return max(100, round(points[0][1] * height / points[0][0]))
    for (h0, b0), (h1, b1) in itertools.pairwise(points):
        if h0 <= height <= h1:
            return round(b0 + (b1 - b0) * (height - h0) / (h1 - h0))
    return round(points[-1][1] * height / points[-1][0])


def auto_ladder(pkg: Package, source_height: int) -> list[PlannedRung]:
    """Rungs for `"ladder": "auto"`, tallest first.

    Candidates are the standard heights no taller than the source, topped by the source's
    own (even) height when that is at least 1.25 x the tallest of them or none fits. At
    most `max_rungs` are kept, spread over the candidates with the tallest and the shortest
    always in. Bitrates come from the
    table clamped to [min_bitrate_kbps, max_bitrate_kbps]; a rung whose clamped bitrate is
    not below the rung above it is dropped (it would be a second copy at the same rate).
    """
    top = pkg.max_bitrate_kbps or AUTO_MAX_KBPS
    bottom = min(pkg.min_bitrate_kbps or AUTO_MIN_KBPS, top)
    n = pkg.max_rungs or AUTO_MAX_RUNGS
    heights = [h for h, _ in STANDARD if h <= source_height]
    own = max(2, source_height // 2 * 2)
    if not heights or own >= heights[0] * 1.25:  # e.g. a 480p source: 480 on top of 360
        heights.insert(0, own)
    if len(heights) > n:
        if n == 1:
            heights = heights[:1]
        else:
            picks = sorted({round(i * (len(heights) - 1) / (n - 1)) for i in range(n)})
            heights = [heights[i] for i in picks]
    rungs: list[PlannedRung] = []
    for h in heights:
        kbps = min(top, max(bottom, bitrate_for(h)))
        if rungs and kbps >= rungs[-1].video_bitrate_kbps:
            continue
        rungs.append(PlannedRung(h, kbps))
    return rungs


def explicit_ladder(pkg: Package) -> list[PlannedRung]:
    """The client's rungs, tallest first, each with its bitrate or the table's."""
    assert isinstance(pkg.ladder, list)
    rungs = [
        PlannedRung(r.height, r.video_bitrate_kbps or bitrate_for(r.height)) for r in pkg.ladder
    ]
    return sorted(rungs, key=lambda r: -r.height)
