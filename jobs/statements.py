"""Every statement that changes a job, one named function each.

Each name says what the statement does and the state it expects; the expected state is
also in its WHERE clause, so a statement that finds the job elsewhere matches no row and
changes nothing. Fenced statements (a worker acting on a job it claimed) carry the
fencing token and return None when it no longer matches. Callers own the transaction and
write the outbox row (`jobs.outbox.insert_event`) in the same one, after the job row.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from jobs import outbox, pgsql
from jobs.db import db_now, fetch_prepared, insert_on_conflict
from jobs.models import Job, JobTask, TaskEdge, Tenant
from jobs.outcomes import Outcome, OutcomeKind, event_extra, event_type
from jobs.status import EventType, JobStatus

jobs = Job.__table__  # type: ignore[attr-defined]
tenants = Tenant.__table__  # type: ignore[attr-defined]
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
_PENDING_LITERAL = sa.literal_column(f"'{PENDING}'", sa.String)


def _row(result: sa.CursorResult[Any]) -> Job | None:
    row = result.mappings().first()
    return None if row is None else Job.model_construct(**row)


def _rows(result: sa.CursorResult[Any]) -> list[Job]:
    # Rows come typed from the database: construct without re-validating. Treat as read-only.
    return [Job.model_construct(**row) for row in result.mappings().all()]


# --- submission -------------------------------------------------------------------------


async def insert_job_if_absent(
    conn: AsyncConnection, values: dict[str, Any], *, run_at: dt.datetime | None = None
) -> Job | None:
    """INSERT ... ON CONFLICT (tenant_id, key) DO NOTHING: the new job, or None if it exists.

    `run_at`: not claimable before then (a scheduled job); else due at once. The status is
    pending unless `values` says `waiting` (a job of several tasks, or a task row)."""
    row = {
        "status": PENDING,
        **values,
        "run_after": db_now() if run_at is None else run_at,
        "created_at": db_now(),
        "updated_at": db_now(),
    }
    stmt = (
        insert_on_conflict(conn, jobs)
        .values(**row)
        .on_conflict_do_nothing(index_elements=["tenant_id", "key"])
    )
    return _row(await conn.execute(stmt.returning(*c)))


async def select_job_by_key(conn: AsyncConnection, tenant_id: str, key: str) -> Job | None:
    """The tenant's job with this key. On PostgreSQL, outside a transaction (a status
    lookup, a duplicate's one read), a single prepared statement with no BEGIN/ROLLBACK."""
    if conn.dialect.name == "postgresql" and not conn.in_transaction():
        rows = await fetch_prepared(conn, pgsql.SELECT_JOB_BY_KEY, tenant_id, key)
        return Job.model_construct(**rows[0]) if rows else None
    stmt = sa.select(jobs).where(c.tenant_id == tenant_id, c.key == key)
    return _row(await conn.execute(stmt))


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
    return _rows(await conn.execute(stmt.order_by(c.id.desc()).limit(limit)))


async def count_in_flight(conn: AsyncConnection, tenant_id: str) -> int:
    stmt = sa.select(sa.func.count()).where(
        c.tenant_id == tenant_id, c.status.in_((PENDING, RUNNING, WAITING)), c.role != TASK
    )
    return int((await conn.execute(stmt)).scalar_one())


def _requeue_values(changes: dict[str, Any] | None) -> dict[str, Any]:
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
        .values(**_requeue_values(changes))
        .returning(*c)
    )
    return _row(await conn.execute(stmt))


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
        .values(**_requeue_values(changes))
        .returning(*c)
    )
    return _row(await conn.execute(stmt))


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
    return _rows(await conn.execute(stmt))


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
    return _row(await conn.execute(stmt))


async def cancel_if_pending(conn: AsyncConnection, tenant_id: str, key: str) -> Job | None:
    stmt = (
        sa.update(jobs)
        .where(c.tenant_id == tenant_id, c.key == key, c.status == PENDING)
        .values(status=CANCELLED, finished_at=db_now(), updated_at=db_now())
        .returning(*c)
    )
    return _row(await conn.execute(stmt))


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
    return _row(await conn.execute(stmt))


# --- claims -----------------------------------------------------------------------------


def _claim_values(owner: str, lease_seconds: float) -> dict[str, Any]:
    return {
        "status": RUNNING,
        "lease_owner": owner,
        "lease_expires_at": db_now(sa.bindparam("lease_s", lease_seconds, sa.Float)),
        "fencing_token": c.fencing_token + 1,
        "attempts": c.attempts + 1,
        "progress": 0.0,
        "started_at": db_now(),
        "updated_at": db_now(),
    }


