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
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from jobs import outbox
from jobs.db import db_now, fetch_prepared, insert_on_conflict
from jobs.models import Job, Tenant
from jobs.outcomes import Outcome, OutcomeKind
from jobs.status import EventType, JobStatus

jobs = Job.__table__  # type: ignore[attr-defined]
tenants = Tenant.__table__  # type: ignore[attr-defined]
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
_RECORDED_COLUMNS = (
    "id",
    "status",
    "attempts",
    "run_after",
    "cancel_requested",
    "finished_at",
    "updated_at",
)


def _event_ids(event: str) -> list[str]:
    return [f'{event}.id AS "event.id"', f'{event}.event_id AS "event.event_id"']


def _claimed_columns(job: str, event: str) -> str:
    return ", ".join([f"{job}.{name}" for name in _JOB_COLUMNS] + _event_ids(event))


def _recorded_columns(job: str, event: str) -> str:
    """A recorded outcome's columns, in the claim's column list (NULL elsewhere)."""
    cols = [f"{job}.{n}" if n in _RECORDED_COLUMNS else "NULL" for n in _JOB_COLUMNS]
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


def _event_type(o: Outcome, status: str) -> EventType:
    """The outbox row an outcome writes (the SQL's `_OUTCOME_EVENT_TYPE`)."""
    if o.kind is OutcomeKind.SUCCEEDED:
        return EventType.SUCCEEDED
    if o.kind is OutcomeKind.CANCELLED:
        return EventType.CANCELLED
    if o.kind is OutcomeKind.RELEASED:
        return EventType.REQUEUED
    return EventType.RETRY_SCHEDULED if status == PENDING else EventType.FAILED


def _event_extra(o: Outcome) -> dict[str, Any]:
    """What an outcome's event adds to the job's payload (the SQL's `_OUTCOME_EVENT_EXTRA`)."""
    if o.kind is OutcomeKind.SUCCEEDED:
        return {"output": o.output}
    if o.kind is OutcomeKind.RELEASED:
        return {"reason": "released"}
    error = o.error
    return {} if error is None else {"error": error}


def _recorded(
    rows: Sequence[Mapping[str, Any]], outcomes: Sequence[Outcome]
) -> list[tuple[Job, outbox.Event]]:
    """The jobs as the outcomes left them: the worker's claimed row plus what the fenced
    UPDATE set (the same values, in the same statement) and the columns it returned."""
    by_id = {o.job.id: o for o in outcomes}
    out: list[tuple[Job, outbox.Event]] = []
    for row in rows:
        o = by_id[row["id"]]
        update: dict[str, Any] = {name: row[name] for name in _RECORDED_COLUMNS}
        update.update(lease_owner=None, lease_expires_at=None)
        if o.kind is OutcomeKind.SUCCEEDED:
            update.update(output=o.output, progress=1.0, error_code=None, error_message=None)
        elif o.kind is OutcomeKind.RELEASED:
            update.update(progress=0.0)
        elif o.kind is not OutcomeKind.CANCELLED:
            update.update(
                error_code=(o.error_code or "")[:64], error_message=(o.error_message or "")[:2000]
            )
        job = o.job.model_copy(update=update)
        out.append((job, _event(row, job, _event_type(o, job.status), **_event_extra(o))))
    return out


# --- submission -------------------------------------------------------------------------


