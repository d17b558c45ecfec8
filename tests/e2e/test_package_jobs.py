"""A package and sprites as one job, end to end on `vidjobs up` with the real ffmpeg: upload,
submit, the task graph (one rendition per rung, the package after them, the sprites), the
signed playback URL played by fetching every playlist and segment, the package downloaded
by the client into a folder that ffmpeg plays, rungs reused by a second package of the same
bytes, and named outputs downloaded by name."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import httpx
import m3u8
import pytest

import vidjobs
from tests.e2e.test_cli import vidjobs as cli
from tests.e2e.test_client import _ffmpeg, server
from tests.support.packages import make_source

__all__ = ["server"]  # the real `vidjobs up --executor ffmpeg` of the client tests

pytestmark = pytest.mark.ffmpeg


def decodes(ffmpeg: str, data: bytes, tmp: Path, name: str) -> None:
    path = tmp / name
    path.write_bytes(data)
    proc = subprocess.run(
        [ffmpeg, "-nostdin", "-v", "error", "-i", str(path), "-f", "null", "-"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr


def test_an_hls_ladder_with_sprites_plays_through_its_signed_url(
    server: tuple[str, str], tmp_path: Path
) -> None:
    url, token = server
    ffmpeg = _ffmpeg()
    clip = make_source(ffmpeg, tmp_path / "clip.mp4", seconds=4, size="640x360")
    edit = {
        "package": {"format": "hls", "segment_seconds": 2, "ladder": "auto"},
        "thumbnails": {"interval_seconds": 1, "width": 160, "columns": 2},
    }
    with vidjobs.Client(url, token) as vj:
        src = vj.upload(clip, media_type="video/mp4")
        job = vj.submit({"source": {"digest": src.digest}, **edit})
        done = vj.wait(job.key, timeout=600)
        assert done.status == "succeeded", done.error
        tasks = vj.tasks(job.key)
        by_name = {t.name: t for t in tasks}
        assert set(by_name) == {"rung-360", "rung-240", "package", "thumbnails"}
        assert all(t.status == "succeeded" and t.attempts == 1 for t in tasks)
        assert set(by_name["package"].depends_on) == {"rung-360", "rung-240"}
        play = vj.playback(job.key)
        # The whole package into a folder: every file checked by digest, and it plays.
        saved = vj.download_package(job.key, tmp_path / "copy")
        assert {p.name for p in saved} == set(done.output["package"]["files"])
        assert not list((tmp_path / "copy").glob("*.part"))
        decodes(ffmpeg, (tmp_path / "copy" / "master.m3u8").read_bytes(), tmp_path / "copy",
                "master.m3u8")  # fmt: skip
        # A second package of the same bytes re-encodes nothing: its rungs are reused.
        dash = vj.submit({"source": {"digest": src.digest}, **{**edit, "package": {
            "format": "dash", "segment_seconds": 2, "ladder": "auto"}}})  # fmt: skip
        again = vj.wait(dash.key, timeout=600)
        assert again.status == "succeeded", again.error
        view = vj.tasks(dash.key)
        assert {"rung-360", "rung-240", "thumbnails"} <= {t.name for t in view if t.reused}
        assert {t.key for t in view if t.name.startswith("rung-")} == {
            by_name["rung-360"].key, by_name["rung-240"].key,
        }  # fmt: skip
        assert set(vj.playback(dash.key).manifests) == {"dash"}
    with httpx.Client(timeout=60) as player:  # no bearer token: the URL is the credential
        master_url = play.url
        master = m3u8.loads(player.get(master_url).text, uri=master_url)
        assert master.is_variant and len(master.playlists) == 2
        heights = sorted(p.stream_info.resolution[1] for p in master.playlists)
        assert heights == [240, 360]
        assert all(p.stream_info.bandwidth and p.stream_info.codecs for p in master.playlists)
        for variant in master.playlists:
            media = m3u8.loads(player.get(variant.absolute_uri).text, uri=variant.absolute_uri)
            assert abs(sum(s.duration for s in media.segments) - 4.0) <= 0.04
            for i, seg in enumerate(media.segments):
                got = player.get(seg.absolute_uri)
                assert got.status_code == 200
                decodes(ffmpeg, got.content, tmp_path, f"seg-{i}.ts")
        assert play.thumbnails is not None
        vtt = player.get(play.thumbnails)
        assert vtt.status_code == 200 and vtt.text.startswith("WEBVTT") and "#xywh=" in vtt.text


def test_named_outputs_download_by_name_and_an_unknown_name_says_what_there_is(
    server: tuple[str, str], tmp_path: Path
) -> None:
    url, token = server
    ffmpeg = _ffmpeg()
    clip = make_source(ffmpeg, tmp_path / "clip.mp4", seconds=2, size="640x360")
    with vidjobs.Client(url, token) as vj:
        src = vj.upload(clip, media_type="video/mp4")
        job = vj.submit({"source": {"digest": src.digest}, "outputs": [
            {"name": "small", "container": "mp4", "height": 180},
            {"name": "poster", "container": "jpg", "width": 320, "at": 1},
        ]})  # fmt: skip
        done = vj.wait(job.key, timeout=600)
        assert done.status == "succeeded", done.error
        assert {t.name for t in vj.tasks(job.key)} == {"small", "poster"}
        small = vj.download(job.key, tmp_path / "small.mp4", output="small")
        poster = vj.download(job.key, tmp_path / "poster.jpg", output="poster")
        assert small.stat().st_size == done.output["outputs"]["small"]["size"]
        assert poster.read_bytes()[:3] == b"\xff\xd8\xff"  # a JPEG
        decodes(ffmpeg, small.read_bytes(), tmp_path, "small-check.mp4")
        with pytest.raises(vidjobs.errors.NotFound) as err:
            vj.download(job.key, tmp_path / "nope.mp4", output="1080p")
        assert err.value.details == {"outputs": ["poster", "small"]}
        assert not (tmp_path / "nope.mp4").exists()
    # The same through the CLI.
    env = {**os.environ, "VIDJOBS_API_URL": url, "VIDJOBS_API_TOKEN": token}
    listed = json.loads(cli("tasks", job.key, "--json", env=env).stdout)["tasks"]
    assert {t["name"]: t["status"] for t in listed} == {"small": "succeeded", "poster": "succeeded"}
    again = tmp_path / "again.jpg"
    assert cli("download", job.key, str(again), "--output", "poster", env=env).stdout.strip() == str(again)
    assert again.read_bytes() == poster.read_bytes()
    unknown = cli("download", job.key, "--output", "1080p", env=env, check=False)
    assert unknown.returncode == 1 and "no output named '1080p'" in " ".join(unknown.stderr.split())
