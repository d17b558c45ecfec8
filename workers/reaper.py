"""The reaper: expired leases back to pending, due retries announced, old records pruned.

Each pass rescues expired leases (a `job.requeued` event, or failed when attempts ran out),
writes a `job.requeued` event for each retry whose backoff has passed (so bus-driven
workers hear of it), and, at most every `prune_interval` seconds, deletes processed-event
records older than the retention window and published outbox rows older than the history
retention, in small batches. Scratch files of dead workers are removed too, and multipart
uploads that a killed writer left open are aborted.
"""

from __future__ import annotations

import asyncio
import logging
import time

from jobs import lifecycle, outbox, statements
from jobs.claims import ClaimService
from jobs.models import OutboxEvent
from jobs.status import EventType
from jobs.storage import Storage
from workers import loop
from workers.wakeup import Wakeup

log = logging.getLogger("vidjobs.reaper")


class Reaper:
    def __init__(
        self,
        claims: ClaimService,
        blobs: Storage | None = None,
        *,
        interval: float = 1.0,
        temp_max_age: float = 6 * 3600,
        upload_max_age: float = 24 * 3600,
        wakeup: Wakeup | None = None,
        prune_interval: float = 60.0,
    ) -> None:
        self.claims = claims
        self.blobs = blobs
        self.interval = interval
        self.temp_max_age = temp_max_age
        self.upload_max_age = upload_max_age
        self.wakeup = wakeup
        self.prune_interval = prune_interval
        self.rescued = 0
        self.announced = 0
        self.pruned = 0
        self._retry_cursor = 0
        self._expire_cursor = 0
        self._upload_cursor = ""
        self.expired = 0  # outputs marked expired
        self.deleted = 0  # stored objects deleted by retention
        self._last_prune = float("-inf")

    async def tick(self) -> int:
        """One pass; returns how many jobs it rescued."""
        rescued = await self.claims.rescue_expired()
        self.rescued += len(rescued)
        for job in rescued:
            log.info("rescued %s (attempt %s): now %s", job.key, job.attempts, job.status)
        announced = await self.announce_due_retries()
        if (rescued or announced) and self.wakeup is not None:
            self.wakeup.notify()
        if time.monotonic() - self._last_prune >= self.prune_interval:
            self._last_prune = time.monotonic()
            await self.prune()
            if self.blobs is not None:
                await self.expire()
                await self.blobs.abort_stale_uploads(self.upload_max_age)
        if self.blobs is not None:
            if rescued:  # a rescued lease may have been a killed worker on this host
                await asyncio.to_thread(self.blobs.clean_orphans)
            await asyncio.to_thread(self.blobs.clean_temp, self.temp_max_age)
        return len(rescued)

    async def announce_due_retries(self, limit: int = 200) -> int:
        """A `job.requeued` event for each retry whose backoff passed and was not announced.

        A retry is unannounced while its job's latest event is `job.retry_scheduled`; the
        row is locked (conditional touch) before the check that decides, so a concurrent
        claim either comes first (no event) or after the requeue event.
        """
        db = self.claims.db
        events: list[OutboxEvent] = []
        async with db.transaction() as conn:
            due = await statements.select_due_retries(conn, self._retry_cursor, limit)
            self._retry_cursor = (due[-1].id or 0) if len(due) == limit else 0
            for job in due:
                if job.id is None:
                    continue
                if await outbox.latest_event_type(conn, job.id) != EventType.RETRY_SCHEDULED:
                    continue
                row = await statements.touch_due_retry_if_pending(conn, job.id, job.fencing_token)
                if row is None:
                    continue
                if await outbox.latest_event_type(conn, job.id) != EventType.RETRY_SCHEDULED:
                    continue
                events.append(
                    await outbox.insert_event(conn, row, EventType.REQUEUED, reason="retry_due")
                )
        if events and self.claims.after_commit is not None:
            self.claims.after_commit(events)
        self.announced += len(events)
        return len(events)

    async def prune(self) -> int:
        """Delete old processed-event records and old published outbox rows, batch by batch."""
        settings = self.claims.settings
        db = self.claims.db
        total = 0
        for delete, hours in (
            (outbox.delete_processed_before, settings.processed_retention_hours),
            (outbox.delete_published_before, settings.outbox_retention_hours),
        ):
            for _ in range(100):  # bounded per pass; the next pass carries on
                async with db.transaction() as conn:
                    deleted = await delete(conn, hours * 3600, settings.prune_batch)
                total += deleted
                if deleted < settings.prune_batch:
                    break
                await asyncio.sleep(0)
        if total:
            log.info("pruned %d old processed-event and outbox records", total)
        self.pruned += total
        return total

    async def expire(self) -> int:
        """Retention, one batch of each kind: outputs past their days, uploads past their
        hours, direct uploads never completed. Returns how many objects it deleted."""
        assert self.blobs is not None
        settings, db = self.claims.settings, self.claims.db
        batch = settings.prune_batch
        upload_s = settings.upload_retention_hours * 3600
        candidates: list[str] = []
        if settings.output_retention_days > 0:
            async with db.reader.connect() as conn:
                done = await statements.select_succeeded_finished_before(
                    conn, settings.output_retention_days * 86400, self._expire_cursor, batch
                )
            self._expire_cursor = (done[-1].id or 0) if len(done) == batch else 0
            for job in done:
                out = job.output or {}
                files = lifecycle.output_digests(out)
                if out.get("expired") or not files or job.id is None:
                    continue
                async with db.transaction() as conn:
                    if await statements.expire_output_if_succeeded(conn, job.id, out):
                        self.expired += 1
                        candidates += files
        if upload_s > 0:
            async with db.reader.connect() as conn:
                old = await lifecycle.select_uploads_before(
                    conn, upload_s, self._upload_cursor, batch
                )
            self._upload_cursor = old[-1] if len(old) == batch else ""
            candidates += old
        deleted = 0
        for digest in dict.fromkeys(candidates):
            async with db.transaction() as conn:
                if await lifecycle.is_referenced(conn, digest, upload_s):
                    continue
                await lifecycle.forget(conn, digest)
            await self.blobs.delete(digest)
            deleted += 1
        async with db.transaction() as conn:
            stale = await lifecycle.delete_expired_open_uploads(conn, batch)
        for upload_id, multipart_id in stale:
            await self.blobs.delete_staged(upload_id, multipart_id)
        if deleted:
            log.info("retention deleted %d stored objects", deleted)
        self.deleted += deleted
        return deleted

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.tick()
            except Exception as exc:
                log.warning("reaper pass failed, will retry: %s", exc)
            await loop.sleep_unless_stopped(stop, self.interval)
