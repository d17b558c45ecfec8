"""Synthetic media made with ffmpeg's lavfi sources, for the demo, tests and benchmarks.

lavfi is never allowed in a job's command (inputs are allowlisted demuxers); this module
only makes files the rest of vidjobs then treats like any upload.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from workers.ffmpeg.binary import find_ffmpeg


def make_clip(
    out: Path,
    *,
    seconds: float = 2,
    size: str = "320x240",
    rate: int = 25,
    audio: bool = True,
    preset: str = "ultrafast",
    ffmpeg: str | None = None,
) -> Path:
    """An h264/aac mp4 test pattern with a 440 Hz tone (or no audio)."""
    argv = [ffmpeg or find_ffmpeg(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    argv += ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}"]
    if audio:
        argv += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={seconds}"]
    argv += ["-c:v", "libx264", "-preset", preset, "-g", str(rate * 2), "-pix_fmt", "yuv420p"]
    argv += ["-c:a", "aac", "-shortest"] if audio else ["-an"]
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([*argv, str(out)], check=True, timeout=300, stdin=subprocess.DEVNULL)
    return out


def make_image(out: Path, *, size: str = "128x128", ffmpeg: str | None = None) -> Path:
    """A single-frame png (or jpg, by extension) test pattern, e.g. for watermarks."""
    argv = [ffmpeg or find_ffmpeg(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    argv += ["-f", "lavfi", "-i", f"testsrc=size={size}:rate=1:duration=1", "-frames:v", "1"]
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([*argv, str(out)], check=True, timeout=60, stdin=subprocess.DEVNULL)
    return out
