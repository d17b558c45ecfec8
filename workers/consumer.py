"""Bus consumers: the generic consume loop, and the bus-driven runner built on it.

The loop fetches records, hands each to a handler whose effect and dedup record are one
database transaction, and commits the offsets only after those transactions committed. A
record whose handler fails is retried (with a backoff) before anything after it, and
nothing past it is committed, so a crash anywhere means redelivery, never loss; the
handler's dedup turns redelivery into no second effect.

`BusWorker` is `vidjobs worker` with a bus: a work event is a hint that work exists, not an
order to run that key next. It wakes the runner's one loop, whose claim takes the
highest-priority due job (tenants of equal priority in turn) for each free slot, so
priority and the slot cap hold on the bus path as on the sweep's. A hint needs no dedup
record: a redelivered one costs at most a claim that finds nothing. The loop's poll (the
fleet's sweep interval) claims what a lost or late event left behind.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Awaitable, Callable

from jobs.backoff import backoff_seconds
from jobs.status import WORK_EVENTS
from workers import loop, metrics, tracing
from workers.bus import Bus, CommitFailed, Consumer, Record
from workers.bus.events import event_type
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
        fetch_timeout: float = 0.5,
        max_batch: int = 200,
        prepare: Callable[[list[Record]], Awaitable[None]] | None = None,
    ) -> None:
        self.bus = bus
        self.group = group
        self.handle = handle
        self.fetch_timeout = fetch_timeout
        self.max_batch = max_batch
        # Optional: sees each fetched batch before its records are handled (a handler may
        # read what the whole batch needs at once). A failure only costs that shortcut.
        self.prepare = prepare
        self.started = asyncio.Event()
        self.handled = 0
        self._stop = asyncio.Event()

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
                if not pending:
                    pending.extend(await self._fetch(consumer, self.fetch_timeout, self.max_batch))
                    await self._prepare(list(pending))
                try:
                    while pending and not stop.is_set():
                        with tracing.consuming(pending[0], self.group, self.bus.topic):
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
        await loop.sleep_unless_stopped(self._stop, seconds)


def _backoff(attempt: int) -> float:
    """0.1 s doubling up to 5 s, jittered."""
    return backoff_seconds(attempt, 0.1, 5.0)


class BusWorker:
    """A runner woken by work events from the bus, with its poll as the slow sweep behind."""

    def __init__(self, runner: Runner, bus: Bus, group: str, *, sweep_seconds: float = 5.0) -> None:
        self.runner = runner
        self.group = group
        runner.poll_seconds = sweep_seconds
        self.loop = ConsumerLoop(bus, group, self.handle)

    async def handle(self, record: Record) -> str:
        if event_type(record) not in WORK_EVENTS:
            return "ignored"
        self.runner.wakeup.notify()  # the loop claims what is due, best first
        return "hinted"

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop`; then let running jobs finish, releasing stragglers."""
        runner_stop = asyncio.Event()
        working = asyncio.create_task(self.runner.run(runner_stop))
        try:
            await self.loop.run(stop)
        finally:
            # The runner drains: it waits for the running jobs up to its shutdown grace,
            # then releases (requeues) the rest and records every queued outcome.
            runner_stop.set()
            await working
