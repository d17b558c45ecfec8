"""The builder for the delivery operations: known tokens only, the passes it plans, and the
colour decisions it takes from the probed stream details (pure: no file is read)."""

from __future__ import annotations

import dataclasses
import itertools
import re
from pathlib import Path
from typing import Any

import pytest

from jobs.errors import PermanentError
from tests.ffmpeg.argv import parse
from tests.ffmpeg.test_ffmpeg_command import GRAPH, MAIN, SAFE_TOKEN, spec_for
from workers.ffmpeg.avprobe import MediaInfo
from workers.ffmpeg.binary import encoders
from workers.ffmpeg.command import build_command
from workers.ffmpeg.hdr10 import ContentLight, Hdr10, MasteringDisplay
from workers.ffmpeg.loudness import Measured

pytestmark = pytest.mark.ffmpeg

PQ = MediaInfo("yuv420p10le", 10, "bt2020", "smpte2084", "bt2020nc", "tv", "progressive", 2,
               "stereo", 48000)  # fmt: skip
SDR = MediaInfo("yuv420p", 8, "bt709", "bt709", "bt709", "tv", "tt", 2, "stereo", 48000)
LONG = dataclasses.replace(MAIN, duration_ms=10_000)  # loudnorm needs 3 s or more
MEASURED = Measured(-30.5, -12.25, 3.1, -40.7, 0.4)
EVERYTHING: list[dict[str, Any]] = [
    {"op": "trim", "start": 0.1},
    {"op": "deinterlace", "auto": True},
    {"op": "pad", "aspect": "16:9", "color": "gray"},
    {"op": "fade", "fade_in": 0.2, "fade_out": 0.3},
    {"op": "volume", "db": 2},
    {"op": "loudnorm", "target_lufs": -23, "true_peak_db": -2, "lra": 7},
]
CONTROLS = {"preset": "slow", "profile": "high", "level": "4.1", "gop_length": 48,
            "keyframe_interval": 2, "max_bitrate_kbps": 3000, "buffer_size_kbits": 6000,
            "video_bitrate_kbps": 2000, "two_pass": True, "audio_sample_rate": 44100,
            "audio_channels": 2}  # fmt: skip


def build(ffmpeg_bin: str, ops: list[dict[str, Any]], output: dict[str, Any], **kw: Any) -> Any:
    return build_command(
        ffmpeg_bin, spec_for(ops, output), [Path("/data/in0.bin")], [LONG],
        Path("/work/out.mp4"), encoders(ffmpeg_bin), stats=Path("/work/passlog-1"), **kw,
    )  # fmt: skip


def check_tokens(argv: list[str]) -> None:
    for before, token in itertools.pairwise(argv):
        if before == "-filter_complex":
            assert GRAPH.fullmatch(token), token
        elif before == "-force_key_frames":
            assert re.fullmatch(r"expr:gte\(t,n_forced\*\d+\.\d{3}\)", token)
        else:
            assert SAFE_TOKEN.fullmatch(token), token


