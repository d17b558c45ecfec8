"""The command builder: argv lists of known tokens only, hardened inputs, stream copy only
when it is safe, and codec checks at submission."""

from __future__ import annotations

import dataclasses
import itertools
import re
from pathlib import Path
from typing import Any

import pytest

from jobs.canonical import canonical_edit
from jobs.errors import InvalidRequest, PermanentError
from jobs.spec import EditRequest
from tests.ffmpeg.argv import parse
from workers.ffmpeg.binary import encoders
from workers.ffmpeg.command import Window, build_command
from workers.ffmpeg.executor import check_encoders, make_edit_check
from workers.ffmpeg.graph import atempo_chain, num
from workers.ffmpeg.hardened import GLOBAL_ARGS, file_arg
from workers.ffmpeg.probe import FORMAT_WHITELIST, Probe, Stream

pytestmark = pytest.mark.ffmpeg

DIGEST = "sha256:" + "2" * 64
MAIN = Probe("mov,mp4,m4a,3gp,3g2,mj2", 2000, (Stream(0, "video", "h264", 320, 240, 25.0),
             Stream(1, "audio", "aac")), 320, 240, "h264", True, 1000, 0, 25.0)  # fmt: skip
OTHER = Probe("matroska,webm", 1000, (Stream(0, "video", "vp9", 160, 120, 30.0),), 160, 120,
              "vp9", False, 500, 0, 30.0)  # fmt: skip
LOGO = Probe("png_pipe", None, (Stream(0, "video", "png", 64, 32, 25.0),), 64, 32, "png", False,
             100, 0, 25.0)  # fmt: skip
ALL_OPS: list[dict[str, Any]] = [
    {"op": "concat", "sources": [{"digest": DIGEST}]},
    {"op": "trim", "start": 0.5, "end": 2.5},
    {"op": "scale", "width": 300},
    {"op": "crop", "x": 2, "y": 2, "width": 200, "height": 150},
    {"op": "fps", "fps": 29.97},
    {"op": "rotate", "degrees": 90},
    {"op": "flip", "direction": "vertical"},
    {"op": "speed", "factor": 3.5},
    {"op": "volume", "db": -7.5},
    {"op": "watermark", "source": {"digest": DIGEST}, "position": "top_right", "width": 40,
     "opacity": 0.4},
]  # fmt: skip


def spec_for(
    operations: list[dict[str, Any]], output: dict[str, Any] | None = None
) -> dict[str, Any]:
    req = EditRequest.model_validate(
        {"source": {"digest": DIGEST}, "operations": operations, "output": output or {}}
    )
    return canonical_edit(req, [DIGEST] * len(req.inputs()))


def build(
    ffmpeg_bin: str,
    operations: list[dict[str, Any]],
    output: dict[str, Any] | None = None,
    probes: list[Probe] | None = None,
    **options: Any,
) -> Any:
    probes = probes or [MAIN]
    inputs = [Path(f"/data/in{i}.bin") for i in range(len(probes))]
    return build_command(
        ffmpeg_bin, spec_for(operations, output), inputs, probes, Path("/work/out.mp4"),
        encoders(ffmpeg_bin), **options,
    )  # fmt: skip


SAFE_TOKEN = re.compile(r"[A-Za-z0-9_:.+\-/\[\],=]+")
GRAPH = re.compile(r"[A-Za-z0-9_:\[\]=,;.\-/()]+")