async def insert_job_if_absent(
    conn: AsyncConnection, values: dict[str, Any], *, run_at: dt.datetime | None = None
) -> Job | None:
    """INSERT ... ON CONFLICT (tenant_id, key) DO NOTHING: the new job, or None if it exists.

    `run_at`: not claimable before then (a scheduled job); else due at once."""
    row = {
        **values,
        "status": PENDING,
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


async def requeue_if_failed_or_cancelled(
    conn: AsyncConnection, tenant_id: str, key: str, changes: dict[str, Any] | None = None
) -> Job | None:
    """failed/cancelled -> pending on the same row, attempts reset (resubmit or retry).

    `changes` may set other columns too (a resubmission's labels, priority, `run_after`)."""
    values: dict[str, Any] = {
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
    stmt = (
        sa.update(jobs)
        .where(c.tenant_id == tenant_id, c.key == key, c.status.in_(RERUNNABLE))
        .values(**values)
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


# Statement texts are built once, at import, from constants: no input reaches them.
def _claim_due_ctes(claimed: str, owner: str, lease_seconds: str, limit: str) -> str:
    """CTEs `turn` (each tenant's running jobs and cap), `candidate` (per tenant, its next
    due pending jobs, locked with SKIP LOCKED, each with its turn), `due` (the chosen ids),
    `{claimed}` (their conditional claim UPDATE) and `event` (their `job.claimed` outbox
    rows), with parameter placeholders for owner, lease and limit.

    Order: priority first; among equal priority the tenants take turns (turn = the tenant's
    running jobs + the job's rank among its tenant's due jobs), then age. Each tenant offers
    at most `limit` candidates (and no more than its `max_running` leaves free), read from
    its own slice of the pending index, so a claim costs the same with one job due or a
    million. Candidates that are not chosen stay locked only until the statement commits.
    """
    events = outbox.insert_events_from_sql(
        claimed,
        f"'{EventType.CLAIMED.value}'",
        {"owner": f"{owner}::text"},
        f"{claimed}.priority DESC, {claimed}.id",
    )
    return f"""turn AS (
    SELECT t.id AS tenant_id, t.max_running, count(r.id) AS running
    FROM tenants t LEFT JOIN jobs r ON r.tenant_id = t.id AND r.status = '{RUNNING}'
    GROUP BY t.id, t.max_running
), candidate AS (
    SELECT p.id, p.priority, p.run_after, turn.running + row_number() OVER (
            PARTITION BY turn.tenant_id ORDER BY p.priority DESC, p.run_after, p.id) AS turn
    FROM turn CROSS JOIN LATERAL (
        SELECT j.id, j.priority, j.run_after FROM jobs j
        WHERE j.tenant_id = turn.tenant_id AND j.status = '{PENDING}'
            AND j.run_after <= statement_timestamp()
        ORDER BY j.priority DESC, j.run_after, j.id
        LIMIT CASE WHEN turn.max_running IS NULL THEN {limit}
            ELSE least({limit}, greatest(turn.max_running - turn.running, 0)) END
        FOR UPDATE SKIP LOCKED
    ) p
), due AS (
    SELECT id FROM candidate ORDER BY priority DESC, turn, run_after, id LIMIT {limit}
), {claimed} AS (
    UPDATE jobs SET status = '{RUNNING}', lease_owner = {owner},
        lease_expires_at = statement_timestamp() + {lease_seconds}::float8 * interval '1 second',
        fencing_token = jobs.fencing_token + 1, attempts = jobs.attempts + 1, progress = 0.0,
        started_at = statement_timestamp(), updated_at = statement_timestamp()
    WHERE jobs.id IN (SELECT id FROM due) AND jobs.status = '{PENDING}'
    RETURNING jobs.*
), event AS ({events})"""  # noqa: S608


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


# The outcomes a worker records in one statement: the fenced UPDATE of every job that ended,
# with one outbox row each whose type follows from the kind and the new status. The SET list
# is written once, as (any kind, a batch of successes only): a busy worker's usual batch is
# all successes, and its statement then skips every CASE (a second prepared text, built
# from the same table).
_AGAIN = "(o.kind = 'retry' AND jobs.attempts < jobs.max_attempts)"
_TERMINAL = (
    f"(o.kind IN ('succeeded', 'failed', 'cancelled') OR (o.kind = 'retry' AND NOT {_AGAIN}))"
)
_NOW = "statement_timestamp()"
_RECORD_SET: list[tuple[str, str, str]] = [
    (
        "status",
        f"CASE WHEN o.kind = 'succeeded' THEN '{SUCCEEDED}' WHEN o.kind = 'cancelled'"
        f" THEN '{CANCELLED}' WHEN o.kind = 'released' OR {_AGAIN} THEN '{PENDING}'"
        f" ELSE '{FAILED}' END",
        f"'{SUCCEEDED}'",
    ),
    (
        "output",
        "CASE WHEN o.kind = 'succeeded' THEN o.output::jsonb ELSE jobs.output END",
        "o.output::jsonb",
    ),
    (
        "progress",
        "CASE o.kind WHEN 'succeeded' THEN 1.0 WHEN 'released' THEN 0.0 ELSE jobs.progress END",
        "1.0",
    ),
    (
        "attempts",
        "CASE WHEN o.kind = 'released' THEN greatest(jobs.attempts - 1, 0) ELSE jobs.attempts END",
        "jobs.attempts",
    ),
    (
        "run_after",
        f"CASE WHEN o.kind = 'released' THEN {_NOW} WHEN {_AGAIN}"
        f" THEN {_NOW} + o.delay_s * interval '1 second' ELSE jobs.run_after END",
        "jobs.run_after",
    ),
    (
        "error_code",
        "CASE WHEN o.kind IN ('retry', 'failed') THEN o.error_code"
        " WHEN o.kind = 'succeeded' THEN NULL ELSE jobs.error_code END",
        "NULL",
    ),
    (
        "error_message",
        "CASE WHEN o.kind IN ('retry', 'failed') THEN o.error_message"
        " WHEN o.kind = 'succeeded' THEN NULL ELSE jobs.error_message END",
        "NULL",
    ),
    ("finished_at", f"CASE WHEN {_TERMINAL} THEN {_NOW} ELSE NULL END", _NOW),
    ("lease_owner", "NULL", "NULL"),
    ("lease_expires_at", "NULL", "NULL"),
    ("updated_at", _NOW, _NOW),
]
_OUTCOME_EVENT_TYPE = (
    f"CASE recorded.kind WHEN 'succeeded' THEN '{EventType.SUCCEEDED.value}'"
    f" WHEN 'cancelled' THEN '{EventType.CANCELLED.value}'"
    f" WHEN 'released' THEN '{EventType.REQUEUED.value}'"
    f" ELSE CASE WHEN recorded.status = '{PENDING}' THEN '{EventType.RETRY_SCHEDULED.value}'"
    f" ELSE '{EventType.FAILED.value}' END END"
)
_OUTCOME_EVENT_EXTRA = (
    "CASE recorded.kind WHEN 'succeeded' THEN jsonb_build_object('output', recorded.output)"
    " WHEN 'cancelled' THEN '{}'::jsonb"
    " WHEN 'released' THEN jsonb_build_object('reason', 'released')"
    " ELSE jsonb_build_object('error', jsonb_build_object('code', recorded.error_code,"
    " 'message', left(recorded.error_message, 500), 'retryable', recorded.kind = 'retry')) END"
)
# The outcome arrays ($1..) of each form, and what each element is.
_ANY_OUTCOME = ["id bigint", "token bigint", "kind text", "output text", "error_code text",
                "error_message text", "delay_s float8"]  # fmt: skip
_SUCCESS = ["id bigint", "token bigint", "output text"]


def _record_and_claim_sql(successes_only: bool) -> str:
    """The statement text: the outcomes' fenced UPDATE and outbox rows, then the claim of
    up to `limit` due jobs (`_claim_due_ctes`). The two parts touch disjoint rows (running
    vs pending). Rows come back claimed first (their columns give the UNION its types),
    each part in outbox order."""
    cols = _SUCCESS if successes_only else _ANY_OUTCOME
    arrays = ", ".join(f"${i}::{col.split()[1]}[]" for i, col in enumerate(cols, 1))
    names = ", ".join(col.split()[0] for col in cols)
    n = len(cols)
    set_list = ",\n        ".join(
        f"{col} = {only if successes_only else any_}"
        for col, any_, only in _RECORD_SET
        if not (successes_only and only == f"jobs.{col}")  # unchanged: not in the SET list
    )
    if successes_only:
        events = outbox.insert_events_from_sql(
            "recorded",
            f"'{EventType.SUCCEEDED.value}'",
            {"output": "recorded.output"},
            "recorded.ord",
        )
        extra = ""
    else:
        events = outbox.insert_events_from_sql(
            "recorded", _OUTCOME_EVENT_TYPE, {}, "recorded.ord", extra_sql=_OUTCOME_EVENT_EXTRA
        )
        extra = ", o.kind, o.error_code, o.error_message"
    claim = _claim_due_ctes("claimed", f"${n + 1}", f"${n + 2}", f"${n + 3}")
    return f"""
WITH o AS (
    SELECT * FROM unnest({arrays}) WITH ORDINALITY AS o({names}, ord)
), recorded AS (
    UPDATE jobs SET
        {set_list}
    FROM o
    WHERE jobs.id = o.id AND jobs.status = '{RUNNING}' AND jobs.fencing_token = o.token
    RETURNING jobs.id, jobs.tenant_id, jobs.key, jobs.status, jobs.attempts,
        jobs.fencing_token, jobs.output, jobs.run_after, jobs.cancel_requested,
        jobs.finished_at, jobs.updated_at, o.ord{extra}
), done_event AS ({events}),
{claim}
SELECT false AS recorded, {_claimed_columns("claimed", "event")}
    FROM claimed JOIN event ON event.job_id = claimed.id
UNION ALL
SELECT true AS recorded, {_recorded_columns("recorded", "done_event")}
    FROM recorded JOIN done_event ON done_event.job_id = recorded.id
ORDER BY 1, "event.id"
"""  # noqa: S608


_RECORD_OUTCOMES_AND_CLAIM_DUE = _record_and_claim_sql(successes_only=False)
_RECORD_SUCCESSES_AND_CLAIM_DUE = _record_and_claim_sql(successes_only=True)


def _outcome_args(outcomes: Sequence[Outcome]) -> tuple[str, list[list[Any]]]:
    """The statement for these outcomes and its outcome arrays."""
    ids = [o.job.id for o in outcomes]
    tokens = [o.job.fencing_token for o in outcomes]
    outputs = [None if o.output is None else json.dumps(o.output) for o in outcomes]
    if all(o.kind is OutcomeKind.SUCCEEDED for o in outcomes):
        return _RECORD_SUCCESSES_AND_CLAIM_DUE, [ids, tokens, outputs]
    return _RECORD_OUTCOMES_AND_CLAIM_DUE, [
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
            row = await _record_one(conn, o)
            if row is not None:
                recorded.append((o, row))
        events = await outbox.insert_events(
            conn,
            [(job, EventType.CLAIMED, {"owner": owner}) for job in claimed]
            + [(row, _event_type(o, row.status), _event_extra(o)) for o, row in recorded],
        )
        return (
            list(zip([row for _, row in recorded], events[len(claimed) :], strict=True)),
            list(zip(claimed, events[: len(claimed)], strict=True)),
        )
    sql, arrays = _outcome_args(outcomes)
    rows = await fetch_prepared(conn, sql, *arrays, owner, float(lease_seconds), max(0, limit))
    split = next((i for i, row in enumerate(rows) if row["recorded"]), len(rows))
    return _recorded(rows[split:], outcomes), _claimed(rows[:split], owner)


async def _record_one(conn: AsyncConnection, o: Outcome) -> Job | None:
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
