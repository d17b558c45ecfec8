"""The usage ledger: each succeeded job's media seconds added to its tenant's usage, once.

It consumes `job.succeeded` events (group `vidjobs-ledger`). The event id is recorded as
processed in the same transaction as the usage upsert, so a redelivered event (a relay
that published twice, a consumer that died before committing its offset) adds nothing.
"""

from __future__ import annotations

import asyncio
import datetime as dt

from jobs import outbox, usage
from jobs.db import Database
from jobs.status import EventType
from workers import metrics
from workers.bus import Bus, Record
from workers.bus.events import BusEvent, event_type
from workers.consumer import ConsumerLoop


def media_ms(output: dict[str, object] | None) -> int:
    """An output's media duration in whole milliseconds (executors report `duration_ms`).
    A job of several outputs counts each of them (`{"outputs": {name: output}}`)."""
    several = (output or {}).get("outputs")
    if isinstance(several, dict):
        return sum(media_ms(o) for o in several.values() if isinstance(o, dict))
    value = (output or {}).get("duration_ms")
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return 0
    return int(value)


def event_day(created_at: str | None) -> dt.date:
    """The UTC day of an event (the database time of the change it records)."""
    if created_at:
        when = dt.datetime.fromisoformat(created_at)
        if when.tzinfo is not None:
            when = when.astimezone(dt.UTC)
        return when.date()
    return dt.datetime.now(dt.UTC).date()


class Ledger:
    def __init__(self, db: Database, bus: Bus, group: str = "vidjobs-ledger") -> None:
        self.db = db
        self.group = group
        self.counted = 0
        self.duplicates = 0
        self.loop = ConsumerLoop(bus, group, self.handle)

    async def handle(self, record: Record) -> str:
        if event_type(record) != EventType.SUCCEEDED:
            return "ignored"
        event = BusEvent.from_record(record)
        ms = media_ms(event.payload.get("output"))
        async with self.db.transaction() as conn:
            if not await outbox.record_processed_if_new(conn, self.group, event.event_id):
                self.duplicates += 1
                return "duplicate"
            await usage.add_usage(conn, event.tenant_id, event_day(event.created_at), ms)
        self.counted += 1
        metrics.LEDGER_SECONDS.inc(ms / 1000)
        return "counted"

    async def run(self, stop: asyncio.Event) -> None:
        await self.loop.run(stop)
