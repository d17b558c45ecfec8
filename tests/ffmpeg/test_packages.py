"""Packages on real media: renditions, HLS/DASH/CMAF manifests and sprites, made by the
real executors (built by hand as the runner would) and read back by m3u8, PyAV and ffmpeg."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import av
import m3u8
import pytest

from jobs.packaging.media import media_type_for
from tests.support.packages import (
    Built,
    build_package,
    build_renditions,
    build_sprites,
    make_source,
)
from workers.executor import ExecutionResult

pytestmark = pytest.mark.ffmpeg

SECONDS = 4
SEGMENT = 2
FRAME = 1 / 25
HEIGHTS = [720, 360, 240]


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("packages")


@pytest.fixture(scope="module")
def source(ffmpeg_bin: str, work: Path) -> Path:
    return make_source(ffmpeg_bin, work / "source.mp4", seconds=SECONDS)


@pytest.fixture(scope="module")
def renditions(ffmpeg_bin: str, source: Path, work: Path) -> dict[str, ExecutionResult]:
    ladder = [{"height": 360}, {"height": 720}, {"height": 240, "video_bitrate_kbps": 300}]
    return build_renditions(ffmpeg_bin, source, work, ladder, SEGMENT)[1]


@pytest.fixture(scope="module")
def hls(ffmpeg_bin: str, renditions: dict[str, ExecutionResult], work: Path) -> Built:
    return build_package(ffmpeg_bin, renditions, work, "hls", SEGMENT)


@pytest.fixture(scope="module")
def cmaf(ffmpeg_bin: str, renditions: dict[str, ExecutionResult], work: Path) -> Built:
    return build_package(ffmpeg_bin, renditions, work, "cmaf", SEGMENT)


@pytest.fixture(scope="module")
def dash(ffmpeg_bin: str, renditions: dict[str, ExecutionResult], work: Path) -> Built:
    return build_package(ffmpeg_bin, renditions, work, "dash", SEGMENT)


def keyframe_times(path: Path) -> list[float]:
    with av.open(str(path)) as f:
        stream = f.streams.video[0]
        return [
            round(float(p.pts * stream.time_base), 3)
            for p in f.demux(stream)
            if p.pts is not None and p.is_keyframe
        ]


def decode_errors(ffmpeg: str, path: Path, *extra: str) -> str:
    """Decode a file completely; ffmpeg's error output ('' when clean) and its exit code."""
    run = subprocess.run(
        [ffmpeg, "-nostdin", "-v", "error", *extra, "-i", str(path), "-f", "null", "-"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    return run.stderr.strip()


def test_renditions_have_the_asked_heights_and_shared_keyframes(
    renditions: dict[str, ExecutionResult],
) -> None:
    assert sorted((r.metadata["height"] for r in renditions.values()), reverse=True) == HEIGHTS
    times = {}
    for name, r in renditions.items():
        path = r.files["rendition.mp4"]
        with av.open(str(path)) as f:
            v = f.streams.video[0]
            assert v.codec_context.height == r.metadata["height"] == int(name.split("-")[1])
            assert v.codec_context.width % 2 == 0
            dar = Fraction(v.codec_context.width, v.codec_context.height) * (
                v.sample_aspect_ratio or 1
            )
            assert dar == Fraction(16, 9)  # every rung keeps the source's picture aspect
            assert f.streams.audio, "every rendition carries the audio"
            # The codec string in the metadata is what the bitstream says (avcC bytes 1-3).
            extradata = v.codec_context.extradata
            assert r.metadata["video_codecs"] == f"avc1.{extradata[1:4].hex()}"
        times[name] = keyframe_times(path)
    expected = [float(t) for t in range(0, SECONDS, SEGMENT)]
    for name, ks in times.items():
        assert ks == expected, f"{name}: keyframes at {ks}, not only every {SEGMENT} s"
    assert renditions["rung-240"].metadata["video_bitrate_kbps"] == 300


def test_hls_master_and_media_playlists_parse_and_align(
    hls: Built, ffmpeg_bin: str, source: Path
) -> None:
    root = hls.root
    master = m3u8.load(str(root / "master.m3u8"))
    assert master.is_variant
    infos = [p.stream_info for p in master.playlists]
    assert [i.resolution[1] for i in infos] == HEIGHTS
    for info in infos:
        assert info.bandwidth > 0 and info.average_bandwidth <= info.bandwidth
        assert re.fullmatch(r"avc1\.64[0-9a-f]{4},mp4a\.40\.2", info.codecs)
    assert hls.output["audio"]["mode"] == "muxed"
    boundaries = []
    for p in master.playlists:
        media = m3u8.load(str(root / p.uri))
        assert media.is_endlist and media.playlist_type == "vod"
        durations = [s.duration for s in media.segments]
        assert abs(sum(durations) - SECONDS) <= FRAME
        starts = []
        for seg in media.segments:
            with av.open(str(root / seg.uri)) as f:
                assert f.streams.audio, f"{seg.uri} has no audio"
                v = f.streams.video[0]
                first = next(pk for pk in f.demux(v) if pk.pts is not None)
                assert first.is_keyframe, f"{seg.uri} does not start on a keyframe"
                starts.append(round(float(first.pts * v.time_base), 3))
            assert decode_errors(ffmpeg_bin, root / seg.uri) == ""
        boundaries.append((durations, starts))
    assert all(b == boundaries[0] for b in boundaries), boundaries
    files = hls.output["files"]
    assert set(files) == {p.name for p in root.iterdir()}
    assert all(f["digest"].startswith("sha256:") for f in files.values())
    assert media_type_for("stream_0_00001.ts") == files["stream_0_00001.ts"]["media_type"]


def test_hls_package_plays_whole_through_ffmpeg(hls: Built, ffmpeg_bin: str) -> None:
    out = subprocess.run(
        [ffmpeg_bin, "-nostdin", "-v", "error", "-protocol_whitelist", "file",
         "-i", str(hls.root / "master.m3u8"), "-map", "0:v:0", "-map", "0:a:0",
         "-f", "null", "-"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0 and out.stderr.strip() == "", out.stderr


def test_cmaf_has_one_set_of_segments_behind_both_manifests(cmaf: Built, ffmpeg_bin: str) -> None:
    root = cmaf.root
    assert cmaf.output["manifests"] == {"hls": "master.m3u8", "dash": "manifest.mpd"}
    assert not any(p.suffix == ".ts" for p in root.iterdir())
    master = m3u8.load(str(root / "master.m3u8"))
    assert [p.stream_info.resolution[1] for p in master.playlists] == HEIGHTS
    (group,) = master.media
    assert group.type == "AUDIO" and all(
        p.stream_info.audio == group.group_id for p in master.playlists
    )
    hls_segments = set()
    for uri in [*(p.uri for p in master.playlists), group.uri]:
        media = m3u8.load(str(root / uri))
        assert media.segment_map and media.is_endlist
        assert abs(sum(s.duration for s in media.segments) - SECONDS) <= FRAME
        hls_segments |= {s.uri for s in media.segments}
    mpd = (root / "manifest.mpd").read_text()
    assert 'media="chunk-$RepresentationID$-$Number%05d$.m4s"' in mpd
    # Both manifests name the same files: every m4s segment is in the HLS playlists too.
    assert hls_segments == {p.name for p in root.glob("chunk-*.m4s")}
    for manifest in ("manifest.mpd", "master.m3u8"):
        assert decode_errors(ffmpeg_bin, root / manifest, "-protocol_whitelist", "file") == ""
    # Segment boundaries: equal EXTINF lists across the video variants.
    lists = [[s.duration for s in m3u8.load(str(root / p.uri)).segments] for p in master.playlists]
    assert all(x == lists[0] for x in lists)


def test_dash_mpd_loads_back_with_every_rung(dash: Built, ffmpeg_bin: str) -> None:
    root = dash.root
    assert dash.output["manifests"] == {"dash": "manifest.mpd"}
    assert not (root / "master.m3u8").exists()
    # PyAV's wheels have no DASH demuxer (no libxml2): ffprobe (Debian's ffmpeg) reads it.
    ffprobe = shutil.which("ffprobe") or str(Path(ffmpeg_bin).with_name("ffprobe"))
    run = subprocess.run(
        [ffprobe, "-v", "error", "-protocol_whitelist", "file", "-show_streams",
         "-show_format", "-of", "json", str(root / "manifest.mpd")],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    found = json.loads(run.stdout)
    video = [s for s in found["streams"] if s["codec_type"] == "video"]
    assert sorted((s["height"] for s in video), reverse=True) == HEIGHTS
    assert [s["codec_name"] for s in found["streams"] if s["codec_type"] == "audio"] == ["aac"]
    assert abs(float(found["format"]["duration"]) - SECONDS) <= FRAME
    assert decode_errors(ffmpeg_bin, root / "manifest.mpd", "-protocol_whitelist", "file") == ""


def test_sprite_vtt_coordinates_are_inside_the_sheets(
    ffmpeg_bin: str, source: Path, work: Path
) -> None:
    result = build_sprites(
        ffmpeg_bin, source, work / "sprites", interval_seconds=1, width=96, columns=2, rows=1
    )
    meta = result.metadata
    assert meta["count"] == math.ceil(SECONDS / 1) and meta["height"] == 54
    sizes = {}
    for sheet in meta["sheets"]:
        with av.open(str(result.files[sheet])) as f:
            c = f.streams.video[0].codec_context
            sizes[sheet] = (c.width, c.height)
    assert len(sizes) == 2 and all(s == (192, 54) for s in sizes.values())
    text = result.files["thumbnails.vtt"].read_text()
    assert text.startswith("WEBVTT\n")
    cues = re.findall(
        r"(\d\d:\d\d:\d\d\.\d{3}) --> (\d\d:\d\d:\d\d\.\d{3})\n([\w.-]+)#xywh=(\d+),(\d+),(\d+),(\d+)",
        text,
    )
    assert len(cues) == meta["count"]
    previous_end = "00:00:00.000"
    for start, end, sheet, *xywh in cues:
        x, y, w, h = map(int, xywh)
        sw, sh = sizes[sheet]
        assert 0 <= x and x + w <= sw and 0 <= y and y + h <= sh
        assert start == previous_end and end > start
        previous_end = end


@pytest.mark.parametrize("fmt", ["hls", "cmaf"])
def test_packaging_the_same_renditions_again_gives_the_same_files(
    ffmpeg_bin: str, renditions: dict[str, ExecutionResult], work: Path, fmt: str
) -> None:
    first = build_package(ffmpeg_bin, renditions, work / "first", fmt, SEGMENT)
    again = build_package(ffmpeg_bin, renditions, work / "again", fmt, SEGMENT)
    assert first.output["files"] == again.output["files"]  # same digests: stored once
    for name in first.output["files"]:
        if name.endswith(".m3u8"):
            assert "PROGRAM-DATE-TIME" not in (first.root / name).read_text()


def test_a_source_without_audio_makes_a_video_only_package(ffmpeg_bin: str, work: Path) -> None:
    silent = work / "silent.mp4"
    subprocess.run(
        [ffmpeg_bin, "-nostdin", "-v", "error", "-y", "-f", "lavfi",
         "-i", "testsrc2=size=320x240:rate=30:duration=2", "-c:v", "libx264",
         "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(silent)],
        check=True, timeout=120,
    )  # fmt: skip
    _, rungs = build_renditions(
        ffmpeg_bin, silent, work / "silent", [{"height": 240}, {"height": 144}], 1
    )
    assert all(not r.metadata["has_audio"] for r in rungs.values())
    for fmt in ("hls", "cmaf"):
        built = build_package(ffmpeg_bin, rungs, work / "silent", fmt, 1)
        assert built.output["audio"] is None
        master = m3u8.load(str(built.root / "master.m3u8"))
        assert not master.media
        assert all("mp4a" not in p.stream_info.codecs for p in master.playlists)
        assert [p.stream_info.resolution for p in master.playlists] == [(320, 240), (192, 144)]
        assert (
            decode_errors(ffmpeg_bin, built.root / "master.m3u8", "-protocol_whitelist", "file")
            == ""
        )
