"""Chunked encoding end to end: the real ffmpeg under the real worker loop (SQLite and a real
PostgreSQL). A chunked edit runs as chunk tasks, an audio task and a stitch; lossless chunks
(crf 0) stitched back give every source frame once (framemd5 against the source's decode)
with the audio in sync; `auto` says why a short source is not chunked; `on` with an
operation that stops chunking is a 422 naming it; a rerun after a failure redoes only what
failed; a SIGKILLed worker process (a real `vidjobs worker`) costs at most its running chunk."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobs import owners
from jobs.api import ApiState, create_app
from jobs.claims import ClaimService
from jobs.db import Database, insert_on_conflict
from jobs.errors import PermanentError
from jobs.models import Blob
from jobs.service import JobService
from jobs.settings import Settings
from jobs.spec import EditRequest
from jobs.storage import LocalStorage
from jobs.tenants import TenantRef, create_tenant
from tests.e2e.test_outputs_ffmpeg import probe
from tests.e2e.test_video_jobs import _ffmpeg
from tests.integration.test_runner import blobs, make_runner, running, wait_for
from workers.executor import ExecutionContext, ExecutionResult, ExecutorRegistry
from workers.reaper import Reaper

__all__ = ["blobs"]

pytestmark = pytest.mark.ffmpeg

LOSSLESS = {"container": "mp4", "video_codec": "h264", "crf": 0}


@pytest.fixture
def chunk_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"chunk_min_seconds": 4.0})


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """7 s, 25 fps, a keyframe every 2 s, with audio: chunks of 50, 50, 50 and 25 frames."""
    from workers.ffmpeg.testmedia import make_clip

    out = tmp_path_factory.mktemp("chunked") / "seven.mp4"
    made = make_clip(out, seconds=7, size="320x240", rate=25, ffmpeg=_ffmpeg())
    made.chmod(0o444)
    return made


async def upload(db: Database, store: LocalStorage, tenant: TenantRef, path: Path) -> str:
    """The clip as an uploaded blob with its stored probe (what the planner sizes by)."""
    from workers.ffmpeg.probe import probe_upload

    found = await asyncio.to_thread(probe_upload, path)
    copy = path.with_name(f"upload-{os.getpid()}-{id(store)}.mp4")
    shutil.copyfile(path, copy)  # the store takes the file it is given
    digest, size = await store.put_file(copy)
    async with db.transaction() as conn:
        await conn.execute(
            insert_on_conflict(conn, Blob.__table__)  # type: ignore[attr-defined]
            .on_conflict_do_nothing()
            .values(digest=digest, size=size, media_type="video/mp4", probe=found)
        )
        await owners.record_owner(conn, tenant.id, digest)
    return digest


def chunked_edit(digest: str, **chunking: Any) -> EditRequest:
    return EditRequest.model_validate(
        {
            "source": {"digest": digest},
            "operations": [{"op": "volume", "db": -3}],
            "output": LOSSLESS,
            "chunking": {"mode": "on", "chunk_seconds": 2, **chunking},
        }
    )


def frame_hashes(path: Path) -> list[str]:
    argv = [_ffmpeg(), "-v", "error", "-i", str(path), "-map", "0:v", "-f", "framemd5", "-"]
    out = subprocess.run(argv, check=True, capture_output=True, timeout=120, text=True).stdout
    return [line.rsplit(",", 1)[1].strip() for line in out.splitlines() if not line.startswith("#")]


def registry() -> ExecutorRegistry:
    from workers.ffmpeg.chunked import chunked_executors
    from workers.ffmpeg.executor import FfmpegExecutor

    edit = FfmpegExecutor()
    return ExecutorRegistry(edit, **chunked_executors(edit))


async def test_a_chunked_edit_gives_every_source_frame_once_with_the_audio_in_sync(
    db: Database, tenant: TenantRef, chunk_settings: Settings, blobs: LocalStorage, clip: Path
) -> None:
    service = JobService(db, chunk_settings)
    digest = await upload(db, blobs, tenant, clip)
    job = (await service.submit(tenant, chunked_edit(digest))).job
    assert job.role == "graph"
    runner, _ = make_runner(db, chunk_settings, blobs, registry())
    async with running(runner):
        done = await wait_for(service, tenant, job.key, {"succeeded", "failed"}, timeout=240)
    assert done.status == "succeeded", done.error_message
    tasks = {m.name: m for m in (await service.tasks(tenant, job.key))[1]}
    assert sorted(tasks) == ["audio", "chunk-0000", "chunk-0001", "chunk-0002", "chunk-0003",
                             "stitch"]
    assert [tasks[f"chunk-{i:04d}"].task.output["frames"] for i in range(4)] == [50, 50, 50, 25]
    out = done.output
    assert out["media_type"] == "video/mp4" and out["frames"] == 175
    assert (out["width"], out["height"]) == (320, 240)
    made = blobs.path_for(out["digest"])
    assert frame_hashes(made) == frame_hashes(clip)  # lossless: each frame once, in order
    streams = probe(made)["streams"]
    video = next(s for s in streams if s["codec_type"] == "video")
    audio = next(s for s in streams if s["codec_type"] == "audio")
    assert abs(float(video["duration"]) - 7.0) <= 0.04
    assert abs(float(audio["duration"]) - float(video["duration"])) <= 0.08
    assert abs(float(audio["start_time"]) - float(video["start_time"])) <= 0.04


async def test_on_s3_the_chunked_tasks_of_one_worker_download_the_source_once(
    db: Database, tenant: TenantRef, chunk_settings: Settings, clip: Path, tmp_path: Path
) -> None:
    """The worker's input cache (`workers.inputcache`) on a real S3 server: the audio and
    the chunks name the source; one GET brings it down, the rest link it. The stitch reads
    only its deps."""
    from tests.support.s3 import drop_bucket, new_bucket_storage

    store = await new_bucket_storage(tmp_path / "scratch")
    try:
        service = JobService(db, chunk_settings)
        digest = await upload(db, store, tenant, clip)  # type: ignore[arg-type]
        c = await store.client()
        real, gets = c.get_object, []

        async def counting(**kw: Any) -> Any:
            gets.append(kw["Key"])
            return await real(**kw)

        c.get_object = counting
        job = (await service.submit(tenant, chunked_edit(digest))).job
        runner, _ = make_runner(db, chunk_settings, store, registry(), concurrency=2)  # type: ignore[arg-type]
        async with running(runner):
            done = await wait_for(service, tenant, job.key, {"succeeded", "failed"}, timeout=240)
        assert done.status == "succeeded", done.error_message
        tasks = (await service.tasks(tenant, job.key))[1]
        with_source = [t for t in tasks if t.task.spec.get("inputs")]
        assert sorted(t.name for t in with_source) == ["audio", *(f"chunk-{i:04d}" for i in range(4))]
        assert gets.count(store.key(digest)) == 1
        assert (runner.inputs.fetches, runner.inputs.hits) == (1, 4)
        assert not list((tmp_path / "scratch").glob("inputs-*"))  # removed when it stopped
    finally:
        await drop_bucket(store)


async def test_auto_runs_a_short_source_in_one_pass_and_says_why(
    db: Database, tenant: TenantRef, settings: Settings, blobs: LocalStorage, clip: Path
) -> None:
    service = JobService(db, settings)  # the default: chunk sources longer than 120 s
    digest = await upload(db, blobs, tenant, clip)
    req = EditRequest.model_validate({"source": {"digest": digest}, "output": LOSSLESS})
    job = (await service.submit(tenant, req)).job
    assert job.role == "job"
    from jobs.api.views import job_view

    view = job_view(await service.get(tenant, job.key))
    assert view["chunking"] == {
        "chunked": False, "reason": "not chunked: the source is not longer than 120 s"
    }
    assert "chunked" not in view["spec"]


async def test_chunking_on_with_speed_is_refused_naming_the_operation(
    db: Database, settings: Settings, blobs: LocalStorage
) -> None:
    service = JobService(db, settings)
    app = create_app(ApiState(db=db, service=service, settings=settings, blobs=blobs))
    async with db.transaction() as conn:
        _, token = await create_tenant(conn, "refused")
    body = {
        "source": {"path": "clip.mp4"},
        "operations": [{"op": "scale", "width": 160}, {"op": "speed", "factor": 2}],
        "chunking": {"mode": "on"},
    }
    async with _client(app, token) as http:
        r = await http.post("/v1/jobs", json=body)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert any(d.get("path") == "operations[1]" for d in error["details"]), error
    assert "speed" in str(error)


class FailingStitch:
    async def execute(self, ctx: ExecutionContext) -> ExecutionResult:
        raise PermanentError("the test stitch fails", code="invalid_input")


async def test_a_rerun_after_a_failed_stitch_reuses_the_finished_chunks(
    db: Database, tenant: TenantRef, chunk_settings: Settings, blobs: LocalStorage, clip: Path
) -> None:
    service = JobService(db, chunk_settings)
    digest = await upload(db, blobs, tenant, clip)
    req = chunked_edit(digest)
    job = (await service.submit(tenant, req)).job
    broken = registry()
    broken.register("stitch", FailingStitch())
    runner, _ = make_runner(db, chunk_settings, blobs, broken)
    async with running(runner):
        failed = await wait_for(service, tenant, job.key, {"succeeded", "failed"}, timeout=240)
    assert failed.status == "failed"
    before = {m.name: m.task for m in (await service.tasks(tenant, job.key))[1]}
    assert before["stitch"].status == "failed"
    again = await service.submit(tenant, req)
    runner, _ = make_runner(db, chunk_settings, blobs, registry())
    async with running(runner):
        done = await wait_for(service, tenant, again.job.key, {"succeeded", "failed"}, timeout=240)
    assert done.status == "succeeded", done.error_message
    after = {m.name: m.task for m in (await service.tasks(tenant, job.key))[1]}
    for name in ("chunk-0000", "chunk-0001", "chunk-0002", "chunk-0003", "audio"):
        assert after[name].attempts == before[name].attempts == 1, name  # not done again
        assert after[name].output == before[name].output
    assert after["stitch"].status == "succeeded"
    assert done.output["frames"] == 175


def _client(app: Any, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://t",
        headers={"Authorization": f"Bearer {token}"},
    )


async def test_a_worker_killed_mid_job_redoes_at_most_its_in_flight_chunk(
    db_url: str, db: Database, tenant: TenantRef, chunk_settings: Settings,
    blobs: LocalStorage, tmp_path: Path,
) -> None:
    from workers.ffmpeg.testmedia import make_clip

    long = make_clip(tmp_path / "long.mp4", seconds=16, size="1280x720", rate=25, ffmpeg=_ffmpeg())
    service = JobService(db, chunk_settings)
    digest = await upload(db, blobs, tenant, long)
    req = EditRequest.model_validate(
        {
            "source": {"digest": digest},
            "operations": [{"op": "scale", "width": 960}],
            "output": {"crf": 20},
            "chunking": {"mode": "on", "chunk_seconds": 2},
        }
    )
    key = (await service.submit(tenant, req)).job.key
    env = {
        **os.environ,
        "VIDJOBS_DATABASE_URL": db_url,
        "VIDJOBS_DATA_DIR": str(chunk_settings.data_dir),
        "VIDJOBS_LEASE_SECONDS": "2",
        "VIDJOBS_HEARTBEAT_SECONDS": "0.5",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "workers.cli", "worker", "--concurrency", "1"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        async with asyncio.timeout(120):
            while True:
                tasks = (await service.tasks(tenant, key))[1]
                done = [m for m in tasks if m.kind == "chunk" and m.task.status == "succeeded"]
                if len(done) >= 2 and any(m.task.status == "running" for m in tasks):
                    break
                await asyncio.sleep(0.05)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(worker.pid, signal.SIGKILL)
    at_kill = {m.name: m.task for m in (await service.tasks(tenant, key))[1]}
    finished = {n for n, t in at_kill.items() if t.status == "succeeded"}
    in_flight = {n for n, t in at_kill.items() if t.status == "running"}
    assert len(in_flight) <= 1  # one worker, concurrency 1
    short = chunk_settings.model_copy(update={"lease_seconds": 2})
    reaper = Reaper(ClaimService(db, short), blobs, temp_max_age=0)
    async with asyncio.timeout(20):
        while not await reaper.tick():
            await asyncio.sleep(0.2)
    runner, _ = make_runner(db, chunk_settings, blobs, registry())
    async with running(runner):
        job = await wait_for(service, tenant, key, {"succeeded", "failed"}, timeout=300)
    assert job.status == "succeeded", job.error_message
    after = {m.name: m.task for m in (await service.tasks(tenant, key))[1]}
    redone = {n for n, t in after.items() if t.attempts > 1}
    assert redone <= in_flight, (redone, in_flight)  # only what was running is done again
    for name in finished:
        assert after[name].attempts == 1 and after[name].output == at_kill[name].output
    assert job.output["frames"] == 400 and job.output["width"] == 960
