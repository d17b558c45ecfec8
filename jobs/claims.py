"""Worker-side transactions: claim, heartbeat, finish, fail, cancel, release, rescue.

Each method is one transaction: a named statement from `jobs.statements` and, when the
state changed, its outbox row. Fenced methods raise `LostFence` when the worker no longer
holds the job, so a zombie can neither change the job nor publish its output.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from jobs import outbox, statements
from jobs.db import Database
from jobs.errors import LostFence
from jobs.models import Job, OutboxEvent
from jobs.service import AfterCommit
from jobs.settings import Settings
from jobs.status import EventType, JobStatus

# Most finishes written in one transaction (group commit of concurrent finishes).
FINISH_BATCH = 100


@dataclass(frozen=True)
class Heartbeat:
    job: Job
    cancel_requested: bool


def backoff_seconds(
    attempt: int, base: float, cap: float, rng: random.Random | None = None
) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2**(attempt-1))]."""
    ceiling = min(cap, base * (2 ** max(0, attempt - 1)))
    return (rng or random).uniform(ceiling / 2, ceiling)


class Refill(Protocol):
    """A worker that claims the successors of its finished jobs in the same statement."""

    owner: str

    def refill_wanted(self, finishing: int) -> int:
        """How many due jobs to claim along with `finishing` finishes (0: none)."""
        ...

    def refill_claimed(self, jobs: list[Job], wanted: int, ended: list[int]) -> None:
        """Take the jobs claimed for it (possibly fewer than wanted, possibly none). `ended`:
        the ids whose finishes were just decided (their slots are free from now on)."""
        ...


