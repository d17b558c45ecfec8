"""Output settings: containers, codecs and what may go where, the `Output` model and the
rules that tie encoder controls to a codec.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from jobs.encoding import (
    LEVELS,
    PRESETS,
    PROFILES,
    TEN_BIT_CODECS,
    TWO_PASS_CODECS,
    Level,
    Preset,
    Profile,
)
from jobs.specbase import SpecError, Strict, ms_aliases
from jobs.timecode import Millis


class Container(StrEnum):
    MP4 = "mp4"
    WEBM = "webm"
    MKV = "mkv"
    MOV = "mov"
    GIF = "gif"
    JPG = "jpg"
    PNG = "png"
    MP3 = "mp3"  # audio only from here on
    M4A = "m4a"
    OGG = "ogg"
    WAV = "wav"
    FLAC = "flac"


class VideoCodec(StrEnum):
    H264 = "h264"
    HEVC = "hevc"
    VP9 = "vp9"
    AV1 = "av1"
    NONE = "none"  # audio only, in webm or mkv


class AudioCodec(StrEnum):
    AAC = "aac"
    OPUS = "opus"
    MP3 = "mp3"
    NONE = "none"
    FLAC = "flac"
    PCM_S16LE = "pcm_s16le"
    PCM_S24LE = "pcm_s24le"


IMAGE_CONTAINERS = frozenset({Container.JPG, Container.PNG})
NO_CODEC_CONTAINERS = frozenset({Container.GIF, Container.JPG, Container.PNG})
AUDIO_CONTAINERS = frozenset(
    {Container.MP3, Container.M4A, Container.OGG, Container.WAV, Container.FLAC}
)
LOSSLESS_AUDIO = frozenset({AudioCodec.FLAC, AudioCodec.PCM_S16LE, AudioCodec.PCM_S24LE})

ALLOWED_VIDEO: dict[Container, tuple[VideoCodec, ...]] = {
    Container.MP4: (VideoCodec.H264, VideoCodec.HEVC, VideoCodec.AV1),
    Container.MOV: (VideoCodec.H264, VideoCodec.HEVC),
    Container.MKV: (
        VideoCodec.H264, VideoCodec.HEVC, VideoCodec.VP9, VideoCodec.AV1, VideoCodec.NONE,
    ),
    Container.WEBM: (VideoCodec.VP9, VideoCodec.AV1, VideoCodec.NONE),
    **{c: (VideoCodec.NONE,) for c in AUDIO_CONTAINERS},
}  # fmt: skip
ALLOWED_AUDIO: dict[Container, tuple[AudioCodec, ...]] = {
    Container.MP4: (AudioCodec.AAC, AudioCodec.MP3, AudioCodec.OPUS, AudioCodec.NONE),
    Container.MOV: (AudioCodec.AAC, AudioCodec.MP3, AudioCodec.NONE),
    Container.MKV: (
        AudioCodec.AAC, AudioCodec.MP3, AudioCodec.OPUS, AudioCodec.NONE, AudioCodec.FLAC,
    ),
    Container.WEBM: (AudioCodec.OPUS, AudioCodec.NONE),
    Container.MP3: (AudioCodec.MP3,),
    Container.M4A: (AudioCodec.AAC,),
    Container.OGG: (AudioCodec.OPUS, AudioCodec.FLAC),
    Container.WAV: (AudioCodec.PCM_S16LE, AudioCodec.PCM_S24LE),
    Container.FLAC: (AudioCodec.FLAC,),
}  # fmt: skip
DEFAULT_CRF: dict[VideoCodec, int] = {
    VideoCodec.H264: 23,
    VideoCodec.HEVC: 28,
    VideoCodec.VP9: 32,
    VideoCodec.AV1: 35,
}
MAX_CRF: dict[VideoCodec, int] = {
    VideoCodec.H264: 51,
    VideoCodec.HEVC: 51,
    VideoCodec.VP9: 63,
    VideoCodec.AV1: 63,
}


class Output(Strict):
    """Container and encoding. Omitted fields get per-container defaults."""

    container: Container = Container.MP4
    video_codec: VideoCodec | None = None
    audio_codec: AudioCodec | None = None
    crf: int | None = Field(default=None, ge=0, le=63)
    video_bitrate_kbps: int | None = Field(default=None, ge=50, le=200_000)
    audio_bitrate_kbps: int | None = Field(default=None, ge=32, le=512)
    # Added with issue 13. Unset, none of them appears in the canonical form, so edits made
    # before them keep their keys.
    audio_sample_rate: (
        Literal[8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000] | None
    ) = None
    audio_channels: Literal[1, 2, 6] | None = None  # 6: 5.1
    preset: Preset | None = None
    profile: Profile | None = None
    level: Level | None = None
    gop_length: int | None = Field(default=None, ge=1, le=1000)
    keyframe_interval: Millis | None = None
    max_bitrate_kbps: int | None = Field(default=None, ge=50, le=200_000)
    buffer_size_kbits: int | None = Field(default=None, ge=50, le=400_000)
    two_pass: bool = False
    bit_depth: Literal[8, 10] | None = None  # unset: keep the source's where the codec can

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        return ms_aliases(data, "keyframe_interval")

    @field_validator("keyframe_interval")
    @classmethod
    def _keyint(cls, v: int | None) -> int | None:
        if v is not None and not 100 <= v <= 60_000:
            raise ValueError("keyframe_interval must be between 0.1 s and 60 s")
        return v


OUTPUT_NAME_RE = r"^[a-z0-9][a-z0-9_.-]{0,62}$"


class NamedOutput(Output):
    """One of several outputs (`outputs`): its own encoding and size; `at` picks the frame
    of an image output. The edit's operations apply to every output."""

    name: str = Field(pattern=OUTPUT_NAME_RE)
    width: int | None = Field(default=None, ge=16, le=7680)
    height: int | None = Field(default=None, ge=16, le=4320)
    at: Millis | None = None

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        return ms_aliases(data, "keyframe_interval", "at")


