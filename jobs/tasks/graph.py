"""The transactions of a job of several tasks. Each function joins its caller's transaction.

- `attach`: a new (or re-run) job's task rows, created or reused, and who waits for whom.
- `record_outcome`: a worker's fenced task outcome; a success lowers the `waiting` count of
  every row that waits for the task (a task at 0 becomes pending; a job at 0 succeeds), a
  permanent failure fails the task's waiting jobs and cancels their other tasks.
- `cancel`, `rerun`: a tenant's cancel and retry of such a job, cascading to its tasks.

Nothing polls the graph: every move happens in the transaction of the change that causes
it, under the row locks the fenced statements take, so concurrent finishers of the last
tasks count down exactly once each and exactly one of them succeeds the job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from jobs import fenced, outbox, statements
from jobs.models import Blob, Job, OutboxEvent, from_row
from jobs.outcomes import Outcome, event_extra, event_type
from jobs.status import EventType, JobStatus
from jobs.taskplan import TaskPlan
from jobs.tasks import statements as task_statements
from jobs.tasks.plan import task_key

jobs_t = statements.jobs
blobs = Blob.__table__  # type: ignore[attr-defined]
edges = statements.edges
job_tasks = task_statements.job_tasks
SUCCEEDED, FAILED, CANCELLED = "succeeded", "failed", "cancelled"
IN_FLIGHT = ("pending", "running", "waiting")


@dataclass(frozen=True)
class Member:
    """One task of a job: its name and place in the job's plan, and its row."""

    name: str
    kind: str
    depends_on: list[str]
    publish_as: str | None
    reused: bool
    task: Job


async def stored_probe(conn: AsyncConnection, digest: str) -> dict[str, Any] | None:
    """The probe stored with an uploaded blob (None for a path or S3 source): what a
    planner sizes work by (a ladder's rungs no taller than the source)."""
    stmt = sa.select(blobs.c.probe).where(blobs.c.digest == digest)
    found = (await conn.execute(stmt)).scalar_one_or_none()
    return dict(found) if isinstance(found, dict) else None


def _reusable(row: Job) -> bool:
    return row.status == SUCCEEDED and not (row.output or {}).get("expired")


async def _task_for_update(
    conn: AsyncConnection, tenant_id: str, key: str | None = None, *, task_id: int | None = None
) -> Job:
    """A task row, locked until the transaction ends (PostgreSQL; SQLite's transactions
    are serial): a completion, cascade or new waiter of the task then waits for this one."""
    stmt = sa.select(jobs_t).where(jobs_t.c.tenant_id == tenant_id)
    stmt = stmt.where(jobs_t.c.key == key if task_id is None else jobs_t.c.id == task_id)
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    row = (await conn.execute(stmt)).mappings().one()
    return from_row(Job, row)


async def attach(
    conn: AsyncConnection, job: Job, plans: Sequence[TaskPlan]
) -> tuple[Job, list[OutboxEvent]]:
    """Create or reuse `job`'s tasks (plans in dependency order) and return the job as it
    is now: waiting for its unfinished tasks, or succeeded when every one was reused.

    A task the tenant already finished from the same bytes is reused (no row, no work); one
    in flight gets this job as another waiter; a failed or cancelled one runs again."""
    assert job.id is not None
    events: list[OutboxEvent] = []
    rows: dict[str, Job] = {}
    keys: dict[str, str] = {}
    fresh: list[tuple[Job, EventType]] = []
    for p in plans:
        dep_keys = {d: keys[d] for d in p.depends_on}
        keys[p.name] = key = task_key(job.tenant_id, p, dep_keys)
        values = {
            "tenant_id": job.tenant_id,
            "key": key,
            "spec": {**p.spec, "kind": p.kind, "deps": dep_keys},
            "labels": {},
            "priority": job.priority,
            "max_attempts": job.max_attempts,
            "role": statements.TASK,
            "status": statements.WAITING,
        }
        # A scheduled job's tasks are not due before its run_at (its row's run_after).
        row = await statements.insert_job_if_absent(conn, values, run_at=job.run_after)
        if row is not None:
            fresh.append((row, EventType.TASK_SUBMITTED))
        else:
            row = await _task_for_update(conn, job.tenant_id, key)
            if row.status not in IN_FLIGHT and not _reusable(row):
                requeued = await task_statements.requeue_task_if_rerunnable(
                    conn, row.id or 0, job.run_after
                )
                assert requeued is not None, "a locked failed task could not be requeued"
                row = requeued
                fresh.append((row, EventType.TASK_REQUEUED))
            elif row.status in ("pending", "waiting"):  # made by a job scheduled for later?
                sooner = await task_statements.advance_task_if_later(
                    conn, row.id or 0, job.run_after
                )
                row = sooner or row
            elif row.status == "running" and row.cancel_requested:
                # A cascade asked it to stop; this job needs it after all.
                cleared = await task_statements.set_cancel_request_if_running(
                    conn, row.id or 0, False
                )
                row = cleared or row
        reused = _reusable(row)
        if any(r.id == row.id for r, _ in fresh):
            for d in p.depends_on:
                await task_statements.insert_task_edge_if_absent(conn, rows[d].id or 0, row.id or 0)
        if not reused:
            await task_statements.insert_task_edge_if_absent(conn, row.id or 0, job.id)
        await task_statements.insert_job_task(
            conn,
            {
                "job_id": job.id,
                "name": p.name,
                "task_id": row.id,
                "kind": p.kind,
                "depends_on": list(p.depends_on),
                "publish_as": p.publish_as,
                "reused": reused,
            },
        )
        rows[p.name] = row
    for row, type_ in fresh:
        counted = await task_statements.recount_waiting(conn, row.id or 0)
        assert counted is not None
        events.append(await outbox.insert_event(conn, counted, type_))
    return await _settle(conn, job, events)


