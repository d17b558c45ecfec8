"""Bus consumers: the generic consume loop, and the bus-driven runner built on it.

The loop fetches records, hands each to a handler whose effect and dedup record are one
database transaction, and commits the offsets only after those transactions committed. A
record whose handler fails is retried (with a backoff) before anything after it, and
nothing past it is committed, so a crash anywhere means redelivery, never loss; the
handler's dedup turns redelivery into no second effect.

`BusWorker` is `vidjobs worker` with a bus: work events are claimed by key (the event id
recorded in the claim's transaction) and run in the runner's bounded pool; while the pool
is full the partitions are paused (the group membership stays). A slow database sweep
still claims what a lost or late event left behind.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable

from jobs.status import WORK_EVENTS
from workers import metrics
from workers.bus import Bus, CommitFailed, Consumer, Record
from workers.bus.events import BusEvent, event_type
from workers.runner import Runner

log = logging.getLogger("vidjobs.consumer")

Handler = Callable[[Record], Awaitable[str]]  # returns a result label for the metrics


class ConsumerLoop:
    """Consume a group's records in order; commit only what the handler has committed."""

    def __init__(
        self,
        bus: Bus,
        group: str,
        handle: Handler,
        *,
        needs_slot: Callable[[Record], bool] | None = None,
        free_slots: Callable[[], int] | None = None,
        fetch_timeout: float = 0.5,
        max_batch: int = 200,
        prepare: Callable[[list[Record]], Awaitable[None]] | None = None,
    ) -> None:
        self.bus = bus
        self.group = group
        self.handle = handle
        self.needs_slot = needs_slot
        self.free_slots = free_slots
        self.fetch_timeout = fetch_timeout
        self.max_batch = max_batch
        # Optional: sees each fetched batch before its records are handled (a handler may
        # read what the whole batch needs at once). A failure only costs that shortcut.
        self.prepare = prepare
        self.started = asyncio.Event()
        self.handled = 0
        self._stop = asyncio.Event()

    def _blocked(self, record: Record) -> bool:
        """A record that would start a job while the pool is full waits (partitions paused)."""
        if self.needs_slot is None or self.free_slots is None:
            return False
        return self.needs_slot(record) and self.free_slots() <= 0

    async def run(self, stop: asyncio.Event) -> None:
        self._stop = stop
        consumer = await self._start_consumer()
        if consumer is None:
            return
        pending: collections.deque[Record] = collections.deque()
        done: list[Record] = []
        failures = 0
        last_lag = 0.0
        loop = asyncio.get_running_loop()
        try:
            while not stop.is_set():
                if loop.time() - last_lag > 5:
                    last_lag = loop.time()
                    await self._report_lag(consumer)
                if pending and self._blocked(pending[0]):
                    consumer.pause()
                    await self._wait_for_slot()
                    # Still poll (paused, so nothing new arrives): the group sees us alive.
                    pending.extend(await self._fetch(consumer, 0, 1))
                    continue
                consumer.resume()
                if not pending:
                    pending.extend(await self._fetch(consumer, self.fetch_timeout, self.max_batch))
                    await self._prepare(list(pending))
                try:
                    while pending and not stop.is_set() and not self._blocked(pending[0]):
                        result = await self.handle(pending[0])
                        done.append(pending.popleft())
                        self.handled += 1
                        metrics.CONSUMED.labels(self.group, result).inc()
                    failures = 0
                except Exception as exc:  # the database or a bug: retry this record later
                    failures += 1
                    log.warning("%s: handling failed (attempt %d): %s", self.group, failures, exc)
                    await self._sleep(_backoff(failures))
                finally:
                    await self._commit(consumer, done)
        finally:
            try:
                await self._commit(consumer, done)
            finally:
                await consumer.stop()

    async def _start_consumer(self) -> Consumer | None:
        attempt = 0
        while not self._stop.is_set():
            consumer = self.bus.consumer(self.group)
            try:
                await consumer.start()
            except Exception as exc:
                attempt += 1
                log.warning("%s: could not join the group, will retry: %s", self.group, exc)
                await self._sleep(_backoff(attempt))
                continue
            self.started.set()
            return consumer
        return None

    async def _fetch(self, consumer: Consumer, wait: float, limit: int) -> list[Record]:
        try:
            return await consumer.fetch(wait, limit)
        except Exception as exc:
            log.warning("%s: fetch failed, will retry: %s", self.group, exc)
            await self._sleep(1.0)
            return []

    async def _prepare(self, records: list[Record]) -> None:
        if self.prepare is None or not records:
            return
        try:
            await self.prepare(records)
        except Exception as exc:
            log.info("%s: preparing a batch failed (handled one by one): %s", self.group, exc)

    async def _wait_for_slot(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.fetch_timeout
        while self.free_slots is not None and self.free_slots() <= 0 and not self._stop.is_set():
            if loop.time() >= deadline:
                return
            await asyncio.sleep(0.02)

    async def _commit(self, consumer: Consumer, done: list[Record]) -> None:
        if not done:
            return
        try:
            await consumer.commit(done)
        except CommitFailed as exc:  # redelivered to the partition's new owner, deduplicated
            log.info("%s: offsets not committed (%s)", self.group, exc)
        except Exception as exc:
            log.warning("%s: commit failed (%s); records may come again", self.group, exc)
        done.clear()

    async def _report_lag(self, consumer: Consumer) -> None:
        with contextlib.suppress(Exception):
            metrics.CONSUMER_LAG.labels(self.group).set(await consumer.lag())

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)


