"""What a claim and each kind of outcome set on a job: the SET lists of the worker's
statements, written once, as SQLAlchemy values.

`jobs.fenced` runs them as SQLAlchemy statements (SQLite, and task rows on both databases);
`jobs.pgsql` compiles the same lists, once at import, into its PostgreSQL texts: the
claim's UPDATE, and the one UPDATE that records a batch of outcomes (a CASE on the kind
per column, built from the lists of every kind, or the succeeded list alone). A value is
a plain Python value, one of the outcome's `Inputs`, or an SQL expression over the row:
the worker knows the first two (`known`) and reads back only the rest (`READ_BACK`).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from jobs.db import db_now
from jobs.models import Job
from jobs.outcomes import Inputs, OutcomeKind
from jobs.status import JobStatus

c = Job.__table__.c  # type: ignore[attr-defined]
PENDING, RUNNING = JobStatus.PENDING.value, JobStatus.RUNNING.value
SUCCEEDED, FAILED, CANCELLED = (
    JobStatus.SUCCEEDED.value,
    JobStatus.FAILED.value,
    JobStatus.CANCELLED.value,
)


def claim_values(owner: Any, lease_seconds: Any) -> dict[str, Any]:
    """pending -> running for `owner`: a lease of `lease_seconds` by the database clock, a
    new fencing token, the attempt counted, progress from zero."""
    return {
        "status": RUNNING,
        "lease_owner": owner,
        "lease_expires_at": db_now(lease_seconds),
        "fencing_token": c.fencing_token + 1,
        "attempts": c.attempts + 1,
        "progress": 0.0,
        "started_at": db_now(),
        "updated_at": db_now(),
    }


def succeeded_values(output: Any) -> dict[str, Any]:
    """-> succeeded, pointing the job (a worker's, or a job of several tasks) at `output`."""
    return {
        "status": SUCCEEDED,
        "output": output,
        "progress": 1.0,
        "error_code": None,
        "error_message": None,
        "finished_at": db_now(),
        "updated_at": db_now(),
    }


def outcome_values(kind: OutcomeKind, i: Inputs) -> dict[str, Any]:
    """running -> where an outcome of `kind` leads: the columns it sets (the others stay).

    Every kind ends the lease. RETRY goes back to pending after its delay while attempts
    are left, else fails; RELEASED goes back at once and does not count the attempt."""
    ended = {"lease_owner": None, "lease_expires_at": None, "updated_at": db_now()}
    if kind is OutcomeKind.SUCCEEDED:
        return {**succeeded_values(i.output), **ended}
    error = {"error_code": i.error_code, "error_message": i.error_message}
    if kind is OutcomeKind.RETRY:
        again = c.attempts < c.max_attempts
        return {
            "status": sa.case((again, PENDING), else_=FAILED),
            "run_after": sa.case((again, db_now(i.delay_s)), else_=c.run_after),
            **error,
            "finished_at": sa.case((again, None), else_=db_now()),
            **ended,
        }
    if kind is OutcomeKind.FAILED:
        return {"status": FAILED, **error, "finished_at": db_now(), **ended}
    if kind is OutcomeKind.CANCELLED:
        return {"status": CANCELLED, "finished_at": db_now(), **ended}
    return {
        "status": PENDING,
        "attempts": sa.case((c.attempts > 0, c.attempts - 1), else_=0),
        "run_after": db_now(),
        "progress": 0.0,
        "finished_at": None,
        **ended,
    }


def _split(kind: OutcomeKind) -> tuple[dict[str, Any], list[tuple[str, int]], list[str]]:
    """What an outcome of `kind` sets: constants, its own inputs (column, position in
    `Inputs`), both known to its worker, and the columns set from the row (SQL)."""
    marks: list[Any] = [sa.literal_column(name) for name in Inputs._fields]
    at = {id(mark): n for n, mark in enumerate(marks)}
    constants: dict[str, Any] = {}
    inputs: list[tuple[str, int]] = []
    from_row: list[str] = []
    for name, v in outcome_values(kind, Inputs(*marks)).items():
        if id(v) in at:
            inputs.append((name, at[id(v)]))
        elif isinstance(v, sa.ClauseElement):
            from_row.append(name)
        else:
            constants[name] = v
    return constants, inputs, from_row


# Split once per kind: building the SQLAlchemy values again for every recorded outcome
# would cost more than the rest of reading it back.
_KNOWN = {kind: _split(kind) for kind in OutcomeKind}
# The columns that some kind sets from the row itself: a recorded outcome returns them.
READ_BACK = tuple(dict.fromkeys(name for *_, from_row in _KNOWN.values() for name in from_row))


def known(kind: OutcomeKind, i: Inputs) -> dict[str, Any]:
    """The values an outcome of `kind` sets that its worker knows (no SQL expression)."""
    constants, inputs, _ = _KNOWN[kind]
    out = dict(constants)
    for name, at in inputs:
        out[name] = i[at]
    return out
