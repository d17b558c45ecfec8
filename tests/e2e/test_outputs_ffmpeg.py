"""Several named outputs with the real ffmpeg under the real worker loop (SQLite and a real
PostgreSQL): one task per output, each output probed for what it asked."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from jobs.db import Database
from jobs.service import JobService
from jobs.settings import Settings
from jobs.spec import EditRequest
from jobs.storage import LocalStorage
from jobs.tenants import TenantRef
from tests.e2e.test_video_jobs import _ffmpeg
from tests.integration.test_runner import blobs, make_runner, running, wait_for
from workers.executor import ExecutorRegistry

__all__ = ["blobs"]

pytestmark = pytest.mark.ffmpeg


def probe(path: Path) -> dict:
    ffprobe = str(Path(_ffmpeg()).with_name("ffprobe"))
    argv = [ffprobe, "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)]
    return json.loads(subprocess.run(argv, check=True, capture_output=True, timeout=60).stdout)


async def test_a_two_output_job_makes_each_output_as_asked(
    db: Database,
    service: JobService,
    tenant: TenantRef,
    settings: Settings,
    blobs: LocalStorage,
    source_root: Path,
    tmp_path: Path,
) -> None:
    from workers.ffmpeg.executor import FfmpegExecutor
    from workers.ffmpeg.testmedia import make_clip

    clip = make_clip(tmp_path / "clip.mp4", seconds=3, size="320x240", ffmpeg=_ffmpeg())
    os.link(clip, source_root / "three.mp4")
    req = EditRequest.model_validate(
        {
            "source": {"path": "three.mp4"},
            "operations": [{"op": "trim", "start": 0.5, "end": 2.5}],
            "outputs": [
                {"name": "small", "container": "mp4", "height": 120, "crf": 30},
                {"name": "poster", "container": "jpg", "width": 160, "at": 1},
            ],
        }
    )
    job = (await service.submit(tenant, req)).job
    runner, _ = make_runner(db, settings, blobs, ExecutorRegistry(FfmpegExecutor()))
    async with running(runner):
        done = await wait_for(service, tenant, job.key, {"succeeded", "failed"}, timeout=120)
    assert done.status == "succeeded", done.error_message
    small, poster = done.output["outputs"]["small"], done.output["outputs"]["poster"]
    assert small["media_type"] == "video/mp4" and poster["media_type"] == "image/jpeg"
    video = probe(blobs.path_for(small["digest"]))
    [v] = [s for s in video["streams"] if s["codec_type"] == "video"]
    assert (v["codec_name"], v["height"], v["width"]) == ("h264", 120, 160)
    assert any(s["codec_type"] == "audio" for s in video["streams"])
    assert abs(float(video["format"]["duration"]) - 2.0) < 0.1
    image = probe(blobs.path_for(poster["digest"]))
    [i] = image["streams"]
    assert (i["codec_name"], i["width"], i["height"]) == ("mjpeg", 160, 120)
