"""The statements of a job of several task rows (`jobs.tasks.graph` owns the transactions):
who waits for whom, the `waiting` counts that release tasks and finish jobs, and the
cascades of cancel and retry. Like every statement on a job, each names the state it
expects in its WHERE clause and changes nothing when the row is elsewhere.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from jobs.db import db_now, insert_on_conflict
from jobs.models import Job, JobTask
from jobs.setlists import succeeded_values
from jobs.statements import (
    CANCELLED,
    GRAPH,
    PENDING,
    RERUNNABLE,
    RUNNING,
    SUCCEEDED,
    TASK,
    WAITING,
    c,
    edges,
    jobs,
    output_expired,
    requeue_values,
    row_of,
)

job_tasks = JobTask.__table__  # type: ignore[attr-defined]


async def insert_task_edge_if_absent(conn: AsyncConnection, upstream: int, downstream: int) -> None:
    """`downstream` waits for `upstream` (a no-op if it already does)."""
    stmt = insert_on_conflict(conn, edges).values(upstream_id=upstream, downstream_id=downstream)
    await conn.execute(stmt.on_conflict_do_nothing())


async def insert_job_task(conn: AsyncConnection, values: dict[str, Any]) -> None:
    await conn.execute(sa.insert(job_tasks).values(**values))


async def recount_waiting(conn: AsyncConnection, row_id: int) -> Job | None:
    """waiting -> waiting with `waiting` = its unfinished upstream rows; a task row with none
    -> pending (due now). A job of several tasks stays `waiting` (its caller finishes it)."""
    up = jobs.alias("up")
    unfinished = (
        sa.select(sa.func.count())
        .select_from(edges.join(up, up.c.id == edges.c.upstream_id))
        .where(edges.c.downstream_id == c.id, up.c.status != SUCCEEDED)
        .scalar_subquery()
    )
    ready = sa.and_(unfinished == 0, c.role == TASK)
    stmt = sa.update(jobs).where(c.id == row_id, c.status == WAITING)
    stmt = stmt.values(**_waiting_values(unfinished, ready))
    return row_of(await conn.execute(stmt.returning(*c)))


def _waiting_values(count: Any, ready: sa.ColumnElement[bool]) -> dict[str, Any]:
    """A waiting row's new count; when `ready` (a task with nothing left), pending: due now,
    or at its `run_after` if that is later (a task of a scheduled job)."""
    later = sa.case((c.run_after > db_now(), c.run_after), else_=db_now())
    return {
        "waiting": count,
        "status": sa.case((ready, PENDING), else_=WAITING),
        "run_after": sa.case((ready, later), else_=c.run_after),
        "updated_at": db_now(),
    }


async def advance_task_if_later(
    conn: AsyncConnection, task_id: int, run_after: dt.datetime | None
) -> Job | None:
    """A pending or waiting task due later than `run_after` -> due at `run_after` (a job that
    needs it sooner than the scheduled job that made it)."""
    if run_after is None:
        return None
    stmt = (
        sa.update(jobs)
        .where(
            c.id == task_id,
            c.role == TASK,
            c.status.in_((PENDING, WAITING)),
            c.run_after > run_after,
        )
        .values(run_after=run_after, updated_at=db_now())
        .returning(*c)
    )
    return row_of(await conn.execute(stmt))


async def release_one_if_waiting(conn: AsyncConnection, row_id: int) -> Job | None:
    """One upstream of a waiting row succeeded: `waiting` - 1; a task row at 0 -> pending.

    Each upstream's fenced success runs this once per downstream row, under the row's lock,
    so concurrent finishers count down exactly once each."""
    last = sa.and_(c.waiting == 1, c.role == TASK)
    stmt = sa.update(jobs).where(c.id == row_id, c.status == WAITING, c.waiting > 0)
    stmt = stmt.values(**_waiting_values(c.waiting - 1, last))
    return row_of(await conn.execute(stmt.returning(*c)))


async def finish_graph_if_done(
    conn: AsyncConnection, job_id: int, output: dict[str, Any]
) -> Job | None:
    """waiting with nothing left to wait for -> succeeded (a job of several tasks)."""
    stmt = (
        sa.update(jobs)
        .where(c.id == job_id, c.role == GRAPH, c.status == WAITING, c.waiting == 0)
        .values(**succeeded_values(output))
        .returning(*c)
    )
    return row_of(await conn.execute(stmt))


async def end_graph_if_waiting(
    conn: AsyncConnection, job_id: int, status: str, code: str | None, message: str | None
) -> Job | None:
    """waiting -> failed (a task failed for good) or cancelled (its tenant cancelled it)."""
    stmt = (
        sa.update(jobs)
        .where(c.id == job_id, c.role == GRAPH, c.status == WAITING)
        .values(
            status=status,
            error_code=None if code is None else code[:64],
            error_message=None if message is None else message[:2000],
            finished_at=db_now(),
            updated_at=db_now(),
        )
        .returning(*c)
    )
    return row_of(await conn.execute(stmt))


async def cancel_task_if_pending_or_waiting(conn: AsyncConnection, task_id: int) -> Job | None:
    stmt = (
        sa.update(jobs)
        .where(c.id == task_id, c.role == TASK, c.status.in_((PENDING, WAITING)))
        .values(status=CANCELLED, finished_at=db_now(), updated_at=db_now())
        .returning(*c)
    )
    return row_of(await conn.execute(stmt))


async def set_cancel_request_if_running(
    conn: AsyncConnection, task_id: int, requested: bool
) -> Job | None:
    """Set (a cascade) or clear (a new job needs the task after all) a task's cancel flag."""
    stmt = (
        sa.update(jobs)
        .where(
            c.id == task_id,
            c.role == TASK,
            c.status == RUNNING,
            c.cancel_requested.is_(not requested),
        )
        .values(cancel_requested=requested, updated_at=db_now())
        .returning(*c)
    )
    return row_of(await conn.execute(stmt))


async def requeue_task_if_rerunnable(
    conn: AsyncConnection, task_id: int, run_after: dt.datetime | None
) -> Job | None:
    """failed/cancelled (or succeeded with an expired output) -> waiting, attempts reset, not
    due before `run_after` (its job's); `recount_waiting` then decides whether it is due."""
    stmt = (
        sa.update(jobs)
        .where(
            c.id == task_id,
            c.role == TASK,
            sa.or_(c.status.in_(RERUNNABLE), sa.and_(c.status == SUCCEEDED, output_expired())),
        )
        .values(**requeue_values({"status": WAITING, "run_after": run_after or db_now()}))
        .returning(*c)
    )
    return row_of(await conn.execute(stmt))


async def requeue_graph_if_failed_or_cancelled(
    conn: AsyncConnection, tenant_id: str, key: str, changes: dict[str, Any] | None = None
) -> Job | None:
    """failed/cancelled -> waiting on the same row (a job of several tasks run again)."""
    stmt = (
        sa.update(jobs)
        .where(
            c.tenant_id == tenant_id,
            c.key == key,
            c.role == GRAPH,
            sa.or_(c.status.in_(RERUNNABLE), sa.and_(c.status == SUCCEEDED, output_expired())),
        )
        .values(**requeue_values({**(changes or {}), "status": WAITING}))
        .returning(*c)
    )
    return row_of(await conn.execute(stmt))
