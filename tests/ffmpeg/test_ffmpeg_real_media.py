"""The operations on real footage (Big Buck Bunny's 720p trailer with 5.1 audio, and a
handheld 'bikes' clip), not only lavfi patterns: what was made is measured with ffprobe's
JSON and ffmpeg's own meters (psnr, ebur128), independent of vidjobs' probing."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.ffmpeg.test_ffmpeg_delivery import ebur128_integrated
from tests.support.realmedia import BIG_BUCK_BUNNY, BIKES, real_clip

pytestmark = pytest.mark.ffmpeg


@pytest.fixture(scope="module")
def bbb() -> Path:
    return real_clip(BIG_BUCK_BUNNY)


@pytest.fixture(scope="module")
def bikes() -> Path:
    return real_clip(BIKES)


def ffprobe(ffmpeg: str, path: Path) -> dict[str, Any]:
    exe = str(Path(ffmpeg).with_name("ffprobe"))
    out = subprocess.run(
        [exe, "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    return dict(json.loads(out))


def streams(info: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [s for s in info["streams"] if s["codec_type"] == kind]


def psnr(ffmpeg: str, made: Path, reference: Path, *ref_args: str, skip: float = 0.0) -> float:
    """Average PSNR of `made` against `reference` (cut/scaled by `ref_args` first), leaving
    out both's first `skip` seconds."""
    cut = f"trim=start={skip},setpts=PTS-STARTPTS"
    ref = ",".join([*ref_args, cut])
    vf = f"[0:v]{cut}[made];[1:v]{ref}[ref];[made][ref]psnr"
    proc = subprocess.run(
        [ffmpeg, "-nostdin", "-hide_banner", "-nostats", "-i", str(made), "-i", str(reference),
         "-filter_complex", vf, "-f", "null", "-"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    return float(re.findall(r"average:(\d+(?:\.\d+)?|inf)", proc.stderr)[-1])


async def test_trim_scale_and_fade_on_film(run_edit: Any, bbb: Path, ffmpeg_bin: str) -> None:
    ops = [
        {"op": "trim", "start": 1.0, "end": 4.0},
        {"op": "scale", "height": 480},
        {"op": "fade", "fade_in": 0.5},
    ]
    result, _ = await run_edit(ops, {"container": "mp4"}, inputs=[bbb])
    info = ffprobe(ffmpeg_bin, result.path)
    (video,) = streams(info, "video")
    assert video["height"] == 480 and video["width"] % 2 == 0
    assert abs(video["width"] / video["height"] - 1280 / 720) < 0.01
    assert abs(float(info["format"]["duration"]) - 3.0) <= 0.05
    assert streams(info, "audio"), "the film's audio was kept"
    # After the fade, the picture is the film's: compared with the source cut the same way.
    after_fade = psnr(
        ffmpeg_bin, result.path, bbb,
        "trim=start=1:end=4", "setpts=PTS-STARTPTS", "scale=w=%d:h=480" % video["width"],
        skip=0.6,
    )  # fmt: skip
    assert after_fade > 30.0
    during_fade = psnr(
        ffmpeg_bin, result.path, bbb, "trim=start=1:end=1.2", "setpts=PTS-STARTPTS",
        "scale=w=%d:h=480" % video["width"],
    )  # fmt: skip
    assert during_fade < after_fade - 5, "the first frames are faded from black"


async def test_surround_film_audio_becomes_stereo_aac(run_edit: Any, bbb: Path, ffmpeg_bin: str) -> None:
    result, _ = await run_edit(
        [], {"container": "m4a", "audio_channels": 2, "audio_bitrate_kbps": 128}, inputs=[bbb]
    )
    info = ffprobe(ffmpeg_bin, result.path)
    assert not streams(info, "video")
    (audio,) = streams(info, "audio")
    assert (audio["codec_name"], audio["channels"]) == ("aac", 2)
    assert abs(float(info["format"]["duration"]) - 5.3) <= 0.1


async def test_loudness_of_film_audio_lands_on_target(run_edit: Any, bbb: Path, ffmpeg_bin: str) -> None:
    result, _ = await run_edit(
        [{"op": "loudnorm", "target_lufs": -23}], {"container": "mp4"}, inputs=[bbb]
    )
    assert abs(ebur128_integrated(ffmpeg_bin, result.path) - -23.0) <= 1.0
    assert result.metadata.get("loudness"), "the measured loudness is in the metadata"


async def test_high_quality_transcode_of_handheld_footage(run_edit: Any, bikes: Path, ffmpeg_bin: str) -> None:
    result, _ = await run_edit([], {"container": "mp4", "crf": 18}, inputs=[bikes])
    info = ffprobe(ffmpeg_bin, result.path)
    (video,) = streams(info, "video")
    assert (video["width"], video["height"], video["codec_name"]) == (640, 272, "h264")
    assert int(video["nb_frames"]) == 250
    assert psnr(ffmpeg_bin, result.path, bikes) > 38.0


async def test_hevc_ten_bit_and_a_thumbnail_of_film(run_edit: Any, bbb: Path, ffmpeg_bin: str, tmp_path: Path) -> None:
    result, _ = await run_edit(
        [{"op": "trim", "start": 2.0, "end": 3.0}],
        {"container": "mkv", "video_codec": "hevc", "bit_depth": 10, "preset": "ultrafast"},
        inputs=[bbb],
    )
    (video,) = streams(ffprobe(ffmpeg_bin, result.path), "video")
    assert video["codec_name"] == "hevc" and video["pix_fmt"].endswith("10le")
    thumb, _ = await run_edit(
        [{"op": "thumbnail", "at": 2.5}], {"container": "jpg"}, inputs=[bbb]
    )
    (image,) = streams(ffprobe(ffmpeg_bin, thumb.path), "video")
    assert (image["width"], image["height"]) == (1280, 720)
    frame = tmp_path / "frame.png"
    subprocess.run(
        [ffmpeg_bin, "-nostdin", "-v", "error", "-ss", "2.5", "-i", str(bbb), "-frames:v", "1", str(frame)],
        check=True, timeout=60,
    )  # fmt: skip
    assert psnr(ffmpeg_bin, thumb.path, frame) > 30.0, "the thumbnail is the frame at 2.5 s"