class ClaimService:
    """What a worker, the reaper and the fleet consumers do to jobs.

    With a `refill` set (a sweeping runner), the group commit of finishes also claims that
    many successors: one round trip and one commit for both.
    """

    def __init__(
        self, db: Database, settings: Settings, *, after_commit: AfterCommit | None = None
    ) -> None:
        self.db = db
        self.settings = settings
        self.after_commit = after_commit
        self._finishing: list[tuple[Job, dict[str, Any], asyncio.Future[Job]]] = []
        self._finisher: asyncio.Task[None] | None = None
        self.refill: Refill | None = None
        self._held: AsyncConnection | None = None  # the finisher's, while a refill is set

    def _notify(self, events: Sequence[outbox.Event]) -> None:
        if events and self.after_commit is not None:
            self.after_commit(events)

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
            job = await statements.claim_pending_by_key(
                conn, tenant_id, key, owner, self.settings.lease_seconds
            )
            if job is not None:
                event = await outbox.insert_event(conn, job, EventType.CLAIMED, owner=owner)
        if job is not None:
            self._notify([event])
        return job

    async def claim_batch(self, owner: str, limit: int) -> list[Job]:
        """Claim up to `limit` due pending jobs (the sweep that needs no message)."""
        if limit <= 0:
            return []
        async with self.db.single_statement() as conn:
            claimed = await statements.claim_due_pending_batch_with_events(
                conn, owner, self.settings.lease_seconds, limit
            )
        self._notify([event for _, event in claimed])
        return [job for job, _ in claimed]

    async def heartbeat(self, job: Job, progress: float | None = None) -> Heartbeat:
        assert job.id is not None
        async with self.db.transaction() as conn:
            row = await statements.heartbeat_if_fenced(
                conn, job.id, job.fencing_token, self.settings.lease_seconds, progress
            )
        if row is None:
            raise LostFence(f"job {job.key} is no longer held with token {job.fencing_token}")
        return Heartbeat(job=row, cancel_requested=row.cancel_requested)

    async def succeed(self, job: Job, output: dict[str, Any]) -> Job:
        """running -> succeeded if still fenced, with its `job.succeeded` outbox row.

        Group commit: finishes that arrive while another is being written share the next
        transaction (one statement on PostgreSQL: the fenced UPDATE of all of them and their
        outbox rows), so a busy worker pays one commit per batch, and an idle one waits for
        nothing.
        """
        assert job.id is not None
        done: asyncio.Future[Job] = asyncio.get_running_loop().create_future()
        self._finishing.append((job, output, done))
        if self._finisher is None or self._finisher.done():
            self._finisher = asyncio.create_task(self._write_finishes())
        return await done

    async def _write_finishes(self) -> None:
        while self._finishing:
            batch = self._finishing[:FINISH_BATCH]
            del self._finishing[:FINISH_BATCH]
            items = [(job, out) for job, out, _ in batch]
            refill = self.refill
            wanted = 0 if refill is None else refill.refill_wanted(len(batch))
            claimed: list[tuple[Job, outbox.Event]] = []
            try:
                async with self._finisher_connection() as conn:
                    if refill is not None and wanted > 0:
                        finish_and_claim = (
                            statements.finish_succeeded_many_if_fenced_and_claim_due_with_events
                        )
                        finished, claimed = await finish_and_claim(
                            conn, items, refill.owner, self.settings.lease_seconds, wanted
                        )
                    else:
                        finished = await statements.finish_succeeded_many_if_fenced_with_events(
                            conn, items
                        )
            except Exception as exc:  # every caller sees the failure and may retry
                if refill is not None and wanted > 0:
                    refill.refill_claimed([], wanted, [])
                for _, _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            self._notify([event for _, event in finished] + [event for _, event in claimed])
            if refill is not None:
                # Before the finishers resume: their slots are taken over, not freed.
                ended = [job.id or 0 for job, _, _ in batch]
                refill.refill_claimed([job for job, _ in claimed], wanted, ended)
            by_id = {row.id: row for row, _ in finished}
            for job, _, done in batch:
                if done.done():
                    continue
                row = by_id.get(job.id)
                if row is None:
                    done.set_exception(
                        LostFence(f"job {job.key} was taken over; its output is discarded")
                    )
                else:
                    done.set_result(row)

    @contextlib.asynccontextmanager
    async def _finisher_connection(self) -> AsyncIterator[AsyncConnection]:
        """The group commit's connection for one batch. While a sweeping runner is attached
        (`refill`) on PostgreSQL, one pooled connection stays checked out between batches:
        no pool round trip per batch. A failed batch discards it (invalidated, never handed
        out again) and the next batch checks out another."""
        if self.refill is None or not self.db.is_postgres:
            async with self.db.single_statement() as conn:
                yield conn
            return
        if self._held is None:
            self._held = await self.db.engine.connect()
        held = self._held
        try:
            yield held
        except BaseException:
            # Whatever failed, this connection is not trusted again: a server that killed it
            # can leave the driver mid-protocol before it notices the socket is gone.
            self._held = None
            with contextlib.suppress(Exception):
                await held.invalidate()
            with contextlib.suppress(Exception):
                await held.close()
            raise

    async def release_connection(self) -> None:
        """Give the finisher's held connection back to the pool (when a runner stops)."""
        if self._finisher is not None and not self._finisher.done():
            await asyncio.wait([self._finisher])
        held, self._held = self._held, None
        if held is not None:
            await held.close()

    async def fail(
        self, job: Job, *, code: str, message: str, retryable: bool, delay: float | None = None
    ) -> Job:
        """Retryable with attempts left: back to pending after a backoff. Else failed."""
        assert job.id is not None
        if delay is None:
            delay = backoff_seconds(
                job.attempts, self.settings.retry_base_seconds, self.settings.retry_max_seconds
            )
        async with self.db.transaction() as conn:
            row = await statements.fail_if_fenced(
                conn,
                job.id,
                job.fencing_token,
                code=code,
                message=message,
                retryable=retryable,
                delay_seconds=delay,
            )
            if row is None:
                raise LostFence(f"job {job.key} was taken over; its failure is not recorded")
            type_ = (
                EventType.RETRY_SCHEDULED if row.status == JobStatus.PENDING else EventType.FAILED
            )
            event = await outbox.insert_event(
                conn,
                row,
                type_,
                error={"code": code, "message": message[:500], "retryable": retryable},
            )
        self._notify([event])
        return row

    async def cancel(self, job: Job) -> Job:
        assert job.id is not None
        async with self.db.transaction() as conn:
            row = await statements.cancel_if_fenced(conn, job.id, job.fencing_token)
            if row is None:
                raise LostFence(f"job {job.key} is no longer held")
            event = await outbox.insert_event(conn, row, EventType.CANCELLED)
        self._notify([event])
        return row

    async def release(self, job: Job) -> Job:
        assert job.id is not None
        async with self.db.transaction() as conn:
            row = await statements.release_if_fenced(conn, job.id, job.fencing_token)
            if row is None:
                raise LostFence(f"job {job.key} is no longer held")
            event = await outbox.insert_event(conn, row, EventType.REQUEUED, reason="released")
        self._notify([event])
        return row

    async def rescue_expired(self, limit: int = 100) -> list[Job]:
        """Expired leases: back to pending (a `job.requeued` event) or failed when exhausted."""
        rescued: list[Job] = []
        events: list[OutboxEvent] = []
        async with self.db.transaction() as conn:
            for job_id, token in await statements.select_expired_leases(conn, limit):
                row = await statements.rescue_if_expired(conn, job_id, token)
                if row is None:
                    continue
                rescued.append(row)
                type_ = EventType.REQUEUED if row.status == JobStatus.PENDING else EventType.FAILED
                events.append(await outbox.insert_event(conn, row, type_, reason="lease_expired"))
        self._notify(events)
        return rescued
