"""`vidjobs webhooks` as real processes on a real PostgreSQL and Kafka: a dispatcher SIGKILLed
with retries owed and events unconsumed is restarted and makes every owed delivery (none lost,
none owed twice); two dispatchers share the work and never send the same attempt twice."""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator

import sqlalchemy as sa

from jobs.models import WebhookDelivery
from jobs.webhooks.service import EndpointCreate, WebhookService
from jobs.webhooks.statements import attempts, deliveries
from tests.bus.helpers import edit, wait_until
from tests.kafka.conftest import Fleet
from tests.support.kafka import unique
from tests.support.receiver import Received, Receiver, Reply
from workers.relay import Relay


def dispatcher_env(group: str) -> dict[str, str]:
    return {
        "VIDJOBS_KAFKA_WEBHOOKS_GROUP": group,
        "VIDJOBS_WEBHOOK_ALLOW_HTTP": "true",
        "VIDJOBS_WEBHOOK_ALLOW_PRIVATE": "true",
        "VIDJOBS_WEBHOOK_RETRY_SCHEDULE": "0,1,1,1,1,1,1,1,1,1,1,1",
        "VIDJOBS_WEBHOOK_RETRY_JITTER": "0",
        "VIDJOBS_WEBHOOK_TIMEOUT_SECONDS": "5",
        "VIDJOBS_WEBHOOK_POLL_SECONDS": "0.2",
    }


@contextlib.asynccontextmanager
async def relay(fleet: Fleet) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(
        Relay(fleet.c.db, fleet.bus, fleet.settings, wakeup=fleet.c.relay_wakeup).run(stop)
    )
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


async def endpoint(fleet: Fleet, url: str) -> str:
    settings = fleet.settings.model_copy(
        update={"webhook_allow_http": True, "webhook_allow_private": True}
    )
    ep, _ = await WebhookService(fleet.c.db, settings).create(
        fleet.tenant, EndpointCreate(url=url, events=["job.submitted"])
    )
    return ep.id


async def rows(fleet: Fleet) -> list[WebhookDelivery]:
    async with fleet.c.db.engine.connect() as conn:
        result = (await conn.execute(sa.select(deliveries))).mappings()
        return [WebhookDelivery.model_construct(**r) for r in result]


async def submit(fleet: Fleet, start: int, n: int) -> None:
    for i in range(start, start + n):
        await fleet.c.service.submit(fleet.tenant, edit(i))


async def test_a_killed_dispatcher_loses_no_owed_delivery(fleet: Fleet) -> None:
    tries: collections.Counter[str] = collections.Counter()

    def script(n: int, got: Received) -> Reply:
        msg = got.headers["webhook-id"]
        tries[msg] += 1
        return Reply(500) if tries[msg] <= 2 else Reply(200)

    receiver = await Receiver(script).start()
    group = unique("webhooks")
    try:
        await endpoint(fleet, receiver.url)
        async with relay(fleet):
            first = await fleet.spawn("webhooks-1", "webhooks", **dispatcher_env(group))
            await first.wait_for("webhook dispatcher: consuming")
            await submit(fleet, 0, 20)
            await receiver.wait_for(20, timeout=60)  # first attempts made, all answered 500
            await submit(fleet, 20, 20)  # events that may be consumed but not yet committed
            await asyncio.sleep(0.3)
            first.kill()
            await first.proc.wait()
            owed = [r for r in await rows(fleet) if r.status == "pending"]
            assert owed, "the kill should leave retries owed"
            second = await fleet.spawn("webhooks-2", "webhooks", **dispatcher_env(group))
            await second.wait_for("webhook dispatcher: consuming")

            async def all_delivered() -> bool:
                found = await rows(fleet)
                return len(found) >= 40 and all(r.status == "succeeded" for r in found)

            await wait_until(all_delivered, timeout=120, what="all 40 deliveries succeeded")
            await asyncio.sleep(1.0)  # and nothing more turns up
    finally:
        await receiver.stop()
    found = await rows(fleet)
    assert len(found) == 40 and len({r.event_id for r in found}) == 40  # none owed twice
    assert all(r.status == "succeeded" for r in found)
    succeeded = {msg for msg, n in tries.items() if n >= 3}
    assert succeeded == {r.event_id for r in found}


async def test_two_dispatchers_never_send_the_same_attempt(fleet: Fleet) -> None:
    receiver = await Receiver(lambda n, r: Reply(200, delay=0.02)).start()
    group = unique("webhooks")
    try:
        await endpoint(fleet, receiver.url)
        async with relay(fleet):
            procs = [
                await fleet.spawn(f"webhooks-{i}", "webhooks", **dispatcher_env(group))
                for i in range(2)
            ]
            for proc in procs:
                await proc.wait_for("webhook dispatcher: consuming")
            await submit(fleet, 0, 100)

            async def all_delivered() -> bool:
                found = await rows(fleet)
                return len(found) >= 100 and all(r.status == "succeeded" for r in found)

            await wait_until(all_delivered, timeout=120, what="100 deliveries succeeded")
            await asyncio.sleep(1.0)
    finally:
        await receiver.stop()
    per_id = collections.Counter(g.headers["webhook-id"] for g in receiver.received)
    assert len(per_id) == 100 and set(per_id.values()) == {1}
    async with fleet.c.db.engine.connect() as conn:
        tried = (await conn.execute(sa.select(attempts.c.attempt))).scalars().all()
    assert sorted(tried) == [1] * 100
