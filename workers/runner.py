"""The worker loop: one claim-and-finish cycle, jobs run by an executor, outcomes fenced.

The shape of River's producer / executor / completer. A job's task runs the executor,
stores its output, queues its outcome (succeeded, retryable failure, permanent failure,
cancelled, released, each with the fencing token it ran under) and ends. The runner's one
loop takes everything queued and sends ONE statement (`ClaimService.complete`) that records
all of it, each outcome fenced and with its outbox row, and claims as many due jobs as there
are free slots, then starts them. Free slots are concurrency minus running jobs, nothing
else; whoever hints that work exists (a bus event, a submission in this process, the poll
fallback) only wakes this loop, so the cap holds on every path. An outcome whose statement
failed stays queued, and is sent again with the next cycle, until its lease runs out (then
the job is someone else's to rescue). The loop also rescues expired leases every few
seconds, so a fleet of workers recovers a dead worker's jobs with no other process.

While a job runs, a heartbeat renews its lease (from the database clock) and reports
progress; a lost fence or a cancel request stops the executor. Outputs enter the blob store
before the fenced outcome points the job at them, so a zombie's output is never visible.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import time
import uuid
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from jobs import outcomes
from jobs.backoff import backoff_seconds
from jobs.claims import ClaimService
from jobs.errors import ExecutionError, LostFence
from jobs.models import Job
from jobs.outcomes import Outcome, OutcomeKind
from jobs.settings import Settings
from jobs.storage import Storage, open_s3_sources
from jobs.storage.base import attempt_prefix, input_cache_prefix
from workers import tracing
from workers.executor import ExecutionContext, ExecutionResult, Executor
from workers.inputcache import InputCache
from workers.inputs import fetch_inputs
from workers.logs import job_context
from workers.taskio import fetch_deps, store_result
from workers.wakeup import Wakeup

log = logging.getLogger("vidjobs.runner")

# A cycle whose statement failed (the database restarting) is tried again after a backoff
# from this many seconds up to 2 s; its outcomes stay queued until their leases run out.
FIRST_RETRY_DELAY = 0.1
# How often each worker rescues expired leases (also at most half a lease).
RESCUE_SECONDS = 5.0


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
    rescued: int = 0


@dataclass(frozen=True, slots=True)
class _Queued:
    outcome: Outcome
    deadline: float  # monotonic: the job's lease runs out then; the outcome is dropped after
    trace: Any = None  # the attempt's trace context (tracing on): its finish span's parent


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
        poll_seconds: float | None = None,
    ) -> None:
        self.claims = claims
        self.executor = executor
        self.blobs = blobs
        self.sources = open_s3_sources(settings)  # `{"s3": ...}` inputs (client made on use)
        self.inputs = InputCache(
            lambda: blobs.temp_dir(input_cache_prefix()), settings.input_cache_bytes
        )
        self.settings = settings
        self.concurrency = concurrency or settings.worker_concurrency
        self.wakeup = wakeup or Wakeup()
        self.owner = owner or worker_id()
        self.shutdown_grace = shutdown_grace
        self.poll_seconds = poll_seconds or settings.poll_seconds
        self.rescue_seconds = min(RESCUE_SECONDS, settings.lease_seconds / 2)
        self.stats = RunnerStats()
        self._running: dict[int, asyncio.Task[None]] = {}
        self._stopping: dict[int, Stop] = {}
        self._lease_until: dict[int, float] = {}  # job id -> monotonic end of its lease
        self._queued: list[_Queued] = []
        self._ended = asyncio.Event()  # a job's task ended (its outcome, if any, is queued)
        self._failures = 0  # cycles failed in a row
        self._conn: AsyncConnection | None = None
        self._next_rescue = 0.0
        self._first_beats = _FirstBeats(min(1.0, heartbeat_interval(settings)))

    @property
    def active(self) -> int:
        return len(self._running)

    def free_slots(self) -> int:
        """Slots not held by a running job. A job whose outcome is queued holds none: its
        task has nothing left to do, so the statement recording it claims its successor."""
        ending = sum(1 for q in self._queued if q.outcome.job.id in self._running)
        return self.concurrency - len(self._running) + ending

    async def run(self, stop: asyncio.Event) -> None:
        """Work until `stop` is set, then let running jobs finish (up to the grace period),
        release the rest and record what is queued."""
        self.wakeup.bind()
        await asyncio.to_thread(self.blobs.clean_orphans)  # killed predecessors' scratch
        stop_wait = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                if time.monotonic() >= self._next_rescue:
                    await self._rescue()
                free = self.free_slots()
                claimed = await self._cycle(claim=True)
                if self._queued or (claimed and claimed == free):
                    continue  # outcomes came in meanwhile, or there may be more due work
                await self._idle(stop_wait)
        finally:
            stop_wait.cancel()
            try:
                await self._drain()
            finally:
                self.inputs.close()
                await self.sources.close()

    async def _cycle(self, *, claim: bool) -> int:
        """Record every queued outcome and claim up to the free slots, in one statement;
        start the claimed jobs. Returns how many it claimed."""
        now = time.monotonic()
        batch = [q for q in self._queued if q.deadline > now]
        for q in self._queued:
            if q.deadline <= now:
                log.warning(
                    "gave up recording %s of %s: its lease ran out",
                    q.outcome.kind,
                    q.outcome.job.key,
                )
        free = max(0, self.free_slots()) if claim else 0
        self._queued = []
        if not batch and free == 0:
            return 0
        started_ns = time.time_ns()
        try:
            conn = await self._connection()
            cycle = await self.claims.complete(
                [q.outcome for q in batch], self.owner, free, conn=conn
            )
        except Exception as exc:  # the database is away: keep the outcomes, try again soon
            await self._drop_connection()
            self._queued[:0] = batch
            self._failures += 1
            log.warning(
                "claim-and-finish failed (%d in a row), will retry: %s", self._failures, exc
            )
            await asyncio.sleep(backoff_seconds(self._failures, 2 * FIRST_RETRY_DELAY, 2.0))
            return 0
        self._failures = 0
        for q, row in zip(batch, cycle.recorded, strict=True):
            self._count(q.outcome, row)
            tracing.finished(q.trace, q.outcome, row, started_ns)
        for job in cycle.claimed:
            self._start(job)
        return len(cycle.claimed)

    async def _connection(self) -> AsyncConnection | None:
        """The loop's own connection for its statements (PostgreSQL; none on SQLite)."""
        if self._conn is None:
            self._conn = await self.claims.loop_connection()
        return self._conn

    async def _drop_connection(self, *, broken: bool = True) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await self.claims.release_loop_connection(conn, broken=broken)

    def _count(self, outcome: Outcome, row: Job | None) -> None:
        kind = outcome.kind
        if row is None:
            self.stats.lost += 1
            log.warning("%s of %s not recorded: the job was taken over", kind, outcome.job.key)
        elif kind is OutcomeKind.SUCCEEDED:
            self.stats.succeeded += 1
        elif kind is OutcomeKind.CANCELLED:
            self.stats.cancelled += 1
        elif kind is OutcomeKind.RELEASED:
            self.stats.released += 1
        elif row.status == "pending":
            self.stats.retried += 1
        else:
            self.stats.failed += 1

    async def _rescue(self) -> None:
        """Expired leases of any worker back to pending (or failed when exhausted)."""
        self._next_rescue = time.monotonic() + self.rescue_seconds
        try:
            rescued = await self.claims.rescue_expired()
        except Exception as exc:
            log.warning("rescue failed, will retry: %s", exc)
            return
        self.stats.rescued += len(rescued)
        for job in rescued:
            log.info("rescued %s (attempt %s): now %s", job.key, job.attempts, job.status)

    def _start(self, job: Job) -> None:
        """Run a job this loop has claimed, in its own task."""
        assert job.id is not None
        self.stats.claimed += 1
        self._lease_until[job.id] = time.monotonic() + self.settings.lease_seconds
        task = asyncio.create_task(
            tracing.attempt(job, self.owner, self._run_job(job)),
            name=f"job-{job.id}",
            context=job_context(job),
        )
        self._running[job.id] = task
        self._stopping.pop(job.id, None)  # a reclaimed job's last attempt may have left one

        def _done(ended: asyncio.Task[None], job_id: int = job.id) -> None:
            # The statement that recorded this attempt may have claimed the job again (a
            # retry due now), starting a new task under the same id before this one ended.
            if self._running.get(job_id) is ended:
                del self._running[job_id]
                self._stopping.pop(job_id, None)
                self._lease_until.pop(job_id, None)
            self._ended.set()

        task.add_done_callback(_done)

    def _renewed(self, job: Job, at: float) -> None:
        """A heartbeat sent at `at` (monotonic) renewed the job's lease."""
        if job.id in self._running:
            self._lease_until[job.id] = at + self.settings.lease_seconds

    def _queue(self, job: Job, outcome: Outcome | None) -> None:
        """A job's task hands its outcome to the loop (the task ends right after)."""
        if outcome is None:
            return
        deadline = self._lease_until.get(job.id or 0, time.monotonic())
        self._queued.append(_Queued(outcome, deadline, tracing.current()))
        self._ended.set()

    async def _idle(self, stop_wait: asyncio.Task[Any]) -> None:
        self._ended.clear()
        waits = [
            stop_wait,
            asyncio.create_task(self.wakeup.wait(self._idle_seconds())),
            asyncio.create_task(self._ended.wait()),
        ]
        _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        for t in pending:
            if t is not stop_wait:
                t.cancel()

    def _idle_seconds(self) -> float:
        return max(0.0, min(self.poll_seconds, self._next_rescue - time.monotonic()))

    async def _drain(self) -> None:
        """Record outcomes while the running jobs finish, up to the grace period; then stop
        the rest (which releases them) and record what is left while leases last."""
        deadline = time.monotonic() + self.shutdown_grace
        while self._running and time.monotonic() < deadline:
            await self._cycle(claim=False)
            if self._running and not self._queued:
                self._ended.clear()
                left = max(0.0, deadline - time.monotonic())
                await asyncio.wait([asyncio.create_task(self._ended.wait())], timeout=left)
        tasks = list(self._running.items())
        for job_id, task in tasks:
            self._stopping[job_id] = Stop.SHUTDOWN
            task.cancel()
        if tasks:
            await asyncio.wait([task for _, task in tasks], timeout=10)
        while self._queued:
            await self._cycle(claim=False)
        await self._drop_connection(broken=False)

    # --- one job -----------------------------------------------------------------------

    async def _run_job(self, job: Job) -> None:
        """Execute one claimed job in this task, store its output, queue its outcome, end.

        Its heartbeat costs nothing until the first beat is due (a timer, not a task), so a
        job that ends within a heartbeat interval never makes one. A lost fence or a cancel
        request found by a beat cancels this task, with the reason in `_stopping`.
        """
        assert job.id is not None
        progress = _Progress()
        ctx: ExecutionContext | None = None
        outcome: Outcome | None = None
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
                if job.spec.get("deps"):  # a task reading other tasks' results
                    ctx.deps = await fetch_deps(job, self.claims.db, self.blobs, ctx)
                result = await tracing.execute(self.executor, ctx)
            finally:
                # Never cancel a beat mid-transaction: stop the timer, wait for a beat.
                await heartbeat.stop()
            outcome = await self._finish(job, result)
        except asyncio.CancelledError:
            # A beat's finding or the shutdown; handled here, so this task goes on to queue
            # it. The executor has stopped its children by the time the error reaches here.
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            outcome = self._stopped(job)
        except ExecutionError as exc:
            delay = getattr(exc, "delay", None)
            outcome = self._failed(job, exc.code, exc.message, exc.retryable, delay)
        except Exception as exc:  # a bug or an unexpected environment error: retry it
            log.exception("job %s raised", job.key)
            message = f"{type(exc).__name__}: {exc}"
            outcome = self._failed(job, "internal_error", message, True, None)
        finally:
            if ctx is not None and ctx.workdir_made is not None:
                _remove_dir(ctx.workdir_made)
            self._queue(job, outcome)

    async def _input_paths(self, job: Job, ctx: ExecutionContext) -> list[Path]:
        """The job's inputs as verified local copies in its scratch dir (pinned content)."""
        inputs = job.spec.get("inputs", [])
        if not inputs:
            return []
        return await fetch_inputs(
            inputs,
            self.blobs,
            ctx.workdir,
            self.settings.resolved_source_roots,
            self.sources,
            self.inputs,
        )

    def _interrupt(self, job: Job, reason: Stop) -> None:
        """Stop a running job's task from outside it (a heartbeat's finding)."""
        task = self._running.get(job.id or 0)
        if task is not None and not task.done():
            self._stopping[job.id or 0] = reason
            task.cancel()

    async def _finish(self, job: Job, result: ExecutionResult) -> Outcome:
        if result.path is None and not result.files:
            return outcomes.succeeded(job, dict(result.metadata))
        return outcomes.succeeded(job, await store_result(job, result, self.claims.db, self.blobs))

    def _stopped(self, job: Job) -> Outcome | None:
        reason = self._stopping.get(job.id or 0, Stop.SHUTDOWN)
        if reason is Stop.CANCEL_REQUESTED:
            return outcomes.cancelled(job)
        if reason is Stop.SHUTDOWN:
            return outcomes.released(job)
        self.stats.lost += 1  # the lease is someone else's: nothing to record
        return None

    def _failed(
        self, job: Job, code: str, message: str, retryable: bool, delay: float | None
    ) -> Outcome:
        if retryable and delay is None:
            delay = self.claims.retry_delay(job)
        return outcomes.failed(job, code, message, retryable=retryable, delay=delay or 0.0)


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
        self.interval = heartbeat_interval(settings)
        self.tick = runner._first_beats.delay
        self._stopped = False
        self._beating = False  # a heartbeat transaction is in flight
        self._task: asyncio.Task[None] | None = None
        runner._first_beats.add(self)

    def start(self) -> None:
        if not self._stopped:
            self._task = asyncio.create_task(self._beat(), name=f"heartbeat-{self.job.id}")

    async def stop(self) -> None:
        self._stopped = True
        self.runner._first_beats.discard(self)
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
                    self.runner._renewed(job, now)
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


def heartbeat_interval(settings: Settings) -> float:
    return min(settings.heartbeat_seconds, settings.lease_seconds / 3)


class _FirstBeats:
    """One timer for the first beat of every running job, `delay` after it started. A job
    that ends sooner (most short ones) costs an entry here instead of a timer of its own in
    the event loop, armed and cancelled. Every job waits the same delay, so they fall due in
    the order they came."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self._due: dict[_Heartbeat, float] = {}
        self._timer: asyncio.TimerHandle | None = None

    def add(self, beat: _Heartbeat) -> None:
        self._due[beat] = time.monotonic() + self.delay
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.delay, self._fire)

    def discard(self, beat: _Heartbeat) -> None:
        self._due.pop(beat, None)

    def _fire(self) -> None:
        self._timer = None
        now = time.monotonic()
        while self._due:
            beat, due = next(iter(self._due.items()))
            if due > now:
                self._timer = asyncio.get_running_loop().call_later(due - now, self._fire)
                return
            del self._due[beat]
            beat.start()


class _Progress:
    def __init__(self) -> None:
        self.value = 0.0

    def report(self, fraction: float) -> None:
        self.value = max(self.value, min(1.0, max(0.0, float(fraction))))