async def _settle(
    conn: AsyncConnection, job: Job, events: list[OutboxEvent]
) -> tuple[Job, list[OutboxEvent]]:
    """Count what the job waits for; with nothing left, it succeeds now."""
    counted = await task_statements.recount_waiting(conn, job.id or 0)
    job = counted or job
    if counted is not None and counted.waiting == 0:
        done, event = await _succeed(conn, counted)
        if done is not None and event is not None:
            job = done
            events.append(event)
    return job, events


async def members(conn: AsyncConnection, job_id: int) -> list[Member]:
    """A job's tasks in plan order, each with its row as it is now."""
    stmt = (
        sa.select(job_tasks, jobs_t)
        .select_from(job_tasks.join(jobs_t, jobs_t.c.id == job_tasks.c.task_id))
        .where(job_tasks.c.job_id == job_id)
        .order_by(jobs_t.c.id, job_tasks.c.name)
    )
    out: list[Member] = []
    for row in (await conn.execute(stmt)).all():
        link = row._mapping
        task = from_row(Job, {col.name: link[col] for col in jobs_t.c})
        out.append(
            Member(
                name=link[job_tasks.c.name],
                kind=link[job_tasks.c.kind],
                depends_on=list(link[job_tasks.c.depends_on] or []),
                publish_as=link[job_tasks.c.publish_as],
                reused=bool(link[job_tasks.c.reused]),
                task=task,
            )
        )
    return out


def job_output(tasks: Sequence[Member]) -> dict[str, Any]:
    """The output of a job of several tasks: each published task's output at its
    `publish_as` path (`outputs.720p` -> `{"outputs": {"720p": ...}}`); "output" is the
    job's output itself, shaped as a single pass's."""
    output: dict[str, Any] = {}
    for m in tasks:
        if m.publish_as is None:
            continue
        if m.publish_as == "output":  # a chunked edit's stitch: the job's own output
            output.update(m.task.output or {})
            continue
        *parents, leaf = m.publish_as.split(".")
        node = output
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = m.task.output
    return output


async def _succeed(conn: AsyncConnection, job: Job) -> tuple[Job | None, OutboxEvent | None]:
    output = job_output(await members(conn, job.id or 0))
    done = await task_statements.finish_graph_if_done(conn, job.id or 0, output)
    if done is None:
        return None, None
    return done, await outbox.insert_event(conn, done, EventType.SUCCEEDED, output=output)


async def record_outcome(conn: AsyncConnection, o: Outcome) -> tuple[Job | None, list[OutboxEvent]]:
    """A worker's outcome of a task row, fenced, with everything it moves (one transaction).
    None: the task was taken over, and nothing changed."""
    row = await fenced.record_one(conn, o)
    if row is None:
        return None, []
    events = [await outbox.insert_event(conn, row, event_type(o, row.status), **event_extra(o))]
    if row.status == SUCCEEDED:
        events += await _release(conn, row)
    elif row.status == FAILED:
        events += await fail_jobs_of(conn, row, o.error_code or "task_failed", o.error_message)
    elif row.status == CANCELLED:
        events += await fail_jobs_of(conn, row, "task_cancelled", "a task of the job was cancelled")
    return row, events


async def _release(conn: AsyncConnection, task: Job) -> list[OutboxEvent]:
    """The task succeeded: each row waiting for it counts down, in id order (a fixed lock
    order); a task at 0 is due now (`task.ready`), a job at 0 succeeds."""
    stmt = sa.select(edges.c.downstream_id).where(edges.c.upstream_id == task.id)
    events: list[OutboxEvent] = []
    for (down_id,) in (await conn.execute(stmt.order_by(edges.c.downstream_id))).all():
        row = await task_statements.release_one_if_waiting(conn, int(down_id))
        if row is None:
            continue
        if row.role == statements.TASK and row.status == JobStatus.PENDING:
            events.append(await outbox.insert_event(conn, row, EventType.TASK_READY))
        elif row.role == statements.GRAPH and row.waiting == 0:
            _, event = await _succeed(conn, row)
            if event is not None:
                events.append(event)
    return events


