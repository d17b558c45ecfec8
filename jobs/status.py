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


# Events that tell a worker there is something to claim.
WORK_EVENTS = frozenset({EventType.SUBMITTED, EventType.RESUBMITTED, EventType.REQUEUED})
