"""Delivery edits through the API and the real worker loop: an uploaded subtitle file burned
in, an audio-only deliverable, and what the job's view then reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.e2e.test_uploads_and_hostile import api, clip, finished

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