async def fail_jobs_of(
    conn: AsyncConnection, task: Job, code: str, message: str | None
) -> list[OutboxEvent]:
    """A task failed for good: every job waiting for it fails, and their other tasks that
    no other job still needs are cancelled."""
    stmt = sa.select(job_tasks.c.job_id, job_tasks.c.name).where(job_tasks.c.task_id == task.id)
    events: list[OutboxEvent] = []
    for job_id, name in (await conn.execute(stmt.order_by(job_tasks.c.job_id))).all():
        unfinished = await _lock_unfinished(conn, task.tenant_id, int(job_id))
        text = f"task {name!r} failed: {message or code}"
        job = await task_statements.end_graph_if_waiting(conn, int(job_id), FAILED, code, text)
        if job is None:
            continue
        error = {"code": code[:64], "message": text[:500], "retryable": False, "task": name}
        events.append(await outbox.insert_event(conn, job, EventType.FAILED, error=error))
        events += await _cancel_tasks(conn, job, unfinished)
    return events


async def _lock_unfinished(conn: AsyncConnection, tenant_id: str, job_id: int) -> list[Job]:
    """A job's unfinished tasks, locked in id order before the job row is changed (the
    order a task's completion takes them: its own row, then the rows waiting for it). A
    job attaching one of them meanwhile is then seen as needing it."""
    return [
        await _task_for_update(conn, tenant_id, task_id=m.task.id)
        for m in await members(conn, job_id)
        if m.task.status in IN_FLIGHT
    ]


async def _cancel_tasks(
    conn: AsyncConnection, job: Job, unfinished: list[Job]
) -> list[OutboxEvent]:
    """Stop the ended job's unfinished tasks (locked), except those another waiting job
    still needs: pending or waiting ones are cancelled now, running ones asked to stop."""
    events: list[OutboxEvent] = []
    for task in unfinished:
        if task.status not in IN_FLIGHT or await _needed_elsewhere(conn, task, job):
            continue
        if task.status == "running":
            row = await task_statements.set_cancel_request_if_running(conn, task.id or 0, True)
            type_ = EventType.TASK_CANCEL_REQUESTED
        else:
            row = await task_statements.cancel_task_if_pending_or_waiting(conn, task.id or 0)
            type_ = EventType.TASK_CANCELLED
        if row is not None:
            events.append(await outbox.insert_event(conn, row, type_))
    return events


async def _needed_elsewhere(conn: AsyncConnection, task: Job, job: Job) -> bool:
    stmt = (
        sa.select(sa.func.count())
        .select_from(job_tasks.join(jobs_t, jobs_t.c.id == job_tasks.c.job_id))
        .where(
            job_tasks.c.task_id == task.id,
            job_tasks.c.job_id != job.id,
            jobs_t.c.status == statements.WAITING,
        )
    )
    return int((await conn.execute(stmt)).scalar_one()) > 0


async def cancel(conn: AsyncConnection, job: Job) -> tuple[Job, list[OutboxEvent]]:
    """A tenant cancels a waiting job of several tasks: cancelled now, its tasks cascade."""
    unfinished = await _lock_unfinished(conn, job.tenant_id, job.id or 0)
    row = await task_statements.end_graph_if_waiting(conn, job.id or 0, CANCELLED, None, None)
    if row is None:
        return job, []
    events = [await outbox.insert_event(conn, row, EventType.CANCELLED)]
    return row, events + await _cancel_tasks(conn, row, unfinished)


async def rerun(conn: AsyncConnection, job: Job) -> tuple[Job, list[OutboxEvent]]:
    """A failed or cancelled job (already back to `waiting`) runs again: its failed or
    cancelled tasks are requeued, the rest are waited for or reused as they are."""
    events: list[OutboxEvent] = []
    requeued: list[Job] = []
    for m in await members(conn, job.id or 0):
        row = await task_statements.requeue_task_if_rerunnable(conn, m.task.id or 0, job.run_after)
        if row is not None:
            requeued.append(row)
        await task_statements.insert_task_edge_if_absent(conn, m.task.id or 0, job.id or 0)
    for row in requeued:
        counted = await task_statements.recount_waiting(conn, row.id or 0)
        assert counted is not None
        events.append(await outbox.insert_event(conn, counted, EventType.TASK_REQUEUED))
    return await _settle(conn, job, events)
