"""What a worker's job ended with: an outcome, carried with the fencing token it was run under.

A job's task queues one `Outcome` and ends; the worker's loop records every queued outcome
in one fenced statement (`jobs.fenced.record_outcomes_and_claim_due`) together with the claim
of the jobs that take their slots. Each kind names the state it leads to and its outbox row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

from jobs.models import Job
from jobs.status import EventType, JobStatus


class OutcomeKind(StrEnum):
    SUCCEEDED = "succeeded"  # -> succeeded, `job.succeeded` with the output
    # -> pending after a delay while attempts are left (`job.retry_scheduled`), else failed
    RETRY = "retry"
    FAILED = "failed"  # -> failed at once (`job.failed`): a permanent error
    CANCELLED = "cancelled"  # -> cancelled (`job.cancelled`): a cancel request honoured
    RELEASED = "released"  # -> pending at once, attempt not counted (`job.requeued`): shutdown


@dataclass(frozen=True, slots=True)
class Outcome:
    """One job's end, as the worker that ran it under `job.fencing_token` saw it."""

    job: Job
    kind: OutcomeKind
    output: dict[str, Any] | None = None
    error_code: str | None = None
    error_message: str | None = None
    delay_seconds: float = 0.0  # RETRY: how long until the job is due again

    @property
    def inputs(self) -> Inputs:
        """What this outcome brings to the statement that records it, as it is stored."""
        return Inputs(
            self.output,
            (self.error_code or "")[:64],
            (self.error_message or "")[:2000],
            float(self.delay_seconds),
        )


class Inputs(NamedTuple):
    """What an outcome brings to its statement: these values (SQLite, and the job as the
    statement left it), or the columns that carry them in `jobs.pgsql`'s statement."""

    output: Any
    error_code: Any
    error_message: Any
    delay_s: Any


def succeeded(job: Job, output: dict[str, Any]) -> Outcome:
    return Outcome(job, OutcomeKind.SUCCEEDED, output=output)


def failed(job: Job, code: str, message: str, *, retryable: bool, delay: float = 0.0) -> Outcome:
    kind = OutcomeKind.RETRY if retryable else OutcomeKind.FAILED
    return Outcome(job, kind, error_code=code, error_message=message, delay_seconds=delay)


def cancelled(job: Job) -> Outcome:
    return Outcome(job, OutcomeKind.CANCELLED)


def released(job: Job) -> Outcome:
    return Outcome(job, OutcomeKind.RELEASED)


@dataclass(frozen=True, slots=True)
class Field:
    """In an event's payload: one of the outcome's `Inputs`, cut to `limit` characters."""

    name: str
    limit: int | None = None


def _error(retryable: bool) -> dict[str, Any]:
    return {
        "error": {
            "code": Field("error_code"),
            "message": Field("error_message", 500),
            "retryable": retryable,
        }
    }


# Each kind's outbox row, written once: its type (None: `job.retry_scheduled` when the job
# went back to pending, else `job.failed`) and what it adds to the job's payload.
# `event_type` and `event_extra` read it here; `jobs.pgsql` renders it as SQL.
EVENTS: dict[OutcomeKind, tuple[EventType | None, dict[str, Any]]] = {
    OutcomeKind.SUCCEEDED: (EventType.SUCCEEDED, {"output": Field("output")}),
    OutcomeKind.RETRY: (None, _error(True)),
    OutcomeKind.FAILED: (None, _error(False)),
    OutcomeKind.CANCELLED: (EventType.CANCELLED, {}),
    OutcomeKind.RELEASED: (EventType.REQUEUED, {"reason": "released"}),
}


def event_type(o: Outcome, status: str) -> EventType:
    """The type of the outbox row an outcome writes, given the job's new status."""
    fixed = EVENTS[o.kind][0]
    if fixed is not None:
        return fixed
    return EventType.RETRY_SCHEDULED if status == JobStatus.PENDING else EventType.FAILED


def _builder(template: Any) -> Callable[[Inputs], Any]:
    """A function that fills `template` in from an outcome's inputs (built once per kind:
    a recorded outcome's event is on the worker's hot path)."""
    if isinstance(template, dict):
        parts = [(name, _builder(value)) for name, value in template.items()]
        return lambda i: {name: part(i) for name, part in parts}
    if isinstance(template, Field):
        at, limit = Inputs._fields.index(template.name), template.limit
        return (lambda i: i[at]) if limit is None else (lambda i: i[at][:limit])
    return lambda i: template


_EXTRA = {kind: _builder(extra) for kind, (_, extra) in EVENTS.items()}


def event_extra(o: Outcome, inputs: Inputs | None = None) -> dict[str, Any]:
    """What an outcome's event adds to the job's payload (`inputs`: `o.inputs`, if the
    caller has them already)."""
    extra: dict[str, Any] = _EXTRA[o.kind](o.inputs if inputs is None else inputs)
    return extra