async def claim_pending_by_key(
    conn: AsyncConnection, tenant_id: str, key: str, owner: str, lease_seconds: float
) -> Job | None:
    """pending -> running for one job, if it is due; None means someone else has it."""
    stmt = (
        sa.update(jobs)
        .where(
            c.tenant_id == tenant_id,
            c.key == key,
            c.status == PENDING,
            c.run_after <= db_now(),
        )
        .values(**_claim_values(owner, lease_seconds))
        .returning(*c)
    )
    return _row(await conn.execute(stmt))


def _due_pending_ids(limit: int) -> sa.Select[Any]:
    """The ids of the next `limit` due pending jobs in claim order (SQLite's form of the
    PostgreSQL `due` CTE below; the same order and the same caps).

    Order: priority (highest first), then the tenant's turn (its running jobs plus the job's
    rank among the tenant's due jobs: tenants of equal priority take turns), then age. A
    tenant with `max_running` set gets no more than its free share.
    """
    running = (
        sa.select(c.tenant_id, sa.func.count().label("n"))
        .where(c.status == RUNNING)
        .group_by(c.tenant_id)
        .subquery()
    )
    rank = sa.func.row_number().over(
        partition_by=c.tenant_id, order_by=(c.priority.desc(), c.run_after, c.id)
    )
    ranked = (
        sa.select(c.id, c.tenant_id, c.priority, c.run_after, rank.label("rank"))
        .where(c.status == _PENDING_LITERAL, c.run_after <= db_now())
        .subquery()
    )
    busy = sa.func.coalesce(running.c.n, 0)
    turn = busy + ranked.c.rank
    return (
        sa.select(ranked.c.id)
        .select_from(
            ranked.join(tenants, tenants.c.id == ranked.c.tenant_id).outerjoin(
                running, running.c.tenant_id == ranked.c.tenant_id
            )
        )
        .where(sa.or_(tenants.c.max_running.is_(None), turn <= tenants.c.max_running))
        .order_by(ranked.c.priority.desc(), turn, ranked.c.run_after, ranked.c.id)
        .limit(limit)
    )


async def claim_due_pending_batch(
    conn: AsyncConnection, owner: str, lease_seconds: float, limit: int
) -> list[Job]:
    """Claim up to `limit` due pending jobs: highest priority first, tenants of equal
    priority in turn, then oldest first; no tenant past its `max_running`.

    SQLite (BEGIN IMMEDIATE serialises the claimers). PostgreSQL claims through
    `record_outcomes_and_claim_due`, one statement with FOR UPDATE SKIP LOCKED.
    """
    if limit <= 0:
        return []
    stmt = (
        sa.update(jobs)
        .where(c.id.in_(_due_pending_ids(limit).scalar_subquery()), c.status == PENDING)
        .values(**_claim_values(owner, lease_seconds))
        .returning(*c)
    )
    claimed = _rows(await conn.execute(stmt))
    claimed.sort(key=lambda j: (-j.priority, j.run_after or j.created_at, j.id or 0))
    return claimed


# --- fenced statements: a worker acting on a job it claimed -------------------------------


def _fenced(job_id: int, token: int) -> Sequence[sa.ColumnElement[bool]]:
    return (c.id == job_id, c.status == RUNNING, c.fencing_token == token)


async def heartbeat_if_fenced(
    conn: AsyncConnection, job_id: int, token: int, lease_seconds: float, progress: float | None
) -> Job | None:
    """Extend the lease (from the database clock) and record progress."""
    values: dict[str, Any] = {
        "lease_expires_at": db_now(sa.bindparam("lease_s", lease_seconds, sa.Float)),
        "updated_at": db_now(),
    }
    if progress is not None:
        values["progress"] = max(0.0, min(1.0, progress))
    stmt = sa.update(jobs).where(*_fenced(job_id, token)).values(**values).returning(*c)
    return _row(await conn.execute(stmt))


async def finish_succeeded_if_fenced(
    conn: AsyncConnection, job_id: int, token: int, output: dict[str, Any]
) -> Job | None:
    """running -> succeeded, pointing the job at its stored output."""
    stmt = (
        sa.update(jobs)
        .where(*_fenced(job_id, token))
        .values(**_succeeded_values(output), lease_owner=None, lease_expires_at=None)
        .returning(*c)
    )
    return _row(await conn.execute(stmt))


def _succeeded_values(output: dict[str, Any]) -> dict[str, Any]:
    return {
        "status": SUCCEEDED,
        "output": output,
        "progress": 1.0,
        "error_code": None,
        "error_message": None,
        "finished_at": db_now(),
        "updated_at": db_now(),
    }