def test_every_new_operation_and_control_gives_known_tokens(ffmpeg_bin: str) -> None:
    cmd = build(ffmpeg_bin, EVERYTHING, CONTROLS, media=[SDR], measured=MEASURED)
    check_tokens(cmd.argv)
    check_tokens(cmd.first_pass)
    parsed = parse(cmd.argv)
    video, audio = parsed.outputs[0].maps
    picture = [(f.name, f.args, f.opts) for f in parsed.chain(video)]
    assert picture == [
        ("bwdif", [], {"mode": "send_frame", "parity": "auto", "deint": "interlaced"}),
        ("pad", ["428", "240", "54", "0"], {"color": "gray"}),  # 240 * 16 / 9 -> 427 -> 428
        ("setsar", ["1"], {}),
        ("fade", [], {"t": "in", "st": "0", "d": "0.200"}),
        ("fade", [], {"t": "out", "st": "9.600", "d": "0.300"}),  # 9.9 s after the trim
        ("format", ["yuv420p"], {}),
    ]
    assert parsed.source(video) == "0:0" and parsed.source(audio) == "0:a:0"
    assert parsed.inputs[0].options["ss"] == "0.100"  # the trim seeks the input
    sound = parsed.chain(audio)
    assert [f.name for f in sound] == [
        "afade", "afade", "volume", "loudnorm", "aresample", "aformat"
    ]  # fmt: skip
    assert sound[2].args == ["2dB"]
    assert sound[3].opts == {
        "I": "-23", "TP": "-2", "LRA": "7", "measured_I": "-30.5", "measured_TP": "-12.25",
        "measured_LRA": "3.1", "measured_thresh": "-40.7", "offset": "0.4", "linear": "true",
    }  # fmt: skip
    assert sound[4].opts == {
        "osr": "44100", "clev": "0.707", "slev": "0.707", "lfe_mix_level": "0"
    }  # fmt: skip
    assert sound[5].opts == {"channel_layouts": "stereo"}
    assert (cmd.width, cmd.height) == (428, 240)
    argv = cmd.argv
    for option, value in (("-preset", "slow"), ("-profile:v", "high"), ("-level:v", "4.1"),
                          ("-g", "48"), ("-maxrate", "3000k"), ("-bufsize", "6000k"),
                          ("-pass", "2"), ("-passlogfile", "/work/passlog-1")):  # fmt: skip
        assert argv[argv.index(option) + 1] == value
    first = parse(cmd.first_pass)
    (out,) = first.outputs
    assert out.options["pass"] == "1" and out.options["f"] == "null" and out.path == "-"
    assert "an" in out.options and "-progress" not in first.head
    assert first.chain(out.maps[0]) == parsed.chain(video)  # the same picture, no audio
    assert len(out.maps) == 1


def test_hevc_two_pass_and_level_go_through_x265_params(ffmpeg_bin: str) -> None:
    out = {"video_codec": "hevc", "video_bitrate_kbps": 900, "two_pass": True, "level": "5.1"}
    cmd = build(ffmpeg_bin, [], out)
    params = cmd.argv[cmd.argv.index("-x265-params") + 1]
    assert params == "log-level=error:level-idc=5.1:pass=2:stats=/work/passlog-1.log"
    assert (
        "pass=1:stats=/work/passlog-1.log"
        in cmd.first_pass[cmd.first_pass.index("-x265-params") + 1]
    )


def test_loudnorm_is_measured_first_then_applied(ffmpeg_bin: str) -> None:
    ops = [{"op": "loudnorm"}, {"op": "volume", "db": -3}]
    with pytest.raises(PermanentError, match="measuring pass first"):
        build(ffmpeg_bin, ops, {})
    measure = build(ffmpeg_bin, ops, {}, measure=True).argv
    parsed = parse(measure)
    (out,) = parsed.outputs
    assert out.path == "-" and out.options == {"f": "null", "sn": None, "vn": None}
    (loudnorm,) = parsed.filters  # stops there: the volume after it is not measured
    assert out.maps == [f"[{loudnorm.outs[0]}]"] and loudnorm.ins == ["0:a:0"]
    assert loudnorm.name == "loudnorm"
    assert loudnorm.opts == {"I": "-16", "TP": "-1.5", "LRA": "11", "print_format": "json"}
    assert measure[measure.index("-loglevel") + 1] == "info"


