"""How a job of several tasks and its tasks look on the wire."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from jobs.tasks.graph import Member


def progress(tasks: Sequence[Member]) -> float:
    """A job's progress: the mean of its tasks' (a succeeded or reused task counts 1)."""
    if not tasks:
        return 0.0
    done = [1.0 if m.task.status == "succeeded" else float(m.task.progress) for m in tasks]
    return round(sum(done) / len(done), 4)


def task_view(m: Member) -> dict[str, Any]:
    t = m.task
    error = None if not t.error_code else {"code": t.error_code, "message": t.error_message}
    return {
        "name": m.name,
        "key": t.key,
        "kind": m.kind,
        "status": t.status,
        "attempts": t.attempts,
        "max_attempts": t.max_attempts,
        "progress": 1.0 if t.status == "succeeded" else round(t.progress, 4),
        "depends_on": m.depends_on,
        "publish_as": m.publish_as,
        # Already made for this tenant from the same bytes when the job was planned.
        "reused": m.reused,
        "cancel_requested": t.cancel_requested,
        "error": error,
        "output": t.output,
    }


def summary(tasks: Sequence[Member]) -> dict[str, Any]:
    """What a job's view says about its tasks."""
    by_status: dict[str, int] = {}
    for m in tasks:
        by_status[m.task.status] = by_status.get(m.task.status, 0) + 1
    return {
        "count": len(tasks),
        "by_status": by_status,
        "reused": [m.name for m in tasks if m.reused],
    }
