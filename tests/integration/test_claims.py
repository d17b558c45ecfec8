"""Claims, leases and fencing on SQLite and a real PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

import pytest

from jobs import fenced, statements
from jobs.claims import ClaimService
from jobs.db import Database
from jobs.errors import LostFence
from jobs.service import JobService
from jobs.settings import Settings
from jobs.spec import EditRequest
from jobs.tenants import TenantRef


async def submit_many(service: JobService, tenant: TenantRef, n: int) -> list[str]:
    keys = []
    for i in range(n):
        req = EditRequest.model_validate(
            {
                "source": {"path": "clip.mp4"},
                "operations": [{"op": "trim", "start": i, "end": i + 1}],
            }
        )
        keys.append((await service.submit(tenant, req)).job.key)
    return keys


def with_lease(settings: Settings, seconds: float) -> Settings:
    return settings.model_copy(update={"lease_seconds": seconds})


async def test_eight_concurrent_claimers_take_each_job_once(
    db_url: str, service: JobService, tenant: TenantRef, settings: Settings
) -> None:
    keys = await submit_many(service, tenant, 200)
    claimed: list[tuple[int, int, str]] = []
    barrier = asyncio.Barrier(8)

    async def claimer(n: int) -> None:
        own = Database(db_url)  # a separate pool, as a separate worker process would have
        try:
            await own.ping()  # connected before the race starts
            await barrier.wait()
            svc = ClaimService(own, settings)
            while batch := await svc.claim_batch(f"w{n}", 5):
                claimed.extend((j.id or 0, j.fencing_token, f"w{n}") for j in batch)
                await asyncio.sleep(0.001)  # "work" on the batch
        finally:
            await own.dispose()

    await asyncio.gather(*[claimer(n) for n in range(8)])
    ids = [c[0] for c in claimed]
    assert len(ids) == len(keys) == 200
    assert len(set(ids)) == 200, "a job was claimed twice"
    assert {c[1] for c in claimed} == {1}
    assert len({c[2] for c in claimed}) > 1, "only one claimer ever won: no real contention"


async def test_a_batch_claim_takes_no_more_than_its_limit(
    db: Database, service: JobService, tenant: TenantRef, settings: Settings
) -> None:
    """The claim's locking subquery is evaluated once: a planner that rescans it (a semi-join
    over a re-run SKIP LOCKED subquery) would claim more rows than asked for."""
    await submit_many(service, tenant, 20)
    svc = ClaimService(db, settings)
    for limit in (4, 1, 7):
        assert len(await svc.claim_batch("w", limit)) == limit
    async with db.transaction() as conn:
        running = await statements.count_in_flight(conn, tenant.id)
    assert running == 20  # pending + running: nothing lost
    assert len(await svc.claim_batch("w", 100)) == 8


async def test_claim_by_key_has_one_winner(
    db_url: str, service: JobService, tenant: TenantRef, settings: Settings
) -> None:
    [key] = await submit_many(service, tenant, 1)
    dbs = [Database(db_url) for _ in range(6)]
    try:
        barrier = asyncio.Barrier(len(dbs))

        async def attempt(i: int) -> Any:
            await barrier.wait()
            return await ClaimService(dbs[i], settings).claim_by_key(tenant.id, key, f"w{i}")

        results = await asyncio.gather(*[attempt(i) for i in range(len(dbs))])
    finally:
        for d in dbs:
            await d.dispose()
    assert sum(r is not None for r in results) == 1


async def test_zombie_worker_cannot_heartbeat_or_finish(
    db: Database, service: JobService, tenant: TenantRef, settings: Settings
) -> None:
    [key] = await submit_many(service, tenant, 1)
    a = ClaimService(db, with_lease(settings, 0.2))
    b = ClaimService(db, settings)
    [zombie] = await a.claim_batch("A", 1)
    await asyncio.sleep(0.4)
    rescued = await b.rescue_expired()
    assert [j.key for j in rescued] == [key]
    [fresh] = await b.claim_batch("B", 1)
    assert fresh.fencing_token == zombie.fencing_token + 1
    with pytest.raises(LostFence):
        await a.heartbeat(zombie, 0.9)
    with pytest.raises(LostFence):
        await a.succeed(zombie, {"digest": "sha256:" + "a" * 64})
    with pytest.raises(LostFence):
        await a.fail(zombie, code="x", message="y", retryable=False)
    with pytest.raises(LostFence):
        await a.cancel(zombie)
    with pytest.raises(LostFence):
        await a.release(zombie)
    beat = await b.heartbeat(fresh, 0.5)  # the holder is untouched by all of that
    assert (beat.job.status, beat.job.lease_owner, beat.job.attempts) == ("running", "B", 2)
    done = await b.succeed(fresh, {"digest": "sha256:" + "b" * 64})
    assert done.status == "succeeded"
    assert done.output == {"digest": "sha256:" + "b" * 64}
    assert done.progress == 1.0


async def test_rescue_does_not_undo_a_finish_between_its_read_and_write(
    db: Database, service: JobService, tenant: TenantRef, settings: Settings
) -> None:
    await submit_many(service, tenant, 1)
    worker = ClaimService(db, with_lease(settings, 0.2))
    [job] = await worker.claim_batch("A", 1)
    await asyncio.sleep(0.4)
    async with db.transaction() as conn:  # the rescuer reads...
        expired = await fenced.select_expired_leases(conn, 10)
    assert expired == [(job.id, job.fencing_token)]
    await worker.succeed(job, {"digest": "sha256:" + "c" * 64})  # ...the worker finishes...
    async with db.transaction() as conn:  # ...and the rescuer writes
        assert await fenced.rescue_if_expired(conn, *expired[0]) is None
    async with db.engine.connect() as conn:
        final = await statements.select_job_by_key(conn, tenant.id, job.key)
    assert final is not None and final.status == "succeeded"


def lease_left(job: Any, db_now: dt.datetime) -> float:
    """Seconds from the database's now to the job's lease expiry."""
    assert job.lease_expires_at is not None
    return float((job.lease_expires_at - db_now).total_seconds())


async def test_lease_expiry_uses_the_database_clock(
    db: Database,
    service: JobService,
    tenant: TenantRef,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A worker whose clock runs ten minutes fast cannot take an unexpired lease, and the
    leases it takes and renews end one lease after the database's now, not its own."""
    taken, by_key, _ = await submit_many(service, tenant, 3)
    owner = ClaimService(db, settings)  # lease of 30 s
    [held] = await owner.claim_batch("A", 1)
    assert held.key == taken

    # Worker B's clock runs ten minutes fast: every Python-side clock says so. The real
    # functions are bound before the patch, so the fakes cannot call themselves.
    skew = dt.timedelta(minutes=10)
    real_time, real_datetime = time.time, dt.datetime

    class FastDatetime(real_datetime):  # type: ignore[misc,valid-type]
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return real_datetime.now(tz) + skew

        @classmethod
        def utcnow(cls) -> Any:
            return real_datetime.now(dt.UTC).replace(tzinfo=None) + skew

    monkeypatch.setattr(time, "time", lambda: real_time() + skew.total_seconds())
    monkeypatch.setattr(dt, "datetime", FastDatetime)
    assert time.time() - real_time() > 590
    assert (dt.datetime.now(dt.UTC) - real_datetime.now(dt.UTC)).total_seconds() > 590

    fast = ClaimService(db, settings)
    assert await fast.rescue_expired() == []  # A's lease has not run out by the database
    assert await fast.claim_by_key(tenant.id, taken, "B") is None
    mine = await fast.claim_by_key(tenant.id, by_key, "B")
    assert mine is not None
    [swept] = await fast.claim_batch("B", 10)
    beat = await fast.heartbeat(mine, 0.5)
    monkeypatch.undo()  # Database.now checks its result with isinstance(dt.datetime)
    now = await db.now()
    for job in (mine, swept, beat.job):
        left = lease_left(job, now)
        assert settings.lease_seconds - 5 < left <= settings.lease_seconds + 0.5, (
            f"{job.key}: lease ends {left:.1f} s after the database's now, "
            f"not {settings.lease_seconds} s"
        )
    assert (await owner.heartbeat(held, 0.5)).job.lease_owner == "A"


