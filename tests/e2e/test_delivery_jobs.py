"""Delivery edits through the API and the real worker loop: an uploaded subtitle file burned
in, an audio-only deliverable, and what the job's view then reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_uploads_and_hostile import api, clip, ffmpeg, finished
from tests.ffmpeg.conftest import make_clip
from tests.ffmpeg.test_ffmpeg_hdr10 import (
    EXPECTED,
    HDR10_PARAMS,
    LIGHT,
    MASTERING,
    mastering_values,
    pq_args,
    side_data,
)

__all__ = ["api", "clip"]  # fixtures

SRT = b"1\n00:00:00,100 --> 00:00:01,500\nHello from an upload\n"


async def test_uploaded_subtitles_and_an_audio_deliverable(api: Any, clip: Path) -> None:
    http, _, _ = api
    video = (await http.post("/v1/sources", content=clip.read_bytes())).json()["digest"]
    up = await http.post("/v1/sources", content=SRT, headers={"Content-Type": "text/plain"})
    assert up.status_code == 201, up.text
    assert up.json()["probe"]["subtitles"] is True and up.json()["probe"]["cues"] == 1
    subs = up.json()["digest"]
    burn = {
        "source": {"digest": video},
        "operations": [{"op": "subtitles", "source": {"digest": subs}, "style": {"size": 8}}],
        "output": {"container": "mkv", "video_codec": "hevc", "preset": "ultrafast"},
    }
    audio = {
        "source": {"digest": video},
        "operations": [{"op": "fade", "fade_out": 0.5}],
        "output": {"container": "mp3", "audio_channels": 1, "audio_sample_rate": 44100},
    }
    keys = []
    for body in (burn, audio):
        r = await http.post("/v1/jobs", json=body)
        assert r.status_code == 201, r.text
        keys.append(r.json()["key"])
    done = [await finished(http, key, timeout=120) for key in keys]
    assert [j["status"] for j in done] == ["succeeded", "succeeded"], done
    assert done[0]["output"]["subtitles"] == {"mode": "burn", "codec": "ass", "cues": 1}
    assert done[0]["output"]["video_codec"] == "hevc"
    assert done[1]["output"]["media_type"] == "audio/mpeg"
    assert done[1]["output"]["audio_codec"] == "mp3" and done[1]["output"]["width"] is None
    got = await http.get(f"/v1/jobs/{keys[1]}/output")
    assert got.status_code == 200 and got.headers["content-type"].startswith("audio/mpeg")
    wrong = {**burn, "output": {"container": "gif"}}
    r = await http.post("/v1/jobs", json=wrong)
    assert r.status_code == 422
    assert r.json()["error"]["details"][0]["path"] == "operations[0]"


async def test_an_uploaded_hdr10_source_keeps_its_metadata_in_hevc_and_not_in_h264(
    api: Any, tmp_path: Path
) -> None:
    http, _, _ = api
    ffprobe = str(Path(ffmpeg()).with_name("ffprobe"))
    source = make_clip(ffmpeg(), tmp_path / "hdr10.mkv", *pq_args(HDR10_PARAMS))
    up = await http.post("/v1/sources", content=source.read_bytes())
    assert up.status_code == 201, up.text
    digest = up.json()["digest"]
    outputs = ({"container": "mkv", "video_codec": "hevc", "bit_depth": 10}, {"container": "mp4"})
    keys = []
    for output in outputs:
        r = await http.post("/v1/jobs", json={"source": {"digest": digest}, "output": output})
        assert r.status_code == 201, r.text
        keys.append(r.json()["key"])
    hevc, h264 = [await finished(http, key, timeout=120) for key in keys]
    assert (hevc["status"], h264["status"]) == ("succeeded", "succeeded"), (hevc, h264)
    assert "passed to libx265" in hevc["output"]["video_processing"]["hdr10"]
    assert h264["output"]["video_processing"]["hdr10"] == "dropped: the output is 8-bit SDR"
    made = []
    for key, name in zip(keys, ("out.mkv", "out.mp4"), strict=True):
        got = await http.get(f"/v1/jobs/{key}/output")
        assert got.status_code == 200
        (tmp_path / name).write_bytes(got.content)
        made.append(side_data(ffprobe, tmp_path / name))
    assert mastering_values(made[0][MASTERING]) == pytest.approx(EXPECTED)
    assert (made[0][LIGHT]["max_content"], made[0][LIGHT]["max_average"]) == (1000, 400)
    assert MASTERING not in made[1] and LIGHT not in made[1]
