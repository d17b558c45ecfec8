"""Outbox and consumer-dedup statements.

The outbox is insert-only apart from its published marker. The relay reads unpublished
rows in id order every time (no high-water mark: transactions commit out of id order).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from jobs.db import db_now, insert_on_conflict
from jobs.models import Job, OutboxEvent, ProcessedEvent, from_row
from jobs.status import EventType

outbox = OutboxEvent.__table__  # type: ignore[attr-defined]
processed = ProcessedEvent.__table__  # type: ignore[attr-defined]


@dataclass(slots=True, eq=False)
class CommittedEvent:
    """An outbox row that one of the worker's one-statement changes just wrote, as the
    writer knows it without reading it back: its ids from the statement, everything else
    from the job row the same statement changed (the SQL built the row from those very
    columns). Reads like an `OutboxEvent`; the payload is built only if someone asks."""

    id: int
    event_id: str
    type: str
    job: Job
    extra: dict[str, Any]

    @property
    def tenant_id(self) -> str:
        return self.job.tenant_id

    @property
    def job_id(self) -> int:
        return self.job.id or 0

    @property
    def job_key(self) -> str:
        return self.job.key

    @property
    def payload(self) -> dict[str, Any]:
        return event_payload(self.job, **self.extra)

    @property
    def created_at(self) -> dt.datetime | None:
        return self.job.updated_at  # both are the statement's timestamp

    @property
    def published_at(self) -> dt.datetime | None:
        return None


# What a transaction's after-commit hook is handed: the events it wrote.
Event = OutboxEvent | CommittedEvent


# What every event says about its job, enough for a consumer to act without a read: each
# payload key and the job column it holds (written once, for `event_payload` and the SQL
# of `insert_events_from_sql`).
PAYLOAD = {
    "job_id": "id",
    "tenant_id": "tenant_id",
    "key": "key",
    "status": "status",
    "attempts": "attempts",
    "fencing_token": "fencing_token",
}


def event_payload(job: Job, **extra: Any) -> dict[str, Any]:
    """An event's payload: the job's `PAYLOAD` columns, then the event's own keys."""
    return {**{key: getattr(job, column) for key, column in PAYLOAD.items()}, **extra}


def insert_events_from_sql(
    source: str,
    type_sql: str,
    extra: dict[str, str],
    order_by: str,
    *,
    extra_sql: str | None = None,
) -> str:
    """SQL of the outbox INSERT for a data-modifying CTE: one row per job row of `source`,
    returning each row's id, event_id and job_id.

    PostgreSQL only. `source` names an earlier CTE that returned changed job rows;
    `type_sql` is the event type (an SQL expression: a quoted literal or a CASE); `extra`
    maps payload keys to SQL expressions and `extra_sql` (a jsonb expression) adds keys
    per row; rows get their ids in `order_by` order. The
    payload has exactly the keys of `event_payload`. The rows come from the job UPDATE's
    RETURNING, so each outbox row is written after its job row changed, while the statement
    holds that row's lock, in the same transaction.
    """
    fields = {key: f"{source}.{column}" for key, column in PAYLOAD.items()} | extra
    payload = ", ".join(f"'{key}', {expr}" for key, expr in fields.items())
    # Built once, at import, from the callers' constant fragments: no input reaches it.
    columns = "event_id, tenant_id, job_id, job_key, type, payload, created_at"
    body = f"jsonb_build_object({payload})"
    if extra_sql is not None:
        body = f"{body} || {extra_sql}"
    values = (
        f"gen_random_uuid()::text, {source}.tenant_id, {source}.id, {source}.key,"
        f" {type_sql}, {body}, statement_timestamp()"
    )
    insert = f"INSERT INTO outbox ({columns}) SELECT {values} FROM {source}"  # noqa: S608
    return f"{insert} ORDER BY {order_by} RETURNING id, event_id, job_id"


# One statement for every outbox row written from Python, built once: a row is its values
# as parameters. Building an INSERT per row (and its cache key) was half of what one cost.
_INSERT = sa.insert(outbox).values(created_at=db_now()).returning(*outbox.c)


async def insert_event(
    conn: AsyncConnection, job: Job, type_: EventType, **extra: Any
) -> OutboxEvent:
    """Write the outbox row of a state change, in the caller's transaction."""
    row = (await conn.execute(_INSERT, _values(job, type_, extra))).mappings().one()
    return from_row(OutboxEvent, row)