async def test_retryable_failure_backs_off_then_fails_when_attempts_run_out(
    db: Database, service: JobService, tenant: TenantRef, settings: Settings
) -> None:
    req = EditRequest.model_validate({"source": {"path": "clip.mp4"}, "max_attempts": 2})
    await service.submit(tenant, req)
    claims = ClaimService(db, settings)
    [job] = await claims.claim_batch("w", 1)
    later = await claims.fail(job, code="io", message="disk hiccup", retryable=True, delay=60)
    assert later.status == "pending" and later.attempts == 1
    assert later.run_after is not None and job.started_at is not None
    assert (later.run_after - job.started_at).total_seconds() > 50
    assert await claims.claim_batch("w", 1) == []  # not due yet
    async with db.transaction() as conn:  # make it due now
        await conn.execute(
            statements.jobs.update()
            .where(statements.c.id == job.id)
            .values(run_after=statements.db_now())
        )
    [job] = await claims.claim_batch("w", 1)
    assert job.attempts == 2
    final = await claims.fail(job, code="io", message="again", retryable=True)
    assert final.status == "failed" and final.error_code == "io"


async def test_expired_lease_with_no_attempts_left_fails(
    db: Database, service: JobService, tenant: TenantRef, settings: Settings
) -> None:
    req = EditRequest.model_validate({"source": {"path": "clip.mp4"}, "max_attempts": 1})
    await service.submit(tenant, req)
    short = ClaimService(db, with_lease(settings, 0.1))
    await short.claim_batch("w", 1)
    await asyncio.sleep(0.3)
    [rescued] = await short.rescue_expired()
    assert rescued.status == "failed" and rescued.error_code == "lease_expired"


