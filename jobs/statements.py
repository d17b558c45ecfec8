"""Every statement that changes a job, one named function each.

Each name says what the statement does and the state it expects; the expected state is
also in its WHERE clause, so a statement that finds the job elsewhere matches no row and
changes nothing. Fenced statements (a worker acting on a job it claimed) carry the
fencing token and return None when it no longer matches. Callers own the transaction and
write the outbox row (`jobs.outbox.insert_event`) in the same one, after the job row.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from jobs import outbox
from jobs.db import db_now, fetch_prepared, insert_on_conflict
from jobs.models import Job
from jobs.status import EventType, JobStatus

jobs = Job.__table__  # type: ignore[attr-defined]
c = jobs.c

PENDING, RUNNING = JobStatus.PENDING.value, JobStatus.RUNNING.value
SUCCEEDED, FAILED, CANCELLED = (
    JobStatus.SUCCEEDED.value,
    JobStatus.FAILED.value,
    JobStatus.CANCELLED.value,
)
RERUNNABLE = (FAILED, CANCELLED)
_PENDING_LITERAL = sa.literal_column(f"'{PENDING}'", sa.String)


def _row(result: sa.CursorResult[Any]) -> Job | None:
    row = result.mappings().first()
    return None if row is None else Job.model_construct(**row)


def _rows(result: sa.CursorResult[Any]) -> list[Job]:
    # Rows come typed from the database: construct without re-validating. Treat as read-only.
    return [Job.model_construct(**row) for row in result.mappings().all()]


# PostgreSQL statements that change jobs and write their outbox rows in one data-modifying
# CTE (`changed` = the UPDATE's RETURNING, `event` = the outbox INSERT fed from it) send
# back what the caller does not know yet, and nothing it does: a claim, the claimed jobs'
# columns; a finish, only what may have changed under the worker (a cancel request) and
# when; both, their outbox rows' ids as "event.id" and "event.event_id". Each event's
# payload is rebuilt here by `outbox.event_payload` from the columns the SQL built it from,
# so no JSON comes back to be decoded.
_JOB_COLUMNS = [col.name for col in c]
_FINISH_COLUMNS = ("id", "cancel_requested", "finished_at")


def _event_ids(event: str) -> list[str]:
    return [f'{event}.id AS "event.id"', f'{event}.event_id AS "event.event_id"']


def _claimed_columns(job: str, event: str) -> str:
    return ", ".join([f"{job}.{name}" for name in _JOB_COLUMNS] + _event_ids(event))


def _finished_columns(job: str, event: str, *, as_claimed: bool = False) -> str:
    """A finish's columns; `as_claimed`: in the claim's column list (NULL elsewhere)."""
    if as_claimed:
        cols = [f"{job}.{n}" if n in _FINISH_COLUMNS else "NULL" for n in _JOB_COLUMNS]
    else:
        cols = [f"{job}.{n}" for n in _FINISH_COLUMNS]
    return ", ".join(cols + _event_ids(event))


def _event(
    row: Mapping[str, Any], job: Job, type_: EventType, **extra: Any
) -> outbox.CommittedEvent:
    return outbox.CommittedEvent(row["event.id"], row["event.event_id"], type_.value, job, extra)


def _claimed(rows: Sequence[Mapping[str, Any]], owner: str) -> list[tuple[Job, outbox.Event]]:
    out: list[tuple[Job, outbox.Event]] = []
    for row in rows:
        job = Job.model_construct(**{name: row[name] for name in _JOB_COLUMNS})
        out.append((job, _event(row, job, EventType.CLAIMED, owner=owner)))
    return out


def _finished(
    rows: Sequence[Mapping[str, Any]], finished: Sequence[tuple[Job, dict[str, Any]]]
) -> list[tuple[Job, outbox.Event]]:
    """The finished jobs as the finish left them: the worker's claimed row plus what the
    fenced UPDATE set (the same values, in the same statement) and the columns it returned."""
    by_id = {job.id: (job, output) for job, output in finished}
    out: list[tuple[Job, outbox.Event]] = []
    for row in rows:
        job, output = by_id[row["id"]]
        at = row["finished_at"]
        done = job.model_copy(
            update={
                "status": SUCCEEDED,
                "output": output,
                "progress": 1.0,
                "lease_owner": None,
                "lease_expires_at": None,
                "error_code": None,
                "error_message": None,
                "finished_at": at,
                "updated_at": at,
                "cancel_requested": row["cancel_requested"],
            }
        )
        out.append((done, _event(row, done, EventType.SUCCEEDED, output=output)))
    return out


# --- submission -------------------------------------------------------------------------


async def insert_job_if_absent(conn: AsyncConnection, values: dict[str, Any]) -> Job | None:
    """INSERT ... ON CONFLICT (tenant_id, key) DO NOTHING: the new job, or None if it exists."""
    row = {
        **values,
        "status": PENDING,
        "run_after": db_now(),
        "created_at": db_now(),
        "updated_at": db_now(),
    }
    stmt = (
        insert_on_conflict(conn, jobs)
        .values(**row)
        .on_conflict_do_nothing(index_elements=["tenant_id", "key"])
    )
    return _row(await conn.execute(stmt.returning(*c)))


_SELECT_JOB_BY_KEY = f"SELECT {', '.join(_JOB_COLUMNS)} FROM jobs WHERE tenant_id = $1 AND key = $2"  # noqa: S608


async def select_job_by_key(conn: AsyncConnection, tenant_id: str, key: str) -> Job | None:
    """The tenant's job with this key. On PostgreSQL, outside a transaction (a status
    lookup, a duplicate's one read), a single prepared statement with no BEGIN/ROLLBACK."""
    if conn.dialect.name == "postgresql" and not conn.in_transaction():
        rows = await fetch_prepared(conn, _SELECT_JOB_BY_KEY, tenant_id, key)
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
    stmt = sa.select(jobs).where(c.tenant_id == tenant_id)
    if status is not None:
        stmt = stmt.where(c.status == status.value)
    if before_id is not None:
        stmt = stmt.where(c.id < before_id)
    return _rows(await conn.execute(stmt.order_by(c.id.desc()).limit(limit)))


