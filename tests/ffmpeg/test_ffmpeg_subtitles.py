"""Subtitles from an uploaded SRT/WebVTT: burned in (frames change where cues are, and only
there, by PSNR) and soft tracks (read back), with hostile cue text kept as inert text."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from jobs.errors import PermanentError
from tests.ffmpeg.argv import parse

pytestmark = pytest.mark.ffmpeg

SUB = {"op": "subtitles", "source": {"digest": "sha256:" + "5" * 64}}
SRT = "1\n00:00:00,200 --> 00:00:00,900\nHello <i>there</i>\n\n2\n00:00:01,800 --> 00:00:01,950\nBye\n"
VTT = "WEBVTT\n\nNOTE a comment\n\nintro\n00:00.200 --> 00:00.900 line:0\nHello there\n"
HOSTILE = (
    "1\n00:00:00,200 --> 00:00:00,900\n{\\an8}{\\p1}m 0 0 l 100 0 100 100{\\p0}\n"
    "'[0:v]null[out]';movie=/etc/passwd\n\n"
    "2\n00:00:01,000 --> 00:00:01,100\ndrawtext=text='%{pts}' \x1b[31m\u202e $(id)\n"
)


def psnr(ffmpeg: str, a: Path, b: Path, at: float) -> float:
    proc = subprocess.run(
        [ffmpeg, "-nostdin", "-hide_banner", "-ss", str(at), "-i", str(a), "-ss", str(at),
         "-i", str(b), "-frames:v", "1", "-lavfi", "[0:v][1:v]psnr", "-f", "null", "-"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    value = re.findall(r"average:(inf|\d+\.\d+)", proc.stderr)[-1]
    return float(value)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


@pytest.fixture
def plain(run_edit: Any) -> Any:
    async def make(**output: Any) -> Path:
        result, _ = await run_edit([], {"gop_length": 5, **output})
        return Path(result.path)

    return make


@pytest.mark.parametrize(("name", "text"), [("subs.srt", SRT), ("subs.vtt", VTT)])
async def test_burned_subtitles_change_the_frames_where_cues_are_and_nowhere_else(
    run_edit: Any, media: Any, ffmpeg_bin: str, tmp_path: Path, plain: Any, name: str, text: str
) -> None:
    base = await plain()
    keep = tmp_path / "base.mp4"
    base.rename(keep)
    subs = write(tmp_path, name, text)
    result, made = await run_edit([SUB], {"gop_length": 5}, inputs=[media.clip, subs])
    assert (made.width, made.height) == (320, 240)
    assert result.metadata["subtitles"] == {
        "mode": "burn",
        "codec": "ass",
        "cues": 2 if name == "subs.srt" else 1,
    }
    assert psnr(ffmpeg_bin, keep, result.path, 0.5) < 35  # a cue is on screen
    assert psnr(ffmpeg_bin, keep, result.path, 1.4) > 45  # none is
    assert [p.name for p in result.path.parent.iterdir() if p.name.startswith("subs-")] == []


async def test_burned_subtitles_follow_a_trim(
    run_edit: Any, media: Any, ffmpeg_bin: str, tmp_path: Path
) -> None:
    subs = write(tmp_path, "s.srt", "1\n00:00:01,200 --> 00:00:01,700\nLate cue\n")
    trim = {"op": "trim", "start": 1.0}
    base, _ = await run_edit([trim], {"gop_length": 5})
    keep = tmp_path / "base.mp4"
    Path(base.path).rename(keep)
    result, _ = await run_edit([trim, SUB], {"gop_length": 5}, inputs=[media.clip, subs])
    assert psnr(ffmpeg_bin, keep, result.path, 0.4) < 35  # 1.4 s of the source
    assert psnr(ffmpeg_bin, keep, result.path, 0.05) > 45


@pytest.mark.parametrize(
    ("container", "codec"), [("mp4", "mov_text"), ("mkv", "subrip"), ("webm", "webvtt")]
)
async def test_soft_subtitles_are_readable_back(
    run_edit: Any, media: Any, ffmpeg_bin: str, tmp_path: Path, container: str, codec: str
) -> None:
    subs = write(tmp_path, "subs.srt", SRT)
    op = {**SUB, "mode": "soft", "language": "fra"}
    result, made = await run_edit([op], {"container": container}, inputs=[media.clip, subs])
    kinds = [(s.kind, s.codec) for s in made.streams]
    assert result.metadata["subtitles"] == {"mode": "soft", "codec": codec, "cues": 2}
    assert ("subtitle", codec) in kinds and made.video_index is not None and made.has_audio
    back = subprocess.run(
        [ffmpeg_bin, "-nostdin", "-loglevel", "error", "-i", str(result.path), "-map", "0:s:0",
         "-f", "srt", "-"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert "Hello there" in back and "Bye" in back and "<i>" not in back
    # Matroska shifts every stream by the audio encoder's delay (video too): within a frame.
    start, end = re.search(r"00:00:00,(\d{3}) --> 00:00:00,(\d{3})", back).groups()  # type: ignore[union-attr]
    assert abs(int(start) - 200) <= 40 and int(end) - int(start) == 700
    lang = subprocess.run(
        [ffmpeg_bin, "-nostdin", "-hide_banner", "-i", str(result.path)],
        capture_output=True, text=True, timeout=60,
    ).stderr  # fmt: skip
    assert re.search(r"Stream #0:\d+(?:\[0x\w+\])?\(fre|fra\): Subtitle", lang)


async def test_hostile_cue_text_is_drawn_as_text_and_reads_nothing(
    run_edit: Any, media: Any, ffmpeg_bin: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import workers.ffmpeg.executor as executor

    commands: list[list[str]] = []
    real_run = executor.run_ffmpeg

    async def recording_run(argv: list[str], *args: Any, **kwargs: Any) -> Any:
        commands.append(list(argv))
        return await real_run(argv, *args, **kwargs)

    monkeypatch.setattr(executor, "run_ffmpeg", recording_run)
    subs = write(tmp_path, "evil.srt", HOSTILE)
    for op in (SUB, {**SUB, "mode": "soft"}):
        _, made = await run_edit([op], {}, inputs=[media.clip, subs])
        assert made.video_index is not None
    text = "\n".join(" ".join(c) for c in commands)
    for secret in ("passwd", "null[out]", "drawtext", "%{pts}", "$(id)", "evil.srt"):
        assert secret not in text  # no cue text and no upload path in any argv
    parsed = parse(commands[0])
    burn, fmt = parsed.chain(parsed.outputs[0].maps[0])  # the picture: burned in, nothing else
    assert burn.name == "ass" and burn.ins == ["0:0"] and not burn.args
    assert list(burn.opts) == ["filename"] and re.fullmatch(
        r"/[\w/.-]+\.ass", burn.opts["filename"]
    )
    assert (fmt.name, fmt.args) == ("format", ["yuv420p"])


@pytest.mark.parametrize(
    "text",
    [
        "not subtitles at all",
        "1\n00:00:05,000 --> 00:00:01,000\nbackwards\n",
        "\xff\xfe",
        "WEBVTT\n\n00:00.000 --> 00:00.500\n",
    ],
)
async def test_unusable_subtitle_files_fail_the_job_cleanly(
    run_edit: Any, media: Any, tmp_path: Path, text: str
) -> None:
    subs = tmp_path / "bad.srt"
    subs.write_bytes(text.encode("latin-1") if text == "\xff\xfe" else text.encode())
    with pytest.raises(PermanentError) as err:
        await run_edit([SUB], {}, inputs=[media.clip, subs])
    assert err.value.code == "invalid_input" and "subtitle" in err.value.message
    assert str(tmp_path) not in err.value.message


async def test_oversized_subtitle_file_is_refused(
    run_edit: Any, media: Any, tmp_path: Path
) -> None:
    subs = tmp_path / "big.srt"
    subs.write_bytes(SRT.encode() + b"x" * (1024 * 1024))
    with pytest.raises(PermanentError, match="over the limit"):
        await run_edit([SUB], {}, inputs=[media.clip, subs])


def test_subtitle_uploads_are_read_by_vidjobs_not_ffmpeg(tmp_path: Path) -> None:
    from jobs.errors import InvalidRequest
    from workers.ffmpeg.probe import probe_upload

    good = probe_upload(write(tmp_path, "a.vtt", VTT))
    assert good == {"format_name": "webvtt", "subtitles": True, "cues": 1,
                    "size_bytes": len(VTT.encode())}  # fmt: skip
    with pytest.raises(InvalidRequest) as err:
        probe_upload(write(tmp_path, "b.srt", "1\n00:00:09,000 --> 00:00:01,000\nx\n"))
    assert "looks like subtitles" in err.value.message
    with pytest.raises(InvalidRequest):  # not subtitles, not media
        probe_upload(write(tmp_path, "c.srt", "hello --> world\n"))
