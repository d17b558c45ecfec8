"""The PostgreSQL-only statement texts, by name, and how their rows are read back.

Named SQL in one place (River's `river_job.sql`, procrastinate's `queries.sql`): the claim
CTEs and the worker's one statement that records outcomes and claims, both data-modifying
CTEs that change jobs and write their outbox rows together. `jobs.statements` runs them by
name (SQLite runs the same steps as SQLAlchemy statements there); a contract test checks
that both databases store and return the same rows. Texts are built once, at import, from
constants: no input reaches them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from jobs import outbox
from jobs.models import Job
from jobs.outcomes import Outcome, OutcomeKind, event_extra, event_type
from jobs.status import EventType, JobStatus

c = Job.__table__.c  # type: ignore[attr-defined]
PENDING, RUNNING = JobStatus.PENDING.value, JobStatus.RUNNING.value
SUCCEEDED, FAILED, CANCELLED = (
    JobStatus.SUCCEEDED.value,
    JobStatus.FAILED.value,
    JobStatus.CANCELLED.value,
)


# PostgreSQL statements that change jobs and write their outbox rows in one data-modifying
# CTE (`changed` = the UPDATE's RETURNING, `event` = the outbox INSERT fed from it) send
# back what the caller does not know yet, and nothing it does: a claim, the claimed jobs'
# columns; a finish, only what may have changed under the worker (a cancel request) and
# when; both, their outbox rows' ids as "event.id" and "event.event_id". Each event's
# payload is rebuilt here by `outbox.event_payload` from the columns the SQL built it from,
# so no JSON comes back to be decoded.
JOB_COLUMNS = [col.name for col in c]
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
    return ", ".join([f"{job}.{name}" for name in JOB_COLUMNS] + _event_ids(event))


def _recorded_columns(job: str, event: str) -> str:
    """A recorded outcome's columns, in the claim's column list (NULL elsewhere)."""
    cols = [f"{job}.{n}" if n in _RECORDED_COLUMNS else "NULL" for n in JOB_COLUMNS]
    return ", ".join(cols + _event_ids(event))


def _event(
    row: Mapping[str, Any], job: Job, type_: EventType, **extra: Any
) -> outbox.CommittedEvent:
    return outbox.CommittedEvent(row["event.id"], row["event.event_id"], type_.value, job, extra)


def claimed_rows(rows: Sequence[Mapping[str, Any]], owner: str) -> list[tuple[Job, outbox.Event]]:
    out: list[tuple[Job, outbox.Event]] = []
    for row in rows:
        job = Job.model_construct(**{name: row[name] for name in JOB_COLUMNS})
        type_ = EventType.TASK_CLAIMED if row["role"] == "task" else EventType.CLAIMED
        out.append((job, _event(row, job, type_, owner=owner)))
    return out


def recorded_rows(
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
        out.append((job, _event(row, job, event_type(o, job.status), **event_extra(o))))
    return out


SELECT_JOB_BY_KEY = f"SELECT {', '.join(JOB_COLUMNS)} FROM jobs WHERE tenant_id = $1 AND key = $2"  # noqa: S608


# Statement texts are built once, at import, from constants: no input reaches them.
def claim_due_ctes(claimed: str, owner: str, lease_seconds: str, limit: str) -> str:
    """CTEs `turn` (each tenant's running jobs and cap), `candidate` (per tenant, its next
    due pending jobs, locked with SKIP LOCKED, each with its turn), `due` (the chosen ids),
    `{claimed}` (their conditional claim UPDATE) and `event` (their `job.claimed` outbox
    rows), with parameter placeholders for owner, lease and limit.

    Order: priority first; among equal priority the tenants take turns (turn = the tenant's
    running jobs + the job's rank among its tenant's due jobs), then age. Each tenant offers
    at most `limit` candidates (and no more than its `max_running` leaves free), read from
    its own slice of the pending index, so a claim costs the same with one job due or a
    million. Candidates that are not chosen stay locked only until the statement commits.
    `due` is MATERIALIZED: the UPDATE's `IN (SELECT id FROM due)` must read one evaluation,
    never a planner's rescan of the locking subquery (which could claim past the limit).
    """
    events = outbox.insert_events_from_sql(
        claimed,
        f"CASE WHEN {claimed}.role = 'task' THEN '{EventType.TASK_CLAIMED.value}'"
        f" ELSE '{EventType.CLAIMED.value}' END",
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
), due AS MATERIALIZED (
    SELECT id FROM candidate ORDER BY priority DESC, turn, run_after, id LIMIT {limit}
), {claimed} AS (
    UPDATE jobs SET status = '{RUNNING}', lease_owner = {owner},
        lease_expires_at = statement_timestamp() + {lease_seconds}::float8 * interval '1 second',
        fencing_token = jobs.fencing_token + 1, attempts = jobs.attempts + 1, progress = 0.0,
        started_at = statement_timestamp(), updated_at = statement_timestamp()
    WHERE jobs.id IN (SELECT id FROM due) AND jobs.status = '{PENDING}'
    RETURNING jobs.*
), event AS ({events})"""  # noqa: S608


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
RECORD_SET: list[tuple[str, str, str]] = [
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
OUTCOME_EVENT_TYPE = (
    f"CASE recorded.kind WHEN 'succeeded' THEN '{EventType.SUCCEEDED.value}'"
    f" WHEN 'cancelled' THEN '{EventType.CANCELLED.value}'"
    f" WHEN 'released' THEN '{EventType.REQUEUED.value}'"
    f" ELSE CASE WHEN recorded.status = '{PENDING}' THEN '{EventType.RETRY_SCHEDULED.value}'"
    f" ELSE '{EventType.FAILED.value}' END END"
)
OUTCOME_EVENT_EXTRA = (
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
    up to `limit` due jobs (`claim_due_ctes`). The two parts touch disjoint rows (running
    vs pending). Rows come back claimed first (their columns give the UNION its types),
    each part in outbox order."""
    cols = _SUCCESS if successes_only else _ANY_OUTCOME
    arrays = ", ".join(f"${i}::{col.split()[1]}[]" for i, col in enumerate(cols, 1))
    names = ", ".join(col.split()[0] for col in cols)
    n = len(cols)
    set_list = ",\n        ".join(
        f"{col} = {only if successes_only else any_}"
        for col, any_, only in RECORD_SET
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
            "recorded", OUTCOME_EVENT_TYPE, {}, "recorded.ord", extra_sql=OUTCOME_EVENT_EXTRA
        )
        extra = ", o.kind, o.error_code, o.error_message"
    claim = claim_due_ctes("claimed", f"${n + 1}", f"${n + 2}", f"${n + 3}")
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


RECORD_OUTCOMES_AND_CLAIM_DUE = _record_and_claim_sql(successes_only=False)
RECORD_SUCCESSES_AND_CLAIM_DUE = _record_and_claim_sql(successes_only=True)
