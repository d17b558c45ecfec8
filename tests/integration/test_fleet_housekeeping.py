"""Fleet additions on SQLite and PostgreSQL: the reaper's due-retry events and pruning,
GET /v1/usage, and the Prometheus metrics of the API."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import AsyncIterator

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from jobs import outbox, statements
from jobs.api import ApiState, create_app
from jobs.claims import ClaimService
from jobs.db import Database, db_now
from jobs.service import JobService
from jobs.settings import Settings
from jobs.spec import EditRequest
from jobs.status import EventType
from jobs.storage import LocalStorage
from jobs.tenants import TenantRef, create_tenant
from jobs.usage import add_usage
from workers.reaper import Reaper

EDIT = {"source": {"path": "clip.mp4"}, "operations": [{"op": "trim", "start": 1, "end": 2}]}
LONG_AGO = db_now(-3 * 365 * 86400.0)  # SQL: the database clock, three years back


async def job_events(db: Database, tenant: TenantRef, key: str) -> list[str]:
    async with db.engine.connect() as conn:
        job = await statements.select_job_by_key(conn, tenant.id, key)
        assert job is not None and job.id is not None
        return [e.type for e in await outbox.select_job_events(conn, job.id)]


async def failed_once(
    service: JobService, claims: ClaimService, tenant: TenantRef, delay: float
) -> str:
    key = (await service.submit(tenant, EditRequest.model_validate(EDIT))).job.key
    (job,) = await claims.claim_batch("w1", 1)
    await claims.fail(job, code="transient", message="try again", retryable=True, delay=delay)
    return key


async def test_a_due_retry_is_announced_with_one_requeued_event(
    db: Database, service: JobService, claims: ClaimService, tenant: TenantRef
) -> None:
    key = await failed_once(service, claims, tenant, delay=0)
    reaper = Reaper(claims)
    assert await reaper.announce_due_retries() == 1
    assert await reaper.announce_due_retries() == 0  # once, not every pass
    assert (await job_events(db, tenant, key))[-2:] == [
        EventType.RETRY_SCHEDULED,
        EventType.REQUEUED,
    ]
    (job,) = await claims.claim_batch("w2", 1)  # still claimable as before
    assert job.key == key


async def test_a_retry_still_backing_off_is_not_announced(
    db: Database, service: JobService, claims: ClaimService, tenant: TenantRef
) -> None:
    key = await failed_once(service, claims, tenant, delay=3600)
    assert await Reaper(claims).announce_due_retries() == 0
    assert (await job_events(db, tenant, key))[-1] == EventType.RETRY_SCHEDULED


async def test_pruning_removes_only_old_processed_ids_and_old_published_rows(
    db: Database, service: JobService, claims: ClaimService, tenant: TenantRef
) -> None:
    for i in range(5):
        req = EditRequest.model_validate({**EDIT, "operations": [{"op": "trim", "start": i}]})
        await service.submit(tenant, req)
    async with db.transaction() as conn:
        rows = await outbox.select_unpublished(conn, 100)
        await outbox.mark_published(conn, [r.id for r in rows[:3] if r.id])  # 2 stay unpublished
        await conn.execute(
            sa.update(outbox.outbox)
            .values(published_at=LONG_AGO)
            .where(outbox.outbox.c.published_at.is_not(None), outbox.outbox.c.id != rows[2].id)
        )
        for i in range(4):
            await outbox.record_processed_if_new(conn, "ledger", f"event-{i}")
        await conn.execute(
            sa.update(outbox.processed)
            .values(processed_at=LONG_AGO)
            .where(outbox.processed.c.event_id.in_(["event-0", "event-1"]))
        )
    settings = claims.settings.model_copy(update={"prune_batch": 1})  # several small batches
    reaper = Reaper(ClaimService(db, settings))
    assert await reaper.prune() == 2 + 2
    async with db.engine.connect() as conn:
        left = (await conn.execute(sa.select(outbox.outbox.c.id))).scalars().all()
        kept = (await conn.execute(sa.select(outbox.processed.c.event_id))).scalars().all()
    assert sorted(left) == sorted(r.id for r in rows[2:])  # recent and unpublished stay
    assert sorted(kept) == ["event-2", "event-3"]


# --- HTTP: usage and metrics ----------------------------------------------------------------


@pytest.fixture
def app(db: Database, service: JobService, settings: Settings) -> FastAPI:
    blobs = LocalStorage(settings.data_dir / "blobs")
    return create_app(ApiState(db=db, service=service, settings=settings, blobs=blobs))


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        yield client


async def test_usage_shows_the_callers_totals_and_days_only(
    db: Database, http: httpx.AsyncClient
) -> None:
    async with db.transaction() as conn:
        acme, acme_token = await create_tenant(conn, "acme2")
        globex, globex_token = await create_tenant(conn, "globex2")
    today = (await db.now()).date()
    async with db.transaction() as conn:
        await add_usage(conn, acme.id, today, 1500)
        await add_usage(conn, acme.id, today, 2500)
        await add_usage(conn, acme.id, today - dt.timedelta(days=400), 1000)
        await add_usage(conn, globex.id, today, 7000)
    got = await http.get("/v1/usage", headers={"Authorization": f"Bearer {acme_token}"})
    assert got.status_code == 200, got.text
    body = got.json()
    assert body["totals"] == {"jobs": 3, "media_seconds": 5.0}
    assert body["days"] == [{"day": today.isoformat(), "jobs": 2, "media_seconds": 4.0}]
    other = await http.get("/v1/usage", headers={"Authorization": f"Bearer {globex_token}"})
    assert other.json()["totals"] == {"jobs": 1, "media_seconds": 7.0}
    assert (await http.get("/v1/usage")).status_code == 401


def counter(text: str, result: str) -> float:
    match = re.search(rf'^vidjobs_submissions_total{{result="{result}"}} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


async def test_metrics_count_submissions_and_duplicates(
    db: Database, http: httpx.AsyncClient
) -> None:
    async with db.transaction() as conn:
        _, token = await create_tenant(conn, "metered")
    headers = {"Authorization": f"Bearer {token}"}
    before = (await http.get("/metrics")).text
    assert (await http.post("/v1/jobs", json=EDIT, headers=headers)).status_code == 201
    assert (await http.post("/v1/jobs", json=EDIT, headers=headers)).status_code == 200
    reject = await http.post(
        "/v1/jobs", json=EDIT, headers=headers, params={"on_duplicate": "reject"}
    )
    assert reject.status_code == 409
    after = await http.get("/metrics")
    assert after.headers["content-type"].startswith("text/plain")
    for result in ("created", "duplicate", "rejected"):
        assert counter(after.text, result) == counter(before, result) + 1, result


async def test_metrics_behind_a_token_or_off(db: Database, service: JobService, settings: Settings) -> None:
    blobs = LocalStorage(settings.data_dir / "blobs")
    guarded = settings.model_copy(update={"metrics_token": "s3cret-metrics-token"})
    off = settings.model_copy(update={"api_metrics": False})
    for s, anonymous, with_token in ((guarded, 401, 200), (off, 404, 404)):
        app = create_app(ApiState(db=db, service=service, settings=s, blobs=blobs))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
            assert (await http.get("/metrics")).status_code == anonymous
            wrong = await http.get("/metrics", headers={"Authorization": "Bearer nope-nope-nope-nope"})
            assert wrong.status_code == anonymous
            good = await http.get("/metrics", headers={"Authorization": "Bearer s3cret-metrics-token"})
            assert good.status_code == with_token
            if with_token == 200:
                assert "vidjobs_submissions_total" in good.text
