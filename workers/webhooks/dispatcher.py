"""`vidjobs webhooks`: a consumer group that turns job events into owed deliveries.

For each event, the tenant's enabled endpoints subscribed to its type get one pending
delivery each, inserted in the same transaction that records the event id as processed by
the group (like the ledger), so a redelivered event owes nothing twice and a crash before
the commit owes it again. The offset is committed after that. Sending is the `Sender`'s job,
from the database alone. Order per endpoint is not promised; every event is delivered at
least once, with the outbox event id as its `webhook-id` on every attempt and replay.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any

from jobs import outbox, statements
from jobs.api.views import job_view
from jobs.db import Database
from jobs.settings import Settings
from jobs.urlguard import Resolver
from jobs.webhooks import statements as st
from jobs.webhooks.views import event_body
from workers.bus import Bus, Record
from workers.bus.events import BusEvent
from workers.consumer import ConsumerLoop
from workers.wakeup import Wakeup
from workers.webhooks.sender import Sender

log = logging.getLogger("vidjobs.webhooks")


def event_timestamp(created_at: str | None) -> str | None:
    if not created_at:
        return None
    when = dt.datetime.fromisoformat(created_at)
    if when.tzinfo is not None:
        when = when.astimezone(dt.UTC)
    return when.isoformat().replace("+00:00", "Z")


def job_data(job: Any, payload: dict[str, Any]) -> dict[str, Any]:
    """The job's public view, with the status and attempts the event recorded (the row may
    have moved on since: `type` and `data.status` then still agree)."""
    view = job_view(job)
    for field in ("status", "attempts"):
        if field in payload:
            view[field] = payload[field]
    return view


class Dispatcher:
    def __init__(
        self,
        db: Database,
        bus: Bus,
        settings: Settings,
        *,
        group: str | None = None,
        wakeup: Wakeup | None = None,
        resolver: Resolver | None = None,
    ) -> None:
        self.db = db
        self.group = group or settings.kafka_webhooks_group
        self.sender = Sender(db, settings, wakeup=wakeup, resolver=resolver)
        self.loop = ConsumerLoop(bus, self.group, self.handle, prepare=self.prepare)
        self.queued = 0
        # Per fetched batch: the subscribed event types of the batch's tenants, read once
        # after the batch arrived, so most events (types nobody subscribed to) cost no query.
        self._batch: set[str] = set()
        self._subscribed: dict[str, set[str]] = {}

    async def prepare(self, records: list[Record]) -> None:
        events = [BusEvent.from_record(r) for r in records]
        self._batch.clear()
        tenants = {e.tenant_id for e in events}
        async with self.db.reader.connect() as conn:
            found = await st.select_enabled_subscriptions(conn, tenants)
        self._subscribed = found
        self._batch = {e.event_id for e in events}

    def _surely_unsubscribed(self, event: BusEvent) -> bool:
        if event.event_id not in self._batch:
            return False
        types = self._subscribed.get(event.tenant_id, set())
        return "*" not in types and event.type not in types

    async def handle(self, record: Record) -> str:
        event = BusEvent.from_record(record)
        if self._surely_unsubscribed(event):
            return "no_endpoint"
        try:
            return await self._queue(event)
        except Exception:
            self._batch.clear()  # retried after a backoff: read afresh then, not from the batch
            raise

    async def _queue(self, event: BusEvent) -> str:
        async with self.db.transaction() as conn:
            targets = await st.select_enabled_endpoints_for_event(conn, event.tenant_id, event.type)
            if not targets:
                return "no_endpoint"
            if not await outbox.record_processed_if_new(conn, self.group, event.event_id):
                return "duplicate"
            job = await statements.select_job_by_key(conn, event.tenant_id, event.job_key)
            if job is None:
                return "no_job"
            body = event_body(
                event.type, event_timestamp(event.created_at), job_data(job, event.payload)
            )
            await st.insert_deliveries(
                conn,
                [
                    {
                        "endpoint_id": ep.id,
                        "tenant_id": event.tenant_id,
                        "event_id": event.event_id,
                        "event_type": event.type,
                        "body": body,
                    }
                    for ep in targets
                ],
            )
        self.queued += len(targets)
        self.sender.wakeup.notify()
        return "queued"

    async def run(self, stop: asyncio.Event) -> None:
        async def announce() -> None:
            await self.loop.started.wait()
            log.info("webhook dispatcher: consuming as group %s", self.group)

        herald = asyncio.create_task(announce())
        try:
            await asyncio.gather(self.loop.run(stop), self.sender.run(stop))
        finally:
            herald.cancel()
