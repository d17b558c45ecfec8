"""The PostgreSQL-only statement texts, by name, and how their rows are read back.

Named SQL in one place (River's `river_job.sql`, procrastinate's `queries.sql`): the claim
CTEs and the worker's one statement that records outcomes and claims, both data-modifying
CTEs that change jobs and write their outbox rows together. `jobs.fenced` runs them by name
(SQLite runs the same steps as SQLAlchemy statements there). What both databases share is
written once and only rendered here: the SET lists (`jobs.setlists`, compiled to text), the
outcomes' events (`jobs.outcomes.EVENTS`) and the payload columns (`jobs.outbox.PAYLOAD`);
a contract test checks that both databases store and return the same rows. Texts are
built once, at import, from constants: no input reaches them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from jobs import outbox, setlists
from jobs.models import Job, from_row
from jobs.outcomes import EVENTS, Field, Inputs, Outcome, OutcomeKind, event_extra, event_type
from jobs.setlists import PENDING, RUNNING
from jobs.status import EventType

c = Job.__table__.c  # type: ignore[attr-defined]
_PG = postgresql.dialect()  # type: ignore[no-untyped-call]


def _sql(value: Any) -> str:
    """A SET list's value as PostgreSQL text (constants inline: they are the code's own)."""
    if not isinstance(value, sa.ClauseElement):
        value = sa.null() if value is None else sa.literal(value)
    return str(value.compile(dialect=_PG, compile_kwargs={"literal_binds": True}))


def _set_list(values: dict[str, Any]) -> str:
    return ",\n        ".join(f"{name} = {_sql(v)}" for name, v in values.items())


# PostgreSQL statements that change jobs and write their outbox rows in one data-modifying
# CTE (`changed` = the UPDATE's RETURNING, `event` = the outbox INSERT fed from it) send
# back what the caller does not know yet, and nothing it does: a claim, the claimed jobs'
# columns; a finish, what may have changed under the worker (a cancel request, the progress
# its heartbeats stored) and what the statement computed; both, their outbox rows' ids as
# "event.id" and "event.event_id". Each event's payload is rebuilt here by
# `outbox.event_payload` from the columns the SQL built it from, so no JSON comes back.
JOB_COLUMNS = [col.name for col in c]
# A recorded outcome sends back those, and the columns some kind sets from the row itself;
# the rest of what it sets the worker knows (`setlists.known`).
_RECORDED_COLUMNS = tuple(
    dict.fromkeys(("id", "cancel_requested", "progress", *setlists.READ_BACK))
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
        job = from_row(Job, {name: row[name] for name in JOB_COLUMNS})
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
        inputs = o.inputs
        update = setlists.known(o.kind, inputs)
        for name in _RECORDED_COLUMNS:
            update[name] = row[name]
        job = o.job.model_copy(update=update)
        extra = event_extra(o, inputs)
        out.append((job, _event(row, job, event_type(o, job.status), **extra)))
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
    values = setlists.claim_values(sa.literal_column(owner), sa.literal_column(lease_seconds))
    set_list = _set_list(values)
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
    UPDATE jobs SET {set_list}
    WHERE jobs.id IN (SELECT id FROM due) AND jobs.status = '{PENDING}'
    RETURNING jobs.*
), event AS ({events})"""  # noqa: S608


# The outcomes a worker records in one statement: the fenced UPDATE of every job that ended,
# with one outbox row each whose type follows from the kind and the new status. The SET
# list comes from each kind's (`setlists.outcome_values`), as a CASE on the kind where
# kinds differ; a batch of successes only (a busy worker's usual batch) takes the
# succeeded list alone and skips every CASE (a second prepared text).
_IN = Inputs(
    sa.literal_column("o.output::jsonb"),
    sa.literal_column("o.error_code"),
    sa.literal_column("o.error_message"),
    sa.literal_column("o.delay_s"),
)
_KIND: sa.ColumnElement[str] = sa.literal_column("o.kind")


def _any_outcome_set() -> dict[str, Any]:
    by_kind = {kind: setlists.outcome_values(kind, _IN) for kind in OutcomeKind}
    out: dict[str, Any] = {}
    for name in JOB_COLUMNS:
        setting = {kind: v[name] for kind, v in by_kind.items() if name in v}
        if not setting:
            continue
        texts = {_sql(v) for v in setting.values()}
        if len(setting) == len(by_kind) and len(texts) == 1:  # the same for every kind
            out[name] = next(iter(setting.values()))
            continue
        whens = {kind.value: sa.null() if v is None else v for kind, v in setting.items()}
        rest = None if len(setting) == len(by_kind) else c[name]
        out[name] = sa.case(whens, value=_KIND, else_=rest)
    return out


def _jsonb(template: Any, source: str) -> str:
    """An event template of `outcomes.EVENTS` as a jsonb expression over `source`'s row."""
    if isinstance(template, dict):
        if not template:
            return "'{}'::jsonb"
        pairs = (f"'{name}', {sql}" for name, sql in _jsonb_fields(template, source).items())
        return f"jsonb_build_object({', '.join(pairs)})"
    if isinstance(template, Field):
        col = f"{source}.{template.name}"
        return col if template.limit is None else f"left({col}, {template.limit})"
    return _sql(template)


def _jsonb_fields(template: dict[str, Any], source: str) -> dict[str, str]:
    return {name: _jsonb(value, source) for name, value in template.items()}


def _type_sql(source: str) -> str:
    whens = "".join(
        f" WHEN '{kind.value}' THEN '{type_.value}'" for kind, (type_, _) in EVENTS.items() if type_
    )
    by_status = (
        f"CASE WHEN {source}.status = '{PENDING}' THEN '{EventType.RETRY_SCHEDULED.value}'"
        f" ELSE '{EventType.FAILED.value}' END"
    )
    return f"CASE {source}.kind{whens} ELSE {by_status} END"


def _extra_sql(source: str) -> str:
    whens = " ".join(
        f"WHEN '{kind.value}' THEN {_jsonb(extra, source)}" for kind, (_, extra) in EVENTS.items()
    )
    return f"CASE {source}.kind {whens} END"


_OUTCOME_SET = _any_outcome_set()
_SUCCESS_SET = setlists.outcome_values(OutcomeKind.SUCCEEDED, _IN)
OUTCOME_EVENT_TYPE = _type_sql("recorded")
OUTCOME_EVENT_EXTRA = _extra_sql("recorded")
# What the outcomes' UPDATE returns: its outbox rows' payload columns and output, and
# what the caller reads back (`_RECORDED_COLUMNS`).
_RETURNED = dict.fromkeys([*outbox.PAYLOAD.values(), "output", *_RECORDED_COLUMNS])
_RECORDED_RETURNING = ", ".join(f"jobs.{name}" for name in _RETURNED)
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
    set_list = _set_list(_SUCCESS_SET if successes_only else _OUTCOME_SET)
    if successes_only:
        type_, extra_of = EVENTS[OutcomeKind.SUCCEEDED]
        assert type_ is not None
        events = outbox.insert_events_from_sql(
            "recorded",
            f"'{type_.value}'",
            _jsonb_fields(extra_of, "recorded"),
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
    RETURNING {_RECORDED_RETURNING}, o.ord{extra}
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
