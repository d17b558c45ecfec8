"""The statements that change a job from the outside, one named function each: submission,
reads, requeue, cancel, retention and the reaper's retry announcements. The worker's own
(claims and fenced statements) are `jobs.fenced`; a job of several tasks' are
`jobs.tasks.statements`.

Each name says what the statement does and the state it expects; the expected state is
also in its WHERE clause, so a statement that finds the job elsewhere matches no row and
changes nothing (None). Callers own the transaction and write the outbox row
(`jobs.outbox.insert_event`) in the same one, after the job row. The tables, statuses and
row readers here are shared by the other two modules of statements.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from jobs import pgsql
from jobs.db import db_now, fetch_prepared, insert_on_conflict
from jobs.models import Job, TaskEdge, from_row
from jobs.status import JobStatus

jobs = Job.__table__  # type: ignore[attr-defined]
edges = TaskEdge.__table__  # type: ignore[attr-defined]
c = jobs.c

PENDING, RUNNING = JobStatus.PENDING.value, JobStatus.RUNNING.value
SUCCEEDED, FAILED, CANCELLED = (
    JobStatus.SUCCEEDED.value,
    JobStatus.FAILED.value,
    JobStatus.CANCELLED.value,
)
WAITING = JobStatus.WAITING.value
RERUNNABLE = (FAILED, CANCELLED)
TASK, GRAPH = "task", "graph"  # `jobs.role` of task rows and of jobs of several tasks


def row_of(result: sa.CursorResult[Any]) -> Job | None:
    row = result.mappings().first()
    return None if row is None else from_row(Job, row)


def rows_of(result: sa.CursorResult[Any]) -> list[Job]:
    # Rows come typed from the database: construct without re-validating. Treat as read-only.
    return [from_row(Job, row) for row in result.mappings().all()]


# --- submission -------------------------------------------------------------------------


async def insert_job_if_absent(
    conn: AsyncConnection, values: dict[str, Any], *, run_at: dt.datetime | None = None
) -> Job | None:
    """INSERT ... ON CONFLICT (tenant_id, key) DO NOTHING: the new job, or None if it exists.

    `run_at`: not claimable before then (a scheduled job); else due at once. The status is
    pending unless `values` says `waiting` (a job of several tasks, or a task row)."""
    [job] = await insert_jobs_if_absent(conn, [(values, run_at)])
    return job


# Columns a row may leave out, with what leaving them out means: every row of one insert
# gives the same columns.
_OPTIONAL = {"status": PENDING, "role": "job", "traceparent": None}


async def insert_jobs_if_absent(
    conn: AsyncConnection, rows: Sequence[tuple[dict[str, Any], dt.datetime | None]]
) -> list[Job | None]:
    """`insert_job_if_absent` of several rows `(values, run_at)`: per row, in order, the
    new job or None where the key exists. No key twice.

    One statement with many parameter sets: SQLAlchemy sends it as multi-row INSERT ...
    VALUES ... ON CONFLICT DO NOTHING RETURNING (its "insertmanyvalues"), compiled once and
    cached, rows inserted (ids given) in the order given."""
    if not rows:
        return []
    params = [{**_OPTIONAL, **values, "run_at": run_at} for values, run_at in rows]
    wanted = [(p["tenant_id"], p["key"]) for p in params]
    assert len(set(wanted)) == len(wanted), "a key twice in one insert"
    stmt = _INSERT_JOBS.get(conn.dialect.name)
    if stmt is None:
        now = db_now()
        stmt = _INSERT_JOBS[conn.dialect.name] = (
            insert_on_conflict(conn, jobs)
            .values(
                run_after=sa.func.coalesce(sa.bindparam("run_at", type_=c.run_after.type), now),
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=["tenant_id", "key"])
            .returning(*c)
        )
    new = {(j.tenant_id, j.key): j for j in rows_of(await conn.execute(stmt, params))}
    return [new.get(k) for k in wanted]


# The statement of `insert_jobs_if_absent`, built once per dialect (every value a parameter).
_INSERT_JOBS: dict[str, Any] = {}


async def select_job_by_key(conn: AsyncConnection, tenant_id: str, key: str) -> Job | None:
    """The tenant's job with this key. On PostgreSQL, outside a transaction (a status
    lookup, a duplicate's one read), a single prepared statement with no BEGIN/ROLLBACK."""
    if conn.dialect.name == "postgresql" and not conn.in_transaction():
        rows = await fetch_prepared(conn, pgsql.SELECT_JOB_BY_KEY, tenant_id, key)
        return from_row(Job, dict(rows[0])) if rows else None  # a Record's keys() is an iterator
    stmt = sa.select(jobs).where(c.tenant_id == tenant_id, c.key == key)
    return row_of(await conn.execute(stmt))


async def select_jobs_by_keys(
    conn: AsyncConnection, tenant_id: str, keys: Sequence[str]
) -> dict[str, Job]:
    """The tenant's jobs with these keys, by key (a key with no job is absent)."""
    if not keys:
        return {}
    stmt = sa.select(jobs).where(c.tenant_id == tenant_id, c.key.in_(set(keys)))
    return {j.key: j for j in rows_of(await conn.execute(stmt))}


async def select_jobs_page(
    conn: AsyncConnection,
    tenant_id: str,
    status: JobStatus | None,
    before_id: int | None,
    limit: int,
) -> list[Job]:
    """A tenant's jobs, newest first, strictly older than `before_id` (keyset pagination)."""
    stmt = sa.select(jobs).where(c.tenant_id == tenant_id, c.role != TASK)
    if status is JobStatus.RUNNING:  # a job of several tasks is running while it waits
        stmt = stmt.where(c.status.in_((RUNNING, WAITING)))
    elif status is not None:
        stmt = stmt.where(c.status == status.value)
    if before_id is not None:
        stmt = stmt.where(c.id < before_id)
    return rows_of(await conn.execute(stmt.order_by(c.id.desc()).limit(limit)))


