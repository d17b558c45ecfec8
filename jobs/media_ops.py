"""Operations for broadcast and delivery work: deinterlace, pad, fade and loudness.

Like every operation they are typed: enums and bounded numbers only, so the command builder
formats every filter argument itself and no request text reaches a filter graph.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from jobs.specbase import Strict, ms_aliases
from jobs.timecode import Millis


class DeinterlaceFilter(StrEnum):
    BWDIF = "bwdif"  # motion adaptive, better on moving edges
    YADIF = "yadif"


class Deinterlace(Strict):
    """Deinterlace to one frame per frame. `auto`: only if the source is interlaced (its
    field order says so); the filter then also skips frames flagged progressive."""

    op: Literal["deinterlace"]
    filter: DeinterlaceFilter = DeinterlaceFilter.BWDIF
    auto: bool = False


class Aspect(StrEnum):
    A16_9 = "16:9"
    A9_16 = "9:16"
    A4_3 = "4:3"
    A3_4 = "3:4"
    A1_1 = "1:1"
    A4_5 = "4:5"
    A21_9 = "21:9"

    @property
    def ratio(self) -> tuple[int, int]:
        w, h = self.value.split(":")
        return int(w), int(h)


class PadColor(StrEnum):
    BLACK = "black"
    WHITE = "white"
    GRAY = "gray"
    BLUE = "blue"
    GREEN = "green"


class Pad(Strict):
    """Letterbox or pillarbox: to a target `aspect`, or to `width` x `height` (each at least
    the frame's), the picture centred on a `color` from the enum."""

    op: Literal["pad"]
    aspect: Aspect | None = None
    width: int | None = Field(default=None, ge=16, le=7680)
    height: int | None = Field(default=None, ge=16, le=4320)
    color: PadColor = PadColor.BLACK

    @model_validator(mode="after")
    def _one_target(self) -> Pad:
        size = self.width is not None and self.height is not None
        if (self.aspect is not None) == size or (not size and (self.width or self.height)):
            raise ValueError("pad needs either 'aspect', or both 'width' and 'height'")
        return self


class Fade(Strict):
    """Fade in from black/silence over `fade_in`, and out over the last `fade_out`."""

    op: Literal["fade"]
    fade_in: Millis = 0
    fade_out: Millis = 0
    video: bool = True
    audio: bool = True

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        return ms_aliases(data, "fade_in", "fade_out")

    @model_validator(mode="after")
    def _something(self) -> Fade:
        if not self.fade_in and not self.fade_out:
            raise ValueError("fade needs 'fade_in' or 'fade_out' (a duration above 0)")
        if max(self.fade_in, self.fade_out) > 600_000:
            raise ValueError("a fade lasts at most 600 s")
        if not self.video and not self.audio:
            raise ValueError("fade needs 'video', 'audio' or both to be true")
        return self


class Loudnorm(Strict):
    """EBU R128 loudness normalisation, two-pass: measure the audio, then apply."""

    op: Literal["loudnorm"]
    target_lufs: float = Field(default=-16, ge=-70, le=-5)
    true_peak_db: float = Field(default=-1.5, ge=-9, le=0)
    lra: float = Field(default=11, ge=1, le=20)

    @field_validator("target_lufs", "true_peak_db", "lra")
    @classmethod
    def _round(cls, v: float) -> float:
        return round(v, 1)


class SubtitleMode(StrEnum):
    BURN = "burn"  # drawn into the picture
    SOFT = "soft"  # a subtitle track (mov_text in mp4/mov, subrip in mkv, webvtt in webm)


class SubtitleColor(StrEnum):
    WHITE = "white"
    YELLOW = "yellow"
    CYAN = "cyan"
    GREEN = "green"
    BLACK = "black"


class SubtitlePosition(StrEnum):
    BOTTOM = "bottom"
    MIDDLE = "middle"
    TOP = "top"


class SubtitleStyle(Strict):
    """How burned-in subtitles look; sizes are percent of the frame height."""

    size: int = Field(default=6, ge=2, le=20)
    color: SubtitleColor = SubtitleColor.WHITE
    outline: int = Field(default=2, ge=0, le=8)
    position: SubtitlePosition = SubtitlePosition.BOTTOM
    margin: int = Field(default=5, ge=0, le=40)
    bold: bool = False
    background: bool = False  # an opaque box behind the text


AUDIO_OPS = frozenset({"volume", "loudnorm"})  # need an audio track in and out
TIMED_FIELDS = {"fade_in": "fade_in_ms", "fade_out": "fade_out_ms"}