async def test_release_returns_the_job_without_counting_the_attempt(
    db: Database, service: JobService, tenant: TenantRef, settings: Settings
) -> None:
    await submit_many(service, tenant, 1)
    claims = ClaimService(db, settings)
    [job] = await claims.claim_batch("w", 1)
    released = await claims.release(job)
    assert released.status == "pending" and released.attempts == 0
    [again] = await claims.claim_batch("w2", 1)
    assert again.fencing_token == job.fencing_token + 1


async def test_priority_orders_the_claims(
    db: Database, service: JobService, tenant: TenantRef, settings: Settings
) -> None:
    for i, prio in enumerate([0, 10, -5, 10]):
        req = EditRequest.model_validate(
            {
                "source": {"path": "clip.mp4"},
                "operations": [{"op": "trim", "start": i, "end": i + 1}],
                "priority": prio,
            }
        )
        await service.submit(tenant, req)
    claims = ClaimService(db, settings)
    order = [j.priority for _ in range(4) for j in await claims.claim_batch("w", 1)]
    assert order == [10, 10, 0, -5]


async def test_every_outcome_kind_is_recorded_fenced_in_one_statement_with_the_claim(
    db: Database, service: JobService, tenant: TenantRef, settings: Settings
) -> None:
    """All five outcome kinds, each with a zombie twin (a stale token), recorded with the
    claim of successors in one statement: the fenced ones change their jobs and write their
    outbox rows; a zombie's queued outcome changes nothing; what the statement hands back is
    what it stored."""
    import sqlalchemy as sa

    from jobs import outbox, outcomes

    await submit_many(service, tenant, 13)
    await service.submit(
        tenant,
        EditRequest.model_validate(
            {
                "source": {"path": "clip.mp4"},
                "operations": [{"op": "fps", "fps": 10}],
                "max_attempts": 1,
            }
        ),
    )
    claims = ClaimService(db, settings)
    held = await claims.claim_batch("w", 14)
    assert len(held) == 14
    last_try = next(j for j in held if j.max_attempts == 1)
    live = [j for j in held if j is not last_try][:5]
    zombies = [j for j in held if j is not last_try][5:10]
    ended = [
        outcomes.succeeded(live[0], {"n": 0}),
        outcomes.failed(live[1], "io", "disk hiccup", retryable=True, delay=60),
        outcomes.failed(last_try, "io", "again", retryable=True, delay=60),
        outcomes.failed(live[2], "invalid_input", "cannot decode", retryable=False),
        outcomes.cancelled(live[3]),
        outcomes.released(live[4]),
    ]
    stale = [z.model_copy(update={"fencing_token": z.fencing_token - 1}) for z in zombies]
    ended += [
        outcomes.succeeded(stale[0], {"n": 9}),
        outcomes.failed(stale[1], "io", "x", retryable=True),
        outcomes.failed(stale[2], "bad", "y", retryable=False),
        outcomes.cancelled(stale[3]),
        outcomes.released(stale[4]),
    ]
    more = (await submit_many(service, tenant, 17))[13:]  # four new jobs: three get claimed
    async with db.single_statement() as conn:
        recorded, claimed = await fenced.record_outcomes_and_claim_due(
            conn, ended, "w", settings.lease_seconds, 3
        )
    by_id = {j.id: j for j, _ in recorded}
    assert set(by_id) == {o.job.id for o in ended[:6]}, "a zombie's outcome changed a job"
    assert [by_id[o.job.id].status for o in ended[:6]] == [
        "succeeded",
        "pending",
        "failed",
        "failed",
        "cancelled",
        "pending",
    ]
    assert [e.type for _, e in recorded] == [
        "job.succeeded",
        "job.retry_scheduled",
        "job.failed",
        "job.failed",
        "job.cancelled",
        "job.requeued",
    ]
    assert by_id[live[0].id].output == {"n": 0} and by_id[live[0].id].progress == 1.0
    assert by_id[live[4].id].attempts == live[4].attempts - 1  # a release is not an attempt
    assert by_id[live[1].id].error_code == "io" and by_id[live[2].id].finished_at is not None
    assert len(claimed) == 3 and all(j.key in more for j, _ in claimed)
    assert all(j.status == "running" and j.lease_owner == "w" for j, _ in claimed)
    async with db.engine.connect() as conn:
        for zombie in zombies:  # untouched: still running under the live token
            stored = await statements.select_job_by_key(conn, tenant.id, zombie.key)
            assert stored is not None and stored.model_dump() == zombie.model_dump()
        # What the statement handed back is what it stored: jobs and events, field by field.
        for job, event in [*recorded, *claimed]:
            stored = await statements.select_job_by_key(conn, tenant.id, job.key)
            assert stored is not None and stored.model_dump() == job.model_dump()
            row = (
                await conn.execute(
                    sa.select(outbox.outbox).where(outbox.outbox.c.event_id == event.event_id)
                )
            ).one()
            assert (row.id, row.job_id, row.type, row.payload) == (
                event.id,
                job.id,
                event.type,
                event.payload,
            )
            assert row.created_at == event.created_at
        zombie_ids = {z.id for z in zombies}
        rows = (await conn.execute(sa.select(outbox.outbox.c.job_id, outbox.outbox.c.type))).all()
    assert {r.type for r in rows if r.job_id in zombie_ids} == {"job.submitted", "job.claimed"}


async def test_claim_by_key_records_the_event_id_and_skips_it_when_seen_again(
    db: Database, service: JobService, tenant: TenantRef, settings: Settings
) -> None:
    """A consumer that claims by key (`ClaimService.claim_by_key` with an event id) records
    the id in the claim's transaction, and an id seen before claims nothing, even once the
    job is pending and due again."""
    import sqlalchemy as sa

    from jobs.outbox import processed

    [key] = await submit_many(service, tenant, 1)
    claims = ClaimService(db, settings)
    job = await claims.claim_by_key(tenant.id, key, "w1", consumer="c", event_id="e-1")
    assert job is not None and job.status == "running"
    async with db.engine.connect() as conn:
        seen = (await conn.execute(sa.select(processed.c.event_id))).scalars().all()
    assert seen == ["e-1"]
    await claims.release(job)  # pending and due again
    assert await claims.claim_by_key(tenant.id, key, "w2", consumer="c", event_id="e-1") is None
    again = await claims.claim_by_key(tenant.id, key, "w2", consumer="c", event_id="e-2")
    assert again is not None and again.fencing_token == job.fencing_token + 1
