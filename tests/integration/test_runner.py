"""The worker loop with a test executor, on SQLite and a real PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from jobs.claims import ClaimService
from jobs.db import Database
from jobs.errors import PermanentError
from jobs.service import JobService
from jobs.settings import Settings
from jobs.spec import EditRequest
from jobs.storage import LocalStorage
from jobs.tenants import TenantRef
from workers.executor import ExecutionContext, ExecutionResult, SleepExecutor
from workers.runner import Runner
from workers.wakeup import Wakeup


def request(i: int = 0, **extra: Any) -> EditRequest:
    return EditRequest.model_validate(
        {
            "source": {"path": "clip.mp4"},
            "operations": [{"op": "trim", "start": i, "end": i + 1}],
            **extra,
        }
    )


async def wait_for(
    service: JobService, tenant: TenantRef, key: str, statuses: set[str], timeout: float = 10
) -> Any:
    async with asyncio.timeout(timeout):
        while True:
            job = await service.get(tenant, key)
            if job.status in statuses:
                return job
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running(runner: Runner) -> AsyncIterator[asyncio.Event]:
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        yield stop
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


@pytest.fixture
def blobs(settings: Settings) -> LocalStorage:
    store = LocalStorage(settings.data_dir / "blobs")
    store.ensure_scratch()
    return store


def make_runner(
    db: Database, settings: Settings, blobs: LocalStorage, executor: Any, **kw: Any
) -> tuple[Runner, Wakeup]:
    wakeup = Wakeup()
    claims = ClaimService(db, settings)
    return Runner(claims, executor, blobs, settings, wakeup=wakeup, **kw), wakeup


async def test_jobs_run_once_and_outputs_land_in_the_blob_store(
    db: Database, service: JobService, tenant: TenantRef, settings: Settings, blobs: LocalStorage
) -> None:
    executor = SleepExecutor(0.02)
    runner, wakeup = make_runner(db, settings, blobs, executor, concurrency=3)
    service.after_commit = lambda events: wakeup.notify()
    async with running(runner):
        keys = [(await service.submit(tenant, request(i))).job.key for i in range(10)]
        await service.submit(tenant, request(0))  # a duplicate: never runs again
        done = [await wait_for(service, tenant, k, {"succeeded"}) for k in keys]
    assert sorted(executor.runs) == sorted(keys)
    for job in done:
        path = blobs.path_for(job.output["digest"])
        assert path.is_file() and path.stat().st_size == job.output["size"]
    assert not list(blobs.tmp.iterdir()), "scratch dirs must be removed"


async def test_wakeup_beats_the_poll_interval(
    db: Database, service: JobService, tenant: TenantRef, settings: Settings, blobs: LocalStorage
) -> None:
    slow_poll = settings.model_copy(update={"poll_seconds": 30})
    runner, wakeup = make_runner(db, slow_poll, blobs, SleepExecutor(0.01))
    service.after_commit = lambda events: wakeup.notify()
    async with running(runner):
        await asyncio.sleep(0.1)  # the runner is idle, waiting up to 30 s
        key = (await service.submit(tenant, request())).job.key
        await wait_for(service, tenant, key, {"succeeded"}, timeout=5)


async def test_retryable_then_permanent_failures(
    db: Database, service: JobService, tenant: TenantRef, settings: Settings, blobs: LocalStorage
) -> None:
    flaky = (await service.submit(tenant, request(1, max_attempts=3))).job.key
    broken = (await service.submit(tenant, request(2))).job.key
    executor = SleepExecutor(0.01, fail_times={flaky: 2}, permanent_keys={broken})
    runner, _ = make_runner(db, settings, blobs, executor)
    async with running(runner):
        ok = await wait_for(service, tenant, flaky, {"succeeded", "failed"})
        bad = await wait_for(service, tenant, broken, {"failed"})
    assert ok.status == "succeeded" and ok.attempts == 3
    assert bad.attempts == 1 and bad.error_code == "invalid_input"
    assert executor.runs.count(broken) == 1


class BlockingExecutor:
    """Runs until cancelled; records that cancellation reached it."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cancelled = asyncio.Event()

    async def execute(self, ctx: ExecutionContext) -> ExecutionResult:
        self.started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        raise AssertionError("unreachable")


