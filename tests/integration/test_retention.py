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
from tests.support.s3 import drop_bucket, new_bucket_storage
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
