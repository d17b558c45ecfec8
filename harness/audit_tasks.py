"""Audit checks of jobs made of tasks, and of who finished each piece of work.

- tasks: every task of a succeeded job (role `graph`, its rows in `job_tasks`) ended
  succeeded, with exactly one `task.succeeded` event;
- no zombie finish: in each claimed row's outbox history (jobs and tasks alike), every
  success comes right after the claim it finished: the preceding lease event (claimed,
  requeued, retry scheduled, failed, cancelled, resubmitted) is a claim, with the same
  fencing token and attempt number as the success. A zombie whose lease was rescued or
  taken over and that still records its outcome breaks that chain (its success follows a
  requeue, or a second success follows the new owner's claim), and so does one whose late
  release or retry opens a finished row again (a claim, and a second success, follow it);
- the evidence that zombies existed at all: how many outcomes the fence refused, from the
  workers' logs ("not recorded: the job was taken over").
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from harness.audit import Audit
from jobs.db import Database

# Events that start or end a lease (a claim, or what ends one); others (task.ready,
# cancel requests, submissions) say nothing about who holds the row.
_LEASE = ("claimed", "requeued", "retry_scheduled", "succeeded", "failed", "cancelled", "resubmitted")
LEASE_TYPES = [f"{role}.{t}" for role in ("job", "task") for t in _LEASE]
_FINISHED = ("succeeded", "failed", "cancelled")
REFUSED = "not recorded: the job was taken over"


def zombie_finishes(events: Iterable[tuple[str, str, Any, Any]]) -> list[str]:
    """Keys with a success that does not follow its own claim, or a finished row that a
    late outcome opened again (after a success, a failure or a cancellation the only lease
    event allowed is a resubmission). `events`: (key, type, fencing_token, attempts) of
    lease events, in outbox order."""
    last: dict[str, tuple[str, Any, Any]] = {}
    bad: set[str] = set()
    for key, type_, token, attempts in events:
        kind = type_.partition(".")[2]
        prev = last.get(key)
        if kind == "succeeded" and prev != ("claimed", token, attempts):
            bad.add(key)
        elif prev is not None and prev[0] in _FINISHED and kind != "resubmitted":
            bad.add(key)  # e.g. a zombie's release or retry put a finished row back in the queue
        last[key] = (kind, token, attempts)
    return sorted(bad)


async def check_tasks(audit: Audit, db: Database, keys: set[str], worker_logs: list[Path]) -> None:
    async with db.engine.connect() as conn:
        members = (
            await conn.execute(
                sa.text(
                    "SELECT j.key, jt.name, t.key, t.status FROM jobs j "
                    "JOIN job_tasks jt ON jt.job_id = j.id JOIN jobs t ON t.id = jt.task_id "
                    "WHERE j.role = 'graph' AND j.status = 'succeeded' AND j.key = ANY(:keys)"
                ),
                {"keys": list(keys)},
            )
        ).all()
        task_successes = Counter(
            (
                await conn.execute(
                    sa.text("SELECT job_key FROM outbox WHERE type = 'task.succeeded'")
                )
            ).scalars()
        )
        events = (
            await conn.execute(
                sa.text(
                    "SELECT o.job_key, o.type, o.payload->>'fencing_token', o.payload->>'attempts' "
                    "FROM outbox o JOIN jobs r ON r.id = o.job_id "
                    "WHERE r.role <> 'graph' AND o.type = ANY(:types) ORDER BY o.id"
                ),
                {"types": LEASE_TYPES},
            )
        ).all()
    jobs_of_tasks = {job for job, _, _, _ in members}
    tasks = {task: status for _, _, task, status in members}
    unfinished = sorted(t for t, status in tasks.items() if status != "succeeded")
    twice = sorted(t for t in tasks if task_successes[t] > 1)
    never = sorted(t for t in tasks if task_successes[t] == 0)
    audit.check(
        "every task of a succeeded job succeeded exactly once",
        not unfinished and not twice and not never,
        f"{len(jobs_of_tasks)} succeeded jobs of tasks, {len(tasks)} tasks; not succeeded "
        f"{len(unfinished)} {unfinished[:2]}; succeeded twice {len(twice)} {twice[:2]}; "
        f"without a success event {len(never)}",
    )
    zombies = zombie_finishes((k, t, tok, att) for k, t, tok, att in events)
    by_type: dict[str, int] = defaultdict(int)
    for _, type_, _, _ in events:
        by_type[type_.partition(".")[0]] += type_.endswith(".succeeded")
    refused = sum(_count(path, REFUSED) for path in worker_logs)
    audit.check(
        "no job or task was finished by a zombie (each success follows its own claim)",
        not zombies,
        f"{by_type['job']} job and {by_type['task']} task successes checked; finished off their "
        f"claim {len(zombies)} {zombies[:3]}; zombie outcomes the fence refused {refused}",
    )
    # A task done twice is a double effect like a job done twice (run_audit counted those).
    audit.figures["double_effects"] = audit.figures.get("double_effects", 0) + len(twice)
    audit.figures.update(
        jobs_of_tasks=len(jobs_of_tasks), tasks=len(tasks), zombie_finishes=len(zombies),
        fence_refusals=refused,
    )


def _count(path: Path, text: str) -> int:
    try:
        return path.read_text(errors="replace").count(text)
    except OSError:
        return 0
