"""Encoder controls: presets, profiles and levels (enums per codec), and the rules that tie
them to a codec. The ffmpeg side maps these names to encoder options; nothing here is text
from a request beyond the enum values.
"""

from __future__ import annotations

from enum import StrEnum


class Preset(StrEnum):
    ULTRAFAST = "ultrafast"
    SUPERFAST = "superfast"
    VERYFAST = "veryfast"
    FASTER = "faster"
    FAST = "fast"
    MEDIUM = "medium"
    SLOW = "slow"
    SLOWER = "slower"
    VERYSLOW = "veryslow"
    REALTIME = "realtime"  # vp9 deadlines
    GOOD = "good"
    BEST = "best"


class Profile(StrEnum):
    BASELINE = "baseline"
    MAIN = "main"
    HIGH = "high"
    MAIN10 = "main10"


class Level(StrEnum):
    L3_0 = "3.0"
    L3_1 = "3.1"
    L4_0 = "4.0"
    L4_1 = "4.1"
    L4_2 = "4.2"
    L5_0 = "5.0"
    L5_1 = "5.1"
    L5_2 = "5.2"
    L6_0 = "6.0"
    L6_1 = "6.1"
    L6_2 = "6.2"


_X26X = (
    Preset.ULTRAFAST, Preset.SUPERFAST, Preset.VERYFAST, Preset.FASTER, Preset.FAST,
    Preset.MEDIUM, Preset.SLOW, Preset.SLOWER, Preset.VERYSLOW,
)  # fmt: skip
PRESETS: dict[str, tuple[Preset, ...]] = {
    "h264": _X26X,
    "hevc": _X26X,
    "vp9": (Preset.REALTIME, Preset.GOOD, Preset.BEST),
    "av1": (Preset.FASTER, Preset.FAST, Preset.MEDIUM, Preset.SLOW),
}
# What the encoder does when no preset is given: spelling it out changes nothing, so the
# canonical form drops it (equal outputs, equal keys).
IMPLICIT_PRESET: dict[str, Preset] = {
    "h264": Preset.MEDIUM,
    "hevc": Preset.MEDIUM,
    "vp9": Preset.GOOD,
}
PROFILES: dict[str, tuple[Profile, ...]] = {
    "h264": (Profile.BASELINE, Profile.MAIN, Profile.HIGH),
    "hevc": (Profile.MAIN, Profile.MAIN10),
}
LEVELS: dict[str, tuple[Level, ...]] = {"h264": tuple(Level), "hevc": tuple(Level)}
TWO_PASS_CODECS = ("h264", "hevc", "vp9")
TEN_BIT_CODECS = ("hevc", "vp9", "av1")