def test_argv_holds_only_expected_tokens(ffmpeg_bin: str) -> None:
    cmd = build(
        ffmpeg_bin, ALL_OPS, {"container": "mkv", "video_codec": "vp9"}, [MAIN, OTHER, LOGO]
    )
    argv = cmd.argv
    assert argv[0] == ffmpeg_bin
    for before, token in itertools.pairwise(argv):
        if before == "-filter_complex":
            assert GRAPH.fullmatch(token), token
        elif before == "-i":
            assert re.fullmatch(r"file:/data/in[0-2]\.bin", token)
        else:
            assert SAFE_TOKEN.fullmatch(token), token
            assert not re.search(r"[\s;&|`$<>\"'\\*?!{}~]", token)
    assert argv.count("-filter_complex") == 1
    parsed = parse(argv)
    assert "-safe" not in argv and all(i.options.get("f") != "concat" for i in parsed.inputs)
    # Every input is read through the file protocol only, with the demuxer allowlisted and forced.
    assert [i.path for i in parsed.inputs] == [f"file:/data/in{i}.bin" for i in range(3)]
    for inp in parsed.inputs:
        assert inp.options.pop("protocol_whitelist") == "file"
        assert inp.options.pop("format_whitelist") == FORMAT_WHITELIST
        assert inp.options.pop("f") in ("mov", "matroska", "png_pipe")
        assert set(inp.options) <= {"ss", "to"}
    assert parsed.head == [*GLOBAL_ARGS, "-progress", "pipe:1"]
    assert {"-nostdin", "-hide_banner", "-y", "-nostats"} <= set(parsed.head)  # spelled out
    (out,) = parsed.outputs
    assert out.path == "file:/work/out.mp4" and out.options["protocol_whitelist"] == "file"
    assert out.options["map_metadata"] == out.options["map_chapters"] == "-1"
    assert out.options["f"] == "matroska" and out.options["c:v"] == "libvpx-vp9"
    # the picture and the sound, each through its whole chain, in the order of the ops
    video, audio = out.maps
    assert parsed.source(video) == "0:0"
    assert parsed.names(video) == [
        "scale", "pad", "setsar", "fps", "concat", "trim", "setpts", "scale", "setsar", "crop",
        "fps", "transpose", "vflip", "setpts", "fps", "overlay", "format",
    ]  # fmt: skip
    assert parsed.names(audio)[4:] == ["concat", "atrim", "asetpts", "atempo", "atempo", "volume"]


def test_sizes_are_tracked_through_every_op(ffmpeg_bin: str) -> None:
    cmd = build(ffmpeg_bin, ALL_OPS, {"container": "mkv"}, [MAIN, OTHER, LOGO])
    # scale 300 -> 300x226, crop 200x150, rotate -> 150x200
    assert (cmd.width, cmd.height) == (150, 200)
    parsed = parse(cmd.argv)
    video, audio = parsed.outputs[0].maps
    (concat,) = parsed.named("concat")
    assert concat.opts == {"n": "2", "v": "1", "a": "1"} and len(concat.ins) == 4
    assert parsed.source(concat.ins[0]) == "0:0" and parsed.source(concat.ins[2]) == "1:0"
    assert parsed.source(concat.ins[1]) == "0:a:0"
    assert parsed.chain(concat.ins[3])[0].name == "anullsrc"  # the second source has no audio
    sound = parsed.chain(audio)
    assert [(f.name, f.args) for f in sound[-3:]] == [
        ("atempo", ["2"]), ("atempo", ["1.75"]), ("volume", ["-7.5dB"])
    ]  # fmt: skip
    picture = parsed.chain(video)
    assert [f.args for f in picture if f.name in ("scale", "crop")][-2:] == [
        ["300", "226"], ["200", "150", "2", "2"]
    ]  # fmt: skip
    (overlay,) = parsed.named("overlay")
    assert overlay.opts == {"x": "94", "y": "16"}  # 150 - 40 - 16
    mark = parsed.chain(overlay.ins[1])
    assert parsed.source(overlay.ins[1]) == "2:0"
    assert [(f.name, f.args, f.opts) for f in mark] == [
        ("scale", ["40", "20"], {}), ("format", ["rgba"], {}),
        ("colorchannelmixer", [], {"aa": "0.4"}),
    ]  # fmt: skip
    # 2 s + 1 s, trimmed to 2 s, at 3.5x speed
    assert cmd.expected_duration_ms == 571


