"""The `package` and `thumbnails` fields of an edit request: strict, bounded, enums only.

Nothing here reaches ffmpeg as text: heights, bitrates and seconds are bounded integers, the
format is an enum, and the worker builds every name it writes itself.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from jobs.specbase import SpecError, Strict

MAX_RUNGS = 8


class PackageFormat(StrEnum):
    HLS = "hls"  # MPEG-TS segments, audio muxed into every variant
    DASH = "dash"  # fMP4 segments, one MPD; audio its own adaptation set
    CMAF = "cmaf"  # one set of fMP4 segments with an HLS master and a DASH MPD


class Rung(Strict):
    """One rendition of a ladder: its height (the width keeps the source's aspect) and,
    optionally, its video bitrate (unset: the bitrate table's value for that height)."""

    height: int = Field(ge=144, le=2160)
    video_bitrate_kbps: int | None = Field(default=None, ge=100, le=50_000)


class Package(Strict):
    """An adaptive-bitrate package: one encode per rung and manifests over them."""

    format: PackageFormat = PackageFormat.HLS
    segment_seconds: int = Field(default=6, ge=1, le=30)
    # A list of rungs, or "auto": rungs picked from the standard set no taller than the source.
    ladder: list[Rung] | Literal["auto"] = "auto"
    # "auto" only (MediaConvert's automated ABR settings): at most this many rungs, the top
    # rung's bitrate at most max_bitrate_kbps and the bottom one's at least min_bitrate_kbps.
    max_rungs: int | None = Field(default=None, ge=1, le=MAX_RUNGS)
    max_bitrate_kbps: int | None = Field(default=None, ge=200, le=50_000)
    min_bitrate_kbps: int | None = Field(default=None, ge=100, le=50_000)
    audio_bitrate_kbps: int = Field(default=128, ge=32, le=320)

    @model_validator(mode="before")
    @classmethod
    def _ladder(cls, data: Any) -> Any:
        # The rungs are validated here, so an error names `ladder[1].height` rather than a
        # member of the list-or-"auto" union; anything but a list must be the word "auto".
        if not isinstance(data, dict) or "ladder" not in data:
            return data
        value = data["ladder"]
        if isinstance(value, str) and value == "auto":
            return data
        if not isinstance(value, list) or not 1 <= len(value) <= MAX_RUNGS:
            raise SpecError(
                "ladder", f"'ladder' is a list of 1 to {MAX_RUNGS} rungs or the word \"auto\""
            )
        rungs = []
        for i, item in enumerate(value):
            try:
                rungs.append(Rung.model_validate(item))
            except ValidationError as exc:
                err = exc.errors()[0]
                where = "".join(f".{p}" if isinstance(p, str) else f"[{p}]" for p in err["loc"])
                raise SpecError(f"ladder[{i}]{where}", _message(err)) from None
        return {**data, "ladder": rungs}

    @model_validator(mode="after")
    def _rules(self) -> Package:
        if isinstance(self.ladder, list):
            heights = [r.height for r in self.ladder]
            for i, h in enumerate(heights):
                if h % 2:
                    raise SpecError(f"ladder[{i}].height", "a rung's height must be even")
                if h in heights[:i]:
                    raise SpecError(f"ladder[{i}].height", f"two rungs have height {h}")
            for name in ("max_rungs", "max_bitrate_kbps", "min_bitrate_kbps"):
                if getattr(self, name) is not None:
                    raise SpecError(name, f'\'{name}\' applies to "ladder": "auto" only')
        lo, hi = self.min_bitrate_kbps, self.max_bitrate_kbps
        if lo is not None and hi is not None and lo > hi:
            raise SpecError("min_bitrate_kbps", "min_bitrate_kbps is above max_bitrate_kbps")
        return self


class Thumbnails(Strict):
    """Sprite sheets of frames every `interval_seconds`, `width` pixels wide, `columns` a
    row, with a WebVTT index (`sheet.jpg#xywh=x,y,w,h`) for scrubbing previews."""

    interval_seconds: int = Field(default=10, ge=1, le=600)
    width: int = Field(default=160, ge=32, le=640)
    columns: int = Field(default=10, ge=1, le=20)
    rows: int = Field(default=10, ge=1, le=20)  # per sheet; more frames make more sheets

    @field_validator("width")
    @classmethod
    def _even(cls, value: int) -> int:
        if value % 2:
            raise ValueError("the thumbnail width must be even")
        return value


def _message(err: Any) -> str:
    """A rung's error as one sentence that says what is allowed."""
    ctx = err.get("ctx") or {}
    bounds = ", ".join(f"{k} {ctx[k]}" for k in ("ge", "le") if k in ctx)
    text = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    return f"{text} (allowed: {bounds})" if bounds else text


def canonical_package(pkg: Package) -> dict[str, Any]:
    """The package as the job key sees it (defaults filled in)."""
    return pkg.model_dump(mode="json")


def canonical_thumbnails(thumbs: Thumbnails) -> dict[str, Any]:
    return thumbs.model_dump(mode="json")
