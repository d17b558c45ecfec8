"""The relay against real PostgreSQL and Kafka: failover, sequence gaps, topic creation."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from jobs import outbox, statements
from jobs.service import JobService
from jobs.status import EventType
from tests.bus.helpers import (
    delivered,
    edit,
    outbox_rows,
    read_topic,
    running,
    unpublished,
    wait_until,
)
from tests.kafka.conftest import PARTITIONS, Fleet
from tests.support.kafka import delete_topic, unique
from workers.bus import Record
from workers.bus.kafka import KafkaBus
from workers.relay import Relay

pytestmark = pytest.mark.kafka


def first_seen_order(records: list[Record]) -> dict[str, list[int]]:
    """Per job key: outbox ids in the order their events were first delivered."""
    seen: set[str] = set()
    order: dict[str, list[int]] = {}
    for record in records:
        body = json.loads(record.value)
        if body["event_id"] in seen:
            continue
        seen.add(body["event_id"])
        order.setdefault(record.key, []).append(body["outbox_id"])
    return order


async def churn(fleet: Fleet, start: int, n: int) -> dict[str, list[str]]:
    """Several events per job: submitted, cancelled, resubmitted. Returns the events this
    caused per job key, in order: what the topic must carry, whatever the outbox holds."""
    caused: dict[str, list[str]] = {}
    for i in range(start, start + n):
        key = (await fleet.c.service.submit(fleet.tenant, edit(i))).job.key
        await fleet.c.service.cancel(fleet.tenant, key)
        await fleet.c.service.submit(fleet.tenant, edit(i))
        caused[key] = [EventType.SUBMITTED, EventType.CANCELLED, EventType.RESUBMITTED]
    return caused


async def test_topic_is_created_once_with_the_configured_partitions(fleet: Fleet) -> None:
    topic = unique("created")
    bus = KafkaBus(fleet.bootstrap, topic, partitions=5)
    try:
        await bus.ensure_topic()
        await bus.ensure_topic()  # already there: nothing to do, no error
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=fleet.bootstrap)
        await admin.start()
        try:
            (described,) = await admin.describe_topics([topic])
        finally:
            await admin.close()
        assert len(described["partitions"]) == 5
    finally:
        await delete_topic(fleet.bootstrap, topic)


async def test_one_relay_is_active_and_a_standby_takes_over_when_it_is_killed(
    fleet: Fleet,
) -> None:
    first = await fleet.spawn("relay-1", "relay")
    await first.wait_for("relay is active")
    second = await fleet.spawn("relay-2", "relay")
    await second.wait_for("relay is standing by", timeout=60)  # started (slow under load)
    caused = await churn(fleet, 0, 10)
    await wait_until(lambda: _drained(fleet), timeout=20, what="the first relay to publish")
    assert not second.saw("relay is active"), "two relays were active at once"

    first.kill()
    killed_at = time.monotonic()
    churning = asyncio.create_task(churn(fleet, 10, 10))  # events made while no relay runs
    await second.wait_for("relay is active", timeout=20)
    took_over = time.monotonic() - killed_at
    caused |= await churning
    await wait_until(lambda: _drained(fleet), timeout=20, what="the standby to publish")
    assert took_over < 10, f"the standby took {took_over:.1f}s to take over"

    records = await read_topic(fleet.bus, unique("reader"), sum(map(len, caused.values())))
    assert delivered(records) == caused  # a killed relay may publish a row twice, never skip one
    for key, ids in first_seen_order(records).items():
        assert ids == sorted(ids), f"events of {key} were published out of order: {ids}"


async def _drained(fleet: Fleet) -> bool:
    return await unpublished(fleet.c.db) == 0


async def test_a_row_committed_after_a_later_one_is_still_published(fleet: Fleet) -> None:
    """T1 takes an outbox id and stays open; T2 takes a later id and commits; the relay
    runs; T1 commits; T1's row is still published (no high-water mark)."""
    db = fleet.c.db
    service = fleet.c.service
    early = (await service.submit(fleet.tenant, edit(0))).job
    relay = Relay(db, fleet.bus, fleet.settings, wakeup=fleet.c.relay_wakeup)
    async with running(relay):
        await wait_until(lambda: _drained(fleet), what="the first row")
        async with db.engine.connect() as t1:
            await t1.begin()
            job = await statements.select_job_by_key(t1, fleet.tenant.id, early.key)
            assert job is not None
            held = await outbox.insert_event(t1, job, EventType.REQUEUED, reason="gap")
            later = (await service.submit(fleet.tenant, edit(1))).job  # T2: a later id, committed
            rows = await outbox_rows(db)
            assert rows[-1].job_key == later.key and rows[-1].id > held.id  # type: ignore[operator]
            await wait_until(lambda: _published(fleet, later.key), what="T2's row")
            assert await unpublished(db) == 0  # T1's row is not visible yet
            await t1.commit()
        await wait_until(lambda: _drained(fleet), what="T1's row after it committed")
    rows = await outbox_rows(db)
    records = await read_topic(fleet.bus, unique("reader"), len(rows))
    assert held.event_id in {json.loads(r.value)["event_id"] for r in records}


async def _published(fleet: Fleet, key: str) -> bool:
    return all(r.published_at for r in await outbox_rows(fleet.c.db) if r.job_key == key)


async def test_relay_wakes_on_notify_not_on_its_poll(fleet: Fleet) -> None:
    """Rows committed by another process (no in-process signal) are published at once."""
    settings = fleet.settings.model_copy(update={"relay_poll_seconds": 60.0})
    relay = Relay(fleet.c.db, fleet.bus, settings)  # its own wake-up: only NOTIFY reaches it
    other = JobService(fleet.c.db, settings)
    async with running(relay):
        await asyncio.wait_for(relay.leading.wait(), 10)
        await asyncio.sleep(0.5)  # past its first pass: now it waits up to 60 s
        started = time.monotonic()
        await other.submit(fleet.tenant, edit(7))
        await wait_until(lambda: _drained(fleet), timeout=10, what="a NOTIFY-woken pass")
    assert time.monotonic() - started < 5


async def test_relay_standby_does_not_publish_while_another_holds_the_lock(fleet: Fleet) -> None:
    db = fleet.c.db
    active = Relay(db, fleet.bus, fleet.settings)
    standby = Relay(db, fleet.bus, fleet.settings)
    async with running(active):
        await asyncio.wait_for(active.leading.wait(), 10)
        async with running(standby):
            caused = await churn(fleet, 0, 5)
            await wait_until(lambda: _drained(fleet), what="publishing")
            await asyncio.sleep(1)
            assert standby.published == 0 and not standby.leading.is_set()
        assert active.published == sum(map(len, caused.values())) == 15
    records = await read_topic(fleet.bus, unique("reader"), 15)
    assert delivered(records) == caused
    assert PARTITIONS == 3
