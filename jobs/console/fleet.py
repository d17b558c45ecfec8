"""The fleet page's reads (operators): backlog, throughput, outbox, workers, webhooks.

Everything comes from the database, so the page is right on a fleet without Prometheus.
Each query reads an index: pending and running jobs (their partial indexes), jobs finished
in the last hour (`ix_jobs_finished_at`), unpublished outbox rows (`ix_outbox_unpublished`).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from jobs.db import db_now
from jobs.models import Job, OutboxEvent, Tenant, WebhookDelivery, WebhookEndpoint
from jobs.status import JobStatus

jobs = Job.__table__  # type: ignore[attr-defined]
outbox = OutboxEvent.__table__  # type: ignore[attr-defined]
tenants = Tenant.__table__  # type: ignore[attr-defined]
endpoints = WebhookEndpoint.__table__  # type: ignore[attr-defined]
deliveries = WebhookDelivery.__table__  # type: ignore[attr-defined]
MINUTES = 60


@dataclass(frozen=True)
class Minute:
    """One minute of the last hour: jobs that finished in it."""

    start: dt.datetime
    succeeded: int
    failed: int

    @property
    def failure_rate(self) -> float:
        done = self.succeeded + self.failed
        return self.failed / done if done else 0.0


@dataclass(frozen=True)
class Fleet:
    backlog: list[dict[str, Any]]  # tenant, priority, pending, running
    minutes: list[Minute]
    outbox_backlog: int
    relay_lag_seconds: float | None
    workers: list[dict[str, Any]]  # owner, running, last_heartbeat
    webhooks: list[dict[str, Any]]  # tenant, url, failing_since, failed, retrying

    @property
    def finished_last_hour(self) -> tuple[int, int]:
        return sum(m.succeeded for m in self.minutes), sum(m.failed for m in self.minutes)


def _utc(value: Any) -> dt.datetime:
    if isinstance(value, str):  # SQLite text timestamps
        value = dt.datetime.fromisoformat(value)
    assert isinstance(value, dt.datetime)
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


async def _backlog(conn: AsyncConnection) -> list[dict[str, Any]]:
    live = (JobStatus.PENDING.value, JobStatus.RUNNING.value)
    pending = sa.func.count().filter(jobs.c.status == JobStatus.PENDING.value)
    running = sa.func.count().filter(jobs.c.status == JobStatus.RUNNING.value)
    stmt = (
        sa.select(tenants.c.name, jobs.c.priority, pending, running)
        .select_from(jobs.join(tenants, tenants.c.id == jobs.c.tenant_id))
        .where(jobs.c.status.in_(live))
        .group_by(tenants.c.name, jobs.c.priority)
        .order_by(tenants.c.name, jobs.c.priority.desc())
    )
    return [
        {"tenant": r[0], "priority": r[1], "pending": int(r[2]), "running": int(r[3])}
        for r in await conn.execute(stmt)
    ]


async def _minutes(conn: AsyncConnection, now: dt.datetime) -> list[Minute]:
    stmt = sa.select(jobs.c.finished_at, jobs.c.status).where(
        jobs.c.finished_at.is_not(None), jobs.c.finished_at >= db_now(-MINUTES * 60)
    )
    start = now.replace(second=0, microsecond=0) - dt.timedelta(minutes=MINUTES - 1)
    ok = [0] * MINUTES
    bad = [0] * MINUTES
    for finished, status in await conn.execute(stmt):
        i = int((_utc(finished) - start).total_seconds() // 60)
        if 0 <= i < MINUTES:
            if status == JobStatus.SUCCEEDED.value:
                ok[i] += 1
            elif status == JobStatus.FAILED.value:
                bad[i] += 1
    return [Minute(start + dt.timedelta(minutes=i), ok[i], bad[i]) for i in range(MINUTES)]


async def _outbox(conn: AsyncConnection, now: dt.datetime) -> tuple[int, float | None]:
    stmt = sa.select(sa.func.count(), sa.func.min(outbox.c.created_at)).where(
        outbox.c.published_at.is_(None)
    )
    count, oldest = (await conn.execute(stmt)).one()
    lag = None if oldest is None else max(0.0, (now - _utc(oldest)).total_seconds())
    return int(count), lag


async def _workers(conn: AsyncConnection) -> list[dict[str, Any]]:
    """Lease owners of running jobs; a heartbeat sets `updated_at`, so its max is the last."""
    stmt = (
        sa.select(jobs.c.lease_owner, sa.func.count(), sa.func.max(jobs.c.updated_at))
        .where(jobs.c.status == JobStatus.RUNNING.value, jobs.c.lease_owner.is_not(None))
        .group_by(jobs.c.lease_owner)
        .order_by(jobs.c.lease_owner)
    )
    return [
        {"owner": r[0], "running": int(r[1]), "last_heartbeat": _utc(r[2])}
        for r in await conn.execute(stmt)
    ]


async def _webhooks(conn: AsyncConnection) -> list[dict[str, Any]]:
    failed = sa.func.count(deliveries.c.id).filter(deliveries.c.status == "failed")
    retrying = sa.func.count(deliveries.c.id).filter(
        deliveries.c.status == "pending", deliveries.c.attempts > 0
    )
    stmt = (
        sa.select(tenants.c.name, endpoints.c.url, endpoints.c.enabled,
                  endpoints.c.failing_since, failed, retrying)
        .select_from(
            endpoints.join(tenants, tenants.c.id == endpoints.c.tenant_id).outerjoin(
                deliveries, deliveries.c.endpoint_id == endpoints.c.id
            )
        )
        .group_by(tenants.c.name, endpoints.c.id, endpoints.c.url, endpoints.c.enabled,
                  endpoints.c.failing_since)
        .having(sa.or_(endpoints.c.failing_since.is_not(None), failed > 0, retrying > 0))
        .order_by(tenants.c.name, endpoints.c.url)
        .limit(200)
    )
    return [
        {"tenant": r[0], "url": r[1], "enabled": r[2],
         "failing_since": None if r[3] is None else _utc(r[3]),
         "failed": int(r[4]), "retrying": int(r[5])}
        for r in await conn.execute(stmt)
    ]


async def read_fleet(conn: AsyncConnection) -> Fleet:
    now = _utc((await conn.execute(sa.select(db_now()))).scalar())
    outbox_backlog, lag = await _outbox(conn, now)
    return Fleet(
        backlog=await _backlog(conn),
        minutes=await _minutes(conn, now),
        outbox_backlog=outbox_backlog,
        relay_lag_seconds=lag,
        workers=await _workers(conn),
        webhooks=await _webhooks(conn),
    )
