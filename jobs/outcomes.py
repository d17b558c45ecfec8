"""What a worker's job ended with: an outcome, carried with the fencing token it was run under.

A job's task queues one `Outcome` and ends; the worker's loop records every queued outcome
in one fenced statement (`jobs.fenced.record_outcomes_and_claim_due`) together with the claim
of the jobs that take their slots. Each kind names the state it leads to and its outbox row.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

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
    def error(self) -> dict[str, Any] | None:
        """The error an event reports (RETRY, FAILED), as `job.failed` has always carried it."""
        if self.kind not in (OutcomeKind.RETRY, OutcomeKind.FAILED):
            return None
        return {
            "code": (self.error_code or "")[:64],
            "message": (self.error_message or "")[:500],
            "retryable": self.kind is OutcomeKind.RETRY,
        }


def succeeded(job: Job, output: dict[str, Any]) -> Outcome:
    return Outcome(job, OutcomeKind.SUCCEEDED, output=output)


def failed(job: Job, code: str, message: str, *, retryable: bool, delay: float = 0.0) -> Outcome:
    kind = OutcomeKind.RETRY if retryable else OutcomeKind.FAILED
    return Outcome(job, kind, error_code=code, error_message=message, delay_seconds=delay)


def cancelled(job: Job) -> Outcome:
    return Outcome(job, OutcomeKind.CANCELLED)


def released(job: Job) -> Outcome:
    return Outcome(job, OutcomeKind.RELEASED)


def event_type(o: Outcome, status: str) -> EventType:
    """The outbox row an outcome writes (the SQL's `pgsql.OUTCOME_EVENT_TYPE`)."""
    if o.kind is OutcomeKind.SUCCEEDED:
        return EventType.SUCCEEDED
    if o.kind is OutcomeKind.CANCELLED:
        return EventType.CANCELLED
    if o.kind is OutcomeKind.RELEASED:
        return EventType.REQUEUED
    return EventType.RETRY_SCHEDULED if status == JobStatus.PENDING else EventType.FAILED


def event_extra(o: Outcome) -> dict[str, Any]:
    """What an outcome's event adds to the job's payload (`pgsql.OUTCOME_EVENT_EXTRA`)."""
    if o.kind is OutcomeKind.SUCCEEDED:
        return {"output": o.output}
    if o.kind is OutcomeKind.RELEASED:
        return {"reason": "released"}
    error = o.error
    return {} if error is None else {"error": error}
