"""A 3-rung HLS ladder of a 60 s 720p source: vidjobs' executors vs the same ffmpeg argv.

    .venv/bin/python -m bench.packages [--rounds 3] [--seconds 60]

"vidjobs" runs the rendition executor for each rung (preflight probe, the encode, the probe
of what it wrote) and then the package executor (segmenting by stream copy, reading back
the media playlists, writing the master with measured bandwidths), as a worker would run
the tasks one after another. "direct" runs exactly the argv those executors build, with
subprocess, one after another. Rounds are interleaved (direct, vidjobs, direct, ...);
median and spread (min-max) per side. The task graph (claims, dependency release, storing
the files by digest) is not in this measurement: it is not in this branch yet.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from jobs.packaging.models import PackageFormat
from tests.support.packages import build_package, build_renditions, make_source
from workers.ffmpeg import find_ffmpeg, preflight
from workers.ffmpeg.abr import package_command, rendition_command

LADDER = [{"height": 720}, {"height": 360}, {"height": 240}]
BITRATES = {720: 3000, 360: 800, 240: 400}
SEGMENT = 6


def direct(ffmpeg: str, source: Path, tmp: Path) -> float:
    """The same commands, built by the same pure builders, run with subprocess."""
    probe = asyncio.run(preflight(source))
    tmp.mkdir(parents=True, exist_ok=True)
    argvs: list[list[str]] = []
    outs = []
    for rung in LADDER:
        out = tmp / f"r{rung['height']}.mp4"
        outs.append(out)
        plan = rendition_command(
            ffmpeg, source, probe, out, height=rung["height"],
            video_kbps=BITRATES[rung["height"]], audio_kbps=128, segment_seconds=SEGMENT,
        )  # fmt: skip
        argvs.append(plan.argv)
    pkg = tmp / "package"
    pkg.mkdir()
    argvs.append(package_command(ffmpeg, outs, True, PackageFormat.HLS, pkg, SEGMENT))
    start = time.perf_counter()
    for argv in argvs:
        subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def through_executors(ffmpeg: str, source: Path, tmp: Path) -> float:
    start = time.perf_counter()
    _, rungs = build_renditions(ffmpeg, source, tmp, LADDER, SEGMENT)
    build_package(ffmpeg, rungs, tmp, "hls", SEGMENT)
    return time.perf_counter() - start


def summary(xs: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "runs": xs}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=60)
    args = ap.parse_args()
    ffmpeg = find_ffmpeg()
    root = Path(tempfile.mkdtemp(prefix="bench-packages-"))
    try:
        source = make_source(ffmpeg, root / "source.mp4", seconds=args.seconds)
        times: dict[str, list[float]] = {"direct": [], "vidjobs": []}
        for i in range(args.rounds):
            times["direct"].append(direct(ffmpeg, source, root / f"d{i}"))
            times["vidjobs"].append(through_executors(ffmpeg, source, root / f"v{i}"))
            print(f"round {i + 1}: direct {times['direct'][-1]:.2f} s, "
                  f"vidjobs {times['vidjobs'][-1]:.2f} s", flush=True)  # fmt: skip
        d, v = summary(times["direct"]), summary(times["vidjobs"])
        print(f"3-rung HLS ladder (720/360/240, {SEGMENT} s segments) of a {args.seconds:g} s "
              f"720p source, {args.rounds} interleaved rounds:")  # fmt: skip
        for name, s in (("direct", d), ("vidjobs executors", v)):
            print(
                f"  {name:18} median {s['median']:.2f} s  (min {s['min']:.2f}, max {s['max']:.2f})"
            )
        print(f"  ratio vidjobs/direct: {v['median'] / d['median']:.3f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