def _backoff(attempt: int) -> float:
    """Exponential with jitter, 0.1 s doubling up to 5 s."""
    ceiling = min(5.0, 0.1 * 2 ** max(0, attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


class BusWorker:
    """A runner fed by work events from the bus, with a slow database sweep behind it."""

    def __init__(self, runner: Runner, bus: Bus, group: str, *, sweep_seconds: float = 5.0) -> None:
        self.runner = runner
        self.group = group
        self.sweep_seconds = sweep_seconds
        self.loop = ConsumerLoop(
            bus,
            group,
            self.handle,
            needs_slot=lambda record: event_type(record) in WORK_EVENTS,
            free_slots=self.free_slots,
        )

    def free_slots(self) -> int:
        return self.runner.concurrency - self.runner.active

    async def handle(self, record: Record) -> str:
        if event_type(record) not in WORK_EVENTS:
            return "ignored"
        event = BusEvent.from_record(record)
        job = await self.runner.claims.claim_by_key(
            event.tenant_id,
            event.job_key,
            self.runner.owner,
            consumer=self.group,
            event_id=event.event_id,
        )
        if job is None:  # seen before, or claimed elsewhere, or no longer pending
            metrics.observe_claim_lost()
            return "not_claimed"
        self.runner.start(job)
        return "claimed"

    async def sweep(self) -> int:
        """Claim due jobs no event brought (lost, late, or published before we joined)."""
        free = self.free_slots()
        if free <= 0:
            return 0
        jobs = await self.runner.claims.claim_batch(self.runner.owner, free)
        for job in jobs:
            self.runner.start(job)
        return len(jobs)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume and sweep until `stop`; then let running jobs finish, releasing stragglers."""
        sweeper = asyncio.create_task(self._sweep_loop(stop))
        try:
            await self.loop.run(stop)
        finally:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
            # Runner.run with its stop already set only drains: it waits for the running
            # jobs up to the runner's shutdown grace, then releases (requeues) the rest.
            drained = asyncio.Event()
            drained.set()
            await self.runner.run(drained)

    async def _sweep_loop(self, stop: asyncio.Event) -> None:
        await self.loop.started.wait()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.sweep_seconds)
            if stop.is_set():
                return
            try:
                await self.sweep()
            except Exception as exc:
                log.warning("sweep failed, will retry: %s", exc)