def test_fast_trim_copies_only_when_nothing_needs_decoding(ffmpeg_bin: str) -> None:
    fast = {"op": "trim", "start": 1, "end": 2, "fast": True}
    cmd = build(ffmpeg_bin, [fast])
    assert (
        cmd.stream_copy
        and ["-c", "copy"] == cmd.argv[cmd.argv.index("-c") : cmd.argv.index("-c") + 2]
    )
    assert cmd.argv[cmd.argv.index("-ss") + 1] == "1.000" and "-filter_complex" not in cmd.argv
    assert build(ffmpeg_bin, [fast, {"op": "mute"}]).stream_copy
    assert not build(ffmpeg_bin, [fast, {"op": "scale", "width": 100}]).stream_copy
    assert not build(ffmpeg_bin, [fast], {"video_codec": "hevc"}).stream_copy
    assert not build(ffmpeg_bin, [fast], {"audio_codec": "mp3"}).stream_copy
    assert not build(ffmpeg_bin, [{**fast, "fast": False}]).stream_copy


def test_a_chunk_window_takes_exactly_its_frames_from_its_seek_without_audio(
    ffmpeg_bin: str,
) -> None:
    ops = [{"op": "scale", "width": 160}, {"op": "volume", "db": -3}, {"op": "loudnorm"}]
    long = dataclasses.replace(MAIN, duration_ms=10_000)  # loudnorm needs 3 s
    cmd = build(ffmpeg_bin, ops, probes=[long], window=Window(1.98, 50), threads=2)
    parsed = parse(cmd.argv)
    (inp,) = parsed.inputs
    assert inp.options["ss"] == "1.980000" and "to" not in inp.options
    (out,) = parsed.outputs
    (video,) = out.maps  # no audio map: the audio task makes the sound once
    assert parsed.source(video) == "0:0"
    assert parsed.names(video)[-1] == "setpts" and parsed.chain(video)[-1].args == ["PTS-STARTPTS"]
    assert not any(f.name in ("volume", "loudnorm") for f in parsed.filters)
    assert out.options["frames:v"] == "50" and out.options["fps_mode"] == "passthrough"
    assert {"an", "sn"} <= set(out.options) and out.options["threads"] == "2"
    assert cmd.expected_duration_ms is None  # a chunk's progress is done or not
    assert "-ss" not in build(ffmpeg_bin, ops[:1], window=Window(0.0, 25)).argv
    concat = {"op": "concat", "sources": [{"digest": DIGEST}]}
    for refused, probes in (([{"op": "trim", "start": 1}], [MAIN]), ([concat], [MAIN, OTHER])):
        with pytest.raises(PermanentError) as err:  # a chunk is frames of one whole source
            build(ffmpeg_bin, refused, probes=probes, window=Window(1.0, 25))
        assert err.value.code == "invalid_spec"


def test_crop_outside_the_frame_fails_before_anything_runs(ffmpeg_bin: str) -> None:
    with pytest.raises(PermanentError) as err:
        build(ffmpeg_bin, [{"op": "crop", "x": 100, "y": 100, "width": 300, "height": 100}])
    assert err.value.code == "invalid_input"


@pytest.mark.parametrize(
    ("position", "margin", "refused"),
    [("top_left", 320, True), ("bottom_right", 320, True), ("top_left", 230, False),
     ("center", 1000, False), ("bottom_left", 240, True)],
)  # fmt: skip
def test_a_watermark_entirely_outside_the_frame_fails_instead_of_vanishing(
    ffmpeg_bin: str, position: str, margin: int, refused: bool
) -> None:
    ops = [
        {"op": "watermark", "source": {"digest": DIGEST}, "position": position, "margin": margin}
    ]
    if not refused:
        assert "overlay=" in " ".join(build(ffmpeg_bin, ops, probes=[MAIN, LOGO]).argv)
        return
    with pytest.raises(PermanentError, match="entirely outside the 320x240 frame") as err:
        build(ffmpeg_bin, ops, probes=[MAIN, LOGO])
    assert err.value.code == "invalid_input"


def test_trim_past_the_end_fails_before_anything_runs(ffmpeg_bin: str) -> None:
    with pytest.raises(PermanentError, match=r"lasts 2\.000 s"):
        build(ffmpeg_bin, [{"op": "trim", "start": 3}])


