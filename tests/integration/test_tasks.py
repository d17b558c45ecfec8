"""Jobs of several tasks on SQLite and a real PostgreSQL: dependencies, completion, fencing,
cascades and reuse. Graphs run with the SleepExecutor through the executor registry."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa

from jobs import statements
from jobs.claims import ClaimService
from jobs.db import Database
from jobs.errors import InvalidTransition, LostFence
from jobs.models import Job, OutboxEvent
from jobs.service import JobService
from jobs.settings import Settings
from jobs.spec import EditRequest
from jobs.storage import LocalStorage
from jobs.taskplan import TaskPlan
from jobs.tasks import graph
from jobs.tenants import TenantRef
from tests.integration.test_runner import blobs, make_runner, running, wait_for
from workers.executor import ExecutionContext, ExecutionResult, ExecutorRegistry, SleepExecutor

__all__ = ["blobs"]  # the fixture, shared with the runner tests
outbox_t = OutboxEvent.__table__  # type: ignore[attr-defined]
jobs_t = Job.__table__  # type: ignore[attr-defined]


def outputs_request(*names: str, start: float = 1, **extra: Any) -> EditRequest:
    # The height follows the name: equal names are equal work (a name itself is not work).
    outs = [{"name": n, "container": "mp4", "height": 100 + 20 * (ord(n[0]) - 97)} for n in names]
    return EditRequest.model_validate(
        {
            "source": {"path": "clip.mp4"},
            "operations": [{"op": "trim", "start": start, "end": start + 1}],
            "outputs": outs,
            **extra,
        }
    )


async def make_graph(
    db: Database, tenant: TenantRef, name: str, plans: list[TaskPlan]
) -> tuple[Job, dict[str, Job]]:
    """A job of several tasks with a hand-made plan (what packaging plans look like)."""
    async with db.transaction() as conn:
        values = {
            "tenant_id": tenant.id,
            "key": "vj1_" + name.encode().hex().ljust(64, "0")[:64],
            "spec": {"inputs": []},
            "labels": {},
            "priority": 0,
            "max_attempts": 2,
            "role": "graph",
            "status": "waiting",
        }
        job = await statements.insert_job_if_absent(conn, values)
        assert job is not None
        job, _ = await graph.attach(conn, job, plans)
        members = await graph.members(conn, job.id or 0)
    return job, {m.name: m.task for m in members}


def plan(name: str, *deps: str, publish: bool = True, salt: str = "") -> TaskPlan:
    spec = {"inputs": [], "work": name + salt}
    return TaskPlan(name, "edit", spec, tuple(deps), f"outputs.{name}" if publish else None)


async def row(db: Database, row_id: int | None) -> Job:
    async with db.reader.connect() as conn:
        found = (await conn.execute(sa.select(jobs_t).where(jobs_t.c.id == row_id))).mappings()
        return Job.model_construct(**found.one())


async def events(db: Database, row_id: int | None) -> list[str]:
    stmt = sa.select(outbox_t.c.type).where(outbox_t.c.job_id == row_id).order_by(outbox_t.c.id)
    async with db.reader.connect() as conn:
        return [r[0] for r in (await conn.execute(stmt)).all()]


async def claim(db: Database, settings: Settings, *keys: str) -> list[Job]:
    claims = ClaimService(db, settings)
    out = []
    for key in keys:
        async with db.reader.connect() as conn:
            tenant = (
                await conn.execute(sa.select(jobs_t.c.tenant_id).where(jobs_t.c.key == key))
            ).scalar_one()
        got = await claims.claim_by_key(tenant, key, "w")
        assert got is not None, f"{key} was not claimable"
        out.append(got)
    return out


async def finish_concurrently(db_url: str, settings: Settings, tasks: list[Job]) -> None:
    """Each task's success from its own pool (as separate worker processes), at once."""
    barrier = asyncio.Barrier(len(tasks))

    async def finisher(task: Job) -> None:
        own = Database(db_url)
        try:
            await own.ping()
            await barrier.wait()
            await ClaimService(own, settings).succeed(task, {"work": task.key})
        finally:
            await own.dispose()

    await asyncio.gather(*[finisher(t) for t in tasks])


