"""Jobs of several tasks through relay, bus-driven worker and ledger (in-process bus and
real Kafka): the tasks' events wake the workers, each task runs once, the ledger counts
each job once."""

from __future__ import annotations

from jobs.spec import EditRequest
from jobs.status import EventType
from tests.bus.conftest import Stack
from tests.bus.helpers import outbox_rows, per_job, running, usage_totals, wait_until
from tests.bus.test_pipeline import _started, ledger, relay, worker


def outputs_edit(i: int) -> EditRequest:
    return EditRequest.model_validate(
        {
            "source": {"path": "clip.mp4"},
            "operations": [{"op": "trim", "start": i, "end": i + 1}],
            "outputs": [{"name": "small", "height": 120}, {"name": "big", "height": 240}],
        }
    )


async def test_task_events_drive_the_workers_and_the_ledger_counts_each_job_once(
    stack: Stack,
) -> None:
    w = worker(stack, concurrency=3)
    counted = ledger(stack)
    async with running(relay(stack), w, counted):
        await wait_until(lambda: _started(w), what="the worker to idle")
        keys = [
            (await stack.service.submit(stack.tenant, outputs_edit(i))).job.key for i in range(3)
        ]

        async def all_done() -> bool:
            jobs = [await stack.service.get(stack.tenant, k) for k in keys]
            return all(j.status == "succeeded" for j in jobs)

        await wait_until(all_done, what="every job of several tasks to succeed")
        await wait_until(lambda: _counted(stack, len(keys)), what="the ledger to count every job")
    rows = await outbox_rows(stack.db)
    assert set(per_job(rows, EventType.TASK_CLAIMED).values()) == {1}
    assert sum(per_job(rows, EventType.TASK_SUCCEEDED).values()) == 2 * len(keys)
    assert dict(per_job(rows, EventType.SUCCEEDED)) == {k: 1 for k in keys}
    assert not per_job(rows, EventType.CLAIMED)  # no job of several tasks is itself claimed
    jobs, _ = await usage_totals(stack.db, stack.tenant.id)
    assert jobs == len(keys)


async def _counted(stack: Stack, n: int) -> bool:
    jobs, _ = await usage_totals(stack.db, stack.tenant.id)
    return jobs >= n
