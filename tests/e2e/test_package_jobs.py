"""A package and sprites as one job, end to end on `vidjobs up` with the real ffmpeg: upload,
submit, the task graph (one rendition per rung, the package after them, the sprites), the
signed playback URL played by fetching every playlist and segment, and rungs reused by a
second package of the same bytes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import m3u8
import pytest

import vidjobs
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
        tasks = vj.http.get(f"/v1/jobs/{job.key}/tasks").json()["tasks"]
        by_name = {t["name"]: t for t in tasks}
        assert set(by_name) == {"rung-360", "rung-240", "package", "thumbnails"}
        assert all(t["status"] == "succeeded" and t["attempts"] == 1 for t in tasks)
        assert set(by_name["package"]["depends_on"]) == {"rung-360", "rung-240"}
        play = vj.http.get(f"/v1/jobs/{job.key}/playback").json()
        # A second package of the same bytes re-encodes nothing: its rungs are reused.
        dash = vj.submit({"source": {"digest": src.digest}, **{**edit, "package": {
            "format": "dash", "segment_seconds": 2, "ladder": "auto"}}})  # fmt: skip
        again = vj.wait(dash.key, timeout=600)
        assert again.status == "succeeded", again.error
        view = vj.http.get(f"/v1/jobs/{dash.key}/tasks").json()["tasks"]
        reused = {t["name"] for t in view if t["reused"]}
        assert {"rung-360", "rung-240", "thumbnails"} <= reused
        assert {t["key"] for t in view if t["name"].startswith("rung-")} == {
            by_name["rung-360"]["key"], by_name["rung-240"]["key"],
        }  # fmt: skip
    with httpx.Client(timeout=60) as player:  # no bearer token: the URL is the credential
        master_url = play["url"]
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
        vtt = player.get(play["thumbnails"])
        assert vtt.status_code == 200 and vtt.text.startswith("WEBVTT") and "#xywh=" in vtt.text
