"""HDR10 static metadata (mastering display, MaxCLL/MaxFALL) through the real executor and
ffmpeg: read by the probe child, kept in a 10-bit PQ output, dropped from an SDR one, and
absurd values clamped or dropped without breaking the command. What the outputs carry is
read back by ffprobe (an independent reader of the frames' side data)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from tests.ffmpeg.conftest import MakeClip, RunEdit
from workers.ffmpeg.binary import encoders
from workers.ffmpeg.hdr10 import ContentLight, MasteringDisplay
from workers.ffmpeg.probe import probe

pytestmark = pytest.mark.ffmpeg

PQ_GRAPH = (
    "testsrc2=size=160x120:rate=25:duration=1,format=gbrpf32le,"
    "zscale=tin=bt709:t=smpte2084:pin=bt709:p=bt2020:m=bt2020nc:npl=100,format=yuv420p10le"
)
P3_1000 = "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,50)"
# Chromaticity x/y of each primary and white point, max/min luminance (cd/m²) of P3_1000.
EXPECTED = {
    "red_x": 0.68, "red_y": 0.32, "green_x": 0.265, "green_y": 0.69,
    "blue_x": 0.15, "blue_y": 0.06, "white_point_x": 0.3127, "white_point_y": 0.329,
    "max_luminance": 1000.0, "min_luminance": 0.005,
}  # fmt: skip
MASTERING = "Mastering display metadata"
LIGHT = "Content light level metadata"


HDR10_PARAMS = f"master-display={P3_1000}:max-cll=1000,400"


def pq_args(x265: str) -> list[str]:
    """ffmpeg arguments for 1 s of 10-bit PQ hevc whose SEI carries `x265` (master-display,
    max-cll), from lavfi and zscale."""
    return [
        "-f", "lavfi", "-i", PQ_GRAPH, "-c:v", "libx265", "-preset", "ultrafast",
        "-x265-params", f"log-level=error:{x265}", "-pix_fmt", "yuv420p10le",
        "-color_primaries", "bt2020", "-color_trc", "smpte2084", "-colorspace", "bt2020nc",
    ]  # fmt: skip


@pytest.fixture
def hdr10_source(clip_maker: MakeClip) -> Path:
    return clip_maker("hdr10.mkv", *pq_args(HDR10_PARAMS))


@pytest.fixture(scope="module")
def ffprobe(ffmpeg_bin: str) -> str:
    found = Path(ffmpeg_bin).with_name("ffprobe")
    exe = str(found) if found.exists() else shutil.which("ffprobe")
    if exe is None:
        message = "the HDR10 tests read side data back with ffprobe, which is not installed"
        if os.environ.get("VIDJOBS_REQUIRE_SERVICES") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return exe


def side_data(ffprobe: str, path: Path) -> dict[str, dict[str, Any]]:
    """The first video frame's side data, by type, as ffprobe reports it."""
    proc = subprocess.run(
        [ffprobe, "-v", "error", "-select_streams", "v:0", "-show_frames",
         "-read_intervals", "%+#1", "-of", "json", str(path)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    frames = json.loads(proc.stdout)["frames"]
    assert frames, f"ffprobe read no frame of {path}"
    return {sd["side_data_type"]: sd for sd in frames[0].get("side_data_list", [])}


def mastering_values(sd: dict[str, Any]) -> dict[str, float]:
    return {k: float(Fraction(sd[k])) for k in EXPECTED}


async def test_the_probe_reads_the_sources_hdr10_metadata(hdr10_source: Path) -> None:
    info = (await probe(hdr10_source)).info
    assert info is not None and info.hdr == "pq" and info.hdr10 is not None
    assert info.hdr10.mastering == MasteringDisplay(
        ((34000, 16000), (13250, 34500), (7500, 3000), (15635, 16450)), 10_000_000, 50
    )
    assert info.hdr10.light == ContentLight(1000, 400) and info.hdr10.fixes == ()


@pytest.mark.parametrize("container", ["mkv", "mp4"])
async def test_hdr10_metadata_survives_a_ten_bit_hevc_output(
    run_edit: RunEdit, hdr10_source: Path, ffprobe: str, container: str
) -> None:
    out = {"container": container, "video_codec": "hevc"}
    result, made = await run_edit([{"op": "scale", "width": 128}], out, inputs=[hdr10_source])
    assert made.info is not None and made.info.bit_depth == 10 and made.info.hdr == "pq"
    found = side_data(ffprobe, result.path)
    assert mastering_values(found[MASTERING]) == pytest.approx(EXPECTED)
    assert (found[LIGHT]["max_content"], found[LIGHT]["max_average"]) == (1000, 400)
    note = result.metadata["video_processing"]["hdr10"]
    assert note.startswith("mastering display and MaxCLL/MaxFALL passed to libx265"), note


async def test_an_sdr_h264_output_is_tone_mapped_and_carries_no_hdr_metadata(
    run_edit: RunEdit, hdr10_source: Path, ffprobe: str
) -> None:
    result, made = await run_edit([], {"container": "mp4"}, inputs=[hdr10_source])
    assert made.video_codec == "h264" and made.info is not None
    assert (made.info.bit_depth, made.info.color_transfer, made.info.hdr) == (8, "bt709", None)
    found = side_data(ffprobe, result.path)
    assert MASTERING not in found and LIGHT not in found
    view = result.metadata["video_processing"]
    assert view["tone_mapping"].startswith("pq HDR to SDR")
    assert view["hdr10"] == "dropped: the output is 8-bit SDR"


async def test_av1_keeps_hdr10_metadata_with_svt_and_vp9_says_it_cannot(
    run_edit: RunEdit, hdr10_source: Path, ffprobe: str, ffmpeg_bin: str
) -> None:
    if "libsvtav1" not in encoders(ffmpeg_bin):
        pytest.skip("this ffmpeg has no libsvtav1 (the AV1 encoder that takes HDR10 metadata)")
    result, _ = await run_edit([], {"container": "mkv", "video_codec": "av1"}, [hdr10_source])
    found = side_data(ffprobe, result.path)
    # AV1's metadata OBU keeps chromaticity in 1/65536 and luminance in 1/256, 1/16384.
    assert mastering_values(found[MASTERING]) == pytest.approx(EXPECTED, abs=1e-3)
    assert (found[LIGHT]["max_content"], found[LIGHT]["max_average"]) == (1000, 400)
    assert "passed to libsvtav1" in result.metadata["video_processing"]["hdr10"]

    vp9, made = await run_edit([], {"container": "webm", "video_codec": "vp9"}, [hdr10_source])
    assert made.info is not None and made.info.bit_depth == 10
    assert MASTERING not in side_data(ffprobe, vp9.path)
    assert vp9.metadata["video_processing"]["hdr10"].startswith("not passed: libvpx-vp9")


@pytest.mark.parametrize(
    ("x265", "mastering", "light", "said"),
    [
        # A green primary outside the chromaticity square (the decoder flags the primaries
        # as absent) and MaxCLL/MaxFALL at 65535: the display dropped, the levels clamped.
        ("master-display=G(60000,34500)B(7500,3000)R(34000,16000)WP(15635,16450)"
         "L(10000000,50):max-cll=65535,65535", False, (10000, 10000),
         ["mastering display dropped", "clamped from 65535,65535 to 10000,10000"]),
        # Zero luminance and 0,0 levels (unknown): nothing is left to pass.
        ("master-display=G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(0,0)"
         ":max-cll=0,0", False, None,
         ["none passed", "mastering display dropped", "MaxCLL/MaxFALL dropped"]),
        # 20000 cd/m² max luminance (beyond PQ) and an average above the maximum.
        ("master-display=G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)"
         "L(200000000,60000):max-cll=300,900", False, (300, 300),
         ["mastering display dropped", "clamped from 300,900 to 300,300"]),
    ],
    ids=["primaries-out-of-range", "zero-luminance", "beyond-pq"],
)  # fmt: skip
async def test_absurd_side_data_is_clamped_or_dropped_and_the_job_still_runs(
    run_edit: RunEdit,
    clip_maker: MakeClip,
    ffprobe: str,
    x265: str,
    mastering: bool,
    light: tuple[int, int] | None,
    said: list[str],
) -> None:
    source = clip_maker("absurd.mkv", *pq_args(x265))
    result, made = await run_edit([], {"container": "mkv", "video_codec": "hevc"}, [source])
    assert made.info is not None and made.info.bit_depth == 10
    found = side_data(ffprobe, result.path)
    assert (MASTERING in found) is mastering
    if light is None:
        assert LIGHT not in found
    else:
        assert (found[LIGHT]["max_content"], found[LIGHT]["max_average"]) == light
    note = result.metadata["video_processing"]["hdr10"]
    assert all(part in note for part in said), note
