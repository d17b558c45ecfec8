"""Uploads, output downloads (with Range) and hostile files through the real worker loop."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from jobs.api import ApiState, create_app
from jobs.claims import ClaimService
from jobs.db import Database
from jobs.service import JobService
from jobs.settings import Settings
from jobs.spec import EditRequest
from jobs.storage import LocalStorage
from jobs.tenants import TenantRef, create_tenant
from tests.support.databases import require_service
from workers.runner import Runner
from workers.wakeup import Wakeup


def ffmpeg() -> str:
    from workers.ffmpeg import FfmpegNotFound, find_ffmpeg

    try:
        return find_ffmpeg()
    except FfmpegNotFound as exc:
        require_service("ffmpeg", str(exc))
        raise


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    from workers.ffmpeg.testmedia import make_clip

    return make_clip(tmp_path / "clip.mp4", seconds=2, ffmpeg=ffmpeg())


@pytest.fixture
async def api(db: Database, settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, JobService, Runner]]:
    from workers.compose import make_probe
    from workers.ffmpeg import FfmpegExecutor

    wakeup = Wakeup()
    service = JobService(db, settings, after_commit=lambda _e: wakeup.notify())
    blobs = LocalStorage(settings.data_dir / "blobs")
    app: FastAPI = create_app(ApiState(db=db, service=service, settings=settings, blobs=blobs, probe=make_probe()))
    async with db.transaction() as conn:
        _, token = await create_tenant(conn, "uploader")
    runner = Runner(ClaimService(db, settings), FfmpegExecutor(), blobs, settings, wakeup=wakeup, concurrency=1)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t", headers={"Authorization": f"Bearer {token}"}) as http:
        yield http, service, runner
    stop.set()
    await asyncio.wait_for(task, 30)


async def finished(http: httpx.AsyncClient, key: str, timeout: float = 60) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            job = (await http.get(f"/v1/jobs/{key}")).json()
            if job["status"] in ("succeeded", "failed", "cancelled"):
                return job
            await asyncio.sleep(0.05)


async def test_upload_then_edit_then_download_with_range(api: Any, clip: Path) -> None:
    http, _, _ = api
    data = clip.read_bytes()
    up = await http.post("/v1/sources", content=data, headers={"Content-Type": "video/mp4"})
    assert up.status_code == 201, up.text
    body = up.json()
    assert body["digest"] == "sha256:" + hashlib.sha256(data).hexdigest()
    assert body["size"] == len(data) and body["probe"]["width"] == 320
    edit = {"source": {"digest": body["digest"]}, "operations": [{"op": "scale", "width": 160}], "output": {"container": "webm"}}
    key = (await http.post("/v1/jobs", json=edit)).json()["key"]
    job = await finished(http, key)
    assert job["status"] == "succeeded", job["error"]
    whole = await http.get(f"/v1/jobs/{key}/output")
    assert whole.status_code == 200 and whole.headers["content-type"] == "video/webm"
    assert "sha256:" + hashlib.sha256(whole.content).hexdigest() == job["output"]["digest"]
    part = await http.get(f"/v1/jobs/{key}/output", headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and part.content == whole.content[:100]


async def test_uploads_that_are_not_video_are_refused(api: Any, tmp_path: Path) -> None:
    http, _, _ = api
    for content in (b"", b"just some text, not a video\n" * 10, b"#EXTM3U\n#EXTINF:10,\nfile:///etc/passwd\n"):
        r = await http.post("/v1/sources", content=content)
        assert r.status_code == 422, r.text
        assert "passwd" not in r.text
    assert not list((tmp_path / "data" / "blobs" / "tmp").iterdir()), "refused uploads leave no file"


async def test_hostile_files_fail_permanently_and_the_worker_keeps_going(
    api: Any, source_root: Path, clip: Path, tenant: TenantRef
) -> None:
    _, service, runner = api
    (source_root / "passwd.m3u8.mp4").write_text("#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n")
    (source_root / "list.mp4").write_text("ffconcat version 1.0\nfile '/etc/passwd'\n")
    (source_root / "text.mp4").write_text("hello\n")
    (source_root / "empty.mp4").write_bytes(b"")
    (source_root / "good.mp4").write_bytes(clip.read_bytes())
    keys = {}
    for name in ("passwd.m3u8.mp4", "list.mp4", "text.mp4", "empty.mp4", "good.mp4"):
        # The service here has no submission preflight, so the worker meets the files.
        r = await service.submit(tenant, EditRequest.model_validate({"source": {"path": name}, "operations": [{"op": "scale", "width": 160}]}))
        keys[name] = r.job.key
    for name, key in keys.items():
        job = await service.get(tenant, key)
        async with asyncio.timeout(60):
            while job.status not in ("succeeded", "failed"):
                await asyncio.sleep(0.05)
                job = await service.get(tenant, key)
        if name == "good.mp4":
            assert job.status == "succeeded"
        else:
            assert (job.status, job.error_code, job.attempts) == ("failed", "invalid_input", 1), (name, job.error_message)
            assert "root:" not in (job.error_message or "") and str(source_root) not in (job.error_message or "")
    assert runner.stats.failed == 4 and runner.stats.succeeded == 1