async def test_a_task_waits_for_its_dependencies_and_is_released_once_under_concurrent_completions(
    db: Database, db_url: str, tenant: TenantRef, settings: Settings
) -> None:
    for round_ in range(5):
        job, tasks = await make_graph(
            db,
            tenant,
            f"deps{round_}",
            [plan("a", salt=str(round_)), plan("b", salt=str(round_)), plan("p", "a", "b")],
        )
        assert (tasks["a"].status, tasks["b"].status) == ("pending", "pending")
        assert (tasks["p"].status, tasks["p"].waiting) == ("waiting", 2)
        assert (job.status, job.waiting) == ("waiting", 3)
        a, b = await claim(db, settings, tasks["a"].key, tasks["b"].key)
        await finish_concurrently(db_url, settings, [a, b])
        p = await row(db, tasks["p"].id)
        assert (p.status, p.waiting) == ("pending", 0)
        assert (await events(db, p.id)).count("task.ready") == 1
        assert (await row(db, job.id)).waiting == 1


async def test_the_last_tasks_finishing_together_succeed_the_job_exactly_once(
    db: Database, db_url: str, tenant: TenantRef, settings: Settings
) -> None:
    for round_ in range(5):
        job, tasks = await make_graph(
            db,
            tenant,
            f"last{round_}",
            [plan(n, salt=str(round_)) for n in ("x", "y", "z")],
        )
        claimed = await claim(db, settings, *(t.key for t in tasks.values()))
        await finish_concurrently(db_url, settings, claimed)
        done = await row(db, job.id)
        assert done.status == "succeeded" and done.waiting == 0
        assert sorted(done.output["outputs"]) == ["x", "y", "z"]
        assert done.output["outputs"]["x"] == {"work": tasks["x"].key}
        assert (await events(db, job.id)).count("job.succeeded") == 1
        for t in tasks.values():  # a task's events are task events, never job events
            assert "task.succeeded" in await events(db, t.id)
            assert not [e for e in await events(db, t.id) if e.startswith("job.")]


async def test_a_zombie_task_can_neither_finish_nor_release_its_dependents(
    db: Database, tenant: TenantRef, settings: Settings
) -> None:
    short = settings.model_copy(update={"lease_seconds": 0.2})
    job, tasks = await make_graph(db, tenant, "zombie", [plan("a"), plan("p", "a")])
    [zombie] = await claim(db, short, tasks["a"].key)
    await asyncio.sleep(0.4)
    claims = ClaimService(db, short)
    assert [r.key for r in await claims.rescue_expired()] == [zombie.key]
    [current] = await claim(db, settings, zombie.key)
    assert current.fencing_token == zombie.fencing_token + 1
    try:
        await claims.succeed(zombie, {"stale": True})
        raise AssertionError("a zombie's completion was recorded")
    except LostFence:
        pass
    p = await row(db, tasks["p"].id)
    assert (p.status, p.waiting) == ("waiting", 1)
    assert "task.ready" not in await events(db, p.id)
    assert (await row(db, job.id)).status == "waiting"
    await claims.succeed(current, {"fresh": True})  # the live holder's completion counts
    assert (await row(db, tasks["p"].id)).status == "pending"


async def test_a_permanent_failure_fails_the_job_and_cancels_its_other_tasks(
    db: Database, tenant: TenantRef, settings: Settings
) -> None:
    job, tasks = await make_graph(
        db, tenant, "perm", [plan("a"), plan("b"), plan("c", "a"), plan("d")]
    )
    a, b = await claim(db, settings, tasks["a"].key, tasks["b"].key)
    claims = ClaimService(db, settings)
    retried = await claims.fail(a, code="transient", message="try again", retryable=True)
    assert retried.status == "pending"  # a retryable failure retries that task alone
    assert (await row(db, job.id)).status == "waiting"
    assert (await row(db, tasks["b"].id)).status == "running"
    [a] = await claim(db, settings, tasks["a"].key)
    await claims.fail(a, code="invalid_input", message="broken", retryable=False)
    failed = await row(db, job.id)
    assert failed.status == "failed" and failed.error_code == "invalid_input"
    assert "'a'" in (failed.error_message or "")
    assert (await row(db, tasks["c"].id)).status == "cancelled"  # was waiting
    assert (await row(db, tasks["d"].id)).status == "cancelled"  # was pending
    running_b = await row(db, tasks["b"].id)
    assert running_b.status == "running" and running_b.cancel_requested
    assert (await events(db, job.id)).count("job.failed") == 1
    await claims.cancel(b)  # the worker honours the request; the job stays failed
    assert (await row(db, job.id)).status == "failed"