def test_hdr_to_eight_bit_is_tone_mapped_and_ten_bit_keeps_its_tags(ffmpeg_bin: str) -> None:
    sdr = build(ffmpeg_bin, [], {}, media=[PQ])
    parsed = parse(sdr.argv)
    picture = [(f.name, f.args, f.opts) for f in parsed.chain(parsed.outputs[0].maps[0])]
    assert picture[0] == (
        "zscale", [], {"tin": "smpte2084", "min": "bt2020nc", "pin": "bt2020", "t": "linear",
                       "npl": "100"},
    )  # fmt: skip
    assert [p[0] for p in picture] == ["zscale", "format", "zscale", "tonemap", "zscale", "format"]
    assert picture[3][2] == {"tonemap": "hable", "desat": "0"}
    assert picture[-1] == ("format", ["yuv420p"], {})
    assert sdr.argv[sdr.argv.index("-color_trc") + 1] == "bt709"
    assert sdr.notes["video_processing"]["tone_mapping"].startswith("pq HDR to SDR")
    no_zscale = build(ffmpeg_bin, [], {}, media=[PQ], filters_have=frozenset({"tonemap"}))
    assert "zscale" not in no_zscale.argv[no_zscale.argv.index("-filter_complex") + 1]
    assert "washed out" in no_zscale.notes["video_processing"]["tone_mapping"]
    hdr = build(ffmpeg_bin, [], {"container": "mkv", "video_codec": "hevc"}, media=[PQ])
    assert hdr.argv[hdr.argv.index("-pix_fmt") + 1] == "yuv420p10le"
    assert hdr.argv[hdr.argv.index("-color_trc") + 1] == "smpte2084"
    assert hdr.argv[hdr.argv.index("-color_primaries") + 1] == "bt2020"


def test_hdr10_metadata_becomes_encoder_params_only_for_a_ten_bit_pq_output(
    ffmpeg_bin: str,
) -> None:
    md = MasteringDisplay(((34000, 16000), (13250, 34500), (7500, 3000), (15635, 16450)),
                          10_000_000, 50)  # fmt: skip
    pq = dataclasses.replace(PQ, hdr10=Hdr10(md, ContentLight(1000, 400)))
    hevc = build(ffmpeg_bin, [], {"container": "mkv", "video_codec": "hevc"}, media=[pq])
    params = hevc.argv[hevc.argv.index("-x265-params") + 1]
    assert params == (
        "log-level=error:master-display=G(13250,34500)B(7500,3000)R(34000,16000)"
        "WP(15635,16450)L(10000000,50):max-cll=1000,400"
    )
    assert re.fullmatch(r"[a-z0-9=:,()\-A-Z]+", params)
    assert "passed to libx265" in hevc.notes["video_processing"]["hdr10"]
    sdr = build(ffmpeg_bin, [], {}, media=[pq])
    assert "-x265-params" not in sdr.argv and "master-display" not in " ".join(sdr.argv)
    hlg = dataclasses.replace(pq, color_transfer="arib-std-b67")
    kept = build(ffmpeg_bin, [], {"container": "mkv", "video_codec": "hevc"}, media=[hlg])
    assert kept.argv[kept.argv.index("-x265-params") + 1] == "log-level=error"
    assert "is for PQ sources" in kept.notes["video_processing"]["hdr10"]
    vp9 = build(ffmpeg_bin, [], {"container": "webm", "video_codec": "vp9"}, media=[pq])
    assert "mastering" not in " ".join(vp9.argv)
    assert vp9.notes["video_processing"]["hdr10"].startswith("not passed: libvpx-vp9")
    if "libsvtav1" in encoders(ffmpeg_bin):
        av1 = build(ffmpeg_bin, [], {"container": "mkv", "video_codec": "av1"}, media=[pq])
        assert av1.argv[av1.argv.index("-svtav1-params") + 1].startswith(
            "mastering-display=G(0.26500,0.69000)B(0.15000,0.06000)"
        )


def test_audio_only_output_has_no_video_at_all(ffmpeg_bin: str) -> None:
    cmd = build(ffmpeg_bin, [{"op": "trim", "end": 1}], {"container": "flac"})
    parsed = parse(cmd.argv)
    (out,) = parsed.outputs
    assert "vn" in out.options and out.maps == ["0:a:0"] and not parsed.filters
    assert cmd.argv[cmd.argv.index("-c:a") + 1] == "flac" and "-b:a" not in cmd.argv
    assert cmd.audio_only and cmd.media_type == "audio/flac" and cmd.width is None
