"""The delivery operations (issue 13) on generated media, checked by probing what was made:
audio-only outputs, downmix, loudness (measured by ebur128), deinterlace, pad, fades,
encoder controls, 10-bit and HDR."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from jobs.errors import PermanentError
from workers.ffmpeg.probe import probe

pytestmark = pytest.mark.ffmpeg


def near(actual: int | None, expected: int, tolerance: int = 60) -> bool:
    return actual is not None and abs(actual - expected) <= tolerance


async def info_of(path: Path, demuxer: str, video: int | None, audio: int | None) -> Any:
    """The stream details the probe read (of the first video and first audio stream)."""
    p = await probe(path)
    assert p.demuxer == demuxer and p.video_index == video
    assert audio is None or audio == next(s.index for s in p.streams if s.kind == "audio")
    return p.info


def ebur128_integrated(ffmpeg: str, path: Path) -> float:
    """Integrated loudness by ffmpeg's ebur128 filter (an independent meter)."""
    proc = subprocess.run(
        [ffmpeg, "-nostdin", "-hide_banner", "-nostats", "-i", str(path), "-map", "0:a:0",
         "-af", "ebur128", "-f", "null", "-"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    summary = proc.stderr[proc.stderr.rindex("Summary:") :]
    return float(re.search(r"I:\s+(-?\d+\.\d) LUFS", summary).group(1))  # type: ignore[union-attr]


def channel_rms(ffmpeg: str, path: Path) -> list[float]:
    proc = subprocess.run(
        [ffmpeg, "-nostdin", "-hide_banner", "-nostats", "-i", str(path), "-af",
         "astats=measure_overall=none:measure_perchannel=RMS_level", "-f", "null", "-"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    values = re.findall(r"RMS level dB: (-?\d+\.\d+|-inf)", proc.stderr)
    return [float(v) for v in values]


def mean_luma(ffmpeg: str, path: Path, at: float) -> float:
    proc = subprocess.run(
        [ffmpeg, "-nostdin", "-hide_banner", "-ss", str(at), "-i", str(path), "-frames:v", "1",
         "-vf", "signalstats,metadata=print:key=lavfi.signalstats.YAVG", "-f", "null", "-"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return float(re.findall(r"YAVG=(\d+(?:\.\d+)?)", proc.stderr)[-1])


@pytest.fixture(scope="module")
def surround(ffmpeg_bin: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """1 s 5.1 wav files: a tone only in the centre, and one only in the LFE channel."""
    d = tmp_path_factory.mktemp("surround")
    out = {}
    for name, channel in (("centre", 2), ("lfe", 3)):
        gains = "|".join(f"c{i}={'c0' if i == channel else '0*c0'}" for i in range(6))
        out[name] = d / f"{name}.wav"
        subprocess.run(
            [ffmpeg_bin, "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
             "sine=f=440:duration=1:sample_rate=48000", "-af", f"pan=5.1|{gains}",
             "-c:a", "pcm_s16le", str(out[name])],
            check=True, timeout=60,
        )  # fmt: skip
    return out


@pytest.fixture(scope="module")
def quiet_noise(ffmpeg_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 s of video with quiet pink noise (around -30 LUFS)."""
    path = tmp_path_factory.mktemp("noise") / "noise.mp4"
    subprocess.run(
        [ffmpeg_bin, "-nostdin", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25:duration=4",
         "-f", "lavfi", "-i", "anoisesrc=color=pink:amplitude=0.05:duration=4:sample_rate=48000",
         "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac",
         "-shortest", str(path)],
        check=True, timeout=60,
    )  # fmt: skip
    return path


@pytest.fixture(scope="module")
def interlaced(ffmpeg_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1 s of top-field-first interlaced h264 (25i), 160x120."""
    path = tmp_path_factory.mktemp("interlaced") / "tff.mp4"
    subprocess.run(
        [ffmpeg_bin, "-nostdin", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=50:duration=1",
         "-vf", "tinterlace=interleave_top,fieldorder=tff", "-c:v", "libx264",
         "-preset", "ultrafast", "-flags", "+ildct+ilme", "-x264opts", "tff=1",
         "-pix_fmt", "yuv420p", str(path)],
        check=True, timeout=60,
    )  # fmt: skip
    return path


@pytest.fixture(scope="module")
def hdr(ffmpeg_bin: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1 s 10-bit PQ (HDR10-tagged) hevc, made with lavfi and zscale."""
    path = tmp_path_factory.mktemp("hdr") / "pq.mkv"
    graph = (
        "testsrc2=size=160x120:rate=25:duration=1,format=gbrpf32le,"
        "zscale=tin=bt709:t=smpte2084:pin=bt709:p=bt2020:m=bt2020nc:npl=100,format=yuv420p10le"
    )
    subprocess.run(
        [ffmpeg_bin, "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i", graph,
         "-c:v", "libx265", "-preset", "ultrafast", "-x265-params", "log-level=error",
         "-pix_fmt", "yuv420p10le", "-color_primaries", "bt2020", "-color_trc", "smpte2084",
         "-colorspace", "bt2020nc", str(path)],
        check=True, timeout=120,
    )  # fmt: skip
    return path


# --- audio-only outputs ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("output", "codec", "media_type", "demuxer"),
    [
        ({"container": "mp3"}, "mp3", "audio/mpeg", "mp3"),
        ({"container": "m4a"}, "aac", "audio/mp4", "mov"),
        ({"container": "ogg"}, "opus", "audio/ogg", "ogg"),
        ({"container": "webm", "video_codec": "none"}, "opus", "audio/webm", "matroska"),
        ({"container": "wav"}, "pcm_s16le", "audio/wav", "wav"),
        ({"container": "wav", "audio_codec": "pcm_s24le"}, "pcm_s24le", "audio/wav", "wav"),
        ({"container": "flac"}, "flac", "audio/flac", "flac"),
    ],
)
async def test_audio_only_outputs(
    run_edit: Any, output: dict[str, Any], codec: str, media_type: str, demuxer: str
) -> None:
    result, made = await run_edit([{"op": "trim", "start": 0.5, "end": 1.5}], output)
    assert result.media_type == media_type
    assert made.video_index is None and made.has_audio
    assert [s.codec for s in made.streams] == [codec]
    assert result.metadata["audio_codec"] == codec
    assert near(made.duration_ms, 1000, 80)


async def test_audio_output_needs_no_video_in_the_source(
    run_edit: Any, media: Any, ffmpeg_bin: str
) -> None:
    out = {"container": "mp3", "audio_sample_rate": 22050, "audio_channels": 2,
           "audio_bitrate_kbps": 96}  # fmt: skip
    result, made = await run_edit([], out, inputs=[media.wav])
    info = await info_of(result.path, "mp3", None, made.streams[0].index)
    assert (info.audio_sample_rate, info.audio_channels, info.audio_layout) == (22050, 2, "stereo")


async def test_an_audio_output_from_a_silent_video_is_refused(run_edit: Any, media: Any) -> None:
    with pytest.raises(PermanentError) as err:
        await run_edit([], {"container": "mp3"}, inputs=[media.small])
    assert "no audio track" in err.value.message


async def test_a_video_output_from_an_audio_file_is_refused(run_edit: Any, media: Any) -> None:
    with pytest.raises(PermanentError) as err:
        await run_edit([], {}, inputs=[media.wav])
    assert "no video stream" in err.value.message


async def test_surround_downmix_to_stereo_keeps_the_centre_and_drops_the_lfe(
    run_edit: Any, surround: dict[str, Path], ffmpeg_bin: str
) -> None:
    out = {"container": "wav", "audio_channels": 2}
    centre, _ = await run_edit([], out, inputs=[surround["centre"]])
    left, right = channel_rms(ffmpeg_bin, centre.path)
    source = channel_rms(ffmpeg_bin, surround["centre"])[2]
    assert left == right and left > -60
    # -3 dB for the centre, then normalised by 1 / (1 + 0.707 + 0.707): -10.7 dB in all.
    assert abs((source - left) - 10.7) < 0.5
    lfe, _ = await run_edit([], out, inputs=[surround["lfe"]])
    assert all(v == float("-inf") or v < -90 for v in channel_rms(ffmpeg_bin, lfe.path))


# --- loudness ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "output"),
    [
        ({"op": "loudnorm", "target_lufs": -16, "true_peak_db": -1.5, "lra": 11}, {}),
        ({"op": "loudnorm", "target_lufs": -23, "true_peak_db": -2, "lra": 7},
         {"container": "m4a"}),
    ],
)  # fmt: skip
async def test_loudnorm_lands_within_one_lu_of_the_target(
    run_edit: Any, quiet_noise: Path, ffmpeg_bin: str, op: dict[str, Any], output: dict[str, Any]
) -> None:
    before = ebur128_integrated(ffmpeg_bin, quiet_noise)
    assert before < op["target_lufs"] - 5  # the source is well off the target
    result, made = await run_edit([op], output, inputs=[quiet_noise])
    after = ebur128_integrated(ffmpeg_bin, result.path)
    assert abs(after - op["target_lufs"]) <= 1.0
    report = result.metadata["loudness"]
    assert report["target_lufs"] == op["target_lufs"]
    assert abs(report["source_integrated_lufs"] - before) <= 0.5
    assert abs(report["integrated_lufs"] - after) <= 0.5
    assert near(made.duration_ms, 4000, 100)


async def test_loudnorm_after_a_trim_and_a_volume_change(
    run_edit: Any, quiet_noise: Path, ffmpeg_bin: str
) -> None:
    ops = [{"op": "trim", "start": 0.5}, {"op": "volume", "db": -10},
           {"op": "loudnorm", "target_lufs": -14}]  # fmt: skip
    result, made = await run_edit(ops, {"container": "flac"}, inputs=[quiet_noise])
    assert abs(ebur128_integrated(ffmpeg_bin, result.path) + 14) <= 1.0
    assert result.metadata["loudness"]["source_integrated_lufs"] < -35  # measured after volume
    assert near(made.duration_ms, 3500, 80)


async def test_loudnorm_on_less_than_three_seconds_is_refused(
    run_edit: Any, quiet_noise: Path
) -> None:
    ops = [{"op": "trim", "start": 1, "end": 2.5}, {"op": "loudnorm"}]
    with pytest.raises(PermanentError, match=r"at least 3\.000 s"):
        await run_edit(ops, {"container": "flac"}, inputs=[quiet_noise])


async def test_loudnorm_on_a_silent_track_fails_clearly(run_edit: Any, clip_maker: Any) -> None:
    silent = clip_maker(
        "silent.mp4", "-f", "lavfi", "-i", "testsrc2=size=160x120:rate=25:duration=3",
        "-f", "lavfi", "-i", "anullsrc=r=48000:cl=stereo", "-t", "3",
        "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac",
    )  # fmt: skip
    with pytest.raises(PermanentError) as err:
        await run_edit([{"op": "loudnorm"}], {}, inputs=[silent])
    assert "silent" in err.value.message


# --- deinterlace, pad, fade -------------------------------------------------------------


async def test_deinterlace_makes_progressive_frames(
    run_edit: Any, interlaced: Path, ffmpeg_bin: str
) -> None:
    src = await info_of(interlaced, "mov", 0, None)
    assert src.field_order == "tt"
    for op in ({"op": "deinterlace"}, {"op": "deinterlace", "filter": "yadif", "auto": True}):
        result, made = await run_edit([op], inputs=[interlaced])
        out = await info_of(result.path, "mov", made.video_index, None)
        assert out.field_order == "progressive"
        assert (made.width, made.height) == (160, 120)
        assert "field order: tt" in result.metadata["video_processing"]["deinterlace"]


async def test_auto_deinterlace_leaves_a_progressive_source_alone(run_edit: Any) -> None:
    result, _ = await run_edit([{"op": "deinterlace", "auto": True}])
    assert "skipped" in result.metadata["video_processing"]["deinterlace"]


@pytest.mark.parametrize(
    ("op", "size"),
    [
        ({"aspect": "16:9"}, (428, 240)),  # pillarbox: 240 * 16 / 9 = 426.7 -> 427 -> even
        ({"aspect": "1:1"}, (320, 320)),
        ({"aspect": "9:16", "color": "white"}, (320, 570)),
        ({"width": 400, "height": 300}, (400, 300)),
    ],
)
async def test_pad(run_edit: Any, op: dict[str, Any], size: tuple[int, int]) -> None:
    _, made = await run_edit([{"op": "pad", **op}])
    assert (made.width, made.height) == size


async def test_pad_bars_have_the_colour(run_edit: Any, ffmpeg_bin: str, clip_maker: Any) -> None:
    grey = clip_maker(
        "grey.mp4", "-f", "lavfi", "-i", "color=c=gray:size=160x160:rate=25:duration=1",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
    )  # fmt: skip
    white, _ = await run_edit([{"op": "pad", "width": 640, "height": 160, "color": "white"}],
                              inputs=[grey])  # fmt: skip
    black, _ = await run_edit([{"op": "pad", "width": 640, "height": 160}], inputs=[grey])
    assert mean_luma(ffmpeg_bin, white.path, 0.5) > mean_luma(ffmpeg_bin, black.path, 0.5) + 100


async def test_pad_smaller_than_the_frame_is_refused(run_edit: Any) -> None:
    with pytest.raises(PermanentError, match="smaller than the 320x240 frame"):
        await run_edit([{"op": "pad", "width": 200, "height": 300}])


async def test_fade_in_and_out_darkens_the_ends_only(run_edit: Any, ffmpeg_bin: str) -> None:
    plain, _ = await run_edit()
    faded, made = await run_edit([{"op": "fade", "fade_in": 0.5, "fade_out": 0.5}])
    assert near(made.duration_ms, 2000)
    middle = mean_luma(ffmpeg_bin, plain.path, 1.0)
    assert abs(mean_luma(ffmpeg_bin, faded.path, 1.0) - middle) < 2
    assert mean_luma(ffmpeg_bin, faded.path, 0.0) < 16 + (middle - 16) / 4  # dark at the start
    assert mean_luma(ffmpeg_bin, faded.path, 1.96) < 16 + (middle - 16) / 4  # and at the end
    start = channel_rms(ffmpeg_bin, faded.path)
    assert start  # the audio is still there (faded, not removed)


async def test_audio_fade_on_an_audio_output(
    run_edit: Any, media: Any, ffmpeg_bin: str, tmp_path: Path
) -> None:
    result, _ = await run_edit([{"op": "fade", "fade_out": 0.5}], {"container": "wav"},
                               inputs=[media.wav])  # fmt: skip
    tail = tmp_path / "tail.wav"
    subprocess.run([ffmpeg_bin, "-nostdin", "-loglevel", "error", "-y", "-ss", "0.9", "-i",
                    str(result.path), str(tail)], check=True, timeout=60)  # fmt: skip
    head = tmp_path / "head.wav"
    subprocess.run([ffmpeg_bin, "-nostdin", "-loglevel", "error", "-y", "-t", "0.4", "-i",
                    str(result.path), str(head)], check=True, timeout=60)  # fmt: skip
    assert channel_rms(ffmpeg_bin, tail)[0] < channel_rms(ffmpeg_bin, head)[0] - 15


# --- encoder controls, bit depth, HDR ---------------------------------------------------


async def test_encoder_controls_reach_the_stream(run_edit: Any, tmp_path: Path) -> None:
    out = {"preset": "veryfast", "profile": "main", "level": "3.1", "gop_length": 10,
           "max_bitrate_kbps": 800, "buffer_size_kbits": 1600}  # fmt: skip
    result, made = await run_edit([], out)
    assert made.video_codec == "h264"
    import av

    with av.open(str(result.path)) as c:
        stream = c.streams.video[0]
        assert stream.codec_context.profile == "Main"
        keyframes = [p.pts for p in c.demux(stream) if p.is_keyframe and p.pts is not None]
    assert len(keyframes) >= 5  # 50 frames, a GOP of at most 10


async def test_two_pass_bitrate(run_edit: Any) -> None:
    for codec in ("h264", "hevc", "vp9"):
        container = "webm" if codec == "vp9" else "mp4"
        out = {"container": container, "video_codec": codec, "video_bitrate_kbps": 300,
               "two_pass": True}  # fmt: skip
        result, made = await run_edit([], out)
        assert made.video_codec == codec and near(made.duration_ms, 2000)
        assert [p.name for p in result.path.parent.iterdir() if "passlog" in p.name] == []
        kbps = made.size_bytes * 8 / 1000 / 2
        assert 150 < kbps < 600, (codec, kbps)  # near the 300 kb/s aimed at (+ audio)


async def test_ten_bit_hdr_source_stays_ten_bit_with_hevc(run_edit: Any, hdr: Path) -> None:
    result, made = await run_edit([], {"container": "mkv", "video_codec": "hevc"}, inputs=[hdr])
    info = await info_of(result.path, "matroska", made.video_index, None)
    assert (info.pix_fmt, info.bit_depth) == ("yuv420p10le", 10)
    assert (info.color_primaries, info.color_transfer, info.color_matrix) == (
        "bt2020", "smpte2084", "bt2020nc",
    )  # fmt: skip
    assert result.metadata["video_processing"]["bit_depth"] == 10


async def test_hdr_source_is_tone_mapped_for_h264(run_edit: Any, hdr: Path) -> None:
    result, made = await run_edit([], {"container": "mp4"}, inputs=[hdr])
    info = await info_of(result.path, "mov", made.video_index, None)
    assert (info.pix_fmt, info.bit_depth) == ("yuv420p", 8)
    assert (info.color_primaries, info.color_transfer, info.color_matrix) == (
        "bt709", "bt709", "bt709",
    )  # fmt: skip
    assert "pq HDR to SDR" in result.metadata["video_processing"]["tone_mapping"]


async def test_ten_bit_can_be_asked_for_from_an_eight_bit_source(run_edit: Any) -> None:
    out = {"container": "mkv", "video_codec": "hevc", "bit_depth": 10, "profile": "main10"}
    result, made = await run_edit([], out)
    info = await info_of(result.path, "matroska", made.video_index, None)
    assert info.bit_depth == 10


async def test_plain_edits_stay_eight_bit_with_no_extra_metadata(run_edit: Any) -> None:
    result, made = await run_edit([{"op": "scale", "width": 160}])
    info = await info_of(result.path, "mov", made.video_index, None)
    assert info.pix_fmt == "yuv420p" and "video_processing" not in result.metadata


# --- crop detection -----------------------------------------------------------------------


async def test_auto_crop_removes_black_borders(run_edit: Any, clip_maker: Any) -> None:
    boxed = clip_maker(
        "boxed.mp4", "-f", "lavfi", "-i",
        "testsrc2=size=160x90:rate=25:duration=1,pad=160:120:0:15:color=black",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
    )  # fmt: skip
    result, made = await run_edit([{"op": "crop", "crop": "auto"}], inputs=[boxed])
    assert (made.width, made.height) == (160, 90)
    assert result.metadata["video_processing"]["crop"].startswith("auto: 160x90 at 0,")


async def test_auto_crop_of_an_all_black_source_leaves_the_frame(
    run_edit: Any, clip_maker: Any
) -> None:
    black = clip_maker(
        "black.mp4", "-f", "lavfi", "-i", "color=c=black:size=160x120:rate=25:duration=1",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
    )  # fmt: skip
    result, made = await run_edit(
        [{"op": "trim", "start": 0.2}, {"op": "crop", "crop": "auto"}], inputs=[black]
    )
    assert (made.width, made.height) == (160, 120)
    assert "not cropped" in result.metadata["video_processing"]["crop"]


def test_cropdetect_output_is_read_strictly() -> None:
    from workers.ffmpeg.cropdetect import Detected, parse

    good = "[Parsed_cropdetect_0 @ 0x5616] x1:0 x2:159 y1:14 y2:103 w:160 h:90 x:0 y:14 pts:1 t:0.04 crop=160:90:0:14"
    assert parse(["noise", good], 160, 120) == Detected(160, 90, 0, 14)
    assert parse([good.replace("crop=160:90:0:14", "crop=160:90:0:40")], 160, 120) is None
    for lines in ([], ["crop=1:1:0:0"], [good + ";movie=x"], [good.replace("0x5616", "zz")]):
        with pytest.raises(PermanentError, match="printed no result"):
            parse(lines, 160, 120)


async def test_loudnorm_of_a_concat_measures_the_joined_sound(
    run_edit: Any, media: Any, ffmpeg_bin: str
) -> None:
    # The measuring pass of a concat sends the joined picture to a second null output, so
    # that the concat's audio pad (not its video pad) is what loudnorm measures.
    concat = {"op": "concat", "sources": [{"digest": "sha256:" + "2" * 64}]}
    ops = [concat, {"op": "loudnorm", "target_lufs": -20}]
    result, made = await run_edit(ops, {}, inputs=[media.clip, media.clip])
    assert abs(ebur128_integrated(ffmpeg_bin, result.path) + 20) <= 1.0
    assert near(made.duration_ms, 4000, 100) and made.has_audio
