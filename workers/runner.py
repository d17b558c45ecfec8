"""The worker loop: claim due jobs, run them with an executor, finish only if still fenced.

The loop claims as many jobs as it has free slots, then waits on its wake-up signal (poll
fallback), never in a tight sleep loop. While a job runs, a heartbeat task renews the
lease (from the database clock) and reports progress; a lost fence or a cancel request
stops the executor. Outputs enter the blob store before the fenced finish points the job
at them, so a zombie's output is never visible at any job.
"""

from __future__ import annotations

import asyncio
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

from jobs.claims import ClaimService
from jobs.errors import ExecutionError, LostFence
from jobs.models import Job
from jobs.owners import record_owner
from jobs.settings import Settings
from jobs.storage import Storage, open_s3_sources
from jobs.storage.base import attempt_prefix
from workers.executor import ExecutionContext, ExecutionResult, Executor
from workers.inputs import fetch_inputs
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
        blobs: Storage,
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
        self.sources = open_s3_sources(settings)  # `{"s3": ...}` inputs (client made on use)
        self.settings = settings
        self.concurrency = concurrency or settings.worker_concurrency
        self.wakeup = wakeup or Wakeup()
        self.owner = owner or worker_id()
        self.shutdown_grace = shutdown_grace
        self.stats = RunnerStats()
        self._active: dict[int, asyncio.Task[None]] = {}
        self._stopping: dict[int, Stop] = {}
        self._slot_freed = asyncio.Event()
        self._reserved = 0  # slots asked for by claims in flight
        self._ending: set[int] = set()  # jobs whose outcome is written; their tasks end soon
        self._sweeping = False

    @property
    def active(self) -> int:
        return len(self._active)

    async def run(self, stop: asyncio.Event) -> None:
        """Work until `stop` is set, then let running jobs finish (up to the grace period).

        While it runs, finishes written together also claim their successors (the claim
        service's refill), so a busy worker pays one round trip per group for both.
        """
        self.wakeup.bind()
        await asyncio.to_thread(self.blobs.clean_orphans)  # killed predecessors' scratch
        stop_wait = asyncio.create_task(stop.wait())
        self._sweeping = True
        if self.claims.refill is None:
            self.claims.refill = self
        try:
            while not stop.is_set():
                claimed = await self._fill_slots()
                if claimed and self.free_slots() > 0:
                    continue  # there may be more due work
                await self._idle(stop_wait)
        finally:
            self._sweeping = False
            stop_wait.cancel()
            try:
                await self._drain()
            finally:
                if self.claims.refill is self:
                    self.claims.refill = None
                    await self.claims.release_connection()
                await self.sources.close()

    def free_slots(self) -> int:
        return self.concurrency - (self.active - len(self._ending)) - self._reserved

    async def _fill_slots(self) -> int:
        free = self.free_slots()
        if free <= 0:
            return 0
        self._reserved += free
        try:
            jobs = await self.claims.claim_batch(self.owner, free)
        except Exception as exc:  # the database is down: wait and try again
            log.warning("claim failed, will retry: %s", exc)
            return 0
        finally:
            self._reserved -= free
        for job in jobs:
            self.start(job)
        return len(jobs)

    # --- the claim service's refill (see `ClaimService.refill`) ---------------------------

    def refill_wanted(self, finishing: int) -> int:
        if not self._sweeping:
            return 0
        wanted = max(0, self.free_slots() + finishing)
        self._reserved += wanted
        return wanted

    def refill_claimed(self, jobs: list[Job], wanted: int, ended: list[int]) -> None:
        self._reserved -= wanted
        self._ending.update(job_id for job_id in ended if job_id in self._active)
        for job in jobs:
            self.start(job)

    def start(self, job: Job) -> None:
        """Run a job this worker has claimed (by sweep, or by key from a bus event)."""
        assert job.id is not None
        self.stats.claimed += 1
        task = asyncio.create_task(self._run_job(job), name=f"job-{job.id}")
        self._active[job.id] = task

        def _done(_: asyncio.Task[None], job_id: int = job.id) -> None:
            self._active.pop(job_id, None)
            self._stopping.pop(job_id, None)
            self._ending.discard(job_id)
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
        """Wait for the running jobs (and any a refill in flight still starts), up to the
        grace period; then stop the rest, which releases them."""
        deadline = time.monotonic() + self.shutdown_grace
        while self._active or self._reserved:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            if self._active:
                await asyncio.wait(list(self._active.values()), timeout=left)
            else:
                await asyncio.sleep(0.01)
        tasks = list(self._active.items())
        for job_id, task in tasks:
            self._stopping[job_id] = Stop.SHUTDOWN
            task.cancel()
        if tasks:
            await asyncio.wait([task for _, task in tasks], timeout=10)

    # --- one job -----------------------------------------------------------------------

    async def _run_job(self, job: Job) -> None:
        """Execute one claimed job in this task, then record its outcome (fenced).

        Its heartbeat costs nothing until the first beat is due (a timer, not a task), so a
        job that ends within a heartbeat interval never makes one. A lost fence or a cancel
        request found by a beat cancels this task, with the reason in `_stopping`.
        """
        assert job.id is not None
        progress = _Progress()
        ctx: ExecutionContext | None = None
        try:
            ctx = ExecutionContext(
                job,
                [],
                progress.report,
                make_workdir=lambda: self.blobs.temp_dir(attempt_prefix(job.id)),
            )
            heartbeat = _Heartbeat(self, job, progress)
            try:
                ctx.inputs = await self._input_paths(job, ctx)
                result = await self.executor.execute(ctx)
            finally:
                # Never cancel a beat mid-transaction: stop the timer, wait for a beat.
                await heartbeat.stop()
            # Not shielded: a shutdown that gives up on this job while its outcome is being
            # written lands in _stopped (a fenced release, which loses to a finish that
            # committed first); either way the job ends in exactly one state.
            await self._finish(job, result)
        except asyncio.CancelledError:
            # A beat's finding or the shutdown; handled here, so this task goes on to record
            # it. The executor has stopped its children by the time the error reaches here.
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            await asyncio.shield(self._stopped(job))
        except ExecutionError as exc:
            delay = getattr(exc, "delay", None)
            await asyncio.shield(self._failed(job, exc.code, exc.message, exc.retryable, delay))
        except Exception as exc:  # a bug or an unexpected environment error: retry it
            log.exception("job %s raised", job.key)
            message = f"{type(exc).__name__}: {exc}"
            await asyncio.shield(self._failed(job, "internal_error", message, True, None))
        finally:
            if ctx is not None and ctx.workdir_made is not None:
                _remove_dir(ctx.workdir_made)

    async def _input_paths(self, job: Job, ctx: ExecutionContext) -> list[Path]:
        """The job's inputs as verified local copies in its scratch dir (pinned content)."""
        inputs = job.spec.get("inputs", [])
        if not inputs:
            return []
        return await fetch_inputs(
            inputs, self.blobs, ctx.workdir, self.settings.resolved_source_roots, self.sources
        )

    def _interrupt(self, job: Job, reason: Stop) -> None:
        """Stop a running job's task from outside it (a heartbeat's finding)."""
        task = self._active.get(job.id or 0)
        if task is not None and not task.done():
            self._stopping[job.id or 0] = reason
            task.cancel()

    async def _finish(self, job: Job, result: ExecutionResult) -> None:
        output: dict[str, Any] = dict(result.metadata)
        if result.path is not None:
            digest, size = await self.blobs.put_file(result.path)
            async with self.claims.db.transaction() as conn:  # the tenant produced it
                await record_owner(conn, job.tenant_id, digest)
            output = {"digest": digest, "size": size, "media_type": result.media_type, **output}
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


