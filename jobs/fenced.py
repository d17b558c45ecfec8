"""The worker's statements on jobs: claims, and what a worker does under a fence.

A claim takes due pending jobs (one by key, or the next ones in claim order) and gives each
a lease and a new fencing token. A fenced statement (a worker acting on a job it claimed)
carries that token in its WHERE clause and returns None when it no longer matches: the job
was rescued, cancelled or claimed again meanwhile, and nothing changed. Rescue takes jobs
whose lease ran out back from dead or partitioned workers. Callers own the transaction.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from jobs import outbox, pgsql
from jobs.db import db_now, fetch_prepared
from jobs.models import Job, Tenant
from jobs.outcomes import Outcome, OutcomeKind, event_extra, event_type
from jobs.setlists import claim_values, outcome_values
from jobs.statements import FAILED, PENDING, RUNNING, c, jobs, row_of, rows_of
from jobs.status import EventType

tenants = Tenant.__table__  # type: ignore[attr-defined]
_PENDING_LITERAL = sa.literal_column(f"'{PENDING}'", sa.String)


# --- claims -----------------------------------------------------------------------------


def _claim_values(owner: str, lease_seconds: float) -> dict[str, Any]:
    return claim_values(owner, sa.bindparam("lease_s", lease_seconds, sa.Float))


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
    return row_of(await conn.execute(stmt))


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


@functools.lru_cache(maxsize=64)
def _claim_batch(limit: int) -> sa.Update:
    """The batch claim for `limit` jobs, built once (building it cost about a millisecond
    of a claim's few); the owner and the lease are its parameters."""
    owner = sa.bindparam("owner", type_=sa.String)
    return (
        sa.update(jobs)
        .where(c.id.in_(_due_pending_ids(limit).scalar_subquery()), c.status == PENDING)
        .values(**claim_values(owner, sa.bindparam("lease_s", type_=sa.Float)))
        .returning(*c)
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
    params = {"owner": owner, "lease_s": float(lease_seconds)}
    claimed = rows_of(await conn.execute(_claim_batch(limit), params))
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
    return row_of(await conn.execute(stmt))


def _outcome_args(outcomes: Sequence[Outcome]) -> tuple[str, list[list[Any]]]:
    """The statement for these outcomes and its outcome arrays."""
    ids = [o.job.id for o in outcomes]
    tokens = [o.job.fencing_token for o in outcomes]
    outputs = [None if o.output is None else json.dumps(o.output) for o in outcomes]
    if all(o.kind is OutcomeKind.SUCCEEDED for o in outcomes):
        return pgsql.RECORD_SUCCESSES_AND_CLAIM_DUE, [ids, tokens, outputs]
    inputs = [o.inputs for o in outcomes]
    return pgsql.RECORD_OUTCOMES_AND_CLAIM_DUE, [
        ids,
        tokens,
        [o.kind.value for o in outcomes],
        outputs,
        [i.error_code for i in inputs],
        [i.error_message for i in inputs],
        [i.delay_s for i in inputs],
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
    """running -> where the outcome leads (`setlists.outcome_values`), if still fenced; no
    outbox row. The job as recorded, or None."""
    stmt = (
        sa.update(jobs)
        .where(*_fenced(o.job.id or 0, o.job.fencing_token))
        .values(**outcome_values(o.kind, o.inputs))
        .returning(*c)
    )
    return row_of(await conn.execute(stmt))


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
    return row_of(await conn.execute(stmt))