async def insert_events(
    conn: AsyncConnection, items: Sequence[tuple[Job, EventType, dict[str, Any]]]
) -> list[OutboxEvent]:
    """`insert_event` for several state changes of one transaction, in one statement.

    Rows get ids in the order of `items`; each `(job, type, extra)` becomes one row.
    """
    if not items:
        return []
    if len(items) == 1:  # one row: the statement of every single change
        job, type_, extra = items[0]
        return [await insert_event(conn, job, type_, **extra)]
    rows = [_values(job, type_, extra) for job, type_, extra in items]
    # Many parameter sets: sent as one multi-row INSERT.
    by_event = {r["event_id"]: r for r in (await conn.execute(_INSERT, rows)).mappings()}
    return [from_row(OutboxEvent, by_event[r["event_id"]]) for r in rows]


def _values(job: Job, type_: EventType, extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "tenant_id": job.tenant_id,
        "job_id": job.id,
        "job_key": job.key,
        "type": type_.for_role(job.role).value,
        "payload": event_payload(job, **extra),
    }


async def select_job_events(
    conn: AsyncConnection, job_id: int, limit: int = 1000
) -> list[OutboxEvent]:
    """One job's events in outbox order (the caller found the job as its tenant's)."""
    stmt = sa.select(outbox).where(outbox.c.job_id == job_id).order_by(outbox.c.id).limit(limit)
    return [from_row(OutboxEvent, r) for r in (await conn.execute(stmt)).mappings()]


async def select_unpublished(conn: AsyncConnection, limit: int) -> list[OutboxEvent]:
    stmt = (
        sa.select(outbox).where(outbox.c.published_at.is_(None)).order_by(outbox.c.id).limit(limit)
    )
    return [from_row(OutboxEvent, r) for r in (await conn.execute(stmt)).mappings()]


async def mark_published(conn: AsyncConnection, ids: list[int]) -> int:
    if not ids:
        return 0
    stmt = (
        sa.update(outbox)
        .where(outbox.c.id.in_(ids), outbox.c.published_at.is_(None))
        .values(published_at=db_now())
    )
    return int((await conn.execute(stmt)).rowcount)


async def record_processed_if_new(conn: AsyncConnection, consumer: str, event_id: str) -> bool:
    """Record that `consumer` handled `event_id`; False if it already had (skip the effect)."""
    stmt = (
        insert_on_conflict(conn, processed)
        .values(consumer=consumer, event_id=event_id, processed_at=db_now())
        .on_conflict_do_nothing(index_elements=["consumer", "event_id"])
    )
    return bool((await conn.execute(stmt)).rowcount)


# --- relay and reaper housekeeping --------------------------------------------------------


async def select_backlog(conn: AsyncConnection) -> tuple[int, float]:
    """Unpublished rows and the age in seconds of the oldest (0 when there are none)."""
    stmt = sa.select(sa.func.count(), sa.func.min(outbox.c.created_at), db_now()).where(
        outbox.c.published_at.is_(None)
    )
    count, oldest, now = (await conn.execute(stmt)).one()
    age = 0.0 if oldest is None else max(0.0, (now - oldest).total_seconds())
    return int(count), age


async def delete_published_before(conn: AsyncConnection, seconds_ago: float, limit: int) -> int:
    """Delete up to `limit` rows published more than `seconds_ago` seconds ago (oldest first)."""
    doomed = (
        sa.select(outbox.c.id)
        .where(
            outbox.c.published_at.is_not(None),
            outbox.c.published_at < db_now(-seconds_ago),
        )
        .order_by(outbox.c.id)
        .limit(limit)
    )
    stmt = sa.delete(outbox).where(outbox.c.id.in_(doomed.scalar_subquery()))
    return int((await conn.execute(stmt)).rowcount)


async def delete_processed_before(conn: AsyncConnection, seconds_ago: float, limit: int) -> int:
    """Delete up to `limit` processed-event records older than `seconds_ago` seconds."""
    old = (
        sa.select(processed.c.consumer, processed.c.event_id)
        .where(processed.c.processed_at < db_now(-seconds_ago))
        .order_by(processed.c.processed_at)
        .limit(limit)
    )
    stmt = sa.delete(processed).where(
        sa.tuple_(processed.c.consumer, processed.c.event_id).in_(old)
    )
    return int((await conn.execute(stmt)).rowcount)


async def latest_event_type(conn: AsyncConnection, job_id: int) -> str | None:
    """The type of a job's most recent outbox row (ix_outbox_job: job_id, id)."""
    stmt = (
        sa.select(outbox.c.type)
        .where(outbox.c.job_id == job_id)
        .order_by(outbox.c.id.desc())
        .limit(1)
    )
    return (await conn.execute(stmt)).scalar_one_or_none()
