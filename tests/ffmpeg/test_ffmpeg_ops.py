"""Every edit operation, run by the real ffmpeg and checked by probing what it wrote."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from jobs.errors import PermanentError
from workers.ffmpeg.binary import VIDEO_ENCODERS, pick_encoder

pytestmark = pytest.mark.ffmpeg

FRAME_MS = 40  # one frame at the test clips' 25 fps


def near(actual: int | None, expected: int, tolerance: int = FRAME_MS) -> bool:
    return actual is not None and abs(actual - expected) <= tolerance


async def test_plain_transcode_keeps_size_duration_and_audio(run_edit: Any) -> None:
    progress: list[float] = []
    result, made = await run_edit(progress=progress)
    assert result.media_type == "video/mp4"
    assert (made.width, made.height, made.video_codec) == (320, 240, "h264")
    assert made.has_audio and near(made.duration_ms, 2000)
    assert result.metadata == {
        "duration_ms": made.duration_ms,
        "width": 320,
        "height": 240,
        "video_codec": "h264",
        "has_audio": True,
        "size_bytes": result.path.stat().st_size,
    }
    assert progress[0] == 0.0 and progress[-1] == 1.0
    assert all(0.0 <= p <= 1.0 for p in progress)
    assert progress == sorted(progress)


async def test_trim_is_frame_accurate(run_edit: Any) -> None:
    _, made = await run_edit([{"op": "trim", "start": 0.52, "end": 1.48}])
    assert near(made.duration_ms, 960) and made.has_audio


async def test_trim_to_the_end_when_no_end_is_given(run_edit: Any) -> None:
    _, made = await run_edit([{"op": "trim", "start": 1.2}])
    assert near(made.duration_ms, 800)


async def test_fast_trim_copies_the_streams(run_edit: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import workers.ffmpeg.executor as executor

    commands: list[list[str]] = []
    real_run = executor.run_ffmpeg

    async def recording_run(argv: list[str], *args: Any, **kwargs: Any) -> Any:
        commands.append(list(argv))
        return await real_run(argv, *args, **kwargs)

    monkeypatch.setattr(executor, "run_ffmpeg", recording_run)
    _, made = await run_edit([{"op": "trim", "start": 1.0, "end": 2.0, "fast": True}])
    assert len(commands) == 1 and "copy" in commands[0] and "-filter_complex" not in commands[0]
    # A keyframe sits at 1.0 s, so even a keyframe cut lands on the requested window.
    assert (made.video_codec, made.width, made.height) == ("h264", 320, 240)
    assert near(made.duration_ms, 1000, 2 * FRAME_MS) and made.has_audio


async def test_fast_trim_with_another_op_re_encodes_exactly(run_edit: Any) -> None:
    _, made = await run_edit(
        [{"op": "trim", "start": 0.6, "end": 1.4, "fast": True}, {"op": "scale", "width": 160}]
    )
    assert (made.width, made.height) == (160, 120) and near(made.duration_ms, 800)


@pytest.mark.parametrize(
    ("scale", "size"),
    [
        ({"width": 160}, (160, 120)),
        ({"height": 101}, (134, 102)),  # 320*101/240 = 134.7 -> 134; odd 101 -> 102
        ({"width": 200, "height": 100}, (200, 100)),
        ({"width": 99, "height": 51}, (100, 52)),
    ],
)
async def test_scale_keeps_aspect_and_even_sides(
    run_edit: Any, scale: dict[str, int], size: tuple[int, int]
) -> None:
    _, made = await run_edit([{"op": "scale", **scale}])
    assert (made.width, made.height) == size


async def test_crop_inside_the_frame(run_edit: Any) -> None:
    _, made = await run_edit([{"op": "crop", "x": 10, "y": 20, "width": 101, "height": 51}])
    assert (made.width, made.height) == (100, 50)  # odd sides drop a pixel for yuv420p


async def test_crop_outside_the_frame_is_refused(run_edit: Any) -> None:
    with pytest.raises(PermanentError) as err:
        await run_edit([{"op": "crop", "x": 300, "y": 0, "width": 64, "height": 64}])
    assert err.value.code == "invalid_input" and "320x240" in err.value.message


async def test_crop_is_checked_against_the_size_after_earlier_ops(run_edit: Any) -> None:
    with pytest.raises(PermanentError):
        await run_edit([{"op": "scale", "width": 160}, {"op": "crop", "width": 200, "height": 100}])


async def test_fps(run_edit: Any) -> None:
    _, made = await run_edit([{"op": "fps", "fps": 10}])
    assert made.fps == 10 and near(made.duration_ms, 2000, 100)


@pytest.mark.parametrize(
    ("op", "turn"),
    [
        ({"op": "rotate", "degrees": 90}, "clockwise"),
        ({"op": "rotate", "degrees": 270}, "counterclockwise"),
        ({"op": "rotate", "degrees": 180}, "half"),
        ({"op": "flip", "direction": "horizontal"}, "mirror"),
        ({"op": "flip", "direction": "vertical"}, "upside_down"),
    ],
)
async def test_rotate_and_flip_move_pixels_the_right_way(
    run_edit: Any, media: Any, ffmpeg_bin: str, op: dict[str, Any], turn: str
) -> None:
    result, made = await run_edit([op])
    source = Frame.first(ffmpeg_bin, media.clip, 320, 240)
    frame = Frame.first(ffmpeg_bin, result.path, made.width, made.height)
    turns = ("clockwise", "counterclockwise", "half", "mirror", "upside_down", "same")
    candidates = {name: getattr(source, name)() for name in turns}
    distances = {
        name: frame.distance(c)
        for name, c in candidates.items()
        if (c.width, c.height) == (frame.width, frame.height)
    }
    best, runner_up = sorted(distances.values())[:2]
    # Equal up to encoding noise, and clearly closer than any other turn of the picture.
    assert distances[turn] == best < 8 and runner_up > 3 * best


@pytest.mark.parametrize(("factor", "duration"), [(2, 1000), (0.5, 4000), (4, 500), (0.25, 8000)])
async def test_speed_changes_video_and_audio_together(
    run_edit: Any, factor: float, duration: int
) -> None:
    _, made = await run_edit([{"op": "speed", "factor": factor}])
    assert near(made.duration_ms, duration, 2 * FRAME_MS) and made.has_audio


async def test_mute_drops_audio(run_edit: Any) -> None:
    _, made = await run_edit([{"op": "mute"}])
    assert not made.has_audio and made.video_codec == "h264"


async def test_audio_codec_none_drops_audio(run_edit: Any) -> None:
    _, made = await run_edit(output={"audio_codec": "none"})
    assert not made.has_audio


async def test_volume_in_db(run_edit: Any, media: Any, ffmpeg_bin: str) -> None:
    result, made = await run_edit([{"op": "volume", "db": -6}])
    assert made.has_audio
    before, after = mean_volume(ffmpeg_bin, media.clip), mean_volume(ffmpeg_bin, result.path)
    assert abs((after - before) - (-6)) < 1.0


@pytest.mark.parametrize(
    ("output", "codecs", "media_type"),
    [
        ({"container": "mp4", "video_codec": "hevc"}, ("hevc", True), "video/mp4"),
        ({"container": "webm"}, ("vp9", True), "video/webm"),
        (
            {"container": "mkv", "video_codec": "av1", "audio_codec": "mp3"},
            ("av1", True),
            "video/x-matroska",
        ),
        ({"container": "mov", "video_bitrate_kbps": 300}, ("h264", True), "video/quicktime"),
        ({"container": "mp4", "audio_codec": "opus", "crf": 30}, ("h264", True), "video/mp4"),
    ],
)
async def test_output_codecs(
    run_edit: Any, output: dict[str, Any], codecs: tuple[str, bool], media_type: str
) -> None:
    result, made = await run_edit([{"op": "trim", "end": 1}], output=output)
    assert (made.video_codec, made.has_audio) == codecs
    assert result.media_type == media_type and (made.width, made.height) == (320, 240)
    assert near(made.duration_ms, 1000, 2 * FRAME_MS)
    audio = next(s.codec for s in made.streams if s.kind == "audio")
    assert audio == (output.get("audio_codec") or {"webm": "opus"}.get(output["container"], "aac"))


def test_av1_has_an_encoder(ffmpeg_bin: str) -> None:
    assert pick_encoder(ffmpeg_bin, VIDEO_ENCODERS, "av1") in VIDEO_ENCODERS["av1"]


@pytest.mark.parametrize(
    ("container", "codec", "media_type"),
    [("jpg", "mjpeg", "image/jpeg"), ("png", "png", "image/png")],
)
async def test_thumbnail(run_edit: Any, container: str, codec: str, media_type: str) -> None:
    result, made = await run_edit(
        [{"op": "scale", "width": 160}, {"op": "thumbnail", "at": 1.5}],
        output={"container": container},
    )
    assert result.media_type == media_type and made.video_codec == codec
    assert (made.width, made.height) == (160, 120) and not made.has_audio


async def test_thumbnail_past_the_end_is_refused(run_edit: Any) -> None:
    with pytest.raises(PermanentError) as err:
        await run_edit([{"op": "thumbnail", "at": 5}], output={"container": "png"})
    assert err.value.code == "invalid_input"


async def test_thumbnail_after_trim_and_speed_picks_the_edited_time(
    run_edit: Any, media: Any, ffmpeg_bin: str
) -> None:
    # trim from 0.4 s at double speed: 0.5 s on the edited timeline is 1.4 s of the source.
    result, _ = await run_edit(
        [
            {"op": "trim", "start": 0.4},
            {"op": "speed", "factor": 2},
            {"op": "thumbnail", "at": 0.5},
        ],
        output={"container": "png"},
    )
    assert result.path.stat().st_size > 0


async def test_gif_with_palette(run_edit: Any) -> None:
    result, made = await run_edit(
        [{"op": "scale", "width": 160}, {"op": "fps", "fps": 10}], output={"container": "gif"}
    )
    assert result.media_type == "image/gif" and made.video_codec == "gif"
    assert (made.width, made.height) == (160, 120) and not made.has_audio
    assert near(made.duration_ms, 2000, 100)


async def test_concat_normalises_to_the_first_input(run_edit: Any, media: Any) -> None:
    # clip: 2 s 320x240 25 fps with audio; small: 1 s 160x120 30 fps without audio.
    concat = {"op": "concat", "sources": [{"digest": "sha256:" + "2" * 64}]}
    _, made = await run_edit([concat], inputs=[media.clip, media.small])
    assert (made.width, made.height, made.fps) == (320, 240, 25)
    assert near(made.duration_ms, 3000, 2 * FRAME_MS) and made.has_audio


async def test_concat_then_trim_and_mute(run_edit: Any, media: Any) -> None:
    concat = {"op": "concat", "sources": [{"digest": "sha256:" + "2" * 64}] * 2}
    _, made = await run_edit(
        [concat, {"op": "trim", "start": 1.5, "end": 3.5}, {"op": "mute"}],
        inputs=[media.clip, media.small, media.small],
    )
    assert near(made.duration_ms, 2000) and not made.has_audio


async def test_watermark_in_a_corner(run_edit: Any, media: Any, ffmpeg_bin: str) -> None:
    mark = {
        "op": "watermark", "source": {"digest": "sha256:" + "2" * 64},
        "position": "bottom_right", "margin": 10, "width": 32, "opacity": 1.0,
    }  # fmt: skip
    result, made = await run_edit([mark], inputs=[media.clip, media.logo])
    assert (made.width, made.height) == (320, 240) and made.has_audio
    rgb = first_frame_rgb(ffmpeg_bin, result.path, 320, 240)
    # The 32x16 mark covers x 278..309, y 214..229; nothing red outside it.
    assert is_red(pixel(rgb, 320, 293, 221))
    assert not is_red(pixel(rgb, 320, 293, 205)) and not is_red(pixel(rgb, 320, 270, 221))


async def test_watermark_opacity_blends(run_edit: Any, media: Any, ffmpeg_bin: str) -> None:
    mark = {"op": "watermark", "source": {"digest": "sha256:" + "2" * 64}, "position": "center",
            "opacity": 0.0}  # fmt: skip
    result, _ = await run_edit([mark], inputs=[media.clip, media.logo])
    plain, _ = await run_edit([{"op": "trim", "end": 2}])
    a = first_frame_rgb(ffmpeg_bin, result.path, 320, 240)
    b = first_frame_rgb(ffmpeg_bin, plain.path, 320, 240)
    assert not is_red(pixel(a, 320, 160, 120))
    assert abs(sum(pixel(a, 320, 160, 120)) - sum(pixel(b, 320, 160, 120))) < 30


# --- helpers -------------------------------------------------------------------------


class Frame:
    """An RGB frame as rows of pixels, with the turns the edit ops should perform."""

    def __init__(self, rows: list[list[tuple[int, int, int]]]) -> None:
        self.rows = rows
        self.height, self.width = len(rows), len(rows[0])

    @classmethod
    def first(cls, ffmpeg: str, path: Path, width: int | None, height: int | None) -> Frame:
        assert width and height
        rgb = first_frame_rgb(ffmpeg, path, width, height)
        return cls([[pixel(rgb, width, x, y) for x in range(width)] for y in range(height)])

    def mirror(self) -> Frame:
        return Frame([row[::-1] for row in self.rows])

    def upside_down(self) -> Frame:
        return Frame(self.rows[::-1])

    def same(self) -> Frame:
        return self

    def half(self) -> Frame:
        return self.mirror().upside_down()

    def clockwise(self) -> Frame:
        return Frame([list(col) for col in zip(*self.rows[::-1], strict=True)])

    def counterclockwise(self) -> Frame:
        return self.clockwise().half()

    def distance(self, other: Frame) -> float:
        """Mean absolute difference per channel (0..255)."""
        total = sum(
            abs(a - b)
            for ra, rb in zip(self.rows, other.rows, strict=True)
            for pa, pb in zip(ra, rb, strict=True)
            for a, b in zip(pa, pb, strict=True)
        )
        return total / (self.width * self.height * 3)


def first_frame_rgb(ffmpeg: str, path: Path, width: int, height: int) -> bytes:
    out = subprocess.run(
        [ffmpeg, "-nostdin", "-loglevel", "error", "-i", str(path), "-frames:v", "1",
         "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"],
        capture_output=True, check=True, timeout=30,
    ).stdout  # fmt: skip
    assert len(out) == width * height * 3
    return out


def pixel(rgb: bytes, width: int, x: int, y: int) -> tuple[int, int, int]:
    i = (y * width + x) * 3
    return rgb[i], rgb[i + 1], rgb[i + 2]


def is_red(p: tuple[int, int, int]) -> bool:
    r, g, b = p
    return r > 200 and g < 60 and b < 60


def mean_volume(ffmpeg: str, path: Path) -> float:
    err = subprocess.run(
        [ffmpeg, "-nostdin", "-hide_banner", "-i", str(path), "-af", "volumedetect", "-vn",
         "-f", "null", "-"],
        capture_output=True, check=True, timeout=30, text=True,
    ).stderr  # fmt: skip
    m = re.search(r"mean_volume: (-?[\d.]+) dB", err)
    assert m, err
    return float(m.group(1))