class _Heartbeat:
    """Renews one running job's lease from the database clock and reports its progress.

    A timer until the first beat is due; from then on a task that beats every interval (or
    sooner when progress moved by 5 points). A lost fence or a cancel request interrupts
    the job. `stop` ends it without ever cancelling a beat in flight.
    """

    def __init__(self, runner: Runner, job: Job, progress: _Progress) -> None:
        settings = runner.settings
        self.runner = runner
        self.job = job
        self.progress = progress
        self.interval = min(settings.heartbeat_seconds, settings.lease_seconds / 3)
        self.tick = min(1.0, self.interval)
        self._stopped = False
        self._beating = False  # a heartbeat transaction is in flight
        self._task: asyncio.Task[None] | None = None
        self._timer = asyncio.get_running_loop().call_later(self.tick, self._start)

    def _start(self) -> None:
        if not self._stopped:
            self._task = asyncio.create_task(self._beat(), name=f"heartbeat-{self.job.id}")

    async def stop(self) -> None:
        self._stopped = True
        self._timer.cancel()
        task = self._task
        if task is None or task.done():
            return
        if not self._beating:
            task.cancel()  # asleep between beats: nothing to interrupt
        await asyncio.wait([task])  # a beat in flight ends on its own

    async def _beat(self) -> None:
        job, claims = self.job, self.runner.claims
        last = time.monotonic() - self.tick  # the timer waited one tick already
        sent = 0.0
        while not self._stopped:
            now = time.monotonic()
            moved = self.progress.value - sent >= 0.05
            if now - last >= self.interval or moved:
                self._beating = True
                try:
                    beat = await claims.heartbeat(job, self.progress.value)
                except LostFence:
                    log.warning("lost the lease on %s; stopping it", job.key)
                    self._interrupt(Stop.LOST_FENCE)
                    return
                except Exception as exc:  # database hiccup: keep trying until the lease says no
                    log.warning("heartbeat for %s failed: %s", job.key, exc)
                else:
                    last, sent = now, self.progress.value
                    if beat.cancel_requested:
                        self._interrupt(Stop.CANCEL_REQUESTED)
                        return
                finally:
                    self._beating = False
            await asyncio.sleep(self.tick)

    def _interrupt(self, reason: Stop) -> None:
        if not self._stopped:  # the job has already ended: let its outcome stand
            self.runner._interrupt(self.job, reason)


class _Progress:
    def __init__(self) -> None:
        self.value = 0.0

    def report(self, fraction: float) -> None:
        self.value = max(self.value, min(1.0, max(0.0, float(fraction))))