def test_inputs_must_match_the_spec(ffmpeg_bin: str) -> None:
    with pytest.raises(PermanentError) as err:
        build(ffmpeg_bin, [{"op": "concat", "sources": [{"digest": DIGEST}]}], probes=[MAIN])
    assert err.value.code == "invalid_spec"


def test_a_tampered_spec_is_revalidated(ffmpeg_bin: str) -> None:
    spec = spec_for([{"op": "scale", "width": 100}])
    spec["operations"][0]["width"] = "100:flags=x;movie=/etc/passwd"
    with pytest.raises(PermanentError) as err:
        build_command(ffmpeg_bin, spec, [Path("/data/a")], [MAIN], Path("/work/o.mp4"), frozenset())
    assert err.value.code == "invalid_spec"


@pytest.mark.parametrize("path", ["relative.mp4", "-i", "/tmp/a%d.png", "/tmp/x\n.mp4"])
def test_file_arg_refuses_unsafe_paths(path: str) -> None:
    with pytest.raises(PermanentError):
        file_arg(Path(path))


def test_file_arg_pins_the_file_protocol() -> None:
    assert file_arg(Path("/tmp/http:evil.mp4")) == "file:/tmp/http:evil.mp4"


@pytest.mark.parametrize("factor", [0.25, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.7, 4.0])
def test_atempo_chain_stays_in_range_and_multiplies_out(factor: float) -> None:
    chain = atempo_chain(factor)
    assert all(0.5 <= f <= 2 for f in chain)
    product = 1.0
    for f in chain:
        product *= f
    assert abs(product - factor) < 1e-9


def test_numbers_never_carry_text() -> None:
    assert num(29.97) == "29.97" and num(-7.5) == "-7.5" and num(1e-7) == "0" and num(3) == "3"
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError):
            num(bad)


@pytest.fixture
def poor_ffmpeg(tmp_path: Path) -> str:
    """A fake binary whose `-encoders` lists only h264, aac and the image encoders."""
    script = tmp_path / "ffmpeg"
    script.write_text(
        "#!/bin/sh\ncat <<'EOF'\nEncoders:\n ------\n"
        " V....D libx264              libx264 H.264\n"
        " V....D gif                  GIF\n"
        " VF.... png                  PNG\n"
        " VFS... mjpeg                MJPEG\n"
        " A..... aac                  AAC\n"
        "EOF\n"
    )
    script.chmod(0o755)
    return str(script)


def test_missing_encoders_are_refused_at_submission(poor_ffmpeg: str) -> None:
    with pytest.raises(InvalidRequest) as err:
        check_encoders(
            {"container": "mkv", "video_codec": "av1", "audio_codec": "opus"}, poor_ffmpeg
        )
    assert err.value.details == [
        {"path": "output.video_codec", "message": "this server's ffmpeg has no encoder for av1",
         "allowed": ["h264", "none"]},  # none: an audio-only mkv
        {"path": "output.audio_codec", "message": "this server's ffmpeg has no encoder for opus",
         "allowed": ["aac", "none"]},
    ]  # fmt: skip
    check = make_edit_check(poor_ffmpeg)
    check(EditRequest.model_validate({"source": {"digest": DIGEST}}))  # mp4 h264/aac: fine
    with pytest.raises(InvalidRequest):
        check(
            EditRequest.model_validate(
                {"source": {"digest": DIGEST}, "output": {"container": "webm"}}
            )
        )


def test_the_real_binary_has_every_codec_of_the_spec(ffmpeg_bin: str) -> None:
    for container, video, audio in [
        ("mp4", "h264", "aac"), ("mp4", "hevc", "mp3"), ("webm", "vp9", "opus"), ("mkv", "av1", "opus"),
    ]:  # fmt: skip
        check_encoders(
            {"container": container, "video_codec": video, "audio_codec": audio}, ffmpeg_bin
        )
    for container in ("gif", "jpg", "png"):
        check_encoders({"container": container}, ffmpeg_bin)
