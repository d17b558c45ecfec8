"""Helpers for pipeline tests: submit jobs, run loops, wait, and read what happened."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Protocol

import sqlalchemy as sa

from jobs.db import Database
from jobs.models import OutboxEvent
from jobs.outbox import outbox, processed
from jobs.spec import EditRequest
from jobs.usage import select_usage_totals
from workers.bus import Bus, Record


class Loop(Protocol):
    async def run(self, stop: asyncio.Event) -> None: ...


def edit(i: int) -> EditRequest:
    return EditRequest.model_validate(
        {"source": {"path": "clip.mp4"}, "operations": [{"op": "trim", "start": i, "end": i + 1}]}
    )


@asynccontextmanager
async def running(*loops: Loop, timeout: float = 30) -> AsyncIterator[list[asyncio.Task[None]]]:
    """Run the loops until the block ends, then stop them and wait (bounded)."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(loop.run(stop)) for loop in loops]
    try:
        yield tasks
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout)


async def wait_until(
    check: Callable[[], Awaitable[bool]], timeout: float = 30, what: str = "condition"
) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not await check():
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out after {timeout}s waiting for {what}") from None


async def outbox_rows(db: Database, type_: str | None = None) -> list[OutboxEvent]:
    stmt = sa.select(outbox).order_by(outbox.c.id)
    if type_ is not None:
        stmt = stmt.where(outbox.c.type == type_)
    async with db.engine.connect() as conn:
        rows = (await conn.execute(stmt)).mappings().all()
    return [OutboxEvent.model_validate(dict(r)) for r in rows]


async def unpublished(db: Database) -> int:
    stmt = sa.select(sa.func.count()).where(outbox.c.published_at.is_(None))
    async with db.engine.connect() as conn:
        return int((await conn.execute(stmt)).scalar_one())


async def processed_ids(db: Database, consumer: str) -> set[str]:
    stmt = sa.select(processed.c.event_id).where(processed.c.consumer == consumer)
    async with db.engine.connect() as conn:
        return {r[0] for r in (await conn.execute(stmt)).all()}


async def statuses(db: Database) -> collections.Counter[str]:
    async with db.engine.connect() as conn:
        rows = (await conn.execute(sa.text("SELECT status FROM jobs"))).all()
    return collections.Counter(r[0] for r in rows)


async def usage_totals(db: Database, tenant_id: str) -> tuple[int, int]:
    async with db.engine.connect() as conn:
        return await select_usage_totals(conn, tenant_id)


def per_job(rows: list[OutboxEvent], type_: str) -> collections.Counter[str]:
    return collections.Counter(r.job_key for r in rows if r.type == type_)


async def read_topic(bus: Bus, group: str, count: int, timeout: float = 30) -> list[Record]:
    """Every record of the topic, read by a fresh group, once `count` of them are there."""
    consumer = bus.consumer(group)
    await consumer.start()
    got: list[Record] = []
    try:
        async with asyncio.timeout(timeout):
            while len(got) < count:
                got += await consumer.fetch(0.5, 1000)
        got += await consumer.fetch(1.0, 1000)  # and nothing unexpected after them
    finally:
        await consumer.stop()
    return got


def headers_count(records: list[Record], type_: str) -> collections.Counter[str]:
    return collections.Counter(r.headers["event_id"] for r in records if r.headers["type"] == type_)


def delivered(records: list[Record]) -> dict[str, list[str]]:
    """Per job key: the event types in the order they were first delivered (an event id
    delivered again, by a relay that published twice, counts once)."""
    seen: set[str] = set()
    out: dict[str, list[str]] = {}
    for record in records:
        event_id = record.headers["event_id"]
        if event_id not in seen:
            seen.add(event_id)
            out.setdefault(record.key, []).append(record.headers["type"])
    return out
