"""Probing with ffmpeg alone: no ffprobe needed, the same answers from different ffmpeg
builds, and text inside metadata cannot pose as a stream."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from jobs.errors import InvalidRequest
from workers.ffmpeg.binary import find_ffmpeg
from workers.ffmpeg.probe import parse_probe, preflight, probe, probe_upload

pytestmark = pytest.mark.ffmpeg


async def test_probe_reads_container_duration_and_streams(media: Any, ffmpeg_bin: str) -> None:
    p = await probe(media.clip, ffmpeg=ffmpeg_bin)
    assert p.format_name == "mov,mp4,m4a,3gp,3g2,mj2" and p.demuxer == "mov"
    assert (p.width, p.height, p.video_codec, p.fps, p.has_audio) == (320, 240, "h264", 25, True)
    assert abs((p.duration_ms or 0) - 2000) <= 40
    assert [s.kind for s in p.streams] == ["video", "audio"]
    assert p.size_bytes == media.clip.stat().st_size
    assert p.metadata()["streams"][1]["codec"] == "aac"


async def test_probe_works_with_only_ffmpeg_and_no_ffprobe(
    media: Any, ffmpeg_bin: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """VIDJOBS_FFMPEG names a wrapper that logs its calls; PATH has no ffprobe at all."""
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
    p = await preflight(media.clip)  # resolves the binary itself
    assert (p.width, p.height, p.has_audio) == (320, 240, True)
    calls = log.read_text()
    assert f"-i file:{media.clip}" in calls and "-format_whitelist" in calls


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


async def test_probe_agrees_across_ffmpeg_builds(media: Any, ffmpeg_bin: str) -> None:
    """The stderr dump is parsed, so check it against another build (imageio-ffmpeg's)."""
    imageio = pytest.importorskip("imageio_ffmpeg")
    other = imageio.get_ffmpeg_exe()
    if os.path.samefile(other, ffmpeg_bin):
        pytest.skip("only one ffmpeg build available")
    for path in (media.clip, media.small, media.logo):
        a = await probe(path, ffmpeg=ffmpeg_bin)
        b = await probe(path, ffmpeg=other)
        assert (a.width, a.height, a.video_codec, a.has_audio, a.fps, len(a.streams)) == (
            b.width, b.height, b.video_codec, b.has_audio, b.fps, len(b.streams),
        )  # fmt: skip
        assert (
            a.duration_ms == b.duration_ms or abs((a.duration_ms or 0) - (b.duration_ms or 0)) <= 20
        )


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


def test_parse_program_streams_and_attached_pictures() -> None:
    lines = [
        "Input #0, mpegts, from 'file:<x>':",
        "  Duration: 00:00:10.00, start: 1.400000, bitrate: 100 kb/s",
        "  Program 1",
        "    Metadata:",
        "      service_name    : Service01",
        "    Stream #0:0[0x100]: Video: mpeg2video (Main) ([2][0][0][0] / 0x0002), yuv420p(tv), 720x576 [SAR 16:15 DAR 4:3], 25 fps, 25 tbr, 90k tbn",
        "    Stream #0:1[0x101](eng): Audio: mp2 ([3][0][0][0] / 0x0003), 48000 Hz, stereo, fltp, 192 kb/s",
        "  Stream #0:2: Video: mjpeg (Baseline), yuvj420p(pc), 600x600, 90k tbr, 90k tbn (attached pic)",
    ]
    p = parse_probe(lines, 1234, "the source", {})
    assert p.format_name == "mpegts" and p.duration_ms == 10_000
    assert (p.width, p.height, p.video_codec, p.video_index) == (720, 576, "mpeg2video", 0)
    assert p.has_audio and p.streams[2].attached_pic


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
