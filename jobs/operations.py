"""The typed operations of an edit, one pydantic model each, told apart by `op`.

Every number is bounded and every string is an enum or a checked pattern, so nothing a
client writes can reach an ffmpeg filter graph as free text. The broadcast and delivery
operations (deinterlace, pad, fade, loudnorm) live in `jobs.media_ops`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from jobs.media_ops import Deinterlace, Fade, Loudnorm, Pad, SubtitleMode, SubtitleStyle
from jobs.sources import Source
from jobs.specbase import Strict, ms_aliases
from jobs.timecode import Millis


class Trim(Strict):
    """Keep [start, end) of the source timeline. `fast` allows stream copy (keyframe cuts)."""

    op: Literal["trim"]
    start: Millis = 0
    end: Millis | None = None
    fast: bool = False

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        return ms_aliases(data, "start", "end")

    @model_validator(mode="after")
    def _ordered(self) -> Trim:
        if self.end is not None and self.end <= self.start:
            raise ValueError("trim 'end' must be after 'start'")
        return self


class Scale(Strict):
    """Resize; give one side to keep the aspect ratio."""

    op: Literal["scale"]
    width: int | None = Field(default=None, ge=16, le=7680)
    height: int | None = Field(default=None, ge=16, le=4320)

    @model_validator(mode="after")
    def _one_side(self) -> Scale:
        if self.width is None and self.height is None:
            raise ValueError("scale needs 'width', 'height' or both")
        return self


class Crop(Strict):
    """A rectangle of the frame, or `"crop": "auto"`: the picture area that cropdetect
    finds (black borders removed), which must come first or right after `trim`."""

    op: Literal["crop"]
    x: int = Field(default=0, ge=0, le=7680)
    y: int = Field(default=0, ge=0, le=4320)
    width: int | None = Field(default=None, ge=16, le=7680)
    height: int | None = Field(default=None, ge=16, le=4320)
    crop: Literal["auto"] | None = None

    @model_validator(mode="after")
    def _rect_or_auto(self) -> Crop:
        rect = (self.x, self.y, self.width, self.height) != (0, 0, None, None)
        if self.crop == "auto" and rect:
            raise ValueError('give either "crop": "auto" or a rectangle, not both')
        if self.crop is None and (self.width is None or self.height is None):
            raise ValueError("crop needs 'width' and 'height' (or \"crop\": \"auto\")")
        return self


class Fps(Strict):
    op: Literal["fps"]
    fps: float = Field(ge=1, le=120)

    @field_validator("fps")
    @classmethod
    def _round(cls, v: float) -> float:
        return round(v, 3)


class Rotate(Strict):
    op: Literal["rotate"]
    degrees: Literal[90, 180, 270]


class FlipDirection(StrEnum):
    HORIZONTAL = "horizontal"
    VERTICAL = "vertical"


class Flip(Strict):
    op: Literal["flip"]
    direction: FlipDirection


class Speed(Strict):
    """Play faster or slower, video and audio together."""

    op: Literal["speed"]
    factor: float = Field(ge=0.25, le=4)

    @field_validator("factor")
    @classmethod
    def _round(cls, v: float) -> float:
        return round(v, 3)


class Mute(Strict):
    op: Literal["mute"]


class Volume(Strict):
    op: Literal["volume"]
    db: float = Field(ge=-60, le=20)

    @field_validator("db")
    @classmethod
    def _round(cls, v: float) -> float:
        return round(v, 2)


class Thumbnail(Strict):
    """One frame at `at` as a jpg or png; must be the last operation."""

    op: Literal["thumbnail"]
    at: Millis = 0

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        return ms_aliases(data, "at")


class Concat(Strict):
    """Append these sources after the main one; must be the first operation."""

    op: Literal["concat"]
    sources: list[Source] = Field(min_length=1, max_length=16)


class Position(StrEnum):
    TOP_LEFT = "top_left"
    TOP_RIGHT = "top_right"
    BOTTOM_LEFT = "bottom_left"
    BOTTOM_RIGHT = "bottom_right"
    CENTER = "center"


class Watermark(Strict):
    """Overlay an image source at a corner or the centre."""

    op: Literal["watermark"]
    source: Source
    position: Position = Position.BOTTOM_RIGHT
    margin: int = Field(default=16, ge=0, le=1000)
    width: int | None = Field(default=None, ge=8, le=4096)
    opacity: float = Field(default=1.0, ge=0, le=1)

    @field_validator("opacity")
    @classmethod
    def _round(cls, v: float) -> float:
        return round(v, 3)


class Subtitles(Strict):
    """Subtitles from an uploaded SRT or WebVTT file (by digest): burned into the picture
    with `style`, or as a soft track with an ISO 639-2 `language`."""

    op: Literal["subtitles"]
    source: Source
    mode: SubtitleMode = SubtitleMode.BURN
    style: SubtitleStyle | None = None
    language: str | None = Field(default=None, pattern=r"^[a-z]{3}$")

    @model_validator(mode="before")
    @classmethod
    def _default_style(cls, data: Any) -> Any:
        # Burned subtitles always have a style (the defaults if none is given), so leaving
        # it out and spelling the defaults give one canonical form.
        burn = isinstance(data, dict) and data.get("mode", "burn") == "burn"
        if burn and data.get("style") is None:
            data = {**data, "style": {}}
        return data

    @model_validator(mode="after")
    def _fits_mode(self) -> Subtitles:
        if self.mode is SubtitleMode.SOFT and self.style is not None:
            raise ValueError("'style' is for burned subtitles; players style a soft track")
        if self.mode is SubtitleMode.BURN and self.language is not None:
            raise ValueError("'language' is for a soft subtitle track")
        return self


Operation = Annotated[
    Trim
    | Scale
    | Crop
    | Fps
    | Rotate
    | Flip
    | Speed
    | Mute
    | Volume
    | Thumbnail
    | Concat
    | Watermark
    | Deinterlace
    | Pad
    | Fade
    | Loudnorm
    | Subtitles,
    Field(discriminator="op"),
]