async def test_cancel_and_retry_of_a_job_cascade_to_its_tasks(
    db: Database, service: JobService, tenant: TenantRef, settings: Settings, blobs: LocalStorage
) -> None:
    job = (await service.submit(tenant, outputs_request("small", "big"))).job
    assert job.role == "graph" and job.status == "waiting"
    _, tasks = await service.tasks(tenant, job.key)
    [small] = await claim(db, settings, tasks[0].task.key)
    cancelled = await service.cancel(tenant, job.key)
    assert cancelled.status == "cancelled"
    _, after = await service.tasks(tenant, job.key)
    by_name = {m.name: m.task for m in after}
    assert by_name["small"].status == "running" and by_name["small"].cancel_requested
    assert by_name["big"].status == "cancelled"
    await ClaimService(db, settings).cancel(small)
    retried = await service.retry(tenant, job.key)
    assert retried.status == "waiting"
    _, requeued = await service.tasks(tenant, job.key)
    assert {m.task.status for m in requeued} == {"pending"}
    assert all(m.task.attempts == 0 for m in requeued)
    executor = SleepExecutor(0.01)
    runner, _ = make_runner(db, settings, blobs, ExecutorRegistry(executor))
    async with running(runner):
        done = await wait_for(service, tenant, job.key, {"succeeded", "failed"})
    assert done.status == "succeeded", done.error_message
    assert sorted(done.output["outputs"]) == ["big", "small"]
    assert (await events(db, job.id)).count("job.succeeded") == 1


async def test_two_outputs_run_as_tasks_and_the_same_tenant_reuses_them_but_no_other_tenant(
    db: Database,
    service: JobService,
    tenant: TenantRef,
    other_tenant: TenantRef,
    settings: Settings,
    blobs: LocalStorage,
) -> None:
    executor = SleepExecutor(0.01)
    runner, wakeup = make_runner(db, settings, blobs, ExecutorRegistry(executor), concurrency=4)
    service.after_commit = lambda events: wakeup.notify()
    async with running(runner):
        first = (await service.submit(tenant, outputs_request("a", "b"))).job
        done = await wait_for(service, tenant, first.key, {"succeeded", "failed"})
        assert done.status == "succeeded", done.error_message
        for name in ("a", "b"):
            out = done.output["outputs"][name]
            assert blobs.path_for(out["digest"]).stat().st_size == out["size"]
        assert len(executor.runs) == 2
        # Same tenant, same bytes, one output in common: that one is reused, not re-encoded.
        second = (await service.submit(tenant, outputs_request("a", "c"))).job
        assert second.key != first.key
        again = await wait_for(service, tenant, second.key, {"succeeded", "failed"})
        _, members = await service.tasks(tenant, second.key)
        assert {m.name: m.reused for m in members} == {"a": True, "c": False}
        assert again.output["outputs"]["a"] == done.output["outputs"]["a"]
        assert len(executor.runs) == 3
        # Another tenant never shares the first tenant's tasks.
        theirs = (await service.submit(other_tenant, outputs_request("a", "b"))).job
        other = await wait_for(service, other_tenant, theirs.key, {"succeeded", "failed"})
        _, their_members = await service.tasks(other_tenant, theirs.key)
        assert not any(m.reused for m in their_members)
        assert {m.task.key for m in their_members}.isdisjoint({m.task.key for m in members})
        assert other.status == "succeeded" and len(executor.runs) == 5


async def test_a_task_in_flight_is_shared_by_two_jobs_of_a_tenant(
    db: Database, service: JobService, tenant: TenantRef, settings: Settings
) -> None:
    one = (await service.submit(tenant, outputs_request("a", "b", start=3))).job
    _, members = await service.tasks(tenant, one.key)
    [a] = await claim(db, settings, members[0].task.key)
    two = (await service.submit(tenant, outputs_request("a", start=3, priority=5))).job
    _, shared = await service.tasks(tenant, two.key)
    assert shared[0].task.id == a.id and not shared[0].reused
    await ClaimService(db, settings).succeed(a, {"made": "once"})
    assert (await service.get(tenant, two.key)).status == "succeeded"
    assert (await service.get(tenant, one.key)).status == "waiting"  # still waits for b


async def test_a_task_whose_leases_run_out_for_good_fails_its_job(
    db: Database, tenant: TenantRef, settings: Settings
) -> None:
    short = settings.model_copy(update={"lease_seconds": 0.2})
    job, tasks = await make_graph(db, tenant, "lost", [plan("a"), plan("b")])  # 2 attempts
    claims = ClaimService(db, short)
    for attempt in (1, 2):
        [a] = await claim(db, short, tasks["a"].key)
        assert a.attempts == attempt
        await asyncio.sleep(0.4)
        [rescued] = await claims.rescue_expired()
    assert rescued.status == "failed"
    failed = await row(db, job.id)
    assert failed.status == "failed" and failed.error_code == "lease_expired"
    assert (await row(db, tasks["b"].id)).status == "cancelled"
    assert "task.failed" in await events(db, tasks["a"].id)


