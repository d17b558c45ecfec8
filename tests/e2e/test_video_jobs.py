"""Real ffmpeg under the real worker loop: submission preflight, cancel, kill -9, outputs.

Databases: SQLite and a real PostgreSQL. The killed worker is a real `vidjobs worker`
process; its ffmpeg child dies with it and nothing partial ever becomes a job's output.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from jobs.claims import ClaimService
from jobs.db import Database
from jobs.errors import InvalidRequest
from jobs.service import JobService
from jobs.settings import Settings
from jobs.spec import EditRequest
from jobs.storage import LocalStorage
from jobs.tenants import TenantRef
from tests.support.databases import require_service
from workers.compose import ffmpeg_source_check
from workers.reaper import Reaper
from workers.runner import Runner
from workers.wakeup import Wakeup


def _ffmpeg() -> str:
    from workers.ffmpeg import FfmpegNotFound, find_ffmpeg

    try:
        return find_ffmpeg()
    except FfmpegNotFound as exc:
        require_service("ffmpeg", str(exc))
        raise


@pytest.fixture(scope="session")
def long_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 20 s 720p clip with audio: a few seconds of real transcoding work."""
    folder = tmp_path_factory.mktemp("clips")
    from workers.ffmpeg.testmedia import make_clip

    return make_clip(folder / "long.mp4", seconds=20, size="1280x720", rate=30, ffmpeg=_ffmpeg())


@pytest.fixture
def video_root(source_root: Path, long_clip: Path) -> Path:
    os.link(long_clip, source_root / "long.mp4")
    (source_root / "notes.mp4").write_text("this is a text file wearing an .mp4 name\n")
    (source_root / "empty.mp4").write_bytes(b"")
    return source_root


SLOW_EDIT = {"source": {"path": "long.mp4"}, "operations": [{"op": "scale", "width": 1280}], "output": {"crf": 18}}


def ffmpeg_pids(marker: Path) -> list[int]:
    """Processes whose command line mentions `marker` (our data dir): our ffmpeg children."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if str(marker).encode() in cmd and b"ffmpeg" in cmd:
            found.append(int(entry.name))
    return found


async def wait_status(service: JobService, tenant: TenantRef, key: str, want: set[str], timeout: float, min_progress: float = 0) -> Any:
    async with asyncio.timeout(timeout):
        while True:
            job = await service.get(tenant, key)
            if job.status in want and job.progress >= min_progress:
                return job
            await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def runner_running(db: Database, settings: Settings) -> AsyncIterator[Runner]:
    from workers.ffmpeg import FfmpegExecutor

    blobs = LocalStorage(settings.data_dir / "blobs")
    runner = Runner(ClaimService(db, settings), FfmpegExecutor(), blobs, settings, wakeup=Wakeup(), concurrency=1)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        yield runner
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_submission_refuses_files_that_are_not_videos(db: Database, settings: Settings, tenant: TenantRef, video_root: Path) -> None:
    _ffmpeg()
    service = JobService(db, settings, check_source=ffmpeg_source_check(settings))
    for name in ("notes.mp4", "empty.mp4"):
        with pytest.raises(InvalidRequest) as info:
            await service.submit(tenant, EditRequest.model_validate({"source": {"path": name}}))
        assert info.value.details[0]["path"] == "source"
    wm = {"source": {"path": "long.mp4"}, "operations": [{"op": "watermark", "source": {"path": "notes.mp4"}}]}
    with pytest.raises(InvalidRequest) as info:
        await service.submit(tenant, EditRequest.model_validate(wm))
    assert info.value.details[0]["path"] == "operations[0].source"
    ok = await service.submit(tenant, EditRequest.model_validate({"source": {"path": "long.mp4"}}))
    assert ok.created


async def test_cancelling_a_running_transcode_stops_ffmpeg_within_two_seconds(
    db: Database, service: JobService, settings: Settings, tenant: TenantRef, video_root: Path
) -> None:
    key = (await service.submit(tenant, EditRequest.model_validate(SLOW_EDIT))).job.key
    fast_beat = settings.model_copy(update={"heartbeat_seconds": 0.5})
    async with runner_running(db, fast_beat):
        await wait_status(service, tenant, key, {"running"}, 30, min_progress=0.02)
        assert ffmpeg_pids(settings.data_dir), "ffmpeg should be running"
        loop = asyncio.get_running_loop()
        asked = loop.time()
        await service.cancel(tenant, key)
        job = await wait_status(service, tenant, key, {"cancelled"}, 2.0)
        while ffmpeg_pids(settings.data_dir) and loop.time() - asked < 2.0:
            await asyncio.sleep(0.05)
        assert not ffmpeg_pids(settings.data_dir), "ffmpeg still running 2 s after the cancel"
    assert job.output is None
    assert not list((settings.data_dir / "blobs" / "tmp").iterdir())


async def test_worker_killed_mid_transcode_leaves_no_output_and_the_next_attempt_succeeds(
    db_url: str, db: Database, service: JobService, settings: Settings, tenant: TenantRef, video_root: Path
) -> None:
    key = (await service.submit(tenant, EditRequest.model_validate(SLOW_EDIT))).job.key
    env = {
        **os.environ,
        "VIDJOBS_DATABASE_URL": db_url,
        "VIDJOBS_DATA_DIR": str(settings.data_dir),
        "VIDJOBS_SOURCE_ROOTS": str(video_root),
        "VIDJOBS_LEASE_SECONDS": "2",
        "VIDJOBS_HEARTBEAT_SECONDS": "0.5",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "workers.cli", "worker", "--concurrency", "1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        running = await wait_status(service, tenant, key, {"running"}, 60, min_progress=0.1)
        assert running.progress < 1.0
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGKILL)
    await asyncio.sleep(0.5)
    assert not ffmpeg_pids(settings.data_dir), "the dead worker's ffmpeg must die with it"
    killed = await service.get(tenant, key)
    assert killed.status == "running" and killed.output is None
    blob_root = settings.data_dir / "blobs" / "sha256"
    assert not blob_root.exists() or not any(blob_root.rglob("*")), "nothing may enter the store"

    short = settings.model_copy(update={"lease_seconds": 2})
    reaper = Reaper(ClaimService(db, short), LocalStorage(settings.data_dir / "blobs"), temp_max_age=0)
    async with asyncio.timeout(10):
        while not await reaper.tick():
            await asyncio.sleep(0.2)
    assert not list((settings.data_dir / "blobs" / "tmp").iterdir()), "the dead worker's scratch files are removed"
    async with runner_running(db, settings):
        done = await wait_status(service, tenant, key, {"succeeded", "failed"}, 120)
    assert done.status == "succeeded" and done.attempts == 2
    stored = LocalStorage(settings.data_dir / "blobs").path_for(done.output["digest"])
    assert "sha256:" + hashlib.sha256(stored.read_bytes()).hexdigest() == done.output["digest"]
    assert done.output["width"] == 1280 and done.output["duration_ms"] > 19_000
