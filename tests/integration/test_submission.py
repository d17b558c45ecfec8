"""Submission on SQLite and a real PostgreSQL: one row per key, duplicates answered."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa

from jobs import statements
from jobs.db import Database
from jobs.errors import DuplicateJob, IdempotencyKeyReused, InvalidTransition, SourceNotFound
from jobs.models import Job, OutboxEvent
from jobs.service import JobService, OnDuplicate
from jobs.spec import EditRequest
from jobs.tenants import TenantRef

EDIT = {"source": {"path": "clip.mp4"}, "operations": [{"op": "trim", "start": 1, "end": 2}]}


def edit(**changes: Any) -> EditRequest:
    return EditRequest.model_validate({**EDIT, **changes})


async def count(db: Database, model: Any) -> int:
    async with db.engine.connect() as conn:
        return int(
            (
                await conn.execute(sa.select(sa.func.count()).select_from(model.__table__))
            ).scalar_one()
        )


async def test_fifty_concurrent_identical_submissions_make_one_row(
    db: Database, service: JobService, tenant: TenantRef
) -> None:
    barrier = asyncio.Barrier(50)

    async def one() -> Any:
        req = edit()
        await barrier.wait()
        return await service.submit(tenant, req)

    results = await asyncio.gather(*[one() for _ in range(50)])
    assert sum(r.created for r in results) == 1
    assert len({r.job.key for r in results}) == 1
    assert len({r.job.id for r in results}) == 1
    assert await count(db, Job) == 1
    assert await count(db, OutboxEvent) == 1


async def test_duplicate_returns_existing_or_rejects(
    service: JobService, tenant: TenantRef
) -> None:
    first = await service.submit(tenant, edit())
    again = await service.submit(tenant, edit(priority=5, labels={"x": "y"}))
    assert first.created and again.replayed and again.job.id == first.job.id
    with pytest.raises(DuplicateJob):
        await service.submit(tenant, edit(), on_duplicate=OnDuplicate.REJECT)


async def test_failed_key_runs_again_on_the_same_row(
    db: Database, service: JobService, claims: Any, tenant: TenantRef
) -> None:
    first = await service.submit(tenant, edit())
    [job] = await claims.claim_batch("w", 1)
    await claims.fail(job, code="bad", message="nope", retryable=False)
    again = await service.submit(tenant, edit(max_attempts=5))
    assert again.rerun and not again.created
    assert again.job.id == first.job.id
    assert again.job.status == "pending" and again.job.attempts == 0 and again.job.max_attempts == 5
    assert again.job.error_code is None
    assert await count(db, Job) == 1


async def test_a_succeeded_key_is_answered_and_not_run_again(
    service: JobService, claims: Any, tenant: TenantRef
) -> None:
    first = await service.submit(tenant, edit())
    [job] = await claims.claim_batch("w", 1)
    done = await claims.succeed(job, {"digest": "sha256:" + "5" * 64, "size": 5})
    before = await service.events(tenant, first.job.key)
    for again in (edit(), edit(priority=7)):
        r = await service.submit(tenant, again)
        assert (r.created, r.rerun, r.replayed) == (False, False, True)
        assert (r.job.id, r.job.status, r.job.output) == (done.id, "succeeded", done.output)
    with pytest.raises(DuplicateJob):
        await service.submit(tenant, edit(), on_duplicate=OnDuplicate.REJECT)
    assert await claims.claim_batch("w", 1) == []  # nothing to run
    assert await service.events(tenant, first.job.key) == before  # and nothing written


async def test_idempotency_key_binds_the_first_body(service: JobService, tenant: TenantRef) -> None:
    first = await service.submit(tenant, edit(), idempotency_key="req-1")
    replay = await service.submit(tenant, edit(), idempotency_key="req-1")
    assert first.created and replay.replayed and replay.job.key == first.job.key
    with pytest.raises(IdempotencyKeyReused):
        await service.submit(tenant, edit(operations=[{"op": "mute"}]), idempotency_key="req-1")
    # the same header with the same body, even when asked to reject duplicates, is a replay
    again = await service.submit(
        tenant, edit(), idempotency_key="req-1", on_duplicate=OnDuplicate.REJECT
    )
    assert again.job.key == first.job.key


async def test_rolled_back_submission_leaves_no_job_and_no_outbox_row(
    db: Database, service: JobService, tenant: TenantRef, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jobs import outbox

    async def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError("outbox insert failed")

    monkeypatch.setattr(outbox, "insert_event", broken)
    with pytest.raises(RuntimeError):
        await service.submit(tenant, edit())
    assert await count(db, Job) == 0
    assert await count(db, OutboxEvent) == 0


async def test_tenants_do_not_see_each_others_jobs(
    service: JobService, tenant: TenantRef, other_tenant: TenantRef
) -> None:
    mine = await service.submit(tenant, edit())
    theirs = await service.submit(other_tenant, edit())
    assert mine.job.key != theirs.job.key and theirs.created
    from jobs.errors import JobNotFound

    with pytest.raises(JobNotFound):
        await service.get(other_tenant, mine.job.key)
    with pytest.raises(JobNotFound):
        await service.cancel(other_tenant, mine.job.key)
    page = await service.list_jobs(other_tenant)
    assert [j.key for j in page.jobs] == [theirs.job.key]


async def test_missing_source_is_a_clear_error(service: JobService, tenant: TenantRef) -> None:
    with pytest.raises(SourceNotFound) as info:
        await service.submit(tenant, edit(source={"path": "nope.mp4"}))
    assert info.value.details[0]["path"] == "source"
    with pytest.raises(SourceNotFound):
        await service.submit(tenant, edit(source={"digest": "sha256:" + "0" * 64}))


async def test_symlink_out_of_the_source_root_is_refused(
    service: JobService, tenant: TenantRef, source_root: Any, tmp_path: Any
) -> None:
    secret = tmp_path / "secret.mp4"
    secret.write_bytes(b"secret")
    (source_root / "link.mp4").symlink_to(secret)
    with pytest.raises(SourceNotFound):
        await service.submit(tenant, edit(source={"path": "link.mp4"}))
    with pytest.raises(SourceNotFound):
        await service.submit(tenant, edit(source={"path": str(secret)}))


async def test_list_paginates_with_a_cursor(service: JobService, tenant: TenantRef) -> None:
    keys = []
    for i in range(7):
        r = await service.submit(
            tenant, edit(operations=[{"op": "trim", "start": i, "end": i + 1}])
        )
        keys.append(r.job.key)
    seen: list[str] = []
    cursor = None
    while True:
        page = await service.list_jobs(tenant, limit=3, cursor=cursor)
        seen += [j.key for j in page.jobs]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == list(reversed(keys))


async def test_cancel_and_retry(service: JobService, claims: Any, tenant: TenantRef) -> None:
    r = await service.submit(tenant, edit())
    cancelled = await service.cancel(tenant, r.job.key)
    assert cancelled.status == "cancelled"
    assert (await service.cancel(tenant, r.job.key)).status == "cancelled"  # idempotent
    retried = await service.retry(tenant, r.job.key)
    assert retried.status == "pending"
    with pytest.raises(InvalidTransition):
        await service.retry(tenant, r.job.key)
    [job] = await claims.claim_batch("w", 1)
    requested = await service.cancel(tenant, r.job.key)
    assert requested.status == "running" and requested.cancel_requested
    beat = await claims.heartbeat(job, 0.3)
    assert beat.cancel_requested
    done = await claims.cancel(job)
    assert done.status == "cancelled"


async def test_each_transition_writes_one_outbox_row_in_order(
    db: Database, service: JobService, claims: Any, tenant: TenantRef
) -> None:
    r = await service.submit(tenant, edit(max_attempts=2))
    [job] = await claims.claim_batch("w", 1)
    await claims.fail(job, code="io", message="flaky", retryable=True, delay=0)
    [job] = await claims.claim_batch("w", 1)
    await claims.succeed(job, {"digest": "sha256:" + "1" * 64, "size": 1})
    events = await service.events(tenant, r.job.key)
    assert [e.type for e in events] == [
        "job.submitted",
        "job.claimed",
        "job.retry_scheduled",
        "job.claimed",
        "job.succeeded",
    ]
    assert [e.payload["status"] for e in events] == [
        "pending",
        "running",
        "pending",
        "running",
        "succeeded",
    ]
    assert [e.id for e in events] == sorted(e.id for e in events)
    assert len({e.event_id for e in events}) == 5
    async with db.engine.connect() as conn:
        final = await statements.select_job_by_key(conn, tenant.id, r.job.key)
    assert final is not None and final.status == "succeeded" and final.attempts == 2