async def count_in_flight(conn: AsyncConnection, tenant_id: str) -> int:
    stmt = sa.select(sa.func.count()).where(
        c.tenant_id == tenant_id, c.status.in_((PENDING, RUNNING, WAITING)), c.role != TASK
    )
    return int((await conn.execute(stmt)).scalar_one())


def requeue_values(changes: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "status": PENDING,
        "attempts": 0,
        "run_after": db_now(),
        "cancel_requested": False,
        "progress": 0.0,
        "output": None,
        "error_code": None,
        "error_message": None,
        "lease_owner": None,
        "lease_expires_at": None,
        "started_at": None,
        "finished_at": None,
        "updated_at": db_now(),
        **(changes or {}),
    }


async def requeue_if_failed_or_cancelled(
    conn: AsyncConnection, tenant_id: str, key: str, changes: dict[str, Any] | None = None
) -> Job | None:
    """failed/cancelled -> pending on the same row, attempts reset (resubmit or retry).

    `changes` may set other columns too (a resubmission's labels, priority, `run_after`)."""
    stmt = (
        sa.update(jobs)
        .where(c.tenant_id == tenant_id, c.key == key, c.status.in_(RERUNNABLE))
        .values(**requeue_values(changes))
        .returning(*c)
    )
    return row_of(await conn.execute(stmt))


def output_expired() -> sa.ColumnElement[bool]:
    """The job's output file was deleted by retention (`output.expired` is true)."""
    return sa.func.coalesce(c.output["expired"].as_boolean(), False) == sa.true()


async def requeue_if_succeeded_with_expired_output(
    conn: AsyncConnection, tenant_id: str, key: str, changes: dict[str, Any] | None = None
) -> Job | None:
    """succeeded whose output expired -> pending on the same row (a duplicate submission)."""
    stmt = (
        sa.update(jobs)
        .where(c.tenant_id == tenant_id, c.key == key, c.status == SUCCEEDED, output_expired())
        .values(**requeue_values(changes))
        .returning(*c)
    )
    return row_of(await conn.execute(stmt))


async def select_succeeded_finished_before(
    conn: AsyncConnection, seconds: float, after_id: int, limit: int
) -> list[Job]:
    """Succeeded jobs finished more than `seconds` ago, by id after `after_id` (retention).
    A task that a live row (a job or task not yet ended) still waits for is not among them:
    that row will read the task's output when it runs."""
    waiter = jobs.alias("waiter")
    live_waiter = (
        sa.select(edges.c.downstream_id)
        .join(waiter, waiter.c.id == edges.c.downstream_id)
        .where(edges.c.upstream_id == c.id, waiter.c.status.in_((PENDING, WAITING, RUNNING)))
        .exists()
    )
    stmt = (
        sa.select(*c)
        .where(
            c.status == SUCCEEDED,
            c.finished_at <= db_now(-seconds),
            c.id > after_id,
            c.output.is_not(None),
            sa.not_(live_waiter),
        )
        .order_by(c.id)
        .limit(limit)
    )
    return rows_of(await conn.execute(stmt))


async def expire_output_if_succeeded(
    conn: AsyncConnection, job_id: int, output: dict[str, Any]
) -> Job | None:
    """Mark a succeeded job's output as expired (its file is about to be deleted)."""
    stmt = (
        sa.update(jobs)
        .where(c.id == job_id, c.status == SUCCEEDED, sa.not_(output_expired()))
        .values(output={**output, "expired": True}, updated_at=db_now())
        .returning(*c)
    )
    return row_of(await conn.execute(stmt))


async def cancel_if_pending(conn: AsyncConnection, tenant_id: str, key: str) -> Job | None:
    stmt = (
        sa.update(jobs)
        .where(c.tenant_id == tenant_id, c.key == key, c.status == PENDING)
        .values(status=CANCELLED, finished_at=db_now(), updated_at=db_now())
        .returning(*c)
    )
    return row_of(await conn.execute(stmt))


async def request_cancel_if_running(conn: AsyncConnection, tenant_id: str, key: str) -> Job | None:
    """Set the cancel flag; the worker sees it at its next heartbeat and stops."""
    stmt = (
        sa.update(jobs)
        .where(
            c.tenant_id == tenant_id,
            c.key == key,
            c.status == RUNNING,
            c.cancel_requested.is_(False),
        )
        .values(cancel_requested=True, updated_at=db_now())
        .returning(*c)
    )
    return row_of(await conn.execute(stmt))


async def select_due_retries(conn: AsyncConnection, after_id: int, limit: int) -> list[Job]:
    """Pending jobs that were retried with a backoff which has now passed."""
    stmt = (
        sa.select(jobs)
        .where(
            c.status == PENDING,
            c.run_after <= db_now(),
            c.attempts > 0,
            c.id > after_id,
        )
        .order_by(c.id)
        .limit(limit)
    )
    return rows_of(await conn.execute(stmt))


async def touch_due_retry_if_pending(conn: AsyncConnection, job_id: int, token: int) -> Job | None:
    """pending (retry due) -> pending: lock the row so a `job.requeued` event follows it.

    The reaper announces due retries with this: the row lock orders its outbox row before
    any claim's, and a job claimed meanwhile (no longer pending) matches no row.
    """
    stmt = (
        sa.update(jobs)
        .where(
            c.id == job_id,
            c.status == PENDING,
            c.fencing_token == token,
            c.run_after <= db_now(),
        )
        .values(updated_at=db_now())
        .returning(*c)
    )
    return row_of(await conn.execute(stmt))