def _outcome_args(outcomes: Sequence[Outcome]) -> tuple[str, list[list[Any]]]:
    """The statement for these outcomes and its outcome arrays."""
    ids = [o.job.id for o in outcomes]
    tokens = [o.job.fencing_token for o in outcomes]
    outputs = [None if o.output is None else json.dumps(o.output) for o in outcomes]
    if all(o.kind is OutcomeKind.SUCCEEDED for o in outcomes):
        return pgsql.RECORD_SUCCESSES_AND_CLAIM_DUE, [ids, tokens, outputs]
    return pgsql.RECORD_OUTCOMES_AND_CLAIM_DUE, [
        ids,
        tokens,
        [o.kind.value for o in outcomes],
        outputs,
        [None if o.error_code is None else o.error_code[:64] for o in outcomes],
        [None if o.error_message is None else o.error_message[:2000] for o in outcomes],
        [float(o.delay_seconds) for o in outcomes],
    ]


async def record_outcomes_and_claim_due(
    conn: AsyncConnection,
    outcomes: Sequence[Outcome],
    owner: str,
    lease_seconds: float,
    limit: int,
) -> tuple[list[tuple[Job, outbox.Event]], list[tuple[Job, outbox.Event]]]:
    """Record each outcome if still fenced, then claim up to `limit` due jobs, each with its
    outbox row, in one transaction. Returns (recorded, claimed); an outcome missing from
    `recorded` lost its fence and changed nothing.

    PostgreSQL: one statement, one round trip, prepared once per connection (outside a
    transaction it commits on its own). SQLite: the claim (first, so that the tenants'
    turns count the jobs that are ending, as the PostgreSQL statement's snapshot does), the
    outcomes' fenced statements, then their outbox rows, in the caller's transaction.
    """
    if conn.dialect.name != "postgresql":
        claimed = await claim_due_pending_batch(conn, owner, lease_seconds, limit)
        recorded: list[tuple[Outcome, Job]] = []
        for o in outcomes:
            row = await record_one(conn, o)
            if row is not None:
                recorded.append((o, row))
        events = await outbox.insert_events(
            conn,
            [(job, EventType.CLAIMED, {"owner": owner}) for job in claimed]
            + [(row, event_type(o, row.status), event_extra(o)) for o, row in recorded],
        )
        return (
            list(zip([row for _, row in recorded], events[len(claimed) :], strict=True)),
            list(zip(claimed, events[: len(claimed)], strict=True)),
        )
    sql, arrays = _outcome_args(outcomes)
    rows = await fetch_prepared(conn, sql, *arrays, owner, float(lease_seconds), max(0, limit))
    split = next((i for i, row in enumerate(rows) if row["recorded"]), len(rows))
    return pgsql.recorded_rows(rows[split:], outcomes), pgsql.claimed_rows(rows[:split], owner)


async def record_one(conn: AsyncConnection, o: Outcome) -> Job | None:
    """One outcome's fenced statement (no outbox row): the job as recorded, or None."""
    job_id, token = o.job.id or 0, o.job.fencing_token
    if o.kind is OutcomeKind.SUCCEEDED:
        return await finish_succeeded_if_fenced(conn, job_id, token, o.output or {})
    if o.kind is OutcomeKind.CANCELLED:
        return await cancel_if_fenced(conn, job_id, token)
    if o.kind is OutcomeKind.RELEASED:
        return await release_if_fenced(conn, job_id, token)
    return await fail_if_fenced(
        conn,
        job_id,
        token,
        code=o.error_code or "",
        message=o.error_message or "",
        retryable=o.kind is OutcomeKind.RETRY,
        delay_seconds=o.delay_seconds,
    )


async def fail_if_fenced(
    conn: AsyncConnection,
    job_id: int,
    token: int,
    *,
    code: str,
    message: str,
    retryable: bool,
    delay_seconds: float,
) -> Job | None:
    """running -> pending after `delay_seconds` (retryable, attempts left) or -> failed."""
    again = sa.and_(sa.literal(retryable), c.attempts < c.max_attempts)
    stmt = (
        sa.update(jobs)
        .where(*_fenced(job_id, token))
        .values(
            status=sa.case((again, PENDING), else_=FAILED),
            run_after=sa.case(
                (again, db_now(sa.bindparam("delay_s", delay_seconds, sa.Float))),
                else_=c.run_after,
            ),
            finished_at=sa.case((again, None), else_=db_now()),
            lease_owner=None,
            lease_expires_at=None,
            error_code=code[:64],
            error_message=message[:2000],
            updated_at=db_now(),
        )
        .returning(*c)
    )
    return _row(await conn.execute(stmt))


