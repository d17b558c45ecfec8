"""Scheduling on every path: priority, the slot cap and fair share, on both buses and both
databases (in-process bus on SQLite and PostgreSQL, Apache Kafka on PostgreSQL).

Each test runs the fleet's worker shape: the relay publishes the outbox, the worker's loop
is woken by the bus's hints (and, where said, by its sweep and its own process's signals).
"""

from __future__ import annotations

import asyncio
from typing import Any

from jobs.errors import RetryableError
from jobs.spec import EditRequest
from jobs.tenants import TenantRef, create_tenant
from tests.bus.conftest import Stack
from tests.bus.helpers import running, statuses, wait_until
from workers.consumer import BusWorker
from workers.executor import ExecutionContext, ExecutionResult
from workers.relay import Relay
from workers.runner import Runner


class Recorder:
    """Records which job started when, and how many ran at once (executor overlap)."""

    def __init__(self, seconds: float = 0.0, fail_first: set[str] | None = None) -> None:
        self.seconds = seconds
        self.started: list[str] = []
        self.running = 0
        self.most_at_once = 0
        self.fail_first = set(fail_first or ())
        self.gate: asyncio.Event | None = None

    async def execute(self, ctx: ExecutionContext) -> ExecutionResult:
        self.started.append(ctx.job.key)
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            if self.gate is not None:
                await self.gate.wait()
            await asyncio.sleep(self.seconds)
            if ctx.job.key in self.fail_first:
                self.fail_first.discard(ctx.job.key)
                raise Retry()
        finally:
            self.running -= 1
        return ExecutionResult(path=None, media_type=None, metadata={"ok": True})


class Retry(RetryableError):
    def __init__(self) -> None:
        super().__init__("flaky, try again", code="flaky", delay=0.0)


def edit(i: int, **extra: Any) -> EditRequest:
    return EditRequest.model_validate(
        {
            "source": {"path": "clip.mp4"},
            "operations": [{"op": "trim", "start": i, "end": i + 1}],
            **extra,
        }
    )


def bus_worker(
    stack: Stack, executor: Recorder, concurrency: int, *, sweep: float = 3600
) -> BusWorker:
    runner = Runner(
        stack.c.claims,
        executor,
        stack.c.blobs,
        stack.settings,
        concurrency=concurrency,
        wakeup=stack.c.wakeup,  # this process's submissions wake it too
        shutdown_grace=5,
    )
    return BusWorker(runner, stack.bus, stack.settings.kafka_worker_group, sweep_seconds=sweep)


def relay(stack: Stack) -> Relay:
    return Relay(stack.db, stack.bus, stack.settings, wakeup=stack.c.relay_wakeup)


async def submit(stack: Stack, tenant: TenantRef, first: int, n: int, **extra: Any) -> list[str]:
    return [
        (await stack.service.submit(tenant, edit(i, **extra))).job.key
        for i in range(first, first + n)
    ]


async def _done(stack: Stack, n: int) -> bool:
    counts = await statuses(stack.db)
    return counts["succeeded"] + counts["failed"] >= n


async def test_a_higher_priority_job_behind_a_backlog_starts_next(stack: Stack) -> None:
    executor = Recorder(seconds=0.01)
    executor.gate = asyncio.Event()
    w = bus_worker(stack, executor, concurrency=1)
    async with running(relay(stack), w):
        backlog = await submit(stack, stack.tenant, 0, 6, priority=0)
        await wait_until(lambda: _started(executor, 1), what="the first job to start")
        # Behind five due priority-0 jobs, and announced on the bus after them.
        [urgent] = await submit(stack, stack.tenant, 100, 1, priority=100)
        await asyncio.sleep(0.3)  # its event reaches the worker while the slot is taken
        executor.gate.set()
        await wait_until(lambda: _done(stack, 7), what="every job")
    assert executor.started[0] in backlog
    assert executor.started[1] == urgent, executor.started


async def _started(executor: Recorder, n: int) -> bool:
    return len(executor.started) >= n


async def test_concurrency_one_never_runs_two_jobs_at_once_under_bus_sweep_and_retries(
    stack: Stack,
) -> None:
    n = 200
    flaky = set()
    executor = Recorder(seconds=0.001)
    # Three wake-up sources at once: bus hints, this process's own submissions and retries
    # (`wakeup`), and a sweep every 50 ms; every tenth job fails once and is retried.
    w = bus_worker(stack, executor, concurrency=1, sweep=0.05)
    async with running(relay(stack), w):
        keys = await submit(stack, stack.tenant, 0, n)
        flaky.update(keys[::10])
        executor.fail_first.update(flaky)
        await wait_until(lambda: _done(stack, n), timeout=120, what="every job")
    assert executor.most_at_once == 1
    assert len(executor.started) >= n  # plus the retries of jobs that had failed by then
    assert (await statuses(stack.db))["succeeded"] == n


async def test_a_small_tenants_jobs_start_within_the_first_slots_beside_a_large_backlog(
    stack: Stack,
) -> None:
    async with stack.db.transaction() as conn:
        small, _ = await create_tenant(conn, "small")
    executor = Recorder(seconds=0.005)
    big = await submit(stack, stack.tenant, 0, 30)  # queued first: older
    few = await submit(stack, small, 0, 3)
    w = bus_worker(stack, executor, concurrency=2)
    async with running(relay(stack), w):
        await wait_until(lambda: _done(stack, 33), timeout=60, what="every job")
    order = executor.started
    assert sorted(order) == sorted(big + few)
    positions = [order.index(key) for key in few]
    # Taking turns, the three start within the first eight of 33 starts (not after 30).
    assert max(positions) < 8, positions


async def test_a_tenants_max_running_caps_its_running_jobs(stack: Stack) -> None:
    async with stack.db.transaction() as conn:
        capped, _ = await create_tenant(conn, "capped", max_running=1)
    executor = Recorder(seconds=0.02)
    running_of: dict[str, int] = {}
    most: dict[str, int] = {}
    tenant_of = {}
    for key in await submit(stack, capped, 0, 6):
        tenant_of[key] = "capped"
    for key in await submit(stack, stack.tenant, 0, 6):
        tenant_of[key] = "acme"

    real = executor.execute

    async def execute(ctx: ExecutionContext) -> ExecutionResult:
        who = tenant_of[ctx.job.key]
        running_of[who] = running_of.get(who, 0) + 1
        most[who] = max(most.get(who, 0), running_of[who])
        try:
            return await real(ctx)
        finally:
            running_of[who] -= 1

    executor.execute = execute  # type: ignore[method-assign]
    w = bus_worker(stack, executor, concurrency=4)
    async with running(relay(stack), w):
        await wait_until(lambda: _done(stack, 12), timeout=60, what="every job")
    assert most["capped"] == 1  # never two of the capped tenant's jobs at once
    assert most["acme"] >= 2  # while the other tenant used the free slots
