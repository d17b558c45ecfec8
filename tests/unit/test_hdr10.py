"""HDR10 static metadata as the probe child reports it: checked, clamped or dropped, and
formatted into encoder parameters by our code (pure: no file, no ffmpeg)."""

from __future__ import annotations

from typing import Any

import pytest

from workers.ffmpeg.hdr10 import ContentLight, MasteringDisplay, encoder_params, parse

# AVMasteringDisplayMetadata as 22 ints: r, g, b, white point (x/y rationals), min and max
# luminance (rationals), has_primaries, has_luminance. These are the P3-D65 1000-nit values
# that most HDR10 masters carry.
P3 = [34000, 50000, 16000, 50000, 13250, 50000, 34500, 50000, 7500, 50000, 3000, 50000,
      15635, 50000, 16450, 50000, 50, 10000, 10000000, 10000, 1, 1]  # fmt: skip


def with_values(**changes: int) -> list[int]:
    """P3 with some of its 22 ints replaced, by name."""
    index = {"gx": 4, "gx_den": 5, "min": 16, "min_den": 17, "max": 18, "max_den": 19,
             "has_primaries": 20, "has_luminance": 21}  # fmt: skip
    values = list(P3)
    for name, value in changes.items():
        values[index[name]] = value
    return values


def test_good_metadata_is_read_in_x265_units() -> None:
    meta = parse(P3, [1000, 400])
    assert meta is not None and meta.fixes == ()
    assert meta.mastering == MasteringDisplay(
        ((34000, 16000), (13250, 34500), (7500, 3000), (15635, 16450)), 10_000_000, 50
    )
    assert meta.light == ContentLight(1000, 400)


def test_other_denominators_are_converted_exactly() -> None:
    # The AV1 decoder reports chromaticity over 65536 and luminance over 256 / 16384.
    values = [round(v / 50000 * 65536) if i % 2 == 0 else 65536 for i, v in enumerate(P3[:16])]
    meta = parse([*values, 82, 16384, 256000, 256, 1, 1], None)
    assert meta is not None and meta.mastering is not None
    assert meta.mastering.primaries[1] == (13250, 34500)
    assert (meta.mastering.max_luminance, meta.mastering.min_luminance) == (10_000_000, 50)


def test_no_side_data_is_no_metadata() -> None:
    assert parse(None, None) is None


@pytest.mark.parametrize(
    ("mastering", "why"),
    [
        (with_values(has_luminance=0), "lacks its primaries or its luminance"),
        (with_values(has_primaries=0), "lacks its primaries or its luminance"),
        (with_values(max=0), "max luminance is not above 0"),
        (with_values(max=-5), "max luminance is not above 0"),
        (with_values(gx=60000), "its green is outside 0..1"),
        (with_values(gx=-1), "its green is outside 0..1"),
        (with_values(gx_den=0), "zero or negative denominator"),
        (P3[:21], "not 22 integers"),
        ([*P3[:21], True], "not 22 integers"),
        ([*P3[:21], "1"], "not 22 integers"),
        ([*P3[:21], 2**40], "not 22 integers"),
        ("G(1,1)", "not 22 integers"),
    ],
)
def test_unusable_mastering_display_is_dropped_and_says_why(mastering: Any, why: str) -> None:
    meta = parse(mastering, [1000, 400])
    assert meta is not None and meta.mastering is None
    assert meta.light == ContentLight(1000, 400)
    assert len(meta.fixes) == 1 and why in meta.fixes[0] and "dropped" in meta.fixes[0]


@pytest.mark.parametrize(
    ("changes", "max_lum", "min_lum", "said"),
    [
        ({"max": 2**31 - 1, "max_den": 1}, 100_000_000, 50, "max luminance clamped from"),
        ({"max": 1, "max_den": 1}, 50_000, 50, "clamped from 1 to 5 cd/m²"),
        ({"min": 900, "min_den": 1}, 10_000_000, 50_000, "min luminance clamped from 900"),
        ({"min": -3}, 10_000_000, 0, "min luminance clamped from -0.0003 to 0"),
    ],
)
def test_out_of_range_luminance_is_clamped_and_says_so(
    changes: dict[str, int], max_lum: int, min_lum: int, said: str
) -> None:
    meta = parse(with_values(**changes), None)
    assert meta is not None and meta.mastering is not None
    assert (meta.mastering.max_luminance, meta.mastering.min_luminance) == (max_lum, min_lum)
    assert len(meta.fixes) == 1 and said in meta.fixes[0]


@pytest.mark.parametrize(
    ("light", "expected", "said"),
    [
        ([65535, 65535], ContentLight(10000, 10000), "clamped from 65535,65535 to 10000,10000"),
        ([300, 900], ContentLight(300, 300), "clamped from 300,900 to 300,300"),
        ([0, 0], None, "dropped: both are 0"),
        ([1000], None, "not 2 unsigned integers"),
        ([-1, 5], None, "not 2 unsigned integers"),
    ],
)
def test_content_light_is_clamped_or_dropped(
    light: Any, expected: ContentLight | None, said: str
) -> None:
    meta = parse(None, light)
    assert meta is not None and meta.light == expected and meta.mastering is None
    assert len(meta.fixes) == 1 and said in meta.fixes[0]


def test_encoder_params_are_built_from_our_numbers() -> None:
    meta = parse(P3, [1000, 400])
    assert meta is not None
    assert encoder_params(meta, "libx265") == [
        "master-display=G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,50)",
        "max-cll=1000,400",
    ]
    assert encoder_params(meta, "libsvtav1") == [
        "mastering-display=G(0.26500,0.69000)B(0.15000,0.06000)R(0.68000,0.32000)"
        "WP(0.31270,0.32900)L(1000.0000,0.0050)",
        "content-light=1000,400",
    ]
    assert encoder_params(meta, "libvpx-vp9") == []
    assert encoder_params(meta, "libaom-av1") == []