async def count_in_flight(conn: AsyncConnection, tenant_id: str) -> int:
    stmt = sa.select(sa.func.count()).where(
        c.tenant_id == tenant_id, c.status.in_((PENDING, RUNNING))
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
    """failed/cancelled -> pending on the same row, attempts reset (resubmit or retry)."""
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
    """Succeeded jobs finished more than `seconds` ago, by id after `after_id` (retention)."""
    stmt = (
        sa.select(*c)
        .where(
            c.status == SUCCEEDED,
            c.finished_at <= db_now(-seconds),
            c.id > after_id,
            c.output.is_not(None),
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


async def claim_due_pending_batch(
    conn: AsyncConnection, owner: str, lease_seconds: float, limit: int
) -> list[Job]:
    """Claim up to `limit` due pending jobs, highest priority first.

    PostgreSQL: the inner SELECT locks with FOR UPDATE SKIP LOCKED, so concurrent
    claimers take disjoint rows. SQLite: BEGIN IMMEDIATE serialises the claimers.
    """
    due = (
        sa.select(c.id)
        # A literal, not a parameter: a prepared statement's generic plan can only use the
        # partial index (WHERE status = 'pending') when the predicate is spelled out.
        .where(c.status == _PENDING_LITERAL, c.run_after <= db_now())
        .order_by(c.priority.desc(), c.run_after, c.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    stmt = (
        sa.update(jobs)
        .where(c.id.in_(due.scalar_subquery()), c.status == PENDING)
        .values(**_claim_values(owner, lease_seconds))
        .returning(*c)
    )
    claimed = _rows(await conn.execute(stmt))
    claimed.sort(key=lambda j: (-j.priority, j.id or 0))
    return claimed


# Statement texts are built once, at import, from constants: no input reaches them.
def _claim_due_ctes(claimed: str, owner: str, lease_seconds: str, limit: str) -> str:
    """CTEs `due` (the next due pending ids, locked, SKIP LOCKED), `claimed` (their
    conditional claim UPDATE) and `event` (their `job.claimed` outbox rows), with the given
    CTE name for the claimed rows and parameter placeholders for owner, lease and limit."""
    events = outbox.insert_events_from_sql(
        claimed,
        EventType.CLAIMED,
        {"owner": f"{owner}::text"},
        f"{claimed}.priority DESC, {claimed}.id",
    )
    return f"""due AS (
    SELECT id FROM jobs
    WHERE status = '{PENDING}' AND run_after <= statement_timestamp()
    ORDER BY priority DESC, run_after, id
    LIMIT {limit}
    FOR UPDATE SKIP LOCKED
), {claimed} AS (
    UPDATE jobs SET status = '{RUNNING}', lease_owner = {owner},
        lease_expires_at = statement_timestamp() + {lease_seconds}::float8 * interval '1 second',
        fencing_token = jobs.fencing_token + 1, attempts = jobs.attempts + 1, progress = 0.0,
        started_at = statement_timestamp(), updated_at = statement_timestamp()
    WHERE jobs.id IN (SELECT id FROM due) AND jobs.status = '{PENDING}'
    RETURNING jobs.*
), event AS ({events})"""  # noqa: S608


_CLAIM_DUE_PENDING_BATCH_WITH_EVENTS = f"""
WITH {_claim_due_ctes("changed", "$1", "$2", "$3")}
SELECT {_claimed_columns("changed", "event")} FROM changed JOIN event ON event.job_id = changed.id
ORDER BY event.id
"""  # noqa: S608


async def claim_due_pending_batch_with_events(
    conn: AsyncConnection, owner: str, lease_seconds: float, limit: int
) -> list[tuple[Job, outbox.Event]]:
    """`claim_due_pending_batch` and each claimed job's `job.claimed` outbox row.

    Jobs come highest priority first, each with its event. PostgreSQL: one statement, one
    round trip (a data-modifying CTE: the locked due rows, their conditional UPDATE, the
    outbox INSERT fed from its RETURNING), prepared once per connection. SQLite: the claim,
    then `outbox.insert_events`, in the caller's transaction.
    """
    if conn.dialect.name != "postgresql":
        claimed = await claim_due_pending_batch(conn, owner, lease_seconds, limit)
        events = await outbox.insert_events(
            conn, [(job, EventType.CLAIMED, {"owner": owner}) for job in claimed]
        )
        return list(zip(claimed, events, strict=True))
    rows = await fetch_prepared(
        conn, _CLAIM_DUE_PENDING_BATCH_WITH_EVENTS, owner, float(lease_seconds), limit
    )
    return _claimed(rows, owner)


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
        .values(
            status=SUCCEEDED,
            output=output,
            progress=1.0,
            lease_owner=None,
            lease_expires_at=None,
            error_code=None,
            error_message=None,
            finished_at=db_now(),
            updated_at=db_now(),
        )
        .returning(*c)
    )
    return _row(await conn.execute(stmt))


_SUCCEEDED_EVENTS = outbox.insert_events_from_sql(
    "changed", EventType.SUCCEEDED, {"output": "changed.output"}, "changed.ord"
)
# The fenced finish of several jobs (`changed`, from unnest of ids, tokens and outputs).
_FINISHED_FROM_UNNEST = f"""
WITH finished AS (
    SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[])
        WITH ORDINALITY AS f(id, token, output, ord)
), changed AS (
    UPDATE jobs SET status = '{SUCCEEDED}', output = finished.output::jsonb, progress = 1.0,
        lease_owner = NULL, lease_expires_at = NULL, error_code = NULL, error_message = NULL,
        finished_at = statement_timestamp(), updated_at = statement_timestamp()
    FROM finished
    WHERE jobs.id = finished.id AND jobs.status = '{RUNNING}'
        AND jobs.fencing_token = finished.token
    RETURNING jobs.id, jobs.tenant_id, jobs.key, jobs.status, jobs.attempts,
        jobs.fencing_token, jobs.output, jobs.cancel_requested, jobs.finished_at, finished.ord
), done_event AS ({_SUCCEEDED_EVENTS})"""  # noqa: S608
_FINISH_SUCCEEDED_MANY_IF_FENCED_WITH_EVENTS = f"""{_FINISHED_FROM_UNNEST}
SELECT {_finished_columns("changed", "done_event")}
    FROM changed JOIN done_event ON done_event.job_id = changed.id
ORDER BY done_event.id
"""  # noqa: S608


def _finish_args(finished: Sequence[tuple[Job, dict[str, Any]]]) -> list[list[Any]]:
    return [
        [job.id for job, _ in finished],
        [job.fencing_token for job, _ in finished],
        [json.dumps(output) for _, output in finished],
    ]


async def finish_succeeded_many_if_fenced_with_events(
    conn: AsyncConnection, finished: Sequence[tuple[Job, dict[str, Any]]]
) -> list[tuple[Job, outbox.Event]]:
    """`finish_succeeded_if_fenced` for several (claimed job, output), with each finished
    job's `job.succeeded` outbox row.

    A job missing from the result lost its fence. PostgreSQL: one statement, one round
    trip (the fenced UPDATE ... FROM unnest, the outbox INSERT fed from its RETURNING),
    prepared once per connection. SQLite: one fenced UPDATE per job, then
    `outbox.insert_events`, in the caller's transaction.
    """
    if not finished:
        return []
    if conn.dialect.name != "postgresql":
        maybe = [
            await finish_succeeded_if_fenced(conn, job.id or 0, job.fencing_token, output)
            for job, output in finished
        ]
        done = [row for row in maybe if row is not None]
        events = await outbox.insert_events(
            conn, [(row, EventType.SUCCEEDED, {"output": row.output}) for row in done]
        )
        return list(zip(done, events, strict=True))
    rows = await fetch_prepared(
        conn, _FINISH_SUCCEEDED_MANY_IF_FENCED_WITH_EVENTS, *_finish_args(finished)
    )
    return _finished(rows, finished)


# The finish of a group and the claim of their successors, in one statement: the group's
# fenced UPDATE and its outbox rows, then up to $6 due pending jobs locked, claimed and
# given their outbox rows. The two parts touch disjoint rows (running vs pending); SKIP
# LOCKED keeps concurrent workers off each other's due rows. Rows come back claimed first
# (their columns give the UNION its types), each part in outbox order.
_FINISH_SUCCEEDED_MANY_IF_FENCED_AND_CLAIM_DUE_WITH_EVENTS = f"""{_FINISHED_FROM_UNNEST},
{_claim_due_ctes("claimed", "$4", "$5", "$6")}
SELECT false AS finished, {_claimed_columns("claimed", "event")}
    FROM claimed JOIN event ON event.job_id = claimed.id
UNION ALL
SELECT true AS finished, {_finished_columns("changed", "done_event", as_claimed=True)}
    FROM changed JOIN done_event ON done_event.job_id = changed.id
ORDER BY 1, "event.id"
"""  # noqa: S608


async def finish_succeeded_many_if_fenced_and_claim_due_with_events(
    conn: AsyncConnection,
    finished: Sequence[tuple[Job, dict[str, Any]]],
    owner: str,
    lease_seconds: float,
    limit: int,
) -> tuple[list[tuple[Job, outbox.Event]], list[tuple[Job, outbox.Event]]]:
    """`finish_succeeded_many_if_fenced_with_events`, then
    `claim_due_pending_batch_with_events` for up to `limit` jobs, in one transaction.

    A worker that finishes a group claims their successors in the same round trip and
    commit. Returns (finished, claimed), each job with its outbox row. PostgreSQL: one
    statement, prepared once per connection. SQLite: the two, in the caller's transaction.
    """
    if conn.dialect.name != "postgresql":
        done = await finish_succeeded_many_if_fenced_with_events(conn, finished)
        return done, await claim_due_pending_batch_with_events(conn, owner, lease_seconds, limit)
    rows = await fetch_prepared(
        conn,
        _FINISH_SUCCEEDED_MANY_IF_FENCED_AND_CLAIM_DUE_WITH_EVENTS,
        *_finish_args(finished),
        owner,
        float(lease_seconds),
        limit,
    )
    split = next((i for i, row in enumerate(rows) if row["finished"]), len(rows))
    return _finished(rows[split:], finished), _claimed(rows[:split], owner)


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
    re-claimed since `select_expired_leases` read it is left alone.
    """
    again = c.attempts < c.max_attempts
    stmt = (
        sa.update(jobs)
        .where(*_fenced(job_id, token), c.lease_expires_at < db_now())
        .values(
            status=sa.case((again, PENDING), else_=FAILED),
            run_after=db_now(),
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