AUDIO_RATES = {  # what the encoders take; others have every rate of the enum
    AudioCodec.OPUS: (8000, 16000, 24000, 48000),
    AudioCodec.MP3: (8000, 11025, 16000, 22050, 24000, 32000, 44100, 48000),
}

# Output fields that only video encoding uses.
CODEC_FIELDS = (
    "crf", "video_bitrate_kbps", "audio_bitrate_kbps", "audio_sample_rate", "audio_channels",
    "preset", "profile", "level", "gop_length", "keyframe_interval", "max_bitrate_kbps",
    "buffer_size_kbits", "two_pass", "bit_depth",
)  # fmt: skip
VIDEO_FIELDS = CODEC_FIELDS[:2] + CODEC_FIELDS[5:]


def check_controls(out: Output, video: str) -> None:
    """Encoder controls that only some codecs have."""
    tables = (("preset", PRESETS), ("profile", PROFILES), ("level", LEVELS))
    for name, table in tables:
        value = getattr(out, name)
        allowed = table.get(video, ())
        if value is not None and value not in allowed:
            what = ", ".join(allowed) if allowed else "none"
            raise SpecError(
                f"output.{name}", f"{name} '{value}' is not one for {video} (allowed: {what})"
            )
    if out.two_pass:
        if video not in TWO_PASS_CODECS:
            raise SpecError(
                "output.two_pass", f"two_pass is for {', '.join(TWO_PASS_CODECS)}, not {video}"
            )
        if out.video_bitrate_kbps is None:
            raise SpecError("output.two_pass", "two_pass needs a 'video_bitrate_kbps' to aim at")
    if (out.max_bitrate_kbps is None) != (out.buffer_size_kbits is None):
        raise SpecError(
            "output.buffer_size_kbits"
            if out.buffer_size_kbits is None
            else "output.max_bitrate_kbps",
            "give 'max_bitrate_kbps' and 'buffer_size_kbits' together (a VBV constraint)",
        )
    if out.bit_depth == 10 and video not in TEN_BIT_CODECS:
        raise SpecError(
            "output.bit_depth",
            f"bit_depth 10 needs video_codec {', '.join(TEN_BIT_CODECS)} (not {video})",
        )
    if out.profile is Profile.MAIN10 and out.bit_depth == 8:
        raise SpecError("output.profile", "profile 'main10' is for bit_depth 10")
    if out.profile is Profile.MAIN and video == "hevc" and out.bit_depth == 10:
        raise SpecError("output.profile", "hevc profile 'main' is 8-bit: use 'main10'")
