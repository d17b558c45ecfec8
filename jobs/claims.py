"""Worker-side transactions: record outcomes and claim, heartbeat, claim by key, rescue.

Each method is one transaction and keeps no state between calls: a named statement from
`jobs.statements` and, when the state changed, its outbox row. A worker's loop records the
outcomes of its ended jobs and claims their successors with `complete` (one statement on
PostgreSQL); a fenced outcome that no longer matches changes nothing, so a zombie can
neither change the job nor publish its output.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from jobs import fenced, outbox, outcomes, statements
from jobs.backoff import backoff_seconds
from jobs.db import Database, execute_outside_transaction
from jobs.errors import LostFence
from jobs.models import Job
from jobs.outcomes import Outcome
from jobs.service import AfterCommit
from jobs.settings import Settings
from jobs.status import EventType, JobStatus
from jobs.tasks import graph


@dataclass(frozen=True)
class Heartbeat:
    job: Job
    cancel_requested: bool


@dataclass(frozen=True)
class Cycle:
    """What one `complete` did: each outcome's job as recorded (None: it lost its fence),
    in the order given, and the jobs claimed, in claim order."""

    recorded: list[Job | None]
    claimed: list[Job]


class ClaimService:
    """What a worker, the reaper and the fleet consumers do to jobs, one transaction each."""

    def __init__(
        self, db: Database, settings: Settings, *, after_commit: AfterCommit | None = None
    ) -> None:
        self.db = db
        self.settings = settings
        self.after_commit = after_commit

    def _notify(self, events: Sequence[outbox.Event]) -> None:
        if events and self.after_commit is not None:
            self.after_commit(events)

    async def complete(
        self,
        ended: Sequence[Outcome],
        owner: str,
        claim: int,
        *,
        conn: AsyncConnection | None = None,
    ) -> Cycle:
        """Record the outcomes (each fenced, with its outbox row) and claim up to `claim`
        due jobs for `owner`, in one transaction: on PostgreSQL one statement.

        Claims take the highest priority first, tenants of equal priority in turn, then
        the oldest; a tenant's `max_running` caps it. `conn`: the caller's PostgreSQL
        connection, outside a transaction (a worker loop keeps one); SQLite ignores it.
        """
        if not ended and claim <= 0:
            return Cycle([], [])
        # A task row's outcome moves the rows that wait for it: its own transaction each
        # (`jobs.tasks.graph`). Simple jobs' outcomes stay in the one batched statement.
        by_id: dict[int | None, Job] = {}
        of_tasks = [o for o in ended if o.job.role == statements.TASK]
        plain = [o for o in ended if o.job.role != statements.TASK] if of_tasks else ended
        for o in of_tasks:
            async with self.db.transaction() as tx:
                row, events = await graph.record_outcome(tx, o)
            self._notify(events)
            if row is not None:
                by_id[o.job.id] = row
        if plain or claim > 0:
            if conn is not None and self.db.is_postgres:
                recorded, claimed = await fenced.record_outcomes_and_claim_due(
                    conn, plain, owner, self.settings.lease_seconds, claim
                )
            else:
                async with self.db.single_statement() as own:
                    recorded, claimed = await fenced.record_outcomes_and_claim_due(
                        own, plain, owner, self.settings.lease_seconds, claim
                    )
        else:
            recorded, claimed = [], []
        self._notify([event for _, event in claimed] + [event for _, event in recorded])
        by_id.update((job.id, job) for job, _ in recorded)
        return Cycle([by_id.get(o.job.id) for o in ended], [job for job, _ in claimed])

    async def loop_connection(self) -> AsyncConnection | None:
        """A PostgreSQL connection for a worker loop's `complete` statements, kept by the
        loop (None on SQLite): no pool checkout per cycle. Its session plans statements
        generically: left to choose, PostgreSQL re-plans the record-and-claim statement on
        every call (custom plans), which costs about a third of its CPU."""
        if not self.db.is_postgres:
            return None
        conn = await self.db.engine.connect()
        try:
            await execute_outside_transaction(conn, "SET plan_cache_mode = force_generic_plan")
        except BaseException:
            await self.release_loop_connection(conn, broken=True)
            raise
        return conn

    async def release_loop_connection(self, conn: AsyncConnection, *, broken: bool) -> None:
        """Give a loop's connection back: reset, to the pool; or, after a failure (a server
        that killed it can leave the driver mid-protocol), invalidated and never reused."""
        if not broken:
            try:
                await execute_outside_transaction(conn, "RESET plan_cache_mode")
            except Exception:
                broken = True
        if broken:
            with contextlib.suppress(Exception):
                await conn.invalidate()
        with contextlib.suppress(Exception):
            await conn.close()

    async def claim_batch(self, owner: str, limit: int) -> list[Job]:
        """Claim up to `limit` due pending jobs (no outcomes to record)."""
        return (await self.complete([], owner, limit)).claimed

    async def _one(self, outcome: Outcome, what: str) -> Job:
        [row] = (await self.complete([outcome], outcome.job.lease_owner or "", 0)).recorded
        if row is None:
            raise LostFence(f"job {outcome.job.key} was taken over; its {what} is not recorded")
        return row

    async def succeed(self, job: Job, output: dict[str, Any]) -> Job:
        """running -> succeeded if still fenced, with its `job.succeeded` outbox row."""
        return await self._one(outcomes.succeeded(job, output), "output")

    async def fail(
        self, job: Job, *, code: str, message: str, retryable: bool, delay: float | None = None
    ) -> Job:
        """Retryable with attempts left: back to pending after a backoff. Else failed."""
        if delay is None:
            delay = self.retry_delay(job)
        return await self._one(
            outcomes.failed(job, code, message, retryable=retryable, delay=delay), "failure"
        )

    def retry_delay(self, job: Job) -> float:
        """The backoff before a retryable failure's next attempt."""
        return backoff_seconds(
            job.attempts, self.settings.retry_base_seconds, self.settings.retry_max_seconds
        )

    async def cancel(self, job: Job) -> Job:
        return await self._one(outcomes.cancelled(job), "cancel")

    async def release(self, job: Job) -> Job:
        return await self._one(outcomes.released(job), "release")

    async def claim_by_key(
        self,
        tenant_id: str,
        key: str,
        owner: str,
        *,
        consumer: str | None = None,
        event_id: str | None = None,
    ) -> Job | None:
        """Claim one job; with `event_id`, also record it as processed in the same transaction.

        Returns None when the event was seen before or the job is not claimable.
        """
        async with self.db.transaction() as conn:
            if consumer is not None and event_id is not None:
                if not await outbox.record_processed_if_new(conn, consumer, event_id):
                    return None
            job = await fenced.claim_pending_by_key(
                conn, tenant_id, key, owner, self.settings.lease_seconds
            )
            if job is not None:
                event = await outbox.insert_event(conn, job, EventType.CLAIMED, owner=owner)
        if job is not None:
            self._notify([event])
        return job

    async def heartbeat(self, job: Job, progress: float | None = None) -> Heartbeat:
        assert job.id is not None
        async with self.db.transaction() as conn:
            row = await fenced.heartbeat_if_fenced(
                conn, job.id, job.fencing_token, self.settings.lease_seconds, progress
            )
        if row is None:
            raise LostFence(f"job {job.key} is no longer held with token {job.fencing_token}")
        return Heartbeat(job=row, cancel_requested=row.cancel_requested)

    async def rescue_expired(self, limit: int = 100) -> list[Job]:
        """Expired leases: back to pending (a `job.requeued` event) or failed when exhausted."""
        rescued: list[Job] = []
        events: list[outbox.Event] = []
        async with self.db.transaction() as conn:
            for job_id, token in await fenced.select_expired_leases(conn, limit):
                row = await fenced.rescue_if_expired(conn, job_id, token)
                if row is None:
                    continue
                rescued.append(row)
                type_ = EventType.REQUEUED if row.status == JobStatus.PENDING else EventType.FAILED
                events.append(await outbox.insert_event(conn, row, type_, reason="lease_expired"))
                if row.role == statements.TASK and row.status == JobStatus.FAILED:
                    message = "the task's workers stopped renewing its lease, attempts exhausted"
                    events += await graph.fail_jobs_of(conn, row, "lease_expired", message)
        self._notify(events)
        return rescued