async def test_a_cascade_keeps_a_task_that_another_waiting_job_still_needs(
    db: Database, service: JobService, tenant: TenantRef, settings: Settings
) -> None:
    one = (await service.submit(tenant, outputs_request("a", "b", start=4))).job
    two = (await service.submit(tenant, outputs_request("a", start=4))).job
    _, members = await service.tasks(tenant, one.key)
    by_name = {m.name: m.task for m in members}
    [b] = await claim(db, settings, by_name["b"].key)
    await ClaimService(db, settings).fail(b, code="invalid_input", message="no", retryable=False)
    assert (await service.get(tenant, one.key)).status == "failed"
    assert (await row(db, by_name["a"].id)).status == "pending"  # job two still needs it
    [a] = await claim(db, settings, by_name["a"].key)
    await ClaimService(db, settings).succeed(a, {"shared": True})
    assert (await service.get(tenant, two.key)).status == "succeeded"
    with pytest.raises(InvalidTransition):  # failed: as for a simple job, nothing to cancel
        await service.cancel(tenant, one.key)


class Maker:
    """A task that makes several files (a packager's shape)."""

    async def execute(self, ctx: ExecutionContext) -> ExecutionResult:
        (ctx.workdir / "seg").mkdir()
        (ctx.workdir / "seg" / "0.ts").write_bytes(b"segment zero")
        (ctx.workdir / "index.m3u8").write_text("#EXTM3U\n")
        files = {"seg/0.ts": ctx.workdir / "seg" / "0.ts", "index.m3u8": ctx.workdir / "index.m3u8"}
        return ExecutionResult(path=None, media_type=None, metadata={"made": 2}, files=files)


class Reader:
    """A task that reads its dependency's files through `ctx.deps`."""

    async def execute(self, ctx: ExecutionContext) -> ExecutionResult:
        dep = ctx.deps["a"]
        seen = {rel: path.read_bytes().decode() for rel, path in sorted(dep.files.items())}
        return ExecutionResult(
            path=None, media_type=None, metadata={"seen": seen, "of": dep.output["made"]}
        )


async def test_a_task_reads_its_dependencies_files_and_stores_its_own_by_digest(
    db: Database, tenant: TenantRef, settings: Settings, blobs: LocalStorage
) -> None:
    maker = TaskPlan("a", "maker", {"inputs": []}, (), None)
    reader = TaskPlan("p", "reader", {"inputs": []}, ("a",), "package")
    job, _ = await make_graph(db, tenant, "files", [maker, reader])
    registry = ExecutorRegistry(SleepExecutor(0.01), maker=Maker(), reader=Reader())
    runner, _ = make_runner(db, settings, blobs, registry)
    async with running(runner):
        async with asyncio.timeout(10):
            while (done := await row(db, job.id)).status == "waiting":
                await asyncio.sleep(0.02)
    assert done.status == "succeeded", done.error_message
    assert done.output == {
        "package": {"seen": {"index.m3u8": "#EXTM3U\n", "seg/0.ts": "segment zero"}, "of": 2}
    }
    async with db.reader.connect() as conn:
        a = (await graph.members(conn, job.id or 0))[0].task
    files = a.output["files"]
    assert set(files) == {"index.m3u8", "seg/0.ts"}
    assert files["seg/0.ts"]["size"] == 12 and files["index.m3u8"]["media_type"]
    assert blobs.path_for(files["seg/0.ts"]["digest"]).read_bytes() == b"segment zero"


async def test_an_unknown_task_kind_fails_permanently(
    db: Database, tenant: TenantRef, settings: Settings, blobs: LocalStorage
) -> None:
    job, _ = await make_graph(db, tenant, "kind", [TaskPlan("x", "teleport", {"inputs": []})])
    runner, _ = make_runner(db, settings, blobs, ExecutorRegistry(SleepExecutor(0.01)))
    async with running(runner):
        async with asyncio.timeout(10):
            while (done := await row(db, job.id)).status == "waiting":
                await asyncio.sleep(0.02)
    assert done.status == "failed" and done.error_code == "unknown_task_kind"
