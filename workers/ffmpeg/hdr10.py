"""HDR10 static metadata: the mastering display colour volume (SMPTE ST 2086) and the content
light level (MaxCLL/MaxFALL) of a PQ source, carried into a 10-bit HDR output.

The numbers come from the probe child (`avchild.py`: the first frame's side data, as raw
integers), are checked and brought into range here, and are formatted by this module into
encoder parameters; no text from the file reaches an encoder option. Absurd values are
clamped into the ranges H.265 gives for the SEI (max luminance 5..10000 cd/m², min 0..5
cd/m², MaxCLL/MaxFALL at most 10000 cd/m², the PQ ceiling) or, where no clamp is
meaningful (a primary outside the chromaticity diagram's 0..1 square, a zero or missing
luminance, a zero denominator), dropped; either way the job's view says which.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

CHROMA = 50_000  # chromaticity units per 1.0 (H.265 SEI and x265's master-display)
LUMA = 10_000  # luminance units per cd/m²
MAX_LUMINANCE = (5 * LUMA, 10_000 * LUMA)  # H.265 D.3.28: 5..10000 cd/m²
MAX_MIN_LUMINANCE = 5 * LUMA  # min luminance at most 5 cd/m²
MAX_LIGHT = 10_000  # cd/m², the PQ ceiling: no pixel is brighter
_INT32 = (-(2**31), 2**31 - 1)
_NAMES = ("red", "green", "blue", "white point")


@dataclass(frozen=True)
class MasteringDisplay:
    """Chromaticities in 1/50000 (x, y per primary; red, green, blue, white point) and
    luminances in 1/10000 cd/m², as x265 takes them."""

    primaries: tuple[tuple[int, int], tuple[int, int], tuple[int, int], tuple[int, int]]
    max_luminance: int
    min_luminance: int


@dataclass(frozen=True)
class ContentLight:
    max_cll: int  # cd/m²
    max_fall: int


@dataclass(frozen=True)
class Hdr10:
    """What the source carries after checking, and what checking changed (for the view)."""

    mastering: MasteringDisplay | None
    light: ContentLight | None
    fixes: tuple[str, ...] = ()


def parse(mastering: Any, light: Any) -> Hdr10 | None:
    """The child's raw numbers (22 ints of AVMasteringDisplayMetadata, 2 of
    AVContentLightMetadata) as checked metadata; None when the source has neither."""
    if mastering is None and light is None:
        return None
    fixes: list[str] = []
    md = _mastering(mastering, fixes) if mastering is not None else None
    cll = _light(light, fixes) if light is not None else None
    return Hdr10(md, cll, tuple(fixes))


def _ints(raw: Any, n: int, lo: int, hi: int) -> list[int] | None:
    if not isinstance(raw, list) or len(raw) != n:
        return None
    ok = all(isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi for v in raw)
    return raw if ok else None


def _mastering(raw: Any, fixes: list[str]) -> MasteringDisplay | None:
    values = _ints(raw, 22, *_INT32)
    if values is None:
        fixes.append("mastering display dropped: the side data is not 22 integers")
        return None
    if not values[20] or not values[21]:
        fixes.append("mastering display dropped: it lacks its primaries or its luminance")
        return None
    rationals = list(zip(values[0:20:2], values[1:20:2], strict=True))
    if any(den <= 0 for _, den in rationals):
        fixes.append("mastering display dropped: a value has a zero or negative denominator")
        return None
    coords = [round(Fraction(num, den) * CHROMA) for num, den in rationals[:8]]
    for i, name in enumerate(_NAMES):
        x, y = coords[2 * i], coords[2 * i + 1]
        if not (0 <= x <= CHROMA and 0 <= y <= CHROMA):
            fixes.append(f"mastering display dropped: its {name} is outside 0..1 (x, y)")
            return None
    lo, hi = (round(Fraction(num, den) * LUMA) for num, den in rationals[8:10])
    if hi <= 0:
        fixes.append("mastering display dropped: its max luminance is not above 0")
        return None
    clamped_hi = min(max(hi, MAX_LUMINANCE[0]), MAX_LUMINANCE[1])
    if clamped_hi != hi:
        fixes.append(
            f"mastering display max luminance clamped from {_cd(hi)} to {_cd(clamped_hi)} cd/m²"
        )
    clamped_lo = min(max(lo, 0), MAX_MIN_LUMINANCE, clamped_hi - 1)
    if clamped_lo != lo:
        fixes.append(
            f"mastering display min luminance clamped from {_cd(lo)} to {_cd(clamped_lo)} cd/m²"
        )
    r, g, b, wp = ((coords[i], coords[i + 1]) for i in range(0, 8, 2))
    return MasteringDisplay((r, g, b, wp), clamped_hi, clamped_lo)


def _light(raw: Any, fixes: list[str]) -> ContentLight | None:
    values = _ints(raw, 2, 0, 2**32 - 1)
    if values is None:
        fixes.append("MaxCLL/MaxFALL dropped: the side data is not 2 unsigned integers")
        return None
    cll, fall = values
    if cll == 0 and fall == 0:
        fixes.append("MaxCLL/MaxFALL dropped: both are 0 (unknown)")
        return None
    new_cll = min(cll, MAX_LIGHT)
    new_fall = min(fall, new_cll or MAX_LIGHT)  # the frame average is at most the maximum
    if (new_cll, new_fall) != (cll, fall):
        fixes.append(f"MaxCLL/MaxFALL clamped from {cll},{fall} to {new_cll},{new_fall} cd/m²")
    return ContentLight(new_cll, new_fall)


def _cd(units: int) -> str:
    return f"{units / LUMA:g}"


# Encoders that take HDR10 static metadata as parameters, with their parameter option.
ENCODER_PARAMS = {"libx265": "-x265-params", "libsvtav1": "-svtav1-params"}


def encoder_params(meta: Hdr10, venc: str) -> list[str]:
    """`key=value` entries for the encoder's parameter list (joined with ':'), from our
    own numbers only: x265 takes integer units, SVT-AV1 decimals."""
    out: list[str] = []
    md, cll = meta.mastering, meta.light
    if venc == "libx265":
        if md is not None:
            r, g, b, wp = (f"({x},{y})" for x, y in md.primaries)
            out.append(f"master-display=G{g}B{b}R{r}WP{wp}L({md.max_luminance},{md.min_luminance})")
        if cll is not None:
            out.append(f"max-cll={cll.max_cll},{cll.max_fall}")
    elif venc == "libsvtav1":
        if md is not None:
            r, g, b, wp = (f"({x / CHROMA:.5f},{y / CHROMA:.5f})" for x, y in md.primaries)
            lum = f"L({md.max_luminance / LUMA:.4f},{md.min_luminance / LUMA:.4f})"
            out.append(f"mastering-display=G{g}B{b}R{r}WP{wp}{lum}")
        if cll is not None:
            out.append(f"content-light={cll.max_cll},{cll.max_fall}")
    return out
