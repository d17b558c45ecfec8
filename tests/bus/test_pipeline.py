"""Relay, bus-driven runner and ledger together, on the in-process bus and on real Kafka.

The fault tests here kill a process (see `faults.Crash`) at the worst moment: the relay
after the broker's ack but before marking the rows, a consumer after its effect but before
its offset commit. Messages are then delivered again; every effect still happens once.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence

import pytest

from jobs.status import WORK_EVENTS, EventType
from tests.bus.conftest import Stack
from tests.bus.faults import Crash, CrashAfterAck, CrashingConsumers
from tests.bus.helpers import (
    delivered,
    edit,
    headers_count,
    outbox_rows,
    per_job,
    processed_ids,
    read_topic,
    running,
    statuses,
    unpublished,
    usage_totals,
    wait_until,
)
from tests.support.kafka import unique
from workers.bus import BusError, Message, Publisher
from workers.consumer import BusWorker
from workers.executor import SleepExecutor
from workers.ledger import Ledger
from workers.relay import Relay
from workers.runner import Runner


async def submit(stack: Stack, n: int, start: int = 0) -> list[str]:
    return [(await stack.service.submit(stack.tenant, edit(i))).job.key for i in range(start, n)]


def relay(stack: Stack, **kw: object) -> Relay:
    return Relay(stack.db, stack.bus, stack.settings, wakeup=stack.c.relay_wakeup, **kw)  # type: ignore[arg-type]


def worker(
    stack: Stack, bus: object = None, concurrency: int = 4, seconds: float = 0.02
) -> BusWorker:
    runner = Runner(
        stack.c.claims,
        SleepExecutor(seconds),
        stack.c.blobs,
        stack.settings,
        concurrency=concurrency,
        shutdown_grace=5,
    )
    # No poll and no rescue pass within a test: only the bus's hints wake the loop.
    runner.rescue_seconds = 3600
    return BusWorker(
        runner,
        bus or stack.bus,
        stack.settings.kafka_worker_group,
        sweep_seconds=3600,  # type: ignore[arg-type]
    )


def ledger(stack: Stack, bus: object = None) -> Ledger:
    return Ledger(stack.db, bus or stack.bus, stack.settings.kafka_ledger_group)  # type: ignore[arg-type]


async def all_published(stack: Stack) -> bool:
    return await unpublished(stack.db) == 0


async def churn(stack: Stack, n: int) -> dict[str, list[str]]:
    """Submit n jobs; cancel and resubmit every other one. Returns the events this caused,
    per job key in order: what the topic must carry, whatever the outbox holds."""
    caused: dict[str, list[str]] = {}
    for i in range(n):
        key = (await stack.service.submit(stack.tenant, edit(i))).job.key
        caused[key] = [EventType.SUBMITTED]
        if i % 2 == 0:
            await stack.service.cancel(stack.tenant, key)
            await stack.service.submit(stack.tenant, edit(i))
            caused[key] += [EventType.CANCELLED, EventType.RESUBMITTED]
    return caused


async def test_relay_publishes_every_event_once_in_per_job_order(stack: Stack) -> None:
    caused = await churn(stack, 6)
    total = sum(map(len, caused.values()))
    async with running(relay(stack)):
        await wait_until(lambda: all_published(stack), what="the outbox to drain")
    records = await read_topic(stack.bus, unique("reader"), total, timeout=10)
    assert len(records) == total, "an event was published twice without a fault"
    assert delivered(records) == caused
    ids = {r.headers["event_id"]: r for r in records}
    assert len(ids) == total
    for key in caused:  # per-job order is outbox order too
        order = [json.loads(r.value)["outbox_id"] for r in records if r.key == key]
        assert order == sorted(order), f"events of {key} out of order"


class FailsOnce:
    """A publisher whose first batch fails before anything reaches the broker (a broker
    that is briefly away): the relay retries it."""

    def __init__(self, inner: Publisher) -> None:
        self.inner = inner
        self.failed = False

    async def start(self) -> None:
        await self.inner.start()

    async def publish(self, messages: Sequence[Message]) -> None:
        if not self.failed:
            self.failed = True
            raise BusError("the broker is not reachable (injected)")
        await self.inner.publish(messages)

    async def stop(self) -> None:
        await self.inner.stop()


async def test_a_failed_publish_is_retried_and_every_event_arrives(stack: Stack) -> None:
    """Rows are marked published only after the broker acknowledged them: a batch whose
    publish failed is still unpublished and goes out on the retry."""
    caused = await churn(stack, 4)
    total = sum(map(len, caused.values()))
    flaky = FailsOnce(stack.bus.publisher())
    async with running(relay(stack, publisher=flaky)):
        await wait_until(lambda: all_published(stack), what="the outbox to drain")
    assert flaky.failed
    records = await read_topic(stack.bus, unique("reader"), total, timeout=10)
    assert delivered(records) == caused


class Recording:
    """A publisher that keeps the size of every batch it published."""

    def __init__(self, inner: Publisher) -> None:
        self.inner = inner
        self.batches: list[int] = []

    async def start(self) -> None:
        await self.inner.start()

    async def publish(self, messages: Sequence[Message]) -> None:
        await self.inner.publish(messages)
        self.batches.append(len(messages))

    async def stop(self) -> None:
        await self.inner.stop()


@pytest.mark.parametrize("linger", [0.0, 0.5])
async def test_a_lingering_relay_publishes_events_committed_close_together_in_one_pass(
    stack: Stack, linger: float
) -> None:
    """`vidjobs up`'s relay lingers after a wake-up: a second event committed meanwhile goes
    out in the same pass. Without the linger, each wake-up publishes what it found."""
    recording = Recording(stack.bus.publisher())
    async with running(relay(stack, publisher=recording, linger=linger)):
        await submit(stack, 1)  # published once the relay is up and its publisher started
        await wait_until(lambda: all_published(stack), what="the relay to start")
        recording.batches.clear()
        await submit(stack, 2, start=1)
        await asyncio.sleep(0.2)  # the wake-up's pass has run, unless it lingers
        await submit(stack, 3, start=2)
        await wait_until(lambda: all_published(stack), what="the outbox to drain")
    assert recording.batches == ([2] if linger else [1, 1])


async def test_bus_events_drive_claims_and_each_job_runs_once(stack: Stack) -> None:
    w = worker(stack, concurrency=3)
    async with running(relay(stack), w):
        await wait_until(lambda: _started(w), what="the worker to idle")
        # The worker is idle with no poll: only the events' hints can wake it.
        keys = await submit(stack, 10)
        await wait_until(lambda: _all_succeeded(stack, len(keys)), what="every job to succeed")
        # Every submitted event reaches the worker as a hint (the jobs may all be done first:
        # one hint wakes a loop that claims whatever is due).
        await wait_until(lambda: _handled(w.loop.handled, len(keys)), what="every hint to be handled")
    rows = await outbox_rows(stack.db)
    assert set(per_job(rows, EventType.CLAIMED).values()) == {1}
    assert w.runner.stats.succeeded == len(keys)
    # A hint is no order to claim a key: nothing is recorded per event for the worker group.
    assert await processed_ids(stack.db, stack.settings.kafka_worker_group) == set()


async def _started(w: BusWorker) -> bool:
    return w.loop.started.is_set()


async def _all_succeeded(stack: Stack, n: int) -> bool:
    return (await statuses(stack.db))["succeeded"] == n


async def _succeeded(stack: Stack, n: int) -> bool:
    counts = await statuses(stack.db)
    return counts["succeeded"] >= n and counts["running"] == 0


async def test_relay_killed_after_ack_before_marking_publishes_twice_effects_once(
    stack: Stack,
) -> None:
    n = 6
    await submit(stack, n)
    crashing = relay(stack, publisher=CrashAfterAck(stack.bus.publisher()))
    with pytest.raises(Crash):
        await asyncio.wait_for(crashing.run(asyncio.Event()), 30)
    assert await unpublished(stack.db) == n  # acked by the bus, never marked

    counted = ledger(stack)
    async with running(worker(stack), counted):
        await wait_until(lambda: _all_succeeded(stack, n), what="every job to succeed")
        # Everything (submitted again, claimed, succeeded) published, then killed again.
        again = relay(stack, publisher=CrashAfterAck(stack.bus.publisher()))
        with pytest.raises(Crash):
            await asyncio.wait_for(again.run(asyncio.Event()), 30)
        async with running(relay(stack)):  # a healthy relay publishes it all once more
            await wait_until(lambda: all_published(stack), what="the outbox to drain")
            await wait_until(lambda: _ledger_saw(counted, 2 * n), what="the ledger")

    rows = await outbox_rows(stack.db)
    records = await read_topic(stack.bus, unique("reader"), len(rows) + 4 * n)
    assert set(headers_count(records, EventType.SUBMITTED).values()) == {3}
    assert set(headers_count(records, EventType.SUCCEEDED).values()) == {2}
    assert set(per_job(rows, EventType.CLAIMED).values()) == {1}
    assert await usage_totals(stack.db, stack.tenant.id) == (n, n * 1000)
    assert (counted.counted, counted.duplicates) == (n, n)


async def _ledger_saw(ledger_: Ledger, events: int) -> bool:
    return ledger_.counted + ledger_.duplicates >= events


async def test_consumers_killed_after_effect_before_offset_commit_do_not_double_apply(
    stack: Stack,
) -> None:
    n = 5
    await submit(stack, n)
    first_worker = worker(stack, bus=CrashingConsumers(stack.bus, *WORK_EVENTS))
    first_ledger = ledger(stack, bus=CrashingConsumers(stack.bus, EventType.SUCCEEDED))
    async with running(relay(stack)):
        stop = asyncio.Event()
        with pytest.raises(Crash):  # claimed (its effect), died before committing offsets
            await asyncio.wait_for(first_worker.run(stop), 30)
        first_claims = first_worker.runner.stats.claimed
        assert first_claims >= 1
        await wait_until(lambda: _succeeded(stack, first_claims), what="the claimed jobs to finish")
        with pytest.raises(Crash):  # counted a job.succeeded, died before committing
            await asyncio.wait_for(first_ledger.run(stop), 30)
        assert first_ledger.counted >= 1

        second_worker, second_ledger = worker(stack), ledger(stack)
        async with running(second_worker, second_ledger):
            await wait_until(lambda: _ledger_done(stack, n), what="the ledger to count all jobs")
            # The redelivered records reach the new members and claim nothing: their jobs are
            # no longer pending (a replay after its job is pending again is the case of
            # test_an_old_event_replayed_after_its_job_is_pending_again_is_not_claimed).
            await wait_until(
                lambda: _handled(second_worker.loop.handled, n), what="the redelivered events"
            )
            await wait_until(
                lambda: _handled(second_ledger.duplicates, first_ledger.counted),
                what="the ledger's redelivered events",
            )

    rows = await outbox_rows(stack.db)
    assert set(per_job(rows, EventType.CLAIMED).values()) == {1}
    assert second_worker.runner.stats.claimed == n - first_claims
    assert (await statuses(stack.db))["succeeded"] == n
    assert await usage_totals(stack.db, stack.tenant.id) == (n, n * 1000)
    assert second_ledger.duplicates >= first_ledger.counted


async def _handled(count: int, at_least: int) -> bool:
    return count >= at_least


async def _ledger_done(stack: Stack, n: int) -> bool:
    return await usage_totals(stack.db, stack.tenant.id) == (n, n * 1000)


async def test_a_full_pool_never_overfills_and_every_job_still_runs(stack: Stack) -> None:
    keys = await submit(stack, 8)
    w = worker(stack, concurrency=2, seconds=0.3)
    peak = 0

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, w.runner.active)
            await asyncio.sleep(0.01)

    watcher = asyncio.create_task(watch())
    try:
        async with running(relay(stack), w):
            await wait_until(lambda: _all_succeeded(stack, len(keys)), what="all jobs")
    finally:
        watcher.cancel()
    assert peak == 2
    assert set(per_job(await outbox_rows(stack.db), EventType.CLAIMED).values()) == {1}


async def test_shutdown_lets_jobs_finish_until_the_grace_then_releases_them(
    stack: Stack,
) -> None:
    await submit(stack, 2)
    runner = Runner(
        stack.c.claims,
        SleepExecutor(30),
        stack.c.blobs,
        stack.settings,
        concurrency=2,
        shutdown_grace=0.3,
    )
    w = BusWorker(runner, stack.bus, stack.settings.kafka_worker_group, sweep_seconds=3600)
    async with running(relay(stack), w):
        await wait_until(lambda: _running(stack, 2), what="both jobs to start")
    assert (await statuses(stack.db))["pending"] == 2
    released = [
        r
        for r in await outbox_rows(stack.db, EventType.REQUEUED)
        if r.payload.get("reason") == "released"
    ]
    assert len(released) == 2


async def _running(stack: Stack, n: int) -> bool:
    return (await statuses(stack.db))["running"] == n


async def test_an_old_event_replayed_is_a_hint_and_never_claims_a_job_twice(
    stack: Stack,
) -> None:
    """A relay that published twice can hand a worker an old `job.submitted` again, also
    after the job went back to pending (released here). An event is a hint: it wakes the
    loop, whose conditional claim takes only what is due, so a replay while the job runs
    claims nothing, and a replay after it is pending again claims it once (it is due)."""
    [key] = await submit(stack, 1)
    async with running(relay(stack)):
        await wait_until(lambda: all_published(stack), what="the submitted event")
    [old] = await read_topic(stack.bus, unique("reader"), 1)
    assert (old.key, old.headers["type"]) == (key, EventType.SUBMITTED)
    group = stack.settings.kafka_worker_group

    first, second = worker(stack, seconds=60), worker(stack, seconds=60)
    first.runner.shutdown_grace = 0.1
    second.runner.shutdown_grace = 0.1
    stop_first, stop_second = asyncio.Event(), asyncio.Event()
    runs = [asyncio.create_task(first.runner.run(stop_first))]
    await wait_until(lambda: _running(stack, 1), what="the first worker's claim")
    runs.append(asyncio.create_task(second.runner.run(stop_second)))
    for _ in range(3):  # replays while the job runs: hints that find nothing due
        assert await second.handle(old) == "hinted"
    await asyncio.sleep(0.3)
    assert second.runner.stats.claimed == 0
    stop_first.set()  # shutdown: the running job is released, pending again
    await runs[0]
    assert first.runner.stats.released == 1
    assert await second.handle(old) == "hinted"  # the same old event, once more
    await wait_until(lambda: _running(stack, 1), what="the second worker's claim")
    for _ in range(3):
        assert await second.handle(old) == "hinted"
    await asyncio.sleep(0.3)
    stop_second.set()
    await runs[1]
    assert second.runner.stats.claimed == 1
    assert set(per_job(await outbox_rows(stack.db), EventType.CLAIMED).values()) == {2}
    assert await processed_ids(stack.db, group) == set()  # hints record nothing
