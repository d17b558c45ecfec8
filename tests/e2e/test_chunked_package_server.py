"""A chunked package on a real `vidjobs up --executor ffmpeg` (the worker's own executor
registry, the API, the signed playback URL): the job runs as chunk, audio and stitch tasks
per rung, and a player fetching the master, both media playlists and every segment gets the
whole source's duration in every rung."""

from __future__ import annotations

from pathlib import Path

import httpx
import m3u8
import pytest

import vidjobs
from tests.e2e.test_client import _ffmpeg, server
from tests.e2e.test_package_jobs import decodes
from tests.support.packages import make_source

__all__ = ["server"]

pytestmark = pytest.mark.ffmpeg


def test_a_chunked_ladder_runs_as_chunks_per_rung_and_plays_through_its_signed_url(
    server: tuple[str, str], tmp_path: Path
) -> None:
    url, token = server
    ffmpeg = _ffmpeg()
    clip = make_source(ffmpeg, tmp_path / "clip.mp4", seconds=5, size="640x360")
    ladder = [{"height": 360, "video_bitrate_kbps": 800}, {"height": 240, "video_bitrate_kbps": 400}]
    with vidjobs.Client(url, token) as vj:
        src = vj.upload(clip, media_type="video/mp4")
        job = vj.submit({
            "source": {"digest": src.digest},
            "package": {"format": "hls", "segment_seconds": 1, "ladder": ladder},
            "chunking": {"mode": "on", "chunk_seconds": 2},
        })  # fmt: skip
        done = vj.wait(job.key, timeout=600)
        assert done.status == "succeeded", done.error
        view = vj.http.get(f"/v1/jobs/{job.key}").json()
        assert view["chunking"] == {
            "chunked": True, "reason": "chunked into 3 chunks of 2 s (2 segments of 1 s) per rung",
        }  # fmt: skip
        tasks = vj.http.get(f"/v1/jobs/{job.key}/tasks").json()["tasks"]
        kinds = sorted(t["kind"] for t in tasks)
        assert kinds == ["package", "rung-audio"] + ["rung-chunk"] * 6 + ["rung-stitch"] * 2
        assert all(t["status"] == "succeeded" and t["attempts"] == 1 for t in tasks)
        play = vj.http.get(f"/v1/jobs/{job.key}/playback").json()
    with httpx.Client(timeout=60) as player:  # no bearer token: the URL is the credential
        master = m3u8.loads(player.get(play["url"]).text, uri=play["url"])
        assert sorted(p.stream_info.resolution[1] for p in master.playlists) == [240, 360]
        for variant in master.playlists:
            media = m3u8.loads(player.get(variant.absolute_uri).text, uri=variant.absolute_uri)
            assert [round(s.duration, 3) for s in media.segments] == [1.0] * 5
            for i, seg in enumerate(media.segments):
                got = player.get(seg.absolute_uri)
                assert got.status_code == 200
                decodes(ffmpeg, got.content, tmp_path, f"seg-{i}.ts")
