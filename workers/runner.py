"""The worker loop: claim due jobs, run them with an executor, finish only if still fenced.

The loop claims as many jobs as it has free slots, then waits on its wake-up signal (poll
fallback), never in a tight sleep loop. While a job runs, a heartbeat task renews the
lease (from the database clock) and reports progress; a lost fence or a cancel request
stops the executor. Outputs enter the blob store before the fenced finish points the job
at them, so a zombie's output is never visible at any job.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from tenacity import (
    AsyncRetrying,
    retry_if_not_exception_type,
    stop_after_delay,
    wait_exponential,
)

from jobs.blobstore import BlobStore
from jobs.claims import ClaimService
from jobs.errors import ExecutionError, LostFence, PermanentError
from jobs.models import Job
from jobs.settings import Settings
from workers.executor import ExecutionContext, ExecutionResult, Executor
from workers.wakeup import Wakeup

log = logging.getLogger("vidjobs.runner")

# Recording an outcome that failed (the database restarting) is retried after this many
# seconds, then with exponential backoff up to 2 s, for at most one lease in all.
FIRST_RETRY_DELAY = 0.1


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Stop(Enum):
    CANCEL_REQUESTED = "cancel_requested"
    LOST_FENCE = "lost_fence"
    SHUTDOWN = "shutdown"


@dataclass
class RunnerStats:
    claimed: int = 0
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    cancelled: int = 0
    lost: int = 0
    released: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)


class Runner:
    def __init__(
        self,
        claims: ClaimService,
        executor: Executor,
        blobs: BlobStore,
        settings: Settings,
        *,
        concurrency: int | None = None,
        wakeup: Wakeup | None = None,
        owner: str | None = None,
        shutdown_grace: float = 30.0,
    ) -> None:
        self.claims = claims
        self.executor = executor
        self.blobs = blobs
        self.settings = settings
        self.concurrency = concurrency or settings.worker_concurrency
        self.wakeup = wakeup or Wakeup()
        self.owner = owner or worker_id()
        self.shutdown_grace = shutdown_grace
        self.stats = RunnerStats()
        self._active: dict[int, asyncio.Task[None]] = {}
        self._stopping: dict[int, Stop] = {}
        self._slot_freed = asyncio.Event()

    @property
    def active(self) -> int:
        return len(self._active)

    async def run(self, stop: asyncio.Event) -> None:
        """Work until `stop` is set, then let running jobs finish (up to the grace period)."""
        self.wakeup.bind()
        stop_wait = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                claimed = await self._fill_slots()
                if claimed and self.active < self.concurrency:
                    continue  # there may be more due work
                await self._idle(stop_wait)
        finally:
            stop_wait.cancel()
            await self._drain()

    async def _fill_slots(self) -> int:
        free = self.concurrency - self.active
        if free <= 0:
            return 0
        try:
            jobs = await self.claims.claim_batch(self.owner, free)
        except Exception as exc:  # the database is down: wait and try again
            log.warning("claim failed, will retry: %s", exc)
            return 0
        for job in jobs:
            self.start(job)
        return len(jobs)

    def start(self, job: Job) -> None:
        """Run a job this worker has claimed (by sweep, or by key from a bus event)."""
        assert job.id is not None
        self.stats.claimed += 1
        task = asyncio.create_task(self._run_job(job), name=f"job-{job.id}")
        self._active[job.id] = task

        def _done(_: asyncio.Task[None], job_id: int = job.id) -> None:
            self._active.pop(job_id, None)
            self._stopping.pop(job_id, None)
            self._slot_freed.set()

        task.add_done_callback(_done)

    async def _idle(self, stop_wait: asyncio.Task[Any]) -> None:
        self._slot_freed.clear()
        waits = [stop_wait, asyncio.create_task(self.wakeup.wait(self.settings.poll_seconds))]
        if self.active:
            waits.append(asyncio.create_task(self._slot_freed.wait()))
        _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for t in pending:
            if t is not stop_wait:
                t.cancel()

    async def _drain(self) -> None:
        if not self._active:
            return
        tasks = list(self._active.values())
        _, pending = await asyncio.wait(tasks, timeout=self.shutdown_grace)
        for job_id, task in list(self._active.items()):
            if task in pending:
                self._stopping[job_id] = Stop.SHUTDOWN
                task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=10)

    # --- one job -----------------------------------------------------------------------

    async def _run_job(self, job: Job) -> None:
        assert job.id is not None
        workdir = self.blobs.temp_dir(f"job-{job.id}-")
        progress = _Progress()
        execution: asyncio.Task[ExecutionResult] | None = None
        try:
            ctx = ExecutionContext(
                job=job,
                workdir=workdir,
                inputs=self._input_paths(job),
                report_progress=progress.report,
            )
            execution = asyncio.create_task(self.executor.execute(ctx))
            beating = asyncio.Event()
            heartbeat = asyncio.create_task(self._heartbeat(job, execution, progress, beating))
            try:
                result = await asyncio.shield(execution)
            finally:
                # Never cancel a heartbeat mid-transaction: ask it to stop and wait for it.
                beating.set()
                await asyncio.shield(heartbeat)
            await asyncio.shield(self._finish(job, result))
        except asyncio.CancelledError:
            if execution is not None and not execution.done():
                execution.cancel()
                with contextlib.suppress(BaseException):
                    await execution
            await asyncio.shield(self._stopped(job))
        except ExecutionError as exc:
            delay = getattr(exc, "delay", None)
            await asyncio.shield(self._failed(job, exc.code, exc.message, exc.retryable, delay))
        except Exception as exc:  # a bug or an unexpected environment error: retry it
            log.exception("job %s raised", job.key)
            message = f"{type(exc).__name__}: {exc}"
            await asyncio.shield(self._failed(job, "internal_error", message, True, None))
        finally:
            _remove_dir(workdir)

    def _input_paths(self, job: Job) -> list[Path]:
        paths = []
        for item in job.spec.get("inputs", []):
            if item.get("path"):
                paths.append(Path(item["path"]))
            else:
                path = self.blobs.path_for(item["digest"])
                if not path.is_file():
                    raise PermanentError(f"source blob {item['digest']} is missing from the store")
                paths.append(path)
        return paths

    async def _heartbeat(
        self, job: Job, execution: asyncio.Task[Any], progress: _Progress, done: asyncio.Event
    ) -> None:
        interval = min(self.settings.heartbeat_seconds, self.settings.lease_seconds / 3)
        tick = min(1.0, interval)
        last = time.monotonic()
        sent = 0.0
        while not execution.done() and not done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), tick)
            if done.is_set():
                return
            now = time.monotonic()
            moved = progress.value - sent >= 0.05
            if now - last < interval and not moved:
                continue
            try:
                beat = await self.claims.heartbeat(job, progress.value)
            except LostFence:
                log.warning("lost the lease on %s; stopping it", job.key)
                self._stopping[job.id or 0] = Stop.LOST_FENCE
                execution.cancel()
                return
            except Exception as exc:  # database hiccup: keep trying until the lease says no
                log.warning("heartbeat for %s failed: %s", job.key, exc)
                continue
            last, sent = now, progress.value
            if beat.cancel_requested:
                self._stopping[job.id or 0] = Stop.CANCEL_REQUESTED
                execution.cancel()
                return

    async def _finish(self, job: Job, result: ExecutionResult) -> None:
        digest, size = await asyncio.to_thread(self.blobs.put_file, result.path)
        output = {
            "digest": digest,
            "size": size,
            "media_type": result.media_type,
            **result.metadata,
        }
        try:
            await self._persist(job, "finish", lambda: self.claims.succeed(job, output))
            self.stats.succeeded += 1
        except LostFence:
            self.stats.lost += 1
            log.warning("finished %s after losing it; the output is not attached", job.key)

    async def _persist(self, job: Job, what: str, call: Callable[[], Awaitable[Job]]) -> Job:
        """Record an outcome, retrying while the database is briefly away (a restart).

        Retries for at most one lease: past that the job is someone else's to rescue anyway,
        and the fenced statement would refuse it. A lost fence is final at once.
        """
        deadline = time.monotonic() + self.settings.lease_seconds
        try:
            return await call()  # the common case: no retry machinery at all
        except LostFence:
            raise
        except Exception as exc:
            if time.monotonic() + FIRST_RETRY_DELAY >= deadline:
                raise
            log.info("the %s of %s failed, will retry: %s", what, job.key, exc)
        await asyncio.sleep(FIRST_RETRY_DELAY)
        retrying = AsyncRetrying(
            stop=stop_after_delay(max(0.0, deadline - time.monotonic())),
            wait=wait_exponential(multiplier=2 * FIRST_RETRY_DELAY, max=2.0),
            retry=retry_if_not_exception_type(LostFence),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                log.info("retrying the %s of %s", what, job.key)
                return await call()
        raise AssertionError("unreachable")

    async def _stopped(self, job: Job) -> None:
        reason = self._stopping.get(job.id or 0, Stop.SHUTDOWN)
        try:
            if reason is Stop.CANCEL_REQUESTED:
                await self._persist(job, "cancel", lambda: self.claims.cancel(job))
                self.stats.cancelled += 1
            elif reason is Stop.SHUTDOWN:
                await self._persist(job, "release", lambda: self.claims.release(job))
                self.stats.released += 1
            else:
                self.stats.lost += 1
        except LostFence:
            self.stats.lost += 1
        except Exception as exc:
            log.warning("could not record the stop of %s (%s): %s", job.key, reason.value, exc)

    async def _failed(
        self, job: Job, code: str, message: str, retryable: bool, delay: float | None
    ) -> None:
        try:
            row = await self._persist(
                job,
                "failure",
                lambda: self.claims.fail(
                    job, code=code, message=message, retryable=retryable, delay=delay
                ),
            )
        except LostFence:
            self.stats.lost += 1
            return
        except Exception as exc:  # the database stayed away: the lease will run out instead
            log.warning("could not record the failure of %s: %s", job.key, exc)
            return
        if row.status == "pending":
            self.stats.retried += 1
            self.wakeup.notify()
        else:
            self.stats.failed += 1


def _remove_dir(path: Path) -> None:
    """Remove a job's scratch dir; most are empty by now (the output moved into the store)."""
    try:
        os.rmdir(path)
    except OSError:
        shutil.rmtree(path, ignore_errors=True)


class _Progress:
    def __init__(self) -> None:
        self.value = 0.0

    def report(self, fraction: float) -> None:
        self.value = max(self.value, min(1.0, max(0.0, float(fraction))))
