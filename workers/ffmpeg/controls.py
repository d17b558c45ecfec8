"""Encoder controls as encoder options: preset, profile, level, GOP and keyframes, VBV
(max bitrate + buffer) and two-pass, each mapped per encoder from the spec's enums."""

from __future__ import annotations

import re

from jobs.encoding import Preset
from jobs.outputs import Output

# Speed/quality trade-offs used when no preset is given (libaom and rav1e defaults are slow).
DEFAULT_SPEED: dict[str, list[str]] = {
    "libvpx-vp9": ["-deadline", "good", "-cpu-used", "4", "-row-mt", "1"],
    "libaom-av1": ["-cpu-used", "6", "-row-mt", "1"],
    "librav1e": ["-speed", "6"],
}
_VP9 = {
    Preset.REALTIME: ["-deadline", "realtime", "-cpu-used", "8", "-row-mt", "1"],
    Preset.GOOD: DEFAULT_SPEED["libvpx-vp9"],
    Preset.BEST: ["-deadline", "best", "-row-mt", "1"],
}
_AV1 = {  # preset -> (SVT-AV1 preset, libaom cpu-used, rav1e speed)
    Preset.FASTER: (12, 8, 10),
    Preset.FAST: (10, 6, 6),
    Preset.MEDIUM: (8, 4, 4),
    Preset.SLOW: (6, 3, 3),
}
_STATS_PATH = re.compile(r"^/[A-Za-z0-9/_.-]+$")


def controls(output: Output, venc: str, two_pass: tuple[int, str] | None) -> list[str]:
    """Options after the codec and quality for encoder `venc`."""
    args = _preset(output.preset, venc)
    x265: list[str] = ["log-level=error"]
    if output.profile is not None:
        args += ["-profile:v", output.profile.value]
    if output.level is not None:
        if venc == "libx265":
            x265.append(f"level-idc={output.level.value}")
        else:
            args += ["-level:v", output.level.value]
    if output.gop_length is not None:
        args += ["-g", str(int(output.gop_length))]
    if output.keyframe_interval is not None:
        ms = int(output.keyframe_interval)
        every = f"{ms // 1000}.{ms % 1000:03d}"  # (graph.secs; importing it would be a cycle)
        args += ["-force_key_frames", f"expr:gte(t,n_forced*{every})"]
    if output.max_bitrate_kbps is not None and output.buffer_size_kbits is not None:
        args += ["-maxrate", f"{int(output.max_bitrate_kbps)}k"]
        args += ["-bufsize", f"{int(output.buffer_size_kbits)}k"]
    if two_pass is not None:
        number, prefix = two_pass
        if number not in (1, 2) or not _STATS_PATH.match(prefix):
            raise ValueError("two-pass needs pass 1 or 2 and a plain absolute stats path")
        if venc == "libx265":
            x265 += [f"pass={number}", f"stats={prefix}.log"]
        else:
            args += ["-pass", str(number), "-passlogfile", prefix]
    if venc == "libx265":
        args += ["-x265-params", ":".join(x265)]
    return args


def _preset(preset: Preset | None, venc: str) -> list[str]:
    if preset is None:
        return list(DEFAULT_SPEED.get(venc, []))
    if venc in ("libx264", "libx265"):
        return ["-preset", preset.value]
    if venc == "libvpx-vp9":
        return list(_VP9[preset])
    svt, aom, rav1e = _AV1[preset]
    if venc == "libsvtav1":
        return ["-preset", str(svt)]
    if venc == "libaom-av1":
        return ["-cpu-used", str(aom), "-row-mt", "1"]
    return ["-speed", str(rav1e)]
