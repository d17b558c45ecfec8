"""Job states and event types.

This module imports nothing local: it is the vocabulary every other module shares.
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """Where a job is in its life. The database row is the only truth about it."""

    # Waiting for a worker; `run_after` may hold it back (retry backoff).
    PENDING = "pending"
    # Claimed by exactly one worker holding an unexpired lease and the current fencing token.
    RUNNING = "running"
    # Finished with an output; terminal. A resubmission is answered with this job.
    SUCCEEDED = "succeeded"
    # Gave up: a permanent error, or retryable errors until max_attempts. May be re-run.
    FAILED = "failed"
    # Cancelled by its tenant, before or while it ran. May be re-run.
    CANCELLED = "cancelled"
    # Not claimable yet: a task whose dependencies are unfinished, or a job of several tasks
    # while its tasks run (shown to clients as "running"). Its `waiting` column counts what
    # it waits for; the transaction that finishes the last of those moves it on.
    WAITING = "waiting"

    @property
    def is_rerunnable(self) -> bool:
        """A key in this state may be submitted again and run again on the same row."""
        return self in RERUNNABLE


RERUNNABLE = frozenset({JobStatus.FAILED, JobStatus.CANCELLED})


class EventType(StrEnum):
    """Outbox event types: one per state change, written in the transaction of the change."""

    SUBMITTED = "job.submitted"  # new row, pending
    RESUBMITTED = "job.resubmitted"  # failed/cancelled/expired key submitted again, pending
    CLAIMED = "job.claimed"  # pending -> running
    SUCCEEDED = "job.succeeded"  # running -> succeeded
    FAILED = "job.failed"  # running -> failed (permanent, or attempts exhausted)
    RETRY_SCHEDULED = "job.retry_scheduled"  # running -> pending with a backoff
    REQUEUED = "job.requeued"  # lease rescued, released, retried by hand, or retry now due
    CANCEL_REQUESTED = "job.cancel_requested"  # running, cancel flag set
    CANCELLED = "job.cancelled"  # pending/running -> cancelled
    # The same changes of a task row (a unit of a job of several tasks), plus `task.ready`:
    # its last dependency succeeded (waiting -> pending).
    TASK_SUBMITTED = "task.submitted"
    TASK_READY = "task.ready"
    TASK_CLAIMED = "task.claimed"
    TASK_SUCCEEDED = "task.succeeded"
    TASK_FAILED = "task.failed"
    TASK_RETRY_SCHEDULED = "task.retry_scheduled"
    TASK_REQUEUED = "task.requeued"
    TASK_CANCEL_REQUESTED = "task.cancel_requested"
    TASK_CANCELLED = "task.cancelled"

    def for_role(self, role: str | None) -> EventType:
        """The event a change of a row with this role writes: a task row's `job.x` is `task.x`."""
        if role != "task" or not self.value.startswith("job."):
            return self
        try:
            return EventType("task." + self.value.removeprefix("job."))
        except ValueError:
            return self


# Events that tell a worker there is something to claim.
WORK_EVENTS = frozenset(
    {
        EventType.SUBMITTED,
        EventType.RESUBMITTED,
        EventType.REQUEUED,
        EventType.TASK_SUBMITTED,
        EventType.TASK_READY,
        EventType.TASK_REQUEUED,
    }
)