async def test_cancelling_a_running_job_stops_the_executor(
    db: Database, service: JobService, tenant: TenantRef, settings: Settings, blobs: LocalStorage
) -> None:
    executor = BlockingExecutor()
    runner, _ = make_runner(db, settings, blobs, executor)
    key = (await service.submit(tenant, request())).job.key
    async with running(runner):
        await asyncio.wait_for(executor.started.wait(), 5)
        await service.cancel(tenant, key)
        await asyncio.wait_for(executor.cancelled.wait(), 2)
        job = await wait_for(service, tenant, key, {"cancelled"}, timeout=2)
    assert job.finished_at is not None


async def test_a_worker_that_loses_its_lease_stops_and_attaches_nothing(
    db: Database, service: JobService, tenant: TenantRef, settings: Settings, blobs: LocalStorage
) -> None:
    executor = BlockingExecutor()
    short = settings.model_copy(update={"lease_seconds": 0.3, "heartbeat_seconds": 10})
    runner, _ = make_runner(db, short, blobs, executor)
    key = (await service.submit(tenant, request())).job.key
    async with running(runner):
        await asyncio.wait_for(executor.started.wait(), 5)
        # Someone else takes the job over (as after a pause past the lease).
        async with db.transaction() as conn:
            from jobs import statements

            await conn.execute(
                statements.jobs.update()
                .where(statements.c.key == key)
                .values(fencing_token=statements.c.fencing_token + 1)
            )
        await asyncio.wait_for(executor.cancelled.wait(), 3)
    job = await service.get(tenant, key)
    assert job.status == "running" and job.output is None
    assert runner.stats.lost == 1


async def test_graceful_shutdown_releases_unfinished_jobs(
    db: Database, service: JobService, tenant: TenantRef, settings: Settings, blobs: LocalStorage
) -> None:
    executor = BlockingExecutor()
    runner, _ = make_runner(db, settings, blobs, executor, shutdown_grace=0.2)
    key = (await service.submit(tenant, request())).job.key
    async with running(runner):
        await asyncio.wait_for(executor.started.wait(), 5)
    job = await service.get(tenant, key)
    assert job.status == "pending" and job.attempts == 0
    assert runner.stats.released == 1


class ExplodingExecutor:
    async def execute(self, ctx: ExecutionContext) -> ExecutionResult:
        raise PermanentError("cannot decode", code="invalid_input")


async def test_missing_blob_input_is_a_permanent_failure_not_a_crash(
    db: Database,
    service: JobService,
    tenant: TenantRef,
    settings: Settings,
    blobs: LocalStorage,
    tmp_path: Path,
) -> None:
    from jobs.models import Blob
    from jobs.owners import record_owner

    digest = "sha256:" + "e" * 64
    async with db.transaction() as conn:
        await conn.execute(
            Blob.__table__.insert().values(digest=digest, size=1, media_type="video/mp4")
        )  # type: ignore[attr-defined]
        await record_owner(conn, tenant.id, digest)
    key = (
        await service.submit(tenant, EditRequest.model_validate({"source": {"digest": digest}}))
    ).job.key
    runner, _ = make_runner(db, settings, blobs, SleepExecutor(0.01))
    async with running(runner):
        job = await wait_for(service, tenant, key, {"failed"})
    assert "missing" in (job.error_message or "")


class MetadataExecutor:
    """A job that yields metadata only: no file, so no scratch dir and no blob."""

    def __init__(self, gather: int = 0) -> None:
        self.runs = 0
        self.running = 0
        self.most_at_once = 0
        # The first runs wait (up to 5 s) until `gather` run at once: whether the runner fills
        # its slots, told apart from how the machine's timing happens to overlap 2 ms runs.
        self.gather = gather
        self._full = asyncio.Event()

    async def execute(self, ctx: ExecutionContext) -> ExecutionResult:
        self.runs += 1
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        if self.running >= self.gather:
            self._full.set()
        try:
            if not self._full.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full.wait(), 5)
            await asyncio.sleep(0.002)
        finally:
            self.running -= 1
        return ExecutionResult(path=None, media_type=None, metadata={"duration_ms": 5})


