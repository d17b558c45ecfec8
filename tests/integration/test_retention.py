"""Retention on both stores and both databases: only unreferenced objects are deleted, an
expired output shows it (410 on download) and a duplicate submission runs it again."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from jobs.api import ApiState, create_app
from jobs.claims import ClaimService
from jobs.db import Database
from jobs.models import Blob, Job
from jobs.owners import record_owner
from jobs.service import JobService
from jobs.settings import Settings
from jobs.spec import EditRequest
from jobs.storage import LocalStorage, Storage
from jobs.tenants import TenantRef
from tests.integration.test_pinned_sources import ReadingExecutor
from tests.integration.test_runner import make_runner, running, wait_for
from tests.integration.test_tasks import make_graph, outputs_request, plan
from tests.support.s3 import drop_bucket, new_bucket_storage
from workers.executor import ExecutorRegistry, SleepExecutor
from workers.reaper import Reaper

DAY = 86400


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
async def store(request: pytest.FixtureRequest, settings: Settings) -> AsyncIterator[Storage]:
    if request.param == "local":
        yield LocalStorage(settings.data_dir / "blobs")
        return
    s3 = await new_bucket_storage(settings.data_dir / "tmp")
    yield s3
    await drop_bucket(s3)


def edit(digest: str, i: int) -> EditRequest:
    return EditRequest.model_validate(
        {"source": {"digest": digest}, "operations": [{"op": "trim", "start": i, "end": i + 1}]}
    )


async def upload(db: Database, store: Storage, tenant: TenantRef, data: bytes, tmp: Any) -> str:
    path = tmp / f"u-{os.urandom(4).hex()}"
    path.write_bytes(data)
    digest, size = await store.put_file(path)
    async with db.transaction() as conn:
        await conn.execute(
            sa.insert(Blob.__table__).values(digest=digest, size=size, media_type="video/mp4")  # type: ignore[attr-defined]
        )
        await record_owner(conn, tenant.id, digest)
    return digest


async def age(db: Database, *, job_key: str | None = None, digest: str | None = None, days: float) -> None:
    """Move a job's finish (or an upload) into the past (by the database's clock)."""
    from jobs.db import db_now

    jobs, blobs = Job.__table__, Blob.__table__  # type: ignore[attr-defined]
    async with db.transaction() as conn:
        if job_key is not None:
            await conn.execute(
                sa.update(jobs).where(jobs.c.key == job_key).values(finished_at=db_now(-days * DAY))
            )
        if digest is not None:
            await conn.execute(
                sa.update(blobs).where(blobs.c.digest == digest).values(created_at=db_now(-days * DAY))
            )


async def test_retention_deletes_only_unreferenced_objects_and_an_expired_key_runs_again(
    db: Database, service: JobService, tenant: TenantRef, settings: Settings, store: Storage, tmp_path: Any,
) -> None:
    settings = settings.model_copy(update={"output_retention_days": 1, "upload_retention_hours": 1})
    service = JobService(db, settings)
    shared = await upload(db, store, tenant, b"shared source " * 500, tmp_path)
    lonely = await upload(db, store, tenant, b"lonely source " * 500, tmp_path)
    executor = ReadingExecutor()  # output = the input's bytes
    runner, _ = make_runner(db, settings, store, executor)  # type: ignore[arg-type]
    keys = []
    async with running(runner):
        for digest, i in ((shared, 0), (shared, 1), (lonely, 0)):
            key = (await service.submit(tenant, edit(digest, i))).job.key
            keys.append(key)
            assert (await wait_for(service, tenant, key, {"succeeded"})).status == "succeeded"
    old_shared, new_shared, old_lonely = keys
    # Two jobs made the same output bytes (= `shared`); only one of them is old.
    for key in (old_shared, old_lonely):
        await age(db, job_key=key, days=2)
    for digest in (shared, lonely):
        await age(db, digest=digest, days=1)
    reaper = Reaper(ClaimService(db, settings), store, prune_interval=0)
    await reaper.expire()
    expired = {k: (await service.get(tenant, k)).output for k in keys}
    assert expired[old_shared]["expired"] is True and expired[old_lonely]["expired"] is True
    assert "expired" not in expired[new_shared]
    # `shared` is still the output (and input) of a live job: kept. `lonely` is nobody's.
    assert await store.exists(shared)
    assert not await store.exists(lonely)
    assert reaper.deleted == 1
    from jobs.errors import SourceNotFound

    with pytest.raises(SourceNotFound):  # forgotten: like an unknown digest
        await service.submit(tenant, edit(lonely, 5))
    # The download of an expired output is a 410; the key is shown expired.
    app = create_app(ApiState(db=db, service=service, settings=settings, blobs=store))
    async with db.transaction() as conn:
        from jobs.tenants import issue_token

        token = await issue_token(conn, tenant.id)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        h = {"Authorization": f"Bearer {token}"}
        gone = await http.get(f"/v1/jobs/{old_shared}/output", headers=h)
        assert gone.status_code == 410 and gone.json()["error"]["code"] == "output_expired"
        shown = await http.get(f"/v1/jobs/{old_shared}", headers=h)
        assert shown.json()["output"]["expired"] is True
        # A duplicate submission of the expired key runs it again, on the same row.
        again = await http.post(
            "/v1/jobs", json={"source": {"digest": shared}, "operations": [{"op": "trim", "start": 0, "end": 1}]},
            headers=h,
        )
        assert again.status_code == 201 and again.json()["key"] == old_shared
        runner, _ = make_runner(db, settings, store, executor)  # type: ignore[arg-type]
        async with running(runner):
            rerun = await wait_for(service, tenant, old_shared, {"succeeded", "failed"})
        assert rerun.status == "succeeded" and not rerun.output.get("expired")
        ok = await http.get(f"/v1/jobs/{old_shared}/output", params={"redirect": "false"}, headers=h)
        assert ok.status_code == 200 and ok.content == b"shared source " * 500
        # A fresh (unexpired) succeeded key is still a duplicate, not a re-run.
        dup = await http.post(
            "/v1/jobs", json={"source": {"digest": shared}, "operations": [{"op": "trim", "start": 1, "end": 2}]},
            headers=h,
        )
        assert dup.status_code == 200 and dup.headers["Idempotent-Replayed"] == "true"
    async with db.reader.connect() as conn:
        rows = (await conn.execute(sa.select(Job.__table__.c.key).where(Job.__table__.c.key == old_shared))).all()  # type: ignore[attr-defined]
    assert len(rows) == 1


async def test_retention_keeps_young_uploads_and_inputs_of_pending_jobs(
    db: Database, service: JobService, tenant: TenantRef, settings: Settings, store: Storage, tmp_path: Any,
) -> None:
    settings = settings.model_copy(update={"upload_retention_hours": 1})
    service = JobService(db, settings)
    young = await upload(db, store, tenant, b"young" * 100, tmp_path)
    queued = await upload(db, store, tenant, b"queued" * 100, tmp_path)
    old = await upload(db, store, tenant, b"old" * 100, tmp_path)
    await service.submit(tenant, edit(queued, 0))  # pending: its input is referenced
    await age(db, digest=queued, days=1)
    await age(db, digest=old, days=1)
    reaper = Reaper(ClaimService(db, settings), store, prune_interval=0)
    assert await reaper.expire() == 1
    assert await store.exists(young) and await store.exists(queued)
    assert not await store.exists(old)


async def test_direct_uploads_never_completed_are_removed_after_their_url_expired(
    db: Database, settings: Settings, store: Storage, tenant: TenantRef, tmp_path: Any,
) -> None:
    from jobs import uploads

    path = tmp_path / "staged"
    path.write_bytes(b"half an upload")
    await store.stage("a" * 32, path)
    async with db.transaction() as conn:
        await uploads.insert_upload(
            conn, upload_id="a" * 32, tenant_id=tenant.id, size=14, media_type="video/mp4",
            multipart_id=None, expires_in=-1,
        )
    reaper = Reaper(ClaimService(db, settings), store, prune_interval=0)
    await reaper.expire()
    with pytest.raises(Exception, match="no bytes"):
        await store.fetch_staged("a" * 32, tmp_path / "back", None)
    async with db.reader.connect() as conn:
        assert (await conn.execute(sa.text("SELECT count(*) FROM uploads"))).scalar() == 0


async def test_a_job_of_several_tasks_expires_with_its_files_but_keeps_what_a_live_job_uses(
    db: Database, service: JobService, tenant: TenantRef, settings: Settings, store: Storage,
) -> None:
    settings = settings.model_copy(update={"output_retention_days": 1})
    service = JobService(db, settings)
    executor = SleepExecutor(0.01)
    runner, wakeup = make_runner(db, settings, store, ExecutorRegistry(executor), concurrency=4)  # type: ignore[arg-type]
    service.after_commit = lambda events: wakeup.notify()
    async with running(runner):
        old = (await service.submit(tenant, outputs_request("a", "b"))).job
        done = await wait_for(service, tenant, old.key, {"succeeded", "failed"})
        young = (await service.submit(tenant, outputs_request("a", "c"))).job  # reuses "a"
        kept = await wait_for(service, tenant, young.key, {"succeeded", "failed"})
    assert done.status == kept.status == "succeeded"
    files = {name: out["digest"] for name, out in done.output["outputs"].items()}
    _, members = await service.tasks(tenant, old.key)
    for key in [old.key, *(m.task.key for m in members)]:
        await age(db, job_key=key, days=2)  # the old job and its tasks; the young one is new
    reaper = Reaper(ClaimService(db, settings), store, prune_interval=0)
    await reaper.expire()
    assert (await service.get(tenant, old.key)).output["expired"] is True
    assert "expired" not in (await service.get(tenant, young.key)).output
    assert not await store.exists(files["b"])  # nobody's any more
    assert await store.exists(files["a"])  # also the young job's output "a"
    app = create_app(ApiState(db=db, service=service, settings=settings, blobs=store))
    async with db.transaction() as conn:
        from jobs.tenants import issue_token

        token = await issue_token(conn, tenant.id)
    h = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:
        gone = await http.get(f"/v1/jobs/{old.key}/outputs/b", headers=h)
        assert gone.status_code == 410 and gone.json()["error"]["code"] == "output_expired"
        live = await http.get(f"/v1/jobs/{young.key}/outputs/a", params={"redirect": "false"}, headers=h)
        assert live.status_code == 200
    # The same edit again runs the expired job again, on the same row, and makes its files.
    runner, wakeup = make_runner(db, settings, store, ExecutorRegistry(executor), concurrency=4)  # type: ignore[arg-type]
    service.after_commit = lambda events: wakeup.notify()
    async with running(runner):
        again = await service.submit(tenant, outputs_request("a", "b"))
        assert again.job.key == old.key and not again.replayed
        rerun = await wait_for(service, tenant, old.key, {"succeeded", "failed"})
    assert rerun.status == "succeeded" and not rerun.output.get("expired")
    assert await store.exists(rerun.output["outputs"]["b"]["digest"])


async def test_a_task_that_a_waiting_job_still_needs_does_not_expire(
    db: Database, tenant: TenantRef, settings: Settings, store: Storage,
) -> None:
    settings = settings.model_copy(update={"output_retention_days": 1})
    job, tasks = await make_graph(db, tenant, "retained", [plan("x"), plan("y", "x")])
    path = settings.data_dir / "x.bin"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"made by x")
    digest, size = await store.put_file(path)
    jobs_t = Job.__table__  # type: ignore[attr-defined]
    async with db.transaction() as conn:  # x succeeded long ago; y and the job still wait
        await conn.execute(
            sa.update(jobs_t).where(jobs_t.c.id == tasks["x"].id)
            .values(status="succeeded", output={"digest": digest, "size": size})
        )  # fmt: skip
    await age(db, job_key=tasks["x"].key, days=2)
    reaper = Reaper(ClaimService(db, settings), store, prune_interval=0)
    await reaper.expire()
    async with db.reader.connect() as conn:
        row = (await conn.execute(sa.select(jobs_t.c.output).where(jobs_t.c.id == tasks["x"].id))).one()
    assert "expired" not in row[0] and await store.exists(digest)
    async with db.transaction() as conn:  # y ends: nothing waits for x any more
        await conn.execute(sa.update(jobs_t).where(jobs_t.c.id.in_([tasks["y"].id, job.id])).values(status="cancelled"))
    await reaper.expire()
    async with db.reader.connect() as conn:
        row = (await conn.execute(sa.select(jobs_t.c.output).where(jobs_t.c.id == tasks["x"].id))).one()
    assert row[0]["expired"] is True and not await store.exists(digest)
