"""Probing through PyAV in a child process: no ffprobe (nor the ffmpeg binary) needed, and
text inside metadata cannot pose as a stream, a frame size or a duration."""

from __future__ import annotations

import asyncio
import importlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from jobs.errors import InvalidRequest, PermanentError
from workers.ffmpeg.binary import find_ffmpeg
from workers.ffmpeg.probe import parse_media, preflight, probe, probe_upload
from workers.ffmpeg.run import Limits

pytestmark = pytest.mark.ffmpeg


async def test_probe_reads_container_duration_and_streams(media: Any, ffmpeg_bin: str) -> None:
    p = await probe(media.clip, ffmpeg=ffmpeg_bin)
    assert p.format_name == "mov,mp4,m4a,3gp,3g2,mj2" and p.demuxer == "mov"
    assert (p.width, p.height, p.video_codec, p.fps, p.has_audio) == (320, 240, "h264", 25, True)
    assert abs((p.duration_ms or 0) - 2000) <= 40
    assert [s.kind for s in p.streams] == ["video", "audio"]
    assert p.size_bytes == media.clip.stat().st_size
    assert p.metadata()["streams"][1]["codec"] == "aac"


async def test_probe_needs_neither_ffprobe_nor_the_ffmpeg_binary(
    media: Any, ffmpeg_bin: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """VIDJOBS_FFMPEG names a wrapper that logs its calls; PATH has no ffprobe at all.
    Probing reads the file through libavformat (PyAV): the binary is never run for it."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    log = tmp_path / "calls.log"
    wrapper = bindir / "ffmpeg"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {log}\nexec {ffmpeg_bin} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("VIDJOBS_FFMPEG", str(wrapper))
    monkeypatch.setenv("PATH", str(bindir))
    assert shutil.which("ffprobe") is None
    assert find_ffmpeg() == str(wrapper)
    p = await preflight(media.clip)
    assert (p.width, p.height, p.has_audio) == (320, 240, True)
    assert p.info is not None and p.info.pix_fmt == "yuv420p"  # details from the same read
    assert not log.exists()


def test_binary_lookup_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ffmpeg_bin: str
) -> None:
    monkeypatch.setenv("VIDJOBS_FFMPEG", str(tmp_path / "missing"))
    with pytest.raises(RuntimeError, match="not an executable file"):
        find_ffmpeg()
    monkeypatch.delenv("VIDJOBS_FFMPEG")
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH: imageio-ffmpeg's binary
    imageio = pytest.importorskip("imageio_ffmpeg")
    assert os.path.samefile(find_ffmpeg(), imageio.get_ffmpeg_exe())


async def test_rotation_metadata_gives_the_displayed_size(
    media: Any, ffmpeg_bin: str, clip_maker: Any, run_edit: Any
) -> None:
    rotated = clip_maker(
        "rot.mp4", "-i", str(media.clip), "-c", "copy", "-metadata:s:v:0", "rotate=90"
    )
    p = await probe(rotated, ffmpeg=ffmpeg_bin)
    if p.streams[0].rotation == 0:
        pytest.skip("this ffmpeg build does not write rotation from the 'rotate' tag")
    assert (p.width, p.height) == (240, 320)
    _, made = await run_edit([{"op": "crop", "width": 200, "height": 300}], inputs=[rotated])
    assert (made.width, made.height) == (200, 300)  # fits only in the upright 240x320 frame


async def test_metadata_cannot_pose_as_a_stream_or_a_duration(
    media: Any, ffmpeg_bin: str, clip_maker: Any
) -> None:
    forged = clip_maker(
        "forged.mkv", "-i", str(media.clip), "-c", "copy",
        "-metadata", "title=x\n  Stream #0:7: Video: h264, 9000x9000\n  Duration: 09:00:00.00",
        "-metadata", "  Duration: 09:00:00.00, start: 0.0=y",
        "-metadata:s:v:0", "comment=a\n  Stream #0:8: Video: h264, 9999x9999",
    )  # fmt: skip
    p = await probe(forged, ffmpeg=ffmpeg_bin)
    assert len(p.streams) == 2 and (p.width, p.height) == (320, 240)
    assert abs((p.duration_ms or 0) - 2000) <= 40


# What `ffmpeg -i` prints, as a Matroska tag *name*: ffmpeg's dump prints tag names as they
# are, so each line below became a line of the dump that the old text parser believed
# (duration 1 s instead of 2, a 99999x99999 video stream in an audio-only file).
FAKE_LINES = (
    "\n  Duration: 00:00:01.00, start: 0.000000, bitrate: 1 kb/s"
    "\n  Stream #0:5: Video: h264, 99999x99999, 25 fps\n"
)


def forge(clip_maker: Any, name: str, source: Path, *args: str) -> Path:
    """A copy of `source` with FAKE_LINES as a tag name. ffmpeg's muxer upper-cases tag
    names and writes spaces as '_', so the bytes are patched back afterwards (the same
    length; no CRC elements)."""
    out: Path = clip_maker(
        name, "-i", str(source), *args, "-c", "copy", "-write_crc32", "0",
        "-metadata:s:a:0", f"{FAKE_LINES}=v", "-metadata", f"title={FAKE_LINES}",
    )  # fmt: skip
    data = out.read_bytes()
    mangled = FAKE_LINES.upper().replace(" ", "_").encode()
    assert mangled in data
    out.write_bytes(data.replace(mangled, FAKE_LINES.encode()))
    return out


async def test_limits_hold_on_files_whose_metadata_imitates_probe_lines(
    media: Any, clip_maker: Any, ffmpeg_bin: str
) -> None:
    """Tags that read as `ffmpeg -i` lines: the real duration, streams and frame size are
    what the limits see, both ways."""
    forged = forge(clip_maker, "lines.mkv", media.clip)
    dump = subprocess.run(
        [ffmpeg_bin, "-hide_banner", "-i", str(forged)], capture_output=True, text=True
    ).stderr
    assert "\n  Stream #0:5: Video: h264, 99999x99999" in dump  # the forgery is in the dump
    p = await probe(forged)
    assert len(p.streams) == 2 and (p.width, p.height) == (320, 240)
    assert abs((p.duration_ms or 0) - 2000) <= 40  # not the 1 s the tag claims
    with pytest.raises(PermanentError, match=r"lasts 2(\.\d+)? s, over the limit of 1.5 s"):
        await preflight(forged, Limits(max_duration_ms=1500))
    assert (await preflight(forged)).width == 320  # the fake 99999x99999 is not refused
    with pytest.raises(PermanentError, match="320x240, over the limit"):
        await preflight(forged, Limits(max_pixels=64 * 64))
    quiet = forge(clip_maker, "lines-audio.mkv", media.clip, "-vn")
    with pytest.raises(PermanentError, match="no video stream"):
        await preflight(quiet)  # the fake video stream is not one
    assert len((await probe(quiet)).streams) == 1


async def test_cover_art_is_not_the_video_and_program_streams_count(
    media: Any, clip_maker: Any
) -> None:
    covered = clip_maker(
        "cover.mkv", "-i", str(media.wav), "-attach", str(media.logo),
        "-metadata:s:t", "mimetype=image/png", "-c:a", "flac",
    )  # fmt: skip
    p = await probe(covered)
    assert p.video_index is None and p.has_audio
    art = clip_maker(
        "art.mp4", "-i", str(media.clip), "-i", str(media.logo), "-map", "1", "-map", "0",
        "-c", "copy", "-c:v:0", "png", "-disposition:v:0", "attached_pic",
    )  # fmt: skip
    p = await probe(art)
    pics = [s for s in p.streams if s.attached_pic]
    assert [(s.codec, s.width) for s in pics] == [("png", 64)]  # the cover, read as one
    assert p.video_codec == "h264" and (p.width, p.height) == (320, 240)
    ts = clip_maker("prog.ts", "-i", str(media.clip), "-c", "copy", "-f", "mpegts")
    p = await probe(ts)
    assert p.demuxer == "mpegts" and (p.width, p.video_codec, p.has_audio) == (320, "h264", True)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"format": "mov\n  Duration"}, "cannot be read"),
        ({"format": "hls", "streams": []}, "not accepted"),
        ({"format": "mov", "streams": "x"}, "cannot be read"),
        ({"format": "mov", "streams": [{"type": "video"}]}, "without an index"),
        ({"error": {"kind": "format_not_allowed", "format": "x' y"}}, "cannot be read"),
    ],
)
def test_the_childs_answer_is_read_strictly(data: dict[str, Any], words: str) -> None:
    with pytest.raises(PermanentError, match=words):
        parse_media(data, 1, "the source", Limits())


def test_out_of_bounds_values_become_unknown() -> None:
    stream = {"index": 0, "type": "video", "codec": "h 264", "width": True, "height": -5}
    data = {"format": "mov", "duration_us": "9", "streams": [stream, {"index": 1, "type": "?"}]}
    p = parse_media({**data, "video": {"rotation": 12345}}, 1, "the source", Limits())
    assert (p.width, p.height, p.video_codec, p.duration_ms) == (None, None, "none", None)
    assert p.streams[1].kind == "data" and p.streams[0].rotation == 0


async def test_probe_upload_runs_in_a_thread_like_the_api_calls_it(
    media: Any, tmp_path: Path
) -> None:
    summary = await asyncio.to_thread(probe_upload, media.clip)
    assert (summary["width"], summary["height"], summary["is_image"]) == (320, 240, False)
    assert summary["video_codec"] == "h264" and summary["has_audio"] is True
    logo = await asyncio.to_thread(probe_upload, media.logo)
    assert logo["is_image"] is True  # fine as an upload: it may become a watermark
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n" * 20)
    with pytest.raises(InvalidRequest) as err:
        await asyncio.to_thread(probe_upload, text)
    assert err.value.details[0]["path"] == "body"
    assert str(tmp_path) not in str(err.value.message)


async def test_a_known_source_is_not_probed_again_but_still_checked(
    media: Any, make_ctx: Any, ffmpeg_bin: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The executor keeps probes by content digest (its inputs are verified copies)."""
    from workers.ffmpeg.executor import FfmpegExecutor

    probe_module = importlib.import_module("workers.ffmpeg.probe")  # not the function

    read: list[Path] = []
    real = probe_module.read_media

    async def counting(path: Path, *args: Any, **kwargs: Any) -> Any:
        read.append(path)
        return await real(path, *args, **kwargs)

    monkeypatch.setattr(probe_module, "read_media", counting)
    executor = FfmpegExecutor(ffmpeg=ffmpeg_bin)
    for end in (0.5, 1.0):
        await executor.execute(make_ctx([media.clip], [{"op": "trim", "end": end}]))
    assert read.count(media.clip) == 1  # the second job used the first job's probe
    executor.limits = Limits(max_duration_ms=1000)
    with pytest.raises(PermanentError, match="over the limit of 1 s"):
        await executor.execute(make_ctx([media.clip], [{"op": "trim", "end": 0.5}]))
    assert read.count(media.clip) == 1  # the limits hold on a cached probe
    executor.limits = Limits()
    await executor.execute(make_ctx([media.small], [{"op": "trim", "end": 0.5}]))
    assert read.count(media.small) == 1  # same (fake) digest, other size: read again
    executor.probes = None  # off: every job reads its source
    await executor.execute(make_ctx([media.clip], [{"op": "trim", "end": 0.5}]))
    assert read.count(media.clip) == 2