async def test_finishes_claim_their_successors_and_metadata_only_jobs_store_nothing(
    db: Database, service: JobService, tenant: TenantRef, settings: Settings, blobs: LocalStorage
) -> None:
    from jobs import fenced

    merged = fenced.record_outcomes_and_claim_due
    calls: list[tuple[int, int]] = []

    async def counting(*args: Any) -> Any:
        done, claimed = await merged(*args)
        calls.append((len(done), len(claimed)))
        return done, claimed

    keys = [(await service.submit(tenant, request(i))).job.key for i in range(40)]
    executor = MetadataExecutor(gather=4)
    runner, _ = make_runner(db, settings, blobs, executor, concurrency=4)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fenced, "record_outcomes_and_claim_due", counting)
        async with running(runner):
            done = [await wait_for(service, tenant, k, {"succeeded"}) for k in keys]
    assert executor.runs == 40 and runner.stats.succeeded == 40
    assert all(job.output == {"duration_ms": 5} for job in done)
    # Successors came with the finishes: most claims rode along (never more than the slots).
    assert sum(claimed for done, claimed in calls if done) >= 40 - 2 * 4
    assert all(claimed <= 4 for _, claimed in calls)
    assert executor.most_at_once == 4  # the slots were filled, and never overfilled
    assert runner.active == 0 and runner.free_slots() == runner.concurrency
    assert not list(blobs.tmp.iterdir()) and not (blobs.root / "sha256").exists()


async def test_a_sweeping_worker_survives_its_connections_being_killed(
    pg_db_url: str, settings: Settings, blobs: LocalStorage
) -> None:
    """The finisher's held connection (and every pooled one) terminated by the server
    mid-run: the outcomes are retried on fresh connections and every job ends once."""
    import sqlalchemy as sa

    from jobs.tenants import create_tenant

    db = Database(pg_db_url)
    try:
        async with db.transaction() as conn:
            tenant, _ = await create_tenant(conn, "acme")
        service = JobService(db, settings)
        keys = [(await service.submit(tenant, request(i))).job.key for i in range(30)]
        executor = MetadataExecutor()
        runner, _ = make_runner(db, settings, blobs, executor, concurrency=3)
        async with running(runner):
            await wait_for(service, tenant, keys[5], {"succeeded"})
            async with db.engine.connect() as conn:
                killed = (
                    await conn.execute(
                        sa.text(
                            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                        )
                    )
                ).scalar_one()
            assert killed >= 1  # at least the finisher's held connection
            done = [await wait_for(service, tenant, k, {"succeeded"}, timeout=30) for k in keys]
        assert all(job.status == "succeeded" for job in done)
        # Each job ran once: the failed writes were retried, not the jobs.
        assert executor.runs == 30 and runner.stats.succeeded == 30
        assert executor.most_at_once <= 3
    finally:
        await db.dispose()


class FlakyClaims(ClaimService):
    """The database refuses the loop's statements that carry outcomes for a while."""

    def __init__(self, *args: Any, failures: int, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.failures = failures
        self.sent: list[int] = []  # outcomes per statement that reached the database

    async def complete(self, ended: Any, owner: str, claim: int, **kw: Any) -> Any:
        if ended and self.failures > 0:
            self.failures -= 1
            raise ConnectionError("the database is restarting")
        self.sent.append(len(ended))
        return await super().complete(ended, owner, claim, **kw)


async def test_an_outcome_whose_statement_failed_stays_queued_and_is_recorded_later(
    db: Database, service: JobService, tenant: TenantRef, settings: Settings, blobs: LocalStorage
) -> None:
    keys = [(await service.submit(tenant, request(i))).job.key for i in range(3)]
    claims = FlakyClaims(db, settings, failures=3)
    executor = SleepExecutor(0.01)
    runner = Runner(claims, executor, blobs, settings, concurrency=3)
    async with running(runner):
        done = [await wait_for(service, tenant, k, {"succeeded"}) for k in keys]
    assert all(job.status == "succeeded" for job in done)
    assert sorted(executor.runs) == sorted(keys)  # recorded later, never run again
    assert runner.stats.succeeded == 3 and claims.failures == 0


async def test_an_outcome_is_given_up_when_its_lease_ran_out(
    db: Database, service: JobService, tenant: TenantRef, settings: Settings, blobs: LocalStorage
) -> None:
    short = settings.model_copy(update={"lease_seconds": 0.5, "heartbeat_seconds": 10})
    key = (await service.submit(tenant, request())).job.key
    claims = FlakyClaims(db, short, failures=10_000)
    runner = Runner(claims, SleepExecutor(0.01), blobs, short, concurrency=1, shutdown_grace=0)
    runner.rescue_seconds = 3600  # no rescue by this worker within the test
    async with running(runner):
        await asyncio.sleep(1.5)  # past the lease: the queued success is dropped
        assert runner._queued == []
        claims.failures = 0
    job = await service.get(tenant, key)
    # Never recorded: the job is still running under its expired lease, for a rescue.
    assert job.status == "running" and runner.stats.succeeded == 0