async def cancel_if_fenced(conn: AsyncConnection, job_id: int, token: int) -> Job | None:
    """running -> cancelled, when the worker honours a cancel request."""
    stmt = (
        sa.update(jobs)
        .where(*_fenced(job_id, token))
        .values(
            status=CANCELLED,
            lease_owner=None,
            lease_expires_at=None,
            finished_at=db_now(),
            updated_at=db_now(),
        )
        .returning(*c)
    )
    return _row(await conn.execute(stmt))


async def release_if_fenced(conn: AsyncConnection, job_id: int, token: int) -> Job | None:
    """running -> pending at once, attempt not counted (graceful shutdown)."""
    stmt = (
        sa.update(jobs)
        .where(*_fenced(job_id, token))
        .values(
            status=PENDING,
            attempts=sa.case((c.attempts > 0, c.attempts - 1), else_=0),
            run_after=db_now(),
            lease_owner=None,
            lease_expires_at=None,
            progress=0.0,
            updated_at=db_now(),
        )
        .returning(*c)
    )
    return _row(await conn.execute(stmt))


# --- rescue -------------------------------------------------------------------------------


async def select_expired_leases(conn: AsyncConnection, limit: int) -> list[tuple[int, int]]:
    """(job id, fencing token) of running jobs whose lease ran out by the database clock."""
    stmt = (
        sa.select(c.id, c.fencing_token)
        .where(c.status == RUNNING, c.lease_expires_at < db_now())
        .order_by(c.lease_expires_at)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    return [(int(r[0]), int(r[1])) for r in (await conn.execute(stmt)).all()]


async def rescue_if_expired(conn: AsyncConnection, job_id: int, token: int) -> Job | None:
    """running with an expired lease -> pending (attempts left) or failed.

    Fenced and re-checked in its own WHERE clause, so a job that finished or was
    re-claimed since `select_expired_leases` read it is left alone. The job keeps its
    `run_after`, so among its priority it is claimed before jobs that came after it.
    """
    again = c.attempts < c.max_attempts
    stmt = (
        sa.update(jobs)
        .where(*_fenced(job_id, token), c.lease_expires_at < db_now())
        .values(
            status=sa.case((again, PENDING), else_=FAILED),
            # `run_after` stays: it was due when it was claimed, and keeps its place in the
            # queue (a rescued job is not sent behind the backlog that came after it).
            finished_at=sa.case((again, None), else_=db_now()),
            lease_owner=None,
            lease_expires_at=None,
            error_code="lease_expired",
            error_message="the worker stopped renewing its lease (crashed, paused or cut off)",
            updated_at=db_now(),
        )
        .returning(*c)
    )
    return _row(await conn.execute(stmt))


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
    return _rows(await conn.execute(stmt))


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
    return _row(await conn.execute(stmt))


# --- tasks: a job of several task rows (`jobs.tasks.graph` owns the transactions) -----------

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
    return _row(await conn.execute(stmt.returning(*c)))


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
    return _row(await conn.execute(stmt))


async def release_one_if_waiting(conn: AsyncConnection, row_id: int) -> Job | None:
    """One upstream of a waiting row succeeded: `waiting` - 1; a task row at 0 -> pending.

    Each upstream's fenced success runs this once per downstream row, under the row's lock,
    so concurrent finishers count down exactly once each."""
    last = sa.and_(c.waiting == 1, c.role == TASK)
    stmt = sa.update(jobs).where(c.id == row_id, c.status == WAITING, c.waiting > 0)
    stmt = stmt.values(**_waiting_values(c.waiting - 1, last))
    return _row(await conn.execute(stmt.returning(*c)))


async def finish_graph_if_done(
    conn: AsyncConnection, job_id: int, output: dict[str, Any]
) -> Job | None:
    """waiting with nothing left to wait for -> succeeded (a job of several tasks)."""
    stmt = (
        sa.update(jobs)
        .where(c.id == job_id, c.role == GRAPH, c.status == WAITING, c.waiting == 0)
        .values(**_succeeded_values(output))
        .returning(*c)
    )
    return _row(await conn.execute(stmt))


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
    return _row(await conn.execute(stmt))


async def cancel_task_if_pending_or_waiting(conn: AsyncConnection, task_id: int) -> Job | None:
    stmt = (
        sa.update(jobs)
        .where(c.id == task_id, c.role == TASK, c.status.in_((PENDING, WAITING)))
        .values(status=CANCELLED, finished_at=db_now(), updated_at=db_now())
        .returning(*c)
    )
    return _row(await conn.execute(stmt))


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
    return _row(await conn.execute(stmt))


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
        .values(**_requeue_values({"status": WAITING, "run_after": run_after or db_now()}))
        .returning(*c)
    )
    return _row(await conn.execute(stmt))


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
        .values(**_requeue_values({**(changes or {}), "status": WAITING}))
        .returning(*c)
    )
    return _row(await conn.execute(stmt))
